//! The training loop: AdamW, linear warm-up then cosine decay, random temporal crops mixed with
//! whole recordings, augmentation, per-epoch validation, best checkpoint by validation F1@50 with
//! its boundary threshold and calibration temperature fitted on validation data.
//!
//! Deterministic for a seed on the CPU: each epoch's crop, shuffle and augmentation RNG is a
//! ChaCha seeded from the seed and the epoch number, and libtorch's generator is seeded with
//! `tch::manual_seed`.
//!
//! Resumable: after every epoch the weights and the loop's state go to `OUT.state/`
//! (`weights.safetensors`, `state.json`); [`TrainJob::resume`] continues from there at the next
//! epoch with the same data order. tch does not expose AdamW's moment estimates, so they restart
//! from zero on resume; the learning rate warms up again over `warmup_steps / 4` steps to absorb
//! that. With [`TrainConfig::ema`] the averaged weights are kept beside them
//! (`ema.safetensors`), and validation and the best checkpoint use them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::metrics::Scores;
use crate::model::{self, InterAct, ModelConfig, checkpoint};
use crate::train::calibrate::{Calibration, fit_temperature};
use crate::train::data::{Augment, Batch, SequenceTensors, speed_crop};
use crate::train::ema::WeightAverage;
use crate::train::eval::{choose_threshold, evaluate, frame_logits};

/// Optimisation settings (model settings live in [`ModelConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training sequences.
    pub epochs: usize,
    /// Crops per optimiser step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Linear warm-up length in optimiser steps.
    pub warmup_steps: usize,
    /// Longest random temporal crop, in frames.
    pub crop_frames: usize,
    /// Gradient clipping (global L2 norm).
    pub clip_norm: f64,
    /// Seed for crops, shuffling and initialisation.
    pub seed: u64,
    /// Validate every this many epochs (and always after the last one).
    #[serde(default = "one")]
    pub val_every: usize,
    /// Fraction of optimiser steps that train on whole recordings (up to `max_whole_frames`)
    /// instead of crops, so training also sees the context lengths of offline inference.
    #[serde(default)]
    pub whole_fraction: f64,
    /// Longest whole recording a whole-recording step takes (longer ones are cropped to it).
    #[serde(default = "default_max_whole_frames")]
    pub max_whole_frames: usize,
    /// Steps that train the frames a stream finalises (none by default).
    #[serde(default)]
    pub stream_steps: Option<StreamSteps>,
    /// Training augmentation.
    #[serde(default = "Augment::none")]
    pub augment: Augment,
    /// Early stopping: stop when this many epochs in a row brought no better validation score
    /// (0 = never stop early).
    #[serde(default)]
    pub patience: usize,
    /// Wall-time budget of the run in seconds (0 = none). After the first epoch the epochs are
    /// cut to what fits the budget at that epoch's pace (the learning-rate schedule follows), and
    /// the run stops after any epoch that leaves too little time for another.
    #[serde(default)]
    pub time_budget_secs: f64,
    /// Exponential moving average of the weights: the decay per optimiser step (`None` = off).
    /// Validation, the best checkpoint and the resumable state then use the averaged weights;
    /// the optimiser keeps training the raw ones. See [`crate::train::ema::decay_at`].
    #[serde(default)]
    pub ema: Option<f64>,
}

fn one() -> usize {
    1
}

/// Steps that train what a stream sees: a crop as long as the streaming window, with the loss
/// only on the frames a stream finalises from it, `lookahead` to `lookahead + frames` frames
/// before its end (where the model has little future). Offline steps alone put about 6 % of
/// the loss on such frames (15 of 256); these steps put all of theirs there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamSteps {
    /// Fraction of optimiser steps that are stream steps (drawn per step).
    pub fraction: f64,
    /// Crop length: the streaming window, in frames.
    pub window: usize,
    /// Frames after the trained ones (the streaming lookahead).
    pub lookahead: usize,
    /// Frames trained per crop.
    pub frames: usize,
}

impl StreamSteps {
    /// The loss mask of a stream step: per crop of `len` frames, 1 on frames
    /// `len − lookahead − frames .. len − lookahead`, within `(N, T)`.
    fn loss_mask(&self, lens: &[usize], t: i64, device: Device) -> Tensor {
        let mut m = vec![0f32; lens.len() * t as usize];
        for (row, &len) in lens.iter().enumerate() {
            let end = len.saturating_sub(self.lookahead);
            let start = end.saturating_sub(self.frames);
            for v in &mut m[row * t as usize + start..row * t as usize + end] {
                *v = 1.0;
            }
        }
        Tensor::from_slice(&m).view([lens.len() as i64, t]).to_device(device)
    }
}

fn default_max_whole_frames() -> usize {
    4096
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch: 4,
            lr: 5e-4,
            weight_decay: 1e-2,
            warmup_steps: 50,
            crop_frames: 512,
            clip_norm: 5.0,
            seed: 0,
            val_every: 1,
            whole_fraction: 0.2,
            max_whole_frames: default_max_whole_frames(),
            stream_steps: None,
            augment: Augment::default(),
            patience: 0,
            time_budget_secs: 0.0,
            ema: None,
        }
    }
}

/// Training frames [`TrainConfig::for_data`] aims to show the model in a run: about 10 minutes
/// at the 1,000 frames/s of one CPU thread.
pub const TARGET_TRAINING_FRAMES: usize = 600_000;

/// What [`TrainConfig::for_data`] chose and why, for logs and checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SizedDefaults {
    /// Epochs: `TARGET_TRAINING_FRAMES / training frames`, clamped to 10..=150.
    pub epochs: usize,
    /// Crop: the smallest of 128, 256, 512 frames at or above the median recording length.
    pub crop_frames: usize,
    /// Patience: a quarter of the epochs, at least 8.
    pub patience: usize,
}

impl TrainConfig {
    /// Epochs, crop length and early-stopping patience chosen from the training recordings'
    /// lengths (in frames at the model's rate), the rule stated in the README:
    ///
    /// * epochs = `TARGET_TRAINING_FRAMES / total frames`, clamped to 10..=150, so a few
    ///   thousand frames get many passes and a few hundred thousand get ten;
    /// * crop = the smallest of 128, 256, 512 at or above the median recording length, so short
    ///   recordings train whole and long ones in crops that hold several actions;
    /// * patience = max(8, epochs / 4) epochs without a better validation F1@50.
    pub fn for_data(lengths: &[usize]) -> SizedDefaults {
        let total: usize = lengths.iter().sum();
        let epochs = (TARGET_TRAINING_FRAMES / total.max(1)).clamp(10, 150);
        let mut sorted = lengths.to_vec();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        let crop_frames = [128, 256, 512].into_iter().find(|&c| c >= median).unwrap_or(512);
        SizedDefaults { epochs, crop_frames, patience: (epochs / 4).max(8) }
    }
}

impl TrainConfig {
    /// Learning rate at optimiser step `step` of `total`: linear warm-up, then cosine to 1% of the peak.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let floor = 0.01 * self.lr;
        floor + 0.5 * (self.lr - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// What the loop reports after every optimiser step and every epoch.
#[derive(Clone, Debug, Serialize)]
pub struct TrainProgress {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// Optimiser steps so far.
    pub step: usize,
    /// Steps in the whole run.
    pub total_steps: usize,
    /// Training loss of the last step.
    pub loss: f64,
    /// Training frames per second over the epoch so far.
    pub frames_per_sec: f64,
    /// Validation scores, set once per epoch.
    pub val: Option<Scores>,
}

/// Summary of a training run.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// Epochs completed.
    pub epochs: usize,
    /// Whether the run stopped early on request (Ctrl-C).
    pub interrupted: bool,
    /// Whether early stopping ended the run ([`TrainConfig::patience`]).
    pub stopped_early: bool,
    /// Epochs the run planned once the time budget was known ([`TrainConfig::time_budget_secs`]).
    pub planned_epochs: usize,
    /// Whether the time budget ended the run before the planned epochs.
    pub stopped_on_budget: bool,
    /// Epoch of the best checkpoint.
    pub best_epoch: usize,
    /// Validation scores of the best checkpoint.
    pub best_val: Option<Scores>,
    /// Mean training frames per second.
    pub frames_per_sec: f64,
    /// Trainable parameters.
    pub params: i64,
    /// Where the best checkpoint was written.
    pub checkpoint: PathBuf,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Everything [`train`] needs besides the data.
pub struct TrainJob<'a> {
    /// The model to build.
    pub model: ModelConfig,
    /// The optimisation settings.
    pub train: TrainConfig,
    /// Where to write the best checkpoint (`.safetensors`, `.json` beside it).
    pub out: PathBuf,
    /// Device to train on.
    pub device: Device,
    /// Checkpoint metadata (class names, layout, data summary, command line).
    pub meta: checkpoint::CheckpointMeta,
    /// Set to stop after the current step; the best checkpoint so far is kept.
    pub stop: &'a AtomicBool,
    /// Start from these weights instead of a fresh initialisation (same model config).
    pub init: Option<PathBuf>,
    /// Continue the run whose state is in `OUT.state/` (see the module docs).
    pub resume: bool,
    /// With `init`: train only the class-specific tensors (`mfai.queries`: the class queries,
    /// their FBlocks and heads) and keep the backbone (DSMI, MFAI encoder and decoder, action and
    /// boundary blocks) as loaded. Batch-norm running statistics still adapt to the new data.
    pub freeze_backbone: bool,
}

/// Variables of the class-specific part, which `freeze_backbone` keeps training.
const HEAD_PREFIX: &str = "mfai.queries";

/// What `OUT.state/state.json` holds besides the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ResumeState {
    epoch: usize,
    step: usize,
    best_epoch: usize,
    best_val: Option<Scores>,
    frames_total: usize,
    train_secs: f64,
    /// Refuse to resume a run of another configuration.
    model: ModelConfig,
    train: TrainConfig,
}

/// Folder of the resumable state of a run writing `out`.
pub fn state_dir(out: &std::path::Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".state");
    PathBuf::from(name)
}

/// The averaged weights' file in a run's state folder ([`TrainConfig::ema`]).
const EMA_WEIGHTS: &str = "ema.safetensors";

fn save_state(
    dir: &std::path::Path,
    vs: &nn::VarStore,
    average: Option<&WeightAverage>,
    state: &ResumeState,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = vec![(vs, "weights.safetensors")];
    files.extend(average.map(|a| (a.vs(), EMA_WEIGHTS)));
    for (vs, name) in files {
        let weights = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        vs.save(&tmp).map_err(|e| Error::Checkpoint {
            path: tmp.clone(),
            expected: "a writable weights file".into(),
            found: e.to_string(),
        })?;
        std::fs::rename(&tmp, &weights).map_err(|e| Error::io(&weights, e))?;
    }
    let json = serde_json::to_string_pretty(state)
        .map_err(|e| Error::invalid("training state", e.to_string()))?;
    let path = dir.join("state.json");
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
}

fn load_state(dir: &std::path::Path, vs: &mut nn::VarStore) -> Result<ResumeState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let state: ResumeState = serde_json::from_str(&text)
        .map_err(|e| Error::invalid("training state", format!("{}: {e}", path.display())))?;
    let weights = dir.join("weights.safetensors");
    vs.load(&weights).map_err(|e| Error::Checkpoint {
        path: weights,
        expected: "readable training-state weights".into(),
        found: e.to_string(),
    })?;
    Ok(state)
}

/// Copies every variable of `from` whose name and shape match into `vs` (the backbone, when only
/// the class count differs); returns the names left at their fresh initialisation (the class
/// queries and their position embeddings).
fn copy_matching(vs: &mut nn::VarStore, from: &nn::VarStore) -> Vec<String> {
    let saved = from.variables();
    let mut fresh = Vec::new();
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            match saved.get(&name) {
                Some(t) if t.size() == var.size() => var.copy_(t),
                _ => fresh.push(name),
            }
        }
    });
    fresh.sort();
    fresh
}

/// Epochs (counted from 1) that fit `budget` seconds when the first `done` took `spent`; at
/// least one.
pub fn fitting_epochs(budget: f64, spent: f64, done: usize) -> usize {
    let per_epoch = spent / done.max(1) as f64;
    ((budget / per_epoch.max(1e-9)).floor() as usize).max(1)
}

/// The RNG of one epoch: the same for a seed and epoch however the run got there.
fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Trains a fresh model on `train_set`, validating on `val_set` after every epoch (on the
/// training set when `val_set` is empty), and writes the best checkpoint to `job.out`.
pub fn train(
    job: TrainJob<'_>,
    train_set: &[SequenceTensors],
    val_set: &[SequenceTensors],
    mut on_progress: impl FnMut(&TrainProgress),
) -> Result<TrainReport> {
    if train_set.is_empty() {
        return Err(Error::invalid("training data", "no training sequences"));
    }
    job.model.validate()?;
    let started = Instant::now();
    tch::manual_seed(job.train.seed as i64);
    let mut vs = nn::VarStore::new(job.device);
    let net = InterAct::new(&vs.root(), &job.model)?;
    if let Some(init) = &job.init {
        // The loader every command uses: format, version, layout, the safetensors header and
        // every tensor's name, shape and kind are checked before anything is copied.
        let loaded = checkpoint::load(init, job.device)?;
        let meta = &loaded.meta;
        // The boundary threshold and temperature are chosen after training, so they may differ;
        // so may the classes (fine-tuning: the class queries start afresh).
        let comparable = |m: &ModelConfig| ModelConfig {
            boundary_threshold: 0.0,
            temperature: 1.0,
            num_classes: 0,
            ..m.clone()
        };
        if comparable(&meta.model) != comparable(&job.model) {
            return Err(Error::Checkpoint {
                path: init.clone(),
                expected: "the model config being trained (only the classes may differ)".into(),
                found: "a different model config".into(),
            });
        }
        let fresh = copy_matching(&mut vs, &loaded.vs);
        if meta.model.num_classes == job.model.num_classes && !fresh.is_empty() {
            return Err(Error::Checkpoint {
                path: init.clone(),
                expected: "tensors that match the model being trained".into(),
                found: format!("tensor {}, which does not", fresh[0]),
            });
        }
        if !fresh.is_empty() {
            tracing::info!(init = %init.display(), ?fresh, "fine-tuning: class-specific tensors start afresh");
        }
    }
    if job.freeze_backbone {
        if job.init.is_none() {
            return Err(Error::invalid(
                "training",
                "freezing the backbone needs a checkpoint to start from (--init)",
            ));
        }
        let mut frozen = 0;
        for (name, var) in vs.variables() {
            if !name.starts_with(HEAD_PREFIX) {
                let _ = var.set_requires_grad(false);
                frozen += 1;
            }
        }
        tracing::info!(frozen, "backbone frozen: only {HEAD_PREFIX}.* trains");
    }
    let state_dir = state_dir(&job.out);
    let resumed = if job.resume {
        let state = load_state(&state_dir, &mut vs)?;
        if state.model != job.model || state.train.seed != job.train.seed {
            return Err(Error::invalid(
                "resume",
                format!(
                    "{} holds a run of another model config or seed; start afresh without --resume",
                    state_dir.display()
                ),
            ));
        }
        tracing::info!(epoch = state.epoch, step = state.step, "resuming");
        Some(state)
    } else {
        None
    };
    let mut average = match job.train.ema {
        Some(decay) => Some(WeightAverage::new(&vs, &job.model, decay)?),
        None => None,
    };
    if let (Some(average), true) = (average.as_mut(), resumed.is_some()) {
        let saved = state_dir.join(EMA_WEIGHTS);
        if saved.exists() {
            average.load(&saved)?;
        } else {
            tracing::warn!(state = %state_dir.display(), "no averaged weights saved: the average restarts at the resumed weights");
        }
    }
    // What validation and the checkpoint see: the averaged weights when there are any.
    let (eval_net, eval_vs) = match &average {
        Some(a) => (a.net(), a.vs()),
        None => (&net, &vs),
    };
    let params = net.num_parameters();
    let mut opt =
        nn::AdamW { wd: job.train.weight_decay, ..Default::default() }.build(&vs, job.train.lr)?;

    let steps_per_epoch = train_set.len().div_ceil(job.train.batch);
    let mut epochs = job.train.epochs;
    let mut total_steps = steps_per_epoch * epochs;
    let budget = job.train.time_budget_secs;
    let val_set = if val_set.is_empty() { train_set } else { val_set };
    let background = vec![0usize];
    let mut step = resumed.as_ref().map_or(0, |s| s.step);
    let mut best: Option<(usize, Scores)> =
        resumed.as_ref().and_then(|s| s.best_val.clone().map(|v| (s.best_epoch, v)));
    let mut frames_total = resumed.as_ref().map_or(0, |s| s.frames_total);
    let mut train_secs = resumed.as_ref().map_or(0.0, |s| s.train_secs);
    let first_epoch = resumed.as_ref().map_or(1, |s| s.epoch + 1);
    let rewarm = resumed.as_ref().map(|s| (s.step, (job.train.warmup_steps / 4).max(1)));
    let mut interrupted = false;
    let mut stopped_early = false;
    // Epochs since the best validation score (restarts at 0 on resume).
    let mut since_best = 0usize;
    let mut epochs_done = first_epoch - 1;
    let mut stopped_on_budget = false;
    let mut epoch = first_epoch - 1;

    'epochs: while epoch < epochs {
        epoch += 1;
        let mut rng = epoch_rng(job.train.seed, epoch);
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        order.shuffle(&mut rng);
        let epoch_started = Instant::now();
        let mut epoch_frames = 0usize;
        for chunk in order.chunks(job.train.batch) {
            if job.stop.load(Ordering::Relaxed) {
                interrupted = true;
                break 'epochs;
            }
            // Drawn only when configured, so that runs without stream steps keep their RNG.
            let stream = job
                .train
                .stream_steps
                .as_ref()
                .filter(|s| rng.gen_bool(s.fraction.clamp(0.0, 1.0)));
            let whole = stream.is_none() && rng.gen_bool(job.train.whole_fraction.clamp(0.0, 1.0));
            let max_len = match stream {
                Some(s) => s.window,
                None if whole => job.train.max_whole_frames,
                None => job.train.crop_frames,
            };
            let speeds: Vec<f64> =
                chunk.iter().map(|_| job.train.augment.draw_speed(&mut rng)).collect();
            let items: Vec<_> = chunk
                .iter()
                .zip(&speeds)
                .map(|(&i, &speed)| {
                    (&train_set[i], speed_crop(train_set[i].len, max_len, speed, &mut rng))
                })
                .collect();
            epoch_frames += items.iter().map(|(_, c)| c.len).sum::<usize>();
            let batch = Batch::augmented(&items, &speeds, &job.train.augment, &mut rng, job.device);
            let out = net.forward_t(&batch.abs, &batch.rel, &batch.motion, &batch.mask, true)?;
            let loss_mask = match stream {
                Some(s) => {
                    let lens: Vec<usize> = items.iter().map(|(_, c)| c.len).collect();
                    s.loss_mask(&lens, batch.mask.size()[1], job.device) * &batch.mask
                }
                None => batch.mask.shallow_clone(),
            };
            let loss = model::loss(&out, &batch.labels, &batch.boundary, &loss_mask)?;
            let mut lr = job.train.lr_at(step, total_steps);
            if let Some((from, len)) = rewarm {
                lr *= ((step - from + 1) as f64 / len as f64).min(1.0);
            }
            opt.set_lr(lr);
            opt.backward_step_clip_norm(&loss.total, job.train.clip_norm);
            step += 1;
            if let Some(average) = &average {
                average.update(step);
            }
            let loss_value = loss.total.to_kind(Kind::Double).double_value(&[]);
            if !loss_value.is_finite() {
                return Err(Error::invalid(
                    "training",
                    format!("loss became {loss_value} at step {step}"),
                ));
            }
            on_progress(&TrainProgress {
                epoch,
                step,
                total_steps,
                loss: loss_value,
                frames_per_sec: epoch_frames as f64
                    / epoch_started.elapsed().as_secs_f64().max(1e-9),
                val: None,
            });
        }
        frames_total += epoch_frames;
        train_secs += epoch_started.elapsed().as_secs_f64();
        epochs_done = epoch;

        if budget > 0.0 {
            // The pace so far fixes how many epochs fit; re-planned after every epoch (only ever
            // fewer) as the load of a shared machine changes. A resumed run budgets its own
            // process: the epochs before it are done.
            let done = epoch + 1 - first_epoch;
            let fits = first_epoch - 1
                + fitting_epochs(budget, started.elapsed().as_secs_f64() * 1.1, done);
            if fits < epochs {
                tracing::info!(epochs, fits, budget, "time budget: fewer epochs");
                epochs = fits.max(epoch);
                total_steps = steps_per_epoch * epochs;
            }
        }
        let validate = epoch % job.train.val_every.max(1) == 0 || epoch == epochs;
        if validate {
            // Inference once, then the boundary threshold (§11.8: tuned on validation data) that
            // gives the best F1@50; 1.0 means the plain argmax.
            let (_, preds) = evaluate(
                eval_net,
                val_set,
                job.device,
                job.model.boundary_threshold as f32,
                &background,
            )?;
            if let Some((threshold, scores)) = choose_threshold(&preds, val_set, &background)? {
                tracing::info!(
                    epoch,
                    threshold,
                    f1_50 = scores.f1_50,
                    acc = scores.acc,
                    edit = scores.edit,
                    "validation"
                );
                on_progress(&TrainProgress {
                    epoch,
                    step,
                    total_steps,
                    loss: f64::NAN,
                    frames_per_sec: epoch_frames as f64
                        / epoch_started.elapsed().as_secs_f64().max(1e-9),
                    val: Some(scores.clone()),
                });
                let better = best
                    .as_ref()
                    .is_none_or(|(_, b)| (scores.f1_50, scores.acc) > (b.f1_50, b.acc));
                if better {
                    since_best = 0;
                    let (logits, labels) = frame_logits(eval_net, val_set, job.device)?;
                    let calibration = fit_temperature(&logits, &labels);
                    save_best(&job, eval_vs, epoch, threshold, &scores, calibration.as_ref())?;
                    best = Some((epoch, scores));
                } else {
                    since_best += job.train.val_every.max(1);
                }
            }
        }
        let state = ResumeState {
            epoch,
            step,
            best_epoch: best.as_ref().map_or(0, |(e, _)| *e),
            best_val: best.as_ref().map(|(_, s)| s.clone()),
            frames_total,
            train_secs,
            model: job.model.clone(),
            train: job.train.clone(),
        };
        save_state(&state_dir, &vs, average.as_ref(), &state)?;
        if job.train.patience > 0 && since_best >= job.train.patience {
            tracing::info!(
                epoch,
                patience = job.train.patience,
                "early stop: no better validation score"
            );
            stopped_early = true;
            break;
        }
        // Load on a shared machine changes the pace: stop when another epoch would overrun.
        let per_epoch = started.elapsed().as_secs_f64() / (epoch + 1 - first_epoch) as f64;
        if budget > 0.0 && epoch < epochs && started.elapsed().as_secs_f64() + per_epoch > budget {
            tracing::info!(epoch, budget, "time budget spent");
            stopped_on_budget = true;
            break;
        }
    }

    let (best_epoch, best_val) = match best {
        Some((e, s)) => (e, Some(s)),
        None => (0, None),
    };
    Ok(TrainReport {
        epochs: epochs_done,
        interrupted,
        stopped_early,
        planned_epochs: epochs,
        stopped_on_budget,
        best_epoch,
        best_val,
        frames_per_sec: frames_total as f64 / train_secs.max(1e-9),
        params,
        checkpoint: job.out,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes the best checkpoint so far, with the boundary threshold and temperature chosen on
/// validation data recorded in its config.
fn save_best(
    job: &TrainJob<'_>,
    vs: &nn::VarStore,
    epoch: usize,
    threshold: f32,
    scores: &Scores,
    calibration: Option<&Calibration>,
) -> Result<()> {
    let mut meta = job.meta.clone();
    meta.model = ModelConfig {
        boundary_threshold: f64::from(threshold),
        temperature: calibration.map_or(1.0, |c| c.temperature),
        ..job.model.clone()
    };
    let training = serde_json::json!({
        "epoch": epoch,
        "val": scores,
        "calibration": calibration,
        "train": job.train,
    });
    meta.set_data("training", training);
    checkpoint::save(&job.out, vs, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_steps_train_the_frames_a_stream_finalises() {
        let s = StreamSteps { fraction: 1.0, window: 10, lookahead: 3, frames: 2 };
        let m = s.loss_mask(&[10, 6, 4, 2], 10, tch::Device::Cpu);
        let rows: Vec<Vec<f32>> = (0..4).map(|r| Vec::<f32>::try_from(m.get(r)).unwrap()).collect();
        let ones = |row: &[f32]| -> Vec<usize> {
            row.iter().enumerate().filter(|(_, v)| **v == 1.0).map(|(i, _)| i).collect()
        };
        // 10 frames: frames 5 and 6 (3 later frames each follow); shorter crops end sooner.
        assert_eq!(ones(&rows[0]), vec![5, 6]);
        assert_eq!(ones(&rows[1]), vec![1, 2]);
        assert_eq!(ones(&rows[2]), vec![0]);
        assert!(ones(&rows[3]).is_empty());
    }

    #[test]
    fn sizes_follow_the_data() {
        // 40 recordings of 150 frames: many epochs over whole recordings.
        let small = TrainConfig::for_data(&[150; 40]);
        assert_eq!(small, SizedDefaults { epochs: 100, crop_frames: 256, patience: 25 });
        // 200 recordings of 3,000 frames: ten epochs of 512-frame crops.
        let large = TrainConfig::for_data(&[3000; 200]);
        assert_eq!(large, SizedDefaults { epochs: 10, crop_frames: 512, patience: 8 });
        assert_eq!(TrainConfig::for_data(&[100; 2]).epochs, 150);
    }

    #[test]
    fn the_budget_fits_whole_epochs_at_the_pace_so_far() {
        // 15 min, 3 epochs in 60 s: 45 fit.
        assert_eq!(fitting_epochs(900.0, 60.0, 3), 45);
        assert_eq!(fitting_epochs(900.0, 61.0, 3), 44);
        // One epoch longer than the budget: still one.
        assert_eq!(fitting_epochs(60.0, 100.0, 1), 1);
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_the_floor() {
        let cfg = TrainConfig { lr: 1e-3, warmup_steps: 10, ..TrainConfig::default() };
        assert!((cfg.lr_at(0, 110) - 1e-4).abs() < 1e-12);
        assert!((cfg.lr_at(9, 110) - 1e-3).abs() < 1e-12);
        assert!((cfg.lr_at(10, 110) - 1e-3).abs() < 1e-12);
        assert!((cfg.lr_at(60, 110) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-9);
        assert!((cfg.lr_at(110, 110) - 1e-5).abs() < 1e-12);
    }
}
