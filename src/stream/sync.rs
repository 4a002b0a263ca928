//! [`StreamSegmenter`]: the whole streaming path for one stream on the caller's thread, for apps
//! that run their own loop.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::error::Result;
use crate::frame::Frame;
use crate::io::ClassMap;
use crate::model::checkpoint::{self, CheckpointMeta, LoadedModel};
use crate::stream::engine::{Engine, EngineConfig, StreamCounters, StreamState};
use crate::stream::events::SegmentEvent;
use crate::stream::segmenter::{FinalFrame, Segmenter, SegmenterConfig};
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
/// frames. Events lag the frames by `lookahead` frames (plus up to `hop − 1`), and segment changes
/// are committed once the segmenter is confident; their boundaries are back-dated.
#[derive(Debug)]
pub struct StreamSegmenter {
    engine: Engine,
    state: StreamState,
    segmenter: Segmenter,
    classes: ClassMap,
    stream: String,
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
            segmenter: Segmenter::new(cfg.segmenter),
            classes,
            stream: stream.to_owned(),
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
        &self.stream
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
        self.viz.frame(&self.stream, frame);
        let finals = self.engine.push(&mut [(&mut self.state, frame)])?.pop().unwrap_or_default();
        Ok(self.segment(&finals))
    }

    /// End of the stream: finalises the pending frames, closes the open segment and reports
    /// [`SegmentEvent::StreamEnded`]. The segmenter starts afresh afterwards.
    pub fn finish(&mut self) -> Result<Vec<SegmentEvent>> {
        let finals = self.engine.flush(&mut self.state)?;
        let mut events = self.segment(&finals);
        for o in self.segmenter.flush() {
            let event = SegmentEvent::from_output(&self.stream, &self.classes, o);
            self.viz.event(&event);
            events.push(event);
        }
        events.push(SegmentEvent::StreamEnded {
            stream: self.stream.clone(),
            frames: self.state.counters().frames,
            reason: "finished".into(),
        });
        self.state = StreamState::new(self.engine.config());
        Ok(events)
    }

    fn segment(&mut self, finals: &[FinalFrame]) -> Vec<SegmentEvent> {
        let mut events = Vec::new();
        for f in finals {
            self.viz.scores(&self.stream, f);
            for o in self.segmenter.push(f) {
                let event = SegmentEvent::from_output(&self.stream, &self.classes, o);
                self.viz.event(&event);
                events.push(event);
            }
        }
        events
    }
}
