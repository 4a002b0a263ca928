//! TODO(modality): filled by its issue.
