//! [`Pipeline`]: sources, inference and segmentation on their own named threads.
//!
//! ```text
//! source pumps ──SourceEvent──▶ skelseg::infer (Engine: DSMI per frame, MFAI per hop, batched
//!   over streams) ──finalised frames──▶ skelseg::segment (one Segmenter per stream)
//!   ──SegmentEvent──▶ events channel and/or callback
//! ```
//!
//! ## Ordering
//! Events of one stream arrive in order; events of different streams interleave.
//!
//! ## Backpressure
//! Live sources drop their oldest frames when the pipeline cannot keep up (a stale pose is
//! worthless; the drops are counted in the source stats). From the pumps on, every edge is
//! bounded and lossless: when the consumer of the events channel stops reading, the pipeline
//! waits for it. When the inference worker falls behind, it skips windows, never frames.
//!
//! ## Shutdown
//! [`Pipeline::shutdown`] (or drop) stops the sources, ends every open stream, flushes every
//! open segment to the consumers, and joins the threads. [`Pipeline::wait`] does the same once
//! every source has finished by itself (file replays).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::io::ClassMap;
use crate::model::Model;
use crate::source::{EndReason, FrameSource, SourceEvent, SourcePoll, SourceStats};
use crate::stream::engine::{Engine, StreamState};
use crate::stream::events::SegmentEvent;
use crate::stream::segmenter::{FinalFrame, Segmenter};
use crate::stream::sync::StreamConfig;
use crate::stream::tap::VizTap;

/// How long a pump waits on its source before checking for shutdown.
const POLL: Duration = Duration::from_millis(20);
/// Capacity of the internal channels (frames or batches in flight).
const CHANNEL_CAPACITY: usize = 1024;

/// Figures of a running or finished pipeline.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineStats {
    /// Frames that reached the inference worker.
    pub frames: u64,
    /// Frames finalised.
    pub finalised: u64,
    /// MFAI windows run (summed over streams).
    pub windows: u64,
    /// Windows skipped because the worker was behind.
    pub skipped_windows: u64,
    /// Batched forward passes (DSMI steps and MFAI groups).
    pub forward_batches: u64,
    /// Streams seen.
    pub streams: u64,
    /// Segments committed.
    pub segments: u64,
    /// Latency samples in milliseconds: from the arrival of the frame that triggered a window
    /// to the finalised labels it produced (lookahead not included).
    #[serde(skip)]
    pub latency_ms: Vec<f64>,
    /// Per-source counters, in the order the sources were added.
    #[serde(skip)]
    pub sources: Vec<SourceStats>,
}

impl PipelineStats {
    /// Latency percentile `q` (0..1) in milliseconds, NaN without samples.
    pub fn latency_percentile_ms(&self, q: f64) -> f64 {
        let mut v = self.latency_ms.clone();
        v.sort_by(f64::total_cmp);
        crate::online::percentile(&v, q)
    }
}

/// A consumer of events, called on the segmenter thread.
pub type EventCallback = Box<dyn FnMut(&SegmentEvent) + Send>;

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    model: Model,
    cfg: StreamConfig,
    sources: Vec<Box<dyn FrameSource>>,
    callback: Option<EventCallback>,
    channel: bool,
    viz: VizTap,
}

impl PipelineBuilder {
    /// A pipeline running `model` (a [`Model`], or a
    /// [`crate::model::checkpoint::LoadedModel`]) with the settings its checkpoint implies
    /// ([`StreamConfig::from_checkpoint`]).
    pub fn new(model: impl Into<Model>) -> Self {
        let model = model.into();
        PipelineBuilder {
            cfg: StreamConfig::from_checkpoint(model.meta()),
            model,
            sources: Vec::new(),
            callback: None,
            channel: true,
            viz: VizTap::off(),
        }
    }

    /// Replaces the settings (start from [`StreamConfig::from_checkpoint`] to keep what the
    /// checkpoint knows).
    pub fn config(mut self, cfg: StreamConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Adds a source; each gets its own pump thread.
    pub fn source(mut self, source: impl FrameSource + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// Adds a boxed source.
    pub fn boxed_source(mut self, source: Box<dyn FrameSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Calls `f` for every event on the segmenter thread (keep it short).
    pub fn on_event(mut self, f: impl FnMut(&SegmentEvent) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Whether events also go to [`Pipeline::events`] (default true). Turn it off when a
    /// callback consumes everything, so an unread channel cannot stall the pipeline.
    pub fn event_channel(mut self, on: bool) -> Self {
        self.channel = on;
        self
    }

    /// Shows frames, probabilities and committed segments through `viz` (lossy: the
    /// visualiser never slows the pipeline).
    pub fn viz(mut self, viz: VizTap) -> Self {
        self.viz = viz;
        self
    }

    /// Starts the threads.
    pub fn start(self) -> Result<Pipeline> {
        let PipelineBuilder { model, cfg, sources, callback, channel, viz } = self;
        let classes = model.classes().clone();
        let device = model.device();
        let (vs, net, _meta) = model.into_parts();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(PipelineStats {
            sources: vec![SourceStats::default(); sources.len()],
            ..PipelineStats::default()
        }));
        let (tx_frames, rx_frames) = bounded::<Arrival>(CHANNEL_CAPACITY);
        let (tx_finals, rx_finals) = bounded::<WorkerOut>(CHANNEL_CAPACITY);
        let (tx_events, rx_events) = bounded::<SegmentEvent>(CHANNEL_CAPACITY);

        let mut handles = Vec::new();
        for (i, source) in sources.into_iter().enumerate() {
            let (tx, stop, stats) = (tx_frames.clone(), Arc::clone(&stop), Arc::clone(&stats));
            handles.push(spawn(&format!("skelseg::source{i}"), move || {
                pump(i, source, tx, stop, stats)
            })?);
        }
        drop(tx_frames);
        let engine = Engine::new(net, device, cfg.engine.clone())?;
        // libtorch's intra-op thread count is per thread (OpenMP): carry the caller's setting
        // over to the worker, or it would run with the library default.
        let threads = tch::get_num_threads();
        {
            let (stats, viz) = (Arc::clone(&stats), viz.clone());
            handles.push(spawn("skelseg::infer", move || {
                tch::set_num_threads(threads);
                let _keep_alive = vs;
                infer(engine, rx_frames, tx_finals, stats, viz)
            })?);
        }
        {
            let stats = Arc::clone(&stats);
            let seg_cfg = cfg.segmenter.clone();
            let tx = channel.then_some(tx_events);
            handles.push(spawn("skelseg::segment", move || {
                segment(seg_cfg, classes, rx_finals, tx, callback, stats, viz)
            })?);
        }
        Ok(Pipeline { events: rx_events, stop, stats, handles })
    }
}

/// A running pipeline. Dropping it shuts it down (see the module docs).
#[must_use = "the pipeline shuts down when dropped"]
pub struct Pipeline {
    events: Receiver<SegmentEvent>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<PipelineStats>>,
    handles: Vec<JoinHandle<Result<()>>>,
}

impl Pipeline {
    /// The event channel (lossless, bounded: read it, or turn it off in the builder).
    pub fn events(&self) -> &Receiver<SegmentEvent> {
        &self.events
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PipelineStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// True once every thread has finished (all sources ended and everything was flushed).
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    /// Stops the sources, flushes every open segment and joins the threads. Returns the final
    /// counters and the events nobody had read yet (the closing segments among them).
    pub fn shutdown(mut self) -> Result<(PipelineStats, Vec<SegmentEvent>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until every source has finished by itself (file replays), then joins like
    /// [`Pipeline::shutdown`]. Events are collected while waiting, so nothing needs to read the
    /// channel meanwhile.
    pub fn wait(mut self) -> Result<(PipelineStats, Vec<SegmentEvent>)> {
        self.join()
    }

    fn join(&mut self) -> Result<(PipelineStats, Vec<SegmentEvent>)> {
        // Collect events while joining, so a full channel cannot block the segmenter. The
        // channel disconnects when the segmenter thread ends.
        let events = self.events.clone();
        let collector = std::thread::Builder::new()
            .name("skelseg::collect".into())
            .spawn(move || events.iter().collect::<Vec<_>>())
            .map_err(|source| Error::SpawnThread { name: "skelseg::collect".into(), source })?;
        let mut first_error = None;
        for handle in self.handles.drain(..) {
            let name = handle.thread().name().unwrap_or("skelseg").to_owned();
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(thread = %name, error = %e, "pipeline stage failed");
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(Error::invalid(
                        "pipeline",
                        format!("thread {name} panicked"),
                    ));
                }
            }
        }
        let rest = collector.join().unwrap_or_default();
        match first_error {
            Some(e) => Err(e),
            None => Ok((self.stats(), rest)),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.join() {
            tracing::error!(error = %e, "pipeline shut down with an error");
        }
    }
}

fn spawn(
    name: &str,
    f: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<JoinHandle<Result<()>>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|source| Error::SpawnThread { name: name.to_owned(), source })
}

/// A source event and when it reached the pipeline.
struct Arrival {
    event: SourceEvent,
    at: Instant,
    /// Whether the source delivers at the sensor's pace ([`FrameSource::is_live`]).
    live: bool,
}

enum WorkerOut {
    Finals { stream: Arc<str>, frames: Vec<FinalFrame> },
    Ended { stream: Arc<str>, frames: u64, reason: EndReason },
}

/// Moves one source's events into the worker; on shutdown, ends the streams it saw.
fn pump(
    index: usize,
    mut source: Box<dyn FrameSource>,
    tx: Sender<Arrival>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<PipelineStats>>,
) -> Result<()> {
    let mut open: Vec<crate::source::StreamId> = Vec::new();
    let live = source.is_live();
    let publish = |source: &dyn FrameSource| {
        if let Ok(mut s) = stats.lock() {
            s.sources[index] = source.stats();
        }
    };
    while !stop.load(Ordering::Relaxed) {
        match source.next_event(POLL) {
            SourcePoll::Event(event) => {
                match &event {
                    SourceEvent::Frame { stream, .. } if !open.contains(stream) => {
                        open.push(stream.clone())
                    }
                    SourceEvent::Ended { stream, .. } => open.retain(|s| s != stream),
                    _ => {}
                }
                if tx.send(Arrival { event, at: Instant::now(), live }).is_err() {
                    break; // the worker is gone
                }
            }
            SourcePoll::Timeout => publish(&*source),
            SourcePoll::Finished => break,
        }
    }
    publish(&*source);
    drop(source); // closes listeners before the streams are reported ended
    for stream in open {
        let event = SourceEvent::Ended { stream, reason: EndReason::Shutdown };
        if tx.send(Arrival { event, at: Instant::now(), live }).is_err() {
            break;
        }
    }
    Ok(())
}

/// The inference worker: owns the model and every stream's window.
fn infer(
    engine: Engine,
    rx: Receiver<Arrival>,
    tx: Sender<WorkerOut>,
    stats: Arc<Mutex<PipelineStats>>,
    viz: VizTap,
) -> Result<()> {
    struct Stream {
        id: Arc<str>,
        state: StreamState,
        queue: VecDeque<(Frame, Instant)>,
        ended: Option<EndReason>,
        live: bool,
    }
    let hop = engine.config().hop_frames;
    let catch_up = engine.config().catch_up;
    let mut streams: Vec<Stream> = Vec::new();
    let mut latencies = Vec::new();
    // Block for the first arrival, then take whatever else is already there.
    while let Ok(first) = rx.recv() {
        for Arrival { event, at, live } in std::iter::once(first).chain(rx.try_iter()) {
            let key: Arc<str> = Arc::from(event.stream().as_str());
            let pos = match streams.iter().position(|s| s.id == key) {
                Some(p) => p,
                None => {
                    streams.push(Stream {
                        id: key,
                        // Spread the streams' windows over the hop.
                        state: StreamState::with_phase(engine.config(), streams.len()),
                        queue: VecDeque::new(),
                        ended: None,
                        live,
                    });
                    if let Ok(mut s) = stats.lock() {
                        s.streams += 1;
                    }
                    streams.len() - 1
                }
            };
            match event {
                SourceEvent::Frame { frame, .. } => {
                    viz.frame(&streams[pos].id, &frame);
                    streams[pos].queue.push_back((frame, at));
                }
                SourceEvent::Ended { reason, .. } => streams[pos].ended = Some(reason),
            }
        }

        // Live streams with a backlog catch up with one window; the rest go in lockstep batches.
        let mut outputs: Vec<(usize, Vec<FinalFrame>)> = Vec::new();
        for (i, s) in streams.iter_mut().enumerate() {
            if catch_up && s.live && s.queue.len() > hop {
                let (frames, arrivals): (Vec<Frame>, Vec<Instant>) = s.queue.drain(..).unzip();
                let finals = engine.push_many(&mut s.state, &frames)?;
                if let (false, Some(at)) = (finals.is_empty(), arrivals.last()) {
                    latencies.push(at.elapsed().as_secs_f64() * 1e3);
                }
                outputs.push((i, finals));
            }
        }
        loop {
            let mut batch: Vec<(usize, Frame, Instant)> = Vec::new();
            for (i, s) in streams.iter_mut().enumerate() {
                if let Some((frame, at)) = s.queue.pop_front() {
                    batch.push((i, frame, at));
                }
            }
            if batch.is_empty() {
                break;
            }
            let mut states: Vec<&mut StreamState> = Vec::new();
            let mut wanted = batch.iter().map(|(i, _, _)| *i).peekable();
            for (i, s) in streams.iter_mut().enumerate() {
                if wanted.peek() == Some(&i) {
                    states.push(&mut s.state);
                    wanted.next();
                }
            }
            let mut pairs: Vec<(&mut StreamState, &Frame)> =
                states.into_iter().zip(batch.iter().map(|(_, f, _)| f)).collect();
            let finals = engine.push(&mut pairs)?;
            for ((i, _, at), f) in batch.iter().zip(finals) {
                if !f.is_empty() {
                    latencies.push(at.elapsed().as_secs_f64() * 1e3);
                    outputs.push((*i, f));
                }
            }
        }
        for (i, frames) in outputs {
            if !frames.is_empty() {
                let stream = Arc::clone(&streams[i].id);
                if tx.send(WorkerOut::Finals { stream, frames }).is_err() {
                    return Ok(());
                }
            }
        }
        // Ended streams: finalise what is pending, report, forget.
        let mut i = 0;
        while i < streams.len() {
            if streams[i].ended.is_some() && streams[i].queue.is_empty() {
                let mut s = streams.swap_remove(i);
                let frames = engine.flush(&mut s.state)?;
                let stream = Arc::clone(&s.id);
                publish_counters(&stats, &s.state, &mut latencies);
                let received = s.state.counters().frames;
                let reason = s.ended.take().unwrap_or(EndReason::Shutdown);
                if !frames.is_empty()
                    && tx.send(WorkerOut::Finals { stream: Arc::clone(&stream), frames }).is_err()
                {
                    return Ok(());
                }
                if tx.send(WorkerOut::Ended { stream, frames: received, reason }).is_err() {
                    return Ok(());
                }
            } else {
                i += 1;
            }
        }
        if let Ok(mut s) = stats.lock() {
            s.latency_ms.append(&mut latencies);
        }
    }
    // Every pump is gone: end the streams that are still open.
    for mut s in streams {
        let frames = engine.flush(&mut s.state)?;
        publish_counters(&stats, &s.state, &mut latencies);
        let stream = Arc::clone(&s.id);
        if !frames.is_empty() {
            tx.send(WorkerOut::Finals { stream: Arc::clone(&stream), frames }).ok();
        }
        let reason = s.ended.unwrap_or(EndReason::Shutdown);
        tx.send(WorkerOut::Ended { stream, frames: s.state.counters().frames, reason }).ok();
    }
    Ok(())
}

fn publish_counters(stats: &Mutex<PipelineStats>, state: &StreamState, latencies: &mut Vec<f64>) {
    if let Ok(mut s) = stats.lock() {
        let c = state.counters();
        s.frames += c.frames;
        s.finalised += c.finalised;
        s.windows += c.windows;
        s.skipped_windows += c.skipped_windows;
        s.latency_ms.append(latencies);
    }
}

/// The segmenter stage: one [`Segmenter`] per stream, events out.
fn segment(
    cfg: crate::stream::SegmenterConfig,
    classes: ClassMap,
    rx: Receiver<WorkerOut>,
    tx: Option<Sender<SegmentEvent>>,
    mut callback: Option<EventCallback>,
    stats: Arc<Mutex<PipelineStats>>,
    viz: VizTap,
) -> Result<()> {
    let mut segmenters: HashMap<Arc<str>, Segmenter> = HashMap::new();
    let mut emit = |event: SegmentEvent| {
        if let (SegmentEvent::SegmentEnded { .. }, Ok(mut s)) = (&event, stats.lock()) {
            s.segments += 1;
        }
        viz.event(&event);
        if let Some(cb) = callback.as_mut() {
            cb(&event);
        }
        if let Some(tx) = &tx {
            // A dropped receiver means nobody listens any more; keep flushing to the callback.
            tx.send(event).ok();
        }
    };
    for out in rx.iter() {
        match out {
            WorkerOut::Finals { stream, frames } => {
                let seg = segmenters
                    .entry(Arc::clone(&stream))
                    .or_insert_with(|| Segmenter::new(cfg.clone()));
                for f in &frames {
                    viz.scores(&stream, f);
                    for o in seg.push(f) {
                        emit(SegmentEvent::from_output(&stream, &classes, o));
                    }
                }
            }
            WorkerOut::Ended { stream, frames, reason } => {
                if let Some(mut seg) = segmenters.remove(&stream) {
                    for o in seg.flush() {
                        emit(SegmentEvent::from_output(&stream, &classes, o));
                    }
                }
                emit(SegmentEvent::StreamEnded { stream: stream.to_string(), frames, reason });
            }
        }
    }
    Ok(())
}
