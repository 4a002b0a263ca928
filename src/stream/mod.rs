//! The streaming runtime: per-stream state, the sliding window of cached DSMI features, the
//! batched inference workers, finalisation, the stable segmenter and the events it emits.
//!
//! Two ways in, both built from a [`crate::Model`]:
//! - [`StreamSegmenter`] (built by [`StreamSegmenter::builder`]): one stream on the caller's
//!   thread, `push(frame) -> Vec<SegmentEvent>`.
//! - [`Pipeline`] (built by [`PipelineBuilder`]): sources, inference and segmentation on their
//!   own threads, events on a channel and/or a callback.
//!
//! Both emit [`SegmentEvent`]s and take their settings as a [`StreamConfig`], by default the one
//! the checkpoint implies ([`StreamConfig::from_checkpoint`]).
//!
//! Inside, per stream: joint smoothing ([`OneEuroConfig`]) → modalities → DSMI per frame, cached
//! → MFAI over a sliding window every hop ([`EngineConfig`]) → finalised frame probabilities →
//! the stable segmenter ([`SegmenterConfig`]) → [`SegmentEvent`]s. Those stages are internal.

pub(crate) mod engine;
mod events;
mod filter;
mod latency;
mod memory;
pub(crate) mod pipeline;
pub(crate) mod segmenter;
mod sync;
mod tap;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod window_threads;
mod worker;

pub use engine::{EngineConfig, MAX_HOP_FACTOR, StreamCounters};
pub use events::SegmentEvent;
pub use filter::OneEuroConfig;
pub use latency::LatencyHistogram;
pub use pipeline::{
    EventCallback, Pipeline, PipelineBuilder, PipelineStats, default_window_threads,
    default_workers,
};
pub use segmenter::{SegmentRule, SegmenterChoices, SegmenterConfig};
pub use sync::{StreamConfig, StreamSegmenter, StreamSegmenterBuilder};
pub use tap::VizTap;
