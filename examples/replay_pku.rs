//! Replays PKU-MMD skeleton files through the streaming path, prints the committed segments and,
//! where a label file exists (`../label/NAME.txt`), the online scores.
//!
//! `cargo run --release --example replay_pku [-- FILE...] [--model CKPT] [--viz save:replay.rrd]`
//! Without files it replays the bundled synthetic sequence.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use skelseg::io::ClassMap;
use skelseg::model::checkpoint;
use skelseg::online::stream_recording_with;
use skelseg::stream::{StreamConfig, VizTap};
use skelseg::viz::{Visualizer, VizTarget};
use skelseg::{Device, Model};

/// Replay PKU-MMD files through skelseg's streaming path.
#[derive(Parser)]
struct Args {
    /// PKU-MMD skeleton files (150 floats per line); default: the bundled sequence.
    files: Vec<PathBuf>,
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
    let files = if args.files.is_empty() {
        vec![root.join("fixtures/synth/skeleton/synth_0000.txt")]
    } else {
        args.files
    };
    let model = args.model.unwrap_or_else(|| root.join("fixtures/models/synth.safetensors"));
    let classes = ClassMap::new(checkpoint::load_meta(&model)?.classes);
    let viz = Visualizer::start(&args.viz, "skelseg replay_pku", &classes)?;
    let tap = viz.as_ref().map_or_else(VizTap::off, |v| VizTap::new(v.sender()));
    for file in files {
        let rec = skelseg::io::read_recording(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let loaded = Model::load(&model, Device::cuda_if_available())?;
        let classes = loaded.classes().clone();
        let cfg = StreamConfig::from_checkpoint(loaded.meta());
        let run = stream_recording_with(loaded, &rec, &cfg, tap.clone())?;
        println!(
            "{} ({} frames): {} segments",
            file.display(),
            rec.frames.len(),
            run.segments.len()
        );
        for s in &run.segments {
            let name = classes.name(s.class).unwrap_or("?");
            println!(
                "  {:>6}–{:<6} {name:<16} conf {:.2} (known at frame {})",
                s.start_frame, s.end_frame, s.confidence, s.started_at
            );
        }
        match &run.scores {
            Some(sc) => println!(
                "  online: F1@10 {:.1}  F1@25 {:.1}  F1@50 {:.1}  Edit {:.1}  Acc {:.1}",
                sc.f1_10, sc.f1_25, sc.f1_50, sc.edit, sc.acc
            ),
            None => println!("  (no labels: no scores)"),
        }
    }
    if let Some(viz) = viz {
        viz.finish()?;
    }
    Ok(())
}
