//! Full-sequence inference (argmax + ASRF boundary refinement) and offline evaluation.

use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::metrics::{MetricsAccumulator, Scores, Variant};
use crate::model::InterAct;
use crate::postprocess::refinement_with_boundary;
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
    let labels = refine(&raw, &boundary_probs, boundary_threshold);
    Ok(Prediction { labels, raw, boundary_probs })
}

/// ASRF refinement of `raw` at `threshold`; a threshold of 1 or more turns refinement off (no
/// boundary probability can reach it), leaving the argmax as it is.
pub fn refine(raw: &[usize], boundary_probs: &[f32], threshold: f32) -> Vec<usize> {
    if threshold >= 1.0 {
        raw.to_vec()
    } else {
        refinement_with_boundary(raw, boundary_probs, threshold)
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
                acc.add(&refine(&pred.raw, &pred.boundary_probs, th), &seq.label_ids)?;
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
