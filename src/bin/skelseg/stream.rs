//! `stream` and `send`: live segmentation, and a recording replayed as a live stream.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use skelseg::model::checkpoint::{self, CheckpointMeta};
use skelseg::source::{self, SourceSpec};
use skelseg::stream::{
    EngineConfig, PipelineBuilder, SegmentEvent, SegmentRule, SegmenterConfig, StreamConfig,
};

use crate::common::{DeviceArg, VizArgs, bundled_model, print_json};

/// Streaming settings shared by `stream`, `eval --online`, `demo` and `bench`. Their defaults
/// are the library's, so that without options the CLI segments like
/// [`StreamConfig::from_checkpoint`].
#[derive(Clone, Debug, Args)]
pub struct StreamOptions {
    /// Frames of cached features each MFAI window sees.
    #[arg(long, default_value_t = EngineConfig::default().window_frames)]
    pub window: usize,
    /// Run MFAI every this many frames.
    #[arg(long, default_value_t = EngineConfig::default().hop_frames)]
    pub hop: usize,
    /// Future frames a frame waits for before its label is final (15 = 0.5 s at 30 fps; at 8
    /// the labels come 0.23 s sooner but online F1@50 drops by about 11 points, BENCHMARKS.md).
    #[arg(long, default_value_t = EngineConfig::default().lookahead_frames)]
    pub lookahead: usize,
    /// Mean probability a new label needs to take over without a boundary peak (θ); default:
    /// the value chosen for the model on validation data (its JSON's `stream`), else 0.6.
    #[arg(long)]
    pub theta: Option<f32>,
    /// Minimum length of a new label, as a fraction of its class's mean training segment length
    /// (from the checkpoint); `--min-frames` is used for classes without one. Default: the value
    /// chosen for the model on validation data (its JSON's `stream`), else 0.125.
    #[arg(long)]
    pub min_len_factor: Option<f64>,
    /// How a new label begins: `candidate` (a held or peak-backed run takes over; short delays)
    /// or `majority` (boundary peaks cut pieces that take their majority label, as offline
    /// refinement; longer delays). Default: the rule chosen for the model on validation data
    /// (its JSON's `stream`), else `candidate`.
    #[arg(long, value_enum)]
    pub rule: Option<SegmentRule>,
    /// `--rule majority`: a label held without a boundary peak takes over after this many times
    /// its minimum length (0 = never). Default: the value chosen for the model on validation
    /// data (its JSON's `stream`), else 4.
    #[arg(long)]
    pub peakless_factor: Option<f32>,
    /// Minimum length in frames of a new label without a boundary peak.
    #[arg(long, default_value_t = SegmenterConfig::default().min_frames)]
    pub min_frames: usize,
    /// Boundary probability a local maximum needs to count as a peak (1 = no peaks); default:
    /// the threshold chosen on validation data, from the checkpoint.
    #[arg(long)]
    pub boundary_threshold: Option<f32>,
    /// Also emit a `frame_label` event for every finalised frame.
    #[arg(long)]
    pub per_frame: bool,
    /// Smooth joints with a One-Euro filter first (for jittery trackers such as MediaPipe).
    #[arg(long)]
    pub one_euro: bool,
    /// Close the open segment after this many frames without anybody (0 = never).
    #[arg(long, default_value_t = SegmenterConfig::default().person_timeout_frames)]
    pub person_timeout: usize,
}

impl StreamOptions {
    /// The streaming configuration for a model with metadata `meta`.
    pub fn config(&self, meta: &CheckpointMeta) -> skelseg::Result<StreamConfig> {
        let chosen = SegmenterConfig::checkpoint_choices(meta);
        let mut segmenter = SegmenterConfig {
            min_mean_prob: self.theta.unwrap_or(chosen.min_mean_prob),
            rule: self.rule.unwrap_or(chosen.rule),
            peakless_factor: self.peakless_factor.unwrap_or(chosen.peakless_factor),
            min_frames: self.min_frames,
            per_frame: self.per_frame,
            person_timeout_frames: self.person_timeout,
            ..SegmenterConfig::default()
        }
        .tuned_for(meta, self.min_len_factor.unwrap_or(chosen.min_len_factor));
        if let Some(threshold) = self.boundary_threshold {
            segmenter.boundary_threshold = threshold;
        }
        let cfg = StreamConfig {
            engine: EngineConfig {
                window_frames: self.window,
                hop_frames: self.hop,
                lookahead_frames: self.lookahead,
                one_euro: self.one_euro.then(skelseg::stream::OneEuroConfig::default),
                ..EngineConfig::default()
            },
            segmenter,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Checkpoint (`.safetensors`); defaults to the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where frames come from: `file:PATH`, `tcp-listen:127.0.0.1:7000`, `tcp:HOST:PORT`,
    /// `udp:127.0.0.1:7001`, `osc:127.0.0.1:12345`, `sim`, `zenoh:skelseg/frames/**`
    /// (repeatable).
    #[arg(long, required = true)]
    source: Vec<SourceSpec>,
    /// Replay speed of `file:` sources (1 = real time; 0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
    #[command(flatten)]
    options: StreamOptions,
    /// Inference workers, each with its own copy of the model and a share of `--threads`
    /// (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Threads per worker for its large steps (a replay, a stream catching up), each with a copy
    /// of the model (default: 2 on a multi-core CPU, so one replayed stream uses two cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    window_threads: Option<u16>,
    #[command(flatten)]
    viz: VizArgs,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Print events as NDJSON (one object per line, with a `type` field).
    #[arg(long)]
    json: bool,
    /// Also publish every event (`zenoh`: at `{prefix}/events/{stream}`, needs a zenoh: source).
    #[arg(long, value_enum)]
    publish_events: Option<crate::zenoh_cli::PublishEvents>,
    #[command(flatten)]
    zenoh: crate::zenoh_cli::ZenohArgs,
}

pub fn stream(args: StreamArgs) -> Result<ExitCode> {
    let device = args.device.device()?;
    let model_path = args.model.clone().map_or_else(bundled_model, Ok)?;
    let loaded = checkpoint::load(&model_path, device)?;
    let cfg = args.options.config(&loaded.meta)?;
    let viz = args.viz.start(&skelseg::io::ClassMap::new(loaded.meta.classes.clone()))?;
    // Labelled recordings show their ground truth beside the segments.
    for spec in &args.source {
        if let SourceSpec::File(path) = spec {
            let rec = skelseg::io::read_recording(path)?;
            if let Some(intervals) = &rec.intervals {
                viz.tap.ground_truth(&format!("file:{}", rec.name), intervals);
            }
        }
    }
    let pacing = if args.speed > 0.0 {
        source::Pacing::Speed(args.speed)
    } else {
        source::Pacing::AsFastAsPossible
    };
    // Every stream is put on the model's frame rate (a 15 or 60 fps sensor, a recording at
    // another rate), as training and evaluation put recordings on it.
    let model_fps = loaded.meta.fps;
    let mut builder =
        PipelineBuilder::new(loaded).config(cfg).event_channel(false).viz(viz.tap.clone());
    if let Some(n) = args.workers {
        builder = builder.workers(n.into());
    }
    if let Some(n) = args.window_threads {
        builder = builder.window_threads(n.into());
    }
    for spec in &args.source {
        if matches!(spec, SourceSpec::Zenoh(_)) {
            continue; // opened by `add_zenoh`, which needs the session settings
        }
        let source = spec.open(pacing).with_context(|| format!("opening source {spec}"))?;
        builder =
            builder.boxed_source(Box::new(skelseg::resample::RateAdapter::new(source, model_fps)));
    }
    let (builder, mut publish) = add_zenoh(builder, &args, model_fps)?;
    let json = args.json;
    let builder = builder.on_event(move |event: &SegmentEvent| {
        publish(event);
        let mut out = std::io::stdout().lock();
        let written = if json {
            serde_json::to_writer(&mut out, event)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        } else {
            writeln!(out, "{event}")
        };
        // A closed stdout (piped into `head`) ends nothing else; the pipeline still flushes.
        written.ok();
    });
    let pipeline = builder.start()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("installing the signal handler")?;
    }
    while !stop.load(Ordering::Relaxed) && !pipeline.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stats, _) = pipeline.shutdown()?;
    viz.finish()?;
    let skipped: u64 = stats.sources.iter().map(|s| s.skipped()).sum();
    let dropped: u64 = stats.sources.iter().map(|s| s.dropped_overflow).sum();
    tracing::info!(
        frames = stats.frames,
        segments = stats.segments,
        skipped,
        dropped,
        skipped_windows = stats.skipped_windows,
        widenings = stats.widenings,
        "stream finished"
    );
    if !json {
        eprintln!(
            "{} frames, {} segments; {skipped} input lines skipped, {dropped} frames dropped, {} windows skipped, hop widened {} times",
            stats.frames, stats.segments, stats.skipped_windows, stats.widenings
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `--publish-events` does with each event.
type Publish = Box<dyn FnMut(&SegmentEvent) + Send>;

/// Opens the `zenoh:` sources as one worker, with its event sink when `--publish-events zenoh`.
#[cfg(feature = "zenoh")]
fn add_zenoh(
    mut builder: PipelineBuilder,
    args: &StreamArgs,
    model_fps: f64,
) -> Result<(PipelineBuilder, Publish)> {
    let keyexprs: Vec<String> = args
        .source
        .iter()
        .filter_map(|s| match s {
            SourceSpec::Zenoh(k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    let publish = args.publish_events.is_some();
    if keyexprs.is_empty() {
        if publish {
            anyhow::bail!("--publish-events zenoh needs a zenoh: source (it names the prefix)");
        }
        return Ok((builder, Box::new(|_: &SegmentEvent| {})));
    }
    let worker = crate::zenoh_cli::open_worker(
        &args.zenoh,
        &keyexprs,
        publish,
        &source::NetConfig::DEFAULT,
    )?;
    for s in worker.sources {
        builder = builder.source(skelseg::resample::RateAdapter::new(s, model_fps));
    }
    let publish: Publish = match worker.sink {
        Some(sink) => Box::new(sink.into_callback()),
        None => Box::new(|_: &SegmentEvent| {}),
    };
    Ok((builder, publish))
}

#[cfg(not(feature = "zenoh"))]
fn add_zenoh(
    builder: PipelineBuilder,
    args: &StreamArgs,
    _model_fps: f64,
) -> Result<(PipelineBuilder, Publish)> {
    if args.publish_events.is_some()
        || args.source.iter().any(|s| matches!(s, SourceSpec::Zenoh(_)))
    {
        anyhow::bail!("skelseg was built without the `zenoh` feature");
    }
    Ok((builder, Box::new(|_: &SegmentEvent| {})))
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recording to send (PKU-MMD, NTU, UTKinect, NDJSON).
    #[arg(long)]
    file: PathBuf,
    /// Receiver: `HOST:PORT` (with `--proto`), or `zenoh:KEY` to publish on a Zenoh key
    /// (`zenoh:skelseg/frames/bed3`).
    #[arg(long)]
    to: String,
    /// Transport.
    #[arg(long, value_enum, default_value_t = source::Proto::Tcp)]
    proto: source::Proto,
    /// Frames per second (0 = as fast as possible).
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Print one JSON object with the counts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    zenoh: crate::zenoh_cli::ZenohArgs,
}

pub fn send(args: SendArgs) -> Result<ExitCode> {
    let rec = skelseg::io::read_recording(&args.file)?;
    if let Some(key) = args.to.strip_prefix("zenoh:") {
        return send_zenoh(&args, key, &rec);
    }
    let to: SocketAddr = args
        .to
        .parse()
        .with_context(|| format!("--to {}: expected IP:PORT or zenoh:KEY", args.to))?;
    let fps = (args.fps > 0.0).then_some(args.fps);
    let stats = source::send_recording(&rec, to, args.proto, fps)?;
    if args.json {
        print_json(&stats)?;
    } else {
        println!(
            "sent {} frames of {} to {} over {:?}",
            stats.frames,
            args.file.display(),
            args.to,
            args.proto
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "zenoh")]
fn send_zenoh(args: &SendArgs, key: &str, rec: &skelseg::io::Recording) -> Result<ExitCode> {
    skelseg::cluster::check_chunk("zenoh key", key)?;
    let session = args.zenoh.session()?;
    let options = skelseg::cluster::ZenohSendOptions {
        fps: (args.fps > 0.0).then_some(args.fps),
        ..skelseg::cluster::ZenohSendOptions::default()
    };
    let stats = skelseg::cluster::send_recording(&session, key, rec, &options)?;
    if args.json {
        print_json(&stats)?;
    } else {
        println!("published {} frames of {} on zenoh:{key}", stats.frames, args.file.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "zenoh"))]
fn send_zenoh(_args: &SendArgs, key: &str, _rec: &skelseg::io::Recording) -> Result<ExitCode> {
    anyhow::bail!("--to zenoh:{key}: skelseg was built without the `zenoh` feature")
}
