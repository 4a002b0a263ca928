//! The visualiser edge of the streaming runtime: lossy, never blocking, and empty when the
//! crate is built without the `viz` feature. Keeping the feature gates here leaves the stages
//! free of them.

use crate::frame::Frame;
use crate::stream::events::SegmentEvent;
use crate::stream::segmenter::FinalFrame;

/// Where a stage shows what it sees: a Rerun visualiser, or nowhere.
#[derive(Clone, Debug, Default)]
pub struct VizTap {
    #[cfg(feature = "viz")]
    sender: Option<crate::viz::VizSender>,
}

impl VizTap {
    /// A tap that shows nothing.
    pub fn off() -> Self {
        VizTap::default()
    }

    /// A tap feeding `sender` (lossy: a full visualiser queue drops and counts).
    #[cfg(feature = "viz")]
    pub fn new(sender: crate::viz::VizSender) -> Self {
        VizTap { sender: Some(sender) }
    }

    /// An incoming frame of `stream`.
    pub fn frame(&self, stream: &str, frame: &Frame) {
        #[cfg(feature = "viz")]
        if let Some(tx) = &self.sender {
            tx.send(crate::viz::VizMsg::Frame { stream: stream.to_owned(), frame: frame.clone() });
        }
        #[cfg(not(feature = "viz"))]
        let _ = (stream, frame);
    }

    /// The probabilities of a finalised frame.
    pub(crate) fn scores(&self, stream: &str, f: &FinalFrame) {
        #[cfg(feature = "viz")]
        if let Some(tx) = &self.sender {
            tx.send(crate::viz::VizMsg::Scores {
                stream: stream.to_owned(),
                frame: f.index,
                timestamp_secs: f.timestamp_secs,
                probs: f.probs.clone(),
                boundary_prob: f.boundary_prob,
            });
        }
        #[cfg(not(feature = "viz"))]
        let _ = (stream, f);
    }

    /// An event; committed segments are shown.
    pub(crate) fn event(&self, event: &SegmentEvent) {
        #[cfg(feature = "viz")]
        if let (
            Some(tx),
            SegmentEvent::SegmentEnded {
                stream, class, start_frame, end_frame, confidence, ..
            },
        ) = (&self.sender, event)
        {
            tx.send(crate::viz::VizMsg::Segment {
                stream: stream.clone(),
                class: *class,
                start_frame: *start_frame,
                end_frame: *end_frame,
                confidence: *confidence,
            });
        }
        #[cfg(not(feature = "viz"))]
        let _ = event;
    }

    /// The ground truth of `stream`, when the source has labels.
    pub fn ground_truth(&self, stream: &str, intervals: &[crate::io::Interval]) {
        #[cfg(feature = "viz")]
        if let Some(tx) = &self.sender {
            tx.send(crate::viz::VizMsg::GroundTruth {
                stream: stream.to_owned(),
                intervals: intervals.to_vec(),
            });
        }
        #[cfg(not(feature = "viz"))]
        let _ = (stream, intervals);
    }
}
