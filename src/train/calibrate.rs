//! Confidence calibration by temperature scaling (Guo et al., 2017).
//!
//! The model is trained with per-class sigmoid losses (focal + dice), so a softmax over its raw
//! logits says little about how often a prediction is right. After training, one temperature
//! `T` is fitted on the validation frames to minimise the negative log-likelihood of
//! `softmax(logits / T)`; it is stored in the checkpoint ([`ModelConfig::temperature`]) and every
//! consumer of class probabilities (offline inference, the streaming segmenter's θ gate, the
//! reported confidences) uses it. It does not change any argmax, so no label changes.
//!
//! [`ModelConfig::temperature`]: crate::model::ModelConfig::temperature

use serde::Serialize;
use tch::{Kind, Tensor};

/// Outcome of [`fit_temperature`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// The fitted temperature.
    pub temperature: f64,
    /// Mean negative log-likelihood per frame at `T = 1` and at the fitted `T`.
    pub nll_before: f64,
    /// See `nll_before`.
    pub nll_after: f64,
    /// Expected calibration error (15 equal-width confidence bins) at `T = 1` and fitted.
    pub ece_before: f64,
    /// See `ece_before`.
    pub ece_after: f64,
    /// Frames the fit used.
    pub frames: usize,
}

/// Fits the temperature on `logits (F, A)` (one row per valid frame) against `labels (F)`
/// (int64), by golden-section search of the NLL over `log T ∈ [log 0.05, log 20]` (the NLL is
/// convex in `1/T`). `None` when there are no frames.
pub fn fit_temperature(logits: &Tensor, labels: &Tensor) -> Option<Calibration> {
    let frames = logits.size().first().copied().unwrap_or(0);
    if frames == 0 {
        return None;
    }
    let logits = logits.to_kind(Kind::Double);
    let nll = |t: f64| {
        -(&logits / t)
            .log_softmax(1, Kind::Double)
            .gather(1, &labels.view([-1, 1]), false)
            .mean(Kind::Double)
            .double_value(&[])
    };
    let (mut lo, mut hi) = (0.05f64.ln(), 20f64.ln());
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let (a, b) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
        if nll(a.exp()) < nll(b.exp()) {
            hi = b;
        } else {
            lo = a;
        }
    }
    let temperature = ((lo + hi) / 2.0).exp();
    Some(Calibration {
        temperature,
        nll_before: nll(1.0),
        nll_after: nll(temperature),
        ece_before: ece(&logits, labels, 1.0),
        ece_after: ece(&logits, labels, temperature),
        frames: frames as usize,
    })
}

/// Expected calibration error of `softmax(logits / t)` over 15 equal-width confidence bins.
pub fn ece(logits: &Tensor, labels: &Tensor, t: f64) -> f64 {
    let probs = (logits.to_kind(Kind::Double) / t).softmax(1, Kind::Double);
    let (conf, pred) = probs.max_dim(1, false);
    let conf = Vec::<f64>::try_from(conf).unwrap_or_default();
    let pred = Vec::<i64>::try_from(pred).unwrap_or_default();
    let labels = Vec::<i64>::try_from(labels.to_kind(Kind::Int64)).unwrap_or_default();
    const BINS: usize = 15;
    let mut sum_conf = [0.0f64; BINS];
    let mut sum_hit = [0.0f64; BINS];
    let mut count = [0usize; BINS];
    for ((c, p), l) in conf.iter().zip(&pred).zip(&labels) {
        let b = ((c * BINS as f64) as usize).min(BINS - 1);
        sum_conf[b] += c;
        sum_hit[b] += f64::from(u8::from(p == l));
        count[b] += 1;
    }
    let n = count.iter().sum::<usize>().max(1) as f64;
    (0..BINS).filter(|&b| count[b] > 0).map(|b| (sum_conf[b] - sum_hit[b]).abs() / n).sum()
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    /// Labels drawn from softmax(z) are perfectly calibrated for z; logits 3z are
    /// over-confident by 3, so the fit must find T ≈ 3 and cut the ECE.
    #[test]
    fn recovers_the_temperature_of_over_confident_logits() {
        tch::manual_seed(3);
        let z = Tensor::randn([20_000, 6], (Kind::Double, Device::Cpu)) * 1.5;
        let labels = z.softmax(1, Kind::Double).multinomial(1, true).view([-1]);
        let c = fit_temperature(&(&z * 3.0), &labels).expect("frames");
        assert!((c.temperature - 3.0).abs() < 0.25, "fitted {}", c.temperature);
        assert!(c.nll_after < c.nll_before);
        assert!(c.ece_after < 0.5 * c.ece_before, "{} -> {}", c.ece_before, c.ece_after);
        assert!(
            fit_temperature(&Tensor::zeros([0, 6], (Kind::Float, Device::Cpu)), &labels).is_none()
        );
    }
}
