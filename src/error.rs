//! The library's one error type.
//!
//! Every variant says *where* things went wrong (file and line, peer, frame index, checkpoint
//! path) as data, so callers can log it, match on it or show it as is.

use std::path::PathBuf;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in skelseg.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---------------------------------------------------------------- general
    /// An I/O error on a named file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Malformed input at a located place: `file:line`, a peer, a frame.
    #[error("{location}: {message}")]
    Parse {
        /// Where: `path:line`, `peer 127.0.0.1:5000 line 12`, `frame 17`.
        location: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A value outside what the library accepts (a configuration, an argument).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The thing that is wrong.
        what: String,
        /// Why.
        message: String,
    },
    /// A tensor or array with the wrong shape.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// The operation or input.
        context: String,
        /// Expected shape, in words or as `[N, C, T, V]`.
        expected: String,
        /// Shape that was found.
        got: String,
    },
    /// An error from libtorch.
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    /// A JSON (de)serialisation error with its location.
    #[error("{location}: invalid JSON: {source}")]
    Json {
        /// Where.
        location: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A worker thread could not be started.
    #[error("could not spawn thread {name}: {source}")]
    SpawnThread {
        /// The thread's name.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },

    // ---------------------------------------------------------------- skeleton / io

    // ---------------------------------------------------------------- model / train
    /// A checkpoint that cannot be used: missing file, shapes or config that do not match.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The `.safetensors` path.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    // ---------------------------------------------------------------- stream / source
    /// A [`crate::stream::Pipeline`] stage failed (a libtorch error or a panic in inference, a
    /// panic in the event callback). The pipeline shut down and flushed what it could; `events`
    /// are the ones nobody had read from its channel yet, the closing segments among them.
    #[error("pipeline stage {stage} failed: {message}")]
    PipelineFailed {
        /// The thread that failed (`skelseg::infer0`, `skelseg::segment`, …).
        stage: String,
        /// What went wrong.
        message: String,
        /// Unread events, flushed after the failure.
        events: Vec<crate::stream::SegmentEvent>,
    },

    // ---------------------------------------------------------------- viz
    /// The Rerun viewer output could not be set up: no `rerun` binary to spawn, a bad viewer URL,
    /// an `.rrd` file that cannot be written, or a viewer that could not be flushed to.
    #[error("viz: {message}")]
    Viz {
        /// What failed and, where there is one, how to fix it.
        message: String,
    },
}

impl Error {
    /// A [`Error::Parse`] at `location`.
    pub fn parse(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Parse { location: location.into(), message: message.into() }
    }

    /// An [`Error::Invalid`] about `what`.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), message: message.into() }
    }

    /// An [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
