//! TODO(synth): filled by its issue.
