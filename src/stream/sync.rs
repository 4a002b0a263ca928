//! [`StreamSegmenter`]: the whole streaming path for one stream on the caller's thread, for apps
//! that run their own loop.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::error::Result;
use crate::frame::Frame;
use crate::io::ClassMap;
use crate::model::checkpoint::{self, CheckpointMeta, LoadedModel};
use crate::stream::engine::{Engine, EngineConfig, Schedule, StreamCounters, StreamState};
use crate::stream::events::{SegmentEvent, StreamEvents};
use crate::stream::segmenter::SegmenterConfig;
use crate::stream::tap::VizTap;

/// Settings of the streaming path: window and finalisation, then segment emission.
///
/// The default knows nothing of the model; [`StreamConfig::from_checkpoint`] is what
/// [`StreamSegmenter::new`], [`crate::stream::PipelineBuilder::new`] and `skelseg stream` use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Window, hop, lookahead, modalities.
    pub engine: EngineConfig,
    /// Stable emission.
    pub segmenter: SegmenterConfig,
}

impl StreamConfig {
    /// The default settings tuned for the checkpoint `meta`: its boundary threshold and
    /// per-class minimum lengths ([`SegmenterConfig::tuned_for`] with
    /// [`SegmenterConfig::MIN_LEN_FACTOR`]). `skelseg stream` without options segments the same.
    pub fn from_checkpoint(meta: &CheckpointMeta) -> Self {
        StreamConfig {
            engine: EngineConfig::default(),
            segmenter: SegmenterConfig::default().tuned_for(meta, SegmenterConfig::MIN_LEN_FACTOR),
        }
    }

    /// Rejects settings that cannot work ([`EngineConfig::validate`],
    /// [`SegmenterConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        self.engine.validate()?;
        self.segmenter.validate()
    }
}

/// Segments one stream synchronously: push frames, get events.
///
/// ```no_run
/// use skelseg::stream::StreamSegmenter;
/// # fn frames() -> Vec<skelseg::Frame> { Vec::new() }
/// let mut seg = StreamSegmenter::from_checkpoint(
///     "fixtures/models/synth.safetensors".as_ref(), tch::Device::Cpu, "camera-1")?;
/// for frame in frames() {
///     for event in seg.push(&frame)? {
///         println!("{event}");
///     }
/// }
/// for event in seg.finish()? {
///     println!("{event}");
/// }
/// # Ok::<(), skelseg::Error>(())
/// ```
///
/// Each call to [`StreamSegmenter::push`] costs one DSMI step, plus one MFAI window every `hop`
/// frames. [`StreamSegmenter::push_many`] takes a batch of frames (a recording replayed as fast
/// as possible, a burst after a gap) and runs their DSMI steps and windows as batches: the same
/// events, less overhead per frame. Events lag the frames by `lookahead` frames (plus up to `hop − 1`), and segment changes
/// are committed once the segmenter is confident; their boundaries are back-dated.
#[derive(Debug)]
pub struct StreamSegmenter {
    engine: Engine,
    state: StreamState,
    events: StreamEvents,
    classes: ClassMap,
    viz: VizTap,
    /// Keeps the variables alive for the model's lifetime.
    _loaded: tch::nn::VarStore,
}

impl StreamSegmenter {
    /// Loads a checkpoint (`.safetensors` with its `.json` beside it) onto `device`, with the
    /// settings it implies ([`StreamConfig::from_checkpoint`]).
    pub fn from_checkpoint(path: &Path, device: Device, stream: &str) -> Result<Self> {
        Self::new(checkpoint::load(path, device)?, stream)
    }

    /// Wraps an already loaded model, with the settings its checkpoint implies
    /// ([`StreamConfig::from_checkpoint`]).
    pub fn new(loaded: LoadedModel, stream: &str) -> Result<Self> {
        let cfg = StreamConfig::from_checkpoint(&loaded.meta);
        Self::with_config(loaded, stream, cfg)
    }

    /// Wraps an already loaded model with settings of the caller's (start from
    /// [`StreamConfig::from_checkpoint`] to keep what the checkpoint knows).
    pub fn with_config(loaded: LoadedModel, stream: &str, cfg: StreamConfig) -> Result<Self> {
        cfg.segmenter.validate()?;
        let device = loaded.vs.device();
        let classes = ClassMap::new(loaded.meta.classes.clone());
        let engine = Engine::new(loaded.model, device, cfg.engine.clone())?;
        Ok(StreamSegmenter {
            state: StreamState::new(engine.config()),
            engine,
            events: StreamEvents::new(stream, cfg.segmenter),
            classes,
            viz: VizTap::off(),
            _loaded: loaded.vs,
        })
    }

    /// Shows frames, probabilities and committed segments through `viz` (lossy).
    pub fn with_viz(mut self, viz: VizTap) -> Self {
        self.viz = viz;
        self
    }

    /// The stream's name, as events carry it.
    pub fn stream(&self) -> &str {
        self.events.stream()
    }

    /// The class names of the model.
    pub fn classes(&self) -> &ClassMap {
        &self.classes
    }

    /// Counters of the stream so far.
    pub fn counters(&self) -> &StreamCounters {
        self.state.counters()
    }

    /// Takes the next frame of the stream; returns the events it completes.
    pub fn push(&mut self, frame: &Frame) -> Result<Vec<SegmentEvent>> {
        self.push_many(std::slice::from_ref(frame))
    }

    /// Takes the next frames of the stream at once; returns the events they complete. The
    /// events are those of pushing the frames one by one (every window runs), computed in
    /// batches.
    pub fn push_many(&mut self, frames: &[Frame]) -> Result<Vec<SegmentEvent>> {
        for frame in frames {
            self.viz.frame(self.events.stream(), frame);
        }
        let finals = self
            .engine
            .push_frames(&mut [(&mut self.state, frames, Schedule::Every)])?
            .pop()
            .unwrap_or_default();
        let mut events = Vec::new();
        self.events.frames(&finals, &self.classes, &self.viz, &mut |e| events.push(e));
        Ok(events)
    }

    /// End of the stream: finalises the pending frames, closes the open segment and reports
    /// [`SegmentEvent::StreamEnded`]. The segmenter starts afresh afterwards.
    pub fn finish(&mut self) -> Result<Vec<SegmentEvent>> {
        let finals = self.engine.flush(&mut self.state)?;
        let mut events = Vec::new();
        let mut emit = |e| events.push(e);
        self.events.frames(&finals, &self.classes, &self.viz, &mut emit);
        let frames = self.state.counters().frames;
        self.events.end(frames, "finished".into(), &self.classes, &self.viz, &mut emit);
        self.state = StreamState::new(self.engine.config());
        Ok(events)
    }
}
