//! `demo`, `eval`, `calibrate`, `view`: the commands that run a trained model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use skelseg::io::dataset::DatasetFormat;
use skelseg::io::{self, ClassMap, Dataset, Recording};
use skelseg::metrics::Scores;
use skelseg::modality::ModalityConfig;
use skelseg::model::{ModelConfig, checkpoint};
use skelseg::online::{OnlineReport, evaluate_online};
use skelseg::stream::StreamConfig;
use skelseg::train::{self, SequenceTensors};

use crate::common::{DeviceArg, bundled_model, bundled_sequence, print_json};
use crate::data::print_scores;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint (`.safetensors`); defaults to the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Dataset folder.
    #[arg(long)]
    data: PathBuf,
    /// Dataset folder format.
    #[arg(long, value_enum, default_value_t = DatasetFormat::Pku)]
    format: DatasetFormat,
    /// Evaluate only this split (`test`, `val`, ...); without it, every recording.
    #[arg(long)]
    split: Option<String>,
    /// Evaluate only recordings whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// Boundary threshold of the ASRF refinement (1 = plain argmax); default: the checkpoint's.
    #[arg(long)]
    threshold: Option<f32>,
    /// Also run the streaming path and report online figures beside the offline ones.
    #[arg(long)]
    online: bool,
    #[command(flatten)]
    stream: crate::stream::StreamOptions,
    /// Write MS-TCN style prediction files into this folder: one label name per recorded frame,
    /// at the recording's own rate (predictions on the model's grid are carried back).
    #[arg(long)]
    write_pred: Option<PathBuf>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct EvalJson {
    #[serde(flatten)]
    offline_flat: Scores,
    params: i64,
    offline: Scores,
    #[serde(skip_serializing_if = "Option::is_none")]
    online: Option<OnlineReport>,
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let device = args.device.device()?;
    let model_path = args.model.clone().map_or_else(bundled_model, Ok)?;
    let (loaded, dataset) = load_labelled(&model_path, &args.data, args.format, device)?;
    let recs = select(&dataset, args.split.as_deref(), &args.select)?;
    let seqs = sequences(&recs, &loaded.meta.model, loaded.meta.fps)?;
    let threshold = args.threshold.unwrap_or(loaded.meta.model.boundary_threshold as f32);
    let (offline, preds) = train::evaluate(&loaded.model, &seqs, device, threshold, &[0])?;
    if let Some(dir) = &args.write_pred {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (rec, pred) in recs.iter().zip(&preds) {
            // One label per recorded frame: predictions on the model's grid go back to the
            // recording's own rate.
            let at_rate = skelseg::resample::resample_recording(rec, loaded.meta.fps);
            let labels = if at_rate.frames.len() == rec.frames.len() {
                pred.labels.clone()
            } else {
                let stamps = |r: &Recording| -> Vec<f64> {
                    r.frames.iter().map(|f| f.timestamp_secs).collect()
                };
                skelseg::resample::to_source_frames(&stamps(&at_rate), &pred.labels, &stamps(rec))
            };
            let names: Vec<&str> =
                labels.iter().map(|&c| dataset.classes.name(c).unwrap_or("?")).collect();
            io::gt::write_labels(&dir.join(format!("{}.txt", rec.name)), &names)?;
        }
    }
    let params = loaded.model.num_parameters();
    let online = if args.online {
        let cfg = args.stream.config(&loaded.meta)?;
        let at_rate: Vec<_> = recs
            .iter()
            .map(|r| skelseg::resample::resample_recording(r, loaded.meta.fps))
            .collect();
        let at_rate: Vec<&Recording> = at_rate.iter().map(|r| r.as_ref()).collect();
        Some(evaluate_online(loaded, &at_rate, &cfg)?)
    } else {
        None
    };
    if args.json {
        print_json(&EvalJson { offline_flat: offline.clone(), params, offline, online })?;
    } else {
        println!("offline ({} sequences, {} parameters):", recs.len(), params);
        print_scores(&offline);
        if let Some(on) = &online {
            println!(
                "online (window {}, hop {}, lookahead {}):",
                on.window_frames, on.hop_frames, on.lookahead_frames
            );
            print_scores(&on.scores);
            println!(
                "emission delay: mean {:.1} frames, p95 {:.1} frames; over-segmentation ratio {:.2}",
                on.delay_mean_frames, on.delay_p95_frames, on.overseg_ratio
            );
            println!(
                "the stream's finalised frames, segmented afterwards as offline (diagnostic):"
            );
            print_scores(&on.finalised_frames_refined);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Checkpoint (`.safetensors`) whose JSON gets the fitted temperature.
    #[arg(long)]
    model: PathBuf,
    /// Validation dataset folder (never the test split: the temperature is a fitted parameter).
    #[arg(long)]
    data: PathBuf,
    /// Dataset folder format.
    #[arg(long, value_enum, default_value_t = DatasetFormat::Pku)]
    format: DatasetFormat,
    /// Use only this split.
    #[arg(long)]
    split: Option<String>,
    /// Use only recordings whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// Use the recordings the checkpoint was validated on (`data.val_recordings` in its JSON;
    /// what `skelseg train` and `python/skelseg_train.py` record).
    #[arg(long, conflicts_with_all = ["split", "select"])]
    own_validation: bool,
    /// Also choose the boundary threshold on this data: the value of
    /// `skelseg::train::THRESHOLD_GRID` with the best F1@50 (then Acc), as `skelseg train` does
    /// after every validation (for checkpoints trained elsewhere).
    #[arg(long)]
    threshold: bool,
    /// Also choose the streaming segmenter settings (rule, θ, minimum-length factor, peakless
    /// factor) on this data with the calibrated model: the recordings stream once, a grid of
    /// settings replays over the finalised frames, and the best online F1@50 within the delay
    /// limit is recorded in the checkpoint's `stream` block with the whole grid.
    #[arg(long, conflicts_with = "dry_run")]
    stream: bool,
    /// `--stream`: largest p95 emission delay (frames) a setting may have; default twice the
    /// library defaults' p95 on the same recordings.
    #[arg(long, requires = "stream")]
    max_p95_delay: Option<f64>,
    /// Report the fit without writing it into the checkpoint.
    #[arg(long)]
    dry_run: bool,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Fits the checkpoint's softmax temperature on validation data (`skelseg::train::calibrate`)
/// and records it, with the fit's figures, in the checkpoint's JSON.
pub fn calibrate(args: CalibrateArgs) -> Result<ExitCode> {
    if !args.dry_run {
        crate::common::ensure_stdout_is_not_metadata_of(&args.model)?;
    }
    let device = args.device.device()?;
    let (loaded, dataset) = load_labelled(&args.model, &args.data, args.format, device)?;
    let select_names: Vec<String> = if args.own_validation {
        let names = loaded.meta.data.get("val_recordings").and_then(|v| v.as_array());
        let names: Vec<String> = names
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if names.is_empty() {
            bail!("{} lists no validation recordings (data.val_recordings)", args.model.display());
        }
        names
    } else {
        args.select.clone()
    };
    let mut recs = select(&dataset, args.split.as_deref(), &select_names)?;
    if args.own_validation {
        recs.retain(|r| select_names.contains(&r.name));
        if recs.len() != select_names.len() {
            bail!(
                "{} of the checkpoint's {} validation recordings are in {}",
                recs.len(),
                select_names.len(),
                args.data.display()
            );
        }
    }
    let seqs = sequences(&recs, &loaded.meta.model, loaded.meta.fps)?;
    let (logits, labels) = train::frame_logits(&loaded.model, &seqs, device)?;
    // Fit on the raw logits: a temperature already in the checkpoint is replaced, not stacked.
    let fit =
        train::calibrate::fit_temperature(&logits, &labels).context("no frames to calibrate on")?;
    let threshold = if args.threshold {
        let background = vec![0usize];
        let (_, preds) = train::evaluate(
            &loaded.model,
            &seqs,
            device,
            loaded.meta.model.boundary_threshold as f32,
            &background,
        )?;
        train::choose_threshold(&preds, &seqs, &background)?
    } else {
        None
    };
    if !args.dry_run {
        let mut meta = loaded.meta.clone();
        meta.model.temperature = fit.temperature;
        if let Some((th, _)) = &threshold {
            meta.model.boundary_threshold = f64::from(*th);
        }
        meta.set_data(
            "calibration",
            serde_json::json!({
                "data": args.data, "split": args.split, "select": select_names,
                "recordings": recs.len(), "fit": fit,
                "threshold": threshold.as_ref().map(|(th, scores)| serde_json::json!({
                    "grid": train::THRESHOLD_GRID, "chosen": th, "scores": scores,
                })),
            }),
        );
        checkpoint::save_meta(&args.model, &meta)?;
    }
    let stream = if args.stream {
        // The written calibration (temperature, threshold) is what streaming will use.
        let calibrated = checkpoint::load(&args.model, device)?;
        let fps = calibrated.meta.fps;
        let at_rate: Vec<_> =
            recs.iter().map(|r| skelseg::resample::resample_recording(r, fps)).collect();
        let at_rate: Vec<&Recording> = at_rate.iter().map(|r| r.as_ref()).collect();
        let mut meta = calibrated.meta.clone();
        let choice = crate::tuning::choose(calibrated.into(), &meta, &at_rate, args.max_p95_delay)?;
        let data = format!("{} ({} recordings)", args.data.display(), recs.len());
        meta.stream = Some(choice.tuning(&data));
        checkpoint::save_meta(&args.model, &meta)?;
        Some(choice)
    } else {
        None
    };
    if args.json {
        // The fit's fields at the top level (as before `--threshold`), then the threshold.
        let mut report = serde_json::to_value(&fit)?;
        if let Some(obj) = report.as_object_mut() {
            obj.insert(
                "threshold".into(),
                threshold.as_ref().map_or(
                    serde_json::Value::Null,
                    |(th, scores)| serde_json::json!({ "chosen": th, "scores": scores }),
                ),
            );
            obj.insert("recordings".into(), recs.len().into());
            obj.insert("stream".into(), serde_json::to_value(&stream)?);
            obj.insert("written".into(), (!args.dry_run).into());
        }
        print_json(&report)?;
    } else {
        println!(
            "temperature {:.3} on {} frames: NLL {:.4} -> {:.4}, ECE {:.4} -> {:.4}{}",
            fit.temperature,
            fit.frames,
            fit.nll_before,
            fit.nll_after,
            fit.ece_before,
            fit.ece_after,
            if args.dry_run { " (not written)" } else { "" }
        );
        if let Some((th, scores)) = &threshold {
            println!(
                "boundary threshold {th} on {} recordings: F1@50 {:.1}, Acc {:.1}{}",
                recs.len(),
                scores.f1_50,
                scores.acc,
                if args.dry_run { " (not written)" } else { "" }
            );
        }
        if let Some(choice) = &stream {
            println!("stream settings ({}):", choice.rule);
            println!("  rule       θ     factor peakless  F1@50  Edit   Acc  delay mean / p95");
            for (i, c) in choice.candidates.iter().enumerate() {
                println!(
                    "{} {:<9} {:.2}  {:<6} {:<8} {:5.1} {:5.1} {:5.1}  {:.1} / {:.0}",
                    if i == choice.chosen { "→" } else { " " },
                    format!("{:?}", c.rule).to_lowercase(),
                    c.min_mean_prob,
                    c.min_len_factor,
                    c.peakless_factor.map_or("-".to_owned(), |p| p.to_string()),
                    c.f1_50,
                    c.edit,
                    c.acc,
                    c.delay_mean_frames,
                    c.delay_p95_frames
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads a checkpoint and a labelled dataset folder whose classes must be the checkpoint's.
fn load_labelled(
    model_path: &Path,
    data: &Path,
    format: DatasetFormat,
    device: tch::Device,
) -> Result<(checkpoint::LoadedModel, Dataset)> {
    let loaded = checkpoint::load(model_path, device)?;
    let dataset = io::dataset::read_dataset(data, format)
        .with_context(|| format!("reading the dataset {}", data.display()))?;
    check_classes(&loaded.meta.classes, &dataset.classes, model_path)?;
    Ok((loaded, dataset))
}

/// The recordings as tensors at the model's frame rate (`skelseg::resample`, as streaming
/// does), with the modalities derived the way `model` expects them.
pub(crate) fn sequences(
    recs: &[&Recording],
    model: &ModelConfig,
    fps: f64,
) -> Result<Vec<SequenceTensors>> {
    let modality = ModalityConfig::for_model(model);
    Ok(recs
        .iter()
        .map(|r| {
            let r = skelseg::resample::resample_recording(r, fps);
            SequenceTensors::from_recording(&r, &modality, model)
        })
        .collect::<skelseg::Result<_>>()?)
}

fn check_classes(model: &[String], data: &ClassMap, path: &Path) -> Result<()> {
    if model != data.names() {
        bail!(
            "{} was trained on classes [{}] but the dataset has [{}]",
            path.display(),
            model.join(", "),
            data.names().join(", ")
        );
    }
    Ok(())
}

fn select<'a>(
    dataset: &'a Dataset,
    split: Option<&str>,
    tokens: &[String],
) -> Result<Vec<&'a Recording>> {
    let mut recs: Vec<&Recording> = match split {
        None => dataset.recordings.iter().collect(),
        Some(name) => {
            let Some(names) = dataset.splits.get(name) else {
                bail!(
                    "the dataset has no split {name:?} (it has {:?})",
                    dataset.splits.keys().collect::<Vec<_>>()
                );
            };
            dataset.recordings.iter().filter(|r| names.contains(&r.name)).collect()
        }
    };
    if !tokens.is_empty() {
        recs.retain(|r| tokens.iter().any(|t| r.name.contains(t.as_str())));
    }
    if recs.is_empty() {
        bail!("no recordings selected");
    }
    Ok(recs)
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Checkpoint; defaults to the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Recording with labels; defaults to the bundled synthetic sequence.
    #[arg(long)]
    file: Option<PathBuf>,
    #[command(flatten)]
    stream: crate::stream::StreamOptions,
    #[command(flatten)]
    viz: crate::common::VizArgs,
}

/// Streams a labelled recording through the model and prints the committed segments beside
/// the ground truth, then the online scores.
pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    let model_path = args.model.map_or_else(bundled_model, Ok)?;
    let file = args.file.map_or_else(bundled_sequence, Ok)?;
    let model = skelseg::Model::load(&model_path, skelseg::Device::cuda_if_available())?;
    let rec = io::read_recording(&file)?;
    let rec = skelseg::resample::resample_recording(&rec, model.frame_rate_hz()).into_owned();
    let cfg: StreamConfig = args.stream.config(model.meta())?;
    let classes = model.classes().clone();
    println!(
        "model {}\nsequence {} ({} frames, {:.1} s)\n",
        model_path.display(),
        file.display(),
        rec.frames.len(),
        rec.frames.len() as f64 / rec.fps
    );
    let viz = args.viz.start(&classes)?;
    let report = skelseg::online::stream_recording_with(model, &rec, &cfg, viz.tap.clone())?;
    viz.finish()?;
    println!("{:<34} | ground truth", "committed segments (streaming)");
    let gt: Vec<String> = skelseg::online::label_runs(&rec.frame_labels().unwrap_or_default())
        .into_iter()
        .map(|(class, start, end)| {
            format!("{start:>5}–{end:<5} {}", classes.name(class).unwrap_or("?"))
        })
        .collect();
    let pred: Vec<String> = report
        .segments
        .iter()
        .map(|s| {
            format!(
                "{:>5}–{:<5} {:<16} {:.2}",
                s.start_frame,
                s.end_frame,
                classes.name(s.class).unwrap_or("?"),
                s.confidence
            )
        })
        .collect();
    for i in 0..pred.len().max(gt.len()) {
        println!(
            "{:<34} | {}",
            pred.get(i).map_or("", String::as_str),
            gt.get(i).map_or("", String::as_str)
        );
    }
    if let Some(scores) = &report.scores {
        println!();
        print_scores(scores);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Recording (PKU-MMD .txt, NTU .skeleton, UTKinect, .ndjson in any layout).
    file: PathBuf,
    /// Its labels, in any label format of a dataset folder (frame intervals, `label,start_s,end_s`
    /// CSV, one name per frame); default: the labels found beside the recording, if any.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Also stream the recording through this model and show its probabilities and segments.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Show joint names beside the points.
    #[arg(long)]
    joint_names: bool,
    /// Where to show it: `spawn` (the `rerun` viewer), `connect[:URL]` or `save:PATH` (.rrd).
    #[cfg(feature = "viz")]
    #[arg(long, default_value = "spawn")]
    viz: skelseg::viz::VizTarget,
    #[command(flatten)]
    stream: crate::stream::StreamOptions,
}

/// Opens a recording in Rerun with its labels on the timeline (and a model's predictions), to
/// check labelling by eye.
#[cfg(feature = "viz")]
pub fn view(args: ViewArgs) -> Result<ExitCode> {
    use skelseg::io::labels::{Overlaps, classes_from_names, read_label_file};
    let rec = io::read_recording(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let loaded = match &args.model {
        Some(path) => Some(checkpoint::load(path, tch::Device::cuda_if_available())?),
        None => None,
    };
    let label_file = args.labels.as_ref().map(read_label_file).transpose()?;
    let classes = match (&loaded, &label_file) {
        (Some(l), _) => ClassMap::new(l.meta.classes.clone()),
        (None, Some(f)) => classes_from_names(f.class_names()),
        (None, None) => ClassMap::new(vec!["background".into()]),
    };
    let mut rec = rec;
    if let Some(f) = &label_file {
        rec.intervals = Some(f.resolve(&classes, &rec, Overlaps::Refuse)?);
    }
    let fps = loaded.as_ref().map_or(rec.fps, |l| l.meta.fps);
    let rec = skelseg::resample::resample_recording(&rec, fps).into_owned();
    let options = skelseg::viz::VizOptions { joint_names: args.joint_names };
    let viz = skelseg::viz::Visualizer::start_with(&args.viz, "skelseg view", &classes, options)?
        .context("--viz off shows nothing: use spawn, connect or save:PATH")?;
    let tap = skelseg::stream::VizTap::new(viz.sender());
    // The stream id is the recording's name, as `online::stream_recording_with` names it.
    let stream = rec.name.clone();
    match loaded {
        Some(loaded) => {
            let cfg = args.stream.config(&loaded.meta)?;
            skelseg::online::stream_recording_with(loaded, &rec, &cfg, tap)?;
        }
        None => {
            if let Some(intervals) = &rec.intervals {
                tap.ground_truth(&stream, intervals);
            }
            for frame in &rec.frames {
                tap.frame(&stream, frame);
                // The viz queue is lossy: let the viewer thread keep up with a whole file.
                while viz.sender().queued() > skelseg::viz::QUEUE_CAPACITY / 2 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        }
    }
    let dropped = viz.dropped();
    viz.finish()?;
    eprintln!(
        "{} frames of {} shown{}",
        rec.frames.len(),
        args.file.display(),
        if dropped > 0 { format!(" ({dropped} viewer messages dropped)") } else { String::new() }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "viz"))]
pub fn view(_args: ViewArgs) -> Result<ExitCode> {
    bail!("this skelseg was built without the `viz` feature (Rerun)")
}
