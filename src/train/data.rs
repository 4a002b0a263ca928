//! Recordings as tensors, and batches of random temporal crops with padding masks.

use rand::Rng;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::io::Recording;
use crate::modality;
use crate::model::ModelConfig;
use crate::postprocess::boundary_target_with;

/// One recording, prepared once: the three modalities, per-frame labels and boundary target.
#[derive(Debug)]
pub struct SequenceTensors {
    /// Recording name.
    pub name: String,
    /// Number of frames.
    pub len: usize,
    /// Absolute coordinates `(6, T, 25)`.
    pub abs: Tensor,
    /// Coordinates relative to SpineBase `(6, T, 25)`.
    pub rel: Tensor,
    /// Backward differences `(6, T, 25)`.
    pub motion: Tensor,
    /// Class ids `(T)` int64.
    pub labels: Tensor,
    /// Peak-1 Gaussian boundary target `(T)` float.
    pub boundary: Tensor,
    /// Class ids as plain data, for the metrics.
    pub label_ids: Vec<usize>,
}

impl SequenceTensors {
    /// Prepares `recording` (which must carry labels) on the CPU, with the boundary target
    /// shaped as `model` trains it.
    pub fn from_recording(
        recording: &Recording,
        cfg: &modality::ModalityConfig,
        model: &ModelConfig,
    ) -> Result<Self> {
        let label_ids = recording.frame_labels().ok_or_else(|| {
            Error::invalid(
                "recording",
                format!("{} has no labels to train or evaluate on", recording.name),
            )
        })?;
        let len = recording.frames.len();
        if len == 0 {
            return Err(Error::invalid("recording", format!("{} has no frames", recording.name)));
        }
        let m = modality::batch(&recording.frames, cfg);
        let shape = [6, len as i64, crate::NUM_JOINTS as i64];
        let labels: Vec<i64> = label_ids.iter().map(|&l| l as i64).collect();
        Ok(SequenceTensors {
            name: recording.name.clone(),
            len,
            abs: Tensor::from_slice(&m.abs).reshape(shape),
            rel: Tensor::from_slice(&m.rel).reshape(shape),
            motion: Tensor::from_slice(&m.motion).reshape(shape),
            labels: Tensor::from_slice(&labels),
            boundary: Tensor::from_slice(&boundary_target_with(
                &label_ids,
                len,
                model.boundary_sigma as f32,
                model.boundary_radius as usize,
            )),
            label_ids,
        })
    }
}

/// A padded batch on a device. Frames past a sequence's length have mask 0.
#[derive(Debug)]
pub struct Batch {
    /// `(N, 6, T, 25)`.
    pub abs: Tensor,
    /// `(N, 6, T, 25)`.
    pub rel: Tensor,
    /// `(N, 6, T, 25)`.
    pub motion: Tensor,
    /// `(N, T)` int64; padded frames hold 0 and are masked out of every loss.
    pub labels: Tensor,
    /// `(N, T)` float.
    pub boundary: Tensor,
    /// `(N, T)` float, 1 for real frames.
    pub mask: Tensor,
}

/// A crop `[start, start + len)` of one sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// First frame.
    pub start: usize,
    /// Number of frames.
    pub len: usize,
}

/// A random crop of at most `max_len` frames (the whole sequence when it is shorter).
pub fn random_crop(len: usize, max_len: usize, rng: &mut impl Rng) -> Crop {
    if len <= max_len {
        Crop { start: 0, len }
    } else {
        Crop { start: rng.gen_range(0..=len - max_len), len: max_len }
    }
}

impl Batch {
    /// Stacks the crops of `seqs` into one padded batch on `device`.
    pub fn from_crops(items: &[(&SequenceTensors, Crop)], device: Device) -> Batch {
        let t = items.iter().map(|(_, c)| c.len).max().unwrap_or(1) as i64;
        let pad = |x: &Tensor, crop: Crop, time_dim: i64| {
            let x = x.narrow(time_dim, crop.start as i64, crop.len as i64);
            let missing = t - crop.len as i64;
            if missing == 0 {
                x
            } else {
                // Pad the time axis on the right: for (6, T, 25) that is the second-to-last dim.
                let spec = if time_dim == 1 { vec![0, 0, 0, missing] } else { vec![0, missing] };
                x.constant_pad_nd(spec)
            }
        };
        let stack = |f: &dyn Fn(&SequenceTensors, Crop) -> Tensor| {
            Tensor::stack(&items.iter().map(|(s, c)| f(s, *c)).collect::<Vec<_>>(), 0).to(device)
        };
        Batch {
            abs: stack(&|s, c| pad(&s.abs, c, 1)),
            rel: stack(&|s, c| pad(&s.rel, c, 1)),
            motion: stack(&|s, c| pad(&s.motion, c, 1)),
            labels: stack(&|s, c| pad(&s.labels, c, 0)),
            boundary: stack(&|s, c| pad(&s.boundary, c, 0)),
            mask: stack(&|_, c| {
                pad(
                    &Tensor::ones([c.len as i64], (Kind::Float, Device::Cpu)),
                    Crop { start: 0, len: c.len },
                    0,
                )
            }),
        }
    }
}
