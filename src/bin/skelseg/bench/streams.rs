//! The library's streaming path end to end: one stream replayed as fast as it goes, and paced
//! 30-fps streams through the threaded pipeline until one misses the latency budget.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use skelseg::io::Recording;
use skelseg::model::checkpoint;
use skelseg::source::{Pacing, ReplaySource};
use skelseg::stream::{PipelineBuilder, StreamConfig, StreamSegmenter};
use skelseg::synth::{self, SynthConfig};
use tch::Device;

use super::figure::Figure;

/// Frames per `push_many` of the batched replay.
const REPLAY_BATCH: usize = 128;

/// How the streaming figures are run.
pub(super) struct StreamBench<'a> {
    pub model_path: &'a Path,
    pub device: Device,
    pub config: &'a StreamConfig,
    pub workers: usize,
    /// Threads per engine for its batches: the ramp's workers, and the threaded replay.
    pub window_threads: usize,
    /// Seconds per ramp step, largest stream count (0: no ramp), p99 budget in ms.
    pub step_secs: f64,
    pub max_streams: usize,
    pub budget_ms: f64,
    /// Print each ramp step to stderr as it finishes.
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct StreamFigures {
    /// One synthetic recording through `StreamSegmenter`, one frame per push: × real time.
    replay_speed_x: Figure,
    /// The same replay, pushed 128 frames at a time (batched DSMI and windows, same events).
    replay_batched_speed_x: Figure,
    /// Threads per engine for its batches: the ramp's workers, and the next replay.
    window_threads: usize,
    /// The batched replay with its batches split over `window_threads` threads (when > 1).
    replay_batched_threads_speed_x: Option<Figure>,
    workers: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    max_streams_30fps: Figure,
    ramp: Vec<Vec<RampStep>>,
}

#[derive(Debug, Serialize)]
struct RampStep {
    streams: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    skipped_windows: u64,
    widenings: u64,
    dropped_frames: u64,
    sustained: bool,
}

impl StreamBench<'_> {
    /// Every streaming figure, `repeats` times (0: none, for precisions the engine does not run).
    pub fn measure(&self, repeats: usize) -> Result<StreamFigures> {
        let rec = synth::generate_recording(&SynthConfig::default(), 12345, "bench");
        let (mut replay, mut batched, mut threaded) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            replay.push(self.replay(&rec, 1, 1)?);
            batched.push(self.replay(&rec, REPLAY_BATCH, 1)?);
            if self.window_threads > 1 {
                threaded.push(self.replay(&rec, REPLAY_BATCH, self.window_threads)?);
            }
        }
        let ramp_repeats = if self.max_streams == 0 { 0 } else { repeats };
        let ramps = (0..ramp_repeats).map(|_| self.ramp()).collect::<Result<Vec<_>>>()?;
        let sustained = |r: &Vec<RampStep>| {
            r.iter().filter(|s| s.sustained).map(|s| s.streams).max().unwrap_or(0) as f64
        };
        // Latency of a single stream: the first step of each ramp.
        let single = |f: fn(&RampStep) -> f64| {
            Figure::new(ramps.iter().filter_map(|r| r.first()).map(f).collect()).median
        };
        Ok(StreamFigures {
            replay_speed_x: Figure::new(replay),
            replay_batched_speed_x: Figure::new(batched),
            window_threads: self.window_threads,
            replay_batched_threads_speed_x: Figure::measured(threaded),
            workers: self.workers,
            latency_p50_ms: single(|s| s.latency_p50_ms),
            latency_p99_ms: single(|s| s.latency_p99_ms),
            max_streams_30fps: Figure::new(ramps.iter().map(sustained).collect()),
            ramp: ramps,
        })
    }

    /// Replays `rec` as fast as possible, `batch` frames per push, on `threads` window threads:
    /// × real time.
    fn replay(&self, rec: &Recording, batch: usize, threads: usize) -> Result<f64> {
        let loaded = checkpoint::load(self.model_path, self.device)?;
        let mut seg = StreamSegmenter::builder(loaded)
            .stream("bench")
            .config(self.config.clone())
            .window_threads(threads)
            .build()?;
        let start = Instant::now();
        for frames in rec.frames.chunks(batch) {
            seg.push_many(frames)?;
        }
        seg.finish()?;
        let secs = start.elapsed().as_secs_f64();
        Ok(rec.frames.len() as f64 / rec.fps / secs)
    }

    /// One concurrency ramp: 1, 2, 4, 8, 12 … paced 30-fps streams until one misses the budget.
    fn ramp(&self) -> Result<Vec<RampStep>> {
        let mut n = 1;
        let steps = std::iter::from_fn(|| {
            let cur = n;
            n = if n < 4 { n * 2 } else { n + 4 };
            Some(cur)
        })
        .take_while(|&k| k <= self.max_streams);
        let frames_per_step = (self.step_secs * 30.0) as usize;
        let mut ramp = Vec::new();
        for streams in steps {
            let loaded = checkpoint::load(self.model_path, self.device)?;
            let mut builder = PipelineBuilder::new(loaded)
                .config(self.config.clone())
                .event_channel(false)
                .workers(self.workers)
                .window_threads(self.window_threads);
            for s in 0..streams {
                let mut r = synth::generate_recording(
                    &SynthConfig::default(),
                    1000 + s as u64,
                    &format!("s{s:02}"),
                );
                r.frames.truncate(frames_per_step.min(r.frames.len()));
                builder = builder.source(ReplaySource::new(r, Pacing::RealTime)?);
            }
            let pipeline = builder.start()?;
            let deadline = Instant::now() + Duration::from_secs_f64(self.step_secs * 3.0 + 10.0);
            while !pipeline.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (stats, _) = pipeline.shutdown()?;
            let p50 = stats.latency_percentile_ms(0.5);
            let p99 = stats.latency_percentile_ms(0.99);
            let dropped: u64 = stats.sources.iter().map(|s| s.dropped_overflow).sum();
            // Sustained: within budget at the configured hop, every window run, every frame kept.
            let sustained = p99 < self.budget_ms
                && stats.skipped_windows == 0
                && stats.widenings == 0
                && dropped == 0;
            if self.progress {
                eprintln!(
                    "{streams:>3} streams: p50 {p50:7.2} ms  p99 {p99:7.2} ms  skipped windows {}  hop widened {}  {}",
                    stats.skipped_windows,
                    stats.widenings,
                    if sustained { "ok" } else { "over budget" }
                );
            }
            ramp.push(RampStep {
                streams,
                latency_p50_ms: p50,
                latency_p99_ms: p99,
                skipped_windows: stats.skipped_windows,
                widenings: stats.widenings,
                dropped_frames: dropped,
                sustained,
            });
            if !sustained {
                break;
            }
        }
        Ok(ramp)
    }
}

impl StreamFigures {
    /// The human-readable table (`hop`: the configured hop, for the ramp's line).
    pub fn print(&self, hop: usize, budget_ms: f64) {
        if self.replay_speed_x.runs.is_empty() {
            return;
        }
        println!(
            "single-stream replay: {}× real time one frame at a time, {}× batched",
            self.replay_speed_x.show(1),
            self.replay_batched_speed_x.show(1)
        );
        if let Some(x) = &self.replay_batched_threads_speed_x {
            println!(
                "  batched on {} window threads: {}× real time ({}× the one-thread batched replay)",
                self.window_threads,
                x.show(1),
                x.zip(&self.replay_batched_speed_x, |a, b| a / b).show(2)
            );
        }
        if !self.ramp.is_empty() {
            println!(
                "latency at 30 fps (1 stream, median of repeats): p50 {:.2} ms, p99 {:.2} ms",
                self.latency_p50_ms, self.latency_p99_ms
            );
            println!(
                "concurrent 30-fps streams sustained ({} workers × {} window threads; p99 < {budget_ms} ms, hop {hop}, no skipped windows): {}",
                self.workers,
                self.window_threads,
                self.max_streams_30fps.show(0)
            );
        }
    }
}
