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
    /// Malformed input: where it is, what the reader expected and what it found.
    ///
    /// Displays as `path:line: expected …, found …` (files) or `tcp:PEER line N: expected …,
    /// found …` (streams).
    #[error("{location}: expected {expected}, found {found}")]
    Parse {
        /// The file or stream, the line, the frame or body within it.
        location: Location,
        /// What the reader expected there (`150 numbers`, `a class id below 52`).
        expected: String,
        /// What it found (`149`, `` `jump` ``, `end of file`).
        found: String,
    },
    /// A datagram a network decoder skipped, in the decoder's words (OSC).
    #[error("{message}")]
    Skipped {
        /// The stream the datagram belonged to (`osc:127.0.0.1:5000`).
        stream: String,
        /// What was wrong, with the message number.
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
    /// A JSON (de)serialisation error of a file.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
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

    /// A thread that ran part of a step's inference ([`crate::stream::StreamSegmenter`]'s or a
    /// pipeline worker's window threads) panicked or stopped.
    #[error("thread {name} failed: {message}")]
    ThreadFailed {
        /// The thread's name (`skelseg::infer0/window1`, …).
        name: String,
        /// What went wrong.
        message: String,
    },

    // ---------------------------------------------------------------- model / train
    /// A checkpoint that cannot be used: unreadable weights or config, a format, version or
    /// layout this skelseg does not read, tensors or classes that do not match the config.
    #[error("checkpoint {}: expected {expected}, found {found}", path.display())]
    Checkpoint {
        /// The `.safetensors` path.
        path: PathBuf,
        /// What a usable checkpoint has there (`format "skelseg-checkpoint/1"`).
        expected: String,
        /// What this one has.
        found: String,
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
    /// An [`Error::Parse`] at `location`.
    pub fn parse(
        location: Location,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::Parse { location, expected: expected.into(), found: found.into() }
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

/// The input an [`Error::Parse`] is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file.
    File(PathBuf),
    /// A network stream or peer, by its stream name (`tcp:127.0.0.1:53122`).
    Stream(String),
}

/// Where an [`Error::Parse`] is: the input, the line, the item within it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Location {
    /// The file or stream.
    pub input: Input,
    /// 1-based line, for inputs made of lines.
    pub line: Option<u64>,
    /// The place within the line or file: `frame 17`, `frame 3, body 1, joint 4`.
    pub item: Option<String>,
}

impl Location {
    /// A whole file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Location { input: Input::File(path.into()), line: None, item: None }
    }

    /// A line of a file.
    pub fn file_line(path: impl Into<PathBuf>, line: u64) -> Self {
        Location { line: Some(line), ..Location::file(path) }
    }

    /// A stream, at `line` when it has lines.
    pub fn stream(name: impl Into<String>, line: Option<u64>) -> Self {
        Location { input: Input::Stream(name.into()), line, item: None }
    }

    /// The same place, narrowed to `item` (`frame 17`).
    pub fn with_item(mut self, item: impl Into<String>) -> Self {
        self.item = Some(item.into());
        self
    }

    /// The file, when the input is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.input {
            Input::File(p) => Some(p),
            Input::Stream(_) => None,
        }
    }
}

impl std::fmt::Display for Location {
    /// `path:line: item` for files, `stream line N: item` for streams.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.input, self.line) {
            (Input::File(p), Some(l)) => write!(f, "{}:{l}", p.display())?,
            (Input::File(p), None) => write!(f, "{}", p.display())?,
            (Input::Stream(s), Some(l)) => write!(f, "{s} line {l}")?,
            (Input::Stream(s), None) => write!(f, "{s}")?,
        }
        match &self.item {
            Some(item) => write!(f, ": {item}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_read_as_before_and_keep_their_parts() {
        let e = Error::parse(Location::file_line("a/b.txt", 12), "150 numbers", "149");
        assert_eq!(e.to_string(), "a/b.txt:12: expected 150 numbers, found 149");
        let e = Error::parse(
            Location::stream("tcp:1.2.3.4:5", Some(3)).with_item("frame 7"),
            "a frame id after 7",
            "7",
        );
        assert_eq!(
            e.to_string(),
            "tcp:1.2.3.4:5 line 3: frame 7: expected a frame id after 7, found 7"
        );
        match e {
            Error::Parse { location, expected, found } => {
                assert_eq!((location.line, location.item.as_deref()), (Some(3), Some("frame 7")));
                assert_eq!(location.input, Input::Stream("tcp:1.2.3.4:5".into()));
                assert_eq!((expected.as_str(), found.as_str()), ("a frame id after 7", "7"));
            }
            other => panic!("{other:?}"),
        }
    }
}
