//! `demo`, `train`, `eval`: the model's commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use skelseg::io::dataset::DatasetFormat;
use skelseg::io::{self, ClassMap, Dataset, Recording};
use skelseg::metrics::Scores;
use skelseg::modality::ModalityConfig;
use skelseg::model::{InputNorm, ModelConfig, Spatial, Temporal, checkpoint};
use skelseg::online::{OnlineReport, evaluate_online};
use skelseg::stream::StreamConfig;
use skelseg::train::{self, SequenceTensors, TrainConfig};

use crate::common::{
    DeviceArg, bundled_model, bundled_pku_model, bundled_sequence, device_name, print_json,
};
use crate::data::print_scores;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folder.
    #[arg(long)]
    data: PathBuf,
    /// Dataset folder format.
    #[arg(long, value_enum, default_value_t = DatasetFormat::Pku)]
    format: DatasetFormat,
    /// Where to write the best checkpoint (`.safetensors`; the `.json` goes beside it).
    #[arg(long)]
    out: PathBuf,
    /// Epochs (default: from the data size, see `TrainConfig::for_data` and the README).
    #[arg(long)]
    epochs: Option<usize>,
    /// Wall-time budget in minutes: after the first epoch the epochs are cut to what fits
    /// (default: 15 unless --epochs is given; 0 = none).
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Crops per optimiser step.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Peak learning rate (AdamW, warm-up then cosine; default 5e-4, 2e-4 when fine-tuning a
    /// whole backbone).
    #[arg(long)]
    lr: Option<f64>,
    /// Longest random temporal crop in frames (default: from the recording lengths).
    #[arg(long)]
    crop: Option<usize>,
    /// Early stopping: epochs without a better validation F1@50 before training stops
    /// (default: from the data size; 0 = never stop early).
    #[arg(long)]
    patience: Option<usize>,
    /// Feature width D (default 64). Any architecture flag (this one to --norm) trains a fresh
    /// model instead of starting from the bundled PKU-MMD model.
    #[arg(long)]
    dim: Option<i64>,
    /// Linear-attention layers of the action block (the paper does not say; DeST uses 10).
    #[arg(long)]
    action_layers: Option<i64>,
    /// Dilated residual layers of the boundary block (the paper does not say; ETSPNet uses 10).
    #[arg(long)]
    boundary_layers: Option<i64>,
    /// Dropout inside the temporal layers (the anchors use 0.5; less suits short budgets).
    #[arg(long)]
    dropout: Option<f64>,
    /// Channel dropout on the features entering MFAI (DeST/ASFormer 0.3).
    #[arg(long)]
    channel_dropout: Option<f64>,
    /// Validate every this many epochs (always after the last).
    #[arg(long, default_value_t = 1)]
    val_every: usize,
    /// Spatial module (ablation; default dsmi).
    #[arg(long, value_enum)]
    spatial: Option<Spatial>,
    /// Temporal module (ablation; default mfai).
    #[arg(long, value_enum)]
    temporal: Option<Temporal>,
    /// Recordings whose name contains one of these are left out of training and validation
    /// (comma-separated, e.g. `s01,s02` for a UTKinect cross-validation test fold).
    #[arg(long, value_delimiter = ',')]
    holdout: Vec<String>,
    /// Start from this checkpoint's weights and architecture (the architecture flags are then
    /// ignored). When the dataset's classes differ, the backbone is reused and the class
    /// queries start afresh (fine-tuning). Default: the bundled PKU-MMD model, unless
    /// --from-scratch or an architecture flag is given.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Train a freshly initialised model instead of starting from the bundled PKU-MMD model.
    #[arg(long, conflicts_with_all = ["init", "freeze_backbone", "tune_backbone"])]
    from_scratch: bool,
    /// Train only the class queries and heads; the backbone stays as loaded (faster per frame,
    /// but on small data it scored lower on validation, see the README).
    #[arg(long, conflicts_with = "tune_backbone")]
    freeze_backbone: bool,
    /// Train the backbone too, at a lower learning rate when the classes differ (the default;
    /// the flag only says so explicitly).
    #[arg(long)]
    tune_backbone: bool,
    /// Continue an interrupted run of the same command from `OUT.state/` (saved every epoch).
    #[arg(long)]
    resume: bool,
    /// Train on this split (default: `train` when the folder has one, else every recording).
    #[arg(long)]
    split: Option<String>,
    /// Fraction of the training recordings' groups carved out for validation when the folder
    /// has no `val` split (default: `skelseg::train::split::default_val_fraction`, 0.2 below 100
    /// recordings, else 0.1; see `skelseg::train::split` for the rule).
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Fraction of steps that train on whole recordings instead of crops.
    #[arg(long, default_value_t = TrainConfig::default().whole_fraction)]
    whole_fraction: f64,
    /// Train without augmentation (rotation, scale, translation, noise, speed, slot swap).
    #[arg(long)]
    no_augment: bool,
    /// Input normalisation: `body` (person-centred, causal; the default) or `camera` (raw
    /// coordinates).
    #[arg(long, value_enum)]
    norm: Option<InputNorm>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Seed (training is deterministic for a seed on the CPU).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object (the training report) instead of text.
    #[arg(long)]
    json: bool,
    /// Write the model inputs this run would train and validate on (modalities, labels,
    /// boundary targets, the checkpoint metadata) to this folder and exit without training:
    /// for a trainer outside skelseg (`python/skelseg_train.py`; see `skelseg::train::export`).
    #[arg(long)]
    export_inputs: Option<PathBuf>,
}

/// Peak learning rate when a whole backbone is fine-tuned on new classes (`--tune-backbone`).
const FINE_TUNE_LR: f64 = 2e-4;
/// Wall-time budget of a run whose epochs are chosen from the data (`--max-minutes`).
const DEFAULT_MAX_MINUTES: f64 = 15.0;

pub fn train(args: TrainArgs) -> Result<ExitCode> {
    let device = args.device.device()?;
    let dataset = io::dataset::read_dataset(&args.data, args.format)
        .with_context(|| format!("reading the dataset {}", args.data.display()))?;
    if !args.data.join(io::dataset::MAPPING_FILE).is_file() {
        let mut instances = vec![0usize; dataset.classes.len()];
        for labels in dataset.recordings.iter().filter_map(|r| r.frame_labels()) {
            for (class, _, _) in skelseg::online::label_runs(&labels) {
                if let Some(n) = instances.get_mut(class) {
                    *n += 1;
                }
            }
        }
        for w in crate::data::near_duplicate_warnings(&dataset.classes, |c| instances[c]) {
            tracing::warn!("{w}");
        }
    }
    let (train_recs, val_recs) =
        split_for_training(&dataset, &args.holdout, args.split.as_deref(), args.val_fraction)?;
    let defaults = ModelConfig::default();
    let architecture_given = args.dim.is_some()
        || args.action_layers.is_some()
        || args.boundary_layers.is_some()
        || args.dropout.is_some()
        || args.channel_dropout.is_some()
        || args.spatial.is_some()
        || args.temporal.is_some()
        || args.norm.is_some();
    let model_cfg = ModelConfig {
        num_classes: dataset.classes.len() as i64,
        hidden: args.dim.unwrap_or(defaults.hidden),
        action_layers: args.action_layers.unwrap_or(defaults.action_layers),
        layer_dropout: args.dropout.unwrap_or(defaults.layer_dropout),
        channel_dropout: args.channel_dropout.unwrap_or(defaults.channel_dropout),
        boundary_layers: args.boundary_layers.unwrap_or(defaults.boundary_layers),
        spatial: args.spatial.unwrap_or(defaults.spatial),
        temporal: args.temporal.unwrap_or(defaults.temporal),
        input_norm: args.norm.unwrap_or(defaults.input_norm),
        ..defaults
    };
    // Every layout skelseg reads maps to the canonical 25 joints the bundled model was trained
    // on, so by default training starts from it (see the README, "Training").
    let init = match &args.init {
        Some(path) => Some(path.clone()),
        None if args.from_scratch || architecture_given => None,
        None => Some(bundled_pku_model()?),
    };
    let (model_cfg, fps, fine_tune) = match &init {
        Some(init) => {
            let meta = checkpoint::load_meta(init)?;
            let fine_tune = meta.classes != dataset.classes.names();
            let cfg = ModelConfig {
                num_classes: dataset.classes.len() as i64,
                boundary_threshold: ModelConfig::default().boundary_threshold,
                temperature: 1.0,
                ..meta.model
            };
            (cfg, meta.fps, fine_tune)
        }
        None => (model_cfg, checkpoint::DEFAULT_FPS, false),
    };
    if args.freeze_backbone && init.is_none() {
        bail!("--freeze-backbone needs a model to start from (not --from-scratch)");
    }
    // The whole model trains unless --freeze-backbone: on the small-data validation split the
    // tuned backbone won within the time budget (BENCHMARKS.md, "Small custom data").
    let freeze_backbone = args.freeze_backbone;
    let start = match &init {
        None => "a fresh model".to_owned(),
        Some(p) if args.init.is_none() => format!("the bundled PKU-MMD model ({})", p.display()),
        Some(p) => p.display().to_string(),
    };
    let train_set = sequences(&train_recs, &model_cfg, fps)?;
    let val_set = sequences(&val_recs, &model_cfg, fps)?;
    let lengths: Vec<usize> = train_set.iter().map(|s| s.len).collect();
    let sized = TrainConfig::for_data(&lengths);
    let lr = args.lr.unwrap_or(if init.is_some() && !freeze_backbone && fine_tune {
        FINE_TUNE_LR
    } else {
        TrainConfig::default().lr
    });
    let max_minutes =
        args.max_minutes.unwrap_or(if args.epochs.is_some() { 0.0 } else { DEFAULT_MAX_MINUTES });
    let train_cfg = TrainConfig {
        epochs: args.epochs.unwrap_or(sized.epochs),
        batch: args.batch,
        lr,
        crop_frames: args.crop.unwrap_or(sized.crop_frames),
        patience: args.patience.unwrap_or(sized.patience),
        seed: args.seed,
        val_every: args.val_every,
        whole_fraction: args.whole_fraction,
        augment: if args.no_augment { train::Augment::none() } else { train::Augment::default() },
        time_budget_secs: max_minutes.max(0.0) * 60.0,
        ..TrainConfig::default()
    };
    let frames: usize = train_set.iter().map(|s| s.len).sum();
    let mut meta = checkpoint::CheckpointMeta::new(
        model_cfg.clone(),
        dataset.classes.names().to_vec(),
        skelseg::skeleton::Layout::KinectV2_25.name(),
    );
    meta.fps = fps;
    let mut source_layouts: Vec<&str> = train_recs.iter().map(|r| r.source_layout.name()).collect();
    source_layouts.sort_unstable();
    source_layouts.dedup();
    let mut source_fps: Vec<f64> = train_recs.iter().map(|r| r.fps).collect();
    source_fps.sort_by(f64::total_cmp);
    source_fps.dedup();
    meta.data = serde_json::json!({
            "path": args.data,
            "train_sequences": train_set.len(),
            "val_sequences": val_set.len(),
            "train_recordings": train_recs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            "val_recordings": val_recs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            "train_frames": frames,
            "mean_segment_frames": mean_segment_frames(&train_recs, dataset.classes.len(), fps),
            "source_layouts": source_layouts,
            "source_fps": source_fps,
            "init": init.as_ref().map(|p| if args.init.is_none() {
                "bundled:pku-mmd".to_owned()
            } else {
                p.display().to_string()
            }),
            "freeze_backbone": freeze_backbone,
    });
    meta.command = std::env::args().collect::<Vec<_>>().join(" ");
    if let Some(dir) = &args.export_inputs {
        train::export::export_inputs(dir, &train_set, &val_set, &meta, &train_cfg)?;
        eprintln!(
            "wrote the inputs of {} training and {} validation recordings ({frames} training frames) to {}",
            train_set.len(),
            val_set.len(),
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: finishing the current step, keeping the best checkpoint");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .context("installing the Ctrl-C handler")?;
    }
    if !args.json {
        eprintln!(
            "training on {} sequences ({frames} frames at {fps} fps), validating on {}, device {}",
            train_set.len(),
            val_set.len(),
            device_name(device)
        );
        eprintln!(
            "starting from {start}{}",
            if freeze_backbone { ", backbone frozen (class queries and heads train)" } else { "" }
        );
        eprintln!(
            "{} epochs at most (early stop after {} without a better validation F1@50), crops of {} frames, lr {}{}",
            train_cfg.epochs,
            train_cfg.patience,
            train_cfg.crop_frames,
            train_cfg.lr,
            if max_minutes > 0.0 { format!(", at most {max_minutes} min") } else { String::new() }
        );
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} epoch {prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed}/{eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let train_cfg_epochs = train_cfg.epochs;
    let job = train::TrainJob {
        model: model_cfg,
        train: train_cfg,
        out: args.out.clone(),
        device,
        meta,
        stop: &stop,
        init,
        resume: args.resume,
        freeze_backbone,
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = std::time::Instant::now();
    let report = train::train(job, &train_set, &val_set, |p| {
        if !tty && !args.json && p.val.is_none() && last_line.elapsed().as_secs() >= 10 {
            last_line = std::time::Instant::now();
            eprintln!(
                "epoch {} step {}/{} loss {:.4} {:.0} frames/s, ETA {}",
                p.epoch,
                p.step,
                p.total_steps,
                p.loss,
                p.frames_per_sec,
                indicatif::HumanDuration(bar.eta())
            );
        }
        bar.set_length(p.total_steps as u64);
        bar.set_position(p.step as u64);
        bar.set_prefix(p.epoch.to_string());
        match &p.val {
            None => bar.set_message(format!("loss {:.4} {:.0} frames/s", p.loss, p.frames_per_sec)),
            Some(v) => {
                let line = format!(
                    "epoch {:>3}: val F1@50 {:.2} Edit {:.2} Acc {:.2} ({:.0} frames/s)",
                    p.epoch, v.f1_50, v.edit, v.acc, p.frames_per_sec
                );
                // A hidden bar (stderr not a terminal) drops println: write the line itself.
                if tty {
                    bar.println(line)
                } else if !args.json {
                    eprintln!("{line}")
                }
            }
        }
    })?;
    bar.finish_and_clear();
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "best epoch {} of {}{}: checkpoint {}",
            report.best_epoch,
            report.epochs,
            if report.interrupted {
                " (interrupted)"
            } else if report.stopped_early {
                " (early stop)"
            } else if report.stopped_on_budget || report.planned_epochs < train_cfg_epochs {
                " (time budget)"
            } else {
                ""
            },
            report.checkpoint.display()
        );
        if let Some(v) = &report.best_val {
            print_scores(v);
        }
        println!(
            "{} parameters, {:.0} training frames/s, {:.0} s",
            report.params, report.frames_per_sec, report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Mean length in frames of the labelled segments of each class (index = class id).
fn mean_segment_frames(recs: &[&Recording], classes: usize, fps: f64) -> Vec<f64> {
    let mut sum = vec![0.0; classes];
    let mut count = vec![0.0; classes];
    for rec in recs {
        let Some(labels) = skelseg::resample::resample_recording(rec, fps).frame_labels() else {
            continue;
        };
        for (class, start, end) in skelseg::online::label_runs(&labels) {
            if let Some(s) = sum.get_mut(class) {
                *s += (end - start + 1) as f64;
                count[class] += 1.0;
            }
        }
    }
    sum.iter().zip(count).map(|(s, c)| if c > 0.0 { s / c } else { 0.0 }).collect()
}

/// Training and validation recordings. Validation is never test data: it is the folder's `val`
/// split, or a part of the training recordings carved by [`skelseg::train::split`]'s rule;
/// `--holdout` recordings (a test fold) are left out of both.
fn split_for_training<'a>(
    dataset: &'a Dataset,
    holdout: &[String],
    split: Option<&str>,
    val_fraction: Option<f64>,
) -> Result<(Vec<&'a Recording>, Vec<&'a Recording>)> {
    let by_names = |names: &[&str]| -> Vec<&Recording> {
        dataset.recordings.iter().filter(|r| names.contains(&r.name.as_str())).collect()
    };
    let split = split.or(dataset.splits.contains_key("train").then_some("train"));
    let pool: Vec<&Recording> = match split {
        Some(name) => {
            let names = dataset.splits.get(name).with_context(|| {
                format!(
                    "no split `{name}` in the dataset (it has {:?})",
                    dataset.splits.keys().collect::<Vec<_>>()
                )
            })?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            by_names(&names)
        }
        None => dataset.recordings.iter().collect(),
    };
    // Held-out recordings (a cross-validation test fold) are neither trained nor validated on.
    let pool: Vec<&Recording> =
        pool.into_iter().filter(|r| !holdout.iter().any(|h| r.name.contains(h.as_str()))).collect();
    let (train, val): (Vec<_>, Vec<_>) =
        match dataset.splits.get("val").filter(|_| split == Some("train")) {
            Some(val) => {
                let val: Vec<&str> = val.iter().map(String::as_str).collect();
                (pool, by_names(&val))
            }
            None => {
                let names: Vec<&str> = pool.iter().map(|r| r.name.as_str()).collect();
                let fraction = val_fraction
                    .unwrap_or_else(|| skelseg::train::split::default_val_fraction(names.len()));
                let (train, val) = skelseg::train::split::carve_validation(&names, fraction);
                (by_names(&train), by_names(&val))
            }
        };
    if train.is_empty() {
        bail!(
            "no training recordings (holdout {:?}, splits {:?})",
            holdout,
            dataset.splits.keys().collect::<Vec<_>>()
        );
    }
    Ok((train, val))
}

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
        let sweep = train::sweep_thresholds(&preds, &seqs, &train::THRESHOLD_GRID, &background)?;
        sweep.into_iter().max_by(|(_, a), (_, b)| {
            (a.f1_50, a.acc).partial_cmp(&(b.f1_50, b.acc)).unwrap_or(std::cmp::Ordering::Equal)
        })
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
fn sequences(recs: &[&Recording], model: &ModelConfig, fps: f64) -> Result<Vec<SequenceTensors>> {
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
