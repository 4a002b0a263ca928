//! The inference core of the streaming runtime, shared by [`super::StreamSegmenter`] (one
//! stream, caller's thread) and the [`super::Pipeline`] workers (many streams each).
//!
//! Per frame, DSMI runs once and its `D`-dimensional output is cached in the stream's window.
//! It runs when a window needs the frame, or a hop's frames are waiting, not when the frame
//! arrives: a frame's modalities wait (a few KB) until the next window of its stream is due,
//! and then the frames since the last window go through DSMI as one batch (at hop 4, a batch of
//! 4 costs about 0.6 of four single frames; no frame is finalised any later, since only a window
//! finalises frames).
//! Every `hop` frames the last `W` cached features go through MFAI. A frame is finalised once
//! `lookahead` later frames exist; its probabilities come from the first window that contains it
//! with that much future context. So a window is only asked for the columns it can finalise
//! ([`InterAct::mfai_final`]: the final stage, and only the frame-local parts of MFAI for those
//! columns), about 16 % less work per window at hop 4.
//!
//! Batching: [`Engine::push_frames`] takes any number of frames of any number of streams; their
//! DSMI runs as one batch and every window that comes due runs in one MFAI batch (grouped by
//! window length). Fed one frame at a time or a whole burst at once, a stream gets the same
//! windows, so the same probabilities (to float rounding of the batched matrix products).
//! [`Schedule::Skip`] is the overload path: only the windows that finalisation needs run
//! (windows are skipped, frames never are).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::frame::{Frame, NUM_JOINTS};
use crate::modality::{FrameModalities, ModalityConfig, ModalityState};
use crate::model::InterAct;
use crate::stream::filter::{JointFilter, OneEuroConfig};
use crate::stream::segmenter::FinalFrame;
use crate::stream::window_threads::WindowThread;

/// Window and finalisation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Frames of cached DSMI features MFAI sees (W).
    pub window_frames: usize,
    /// MFAI runs every `hop_frames` frames.
    pub hop_frames: usize,
    /// Future frames a frame waits for before it is finalised.
    pub lookahead_frames: usize,
    /// Modality derivation (slot assignment, gaps).
    pub modality: ModalityConfig,
    /// Whether a live stream that falls behind may degrade: first its due windows run as one
    /// batch, then its hop widens (×2, ×4), and only then are windows skipped (frames never
    /// are). Off: every window runs at `hop_frames`, so the output depends only on the input,
    /// not on the machine's speed.
    pub catch_up: bool,
    /// One-Euro smoothing of joint positions before the modalities (off by default).
    pub one_euro: Option<OneEuroConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            window_frames: 256,
            hop_frames: 4,
            lookahead_frames: 15,
            modality: ModalityConfig::default(),
            catch_up: true,
            one_euro: None,
        }
    }
}

impl EngineConfig {
    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.window_frames == 0 || self.hop_frames == 0 {
            return Err(Error::invalid(
                "stream config",
                "window_frames and hop_frames must be ≥ 1",
            ));
        }
        if self.hop_frames + self.lookahead_frames >= self.window_frames {
            // Otherwise a frame could leave the window before any window finalised it.
            return Err(Error::invalid(
                "stream config",
                format!(
                    "hop_frames + lookahead_frames ({} + {}) must be smaller than window_frames ({})",
                    self.hop_frames, self.lookahead_frames, self.window_frames
                ),
            ));
        }
        if self.lookahead_frames >= self.window_frames {
            return Err(Error::invalid(
                "stream config",
                format!(
                    "lookahead_frames ({}) must be smaller than window_frames ({})",
                    self.lookahead_frames, self.window_frames
                ),
            ));
        }
        Ok(())
    }
}

/// The widest hop a stream may widen to under overload, as a multiple of the configured hop
/// (4 → 8 → 16 frames).
pub const MAX_HOP_FACTOR: usize = 4;
/// Most windows in one MFAI forward. Past 8 the cost per window rises again on one thread
/// (batch 8: 0.72–0.78 of batch 1's per window, batch 32: 0.88–0.92 in two quiet runs;
/// BENCHMARKS.md, `skelseg bench`): the attention maps of a larger batch no longer stay in
/// cache. It also bounds the memory of a long catch-up.
const MAX_WINDOWS_PER_BATCH: usize = 8;
/// Most frames in one DSMI forward: the cost per frame is flat from batch 8 on.
const MAX_FRAMES_PER_BATCH: usize = 256;
/// Fewest frames per thread for a step's DSMI to be shared with the engine's window threads.
/// Like windows (a full batch per thread), only a step with much to do is shared: a live
/// step's few frames and windows run faster on one thread than split, and many live streams
/// are better spread over workers (BENCHMARKS.md, "Window threads").
const MIN_SHARED_FRAMES: usize = 64;

/// Which windows a stream's new frames get in [`Engine::push_frames`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Every window at the stream's hop: the same windows as feeding one frame at a time.
    #[default]
    Every,
    /// Only the windows finalisation needs: one before a pending frame would leave the window,
    /// and one at the last frame (whatever its phase). The others are skipped and counted.
    Skip,
}

/// Counters of one stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StreamCounters {
    /// Frames received.
    pub frames: u64,
    /// Frames finalised.
    pub finalised: u64,
    /// MFAI windows run.
    pub windows: u64,
    /// Windows skipped because the engine was behind.
    pub skipped_windows: u64,
    /// Times the hop was widened because the stream fell behind.
    pub widenings: u64,
    /// The widest hop (frames) the stream ran at.
    pub max_hop_frames: usize,
}

/// Per-stream state: modalities, cached features, frames waiting for finalisation.
#[derive(Debug)]
pub(crate) struct StreamState {
    modality: ModalityState,
    /// Cached DSMI outputs, each `D` floats, oldest first: the last `W` (more while a burst is
    /// being processed), less the newest frames still in `raw`.
    features: VecDeque<Vec<f32>>,
    /// Modalities of the newest frames, whose DSMI has not run yet: it runs, as one batch, when
    /// a window needs them ([`Engine::push_timed`], [`Engine::flush`]).
    raw: Vec<FrameModalities>,
    /// `(index, timestamp, anybody present)` of the frames in `features` then `raw`, same order.
    times: VecDeque<(u64, f64, bool)>,
    /// Joint smoothing, when configured.
    filter: Option<JointFilter>,
    /// Frames received so far.
    received: u64,
    /// Frames finalised so far (they are the first `finalised` received).
    finalised: u64,
    /// Received count up to which windows have been scheduled.
    scheduled: u64,
    /// Offset of this stream's windows within the hop, so that many streams started together
    /// do not all come due on the same frame (that would make one large batch every hop
    /// instead of small ones on every frame).
    phase: u64,
    /// The hop in use: the configured one, or wider under overload.
    hop: u64,
    counters: StreamCounters,
}

impl StreamState {
    /// A fresh stream whose windows run when `(frames received + phase) % hop == 0`; give
    /// streams that start together different phases to spread the MFAI work over the hop.
    pub fn with_phase(cfg: &EngineConfig, phase: usize) -> Self {
        StreamState { phase: phase as u64, ..StreamState::new(cfg) }
    }

    /// A fresh stream (phase 0).
    pub fn new(cfg: &EngineConfig) -> Self {
        let hop = cfg.hop_frames.max(1);
        StreamState {
            modality: ModalityState::new(&cfg.modality),
            features: VecDeque::with_capacity(cfg.window_frames),
            raw: Vec::with_capacity(cfg.hop_frames * MAX_HOP_FACTOR),
            times: VecDeque::with_capacity(cfg.window_frames),
            filter: cfg.one_euro.clone().map(JointFilter::new),
            received: 0,
            finalised: 0,
            scheduled: 0,
            phase: 0,
            hop: hop as u64,
            counters: StreamCounters { max_hop_frames: hop, ..StreamCounters::default() },
        }
    }

    /// The stream's counters.
    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    /// Frames received but not finalised yet.
    pub fn pending(&self) -> u64 {
        self.received - self.finalised
    }

    /// The hop (frames) the stream runs at now.
    pub fn hop_frames(&self) -> usize {
        self.hop as usize
    }

    /// Doubles the hop, up to [`MAX_HOP_FACTOR`] × the configured hop and while a frame still
    /// gets a window before it leaves the window (`hop + lookahead < window`). Returns whether
    /// it widened.
    pub fn widen(&mut self, cfg: &EngineConfig) -> bool {
        let wider = self.hop * 2;
        let max = (cfg.hop_frames * MAX_HOP_FACTOR) as u64;
        if wider > max || wider + cfg.lookahead_frames as u64 >= cfg.window_frames as u64 {
            return false;
        }
        self.hop = wider;
        self.counters.widenings += 1;
        self.counters.max_hop_frames = self.counters.max_hop_frames.max(wider as usize);
        true
    }

    /// Halves the hop, down to the configured one. Returns whether it narrowed.
    pub fn narrow(&mut self, cfg: &EngineConfig) -> bool {
        if self.hop <= cfg.hop_frames as u64 {
            return false;
        }
        self.hop = (self.hop / 2).max(cfg.hop_frames as u64);
        true
    }

    /// The modalities of the next frame, after the joint filter if there is one.
    fn modalities(&mut self, frame: &Frame) -> FrameModalities {
        match self.filter.as_mut() {
            Some(filter) => {
                let mut smoothed = frame.clone();
                filter.apply(&mut smoothed);
                self.modality.push(&smoothed)
            }
            None => self.modality.push(frame),
        }
    }

    /// Receives a frame: its modalities wait in `raw` for DSMI (see [`StreamState::trim`]).
    fn append(&mut self, frame: &Frame) {
        let mods = self.modalities(frame);
        self.raw.push(mods);
        self.times.push_back((frame.index, frame.timestamp_secs, !frame.bodies.is_empty()));
        self.received += 1;
        self.counters.frames += 1;
    }

    /// Received count of the oldest frame held (cached feature or waiting modalities).
    fn base(&self) -> u64 {
        self.received - (self.features.len() + self.raw.len()) as u64
    }

    /// Drops cached features beyond the last `window` frames that no pending frame needs.
    fn trim(&mut self, window: usize) {
        let keep = window.max(self.pending() as usize);
        while self.features.len() + self.raw.len() > keep && self.features.pop_front().is_some() {
            self.times.pop_front();
        }
    }

    /// The ends (received counts) of the windows the frames since the last call get, and how
    /// many windows `schedule` skipped. Marks them scheduled.
    fn schedule(&mut self, cfg: &EngineConfig, schedule: Schedule) -> (Vec<u64>, u64) {
        let (w, l) = (cfg.window_frames as u64, cfg.lookahead_frames as u64);
        let (hop, phase) = (self.hop, self.phase);
        let range = self.scheduled + 1..=self.received;
        self.scheduled = self.received;
        // A window at `r` finalises up to `r − lookahead`; it needs `r > lookahead + finalised`.
        let mut every = Vec::new();
        let mut done = self.finalised;
        for r in range.clone() {
            if (r + phase) % hop == 0 && r > l + done {
                every.push(r);
                done = r - l;
            }
        }
        match schedule {
            Schedule::Every => (every, 0),
            Schedule::Skip => {
                let mut ends = Vec::new();
                let mut done = self.finalised;
                for r in range {
                    // The oldest pending frame is about to leave the window: run one now.
                    let evicting = r - done >= w - l;
                    if (evicting || r == self.received) && r > l + done {
                        ends.push(r);
                        done = r - l;
                    }
                }
                let skipped = (every.len() as u64).saturating_sub(ends.len() as u64);
                (ends, skipped)
            }
        }
    }
}

/// One MFAI window to run: the stream (position in the call), the received count it ends at,
/// and whether it finalises everything (end of stream) or stops `lookahead` frames short.
#[derive(Clone, Copy, Debug)]
struct Job {
    stream: usize,
    end: u64,
    flush: bool,
}

/// One window's final-stage output for its columns `from..len`, the only ones computed (the
/// frames it can finalise): probabilities `(A, C)` row-major and boundary probabilities `(C)`.
#[derive(Clone, Debug)]
struct WindowColumns {
    from: usize,
    probs: Vec<f32>,
    boundary: Vec<f32>,
}

/// What [`Engine::push_frames`] gives one stream, with the positions (in the frames passed) of
/// the frames that triggered a window, for latency figures.
#[derive(Debug, Default)]
pub(crate) struct Pushed {
    pub(crate) finals: Vec<FinalFrame>,
    pub(crate) triggers: Vec<usize>,
}

/// The model plus the windowing logic; owns nothing stream-specific.
#[derive(Debug)]
pub(crate) struct Engine {
    model: InterAct,
    device: Device,
    cfg: EngineConfig,
    /// Threads with their own model copies that take a share of each step's batches.
    helpers: Vec<WindowThread>,
}

impl Engine {
    /// An engine running `model` on `device`.
    pub fn new(model: InterAct, device: Device, mut cfg: EngineConfig) -> Result<Self> {
        cfg.validate()?;
        // The model defines its inputs: stream states built from this engine's config derive
        // the modalities the way it was trained, whatever the caller's config said.
        cfg.modality.norm = model.config().input_norm;
        Ok(Engine { model, device, cfg, helpers: Vec::new() })
    }

    /// Shares large steps with `helpers` (window threads with copies of this engine's model): a
    /// step with a full MFAI batch of windows for every thread (a replay or a stream catching
    /// up) has its windows, and its DSMI frames when there are 64 per thread, split evenly over
    /// this thread and the helpers; smaller steps run here. The outputs are those of one
    /// thread, to float rounding of the batched products.
    pub fn with_helpers(mut self, helpers: Vec<WindowThread>) -> Self {
        self.helpers = helpers;
        self
    }

    /// Threads that run this engine's batches: the caller's and the helpers.
    pub fn threads(&self) -> usize {
        1 + self.helpers.len()
    }

    /// Runs `f(model, device, item)` for every item, on this thread alone or, with `share`,
    /// item `k` on thread `k % threads` (0: this one, which does its share while the helpers do
    /// theirs); results in item order.
    fn spread<T, R>(
        &self,
        items: Vec<T>,
        share: bool,
        f: fn(&InterAct, Device, T) -> Result<R>,
    ) -> Result<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
    {
        // Grad mode is per thread: the helpers set theirs, this thread's callers may not have
        // (`flush` runs DSMI outside `push_timed`).
        let _guard = tch::no_grad_guard();
        let threads = self.threads();
        if !share || threads == 1 || items.len() < 2 {
            return items.into_iter().map(|item| f(&self.model, self.device, item)).collect();
        }
        let (device, n) = (self.device, items.len());
        let mut here = Vec::new();
        let mut away = Vec::new();
        for (k, item) in items.into_iter().enumerate() {
            match k % threads {
                0 => here.push((k, item)),
                t => {
                    let helper = &self.helpers[t - 1];
                    away.push((k, helper, helper.run(move |model| f(model, device, item))?));
                }
            }
        }
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        for (k, item) in here {
            out[k] = Some(f(&self.model, device, item)?);
        }
        for (k, helper, answer) in away {
            out[k] = Some(helper.wait(&answer)?);
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Feeds one frame to each of the given streams, then runs MFAI for the streams that are
    /// due and returns the frames they finalise, per input position (the reference the batched
    /// path is tested against).
    #[cfg(test)]
    pub fn push(&self, batch: &mut [(&mut StreamState, &Frame)]) -> Result<Vec<Vec<FinalFrame>>> {
        let mut frames: Vec<(&mut StreamState, &[Frame], Schedule)> = batch
            .iter_mut()
            .map(|(s, f)| (&mut **s, std::slice::from_ref(*f), Schedule::Every))
            .collect();
        self.push_frames(&mut frames)
    }

    /// Feeds any number of frames to each of the given streams: DSMI over all of them as one
    /// batch, then the windows each stream's [`Schedule`] asks for as one MFAI batch (per window
    /// length). Returns the finalised frames per input position. With [`Schedule::Every`] the
    /// result is the one of feeding the frames one at a time.
    pub fn push_frames(
        &self,
        batch: &mut [(&mut StreamState, &[Frame], Schedule)],
    ) -> Result<Vec<Vec<FinalFrame>>> {
        Ok(self.push_timed(batch)?.into_iter().map(|p| p.finals).collect())
    }

    /// [`Engine::push_frames`], also saying which frames triggered the windows.
    pub(crate) fn push_timed(
        &self,
        batch: &mut [(&mut StreamState, &[Frame], Schedule)],
    ) -> Result<Vec<Pushed>> {
        let _guard = tch::no_grad_guard();
        let mut jobs = Vec::new();
        let mut out: Vec<Pushed> = Vec::with_capacity(batch.len());
        for (i, (state, frames, schedule)) in batch.iter_mut().enumerate() {
            // Modalities are stateful per stream (motion, slots): derived in order, on arrival.
            let before = state.received;
            for f in frames.iter() {
                state.append(f);
            }
            let (ends, skipped) = state.schedule(&self.cfg, *schedule);
            state.counters.skipped_windows += skipped;
            let triggers = ends.iter().map(|&r| (r - before - 1) as usize).collect();
            jobs.extend(ends.into_iter().map(|end| Job { stream: i, end, flush: false }));
            out.push(Pushed { finals: Vec::new(), triggers });
        }
        let mut states: Vec<&mut StreamState> =
            batch.iter_mut().map(|(s, _, _)| &mut **s).collect();
        // DSMI for the streams with a window due, all their waiting frames in one batch; and
        // for those with a hop's frames waiting, so that no step runs more than about a hop of
        // DSMI per stream (a stream's first window would otherwise wait for `lookahead` frames).
        let mut due: Vec<bool> = states.iter().map(|s| s.raw.len() as u64 >= s.hop).collect();
        for job in &jobs {
            due[job.stream] = true;
        }
        let mut due_states: Vec<&mut StreamState> =
            states.iter_mut().zip(due).filter(|(_, d)| *d).map(|(s, _)| &mut **s).collect();
        self.run_dsmi(&mut due_states)?;
        for (pushed, finals) in out.iter_mut().zip(self.run_windows(&mut states, &jobs)?) {
            pushed.finals = finals;
        }
        Ok(out)
    }

    /// End of stream: finalises every pending frame with the last window (less lookahead).
    pub fn flush(&self, state: &mut StreamState) -> Result<Vec<FinalFrame>> {
        if state.pending() == 0 {
            return Ok(Vec::new());
        }
        self.run_dsmi(&mut [&mut *state])?;
        let job = Job { stream: 0, end: state.received, flush: true };
        Ok(self.run_windows(&mut [state], &[job])?.pop().unwrap_or_default())
    }

    /// DSMI over the waiting frames of `states`, in batches of at most
    /// [`MAX_FRAMES_PER_BATCH`] frames across streams (split over the engine's threads when
    /// there are enough frames); their features join each stream's cache.
    fn run_dsmi(&self, states: &mut [&mut StreamState]) -> Result<()> {
        let counts: Vec<usize> = states.iter().map(|s| s.raw.len()).collect();
        let waiting: Vec<FrameModalities> =
            states.iter_mut().flat_map(|s| std::mem::take(&mut s.raw)).collect();
        let share = self.threads() > 1 && waiting.len() >= self.threads() * MIN_SHARED_FRAMES;
        let per = if share {
            waiting.len().div_ceil(self.threads()).min(MAX_FRAMES_PER_BATCH)
        } else {
            MAX_FRAMES_PER_BATCH
        };
        let mut batches = Vec::new();
        let mut waiting = waiting.into_iter().peekable();
        while waiting.peek().is_some() {
            batches.push(waiting.by_ref().take(per).collect::<Vec<_>>());
        }
        let mut feats = self.spread(batches, share, dsmi)?.into_iter().flatten();
        for (state, n) in states.iter_mut().zip(counts) {
            state.features.extend(feats.by_ref().take(n));
        }
        Ok(())
    }

    /// The frames a window finalises end here: all of them at end of stream, else those with
    /// `lookahead` later frames in the window.
    fn until(&self, job: &Job) -> u64 {
        if job.flush { job.end } else { job.end.saturating_sub(self.cfg.lookahead_frames as u64) }
    }

    /// Runs `jobs` (any number per stream, in increasing `end` per stream) as MFAI batches of
    /// equal window length, then finalises each stream's frames window by window in order.
    fn run_windows(
        &self,
        states: &mut [&mut StreamState],
        jobs: &[Job],
    ) -> Result<Vec<Vec<FinalFrame>>> {
        let _guard = tch::no_grad_guard();
        let w = self.cfg.window_frames as u64;
        let len_of = |job: &Job| job.end.min(w) as usize;
        let mut results: Vec<Option<WindowColumns>> = vec![None; jobs.len()];
        // The first frame each job finalises: where the stream's previous job stops.
        let mut finalised: Vec<u64> = states.iter().map(|s| s.finalised).collect();
        let first_final: Vec<u64> = jobs
            .iter()
            .map(|job| {
                let first = finalised[job.stream];
                finalised[job.stream] = first.max(self.until(job));
                first
            })
            .collect();
        let mut lengths: Vec<usize> = jobs.iter().map(len_of).collect();
        lengths.sort_unstable();
        lengths.dedup();
        // Per window length, batches of at most MAX_WINDOWS_PER_BATCH windows; split evenly
        // over the engine's threads when the step has a full batch for each.
        let share = self.threads() > 1 && jobs.len() >= self.threads() * MAX_WINDOWS_PER_BATCH;
        let mut batches = Vec::new();
        for len in lengths {
            let members: Vec<usize> =
                (0..jobs.len()).filter(|&j| len_of(&jobs[j]) == len).collect();
            let per = if share {
                members.len().div_ceil(self.threads()).min(MAX_WINDOWS_PER_BATCH)
            } else {
                MAX_WINDOWS_PER_BATCH
            };
            for chunk in members.chunks(per) {
                let mut flat = Vec::new();
                let mut dim = 0;
                // The earliest column any window of the chunk finalises.
                let from = chunk
                    .iter()
                    .map(|&j| first_final[j].saturating_sub(jobs[j].end - len as u64) as usize)
                    .min()
                    .unwrap_or(0)
                    .min(len - 1);
                for &j in chunk {
                    let state = &states[jobs[j].stream];
                    let first = (jobs[j].end - len as u64 - state.base()) as usize;
                    for feat in state.features.range(first..first + len) {
                        dim = feat.len();
                        flat.extend_from_slice(feat);
                    }
                }
                batches.push(WindowBatch { jobs: chunk.to_vec(), flat, len, dim, from });
            }
        }
        let mut classes = 0;
        for out in self.spread(batches, share, final_columns)? {
            let (from, cols) = (out.from, out.boundary.len() / out.jobs.len());
            classes = out.classes;
            let per = classes * cols;
            for (row, &j) in out.jobs.iter().enumerate() {
                results[j] = Some(WindowColumns {
                    from,
                    probs: out.probs[row * per..(row + 1) * per].to_vec(),
                    boundary: out.boundary[row * cols..(row + 1) * cols].to_vec(),
                });
            }
        }
        let mut out = vec![Vec::new(); states.len()];
        for (job, result) in jobs.iter().zip(results) {
            let Some(WindowColumns { from, probs, boundary: bprobs }) = result else { continue };
            let state = &mut *states[job.stream];
            let len = len_of(job);
            let cols = len - from;
            state.counters.windows += 1;
            let window_start = job.end - len as u64;
            let until = self.until(job);
            if state.finalised < window_start + from as u64 {
                return Err(Error::invalid(
                    "stream engine",
                    format!("frame {} left the window before it was finalised", state.finalised),
                ));
            }
            let base = state.base();
            while state.finalised < until {
                let col = (state.finalised - window_start) as usize - from;
                let (index, timestamp_secs, present) =
                    state.times[(state.finalised - base) as usize];
                out[job.stream].push(FinalFrame {
                    index,
                    timestamp_secs,
                    probs: (0..classes).map(|c| probs[c * cols + col]).collect(),
                    boundary_prob: bprobs[col],
                    present,
                });
                state.finalised += 1;
                state.counters.finalised += 1;
            }
        }
        for state in states.iter_mut() {
            state.trim(self.cfg.window_frames);
        }
        Ok(out)
    }
}

/// DSMI on single frames: `(N, 6, 1, 25)` ×3 → `N` feature vectors of `D` floats.
fn dsmi(model: &InterAct, device: Device, mods: Vec<FrameModalities>) -> Result<Vec<Vec<f32>>> {
    let n = mods.len() as i64;
    let stack = |f: &dyn Fn(&FrameModalities) -> &[f32]| {
        let flat: Vec<f32> = mods.iter().flat_map(|m| f(m).iter().copied()).collect();
        Tensor::from_slice(&flat).reshape([n, 6, 1, NUM_JOINTS as i64]).to(device)
    };
    let abs = stack(&|m| &m.abs[..]);
    let rel = stack(&|m| &m.rel[..]);
    let motion = stack(&|m| &m.motion[..]);
    let feats = model.dsmi(&abs, &rel, &motion, false)?; // (N, D, 1)
    let d = feats.size()[1];
    let flat =
        Vec::<f32>::try_from(feats.reshape([n * d]).to_kind(Kind::Float).to_device(Device::Cpu))?;
    Ok(flat.chunks(d as usize).map(<[f32]>::to_vec).collect())
}

/// Windows of one length that run as one MFAI batch: their cached features, `(N, len, dim)`
/// row-major, and the first column any of them finalises.
struct WindowBatch {
    jobs: Vec<usize>,
    flat: Vec<f32>,
    len: usize,
    dim: usize,
    from: usize,
}

/// The final stage of a [`WindowBatch`] (its `jobs` and `from`), columns `from..len`:
/// probabilities `(N, A, C)` and boundary probabilities `(N, C)`, row-major.
struct BatchColumns {
    jobs: Vec<usize>,
    from: usize,
    probs: Vec<f32>,
    boundary: Vec<f32>,
    classes: usize,
}

fn final_columns(model: &InterAct, device: Device, batch: WindowBatch) -> Result<BatchColumns> {
    let WindowBatch { jobs, flat, len, dim, from } = batch;
    let n = jobs.len() as i64;
    // Stored (N, T, D); the model wants (N, D, T).
    let feats =
        Tensor::from_slice(&flat).reshape([n, len as i64, dim as i64]).transpose(1, 2).to(device);
    let mask = Tensor::ones([n, len as i64], (Kind::Float, device));
    let output = model.mfai_final(&feats, &mask, from as i64)?;
    let probs = output.final_action_probs()?.to_kind(Kind::Float).to_device(Device::Cpu); // (N, A, C)
    let boundary = output.final_boundary_probs()?.to_kind(Kind::Float).to_device(Device::Cpu); // (N, C)
    Ok(BatchColumns {
        jobs,
        from,
        classes: probs.size()[1] as usize,
        probs: Vec::<f32>::try_from(probs.reshape([-1]))?,
        boundary: Vec::<f32>::try_from(boundary.reshape([-1]))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::{bundled_model, bundled_recording};

    fn cfg() -> EngineConfig {
        EngineConfig {
            window_frames: 32,
            hop_frames: 4,
            lookahead_frames: 6,
            ..EngineConfig::default()
        }
    }

    /// A state that has received `n` frames (features are not needed to schedule).
    fn received(cfg: &EngineConfig, n: u64, finalised: u64) -> StreamState {
        StreamState { received: n, finalised, ..StreamState::new(cfg) }
    }

    #[test]
    fn every_schedules_a_window_per_hop_once_lookahead_frames_exist() {
        let cfg = cfg();
        let mut s = received(&cfg, 20, 0);
        assert_eq!(s.schedule(&cfg, Schedule::Every), (vec![8, 12, 16, 20], 0));
        // Nothing new: nothing scheduled twice.
        assert_eq!(s.schedule(&cfg, Schedule::Every), (vec![], 0));
        let mut p = StreamState { phase: 1, ..received(&cfg, 20, 0) };
        assert_eq!(p.schedule(&cfg, Schedule::Every).0, vec![7, 11, 15, 19]);
    }

    #[test]
    fn skip_runs_only_what_finalisation_needs_and_counts_the_rest() {
        let cfg = cfg();
        let mut s = received(&cfg, 70, 0);
        let (ends, skipped) = s.schedule(&cfg, Schedule::Skip);
        // w − l = 26: a window when 26 frames are pending, then one at the last frame.
        assert_eq!(ends, vec![26, 46, 66, 70]);
        // Every would have run 16 windows (8, 12, …, 68).
        assert_eq!(skipped, 16 - 4);
    }

    #[test]
    fn the_hop_widens_to_four_times_then_stops_and_narrows_back() {
        let cfg = cfg();
        let mut s = StreamState::new(&cfg);
        assert!(s.widen(&cfg));
        assert!(s.widen(&cfg));
        assert!(!s.widen(&cfg), "16 is the widest hop");
        assert_eq!(
            (s.hop_frames(), s.counters().widenings, s.counters().max_hop_frames),
            (16, 2, 16)
        );
        assert!(s.narrow(&cfg) && s.narrow(&cfg));
        assert!(!s.narrow(&cfg));
        assert_eq!(s.hop_frames(), 4);
        // A window too short for hop 16 + lookahead stops at 8.
        let small = EngineConfig { window_frames: 20, ..cfg };
        let mut t = StreamState::new(&small);
        assert!(t.widen(&small) && !t.widen(&small));
    }

    #[test]
    fn batching_streams_gives_the_same_probabilities_as_one_stream_at_a_time() {
        let rec = bundled_recording("synth_0000");
        let frames = &rec.frames[..200];
        let cfg = EngineConfig {
            window_frames: 64,
            hop_frames: 4,
            lookahead_frames: 8,
            ..EngineConfig::default()
        };
        let engine = Engine::new(bundled_model().model, Device::Cpu, cfg.clone()).unwrap();
        let _guard = tch::no_grad_guard();
        // Stream b lags a by 37 frames, so their windows differ in content and fill level.
        let (mut alone, mut a, mut b) =
            (StreamState::new(&cfg), StreamState::new(&cfg), StreamState::new(&cfg));
        let mut reference = Vec::new();
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        for (i, f) in frames.iter().enumerate() {
            reference.extend(engine.push(&mut [(&mut alone, f)]).unwrap().remove(0));
            if i >= 37 {
                let mut out = engine.push(&mut [(&mut a, f), (&mut b, &frames[i - 37])]).unwrap();
                got_b.extend(out.remove(1));
                got_a.extend(out.remove(0));
            } else {
                got_a.extend(engine.push(&mut [(&mut a, f)]).unwrap().remove(0));
            }
        }
        assert!(!reference.is_empty());
        assert_eq!(got_a.len(), reference.len());
        for (x, y) in got_a.iter().zip(&reference).chain(got_b.iter().zip(&reference)) {
            assert_eq!(x.index, y.index);
            for (p, q) in x.probs.iter().zip(&y.probs) {
                assert!((p - q).abs() < 1e-4, "frame {}: {p} vs {q}", x.index);
            }
        }
    }

    #[test]
    fn dsmi_waits_for_the_window_that_needs_the_frames() {
        let rec = bundled_recording("synth_0000");
        let cfg = cfg(); // W 32, hop 4, lookahead 6: windows at 8, 12, 16, ...
        let engine = Engine::new(bundled_model().model, Device::Cpu, cfg.clone()).unwrap();
        let mut state = StreamState::new(&cfg);
        let hop = cfg.hop_frames as u64;
        for (i, f) in rec.frames[..58].iter().enumerate() {
            let received = i as u64 + 1;
            let windows = state.counters().windows;
            let finals = engine.push(&mut [(&mut state, f)]).unwrap().remove(0);
            if state.counters().windows > windows {
                // The window ran DSMI over every waiting frame first.
                assert!(state.raw.is_empty(), "frame {i}");
                assert!(!finals.is_empty());
            } else {
                assert!(finals.is_empty());
            }
            // Frames wait until a window or a hop's worth of them (frame 4, before the first
            // window at 8) sends them through DSMI together.
            assert_eq!(state.raw.len() as u64, received % hop, "frame {i}");
            let held = (state.features.len() + state.raw.len()) as u64;
            assert_eq!(held, received.min(cfg.window_frames as u64), "frame {i}");
        }
        // The end of the stream runs DSMI over what still waits.
        let pending = state.pending();
        assert!(!state.raw.is_empty());
        assert_eq!(engine.flush(&mut state).unwrap().len() as u64, pending);
        assert!(state.raw.is_empty());
    }

    #[test]
    fn a_skipping_burst_skips_windows_but_never_frames() {
        let rec = bundled_recording("synth_0000");
        let cfg = EngineConfig::default();
        let engine = Engine::new(bundled_model().model, Device::Cpu, cfg.clone()).unwrap();
        let mut state = StreamState::new(&cfg);
        let burst = &rec.frames[..300]; // more than a window at once
        let mut finals =
            engine.push_frames(&mut [(&mut state, burst, Schedule::Skip)]).unwrap().remove(0);
        finals.extend(engine.flush(&mut state).unwrap());
        let indices: Vec<u64> = finals.iter().map(|f| f.index).collect();
        assert_eq!(indices, (0..300).collect::<Vec<u64>>());
        assert!(state.counters().skipped_windows > 0, "{:?}", state.counters());
    }

    /// Largest absolute difference of the class and boundary probabilities of two runs.
    fn max_difference(a: &[FinalFrame], b: &[FinalFrame]) -> f32 {
        assert_eq!(a.len(), b.len());
        let mut worst = 0f32;
        for (x, y) in a.iter().zip(b) {
            assert_eq!((x.index, x.present), (y.index, y.present));
            worst = worst.max((x.boundary_prob - y.boundary_prob).abs());
            for (p, q) in x.probs.iter().zip(&y.probs) {
                worst = worst.max((p - q).abs());
            }
        }
        worst
    }

    #[test]
    fn a_burst_run_as_one_batch_gives_the_frames_and_windows_of_one_frame_at_a_time() {
        let rec = bundled_recording("synth_0000");
        let frames = &rec.frames[..400];
        let cfg = EngineConfig::default();
        let engine = Engine::new(bundled_model().model, Device::Cpu, cfg.clone()).unwrap();
        let (mut alone, mut batched) = (StreamState::new(&cfg), StreamState::new(&cfg));
        let mut reference = Vec::new();
        for f in frames {
            reference.extend(engine.push(&mut [(&mut alone, f)]).unwrap().remove(0));
        }
        reference.extend(engine.flush(&mut alone).unwrap());
        // Bursts of uneven sizes, a whole window among them: DSMI over each burst at once, every
        // window that comes due in one MFAI batch.
        let mut got = Vec::new();
        let mut rest = frames;
        for size in [1, 7, 300, 3, 89] {
            let (burst, tail) = rest.split_at(size);
            rest = tail;
            got.extend(
                engine
                    .push_frames(&mut [(&mut batched, burst, Schedule::Every)])
                    .unwrap()
                    .remove(0),
            );
        }
        assert!(rest.is_empty());
        got.extend(engine.flush(&mut batched).unwrap());
        assert_eq!(batched.counters(), alone.counters(), "the same windows ran");
        assert_eq!(alone.counters().skipped_windows, 0);
        // fp32 matrix products over a batch sum in another order than over one row: each product
        // differs by a few ulps (~1e-7 relative), which the ~40 layers of DSMI and MFAI carry to at
        // most ~1e-6 in a probability; 1e-5 leaves a margin and still catches a wrong window or
        // frame (those differ by 1e-2 or more).
        let worst = max_difference(&got, &reference);
        assert!(worst < 1e-5, "largest difference {worst}");
    }

    #[test]
    fn window_threads_share_the_batches_and_give_the_frames_of_one_thread() {
        let rec = bundled_recording("synth_0000");
        let cfg = EngineConfig::default();
        let loaded = bundled_model();
        let helpers =
            crate::stream::window_threads::spawn_copies("test", &loaded.vs, &loaded.model, 2, 1)
                .unwrap();
        let shared =
            Engine::new(loaded.model, Device::Cpu, cfg.clone()).unwrap().with_helpers(helpers);
        let alone = Engine::new(bundled_model().model, Device::Cpu, cfg.clone()).unwrap();
        assert_eq!((shared.threads(), alone.threads()), (3, 1));
        // Two streams at different phases, fed in bursts (so several batches per step, DSMI
        // batches large enough to be shared), then flushed.
        let run = |engine: &Engine| {
            let mut states = [StreamState::with_phase(&cfg, 0), StreamState::with_phase(&cfg, 1)];
            let mut out = [Vec::new(), Vec::new()];
            for burst in rec.frames[..600].chunks(150) {
                let [a, b] = &mut states;
                let finals = engine
                    .push_frames(&mut [(a, burst, Schedule::Every), (b, burst, Schedule::Every)])
                    .unwrap();
                for (o, f) in out.iter_mut().zip(finals) {
                    o.extend(f);
                }
            }
            for (o, s) in out.iter_mut().zip(&mut states) {
                o.extend(engine.flush(s).unwrap());
            }
            (out, states.map(|s| s.counters().clone()))
        };
        let (got, got_counts) = run(&shared);
        let (want, want_counts) = run(&alone);
        assert_eq!(got_counts, want_counts, "the same windows ran");
        assert!(shared.helpers.iter().all(|h| h.tasks_done() > 0), "every helper took batches");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), 600);
            // Batches of other sizes than one thread's: float rounding only (see above).
            let worst = max_difference(g, w);
            assert!(worst < 1e-5, "largest difference {worst}");
        }
    }
}
