//! What the streaming runtime tells its users. Every event is `serde`-serialisable, with a
//! `type` tag (`segment_started`, `segment_ended`, `frame_label`, `stream_ended`), which is
//! exactly what `skelseg stream --json` prints, one per line.

use serde::{Deserialize, Serialize};

use crate::io::ClassMap;
use crate::source::EndReason;
use crate::stream::segmenter::SegmenterOutput;

/// An event of one stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SegmentEvent {
    /// A segment began. Its start is back-dated to where the label really began.
    SegmentStarted {
        /// The stream (sensor, connection or recording).
        stream: String,
        /// Class name.
        label: String,
        /// Class id.
        class: usize,
        /// First frame index.
        start_frame: u64,
        /// Sensor time of the first frame, seconds.
        start_secs: f64,
    },
    /// A segment was committed; it will never be retracted or changed.
    SegmentEnded {
        /// The stream.
        stream: String,
        /// Class name.
        label: String,
        /// Class id.
        class: usize,
        /// First frame index.
        start_frame: u64,
        /// Last frame index (inclusive).
        end_frame: u64,
        /// Sensor time of the first frame, seconds.
        start_secs: f64,
        /// Sensor time of the last frame, seconds.
        end_secs: f64,
        /// Mean probability of the class over the segment.
        confidence: f32,
    },
    /// The label of one finalised frame (only when per-frame updates are on).
    FrameLabel {
        /// The stream.
        stream: String,
        /// Frame index.
        frame: u64,
        /// Argmax class name of this frame.
        label: String,
        /// Argmax class id.
        class: usize,
        /// Its probability.
        prob: f32,
        /// Boundary probability.
        boundary_prob: f32,
    },
    /// The stream ended (end of file, disconnect, shutdown); every open segment was closed before.
    StreamEnded {
        /// The stream.
        stream: String,
        /// Frames received.
        frames: u64,
        /// Why it ended (a string in JSON: `"Closed"`, `"finished"`, … see [`EndReason`]).
        reason: EndReason,
    },
}

impl SegmentEvent {
    /// The stream the event belongs to.
    pub fn stream(&self) -> &str {
        match self {
            SegmentEvent::SegmentStarted { stream, .. }
            | SegmentEvent::SegmentEnded { stream, .. }
            | SegmentEvent::FrameLabel { stream, .. }
            | SegmentEvent::StreamEnded { stream, .. } => stream,
        }
    }

    /// Names a segmenter output for `stream`.
    pub(crate) fn from_output(stream: &str, classes: &ClassMap, out: SegmenterOutput) -> Self {
        let name = |c: usize| classes.name(c).map_or_else(|| format!("class_{c}"), str::to_owned);
        match out {
            SegmenterOutput::Started { class, start, start_secs } => SegmentEvent::SegmentStarted {
                stream: stream.to_owned(),
                label: name(class),
                class,
                start_frame: start,
                start_secs,
            },
            SegmenterOutput::Ended { class, start, end, start_secs, end_secs, confidence } => {
                SegmentEvent::SegmentEnded {
                    stream: stream.to_owned(),
                    label: name(class),
                    class,
                    start_frame: start,
                    end_frame: end,
                    start_secs,
                    end_secs,
                    confidence,
                }
            }
            SegmenterOutput::Frame { index, class, prob, boundary_prob, .. } => {
                SegmentEvent::FrameLabel {
                    stream: stream.to_owned(),
                    frame: index,
                    label: name(class),
                    class,
                    prob,
                    boundary_prob,
                }
            }
        }
    }
}

impl std::fmt::Display for SegmentEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentEvent::SegmentStarted { stream, label, start_frame, start_secs, .. } => {
                write!(
                    f,
                    "[{stream}] started  {label:<16} at frame {start_frame:>6} ({start_secs:8.2} s)"
                )
            }
            SegmentEvent::SegmentEnded {
                stream,
                label,
                start_frame,
                end_frame,
                start_secs,
                end_secs,
                confidence,
                ..
            } => write!(
                f,
                "[{stream}] segment  {label:<16} frames {start_frame:>6}–{end_frame:<6} ({start_secs:8.2}–{end_secs:8.2} s) conf {confidence:.2}"
            ),
            SegmentEvent::FrameLabel { stream, frame, label, prob, boundary_prob, .. } => {
                write!(
                    f,
                    "[{stream}] frame {frame:>6} {label:<16} p {prob:.2} boundary {boundary_prob:.2}"
                )
            }
            SegmentEvent::StreamEnded { stream, frames, reason } => {
                write!(f, "[{stream}] ended after {frames} frames ({reason})")
            }
        }
    }
}
