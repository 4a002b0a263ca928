//! The training loop: AdamW, linear warm-up then cosine decay, random temporal crops, per-epoch
//! validation, best checkpoint by validation F1@50.
//!
//! Deterministic for a seed on the CPU: the crop and shuffle RNG is a seeded ChaCha and libtorch's
//! generator is seeded with `tch::manual_seed`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind};

use crate::error::{Error, Result};
use crate::metrics::Scores;
use crate::model::{self, InterAct, ModelConfig, checkpoint};
use crate::train::data::{Batch, SequenceTensors, random_crop};
use crate::train::eval::{THRESHOLD_GRID, evaluate, sweep_thresholds};

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
}

fn one() -> usize {
    1
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
        }
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
    let mut rng = ChaCha8Rng::seed_from_u64(job.train.seed);
    let vs = nn::VarStore::new(job.device);
    let mut vs = vs;
    let net = InterAct::new(&vs.root(), &job.model)?;
    if let Some(init) = &job.init {
        let meta = checkpoint::load_meta(init)?;
        // The boundary threshold is chosen after training, so it may differ.
        let comparable = |m: &ModelConfig| ModelConfig { boundary_threshold: 0.0, ..m.clone() };
        if comparable(&meta.model) != comparable(&job.model) {
            return Err(Error::Checkpoint {
                path: init.clone(),
                message: "its model config differs from the one being trained".into(),
            });
        }
        vs.load(init)
            .map_err(|e| Error::Checkpoint { path: init.clone(), message: e.to_string() })?;
    }
    let params = net.num_parameters();
    let mut opt =
        nn::AdamW { wd: job.train.weight_decay, ..Default::default() }.build(&vs, job.train.lr)?;

    let steps_per_epoch = train_set.len().div_ceil(job.train.batch);
    let total_steps = steps_per_epoch * job.train.epochs;
    let val_set = if val_set.is_empty() { train_set } else { val_set };
    let background = vec![0usize];
    let mut step = 0;
    let mut best: Option<(usize, Scores)> = None;
    let mut frames_total = 0usize;
    let mut train_secs = 0.0;
    let mut interrupted = false;
    let mut epochs_done = 0;

    'epochs: for epoch in 1..=job.train.epochs {
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        order.shuffle(&mut rng);
        let epoch_started = Instant::now();
        let mut epoch_frames = 0usize;
        for chunk in order.chunks(job.train.batch) {
            if job.stop.load(Ordering::Relaxed) {
                interrupted = true;
                break 'epochs;
            }
            let items: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    (&train_set[i], random_crop(train_set[i].len, job.train.crop_frames, &mut rng))
                })
                .collect();
            epoch_frames += items.iter().map(|(_, c)| c.len).sum::<usize>();
            let batch = Batch::from_crops(&items, job.device);
            let out = net.forward_t(&batch.abs, &batch.rel, &batch.motion, &batch.mask, true)?;
            let loss = model::loss(&out, &batch.labels, &batch.boundary, &batch.mask)?;
            opt.set_lr(job.train.lr_at(step, total_steps));
            opt.backward_step_clip_norm(&loss.total, job.train.clip_norm);
            step += 1;
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

        if epoch % job.train.val_every.max(1) != 0 && epoch != job.train.epochs {
            continue;
        }
        // Inference once, then the boundary threshold (§11.8: tuned on validation data) that
        // gives the best F1@50; 1.0 means the plain argmax.
        let (_, preds) =
            evaluate(&net, val_set, job.device, job.model.boundary_threshold as f32, &background)?;
        let sweep = sweep_thresholds(&preds, val_set, &THRESHOLD_GRID, &background)?;
        let Some((threshold, scores)) = sweep.into_iter().max_by(|(_, a), (_, b)| {
            (a.f1_50, a.acc).partial_cmp(&(b.f1_50, b.acc)).unwrap_or(std::cmp::Ordering::Equal)
        }) else {
            continue;
        };
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
            frames_per_sec: epoch_frames as f64 / epoch_started.elapsed().as_secs_f64().max(1e-9),
            val: Some(scores.clone()),
        });
        let better =
            best.as_ref().is_none_or(|(_, b)| (scores.f1_50, scores.acc) > (b.f1_50, b.acc));
        if better {
            let mut meta = job.meta.clone();
            meta.model =
                ModelConfig { boundary_threshold: f64::from(threshold), ..job.model.clone() };
            let training = serde_json::json!({ "epoch": epoch, "val": scores, "train": job.train });
            match &mut meta.data {
                serde_json::Value::Object(map) => {
                    map.insert("training".into(), training);
                }
                other => *other = serde_json::json!({ "training": training }),
            }
            checkpoint::save(&job.out, &vs, &meta)?;
            best = Some((epoch, scores));
        }
    }

    let (best_epoch, best_val) = match best {
        Some((e, s)) => (e, Some(s)),
        None => (0, None),
    };
    Ok(TrainReport {
        epochs: epochs_done,
        interrupted,
        best_epoch,
        best_val,
        frames_per_sec: frames_total as f64 / train_secs.max(1e-9),
        params,
        checkpoint: job.out,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
