//! `bench`: what the streaming path costs on this machine, against recomputing the whole model
//! per window in the same run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use skelseg::model::checkpoint;
use skelseg::source::{Pacing, ReplaySource};
use skelseg::stream::{PipelineBuilder, StreamSegmenter};
use skelseg::synth::{self, SynthConfig};
use tch::{Device, Kind, Tensor};

use crate::common::{DeviceArg, bundled_model, device_name, print_json};
use crate::stream::StreamOptions;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Checkpoint; defaults to the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    options: StreamOptions,
    /// Seconds each stream-count step of the concurrency ramp runs.
    #[arg(long, default_value_t = 6.0)]
    step_secs: f64,
    /// Largest number of concurrent streams to try.
    #[arg(long, default_value_t = 32)]
    max_streams: usize,
    /// Latency budget (p99, ms) a stream count must meet to count as sustained.
    #[arg(long, default_value_t = 50.0)]
    budget_ms: f64,
    /// Inference workers of the concurrency ramp's pipeline (default: the library's, the cores
    /// less one).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    device: String,
    window_frames: usize,
    hop_frames: usize,
    lookahead_frames: usize,
    dsmi_us_per_frame: f64,
    dsmi_us_per_frame_batch: Vec<(usize, f64)>,
    mfai_ms_per_window: f64,
    mfai_ms_per_window_batch: Vec<(usize, f64)>,
    /// Full model (DSMI over the whole window + MFAI), recomputed per window: the no-cache baseline.
    full_ms_per_window: f64,
    /// Streaming cost per frame: DSMI per frame + one MFAI window every hop frames.
    streaming_ms_per_frame: f64,
    /// Baseline cost per frame: the full model every hop frames.
    baseline_ms_per_frame: f64,
    /// How many times cheaper the cached path is than the baseline.
    speedup_vs_baseline: f64,
    replay_speed_x: f64,
    /// The same replay, pushed 128 frames at a time (batched DSMI and windows, same events).
    replay_batched_speed_x: f64,
    workers: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    max_streams_30fps: usize,
    ramp: Vec<RampStep>,
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

/// Median wall time of `f` in milliseconds over `reps` runs after `warmup` runs.
fn time_ms(warmup: usize, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let device = args.device.device()?;
    let model_path = args.model.clone().unwrap_or_else(bundled_model);
    let loaded = checkpoint::load(&model_path, device)?;
    let cfg = args.options.config(&loaded.meta)?;
    let (w, hop) = (cfg.engine.window_frames as i64, cfg.engine.hop_frames);
    let d = loaded.meta.model.hidden;
    let model = &loaded.model;
    let _guard = tch::no_grad_guard();

    let input = |n: i64, t: i64| Tensor::randn([n, 6, t, 25], (Kind::Float, device)) * 0.1;
    let mut dsmi_batch = Vec::new();
    for n in [1i64, 8, 32] {
        let x = input(n, 1);
        let ms = time_ms(5, 30, || {
            drop(model.dsmi(&x, &x, &x, false)?);
            sync(device);
            Ok(())
        })?;
        dsmi_batch.push((n as usize, ms * 1e3 / n as f64));
    }
    let mut mfai_batch = Vec::new();
    for n in [1i64, 8, 32] {
        let feats = Tensor::randn([n, d, w], (Kind::Float, device));
        let mask = Tensor::ones([n, w], (Kind::Float, device));
        let ms = time_ms(2, 10, || {
            drop(model.mfai(&feats, &mask, false)?);
            sync(device);
            Ok(())
        })?;
        mfai_batch.push((n as usize, ms));
    }
    let full = {
        let x = input(1, w);
        let mask = Tensor::ones([1, w], (Kind::Float, device));
        time_ms(2, 10, || {
            drop(model.forward_t(&x, &x, &x, &mask, false)?);
            sync(device);
            Ok(())
        })?
    };
    let dsmi_us = dsmi_batch[0].1;
    let mfai_ms = mfai_batch[0].1;
    let streaming_ms_per_frame = dsmi_us / 1e3 + mfai_ms / hop as f64;
    let baseline_ms_per_frame = full / hop as f64;

    // Single-stream replay as fast as possible through the synchronous path.
    let synth_cfg = SynthConfig::default();
    let rec = synth::generate_recording(&synth_cfg, 12345, "bench");
    let replay = |batch: usize| -> Result<f64> {
        let loaded = checkpoint::load(&model_path, device)?;
        let mut seg = StreamSegmenter::with_config(loaded, "bench", cfg.clone())?;
        let start = Instant::now();
        for frames in rec.frames.chunks(batch) {
            seg.push_many(frames)?;
        }
        seg.finish()?;
        let secs = start.elapsed().as_secs_f64();
        Ok(rec.frames.len() as f64 / rec.fps / secs)
    };
    let replay_speed_x = replay(1)?;
    let replay_batched_speed_x = replay(128)?;
    let workers = args.workers.map_or_else(skelseg::stream::default_workers, usize::from);

    // Concurrency ramp: N paced 30-fps streams through the threaded pipeline.
    let mut ramp = Vec::new();
    let mut n = 1;
    let steps: Vec<usize> = std::iter::from_fn(|| {
        let cur = n;
        n = if n < 4 { n * 2 } else { n + 4 };
        Some(cur)
    })
    .take_while(|&k| k <= args.max_streams)
    .collect();
    let frames_per_step = (args.step_secs * 30.0) as usize;
    for &streams in &steps {
        let loaded = checkpoint::load(&model_path, device)?;
        let mut builder =
            PipelineBuilder::new(loaded).config(cfg.clone()).event_channel(false).workers(workers);
        for s in 0..streams {
            let mut r = synth::generate_recording(&synth_cfg, 1000 + s as u64, &format!("s{s:02}"));
            r.frames.truncate(frames_per_step.min(r.frames.len()));
            builder = builder.source(ReplaySource::new(r, Pacing::RealTime)?);
        }
        let pipeline = builder.start()?;
        let deadline = Instant::now() + Duration::from_secs_f64(args.step_secs * 3.0 + 10.0);
        while !pipeline.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (stats, _) = pipeline.shutdown()?;
        let p50 = stats.latency_percentile_ms(0.5);
        let p99 = stats.latency_percentile_ms(0.99);
        let dropped: u64 = stats.sources.iter().map(|s| s.dropped_overflow).sum();
        // Sustained: within budget at the configured hop, every window run, every frame kept.
        let sustained = p99 < args.budget_ms
            && stats.skipped_windows == 0
            && stats.widenings == 0
            && dropped == 0;
        if !args.json {
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
    let max_streams_30fps =
        ramp.iter().filter(|r| r.sustained).map(|r| r.streams).max().unwrap_or(0);
    let single = ramp.first();
    let report = BenchReport {
        device: device_name(device),
        window_frames: w as usize,
        hop_frames: hop,
        lookahead_frames: cfg.engine.lookahead_frames,
        dsmi_us_per_frame: dsmi_us,
        dsmi_us_per_frame_batch: dsmi_batch,
        mfai_ms_per_window: mfai_ms,
        mfai_ms_per_window_batch: mfai_batch,
        full_ms_per_window: full,
        streaming_ms_per_frame,
        baseline_ms_per_frame,
        speedup_vs_baseline: baseline_ms_per_frame / streaming_ms_per_frame,
        replay_speed_x,
        replay_batched_speed_x,
        workers,
        latency_p50_ms: single.map_or(f64::NAN, |r| r.latency_p50_ms),
        latency_p99_ms: single.map_or(f64::NAN, |r| r.latency_p99_ms),
        max_streams_30fps,
        ramp,
    };
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "device {} | W {} hop {} lookahead {}",
        report.device, w, hop, report.lookahead_frames
    );
    for (n, us) in &report.dsmi_us_per_frame_batch {
        println!("DSMI  batch {n:>2}: {us:9.1} µs/frame");
    }
    for (n, ms) in &report.mfai_ms_per_window_batch {
        println!("MFAI  batch {n:>2}: {ms:9.2} ms/window ({:.2} ms per stream)", ms / *n as f64);
    }
    println!("full model per window (no cache): {:.2} ms", report.full_ms_per_window);
    println!(
        "per frame: streaming {:.3} ms vs no-cache baseline {:.3} ms → {:.1}× cheaper",
        report.streaming_ms_per_frame, report.baseline_ms_per_frame, report.speedup_vs_baseline
    );
    println!(
        "single-stream replay: {:.1}× real time one frame at a time, {:.1}× batched",
        report.replay_speed_x, report.replay_batched_speed_x
    );
    println!(
        "latency at 30 fps (1 stream): p50 {:.2} ms, p99 {:.2} ms",
        report.latency_p50_ms, report.latency_p99_ms
    );
    println!(
        "concurrent 30-fps streams sustained ({} workers; p99 < {} ms, hop {hop}, no skipped windows): {}",
        report.workers, args.budget_ms, report.max_streams_30fps
    );
    Ok(ExitCode::SUCCESS)
}
