//! `train`: training a model on a dataset folder (or exporting its inputs for a trainer
//! outside skelseg).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use skelseg::io::dataset::DatasetFormat;
use skelseg::io::{self, Dataset, Recording};
use skelseg::model::{InputNorm, ModelConfig, Spatial, Temporal, checkpoint};
use skelseg::train::{self, TrainConfig};

use crate::common::{DeviceArg, bundled_pku_model, device_name, print_json};
use crate::data::print_scores;
use crate::model::sequences;

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
    /// Fraction of steps that train what a stream sees: window-long crops with the loss only
    /// on the frames a stream finalises (`--stream-lookahead` to `+ --stream-frames` before the
    /// crop's end). Use when fine-tuning a model for streaming; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    stream_fraction: f64,
    /// Stream steps: crop length (the streaming window).
    #[arg(long, default_value_t = skelseg::stream::EngineConfig::default().window_frames)]
    stream_window: usize,
    /// Stream steps: frames after the trained ones (the streaming lookahead).
    #[arg(long, default_value_t = skelseg::stream::EngineConfig::default().lookahead_frames)]
    stream_lookahead: usize,
    /// Stream steps: frames trained per crop.
    #[arg(long, default_value_t = 8)]
    stream_frames: usize,
    /// Train without augmentation (rotation, scale, translation, noise, speed, slot swap).
    #[arg(long)]
    no_augment: bool,
    /// Keep an exponential moving average of the weights with this decay per optimiser step
    /// (e.g. 0.99); validation and the checkpoint then use the averaged weights.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f64>,
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
    crate::common::ensure_stdout_is_not_metadata_of(&args.out)?;
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
        stream_steps: (args.stream_fraction > 0.0).then_some(train::StreamSteps {
            fraction: args.stream_fraction,
            window: args.stream_window,
            lookahead: args.stream_lookahead,
            frames: args.stream_frames,
        }),
        augment: if args.no_augment { train::Augment::none() } else { train::Augment::default() },
        time_budget_secs: max_minutes.max(0.0) * 60.0,
        ema: args.ema,
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
