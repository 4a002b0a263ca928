//! `bench`: what the streaming path costs on this machine, against recomputing the whole model
//! per window and against the machine's own matrix-product peak, measured in the same run. Every
//! figure is measured `--repeats` times and reported as median and spread.
//!
//! One module per group of figures: [`model`] (the model alone on random inputs), [`streams`]
//! (replay and the concurrency ramp through the library's streaming path), [`train`]
//! (`--train`) and [`precision`] (`--precision`); [`figure`] holds the repeated measurement.

mod figure;
mod model;
mod precision;
mod streams;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use skelseg::model::checkpoint;

use self::model::{ModelFigures, Window};
use self::precision::{Precision, PrecisionCheck};
use self::streams::{StreamBench, StreamFigures};
use self::train::TrainFigures;
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

/// The `--json` report: the run's settings, then every group's figures.
#[derive(Debug, Serialize)]
struct BenchReport {
    device: String,
    precision: &'static str,
    threads: i32,
    repeats: usize,
    window_frames: usize,
    hop_frames: usize,
    lookahead_frames: usize,
    #[serde(flatten)]
    model: ModelFigures,
    #[serde(flatten)]
    train: TrainFigures,
    /// Reduced precision only: final-stage outputs against fp32 on one window.
    precision_check: Option<PrecisionCheck>,
    #[serde(flatten)]
    streams: StreamFigures,
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let device = args.device.device()?;
    let model_path = args.model.clone().map_or_else(bundled_model, Ok)?;
    let mut loaded = checkpoint::load(&model_path, device)?;
    let cfg = args.options.config(&loaded.meta)?;
    let window = Window {
        frames: cfg.engine.window_frames as i64,
        hop: cfg.engine.hop_frames,
        lookahead: cfg.engine.lookahead_frames,
    };
    let kind = args.precision.kind();
    let fp32 = args.precision == Precision::Fp32;
    if args.train && !fp32 {
        anyhow::bail!("--train times float32 training only (--precision fp32)");
    }
    let _guard = tch::no_grad_guard();
    let precision_check = if fp32 {
        None
    } else {
        let reference = checkpoint::load(&model_path, device)?;
        loaded.vs.set_kind(kind);
        Some(PrecisionCheck::run(&reference.model, &loaded.model, kind, window.frames, device)?)
    };
    let repeats = args.repeats.max(1);
    let model = ModelFigures::measure(
        &loaded.model,
        &loaded.meta.model,
        window,
        kind,
        device,
        (repeats, args.profile),
    )?;

    let workers = args.workers.map_or_else(skelseg::stream::default_workers, usize::from);
    let streams = StreamBench {
        model_path: &model_path,
        device,
        config: &cfg,
        workers,
        window_threads: args
            .window_threads
            .map_or_else(|| skelseg::stream::default_window_threads(workers, device), usize::from),
        step_secs: args.step_secs,
        max_streams: args.max_streams,
        budget_ms: args.budget_ms,
        progress: !args.json,
    }
    // The streaming engine feeds float32 frames: reduced precision is timed on the model alone.
    .measure(if fp32 { repeats } else { 0 })?;

    let train_shape = (args.train_batch, args.train_crop);
    let train = if args.train {
        // A fresh copy: the steps change the weights.
        let loaded = checkpoint::load(&model_path, device)?;
        TrainFigures::measure(&loaded, train_shape, device, repeats)?
    } else {
        TrainFigures::default()
    };

    let report = BenchReport {
        device: device_name(device),
        precision: args.precision.name(),
        threads: tch::get_num_threads(),
        repeats,
        window_frames: window.frames as usize,
        hop_frames: window.hop,
        lookahead_frames: window.lookahead,
        model,
        train,
        precision_check,
        streams,
    };
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "device {} ({}) | W {} hop {} lookahead {} | median [min–max] of {} repeats",
        report.device,
        report.precision,
        report.window_frames,
        report.hop_frames,
        report.lookahead_frames,
        repeats
    );
    report.model.print();
    if let Some(check) = &report.precision_check {
        println!("{}", check.describe(report.precision));
    }
    report.train.print(train_shape);
    report.streams.print(window.hop, args.budget_ms);
    Ok(ExitCode::SUCCESS)
}
