//! Training loss: sigmoid focal loss (α 0.25, γ 2) and dice
//! loss on the action logits, BCE-with-logits on the boundary logits against a peak-1 Gaussian
//! target, at every stage (averaged), padded frames ignored, all weights 1.

use tch::{Kind, Reduction, Tensor};

use super::Output;
use crate::error::{Error, Result};

const FOCAL_ALPHA: f64 = 0.25;
const FOCAL_GAMMA: f64 = 2.0;

/// The loss and its parts (each averaged over the stages). `total` carries the gradient.
#[derive(Debug)]
pub struct LossParts {
    /// `focal + dice + boundary`, a scalar.
    pub total: Tensor,
    /// Sigmoid focal loss on `P_a`, per valid frame.
    pub focal: Tensor,
    /// Dice loss on `P_a` over the classes present in each sequence.
    pub dice: Tensor,
    /// BCE-with-logits on `P_b` per valid frame.
    pub boundary: Tensor,
}

/// The InterAct loss. `labels (N, T)` int64 class ids (any value on padded frames),
/// `boundary_target (N, T)` float, `mask (N, T)` 1 on valid frames.
pub fn loss(
    out: &Output,
    labels: &Tensor,
    boundary_target: &Tensor,
    mask: &Tensor,
) -> Result<LossParts> {
    let stage = out.final_stage()?;
    let (n, a, t) = stage.action_logits.size3()?;
    for (name, x) in
        [("loss labels", labels), ("loss boundary target", boundary_target), ("loss mask", mask)]
    {
        if x.size() != [n, t] {
            return Err(Error::Shape {
                context: name.into(),
                expected: format!("[{n}, {t}]"),
                got: format!("{:?}", x.size()),
            });
        }
    }
    let device = stage.action_logits.device();
    let mask = mask.to_kind(Kind::Float).to_device(device); // (N, T)
    let labels = labels.to_kind(Kind::Int64).to_device(device);
    let valid_labels = &labels * mask.to_kind(Kind::Int64);
    let (lo, hi) = (valid_labels.min().int64_value(&[]), valid_labels.max().int64_value(&[]));
    if lo < 0 || hi >= a {
        return Err(Error::invalid(
            "labels",
            format!("class ids must be in 0..{a} on valid frames, found {lo}..={hi}"),
        ));
    }
    let target_b = boundary_target.to_kind(Kind::Float).to_device(device);
    let m3 = mask.unsqueeze(1); // (N, 1, T)
    let onehot = valid_labels.one_hot(a).to_kind(Kind::Float).permute([0, 2, 1]) * &m3; // (N, A, T)
    let frames = mask.sum_dim_intlist(1, false, Kind::Float); // (N)
    let has_frames = frames.gt(0.0).to_kind(Kind::Float);
    let sequences = has_frames.sum(Kind::Float).clamp_min(1.0);
    let total_frames = frames.sum(Kind::Float).clamp_min(1.0);

    let (mut focal, mut dice, mut bce) = (Vec::new(), Vec::new(), Vec::new());
    for stage in &out.stages {
        let x = &stage.action_logits;
        // focal: per element, summed over classes and valid frames, / #valid frames
        let ce = x.binary_cross_entropy_with_logits(
            &onehot,
            None::<Tensor>,
            None::<Tensor>,
            Reduction::None,
        );
        let p = x.sigmoid();
        let p_t: Tensor = &p * &onehot + (1.0 - &p) * (1.0 - &onehot);
        let weight: Tensor = &onehot * FOCAL_ALPHA + (1.0 - &onehot) * (1.0 - FOCAL_ALPHA);
        let miss: Tensor = p_t.neg() + 1.0;
        let l = ce * miss.pow_tensor_scalar(FOCAL_GAMMA) * weight * &m3;
        focal.push(l.sum(Kind::Float) / &total_frames);
        // dice over the classes present in each sequence
        let pm = &p * &m3;
        let inter = (&pm * &onehot).sum_dim_intlist(2, false, Kind::Float); // (N, A)
        let denom = pm.square().sum_dim_intlist(2, false, Kind::Float)
            + onehot.sum_dim_intlist(2, false, Kind::Float)
            + 2e-6;
        let present = onehot.sum_dim_intlist(2, false, Kind::Float).gt(0.0).to_kind(Kind::Float);
        let dice_c: Tensor = inter * 2.0 / denom;
        let per_class: Tensor = (1.0 - dice_c) * &present;
        let per_seq = per_class.sum_dim_intlist(1, false, Kind::Float)
            / present.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
        dice.push((per_seq * &has_frames).sum(Kind::Float) / &sequences);
        // boundary BCE per valid frame, per sequence, then over sequences
        let b = stage.boundary_logits.binary_cross_entropy_with_logits(
            &target_b,
            None::<Tensor>,
            None::<Tensor>,
            Reduction::None,
        ) * &mask;
        let per_seq = b.sum_dim_intlist(1, false, Kind::Float) / frames.clamp_min(1.0);
        bce.push((per_seq * &has_frames).sum(Kind::Float) / &sequences);
    }
    let mean = |v: Vec<Tensor>| Tensor::stack(&v, 0).mean(Kind::Float);
    let (focal, dice, boundary) = (mean(focal), mean(dice), mean(bce));
    Ok(LossParts { total: &focal + &dice + &boundary, focal, dice, boundary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stage;

    fn output(action: &[f32], a: i64, boundary: &[f32]) -> Output {
        let t = boundary.len() as i64;
        Output {
            stages: vec![Stage {
                action_logits: Tensor::from_slice(action).view([1, a, t]),
                boundary_logits: Tensor::from_slice(boundary).view([1, t]),
            }],
            temperature: 1.0,
        }
    }

    #[test]
    fn loss_parts_match_hand_computed_values() {
        // one sequence, 2 classes, 2 frames (+1 padded frame whose logits are absurd)
        let out = output(&[0.0, 2.0, 50.0, 1.0, -1.0, -50.0], 2, &[0.0, 0.0, 50.0]);
        let labels = Tensor::from_slice(&[0i64, 1, 99]).view([1, 3]);
        let target = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).view([1, 3]);
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0]).view([1, 3]);
        let parts = loss(&out, &labels, &target, &mask).expect("loss");
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let bce = |x: f64, y: f64| -(y * sig(x).ln() + (1.0 - y) * (1.0 - sig(x)).ln());
        let focal_el = |x: f64, y: f64| {
            let p = sig(x);
            let pt = p * y + (1.0 - p) * (1.0 - y);
            bce(x, y) * (1.0 - pt).powi(2) * (0.25 * y + 0.75 * (1.0 - y))
        };
        // logits[c][t]: c0 = [0, 2], c1 = [1, -1]; labels [0, 1]
        let focal =
            (focal_el(0.0, 1.0) + focal_el(2.0, 0.0) + focal_el(1.0, 0.0) + focal_el(-1.0, 1.0))
                / 2.0;
        let dice_c = |p: [f64; 2], g: [f64; 2]| {
            let inter = p[0] * g[0] + p[1] * g[1];
            1.0 - 2.0 * inter / (p[0] * p[0] + p[1] * p[1] + g[0] + g[1] + 2e-6)
        };
        let dice = (dice_c([sig(0.0), sig(2.0)], [1.0, 0.0])
            + dice_c([sig(1.0), sig(-1.0)], [0.0, 1.0]))
            / 2.0;
        let boundary = (bce(0.0, 1.0) + bce(0.0, 0.0)) / 2.0;
        assert!((parts.focal.double_value(&[]) - focal).abs() < 1e-5);
        assert!((parts.dice.double_value(&[]) - dice).abs() < 1e-5);
        assert!((parts.boundary.double_value(&[]) - boundary).abs() < 1e-5);
        assert!((parts.total.double_value(&[]) - (focal + dice + boundary)).abs() < 1e-5);
    }

    #[test]
    fn labels_out_of_range_on_valid_frames_are_an_error() {
        let out = output(&[0.0; 4], 2, &[0.0; 2]);
        let labels = Tensor::from_slice(&[0i64, 2]).view([1, 2]);
        let zeros = Tensor::zeros([1, 2], (Kind::Float, tch::Device::Cpu));
        let ones = Tensor::ones([1, 2], (Kind::Float, tch::Device::Cpu));
        assert!(loss(&out, &labels, &zeros, &ones).is_err());
        assert!(loss(&out, &labels.narrow(1, 0, 1), &zeros, &ones).is_err());
    }
}
