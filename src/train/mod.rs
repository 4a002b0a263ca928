//! TODO(train): filled by its issue.
