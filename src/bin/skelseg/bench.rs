//! `bench`: what the streaming path costs on this machine, against recomputing the whole model
//! per window and against the machine's own matrix-product peak, measured in the same run. Every
//! figure is measured `--repeats` times and reported as median and spread.

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
use tch::nn::OptimizerConfig;
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
    /// Largest number of concurrent streams to try (0: no concurrency ramp).
    #[arg(long, default_value_t = 32)]
    max_streams: usize,
    /// How many times each figure is measured (median and spread are reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also time training steps (forward, loss, backward, AdamW) on random `--train-batch` ×
    /// `--train-crop` batches: training frames per second, whole model and DSMI alone.
    #[arg(long)]
    train: bool,
    /// Sequences per training step timed by `--train`.
    #[arg(long, default_value_t = 4)]
    train_batch: i64,
    /// Frames per sequence of the training steps timed by `--train`.
    #[arg(long, default_value_t = 512)]
    train_crop: i64,
    /// Numeric precision of the model (fp32 is what every other command uses). Other precisions
    /// time DSMI, MFAI and the full model and compare their outputs with fp32; the replay and
    /// the concurrency ramp (the streaming engine feeds float32) run in fp32 only.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    /// Also time each block of MFAI (and DSMI) on windows of batch 1: milliseconds per window
    /// (per frame for DSMI) spent in the input conv, each encoder and decoder level, the action
    /// and boundary blocks and each stage of the query decoder.
    #[arg(long)]
    profile: bool,
    /// Latency budget (p99, ms) a stream count must meet to count as sustained.
    #[arg(long, default_value_t = 50.0)]
    budget_ms: f64,
    /// Inference workers of the concurrency ramp's pipeline (default: the library's, one per
    /// core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Threads per worker for its large steps in the ramp, and threads of the single-stream
    /// replay's `StreamSegmenter` (default: the library's, 2 on a multi-core CPU; the replay
    /// runs 1 and, when this is more, also this many).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    window_threads: Option<u16>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// One figure measured `repeats` times (each repeat itself the median of several runs), so a
/// noisy neighbour shows up as spread rather than as a different answer.
#[derive(Debug, Clone, Serialize)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
    /// `(max − min) / median`.
    spread: f64,
    runs: Vec<f64>,
}

impl Figure {
    fn new(mut runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        let (min, max) = (
            sorted.first().copied().unwrap_or(f64::NAN),
            sorted.last().copied().unwrap_or(f64::NAN),
        );
        runs.shrink_to_fit();
        Self { median, min, max, spread: (max - min) / median, runs }
    }

    /// `f` of every run (for derived figures: throughput, ratios).
    fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        Self::new(self.runs.iter().map(|&x| f(x)).collect())
    }

    /// `f(a_i, b_i)` run by run: ratios of figures measured in the same repeat.
    fn zip(&self, other: &Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self::new(self.runs.iter().zip(&other.runs).map(|(&a, &b)| f(a, b)).collect())
    }

    fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} [{:.digits$}–{:.digits$}]",
            self.median,
            self.min,
            self.max,
            digits = digits
        )
    }
}

#[derive(Debug, Serialize)]
struct BenchReport {
    device: String,
    precision: &'static str,
    threads: i32,
    repeats: usize,
    window_frames: usize,
    hop_frames: usize,
    lookahead_frames: usize,
    /// The machine's matrix-product peak (in `precision`) through libtorch, measured in the same
    /// run: G multiply-adds per second of the fastest n×n by n×n product among
    /// [`PEAK_SIZES`] (the small ones run from cache; on a machine whose memory bandwidth is
    /// shared, large ones run far slower).
    matmul_peak_gmacs: Figure,
    /// The size n that was fastest in each repeat.
    matmul_peak_size: Vec<i64>,
    /// The 1024 × 1024 product alone (memory-bound where bandwidth is the limit).
    matmul_1024_gmacs: Figure,
    dsmi_us_per_frame: Figure,
    dsmi_us_per_frame_batch: Vec<(usize, Figure)>,
    /// DSMI multiply-adds per second at batch 1 and at the best batch, as a fraction of the peak.
    dsmi_peak_fraction: Figure,
    dsmi_peak_fraction_best_batch: Figure,
    mfai_ms_per_window: Figure,
    /// Milliseconds per MFAI forward of a batch of n windows (the whole batch; per window is
    /// this over n).
    mfai_ms_per_batch: Vec<(usize, Figure)>,
    mfai_peak_fraction: Figure,
    mfai_peak_fraction_best_batch: Figure,
    /// `--profile`: each block's milliseconds per MFAI window of batch 1 (`mfai.*`) or per DSMI
    /// frame of batch 1 (`dsmi.*`), in the order they finish.
    blocks_ms: Vec<(String, Figure)>,
    dsmi_macs_per_frame: u64,
    mfai_macs_per_window: u64,
    /// Full model (DSMI over the whole window + MFAI), recomputed per window: the no-cache baseline.
    full_ms_per_window: Figure,
    /// The streaming engine's MFAI window: the final stage for the columns one hop finalises
    /// (`InterAct::mfai_final`), batch 1.
    mfai_final_ms_per_window: Figure,
    /// DSMI per frame in a batch of one hop's frames: how the engine runs it (once per window).
    dsmi_us_per_frame_at_hop: Figure,
    /// Streaming cost per frame: DSMI per frame (at hop) + one engine window every hop frames.
    streaming_ms_per_frame: Figure,
    /// Baseline cost per frame: the full model every hop frames.
    baseline_ms_per_frame: Figure,
    /// How many times cheaper the cached path is than the baseline (repeat by repeat).
    speedup_vs_baseline: Figure,
    /// A stricter baseline: without the feature cache, but computing only the final columns
    /// too (DSMI over the window + `mfai_final`), so the ratio is the cache's alone.
    baseline_same_columns_ms_per_frame: Figure,
    speedup_vs_baseline_same_columns: Figure,
    /// `--train` only: frames per second of a whole training step and of DSMI forward + backward.
    train_frames_per_sec: Option<Figure>,
    train_dsmi_frames_per_sec: Option<Figure>,
    /// Reduced precision only: final-stage outputs against fp32 on one window.
    precision_check: Option<PrecisionCheck>,
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
struct PrecisionCheck {
    /// Largest |Δ| of the final action probabilities.
    max_abs_prob_diff: f64,
    /// Largest |Δ| of the final boundary probabilities.
    max_abs_boundary_diff: f64,
    /// Frames whose arg-max class differs from fp32's.
    argmax_disagreement: f64,
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

/// Numeric precision the bench runs the model in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Precision {
    /// 32-bit floats (the default everywhere).
    Fp32,
    /// bfloat16 weights and activations (AVX-512 BF16 / AMX on CPU, tensor cores on CUDA).
    Bf16,
    /// IEEE half precision (CUDA).
    Fp16,
}

impl Precision {
    fn kind(self) -> Kind {
        match self {
            Self::Fp32 => Kind::Float,
            Self::Bf16 => Kind::BFloat16,
            Self::Fp16 => Kind::Half,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        }
    }
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

/// G multiply-adds per second of an `n × n` by `n × n` matrix product in `kind`.
fn matmul_gmacs(n: i64, kind: Kind, device: Device) -> Result<f64> {
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let ms = time_ms(1, 5, || {
        drop(a.matmul(&b));
        sync(device);
        Ok(())
    })?;
    Ok((n * n * n) as f64 / (ms * 1e-3) / 1e9)
}

/// The micro figures of one repeat.
struct Micro {
    /// G multiply-adds per second for each of [`PEAK_SIZES`].
    matmul_gmacs: Vec<f64>,
    dsmi_us: Vec<(usize, f64)>,
    /// DSMI per frame in a batch of one hop's frames.
    dsmi_hop_us: f64,
    mfai_ms: Vec<(usize, f64)>,
    /// The engine's window: final stage, only the columns one hop finalises.
    mfai_final_ms: f64,
    full_ms: f64,
    /// The no-cache baseline computing only those columns too.
    full_final_ms: f64,
    /// `--profile`: ms per window (per frame for `dsmi.*`) of each block.
    blocks: Vec<(String, f64)>,
}

const BATCHES: [i64; 5] = [1, 4, 8, 16, 32];

/// Square matrix sizes the peak is taken over.
const PEAK_SIZES: [i64; 4] = [128, 256, 512, 1024];

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let device = args.device.device()?;
    let model_path = args.model.clone().map_or_else(bundled_model, Ok)?;
    let mut loaded = checkpoint::load(&model_path, device)?;
    let cfg = args.options.config(&loaded.meta)?;
    let (w, hop) = (cfg.engine.window_frames as i64, cfg.engine.hop_frames);
    let mcfg = loaded.meta.model.clone();
    let d = mcfg.hidden;
    let kind = args.precision.kind();
    let _guard = tch::no_grad_guard();
    let precision_check = if args.precision == Precision::Fp32 {
        None
    } else {
        let reference = checkpoint::load(&model_path, device)?;
        loaded.vs.set_kind(kind);
        Some(precision_check(&reference.model, &loaded.model, kind, w, device)?)
    };
    let model = &loaded.model;
    let input =
        |n: i64, t: i64| Tensor::randn([n, 6, t, 25], (Kind::Float, device)).to_kind(kind) * 0.1;
    let repeats = args.repeats.max(1);
    let mut micro = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let matmul_gmacs =
            PEAK_SIZES.iter().map(|&n| matmul_gmacs(n, kind, device)).collect::<Result<_>>()?;
        let mut dsmi_us = Vec::new();
        for n in BATCHES {
            let x = input(n, 1);
            let ms = time_ms(5, 30, || {
                drop(model.dsmi(&x, &x, &x, false)?);
                sync(device);
                Ok(())
            })?;
            dsmi_us.push((n as usize, ms * 1e3 / n as f64));
        }
        // The engine runs DSMI once per window, over the hop's frames.
        let dsmi_hop_us = {
            let x = input(hop as i64, 1);
            time_ms(5, 30, || {
                drop(model.dsmi(&x, &x, &x, false)?);
                sync(device);
                Ok(())
            })? * 1e3
                / hop as f64
        };
        let mut mfai_ms = Vec::new();
        for n in BATCHES {
            let feats = Tensor::randn([n, d, w], (kind, device));
            let mask = Tensor::ones([n, w], (kind, device));
            let ms = time_ms(2, 10, || {
                drop(model.mfai(&feats, &mask, false)?);
                sync(device);
                Ok(())
            })?;
            mfai_ms.push((n as usize, ms));
        }
        // The columns a window at hop `hop` finalises start here (what the engine computes).
        let from = (w - hop as i64 - cfg.engine.lookahead_frames as i64).max(0);
        let mfai_final_ms = {
            let feats = Tensor::randn([1, d, w], (kind, device));
            let mask = Tensor::ones([1, w], (kind, device));
            time_ms(2, 10, || {
                drop(model.mfai_final(&feats, &mask, from)?);
                sync(device);
                Ok(())
            })?
        };
        let x = input(1, w);
        let mask = Tensor::ones([1, w], (kind, device));
        let full_ms = time_ms(2, 10, || {
            drop(model.forward_t(&x, &x, &x, &mask, false)?);
            sync(device);
            Ok(())
        })?;
        let full_final_ms = time_ms(2, 10, || {
            let feats = model.dsmi(&x, &x, &x, false)?;
            drop(model.mfai_final(&feats, &mask, from)?);
            sync(device);
            Ok(())
        })?;
        let blocks = if args.profile { profile(model, d, w, kind, device)? } else { Vec::new() };
        micro.push(Micro {
            matmul_gmacs,
            dsmi_us,
            dsmi_hop_us,
            mfai_ms,
            mfai_final_ms,
            full_ms,
            full_final_ms,
            blocks,
        });
    }
    let figure = |f: &dyn Fn(&Micro) -> f64| Figure::new(micro.iter().map(f).collect());
    let peak = figure(&|m| m.matmul_gmacs.iter().copied().fold(0.0, f64::max));
    let peak_size: Vec<i64> = micro
        .iter()
        .map(|m| {
            let best = m.matmul_gmacs.iter().copied().fold(0.0, f64::max);
            let i = m.matmul_gmacs.iter().position(|&g| g == best).unwrap_or(0);
            PEAK_SIZES[i]
        })
        .collect();
    let large = figure(&|m| m.matmul_gmacs[PEAK_SIZES.len() - 1]);
    let per_batch = |pick: &dyn Fn(&Micro) -> &Vec<(usize, f64)>| -> Vec<(usize, Figure)> {
        (0..BATCHES.len()).map(|i| (BATCHES[i] as usize, figure(&|m| pick(m)[i].1))).collect()
    };
    let dsmi_batch = per_batch(&|m| &m.dsmi_us);
    let mfai_batch = per_batch(&|m| &m.mfai_ms);
    let dsmi_macs = skelseg::model::dsmi_flops_per_frame(&mcfg);
    let mfai_macs = skelseg::model::mfai_flops_per_window(&mcfg, w as u64);
    // fraction of the peak, repeat by repeat: (MACs / s) / (peak MACs / s)
    let dsmi_fraction =
        |us: &Figure| us.zip(&peak, |us, p| dsmi_macs as f64 / (us * 1e-6) / (p * 1e9));
    let mfai_fraction = |ms: &Figure, n: usize| {
        ms.zip(&peak, |ms, p| (n as u64 * mfai_macs) as f64 / (ms * 1e-3) / (p * 1e9))
    };
    // The batch with the lowest cost per frame (DSMI, already per frame) or per window (MFAI).
    let best = |batches: &[(usize, Figure)], per_item: bool| -> (usize, Figure) {
        let cost = |(n, f): &(usize, Figure)| f.median / if per_item { *n as f64 } else { 1.0 };
        batches
            .iter()
            .min_by(|a, b| cost(a).total_cmp(&cost(b)))
            .cloned()
            .unwrap_or_else(|| (1, Figure::new(vec![])))
    };
    let blocks: Vec<(String, Figure)> = micro
        .first()
        .map(|m| m.blocks.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            let ms = figure(&|m| m.blocks.iter().find(|b| b.0 == name).map_or(f64::NAN, |b| b.1));
            (name, ms)
        })
        .collect();
    let dsmi_us = dsmi_batch[0].1.clone();
    let mfai_ms = mfai_batch[0].1.clone();
    let full = figure(&|m| m.full_ms);
    let (_, dsmi_best) = best(&dsmi_batch, false);
    let (mfai_best_n, mfai_best) = best(&mfai_batch, true);
    let mfai_final = figure(&|m| m.mfai_final_ms);
    let dsmi_hop = figure(&|m| m.dsmi_hop_us);
    let streaming = dsmi_hop.zip(&mfai_final, |us, ms| us / 1e3 + ms / hop as f64);
    let baseline = full.map(|ms| ms / hop as f64);
    let speedup = baseline.zip(&streaming, |b, s| b / s);
    let baseline_final = figure(&|m| m.full_final_ms).map(|ms| ms / hop as f64);
    let speedup_final = baseline_final.zip(&streaming, |b, s| b / s);

    // Single-stream replay as fast as possible through the synchronous path.
    let synth_cfg = SynthConfig::default();
    let rec = synth::generate_recording(&synth_cfg, 12345, "bench");
    // The streaming engine feeds float32 frames: reduced precision is timed on the model alone.
    let full_precision = args.precision == Precision::Fp32;
    let stream_repeats = if full_precision { repeats } else { 0 };
    let workers = args.workers.map_or_else(skelseg::stream::default_workers, usize::from);
    let window_threads = args
        .window_threads
        .map_or_else(|| skelseg::stream::default_window_threads(workers, device), usize::from);
    let replay_once = |batch: usize, threads: usize| -> Result<f64> {
        let loaded = checkpoint::load(&model_path, device)?;
        let mut seg = StreamSegmenter::builder(loaded)
            .stream("bench")
            .config(cfg.clone())
            .window_threads(threads)
            .build()?;
        let start = Instant::now();
        for frames in rec.frames.chunks(batch) {
            seg.push_many(frames)?;
        }
        seg.finish()?;
        let secs = start.elapsed().as_secs_f64();
        Ok(rec.frames.len() as f64 / rec.fps / secs)
    };
    let (mut replay, mut replay_batched, mut replay_threads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..stream_repeats {
        replay.push(replay_once(1, 1)?);
        replay_batched.push(replay_once(128, 1)?);
        if window_threads > 1 {
            replay_threads.push(replay_once(128, window_threads)?);
        }
    }

    // Concurrency ramp: N paced 30-fps streams through the threaded pipeline, once per repeat.
    let mut ramps = Vec::new();
    let ramp_repeats = if args.max_streams == 0 { 0 } else { stream_repeats };
    for _ in 0..ramp_repeats {
        ramps.push(ramp(&args, &model_path, device, (workers, window_threads), &cfg, &synth_cfg)?);
    }
    let sustained =
        |r: &Vec<RampStep>| r.iter().filter(|s| s.sustained).map(|s| s.streams).max().unwrap_or(0);
    let max_streams = Figure::new(ramps.iter().map(|r| sustained(r) as f64).collect());
    let single: Vec<&RampStep> = ramps.iter().filter_map(|r| r.first()).collect();
    let single_p =
        |f: &dyn Fn(&RampStep) -> f64| Figure::new(single.iter().map(|s| f(s)).collect()).median;
    let mut train = (Vec::new(), Vec::new());
    if args.train && args.precision != Precision::Fp32 {
        anyhow::bail!("--train times float32 training only (--precision fp32)");
    }
    if args.train {
        let mut loaded = checkpoint::load(&model_path, device)?;
        loaded.vs.set_kind(kind);
        for _ in 0..repeats {
            let (step, dsmi) = train_rates(&loaded, args.train_batch, args.train_crop, device)?;
            train.0.push(step);
            train.1.push(dsmi);
        }
    }
    let train_figure =
        |runs: Vec<f64>| if runs.is_empty() { None } else { Some(Figure::new(runs)) };
    let report = BenchReport {
        device: device_name(device),
        precision: args.precision.name(),
        threads: tch::get_num_threads(),
        repeats,
        window_frames: w as usize,
        hop_frames: hop,
        lookahead_frames: cfg.engine.lookahead_frames,
        matmul_peak_gmacs: peak.clone(),
        matmul_peak_size: peak_size,
        matmul_1024_gmacs: large,
        dsmi_peak_fraction: dsmi_fraction(&dsmi_us),
        dsmi_peak_fraction_best_batch: dsmi_fraction(&dsmi_best),
        dsmi_us_per_frame: dsmi_us,
        dsmi_us_per_frame_batch: dsmi_batch,
        mfai_peak_fraction: mfai_fraction(&mfai_ms, 1),
        mfai_peak_fraction_best_batch: mfai_fraction(&mfai_best, mfai_best_n),
        mfai_ms_per_window: mfai_ms,
        mfai_ms_per_batch: mfai_batch,
        blocks_ms: blocks,
        dsmi_macs_per_frame: dsmi_macs,
        mfai_macs_per_window: mfai_macs,
        full_ms_per_window: full,
        mfai_final_ms_per_window: mfai_final,
        dsmi_us_per_frame_at_hop: dsmi_hop,
        streaming_ms_per_frame: streaming,
        baseline_ms_per_frame: baseline,
        speedup_vs_baseline: speedup,
        baseline_same_columns_ms_per_frame: baseline_final,
        speedup_vs_baseline_same_columns: speedup_final,
        train_frames_per_sec: train_figure(train.0),
        train_dsmi_frames_per_sec: train_figure(train.1),
        precision_check,
        replay_speed_x: Figure::new(replay),
        replay_batched_speed_x: Figure::new(replay_batched),
        window_threads,
        replay_batched_threads_speed_x: train_figure(replay_threads),
        workers,
        latency_p50_ms: single_p(&|s| s.latency_p50_ms),
        latency_p99_ms: single_p(&|s| s.latency_p99_ms),
        max_streams_30fps: max_streams,
        ramp: ramps,
    };
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "device {} ({}) | W {} hop {} lookahead {} | median [min–max] of {} repeats",
        report.device, report.precision, w, hop, report.lookahead_frames, repeats
    );
    println!(
        "matmul peak: {} G multiply-adds/s (fastest of n = {:?}; 1024: {})",
        report.matmul_peak_gmacs.show(1),
        PEAK_SIZES,
        report.matmul_1024_gmacs.show(1)
    );
    for (n, us) in &report.dsmi_us_per_frame_batch {
        println!("DSMI  batch {n:>2}: {} µs/frame", us.show(1));
    }
    println!(
        "DSMI  {:.2} M multiply-adds/frame: {} of peak at batch 1, {} at the best batch",
        dsmi_macs as f64 / 1e6,
        report.dsmi_peak_fraction.show(3),
        report.dsmi_peak_fraction_best_batch.show(3)
    );
    for (n, ms) in &report.mfai_ms_per_batch {
        let per_window = ms.map(|ms| ms / *n as f64);
        println!("MFAI  batch {n:>2}: {} ms/window", per_window.show(2));
    }
    println!(
        "MFAI  {:.1} M multiply-adds/window: {} of peak at batch 1, {} at the best batch",
        mfai_macs as f64 / 1e6,
        report.mfai_peak_fraction.show(3),
        report.mfai_peak_fraction_best_batch.show(3)
    );
    if !report.blocks_ms.is_empty() {
        let mfai: f64 = report
            .blocks_ms
            .iter()
            .filter(|(name, _)| name.starts_with("mfai.") && !name.contains('/'))
            .map(|(_, f)| f.median)
            .sum();
        println!("blocks (batch 1; ms per window, dsmi.* per frame; share of MFAI's blocks):");
        for (name, ms) in &report.blocks_ms {
            let share = if name.starts_with("mfai.") && !name.contains('/') {
                format!("{:5.1} %", ms.median / mfai * 100.0)
            } else {
                String::new()
            };
            println!("  {name:<22} {} {share}", ms.show(3));
        }
    }
    println!("full model per window (no cache): {} ms", report.full_ms_per_window.show(2));
    println!(
        "engine's MFAI window (final stage, last hop's columns): {} ms",
        report.mfai_final_ms_per_window.show(2)
    );
    println!(
        "DSMI as the engine runs it (one batch of a hop's frames per window): {} µs per frame",
        report.dsmi_us_per_frame_at_hop.show(1)
    );
    println!(
        "per frame: streaming {} ms vs no-cache baseline {} ms → {}× cheaper",
        report.streaming_ms_per_frame.show(3),
        report.baseline_ms_per_frame.show(3),
        report.speedup_vs_baseline.show(1)
    );
    println!(
        "  against a no-cache baseline that also computes only those columns: {} ms → {}×",
        report.baseline_same_columns_ms_per_frame.show(3),
        report.speedup_vs_baseline_same_columns.show(1)
    );
    if let Some(p) = &report.precision_check {
        println!(
            "{} vs fp32 on one window: max |Δ prob| {:.2e}, max |Δ boundary| {:.2e}, arg-max differs on {:.2}% of frames",
            report.precision,
            p.max_abs_prob_diff,
            p.max_abs_boundary_diff,
            p.argmax_disagreement * 100.0
        );
    }
    if let (Some(step), Some(dsmi)) =
        (&report.train_frames_per_sec, &report.train_dsmi_frames_per_sec)
    {
        println!(
            "training ({} × {} frames): {} frames/s per step, DSMI forward + backward {} frames/s",
            args.train_batch,
            args.train_crop,
            step.show(0),
            dsmi.show(0)
        );
    }
    if full_precision {
        println!(
            "single-stream replay: {}× real time one frame at a time, {}× batched",
            report.replay_speed_x.show(1),
            report.replay_batched_speed_x.show(1)
        );
        if let Some(x) = &report.replay_batched_threads_speed_x {
            println!(
                "  batched on {} window threads: {}× real time ({}× the one-thread batched replay)",
                report.window_threads,
                x.show(1),
                x.zip(&report.replay_batched_speed_x, |a, b| a / b).show(2)
            );
        }
    }
    if !report.ramp.is_empty() {
        println!(
            "latency at 30 fps (1 stream, median of repeats): p50 {:.2} ms, p99 {:.2} ms",
            report.latency_p50_ms, report.latency_p99_ms
        );
        println!(
            "concurrent 30-fps streams sustained ({} workers × {} window threads; p99 < {} ms, hop {hop}, no skipped windows): {}",
            report.workers,
            report.window_threads,
            args.budget_ms,
            report.max_streams_30fps.show(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--profile`: each block's median milliseconds over 10 MFAI windows (batch 1, W frames) and
/// 30 DSMI frames (batch 1), after warm-up.
fn profile(
    model: &skelseg::model::InterAct,
    d: i64,
    w: i64,
    kind: Kind,
    device: Device,
) -> Result<Vec<(String, f64)>> {
    let feats = Tensor::randn([1, d, w], (kind, device));
    let mask = Tensor::ones([1, w], (kind, device));
    let x = Tensor::randn([1, 6, 1, 25], (kind, device)) * 0.1;
    let mut runs: Vec<(String, Vec<f64>)> = Vec::new();
    let mut record = |blocks: Vec<skelseg::model::BlockTime>| {
        for b in blocks {
            let ms = b.total.as_secs_f64() * 1e3;
            match runs.iter_mut().find(|(name, _)| *name == b.name) {
                Some((_, v)) => v.push(ms),
                None => runs.push((b.name, vec![ms])),
            }
        }
    };
    for i in 0..12 {
        let (out, blocks) = skelseg::model::profile_blocks(|| model.mfai(&feats, &mask, false));
        drop(out?);
        sync(device);
        if i >= 2 {
            record(blocks);
        }
    }
    for i in 0..35 {
        let (out, blocks) = skelseg::model::profile_blocks(|| model.dsmi(&x, &x, &x, false));
        drop(out?);
        sync(device);
        if i >= 5 {
            record(blocks);
        }
    }
    Ok(runs
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            (name, v[v.len() / 2])
        })
        .collect())
}

/// Training throughput on random inputs (frames per second): a whole step (forward in training
/// mode, loss, backward, AdamW), and DSMI forward + backward alone. Each the median of 3 steps
/// after one warm-up step.
fn train_rates(
    loaded: &checkpoint::LoadedModel,
    batch: i64,
    crop: i64,
    device: Device,
) -> Result<(f64, f64)> {
    let model = &loaded.model;
    let a = loaded.meta.model.num_classes;
    let kind = loaded.vs.variables().values().next().map_or(Kind::Float, |t| t.kind());
    let x = Tensor::randn([batch, 6, crop, 25], (Kind::Float, device)).to_kind(kind) * 0.5;
    let mask = Tensor::ones([batch, crop], (kind, device));
    let labels = Tensor::randint(a, [batch, crop], (Kind::Int64, device));
    let boundary = Tensor::zeros([batch, crop], (Kind::Float, device));
    let mut opt = tch::nn::AdamW::default().build(&loaded.vs, 1e-7)?;
    let frames = (batch * crop) as f64;
    let step_ms = time_ms(1, 3, || {
        tch::with_grad(|| -> Result<()> {
            let out = model.forward_t(&x, &x, &x, &mask, true)?;
            let loss = skelseg::model::loss(&out, &labels, &boundary, &mask)?;
            opt.backward_step(&loss.total);
            sync(device);
            Ok(())
        })
    })?;
    let dsmi_ms = time_ms(1, 3, || {
        tch::with_grad(|| -> Result<()> {
            opt.zero_grad();
            model.dsmi(&x, &x, &x, true)?.sum(Kind::Float).backward();
            sync(device);
            Ok(())
        })
    })?;
    Ok((frames / (step_ms * 1e-3), frames / (dsmi_ms * 1e-3)))
}

/// Final-stage outputs of `model` (already in `kind`) against the fp32 `reference` on one
/// window of a synthetic recording's modalities.
fn precision_check(
    reference: &skelseg::model::InterAct,
    model: &skelseg::model::InterAct,
    kind: Kind,
    w: i64,
    device: Device,
) -> Result<PrecisionCheck> {
    tch::manual_seed(7);
    let x = Tensor::randn([1, 6, w, 25], (Kind::Float, device)) * 0.5;
    let mask = Tensor::ones([1, w], (Kind::Float, device));
    let want = reference.forward_t(&x, &x, &x, &mask, false)?;
    let xk = x.to_kind(kind);
    let got = model.forward_t(&xk, &xk, &xk, &mask.to_kind(kind), false)?;
    let (pw, pg) = (want.final_action_probs()?, got.final_action_probs()?.to_kind(Kind::Float));
    let (bw, bg) = (want.final_boundary_probs()?, got.final_boundary_probs()?.to_kind(Kind::Float));
    let differs = pw.argmax(1, false).ne_tensor(&pg.argmax(1, false));
    Ok(PrecisionCheck {
        max_abs_prob_diff: (&pw - &pg).abs().max().double_value(&[]),
        max_abs_boundary_diff: (&bw - &bg).abs().max().double_value(&[]),
        argmax_disagreement: differs.to_kind(Kind::Float).mean(Kind::Float).double_value(&[]),
    })
}

/// One concurrency ramp: 1, 2, 4, 8, 12 … paced 30-fps streams until one misses the budget.
fn ramp(
    args: &BenchArgs,
    model_path: &std::path::Path,
    device: Device,
    (workers, window_threads): (usize, usize),
    cfg: &skelseg::stream::StreamConfig,
    synth_cfg: &SynthConfig,
) -> Result<Vec<RampStep>> {
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
        let loaded = checkpoint::load(model_path, device)?;
        let mut builder = PipelineBuilder::new(loaded)
            .config(cfg.clone())
            .event_channel(false)
            .workers(workers)
            .window_threads(window_threads);
        for s in 0..streams {
            let mut r = synth::generate_recording(synth_cfg, 1000 + s as u64, &format!("s{s:02}"));
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
    Ok(ramp)
}
