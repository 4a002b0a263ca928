//! Training and offline evaluation of the InterAct model.
//!
//! [`SequenceTensors`] and [`Batch`] turn recordings into tensors and batches (random temporal
//! crops, padding masks), [`train()`] runs AdamW with a warm-up + cosine schedule and keeps the
//! best checkpoint by validation F1@50, and [`evaluate`] runs full-sequence inference and the
//! segmentation metrics. [`calibrate`] fits the temperature; [`ema`] averages the weights; [`split`] carves validation sets; [`export`] writes a
//! run's model inputs for a trainer outside skelseg.

pub mod calibrate;
mod data;
pub mod ema;
mod eval;
pub mod export;
pub mod split;
mod trainer;

pub use data::{Augment, Batch, Crop, SequenceTensors, random_crop, speed_crop};
pub use eval::{
    Prediction, THRESHOLD_GRID, choose_threshold, evaluate, frame_logits, predict, refine,
    sweep_thresholds,
};
pub use trainer::{
    SizedDefaults, StreamSteps, TARGET_TRAINING_FRAMES, TrainConfig, TrainJob, TrainProgress,
    TrainReport, fitting_epochs, state_dir, train,
};
