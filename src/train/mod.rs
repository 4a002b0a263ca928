//! Training and offline evaluation of the InterAct model.
//!
//! [`data`] turns recordings into tensors and batches (random temporal crops, padding masks),
//! [`trainer`] runs AdamW with a warm-up + cosine schedule and keeps the best checkpoint by
//! validation F1@50, and [`eval`] runs full-sequence inference and the segmentation metrics.

pub mod calibrate;
pub mod data;
pub mod eval;
pub mod split;
pub mod trainer;

pub use data::{Augment, Batch, SequenceTensors};
pub use eval::{Prediction, THRESHOLD_GRID, evaluate, predict, refine, sweep_thresholds};
pub use trainer::{TrainConfig, TrainProgress, TrainReport, train};
