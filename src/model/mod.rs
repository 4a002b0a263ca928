//! TODO(model): filled by its issue.
