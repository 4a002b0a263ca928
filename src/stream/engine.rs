//! The inference core of the streaming runtime, shared by [`super::StreamSegmenter`] (one
//! stream, caller's thread) and the [`super::Pipeline`] worker (many streams, one thread).
//!
//! Per frame, DSMI runs once (batched over every stream that received a frame) and its
//! `D`-dimensional output is cached in the stream's window. Every `hop` frames the last `W`
//! cached features go through MFAI (batched over every stream that is due). A frame is finalised
//! once `lookahead` later frames exist; its probabilities come from the first window that
//! contains it with that much future context. When the engine falls behind (several hops of
//! frames arrive at once) it runs one window per stream instead of one per hop: windows are
//! skipped, frames never are.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::frame::{Frame, NUM_JOINTS};
use crate::modality::{FrameModalities, ModalityConfig, ModalityState};
use crate::model::InterAct;
use crate::stream::filter::{JointFilter, OneEuroConfig};
use crate::stream::segmenter::FinalFrame;

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
    /// When a live stream falls behind by more than a hop, run one window over its backlog
    /// instead of one per hop (windows are skipped, frames never are). Off: every window runs,
    /// so the output depends only on the input, not on the machine's speed.
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
}

/// Per-stream state: modalities, cached features, frames waiting for finalisation.
#[derive(Debug)]
pub struct StreamState {
    modality: ModalityState,
    /// The last `W` DSMI outputs, each `D` floats, oldest first.
    features: VecDeque<Vec<f32>>,
    /// `(index, timestamp, anybody present)` of the frames in `features`, same order.
    times: VecDeque<(u64, f64, bool)>,
    /// Joint smoothing, when configured.
    filter: Option<JointFilter>,
    /// Frames received so far.
    received: u64,
    /// Frames finalised so far (they are the first `finalised` received).
    finalised: u64,
    /// Received count when MFAI last ran.
    last_window_at: u64,
    /// Offset of this stream's windows within the hop, so that many streams started together
    /// do not all come due on the same frame (that would make one large batch every hop
    /// instead of small ones on every frame).
    phase: u64,
    counters: StreamCounters,
}

impl StreamState {
    /// A fresh stream whose windows run when `(frames received + phase) % hop == 0`; give
    /// streams that start together different phases to spread the MFAI work over the hop.
    pub fn with_phase(cfg: &EngineConfig, phase: usize) -> Self {
        StreamState { phase: (phase % cfg.hop_frames.max(1)) as u64, ..StreamState::new(cfg) }
    }

    /// A fresh stream (phase 0).
    pub fn new(cfg: &EngineConfig) -> Self {
        StreamState {
            modality: ModalityState::new(&cfg.modality),
            features: VecDeque::with_capacity(cfg.window_frames),
            times: VecDeque::with_capacity(cfg.window_frames),
            filter: cfg.one_euro.clone().map(JointFilter::new),
            received: 0,
            finalised: 0,
            last_window_at: 0,
            phase: 0,
            counters: StreamCounters::default(),
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

    /// Caches a frame's DSMI output, dropping the oldest beyond `window` frames.
    fn append(&mut self, feat: Vec<f32>, frame: &Frame, window: usize) {
        if self.features.len() == window {
            self.features.pop_front();
            self.times.pop_front();
        }
        self.features.push_back(feat);
        self.times.push_back((frame.index, frame.timestamp_secs, !frame.bodies.is_empty()));
        self.received += 1;
        self.counters.frames += 1;
    }
}

/// The model plus the windowing logic; owns nothing stream-specific.
#[derive(Debug)]
pub struct Engine {
    model: InterAct,
    device: Device,
    cfg: EngineConfig,
}

impl Engine {
    /// An engine running `model` on `device`.
    pub fn new(model: InterAct, device: Device, mut cfg: EngineConfig) -> Result<Self> {
        cfg.validate()?;
        // The model defines its inputs: stream states built from this engine's config derive
        // the modalities the way it was trained, whatever the caller's config said.
        cfg.modality.norm = model.config().input_norm;
        Ok(Engine { model, device, cfg })
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Feeds one frame to each of the given streams (DSMI batched over them), then runs MFAI for
    /// the streams that are due and returns the frames they finalise, per input position.
    pub fn push(&self, batch: &mut [(&mut StreamState, &Frame)]) -> Result<Vec<Vec<FinalFrame>>> {
        self.step(batch, false)
    }

    /// One frame per stream; `force` runs a window for every stream that has a frame to
    /// finalise, whatever its phase.
    fn step(
        &self,
        batch: &mut [(&mut StreamState, &Frame)],
        force: bool,
    ) -> Result<Vec<Vec<FinalFrame>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mods: Vec<FrameModalities> = batch.iter_mut().map(|(s, f)| s.modalities(f)).collect();
        let feats = self.dsmi(&mods)?;
        for ((state, frame), feat) in batch.iter_mut().zip(feats) {
            state.append(feat, frame, self.cfg.window_frames);
        }
        let mut out = vec![Vec::new(); batch.len()];
        let mut due: Vec<&mut StreamState> = Vec::new();
        let mut positions = Vec::new();
        for (i, (state, _)) in batch.iter_mut().enumerate() {
            let on_phase = (state.received + state.phase) % self.cfg.hop_frames as u64 == 0;
            let ready = state.received > self.cfg.lookahead_frames as u64 + state.finalised;
            if ready && (on_phase || force) {
                due.push(&mut **state);
                positions.push(i);
            }
        }
        for (finals, pos) in self.run_windows(&mut due, false)?.into_iter().zip(positions) {
            out[pos] = finals;
        }
        Ok(out)
    }

    /// Catches up after a burst: like [`Engine::push`] for several frames of one stream, but
    /// with a single window at the end (the skipped windows are counted).
    pub fn push_many(&self, state: &mut StreamState, frames: &[Frame]) -> Result<Vec<FinalFrame>> {
        let mut finals = Vec::new();
        let w = self.cfg.window_frames as u64;
        for (i, frame) in frames.iter().enumerate() {
            let last = i + 1 == frames.len();
            // The oldest pending frame would leave the window with this frame: run a real window.
            let evicting = state.pending() + 1 > w - self.cfg.lookahead_frames as u64;
            if last || evicting {
                // The last frame of a burst runs a window whatever the phase: it finalises the
                // backlog at once.
                finals.extend(self.step(&mut [(&mut *state, frame)], true)?.into_iter().flatten());
            } else {
                let mods = [state.modalities(frame)];
                let feat = self.dsmi(&mods)?.pop().unwrap_or_default();
                state.append(feat, frame, self.cfg.window_frames);
            }
        }
        Ok(finals)
    }

    /// End of stream: finalises every pending frame with the last window (less lookahead).
    pub fn flush(&self, state: &mut StreamState) -> Result<Vec<FinalFrame>> {
        if state.pending() == 0 {
            return Ok(Vec::new());
        }
        Ok(self.run_windows(&mut [state], true)?.pop().unwrap_or_default())
    }

    /// DSMI on one frame per stream: `(N, 6, 1, 25)` ×3 → `N` feature vectors of `D` floats.
    fn dsmi(&self, mods: &[FrameModalities]) -> Result<Vec<Vec<f32>>> {
        let _guard = tch::no_grad_guard();
        let n = mods.len() as i64;
        let stack = |f: &dyn Fn(&FrameModalities) -> &[f32]| {
            let flat: Vec<f32> = mods.iter().flat_map(|m| f(m).iter().copied()).collect();
            Tensor::from_slice(&flat).reshape([n, 6, 1, NUM_JOINTS as i64]).to(self.device)
        };
        let abs = stack(&|m| &m.abs[..]);
        let rel = stack(&|m| &m.rel[..]);
        let motion = stack(&|m| &m.motion[..]);
        let feats = self.model.dsmi(&abs, &rel, &motion, false)?; // (N, D, 1)
        let d = feats.size()[1];
        let flat = Vec::<f32>::try_from(
            feats.reshape([n * d]).to_kind(Kind::Float).to_device(Device::Cpu),
        )?;
        Ok(flat.chunks(d as usize).map(<[f32]>::to_vec).collect())
    }

    /// MFAI over the current window of each stream, batched by window length; finalises the
    /// frames that now have `lookahead` future frames (all pending ones when `flush`).
    fn run_windows(
        &self,
        states: &mut [&mut StreamState],
        flush: bool,
    ) -> Result<Vec<Vec<FinalFrame>>> {
        let _guard = tch::no_grad_guard();
        let mut out = vec![Vec::new(); states.len()];
        // Group by window length so each group is one (N, D, T) forward.
        let mut lengths: Vec<usize> = states.iter().map(|s| s.features.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        for len in lengths {
            let members: Vec<usize> =
                (0..states.len()).filter(|&i| states[i].features.len() == len).collect();
            let d = states[members[0]].features[0].len();
            let mut flat = Vec::with_capacity(members.len() * len * d);
            for &i in &members {
                for feat in &states[i].features {
                    flat.extend_from_slice(feat);
                }
            }
            let n = members.len() as i64;
            // Stored (N, T, D); the model wants (N, D, T).
            let feats = Tensor::from_slice(&flat)
                .reshape([n, len as i64, d as i64])
                .transpose(1, 2)
                .to(self.device);
            let mask = Tensor::ones([n, len as i64], (Kind::Float, self.device));
            let output = self.model.mfai(&feats, &mask, false)?;
            let probs = output.final_action_probs()?.to_kind(Kind::Float).to_device(Device::Cpu); // (N, A, T)
            let bprobs = output.final_boundary_probs()?.to_kind(Kind::Float).to_device(Device::Cpu); // (N, T)
            let a = probs.size()[1] as usize;
            let probs = Vec::<f32>::try_from(probs.reshape([-1]))?;
            let bprobs = Vec::<f32>::try_from(bprobs.reshape([-1]))?;
            for (row, &i) in members.iter().enumerate() {
                let state = &mut *states[i];
                // Hops that passed without a window of their own were skipped (before the first
                // window there was nothing to skip).
                if state.counters.windows > 0 {
                    let hops = (state.received - state.last_window_at) / self.cfg.hop_frames as u64;
                    state.counters.skipped_windows += hops.saturating_sub(1);
                }
                state.counters.windows += 1;
                state.last_window_at = state.received;
                let window_start = state.received - len as u64;
                let until = if flush {
                    state.received
                } else {
                    state.received.saturating_sub(self.cfg.lookahead_frames as u64)
                };
                if state.finalised < window_start {
                    return Err(Error::invalid(
                        "stream engine",
                        format!(
                            "frame {} left the window before it was finalised",
                            state.finalised
                        ),
                    ));
                }
                while state.finalised < until {
                    let col = (state.finalised - window_start) as usize;
                    let (index, timestamp_secs, present) = state.times[col];
                    let base = row * a * len;
                    out[i].push(FinalFrame {
                        index,
                        timestamp_secs,
                        probs: (0..a).map(|c| probs[base + c * len + col]).collect(),
                        boundary_prob: bprobs[row * len + col],
                        present,
                    });
                    state.finalised += 1;
                    state.counters.finalised += 1;
                }
            }
        }
        Ok(out)
    }
}

// The engine is crate plumbing; these tests use it directly, the integration tests
// (tests/stream.rs) go through `StreamSegmenter` and `Pipeline`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::{self, LoadedModel};

    fn bundled_model() -> LoadedModel {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models/synth.safetensors");
        checkpoint::load(path.as_ref(), Device::Cpu).expect("the bundled model loads")
    }

    fn bundled_recording() -> crate::io::Recording {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/synth/skeleton/synth_0000.txt");
        crate::io::read_recording(path).expect("the bundled sequence reads")
    }

    #[test]
    fn batching_streams_gives_the_same_probabilities_as_one_stream_at_a_time() {
        let rec = bundled_recording();
        let frames = &rec.frames[..200];
        let loaded = bundled_model();
        let cfg = EngineConfig {
            window_frames: 64,
            hop_frames: 4,
            lookahead_frames: 8,
            ..EngineConfig::default()
        };
        let engine = Engine::new(loaded.model, Device::Cpu, cfg.clone()).expect("engine");
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
    fn a_burst_skips_windows_but_never_frames() {
        let rec = bundled_recording();
        let loaded = bundled_model();
        let cfg = EngineConfig::default();
        let engine = Engine::new(loaded.model, Device::Cpu, cfg.clone()).expect("engine");
        let mut state = StreamState::new(&cfg);
        let burst = &rec.frames[..300]; // more than a window at once
        let mut finals = engine.push_many(&mut state, burst).unwrap();
        finals.extend(engine.flush(&mut state).unwrap());
        let indices: Vec<u64> = finals.iter().map(|f| f.index).collect();
        assert_eq!(indices, (0..300).collect::<Vec<u64>>());
        assert!(state.counters().skipped_windows > 0, "{:?}", state.counters());
    }
}
