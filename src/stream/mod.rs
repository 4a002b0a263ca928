//! TODO(stream): filled by its issue.
