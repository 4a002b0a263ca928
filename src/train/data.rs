//! Recordings as tensors, and batches of random temporal crops with padding masks and training
//! augmentation.

use rand::Rng;
use serde::{Deserialize, Serialize};
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
        if cfg.norm != model.input_norm {
            return Err(Error::invalid(
                "training data",
                format!(
                    "modalities normalised as {:?} for a model that expects {:?}",
                    cfg.norm, model.input_norm
                ),
            ));
        }
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

/// Training augmentation, drawn per crop (issue 8). Every transform is
/// one a sensor could produce: the person turned or placed elsewhere, a taller or shorter
/// person, tracker jitter, a faster or slower performance, the two people in the other slots.
/// Rotation, scale and translation act on all three modalities consistently (they are linear in
/// the joint positions; translation moves `abs` only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Augment {
    /// Rotation about the vertical axis, uniform in ±this many degrees.
    pub rotation_deg: f64,
    /// Scale, uniform in `[1 − s, 1 + s]`.
    pub scale: f64,
    /// Translation of `abs`, normal with this sd per axis (metres).
    pub translation_m: f64,
    /// Independent joint noise, normal with this sd per coordinate (metres).
    pub joint_noise_m: f64,
    /// Playback speed, uniform in `[1 − v, 1 + v]` (nearest-frame resampling; motion rescaled).
    pub speed: f64,
    /// Probability of swapping the two body slots when the second one is used.
    pub swap_slots: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            rotation_deg: 30.0,
            scale: 0.15,
            translation_m: 0.1,
            joint_noise_m: 0.01,
            speed: 0.2,
            swap_slots: 0.5,
        }
    }
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Self {
        Augment {
            rotation_deg: 0.0,
            scale: 0.0,
            translation_m: 0.0,
            joint_noise_m: 0.0,
            speed: 0.0,
            swap_slots: 0.0,
        }
    }

    /// A speed factor for one crop (1 when speed change is off).
    pub fn draw_speed(&self, rng: &mut impl Rng) -> f64 {
        if self.speed > 0.0 { rng.gen_range(1.0 - self.speed..=1.0 + self.speed) } else { 1.0 }
    }

    /// Applies the spatial transforms to one sample's modalities `(6, T, 25)` in place of
    /// returning new tensors.
    fn apply(
        &self,
        abs: &Tensor,
        rel: &Tensor,
        motion: &Tensor,
        rng: &mut impl Rng,
    ) -> (Tensor, Tensor, Tensor) {
        let opts = (Kind::Float, abs.device());
        // Presence of each slot per frame: (2, T, 1), from the absolute coordinates.
        let t = abs.size()[1];
        let present = abs
            .reshape([2, 3, t, 25])
            .abs()
            .sum_dim_intlist([1, 3].as_slice(), false, Kind::Float)
            .gt(0.0)
            .to_kind(Kind::Float)
            .unsqueeze(-1);
        let present_c = present.repeat_interleave_self_int(3, 0, None); // (6, T, 1)
        let theta = rng.gen_range(-1.0..=1.0) * self.rotation_deg.to_radians();
        let scale = 1.0 + rng.gen_range(-1.0..=1.0) * self.scale;
        let (c, s) = ((theta.cos() * scale) as f32, (theta.sin() * scale) as f32);
        let k = scale as f32;
        // Per slot: x' = c x + s z, y' = k y, z' = −s x + c z (rotation about y, then scale).
        let block = [c, 0.0, s, 0.0, k, 0.0, -s, 0.0, c];
        let mut mix = vec![0.0f32; 36];
        let swap = self.swap_slots > 0.0
            && present.narrow(0, 1, 1).sum(Kind::Float).double_value(&[]) > 0.0
            && rng.gen_bool(self.swap_slots.clamp(0.0, 1.0));
        for slot in 0..2 {
            let to = if swap { 1 - slot } else { slot };
            for i in 0..3 {
                for j in 0..3 {
                    mix[(to * 3 + i) * 6 + slot * 3 + j] = block[i * 3 + j];
                }
            }
        }
        let mix = Tensor::from_slice(&mix).view([6, 6]).to_device(abs.device());
        let rotate = |x: &Tensor| mix.matmul(&x.reshape([6, -1])).view([6, t, 25]);
        let present_c = if swap { present_c.roll([3], [0]) } else { present_c };
        let (mut abs, mut rel, mut motion) = (rotate(abs), rotate(rel), rotate(motion));
        if self.translation_m > 0.0 {
            let shift: Vec<f32> = (0..6)
                .map(|_| {
                    (rng.sample::<f64, _>(rand_distr::StandardNormal) * self.translation_m) as f32
                })
                .collect();
            let shift = Tensor::from_slice(&shift).view([6, 1, 1]).to_device(abs.device());
            abs += shift * &present_c;
        }
        if self.joint_noise_m > 0.0 {
            let noise = Tensor::randn([6, t, 25], opts) * self.joint_noise_m * &present_c;
            abs += &noise;
            rel += &noise - noise.narrow(2, 0, 1);
            // Motion sees the difference of consecutive noise where it was derived (non-zero).
            let prev = noise.narrow(1, 0, t - 1).pad([0, 0, 1, 0], "constant", None);
            let derived = motion.ne(0.0).to_kind(Kind::Float);
            motion += (&noise - prev) * derived;
        }
        (abs, rel, motion)
    }
}

impl Batch {
    /// Stacks the crops of `seqs` into one padded batch on `device`.
    pub fn from_crops(items: &[(&SequenceTensors, Crop)], device: Device) -> Batch {
        Self::build(items, device, None::<(&Augment, &mut rand::rngs::mock::StepRng, &[f64])>)
    }

    /// As [`Batch::from_crops`], with augmentation. `speeds[i]` resamples crop `i`: output frame
    /// `k` is source frame `start + ⌊k·speed⌋`, the crop's `len` counting output frames (its
    /// source span, `⌈len·speed⌉`, must lie inside the sequence; see [`speed_crop`]).
    pub fn augmented(
        items: &[(&SequenceTensors, Crop)],
        speeds: &[f64],
        augment: &Augment,
        rng: &mut impl Rng,
        device: Device,
    ) -> Batch {
        Self::build(items, device, Some((augment, rng, speeds)))
    }

    fn build<R: Rng>(
        items: &[(&SequenceTensors, Crop)],
        device: Device,
        mut augment: Option<(&Augment, &mut R, &[f64])>,
    ) -> Batch {
        let t = items.iter().map(|(_, c)| c.len).max().unwrap_or(1) as i64;
        let speeds: Vec<f64> = match &augment {
            Some((_, _, speeds)) => {
                (0..items.len()).map(|i| speeds.get(i).copied().unwrap_or(1.0)).collect()
            }
            None => vec![1.0; items.len()],
        };
        let resampled: Vec<Option<Tensor>> = items
            .iter()
            .zip(&speeds)
            .map(|((seq, crop), &speed)| {
                ((speed - 1.0).abs() > 1e-9).then(|| {
                    let idx: Vec<i64> = (0..crop.len)
                        .map(|k| ((k as f64 * speed) as usize).min(seq.len - 1 - crop.start) as i64)
                        .collect();
                    Tensor::from_slice(&idx)
                })
            })
            .collect();
        let pad = |x: &Tensor, crop: Crop, time_dim: i64, idx: Option<&Tensor>| {
            let x = match idx {
                Some(idx) => {
                    let span = seq_span(idx, crop);
                    x.narrow(time_dim, crop.start as i64, span).index_select(time_dim, idx)
                }
                None => x.narrow(time_dim, crop.start as i64, crop.len as i64),
            };
            let missing = t - crop.len as i64;
            if missing == 0 {
                x
            } else {
                // Pad the time axis on the right: for (6, T, 25) that is the second-to-last dim.
                let spec = if time_dim == 1 { vec![0, 0, 0, missing] } else { vec![0, missing] };
                x.constant_pad_nd(spec)
            }
        };
        let mut abs = Vec::with_capacity(items.len());
        let mut rel = Vec::with_capacity(items.len());
        let mut motion = Vec::with_capacity(items.len());
        for (i, (seq, crop)) in items.iter().enumerate() {
            let idx = resampled[i].as_ref();
            // Resampled motion is per output frame: a faster playback moves further per frame.
            let (a, r, m) = (
                pad(&seq.abs, *crop, 1, idx),
                pad(&seq.rel, *crop, 1, idx),
                pad(&seq.motion, *crop, 1, idx) * speeds[i],
            );
            let (a, r, m) = match augment.as_mut() {
                Some((aug, rng, _)) => aug.apply(&a, &r, &m, *rng),
                None => (a, r, m),
            };
            // Padding stays zero in every modality.
            let valid = Tensor::ones([1, crop.len as i64, 1], (Kind::Float, Device::Cpu))
                .constant_pad_nd([0, 0, 0, t - crop.len as i64]);
            abs.push(a * &valid);
            rel.push(r * &valid);
            motion.push(m * &valid);
        }
        let stack_t = |xs: Vec<Tensor>| Tensor::stack(&xs, 0).to(device);
        let stack = |f: &dyn Fn(&SequenceTensors, Crop, Option<&Tensor>) -> Tensor| {
            stack_t(
                items.iter().zip(&resampled).map(|((s, c), idx)| f(s, *c, idx.as_ref())).collect(),
            )
        };
        Batch {
            abs: stack_t(abs),
            rel: stack_t(rel),
            motion: stack_t(motion),
            labels: stack(&|s, c, idx| pad(&s.labels, c, 0, idx)),
            boundary: stack(&|s, c, idx| pad(&s.boundary, c, 0, idx)),
            mask: stack(&|_, c, _| {
                pad(
                    &Tensor::ones([c.len as i64], (Kind::Float, Device::Cpu)),
                    Crop { start: 0, len: c.len },
                    0,
                    None,
                )
            }),
        }
    }
}

/// Source frames a resampled crop reads: one past its largest index.
fn seq_span(idx: &Tensor, crop: Crop) -> i64 {
    if crop.len == 0 { 0 } else { idx.max().int64_value(&[]) + 1 }
}

/// A random crop of at most `max_len` output frames at playback `speed`: its source span
/// `⌈len·speed⌉` lies inside the sequence of `len` frames.
pub fn speed_crop(len: usize, max_len: usize, speed: f64, rng: &mut impl Rng) -> Crop {
    let out_len = ((len as f64 / speed).floor() as usize).clamp(1, max_len.max(1));
    let span = ((out_len as f64 * speed).ceil() as usize).min(len);
    let start = if len > span { rng.gen_range(0..=len - span) } else { 0 };
    Crop { start, len: out_len }
}
