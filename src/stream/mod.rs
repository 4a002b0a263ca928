//! The streaming runtime: per-stream state, the sliding window of cached DSMI features, the
//! batched inference workers, finalisation, the stable segmenter and the events it emits.

pub mod engine;
pub mod events;
pub mod filter;
pub mod pipeline;
pub mod segmenter;
pub mod sync;
pub mod tap;

pub use engine::{Engine, EngineConfig, MAX_HOP_FACTOR, Schedule, StreamCounters, StreamState};
pub use events::SegmentEvent;
pub use filter::{JointFilter, OneEuroConfig};
pub use pipeline::{Pipeline, PipelineBuilder, PipelineStats, default_workers};
pub use segmenter::{FinalFrame, Segmenter, SegmenterConfig, SegmenterOutput};
pub use sync::{StreamConfig, StreamSegmenter};
pub use tap::VizTap;
