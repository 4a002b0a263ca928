//! TODO(metrics): filled by its issue.
