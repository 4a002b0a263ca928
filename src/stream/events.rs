//! What the streaming runtime tells its users. Every event is `serde`-serialisable, with a
//! `type` tag (`segment_started`, `segment_ended`, `frame_label`, `stream_ended`), which is
//! exactly what `skelseg stream --json` prints, one per line.

use serde::{Deserialize, Serialize};

use crate::io::ClassMap;
use crate::stream::segmenter::{FinalFrame, Segmenter, SegmenterConfig, SegmenterOutput};
use crate::stream::tap::VizTap;

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
        /// Why it ended.
        reason: String,
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

/// The one loop from finalised frames to events, shared by [`super::StreamSegmenter`] and the
/// [`super::Pipeline`]'s segmenter thread: the stream's [`Segmenter`], its events named with the
/// model's classes, and what the visualiser is shown on the way.
#[derive(Debug)]
pub(crate) struct StreamEvents {
    stream: String,
    segmenter: Segmenter,
}

impl StreamEvents {
    /// A fresh stream named `stream`.
    pub(crate) fn new(stream: &str, cfg: SegmenterConfig) -> Self {
        StreamEvents { stream: stream.to_owned(), segmenter: Segmenter::new(cfg) }
    }

    /// The stream's name, as its events carry it.
    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    /// Passes finalised frames through the segmenter; `emit` gets every event they complete.
    pub(crate) fn frames(
        &mut self,
        finals: &[FinalFrame],
        classes: &ClassMap,
        viz: &VizTap,
        emit: &mut dyn FnMut(SegmentEvent),
    ) {
        for f in finals {
            viz.scores(&self.stream, f);
            for o in self.segmenter.push(f) {
                self.emit(classes, viz, o, emit);
            }
        }
    }

    /// End of the stream: closes the open segment, then [`SegmentEvent::StreamEnded`]. The
    /// segmenter starts afresh afterwards.
    pub(crate) fn end(
        &mut self,
        frames: u64,
        reason: String,
        classes: &ClassMap,
        viz: &VizTap,
        emit: &mut dyn FnMut(SegmentEvent),
    ) {
        for o in self.segmenter.flush() {
            self.emit(classes, viz, o, emit);
        }
        let ended = SegmentEvent::StreamEnded { stream: self.stream.clone(), frames, reason };
        viz.event(&ended);
        emit(ended);
    }

    fn emit(
        &self,
        classes: &ClassMap,
        viz: &VizTap,
        out: SegmenterOutput,
        emit: &mut dyn FnMut(SegmentEvent),
    ) {
        let event = SegmentEvent::from_output(&self.stream, classes, out);
        viz.event(&event);
        emit(event);
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
