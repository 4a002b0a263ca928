//! Full-sequence inference (argmax + ASRF boundary refinement) and offline evaluation.

use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::metrics::{MetricsAccumulator, Scores, Variant};
use crate::model::InterAct;
use crate::postprocess::refinement_with_boundary_scored;
use crate::train::data::{Batch, Crop, SequenceTensors};

/// The model's reading of one whole sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Final per-frame class ids (argmax refined with the boundary probabilities).
    pub labels: Vec<usize>,
    /// Per-frame argmax before refinement.
    pub raw: Vec<usize>,
    /// Per-frame boundary probability.
    pub boundary_probs: Vec<f32>,
    /// Class probabilities, `(A, T)` row-major (class-major): they break the refinement's ties.
    pub class_probs: Vec<f32>,
}

/// Runs the model over the whole of `seq` (no crop) in inference mode.
pub fn predict(
    model: &InterAct,
    seq: &SequenceTensors,
    device: Device,
    boundary_threshold: f32,
) -> Result<Prediction> {
    let _guard = tch::no_grad_guard();
    let batch = Batch::from_crops(&[(seq, Crop { start: 0, len: seq.len })], device);
    let out = model.forward_t(&batch.abs, &batch.rel, &batch.motion, &batch.mask, false)?;
    let probs = out.final_action_probs()?; // (1, A, T)
    let raw = tensor_to_usize(&probs.argmax(1, false).squeeze_dim(0))?;
    let boundary_probs = Vec::<f32>::try_from(
        out.final_boundary_probs()?.squeeze_dim(0).to_kind(Kind::Float).to_device(Device::Cpu),
    )?;
    let class_probs = Vec::<f32>::try_from(
        probs.squeeze_dim(0).to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view(-1),
    )?;
    let labels = refine(&raw, &boundary_probs, &class_probs, boundary_threshold);
    Ok(Prediction { labels, raw, boundary_probs, class_probs })
}

/// ASRF refinement of `raw` at `threshold`; a threshold of 1 or more turns refinement off (no
/// boundary probability can reach it), leaving the argmax as it is. A piece's tie between
/// equally frequent classes goes, as in ASRF, to the larger summed probability over the piece:
/// `class_probs` is `(A, T)` class-major, `T = raw.len()`.
pub fn refine(
    raw: &[usize],
    boundary_probs: &[f32],
    class_probs: &[f32],
    threshold: f32,
) -> Vec<usize> {
    if threshold >= 1.0 {
        raw.to_vec()
    } else {
        refinement_with_boundary_scored(raw, boundary_probs, threshold, class_probs)
    }
}

/// Scores of the same predictions refined at each of `thresholds` (1.0 = argmax only), so the
/// boundary threshold can be chosen on validation data without re-running the model.
pub fn sweep_thresholds(
    predictions: &[Prediction],
    seqs: &[SequenceTensors],
    thresholds: &[f32],
    background: &[usize],
) -> Result<Vec<(f32, Scores)>> {
    thresholds
        .iter()
        .map(|&th| {
            let mut acc = MetricsAccumulator::new(Variant::Asrf, background.to_vec());
            for (pred, seq) in predictions.iter().zip(seqs) {
                let labels = refine(&pred.raw, &pred.boundary_probs, &pred.class_probs, th);
                acc.add(&labels, &seq.label_ids)?;
            }
            Ok((th, acc.finish()))
        })
        .collect()
}

/// Thresholds tried when choosing one on validation data (1.0 = no refinement).
pub const THRESHOLD_GRID: [f32; 8] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0];

/// The boundary threshold of [`THRESHOLD_GRID`] whose refinement of `predictions` scores the
/// best F1@50 (then Acc) on `seqs`, with those scores: the rule `skelseg train` applies after
/// every validation and `skelseg calibrate --threshold` applies to a finished checkpoint.
/// `None` only for an empty grid.
pub fn choose_threshold(
    predictions: &[Prediction],
    seqs: &[SequenceTensors],
    background: &[usize],
) -> Result<Option<(f32, Scores)>> {
    let sweep = sweep_thresholds(predictions, seqs, &THRESHOLD_GRID, background)?;
    Ok(sweep.into_iter().max_by(|(_, a), (_, b)| {
        (a.f1_50, a.acc).partial_cmp(&(b.f1_50, b.acc)).unwrap_or(std::cmp::Ordering::Equal)
    }))
}

/// Predicts every sequence and scores the predictions against their labels.
pub fn evaluate(
    model: &InterAct,
    seqs: &[SequenceTensors],
    device: Device,
    boundary_threshold: f32,
    background: &[usize],
) -> Result<(Scores, Vec<Prediction>)> {
    let mut acc = MetricsAccumulator::new(Variant::Asrf, background.to_vec());
    let mut predictions = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let pred = predict(model, seq, device, boundary_threshold)?;
        acc.add(&pred.labels, &seq.label_ids)?;
        predictions.push(pred);
    }
    Ok((acc.finish(), predictions))
}

/// Final-stage logits of every valid frame of `seqs`, `(F, A)`, with their labels `(F)`: what
/// [`fit_temperature`](crate::train::calibrate::fit_temperature) fits on.
pub fn frame_logits(
    model: &InterAct,
    seqs: &[SequenceTensors],
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let _guard = tch::no_grad_guard();
    let mut logits = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let batch = Batch::from_crops(&[(seq, Crop { start: 0, len: seq.len })], device);
        let out = model.forward_t(&batch.abs, &batch.rel, &batch.motion, &batch.mask, false)?;
        // (1, A, T) -> (T, A)
        logits.push(
            out.final_stage()?.action_logits.squeeze_dim(0).transpose(0, 1).to_device(Device::Cpu),
        );
    }
    let labels: Vec<Tensor> = seqs.iter().map(|s| s.labels.shallow_clone()).collect();
    Ok((Tensor::cat(&logits, 0), Tensor::cat(&labels, 0)))
}

fn tensor_to_usize(t: &Tensor) -> Result<Vec<usize>> {
    let v = Vec::<i64>::try_from(t.to_kind(Kind::Int64).to_device(Device::Cpu))?;
    Ok(v.into_iter().map(|x| x.max(0) as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refinement_ties_go_to_the_larger_probability_sum() {
        // One piece (no boundary peak), two frames each of classes 3 and 1; class 3 sums 1.8,
        // class 1 sums 1.4. (A = 4, T = 4), class-major.
        let raw = [3, 1, 3, 1];
        let b = [0.0; 4];
        let probs = [
            [0.1, 0.1, 0.1, 0.1],
            [0.1, 0.6, 0.1, 0.6],
            [0.1, 0.1, 0.1, 0.1],
            [0.7, 0.2, 0.7, 0.2],
        ]
        .concat();
        assert_eq!(refine(&raw, &b, &probs, 0.5), vec![3; 4]);
        // No refinement at a threshold of 1.
        assert_eq!(refine(&raw, &b, &probs, 1.0), raw.to_vec());
    }

    #[test]
    fn predictions_keep_the_class_probabilities_their_refinement_used() {
        let loaded = crate::stream::testing::bundled_model();
        let rec = crate::synth::generate_recording(&crate::synth::SynthConfig::default(), 7, "t");
        let modality = crate::modality::ModalityConfig::for_model(&loaded.meta.model);
        let seq = SequenceTensors::from_recording(&rec, &modality, &loaded.meta.model).unwrap();
        let pred = predict(&loaded.model, &seq, Device::Cpu, 0.5).unwrap();
        let t = pred.raw.len();
        assert_eq!(t, seq.len);
        assert_eq!(pred.class_probs.len(), loaded.meta.classes.len() * t);
        // Class-major: each frame's column sums to 1 and peaks at its argmax.
        for (f, &c) in pred.raw.iter().enumerate() {
            let column: Vec<f32> = pred.class_probs.iter().skip(f).step_by(t).copied().collect();
            assert!((column.iter().sum::<f32>() - 1.0).abs() < 1e-4, "frame {f}");
            assert!(column.iter().all(|&p| p <= column[c]), "frame {f}");
        }
        assert_eq!(pred.labels, refine(&pred.raw, &pred.boundary_probs, &pred.class_probs, 0.5));
    }

    #[test]
    fn the_threshold_sweep_breaks_ties_with_the_predictions_probabilities() {
        let probs = [[0.1; 4], [0.1, 0.6, 0.1, 0.6], [0.1; 4], [0.7, 0.2, 0.7, 0.2]].concat();
        let pred = Prediction {
            labels: vec![3; 4],
            raw: vec![3, 1, 3, 1],
            boundary_probs: vec![0.0; 4],
            class_probs: probs,
        };
        let zeros = Tensor::zeros([6, 4, 25], (Kind::Float, Device::Cpu));
        let seq = SequenceTensors {
            name: "s".into(),
            len: 4,
            abs: zeros.shallow_clone(),
            rel: zeros.shallow_clone(),
            motion: zeros,
            labels: Tensor::from_slice(&[3i64; 4]),
            boundary: Tensor::zeros([4], (Kind::Float, Device::Cpu)),
            label_ids: vec![3; 4],
        };
        let sweep = sweep_thresholds(&[pred], &[seq], &[0.5, 1.0], &[0]).expect("sweep");
        // Refined, every frame is class 3; unrefined, half of them.
        assert_eq!((sweep[0].1.acc, sweep[1].1.acc), (100.0, 50.0));
    }
}
