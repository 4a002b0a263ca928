//! `synth`, `info`, `metrics`: data in, figures out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use skelseg::io::{self, Recording};
use skelseg::metrics::{Scores, Variant};
use skelseg::model::checkpoint;
use skelseg::synth::{self, SynthConfig};

use crate::common::print_json;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (dataset convention: skeleton/, label/, mapping.txt, splits/).
    #[arg(long)]
    out: PathBuf,
    /// Number of sequences.
    #[arg(long, default_value_t = 100)]
    sequences: usize,
    /// Seed; the same seed gives the same data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON summary instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct SynthSummary {
    out: PathBuf,
    sequences: usize,
    frames: usize,
    classes: usize,
    splits: std::collections::BTreeMap<String, usize>,
    seed: u64,
}

pub fn synth(args: SynthArgs) -> Result<ExitCode> {
    let cfg = SynthConfig { sequences: args.sequences, seed: args.seed, ..SynthConfig::default() };
    let dataset = synth::generate_dataset(&cfg);
    io::dataset::write_dataset(&args.out, &dataset)
        .with_context(|| format!("writing the dataset to {}", args.out.display()))?;
    let summary = SynthSummary {
        out: args.out.clone(),
        sequences: dataset.recordings.len(),
        frames: dataset.recordings.iter().map(|r| r.frames.len()).sum(),
        classes: dataset.classes.len(),
        splits: dataset.splits.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        seed: args.seed,
    };
    if args.json {
        print_json(&summary)?;
    } else {
        println!(
            "wrote {} sequences ({} frames, {:.1} min at 30 fps, {} classes incl. background) to {}",
            summary.sequences,
            summary.frames,
            summary.frames as f64 / 30.0 / 60.0,
            summary.classes,
            summary.out.display()
        );
        for (split, n) in &summary.splits {
            println!("  split {split:<6} {n} sequences");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A recording (PKU-MMD .txt, NTU .skeleton, UTKinect joints file, .ndjson) or a checkpoint (.safetensors).
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct RecordingInfo {
    file: PathBuf,
    name: String,
    layout: String,
    frames: usize,
    fps: f64,
    duration_secs: f64,
    bodies_max: usize,
    frames_with_bodies: Vec<usize>,
    labels: Option<Vec<LabelInfo>>,
}

#[derive(Debug, Serialize)]
struct LabelInfo {
    class: usize,
    start: usize,
    end: usize,
}

pub fn info(args: InfoArgs) -> Result<ExitCode> {
    if args.file.extension().is_some_and(|e| e == "safetensors") {
        return model_info(args);
    }
    let rec = io::read_recording(&args.file)?;
    let info = recording_info(&args.file, &rec);
    if args.json {
        print_json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("file      {}", info.file.display());
    println!("layout    {} (mapped to kinect_v2_25)", info.layout);
    println!("frames    {} ({:.1} s at {} fps)", info.frames, info.duration_secs, info.fps);
    for (n, count) in info.frames_with_bodies.iter().enumerate() {
        println!("  {count:>6} frames with {n} bodies");
    }
    match &info.labels {
        None => println!("labels    none"),
        Some(labels) => {
            println!("labels    {} intervals", labels.len());
            for l in labels {
                println!("  class {:>3}  frames {:>6}–{:<6}", l.class, l.start, l.end);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn recording_info(file: &std::path::Path, rec: &Recording) -> RecordingInfo {
    let bodies_max = rec.frames.iter().map(|f| f.bodies.len()).max().unwrap_or(0);
    let mut frames_with_bodies = vec![0; bodies_max + 1];
    for f in &rec.frames {
        frames_with_bodies[f.bodies.len()] += 1;
    }
    RecordingInfo {
        file: file.to_owned(),
        name: rec.name.clone(),
        layout: rec.source_layout.to_string(),
        frames: rec.frames.len(),
        fps: rec.fps,
        duration_secs: rec.frames.len() as f64 / rec.fps.max(1e-9),
        bodies_max,
        frames_with_bodies,
        labels: rec.intervals.as_ref().map(|ivs| {
            ivs.iter()
                .map(|iv| LabelInfo { class: iv.class, start: iv.start, end: iv.end })
                .collect()
        }),
    }
}

fn model_info(args: InfoArgs) -> Result<ExitCode> {
    let loaded = checkpoint::load(&args.file, tch::Device::Cpu)?;
    let params = loaded.model.num_parameters();
    #[derive(Serialize)]
    struct ModelInfo<'a> {
        file: &'a std::path::Path,
        params: i64,
        dsmi_flops_per_frame: f64,
        mfai_flops_per_window_256: f64,
        meta: &'a checkpoint::CheckpointMeta,
    }
    let info = ModelInfo {
        file: &args.file,
        params,
        dsmi_flops_per_frame: skelseg::model::dsmi_flops_per_frame(&loaded.meta.model) as f64,
        mfai_flops_per_window_256: skelseg::model::mfai_flops_per_window(&loaded.meta.model, 256)
            as f64,
        meta: &loaded.meta,
    };
    if args.json {
        print_json(&info)?;
    } else {
        println!("checkpoint  {}", args.file.display());
        println!("parameters  {params}");
        println!("classes     {}: {}", loaded.meta.classes.len(), loaded.meta.classes.join(", "));
        println!("DSMI        {:.2} MFLOP per frame", info.dsmi_flops_per_frame / 1e6);
        println!(
            "MFAI        {:.1} MFLOP per 256-frame window",
            info.mfai_flops_per_window_256 / 1e6
        );
        println!("model       {}", serde_json::to_string(&loaded.meta.model)?);
        println!("trained by  {}", loaded.meta.command);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Folder of predicted label files (one label name per line per frame).
    #[arg(long)]
    pred: PathBuf,
    /// Folder of ground-truth label files with the same file names.
    #[arg(long)]
    gt: PathBuf,
    /// Background class name, excluded from segments (repeatable).
    #[arg(long = "bg")]
    background: Vec<String>,
    /// End-of-sequence convention of the segment extraction.
    #[arg(long, value_enum, default_value_t = VariantArg::Asrf)]
    variant: VariantArg,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum VariantArg {
    /// MS-TCN's eval.py (the last segment's end is one frame short).
    Mstcn,
    /// ASRF / DeST / InterAct code base.
    Asrf,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Mstcn => Variant::Mstcn,
            VariantArg::Asrf => Variant::Asrf,
        }
    }
}

pub fn metrics(args: MetricsArgs) -> Result<ExitCode> {
    let scores =
        io::gt::evaluate_dirs(&args.pred, &args.gt, &args.background, args.variant.into())?;
    if args.json {
        print_json(&scores)?;
    } else {
        print_scores(&scores);
    }
    Ok(ExitCode::SUCCESS)
}

/// The metrics table.
pub fn print_scores(s: &Scores) {
    println!(
        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "F1@10", "F1@25", "F1@50", "Edit", "Acc", "videos", "frames"
    );
    println!(
        "{:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>9}",
        s.f1_10, s.f1_25, s.f1_50, s.edit, s.acc, s.videos, s.frames
    );
}
