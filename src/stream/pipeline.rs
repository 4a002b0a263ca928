//! [`Pipeline`]: sources, inference and segmentation on their own named threads.
//!
//! ```text
//! source pumps ──SourceEvent──▶ skelseg::infer0..N (one Engine and model copy each; a stream
//!   always goes to the same worker) ──finalised frames──▶ skelseg::segment (one Segmenter per
//!   stream) ──SegmentEvent──▶ events channel and/or callback
//! ```
//!
//! ## Workers
//! [`PipelineBuilder::workers`] inference workers (default [`default_workers`]: one per core)
//! each own a copy of the model and run libtorch with their share of the caller's intra-op
//! threads (one each on a 2-core machine with 2 workers). A stream goes to the worker its id
//! hashes to (FNV-1a), so the split is the same every run. A worker batches: one DSMI forward
//! for every frame that arrived since its last step, one MFAI forward per window length for
//! every window that came due. A step with a full MFAI batch of windows per thread (a replay,
//! a stream catching up) is split over the worker's [`PipelineBuilder::window_threads`] (default
//! [`default_window_threads`]: two on a multi-core CPU), so one stream can use two cores.
//!
//! The sources and the segmenter need little: on the 2-core machine of BENCHMARKS.md ("Window
//! threads") two workers sustained 44 live 30-fps streams where one sustained 28, and window
//! threads took a single-stream replay from 25× to 47× real time.
//!
//! ## Ordering
//! Events of one stream arrive in order; events of different streams interleave. A stream id
//! that ends and comes back (a UDP peer that idled out) is a new stream with fresh state: its
//! events follow the old one's `stream_ended`. Two sources that bring the same id at the same
//! time (two recordings named alike) are never mixed into one stream: the later one runs as
//! `ID#N`, `N` its source's index, with a warning in the log.
//!
//! ## Backpressure and overload
//! Live sources drop their oldest frames when the pipeline cannot keep up (a stale pose is
//! worthless; the drops are counted in the source stats). From the pumps to the segmenter every
//! edge is bounded and lossless. A live stream that falls behind (more than a hop of frames
//! waiting) first runs its due windows as one batch; if it is still behind at the next step, its
//! hop widens (4 → 8 → 16 frames; [`PipelineStats::widenings`], a warning in the log); only at
//! the widest hop, with more than two hops waiting, are windows skipped
//! ([`PipelineStats::skipped_windows`]). Frames are never skipped. After 60 frames on time the
//! hop narrows again, one step at a time. Replays ([`FrameSource::is_live`] false) and
//! `catch_up: false` run every window at the configured hop, batched.
//!
//! The events channel: segment and stream events are never dropped — when its reader stops
//! reading, the pipeline waits for it. Per-frame `frame_label` events are dropped when the
//! channel is full, and counted ([`PipelineStats::dropped_frame_events`]). The callback sees
//! every event.
//!
//! ## Memory
//! A worker allocates tensors of another size every step, and large ones when it catches up;
//! glibc would keep much of that memory after it is freed. Once idle after a large batch, and
//! every 10 s while it works, a worker hands the free pages back to the system (`malloc_trim`,
//! glibc only; [`PipelineStats::memory_trims`]), so the resident size follows what is in use
//! rather than creeping up to the worst burst's high-water mark.
//!
//! ## Failures
//! An inference worker that fails (a libtorch error or a panic) stops the sources, closes the
//! open segments of its streams with what was finalised (`stream_ended` with reason
//! `InferenceFailed`), and the other stages shut down as usual. A panicking event callback is
//! not called again; the channel still gets every event. Either way [`Pipeline::shutdown`] and
//! [`Pipeline::wait`] return [`Error::PipelineFailed`] with the unread events.
//!
//! ## Shutdown
//! [`Pipeline::shutdown`] (or drop) stops the sources, ends every open stream, flushes every
//! open segment to the consumers, and joins the threads. [`Pipeline::wait`] does the same once
//! every source has finished by itself (file replays).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::ClassMap;
use crate::source::{EndReason, FrameSource, SourceEvent, SourcePoll, SourceStats, StreamId};
use crate::stream::engine::{Engine, StreamState};
use crate::stream::events::{SegmentEvent, StreamEvents};
use crate::stream::latency::LatencyHistogram;
use crate::stream::segmenter::SegmenterConfig;
use crate::stream::sync::StreamConfig;
use crate::stream::tap::VizTap;
use crate::stream::window_threads::{self, replicate};
#[cfg(test)]
use crate::stream::worker::Fault;
use crate::stream::worker::{Arrival, StreamKey, Worker, WorkerOut, serve};
use crate::{Device, Model};

/// How long a pump waits on its source before checking for shutdown.
const POLL: Duration = Duration::from_millis(20);
/// The longest a pump reads what its source has left on shutdown.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Capacity of the internal channels (frames or batches in flight).
pub(super) const CHANNEL_CAPACITY: usize = 1024;

/// Figures of a running or finished pipeline.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineStats {
    /// Frames that reached an inference worker.
    pub frames: u64,
    /// Frames finalised.
    pub finalised: u64,
    /// MFAI windows run (summed over streams).
    pub windows: u64,
    /// Windows skipped because a worker was behind at the widest hop.
    pub skipped_windows: u64,
    /// Times a live stream's hop was widened because it fell behind.
    pub widenings: u64,
    /// The widest hop (frames) any stream ran at.
    pub max_hop_frames: usize,
    /// Batched engine calls (one DSMI forward plus the MFAI forwards of the windows due).
    pub forward_batches: u64,
    /// Streams seen (an id that ends and comes back counts again).
    pub streams: u64,
    /// Segments committed.
    pub segments: u64,
    /// `frame_label` events dropped because the events channel was full.
    pub dropped_frame_events: u64,
    /// Frames a failed worker had received but could not process.
    pub unprocessed_frames: u64,
    /// Inference workers.
    pub workers: usize,
    /// Threads each worker runs its batches on ([`PipelineBuilder::window_threads`]).
    pub window_threads: usize,
    /// Times a worker handed freed memory back to the system (module docs, "Memory").
    pub memory_trims: u64,
    /// Milliseconds those took, in all.
    pub memory_trim_ms: f64,
    /// Latency in milliseconds from the arrival of the frame that triggered a window to the
    /// finalised labels it produced (lookahead not included); constant memory.
    #[serde(skip)]
    pub latency: LatencyHistogram,
    /// Per-source counters, in the order the sources were added.
    #[serde(skip)]
    pub sources: Vec<SourceStats>,
}

impl PipelineStats {
    /// Latency percentile `q` (0..1) in milliseconds, NaN without samples.
    pub fn latency_percentile_ms(&self, q: f64) -> f64 {
        self.latency.percentile_ms(q)
    }

    pub(super) fn add(&mut self, state: &StreamState) {
        let c = state.counters();
        self.frames += c.frames;
        self.finalised += c.finalised;
        self.windows += c.windows;
        self.skipped_windows += c.skipped_windows;
        self.widenings += c.widenings;
        self.max_hop_frames = self.max_hop_frames.max(c.max_hop_frames);
    }
}

/// A consumer of events, called on the segmenter thread.
pub type EventCallback = Box<dyn FnMut(&SegmentEvent) + Send>;

/// The default number of inference workers: one per available core (the source pumps and the
/// segmenter need little; module docs, "Workers").
pub fn default_workers() -> usize {
    cores()
}

/// The default threads per worker for its large steps ([`PipelineBuilder::window_threads`]):
/// on a multi-core CPU, the cores each worker would have to itself, and at least two, so that a
/// stream replayed or catching up runs on two cores while the other workers idle (window
/// threads sleep until a step is shared; under full load sharing costs about nothing); one on
/// a single core or a GPU.
pub fn default_window_threads(workers: usize, device: Device) -> usize {
    if device.is_cuda() {
        return 1;
    }
    let cores = cores();
    (cores / workers.max(1)).max(cores.min(2))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    model: Model,
    cfg: StreamConfig,
    sources: Vec<Box<dyn FrameSource>>,
    callback: Option<EventCallback>,
    channel: bool,
    viz: VizTap,
    workers: usize,
    window_threads: Option<usize>,
    #[cfg(test)]
    fault: Option<Fault>,
}

impl PipelineBuilder {
    /// A pipeline running `model` with the settings its checkpoint implies
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
            workers: default_workers(),
            window_threads: None,
            #[cfg(test)]
            fault: None,
        }
    }

    /// Replaces the settings (start from [`StreamConfig::from_checkpoint`] to keep what the
    /// checkpoint knows).
    pub fn config(mut self, cfg: StreamConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Runs `n` inference workers (at least one), each with its own copy of the model and an
    /// equal share of libtorch's intra-op threads; default [`default_workers`].
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Runs each worker's due windows and frames on `n` threads: the worker's and `n − 1`
    /// threads of its own, each with a copy of the model, that take an even share of every
    /// batch (one stream replayed or catching up, several streams due on the same frame).
    /// Default [`default_window_threads`]; the outputs are those of one thread, to float
    /// rounding.
    pub fn window_threads(mut self, n: usize) -> Self {
        self.window_threads = Some(n.max(1));
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

    /// Calls `f` for every event on the segmenter thread (keep it short). A panic in `f` is
    /// reported by [`Pipeline::shutdown`]; `f` is not called again.
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

    /// Makes the first worker fail once it has received `frames` frames.
    #[cfg(test)]
    fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Starts the threads.
    pub fn start(self) -> Result<Pipeline> {
        let PipelineBuilder {
            model,
            cfg,
            sources,
            callback,
            channel,
            viz,
            workers,
            window_threads,
            ..
        } = self;
        #[cfg(test)]
        let mut fault = self.fault;
        cfg.validate()?;
        let classes = model.classes().clone();
        let device = model.device();
        let window_threads =
            window_threads.unwrap_or_else(|| default_window_threads(workers, device));
        // Copies first: the original moves into the first worker.
        let mut models = Vec::with_capacity(workers);
        for _ in 1..workers {
            models.push(replicate(model.var_store(), model.config())?);
        }
        let (vs, net, _meta) = model.into_parts();
        models.insert(0, (vs, net));
        let shared = Arc::new(Shared::new(PipelineStats {
            sources: vec![SourceStats::default(); sources.len()],
            workers,
            window_threads,
            ..PipelineStats::default()
        }));
        let (tx_finals, rx_finals) = bounded::<WorkerOut>(CHANNEL_CAPACITY);
        let (tx_events, rx_events) = bounded::<SegmentEvent>(CHANNEL_CAPACITY);

        let mut handles = Vec::new();
        // libtorch's intra-op thread count is per thread (OpenMP): share the caller's setting
        // among the workers' threads, or each would run with the library default (every core).
        let threads = (tch::get_num_threads() / (workers * window_threads) as i32).max(1);
        let mut inboxes = Vec::with_capacity(workers);
        for (w, (vs, model)) in models.into_iter().enumerate() {
            let (tx, rx) = bounded::<Arrival>(CHANNEL_CAPACITY);
            inboxes.push(tx);
            let name = format!("skelseg::infer{w}");
            let helpers =
                window_threads::spawn_copies(&name, &vs, &model, window_threads - 1, threads)?;
            let engine = Engine::new(model, device, cfg.engine.clone())?.with_helpers(helpers);
            #[allow(unused_mut)]
            let mut worker = Worker::new(engine, viz.clone(), Arc::clone(&shared));
            #[cfg(test)]
            if w == 0 {
                worker.fault = fault.take();
            }
            let (tx, shared) = (tx_finals.clone(), Arc::clone(&shared));
            handles.push(spawn(&name, move || {
                tch::set_num_threads(threads);
                let _keep_alive = vs;
                serve(worker, rx, tx, &shared)
            })?);
        }
        drop(tx_finals);
        let inboxes: Arc<[Sender<Arrival>]> = inboxes.into();
        for (i, source) in sources.into_iter().enumerate() {
            let (inboxes, shared) = (Arc::clone(&inboxes), Arc::clone(&shared));
            handles.push(spawn(&format!("skelseg::source{i}"), move || {
                pump(i, source, &inboxes, &shared)
            })?);
        }
        {
            let sink = Sink {
                tx: channel.then_some(tx_events),
                callback,
                callback_panic: None,
                shared: Arc::clone(&shared),
            };
            let seg_cfg = cfg.segmenter.clone();
            handles.push(spawn("skelseg::segment", move || {
                segment(seg_cfg, classes, rx_finals, sink, viz)
            })?);
        }
        Ok(Pipeline { events: rx_events, shared, handles })
    }
}

/// What the threads share: the stop flag, the counters and which source owns each open
/// stream id.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) stop: AtomicBool,
    pub(super) stats: Mutex<PipelineStats>,
    owners: Mutex<HashMap<StreamId, usize>>,
}

impl Shared {
    pub(super) fn new(stats: PipelineStats) -> Self {
        Shared {
            stop: AtomicBool::new(false),
            stats: Mutex::new(stats),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a stream that `source` opens as `id`; returns the id it runs under: `id`, or
    /// `id#source` (then `id#source.k`) when another source has `id` open.
    fn claim(&self, id: &StreamId, source: usize) -> StreamId {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let mut run_as = id.clone();
        let mut k = 1;
        while owners.contains_key(&run_as) {
            run_as = match k {
                1 => StreamId::new(format!("{}#{source}", id.as_str())),
                _ => StreamId::new(format!("{}#{source}.{k}", id.as_str())),
            };
            k += 1;
        }
        owners.insert(run_as.clone(), source);
        run_as
    }

    /// Frees an id [`Shared::claim`] returned, once its end has been handed on.
    fn release(&self, run_as: &StreamId) {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner).remove(run_as);
    }

    /// The counters, also after a thread panicked while holding them (they are plain numbers,
    /// still meaningful).
    pub(super) fn stats(&self) -> MutexGuard<'_, PipelineStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running pipeline. Dropping it shuts it down (see the module docs).
#[must_use = "the pipeline shuts down when dropped"]
pub struct Pipeline {
    events: Receiver<SegmentEvent>,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<Result<()>>>,
}

impl Pipeline {
    /// The event channel (bounded: read it, or turn it off in the builder; see the module docs
    /// for what happens when it is full).
    pub fn events(&self) -> &Receiver<SegmentEvent> {
        &self.events
    }

    /// A snapshot of the counters. Per-stream counters (frames, windows) are added when a
    /// stream ends.
    pub fn stats(&self) -> PipelineStats {
        self.shared.stats().clone()
    }

    /// True once every thread has finished (all sources ended and everything was flushed, or
    /// a stage failed and the pipeline shut itself down).
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    /// Stops the sources, flushes every open segment and joins the threads. Returns the final
    /// counters and the events nobody had read yet (the closing segments among them), or
    /// [`Error::PipelineFailed`] (with those events) when a stage failed.
    pub fn shutdown(mut self) -> Result<(PipelineStats, Vec<SegmentEvent>)> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until every source has finished by itself (file replays), then joins like
    /// [`Pipeline::shutdown`]. Events are collected while waiting, so nothing needs to read the
    /// channel meanwhile.
    pub fn wait(mut self) -> Result<(PipelineStats, Vec<SegmentEvent>)> {
        self.join()
    }

    fn join(&mut self) -> Result<(PipelineStats, Vec<SegmentEvent>)> {
        // Read the events while the stages finish, so a full channel cannot block the
        // segmenter. The channel disconnects when the segmenter thread ends.
        let mut rest = Vec::new();
        loop {
            match self.events.recv_timeout(POLL) {
                Ok(e) => rest.push(e),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    if self.is_finished() {
                        rest.extend(self.events.try_iter());
                        break;
                    }
                }
            }
        }
        let mut failure = None;
        for handle in self.handles.drain(..) {
            let name = handle.thread().name().unwrap_or("skelseg").to_owned();
            let message = match handle.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!("panicked: {}", panic_message(&*panic)),
            };
            tracing::error!(thread = %name, error = %message, "pipeline stage failed");
            failure.get_or_insert((name, message));
        }
        match failure {
            Some((stage, message)) => Err(Error::PipelineFailed { stage, message, events: rest }),
            None => Ok((self.stats(), rest)),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        self.shared.stop.store(true, Ordering::Relaxed);
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

pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// The worker a stream goes to: FNV-1a of its id, so the split is the same every run.
fn worker_for(stream: &str, workers: usize) -> usize {
    let hash = stream
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % workers.max(1) as u64) as usize
}

/// Moves one source's events to the workers; on shutdown, ends the streams it saw.
fn pump(
    index: usize,
    mut source: Box<dyn FrameSource>,
    inboxes: &[Sender<Arrival>],
    shared: &Shared,
) -> Result<()> {
    // This source's open streams: the id it gave each, and the id it runs under.
    let mut open: Vec<(StreamId, StreamId)> = Vec::new();
    let live = source.is_live();
    let inbox = |stream: &StreamId| &inboxes[worker_for(stream.as_str(), inboxes.len())];
    let publish = |source: &dyn FrameSource| shared.stats().sources[index] = source.stats();
    // Hands one event to its worker; false once a worker failed (the pipeline is stopping).
    let mut forward = |event: SourceEvent| {
        let (event, ended) = match event {
            SourceEvent::Frame { stream, frame } => {
                let run_as = match open.iter().find(|(id, _)| *id == stream) {
                    Some((_, run_as)) => run_as.clone(),
                    None => {
                        let run_as = shared.claim(&stream, index);
                        if run_as != stream {
                            tracing::warn!(
                                stream = %stream.as_str(),
                                runs_as = %run_as.as_str(),
                                "another source has a stream of this id open: renamed"
                            );
                        }
                        open.push((stream, run_as.clone()));
                        run_as
                    }
                };
                (SourceEvent::Frame { stream: run_as, frame }, None)
            }
            SourceEvent::Ended { stream, reason } => {
                match open.iter().position(|(id, _)| *id == stream) {
                    Some(i) => {
                        let (_, run_as) = open.swap_remove(i);
                        (SourceEvent::Ended { stream: run_as.clone(), reason }, Some(run_as))
                    }
                    // Ended without a frame: still this source's own stream, not another's.
                    None => {
                        let run_as = shared.claim(&stream, index);
                        (SourceEvent::Ended { stream: run_as.clone(), reason }, Some(run_as))
                    }
                }
            }
        };
        let sent = inbox(event.stream()).send(Arrival { event, at: Instant::now(), live }).is_ok();
        // Only now may another source open this id: its frames follow this end in the inbox.
        if let Some(run_as) = ended {
            shared.release(&run_as);
        }
        sent
    };
    let mut stopped = true;
    while !shared.stop.load(Ordering::Relaxed) {
        match source.next_event(POLL) {
            SourcePoll::Event(event) => {
                if !forward(event) {
                    stopped = false;
                    break;
                }
            }
            SourcePoll::Timeout => publish(&*source),
            SourcePoll::Finished => {
                stopped = false;
                break;
            }
        }
    }
    if stopped {
        // Shutdown: the source takes nothing new, and what it has already accepted still goes
        // through, so every frame it counted is processed (or dropped by a counted policy).
        // The time limit bounds sources that cannot stop taking input.
        source.close();
        let deadline = Instant::now() + DRAIN_LIMIT;
        while Instant::now() < deadline {
            let SourcePoll::Event(event) = source.next_event(Duration::ZERO) else { break };
            if !forward(event) {
                break;
            }
        }
    }
    publish(&*source);
    drop(source); // closes listeners before the streams are reported ended
    for (_, stream) in open {
        let to = inbox(&stream);
        let event = SourceEvent::Ended { stream: stream.clone(), reason: EndReason::Shutdown };
        // A failed worker no longer listens; the others still need their ends.
        to.send(Arrival { event, at: Instant::now(), live }).ok();
        shared.release(&stream);
    }
    Ok(())
}

/// Where the segmenter's events go: counters, the callback, the channel (with the drop policy
/// of the module docs).
struct Sink {
    tx: Option<Sender<SegmentEvent>>,
    callback: Option<EventCallback>,
    /// The message of the callback's panic, once it panicked.
    callback_panic: Option<String>,
    shared: Arc<Shared>,
}

impl Sink {
    fn emit(&mut self, event: SegmentEvent) {
        if matches!(event, SegmentEvent::SegmentEnded { .. }) {
            self.shared.stats().segments += 1;
        }
        if let Some(cb) = self.callback.as_mut()
            && let Err(panic) = catch_unwind(AssertUnwindSafe(|| cb(&event)))
        {
            let message = panic_message(&*panic);
            tracing::error!(panic = %message, "the event callback panicked; it gets no more events");
            self.callback = None;
            self.callback_panic = Some(message);
        }
        let Some(tx) = &self.tx else { return };
        if matches!(event, SegmentEvent::FrameLabel { .. }) {
            if let Err(TrySendError::Full(_)) = tx.try_send(event) {
                self.shared.stats().dropped_frame_events += 1;
            }
        } else {
            // Blocks while the reader is behind: segments are never dropped. An error means
            // the pipeline (and its receiver) is gone.
            tx.send(event).ok();
        }
    }
}

/// The segmenter stage: one [`StreamEvents`] per stream, events out.
fn segment(
    cfg: SegmenterConfig,
    classes: ClassMap,
    rx: Receiver<WorkerOut>,
    mut sink: Sink,
    viz: VizTap,
) -> Result<()> {
    let mut streams: HashMap<StreamKey, StreamEvents> = HashMap::new();
    let mut emit = |e| sink.emit(e);
    for out in &rx {
        match out {
            WorkerOut::Finals { key, frames } => {
                let events = streams
                    .entry(key)
                    .or_insert_with_key(|key| StreamEvents::new(&key.id, cfg.clone()));
                events.frames(&frames, &classes, &viz, &mut emit);
            }
            WorkerOut::Ended { key, frames, reason } => {
                let mut events =
                    streams.remove(&key).unwrap_or_else(|| StreamEvents::new(&key.id, cfg.clone()));
                events.end(frames, reason, &classes, &viz, &mut emit);
            }
        }
    }
    match sink.callback_panic.take() {
        Some(message) => Err(Error::invalid("event callback", format!("panicked: {message}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::stream::testing::{bundled_model, bundled_recording};
    use std::collections::VecDeque;

    use super::*;
    use crate::frame::Frame;
    use crate::source::{Pacing, ReplaySource};

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(PipelineStats::default()))
    }

    /// `(class, start, end)` of the committed segments of `stream`, in order.
    fn segments(events: &[SegmentEvent], stream: &str) -> Vec<(usize, u64, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                SegmentEvent::SegmentEnded { stream: s, class, start_frame, end_frame, .. }
                    if s == stream =>
                {
                    Some((*class, *start_frame, *end_frame))
                }
                _ => None,
            })
            .collect()
    }

    fn assert_tiles(segs: &[(usize, u64, u64)], frames: u64) {
        assert_eq!(segs.first().map(|s| s.1), Some(0), "{segs:?}");
        assert_eq!(segs.last().map(|s| s.2), Some(frames - 1), "{segs:?}");
        for pair in segs.windows(2) {
            assert_eq!(pair[1].1, pair[0].2 + 1, "{segs:?}");
        }
    }

    #[test]
    fn streams_go_to_the_same_worker_every_time_and_spread_over_the_workers() {
        let names: Vec<String> = (0..16).map(|s| format!("file:s{s:02}")).collect();
        let first: Vec<usize> = names.iter().map(|n| worker_for(n, 2)).collect();
        let again: Vec<usize> = names.iter().map(|n| worker_for(n, 2)).collect();
        assert_eq!(first, again);
        let on_zero = first.iter().filter(|&&w| w == 0).count();
        assert!((4..=12).contains(&on_zero), "{first:?}");
        assert!(names.iter().all(|n| worker_for(n, 1) == 0));
    }

    #[test]
    fn stats_survive_a_thread_that_panicked_holding_them() {
        let shared = shared();
        shared.stats().frames = 7;
        let holder = Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let _guard = holder.stats.lock().unwrap();
            panic!("poisoning the counters on purpose");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.stats.is_poisoned());
        let (_, rx) = bounded(1);
        let pipeline = Pipeline { events: rx, shared, handles: Vec::new() };
        assert_eq!(pipeline.stats().frames, 7);
    }

    fn failing(fault: Fault) {
        let rec = bundled_recording("r");
        let pipeline = PipelineBuilder::new(bundled_model())
            .workers(1)
            .fault(fault)
            .source(ReplaySource::new(rec, Pacing::Speed(8.0)).unwrap())
            .start()
            .unwrap();
        // The failure shuts the pipeline down by itself: no hang, no silent stop.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pipeline.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(pipeline.is_finished(), "the pipeline stopped after the failure");
        let Err(Error::PipelineFailed { stage, message, events }) = pipeline.shutdown() else {
            panic!("the failure must surface as an error");
        };
        assert_eq!(stage, "skelseg::infer0");
        match fault {
            Fault::Error(_) | Fault::FlushError(_) => {
                assert!(message.contains("libtorch failed"), "{message}")
            }
            Fault::Panic(_) => assert!(message.contains("panicked: test fault"), "{message}"),
        }
        // What was finalised before the failure is flushed as segments, then the stream ends.
        let Some(SegmentEvent::StreamEnded { frames, reason, .. }) = events.last() else {
            panic!("the stream must be ended: {events:?}");
        };
        assert_eq!(reason, &EndReason::InferenceFailed);
        assert!(*frames > 0 && *frames < 300, "{frames}");
        let segs = segments(&events, "file:r");
        assert!(!segs.is_empty());
        assert_tiles(&segs, segs.last().unwrap().2 + 1);
        assert!(segs.last().unwrap().2 < *frames);
    }

    #[test]
    fn an_inference_error_ends_the_streams_with_what_was_finalised_and_surfaces() {
        failing(Fault::Error(300));
    }

    #[test]
    fn an_inference_panic_ends_the_streams_with_what_was_finalised_and_surfaces() {
        failing(Fault::Panic(300));
    }

    #[test]
    fn a_failing_flush_still_ends_every_stream_of_the_worker_with_its_segments() {
        // Two replays on one worker; the shorter ends first and its flush fails.
        let mut short = bundled_recording("a");
        short.frames.truncate(100);
        let pipeline = PipelineBuilder::new(bundled_model())
            .workers(1)
            .fault(Fault::FlushError(50))
            .source(ReplaySource::new(short, Pacing::Speed(8.0)).unwrap())
            .source(ReplaySource::new(bundled_recording("b"), Pacing::Speed(8.0)).unwrap())
            .start()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pipeline.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let Err(Error::PipelineFailed { message, events, .. }) = pipeline.shutdown() else {
            panic!("the failure must surface as an error");
        };
        assert!(message.contains("libtorch failed at a flush"), "{message}");
        for id in ["file:a", "file:b"] {
            let ended: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    SegmentEvent::StreamEnded { stream, frames, reason } if stream == id => {
                        Some((*frames, reason.clone()))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(ended.len(), 1, "{id} ends once: {ended:?}");
            assert_eq!(ended[0].1, EndReason::InferenceFailed, "{id}");
            let segs = segments(&events, id);
            assert!(!segs.is_empty(), "{id} keeps the segments it had finalised");
            assert_tiles(&segs, segs.last().unwrap().2 + 1);
            assert!(segs.last().unwrap().2 < ended[0].0);
        }
    }

    #[test]
    fn a_panicking_callback_loses_no_event_of_the_channel_and_surfaces() {
        let rec = bundled_recording("r");
        let frames = rec.frames.len() as u64;
        let mut seen = 0;
        let pipeline = PipelineBuilder::new(bundled_model())
            .source(ReplaySource::new(rec, Pacing::AsFastAsPossible).unwrap())
            .on_event(move |e| {
                if matches!(e, SegmentEvent::SegmentEnded { .. }) {
                    seen += 1;
                    assert!(seen < 2, "a callback bug");
                }
            })
            .start()
            .unwrap();
        let Err(Error::PipelineFailed { stage, message, events }) = pipeline.wait() else {
            panic!("the callback's panic must surface");
        };
        assert_eq!(stage, "skelseg::segment");
        assert!(message.contains("a callback bug"), "{message}");
        assert_tiles(&segments(&events, "file:r"), frames);
        assert!(matches!(events.last(), Some(SegmentEvent::StreamEnded { .. })));
    }

    #[test]
    fn a_slow_reader_loses_per_frame_events_counted_and_no_segment() {
        let mut cfg = StreamConfig::from_checkpoint(&bundled_model().meta);
        cfg.segmenter.per_frame = true;
        let (a, b) = (bundled_recording("a"), bundled_recording("b"));
        let frames = a.frames.len() as u64;
        let pipeline = PipelineBuilder::new(bundled_model())
            .config(cfg)
            .source(ReplaySource::new(a, Pacing::AsFastAsPossible).unwrap())
            .source(ReplaySource::new(b, Pacing::AsFastAsPossible).unwrap())
            .start()
            .unwrap();
        // Nobody reads until the channel has overflowed.
        let deadline = Instant::now() + Duration::from_secs(120);
        while pipeline.stats().dropped_frame_events == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (stats, events) = pipeline.wait().unwrap();
        assert!(stats.dropped_frame_events > 0);
        let labels = events.iter().filter(|e| matches!(e, SegmentEvent::FrameLabel { .. })).count();
        assert_eq!(labels as u64 + stats.dropped_frame_events, stats.finalised);
        assert_eq!(stats.finalised, 2 * frames);
        for stream in ["file:a", "file:b"] {
            assert_tiles(&segments(&events, stream), frames);
        }
    }

    #[test]
    fn two_workers_share_the_streams_and_segment_every_frame() {
        let names = ["a", "b", "c", "d"];
        let mut builder = PipelineBuilder::new(bundled_model()).workers(2);
        for name in names {
            builder = builder.source(
                ReplaySource::new(bundled_recording(name), Pacing::AsFastAsPossible).unwrap(),
            );
        }
        let frames = bundled_recording("x").frames.len() as u64;
        let (stats, events) = builder.start().unwrap().wait().unwrap();
        assert_eq!(stats.workers, 2);
        assert_eq!(stats.finalised, 4 * frames);
        let ids = names.map(|n| format!("file:{n}"));
        let used: std::collections::BTreeSet<usize> =
            ids.iter().map(|s| worker_for(s, 2)).collect();
        assert_eq!(used.len(), 2, "both workers have streams");
        for id in &ids {
            assert_tiles(&segments(&events, id), frames);
        }
    }

    #[test]
    fn two_sources_with_one_stream_id_are_two_streams() {
        // Two recordings named alike, replayed together: never interleaved into one stream.
        let frames = bundled_recording("r").frames.len() as u64;
        let (stats, events) = PipelineBuilder::new(bundled_model())
            .workers(1)
            .source(ReplaySource::new(bundled_recording("r"), Pacing::Speed(16.0)).unwrap())
            .source(ReplaySource::new(bundled_recording("r"), Pacing::Speed(16.0)).unwrap())
            .start()
            .unwrap()
            .wait()
            .unwrap();
        let mut ended: Vec<(String, u64)> = events
            .iter()
            .filter_map(|e| match e {
                SegmentEvent::StreamEnded { stream, frames, .. } => Some((stream.clone(), *frames)),
                _ => None,
            })
            .collect();
        ended.sort();
        assert_eq!(ended.len(), 2, "{ended:?}");
        assert_eq!(ended[0], ("file:r".to_owned(), frames));
        assert!(ended[1].0 == "file:r#0" || ended[1].0 == "file:r#1", "{ended:?}");
        assert_eq!(ended[1].1, frames);
        assert_eq!(stats.streams, 2);
        for (id, _) in &ended {
            assert_tiles(&segments(&events, id), frames);
        }
    }

    #[test]
    fn window_threads_replay_a_stream_with_the_segments_of_one_thread() {
        let run = |threads: usize| {
            let source =
                ReplaySource::new(bundled_recording("r"), Pacing::AsFastAsPossible).unwrap();
            let (stats, events) = PipelineBuilder::new(bundled_model())
                .workers(1)
                .window_threads(threads)
                .source(source)
                .start()
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(stats.window_threads, threads);
            segments(&events, "file:r")
        };
        let one = run(1);
        assert!(one.len() > 1, "the recording has several segments");
        assert_eq!(run(3), one);
    }

    /// A source with frames it has accepted (and counted) but hands out only once closed, like
    /// a network source whose queue backed up behind a busy pipeline.
    struct Backlog {
        frames: VecDeque<Frame>,
        closed: bool,
        accepted: u64,
    }

    impl FrameSource for Backlog {
        fn next_event(&mut self, timeout: Duration) -> SourcePoll {
            if !self.closed {
                std::thread::sleep(timeout);
                return SourcePoll::Timeout;
            }
            match self.frames.pop_front() {
                Some(frame) => {
                    SourcePoll::Event(SourceEvent::Frame { stream: StreamId::new("tcp:b"), frame })
                }
                None => SourcePoll::Finished,
            }
        }

        fn stats(&self) -> SourceStats {
            SourceStats { frames: self.accepted, ..SourceStats::default() }
        }

        fn close(&mut self) {
            self.closed = true;
        }
    }

    #[test]
    fn shutdown_processes_every_frame_a_source_had_accepted() {
        let frames: VecDeque<Frame> = bundled_recording("b").frames.into_iter().take(300).collect();
        let source = Backlog { accepted: frames.len() as u64, frames, closed: false };
        let pipeline = PipelineBuilder::new(bundled_model()).source(source).start().unwrap();
        let (stats, events) = pipeline.shutdown().unwrap();
        assert_eq!(stats.frames, 300, "every accepted frame went through");
        assert_eq!(stats.finalised, 300);
        assert_tiles(&segments(&events, "tcp:b"), 300);
        assert!(events.iter().any(|e| matches!(
            e,
            SegmentEvent::StreamEnded { frames: 300, reason: EndReason::Shutdown, .. }
        )));
    }
}
