//! Segments a live Kinect (or any body tracker) stream and prints segments as they are committed.
//!
//! By default it listens for a bridge sending `skeleton-ndjson/1` over TCP on 127.0.0.1:7000;
//! `--osc` listens for KinectV2-OSC on UDP 127.0.0.1:12345 instead; `--simulate` starts the
//! built-in simulator, so it runs with no sensor at all. Ctrl-C stops it after flushing every
//! open segment.
//!
//! `cargo run --release --example live_kinect -- --simulate`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use skelseg::source::{Pacing, SourceSpec};
use skelseg::stream::{PipelineBuilder, VizTap};
use skelseg::viz::{Visualizer, VizTarget};
use skelseg::{Device, Model};

/// Live segmentation from a Kinect bridge, KinectV2-OSC or the simulator.
#[derive(Parser)]
struct Args {
    /// Listen for KinectV2-OSC (UDP) instead of NDJSON over TCP.
    #[arg(long)]
    osc: bool,
    /// Use the built-in simulator instead of a sensor.
    #[arg(long)]
    simulate: bool,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<f64>,
    /// Checkpoint; default: the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Rerun output: `off`, `spawn`, `connect[:URL]` or `save:PATH` (an .rrd file).
    #[arg(long, default_value = "off")]
    viz: VizTarget,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec: SourceSpec = match (args.simulate, args.osc) {
        (true, _) => "sim".parse()?,
        (false, true) => {
            format!("osc:{}", args.listen.as_deref().unwrap_or("127.0.0.1:12345")).parse()?
        }
        (false, false) => {
            format!("tcp-listen:{}", args.listen.as_deref().unwrap_or("127.0.0.1:7000")).parse()?
        }
    };
    let model = Model::load(
        args.model.unwrap_or_else(|| root.join("fixtures/models/synth.safetensors")),
        Device::cuda_if_available(),
    )?;
    let viz = Visualizer::start(&args.viz, "skelseg live_kinect", model.classes())?;
    let tap = viz.as_ref().map_or_else(VizTap::off, |v| VizTap::new(v.sender()));
    eprintln!("listening on {spec} (Ctrl-C to stop)");
    let pipeline = PipelineBuilder::new(model)
        .boxed_source(spec.open(Pacing::RealTime)?)
        .event_channel(false)
        .viz(tap)
        .on_event(|event| println!("{event}"))
        .start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))?;
    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    while !stop.load(Ordering::Relaxed)
        && !pipeline.is_finished()
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stats, _) = pipeline.shutdown()?;
    if let Some(viz) = viz {
        viz.finish()?;
    }
    eprintln!("{} frames, {} segments committed", stats.frames, stats.segments);
    Ok(())
}
