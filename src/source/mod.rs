//! TODO(source): filled by its issue.
