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
    /// Write `.ndjson` recordings in this layout (`kinect_v2_25` or `mediapipe_33`) with
    /// time-based CSV labels (`label,start_s,end_s`) instead of PKU-MMD files.
    #[arg(long)]
    ndjson: Option<String>,
    /// Frame rate of the generated recordings.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Draw actions from the first N of the 14 (default all).
    #[arg(long)]
    actions: Option<usize>,
    /// Actions per recording, `MIN..MAX` (default 8..14).
    #[arg(long, default_value = "8..14")]
    per_recording: String,
    /// Probability that a recording has a second person in view.
    #[arg(long, default_value_t = 0.3)]
    second_person: f64,
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
    let (min_actions, max_actions) = args
        .per_recording
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .with_context(|| {
            format!("--per-recording: expected MIN..MAX, found {:?}", args.per_recording)
        })?;
    let cfg = SynthConfig {
        sequences: args.sequences,
        seed: args.seed,
        fps: args.fps,
        actions: args.actions.unwrap_or(0),
        min_actions,
        max_actions,
        second_person_prob: args.second_person,
        ..SynthConfig::default()
    };
    cfg.validate()?;
    let dataset = synth::generate_dataset(&cfg);
    match &args.ndjson {
        Some(layout) => {
            let layout = skelseg::skeleton::Layout::from_name(layout)?;
            io::dataset::write_dataset_ndjson(&args.out, &dataset, layout)
        }
        None => io::dataset::write_dataset(&args.out, &dataset),
    }
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
            "wrote {} sequences ({} frames, {:.1} min at {} fps, {} classes incl. background) to {}",
            summary.sequences,
            summary.frames,
            summary.frames as f64 / args.fps / 60.0,
            args.fps,
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
    #[arg(long, value_enum, default_value_t = Variant::Asrf)]
    variant: Variant,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn metrics(args: MetricsArgs) -> Result<ExitCode> {
    let scores = io::gt::evaluate_dirs(&args.pred, &args.gt, &args.background, args.variant)?;
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

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Dataset folder (skeleton/, label/, mapping.txt, splits/).
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ClassCheck {
    id: usize,
    name: String,
    instances: usize,
    total_secs: f64,
    mean_secs: f64,
    min_secs: f64,
    max_secs: f64,
}

#[derive(Debug, Serialize)]
struct SplitCheck {
    recordings: usize,
    frames: usize,
    secs: f64,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    data: PathBuf,
    recordings: usize,
    labelled: usize,
    frames: usize,
    secs: f64,
    classes: Vec<ClassCheck>,
    splits: std::collections::BTreeMap<String, SplitCheck>,
    layouts: std::collections::BTreeMap<String, usize>,
    fps: std::collections::BTreeMap<String, usize>,
    label_formats: std::collections::BTreeMap<String, usize>,
    problems: Vec<String>,
}

/// Reads a dataset folder the way `train` does and reports what is in it and every problem.
/// Exits with failure when there is a problem, so scripts can gate on it.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    use std::collections::BTreeMap;
    let scan = io::dataset::scan_dataset(&args.data, io::dataset::DatasetFormat::Pku)
        .with_context(|| format!("reading the dataset {}", args.data.display()))?;
    let ds = &scan.dataset;
    let mut classes: Vec<ClassCheck> = ds
        .classes
        .names()
        .iter()
        .enumerate()
        .map(|(id, name)| ClassCheck {
            id,
            name: name.clone(),
            instances: 0,
            total_secs: 0.0,
            mean_secs: 0.0,
            min_secs: f64::INFINITY,
            max_secs: 0.0,
        })
        .collect();
    let secs_of = |r: &Recording| r.frames.len() as f64 / r.fps.max(1e-9);
    for rec in &ds.recordings {
        let Some(labels) = rec.frame_labels() else { continue };
        for (class, start, end) in skelseg::online::label_runs(&labels) {
            if let Some(c) = classes.get_mut(class) {
                let secs = (end - start + 1) as f64 / rec.fps.max(1e-9);
                c.instances += 1;
                c.total_secs += secs;
                c.min_secs = c.min_secs.min(secs);
                c.max_secs = c.max_secs.max(secs);
            }
        }
    }
    let mut problems: Vec<String> = scan.problems.iter().map(|p| p.to_string()).collect();
    for c in &mut classes {
        if c.instances > 0 {
            c.mean_secs = c.total_secs / c.instances as f64;
        } else {
            c.min_secs = 0.0;
            if c.id > 0 {
                problems.push(format!("class {} `{}` has no labelled instance", c.id, c.name));
            }
        }
    }
    let split_of = |names: &[&Recording]| SplitCheck {
        recordings: names.len(),
        frames: names.iter().map(|r| r.frames.len()).sum(),
        secs: names.iter().map(|r| secs_of(r)).sum(),
    };
    let mut splits: BTreeMap<String, SplitCheck> = ds
        .splits
        .iter()
        .map(|(k, names)| {
            let recs: Vec<&Recording> =
                ds.recordings.iter().filter(|r| names.contains(&r.name)).collect();
            (k.clone(), split_of(&recs))
        })
        .collect();
    let unsplit: Vec<&Recording> = ds
        .recordings
        .iter()
        .filter(|r| !ds.splits.values().any(|names| names.contains(&r.name)))
        .collect();
    if !unsplit.is_empty() && !ds.splits.is_empty() {
        splits.insert("(in no split)".into(), split_of(&unsplit));
    }
    let mut layouts = BTreeMap::new();
    let mut fps = BTreeMap::new();
    for r in &ds.recordings {
        *layouts.entry(r.source_layout.name().to_string()).or_insert(0) += 1;
        *fps.entry(format!("{}", (r.fps * 100.0).round() / 100.0)).or_insert(0) += 1;
    }
    let mut label_formats = BTreeMap::new();
    for f in scan.label_formats.values() {
        let name = serde_json::to_value(f).ok().and_then(|v| v.as_str().map(str::to_owned));
        *label_formats.entry(name.unwrap_or_default()).or_insert(0) += 1;
    }
    let unlabelled = ds.recordings.iter().filter(|r| r.intervals.is_none()).count();
    if unlabelled > 0 {
        label_formats.insert("none (unlabelled)".into(), unlabelled);
    }
    let report = CheckReport {
        data: args.data.clone(),
        recordings: ds.recordings.len(),
        labelled: ds.recordings.len() - unlabelled,
        frames: ds.recordings.iter().map(|r| r.frames.len()).sum(),
        secs: ds.recordings.iter().map(secs_of).sum(),
        classes,
        splits,
        layouts,
        fps,
        label_formats,
        problems,
    };
    let code = if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    if args.json {
        print_json(&report)?;
        return Ok(code);
    }
    println!(
        "{}: {} recordings ({} labelled), {} frames, {:.1} min",
        report.data.display(),
        report.recordings,
        report.labelled,
        report.frames,
        report.secs / 60.0
    );
    let join = |m: &BTreeMap<String, usize>| {
        m.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")
    };
    println!("layouts       {}", join(&report.layouts));
    println!("frame rates   {}", join(&report.fps));
    println!("label formats {}", join(&report.label_formats));
    println!();
    println!(
        "{:>3}  {:<24} {:>9} {:>9} {:>8} {:>8}",
        "id", "class", "instances", "mean s", "min s", "max s"
    );
    for c in &report.classes {
        println!(
            "{:>3}  {:<24} {:>9} {:>9.2} {:>8.2} {:>8.2}",
            c.id, c.name, c.instances, c.mean_secs, c.min_secs, c.max_secs
        );
    }
    println!();
    for (name, s) in &report.splits {
        println!(
            "split {name:<14} {:>4} recordings {:>8} frames {:>7.1} min",
            s.recordings,
            s.frames,
            s.secs / 60.0
        );
    }
    if report.problems.is_empty() {
        println!("\nno problems found");
    } else {
        println!("\n{} problems:", report.problems.len());
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    Ok(code)
}
