//! TODO(postprocess): filled by its issue.
