//! [`StreamSegmenter`]: the whole streaming path for one stream on the caller's thread, for apps
//! that run their own loop.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::Model;
use crate::error::Result;
use crate::frame::Frame;
use crate::io::ClassMap;
use crate::model::checkpoint::CheckpointMeta;
use crate::source::EndReason;
use crate::stream::engine::{Engine, EngineConfig, Schedule, StreamCounters, StreamState};
use crate::stream::events::{SegmentEvent, StreamEvents};
use crate::stream::pipeline::EventCallback;
use crate::stream::segmenter::{FinalFrame, SegmenterConfig};
use crate::stream::tap::VizTap;
use crate::stream::window_threads;

/// Settings of the streaming path: window and finalisation, then segment emission.
///
/// The default knows nothing of the model; [`StreamConfig::from_checkpoint`] is what
/// [`StreamSegmenter::builder`], [`crate::stream::PipelineBuilder::new`] and `skelseg stream` use
/// unless told otherwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Window, hop, lookahead, modalities.
    pub engine: EngineConfig,
    /// Stable emission.
    pub segmenter: SegmenterConfig,
}

impl StreamConfig {
    /// The default settings tuned for the checkpoint `meta`: its boundary threshold, the θ,
    /// minimum-length factor and rule chosen for it on validation data when it records them
    /// ([`SegmenterConfig::checkpoint_choices`]), and per-class minimum lengths
    /// ([`SegmenterConfig::tuned_for`]). `skelseg stream` without options segments the same.
    pub fn from_checkpoint(meta: &CheckpointMeta) -> Self {
        let chosen = SegmenterConfig::checkpoint_choices(meta);
        let segmenter = SegmenterConfig {
            min_mean_prob: chosen.min_mean_prob,
            rule: chosen.rule,
            peakless_factor: chosen.peakless_factor,
            ..SegmenterConfig::default()
        };
        StreamConfig {
            engine: EngineConfig::default(),
            segmenter: segmenter.tuned_for(meta, chosen.min_len_factor),
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
/// let model = skelseg::Model::load("fixtures/models/synth.safetensors", skelseg::Device::Cpu)?;
/// let mut seg = StreamSegmenter::builder(model).stream("camera-1").build()?;
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
///
/// Threading: runs on the caller's thread; `Send`, so it can be moved to the thread that feeds
/// it. It owns its [`Model`].
pub struct StreamSegmenter {
    engine: Engine,
    state: StreamState,
    events: StreamEvents,
    classes: ClassMap,
    viz: VizTap,
    callback: Option<EventCallback>,
    /// Keeps the variables alive for the model's lifetime.
    _vs: tch::nn::VarStore,
}

impl std::fmt::Debug for StreamSegmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSegmenter")
            .field("stream", &self.events.stream())
            .field("engine", &self.engine)
            .field("counters", self.state.counters())
            .field("on_event", &self.callback.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`StreamSegmenter`]; the same vocabulary as [`crate::stream::PipelineBuilder`].
///
/// Without [`StreamSegmenterBuilder::config`], the settings are those the checkpoint implies
/// ([`StreamConfig::from_checkpoint`]: its boundary threshold and per-class minimum lengths).
#[must_use = "call build() to get the segmenter"]
pub struct StreamSegmenterBuilder {
    model: Model,
    stream: String,
    cfg: Option<StreamConfig>,
    viz: VizTap,
    callback: Option<EventCallback>,
    window_threads: usize,
}

impl StreamSegmenterBuilder {
    /// Names the stream, as events carry it (default `"stream"`).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// Replaces the settings (start from [`StreamConfig::from_checkpoint`] to keep what the
    /// checkpoint knows).
    pub fn config(mut self, cfg: StreamConfig) -> Self {
        self.cfg = Some(cfg);
        self
    }

    /// Shows frames, probabilities and committed segments through `viz` (lossy).
    pub fn viz(mut self, viz: VizTap) -> Self {
        self.viz = viz;
        self
    }

    /// Calls `f` for every event, on the caller's thread, before [`StreamSegmenter::push`] or
    /// [`StreamSegmenter::finish`] returns it.
    pub fn on_event(mut self, f: impl FnMut(&SegmentEvent) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Runs the windows and frames that come due in one push on `n` threads: the caller's and
    /// `n − 1` threads of its own, each with a copy of the model (default 1: the caller's
    /// thread only). Pays when pushes hold many frames (a recording replayed in bursts through
    /// [`StreamSegmenter::push_many`]); a push of one frame runs at most one window and gains
    /// nothing. The outputs are those of one thread, to float rounding.
    pub fn window_threads(mut self, n: usize) -> Self {
        self.window_threads = n.max(1);
        self
    }

    /// Checks the settings and builds the segmenter.
    pub fn build(self) -> Result<StreamSegmenter> {
        let StreamSegmenterBuilder { model, stream, cfg, viz, callback, window_threads: threads } =
            self;
        let cfg = cfg.unwrap_or_else(|| StreamConfig::from_checkpoint(model.meta()));
        cfg.validate()?;
        let device = model.device();
        let classes = model.classes().clone();
        let (vs, net, _meta) = model.into_parts();
        let helpers = window_threads::spawn_copies(
            &format!("skelseg::{stream}"),
            &vs,
            &net,
            threads - 1,
            tch::get_num_threads(),
        )?;
        let engine = Engine::new(net, device, cfg.engine.clone())?.with_helpers(helpers);
        Ok(StreamSegmenter {
            state: StreamState::new(engine.config()),
            engine,
            events: StreamEvents::new(&stream, cfg.segmenter),
            classes,
            viz,
            callback,
            _vs: vs,
        })
    }
}

impl StreamSegmenter {
    /// Starts building a segmenter running `model` (a [`Model`], or a
    /// [`crate::model::checkpoint::LoadedModel`]).
    pub fn builder(model: impl Into<Model>) -> StreamSegmenterBuilder {
        StreamSegmenterBuilder {
            model: model.into(),
            stream: "stream".to_owned(),
            cfg: None,
            viz: VizTap::off(),
            callback: None,
            window_threads: 1,
        }
    }

    /// Loads a checkpoint (`.safetensors` with its `.json` beside it) onto `device`, with the
    /// settings it implies. Shorthand for [`Model::load`] and [`StreamSegmenter::builder`].
    pub fn from_checkpoint(path: &Path, device: Device, stream: &str) -> Result<Self> {
        Self::builder(Model::load(path, device)?).stream(stream).build()
    }

    /// `model` with the settings its checkpoint implies. Shorthand for
    /// [`StreamSegmenter::builder`].
    pub fn new(model: impl Into<Model>, stream: &str) -> Result<Self> {
        Self::builder(model).stream(stream).build()
    }

    /// `model` with settings of the caller's. Shorthand for [`StreamSegmenter::builder`].
    pub fn with_config(model: impl Into<Model>, stream: &str, cfg: StreamConfig) -> Result<Self> {
        Self::builder(model).stream(stream).config(cfg).build()
    }

    /// The stream's name, as events carry it.
    pub fn stream(&self) -> &str {
        self.events.stream()
    }

    /// The class names of the model.
    pub fn classes(&self) -> &ClassMap {
        &self.classes
    }

    /// The settings in use (the modality normalisation is the model's).
    pub fn engine_config(&self) -> &EngineConfig {
        self.engine.config()
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
        let callback = &mut self.callback;
        self.events
            .frames(&finals, &self.classes, &self.viz, &mut |e| emit(callback, &mut events, e));
        Ok(events)
    }

    /// End of the stream: finalises the pending frames, closes the open segment and reports
    /// [`SegmentEvent::StreamEnded`] with [`EndReason::Finished`]. The segmenter starts afresh
    /// afterwards.
    pub fn finish(&mut self) -> Result<Vec<SegmentEvent>> {
        let finals = self.engine.flush(&mut self.state)?;
        let mut events = Vec::new();
        let callback = &mut self.callback;
        let mut sink = |e| emit(callback, &mut events, e);
        self.events.frames(&finals, &self.classes, &self.viz, &mut sink);
        let frames = self.state.counters().frames;
        self.events.end(frames, EndReason::Finished, &self.classes, &self.viz, &mut sink);
        self.state = StreamState::new(self.engine.config());
        Ok(events)
    }
}

impl StreamSegmenter {
    /// The frames a stream of `frames` finalises, each with the position (in `frames`) of the
    /// frame whose arrival finalised it; no events. The stream starts afresh afterwards. For
    /// replaying segmenter settings over one model pass ([`crate::online`]).
    pub(crate) fn finalise(&mut self, frames: &[Frame]) -> Result<Vec<(FinalFrame, usize)>> {
        let mut out = Vec::new();
        for (position, frame) in frames.iter().enumerate() {
            let finals = self
                .engine
                .push_frames(&mut [(
                    &mut self.state,
                    std::slice::from_ref(frame),
                    Schedule::Every,
                )])?
                .pop()
                .unwrap_or_default();
            out.extend(finals.into_iter().map(|f| (f, position)));
        }
        let last = frames.len().saturating_sub(1);
        out.extend(self.engine.flush(&mut self.state)?.into_iter().map(|f| (f, last)));
        self.state = StreamState::new(self.engine.config());
        Ok(out)
    }
}

/// Hands `event` to the app's callback, if any, then to the returned events.
fn emit(callback: &mut Option<EventCallback>, events: &mut Vec<SegmentEvent>, event: SegmentEvent) {
    if let Some(cb) = callback.as_mut() {
        cb(&event);
    }
    events.push(event);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn the_segmenter_and_its_builder_can_move_to_another_thread() {
        assert_send::<StreamSegmenter>();
        assert_send::<StreamSegmenterBuilder>();
    }
}
