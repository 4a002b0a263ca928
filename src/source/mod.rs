//! Frame sources: where skeleton frames come from.
//!
//! One trait, [`FrameSource`], for every origin: file replay paced in real time ([`replay`]),
//! `skeleton-ndjson/1` over TCP or UDP and KinectV2-OSC over UDP ([`net`], [`osc`]), and the
//! built-in simulator. A source yields [`SourceEvent`]s tagged with a [`StreamId`] (one per
//! sensor, TCP client, UDP peer or recording) and tells a blocked consumer when it is finished
//! for good. Sources are opened from a textual [`spec::SourceSpec`] (`tcp-listen:127.0.0.1:7000`).
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

mod ingress;
pub mod limits;
pub mod net;
pub mod osc;
pub mod replay;
pub mod send;
pub mod sim;
pub mod spec;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::Frame;

pub use net::{NetConfig, NetSource, SourceHandle};
pub use replay::{Pacing, ReplaySource};
pub use send::{Proto, SendStats, send_recording};
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

/// Why a stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
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
