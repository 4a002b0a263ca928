//! TODO(io): filled by its issue.
