//! Frame sources: where skeleton frames come from.
//!
//! One trait, [`FrameSource`], for every origin: file replay paced in real time
//! ([`ReplaySource`]), `skeleton-ndjson/1` over TCP or UDP and KinectV2-OSC over UDP
//! ([`NetSource`], [`osc`]), and the built-in simulator (feature `synth`). A source yields [`SourceEvent`]s tagged with a [`StreamId`] (one per
//! sensor, TCP client, UDP peer or recording) and tells a blocked consumer when it is finished
//! for good. Sources are opened from a textual [`SourceSpec`] (`tcp-listen:127.0.0.1:7000`).
//!
//! ## Backpressure
//! Network ingress is lossy, newest wins: a bounded queue evicts the oldest queued frame (of the
//! same stream when it has one) and counts it in [`SourceStats::dropped_overflow`]. `Ended`
//! events are never dropped. Replay is lossless: it is pulled by the consumer.
//!
//! ## Bad input
//! Malformed lines, wrong joint counts, NaN/Inf or absurd coordinates, oversize lines and
//! out-of-order or duplicate timestamps are skipped, counted per reason in [`SourceStats`] and
//! logged with their location (peer, line, frame); the stream and every other stream go on.
//! Gaps pass through: frame indices keep their jumps.

mod datagram;
mod ingress;
pub mod limits;
mod net;
pub mod osc;
mod replay;
mod send;
#[cfg(feature = "synth")]
mod sim;
mod spec;
#[cfg(feature = "zenoh")]
pub mod zenoh;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::Frame;

pub use net::{NetConfig, NetSource, SourceHandle};
pub use replay::{Pacing, ReplaySource};
pub use send::{Proto, SendStats, send_recording};
#[cfg(feature = "synth")]
pub use sim::SimSource;
pub use spec::{OpenOptions, SourceSpec};

/// Name of one stream: `tcp:PEER`, `udp:PEER`, `osc:PEER`, `file:NAME`, `sim:N`. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// A stream id from its text.
    pub fn new(id: impl Into<String>) -> Self {
        StreamId(Arc::from(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StreamId {
    fn from(id: &str) -> Self {
        StreamId::new(id)
    }
}

/// Why a stream ended: carried by [`SourceEvent::Ended`] and by
/// [`crate::stream::SegmentEvent::StreamEnded`].
///
/// In JSON (`skelseg stream --json`) and in `Display` it is one string: the variant's name
/// (`"Closed"`, `"Idle"`, …), `"Error(\"message\")"` for [`EndReason::Error`], and `"finished"`
/// for [`EndReason::Finished`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The recording ended, or the peer closed the connection after a complete line.
    Closed,
    /// The peer disconnected in the middle of a line (that partial line is counted as malformed).
    Truncated,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The source was shut down.
    Shutdown,
    /// An I/O error on the connection.
    Error(String),
    /// The app ended the stream ([`crate::stream::StreamSegmenter::finish`]).
    Finished,
    /// The pipeline's inference worker failed; what it had finalised was flushed.
    InferenceFailed,
}

impl EndReason {
    /// The reason as one string, as JSON and `Display` show it (see the type's docs).
    pub fn as_text(&self) -> std::borrow::Cow<'static, str> {
        match self {
            EndReason::Finished => "finished".into(),
            // The names the events carried when the reason was a free string.
            other => format!("{other:?}").into(),
        }
    }

    /// Parses what [`EndReason::as_text`] writes; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Self> {
        Some(match text {
            "Closed" => EndReason::Closed,
            "Truncated" => EndReason::Truncated,
            "Idle" => EndReason::Idle,
            "Shutdown" => EndReason::Shutdown,
            "InferenceFailed" => EndReason::InferenceFailed,
            "finished" => EndReason::Finished,
            _ => {
                let quoted = text.strip_prefix("Error(")?.strip_suffix(')')?;
                let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
                EndReason::Error(unescape_debug(inner))
            }
        })
    }
}

/// Undoes the escapes of `{:?}` on a string that a message can contain.
fn unescape_debug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other), // `\"`, `\\`, `\'`
            None => out.push('\\'),
        }
    }
    out
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

impl serde::Serialize for EndReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_text())
    }
}

impl<'de> serde::Deserialize<'de> for EndReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        EndReason::from_text(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown end reason {text:?}")))
    }
}

/// What a source delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// A frame of `stream`, canonical layout, metres.
    Frame {
        /// The stream it belongs to.
        stream: StreamId,
        /// The frame.
        frame: Frame,
    },
    /// `stream` has ended: no more frames of it will come (a reconnecting peer is a new stream).
    Ended {
        /// The stream.
        stream: StreamId,
        /// Why.
        reason: EndReason,
    },
}

impl SourceEvent {
    /// The stream the event belongs to.
    pub fn stream(&self) -> &StreamId {
        match self {
            SourceEvent::Frame { stream, .. } | SourceEvent::Ended { stream, .. } => stream,
        }
    }
}

/// Result of [`FrameSource::next_event`].
#[derive(Clone, Debug, PartialEq)]
pub enum SourcePoll {
    /// The next event.
    Event(SourceEvent),
    /// Nothing arrived within the timeout; ask again.
    Timeout,
    /// The source is finished for good (file ended, shut down): every event has been delivered.
    Finished,
}

/// Counters of a source, cumulative since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    /// Frames decoded and accepted (some of them may later be dropped by ingress overflow).
    pub frames: u64,
    /// Lines/messages skipped as malformed (not JSON, bad fields, truncated by a disconnect).
    pub skipped_malformed: u64,
    /// Skipped for wrong joint counts, NaN/Inf or absurd coordinates, bad tracking codes.
    pub skipped_invalid_joints: u64,
    /// Skipped for exceeding the line/datagram size limit.
    pub skipped_oversize: u64,
    /// Skipped for out-of-order or duplicate timestamps / frame ids.
    pub skipped_out_of_order: u64,
    /// Accepted frames evicted from the full ingress queue before the consumer took them.
    pub dropped_overflow: u64,
    /// Connections accepted (TCP clients, UDP/OSC peers).
    pub connections: u64,
    /// Connections refused because the connection limit was reached (UDP/OSC: datagrams from
    /// new peers over the limit).
    pub rejected_connections: u64,
    /// Streams that have ended.
    pub streams_ended: u64,
}

impl SourceStats {
    /// All skipped lines/messages, every reason together.
    pub fn skipped(&self) -> u64 {
        self.skipped_malformed
            + self.skipped_invalid_joints
            + self.skipped_oversize
            + self.skipped_out_of_order
    }
}

/// A source of skeleton frames, consumed by one thread.
///
/// `next_event` blocks up to `timeout`; [`SourcePoll::Finished`] means nothing will ever come
/// again, so the consumer can flush and stop. Sources that own threads stop them when dropped.
pub trait FrameSource: Send {
    /// The next event, waiting at most `timeout`.
    fn next_event(&mut self, timeout: Duration) -> SourcePoll;

    /// The counters so far.
    fn stats(&self) -> SourceStats;

    /// Whether frames arrive at the sensor's pace. A live stream that falls behind may skip
    /// inference windows to keep its latency; a recording replayed as fast as possible is not
    /// live, so every window runs and the output does not depend on the machine's speed.
    fn is_live(&self) -> bool {
        true
    }

    /// Stops taking new input. What the source has already accepted (and counted) is still
    /// returned by [`FrameSource::next_event`], which then returns [`SourcePoll::Finished`]; a
    /// replay or simulator, which holds nothing accepted, finishes at once. A pipeline that
    /// shuts down calls this and then reads what is left, so no frame a source counted is lost.
    /// The default does nothing (the pipeline then reads what is ready for a bounded time).
    fn close(&mut self) {}
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn next_event(&mut self, timeout: Duration) -> SourcePoll {
        (**self).next_event(timeout)
    }

    fn stats(&self) -> SourceStats {
        (**self).stats()
    }

    fn is_live(&self) -> bool {
        (**self).is_live()
    }

    fn close(&mut self) {
        (**self).close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_by_text() {
        let a = StreamId::new("tcp:127.0.0.1:5000");
        assert_eq!(a, StreamId::from("tcp:127.0.0.1:5000"));
        assert_eq!(a.to_string(), "tcp:127.0.0.1:5000");
        assert_ne!(a, StreamId::new("tcp:127.0.0.1:5001"));
    }

    #[test]
    fn end_reasons_serialise_as_the_strings_events_always_carried() {
        let cases = [
            (EndReason::Closed, "\"Closed\""),
            (EndReason::Truncated, "\"Truncated\""),
            (EndReason::Idle, "\"Idle\""),
            (EndReason::Shutdown, "\"Shutdown\""),
            (EndReason::Finished, "\"finished\""),
            (EndReason::InferenceFailed, "\"InferenceFailed\""),
            (
                EndReason::Error("reset by \"peer\"\n".into()),
                r#""Error(\"reset by \\\"peer\\\"\\n\")""#,
            ),
        ];
        for (reason, json) in cases {
            assert_eq!(serde_json::to_string(&reason).expect("serialise"), json);
            let back: EndReason = serde_json::from_str(json).expect("deserialise");
            assert_eq!(back, reason);
            assert_eq!(reason.to_string(), serde_json::from_str::<String>(json).expect("a string"));
        }
        let err = serde_json::from_str::<EndReason>("\"Gone\"").expect_err("unknown");
        assert!(err.to_string().contains("unknown end reason \"Gone\""), "{err}");
    }

    #[test]
    fn skipped_sums_every_reason() {
        let s = SourceStats {
            skipped_malformed: 1,
            skipped_invalid_joints: 2,
            skipped_oversize: 3,
            skipped_out_of_order: 4,
            dropped_overflow: 100,
            ..SourceStats::default()
        };
        assert_eq!(s.skipped(), 10);
    }
}
