//! Exponential moving average of the weights (Polyak averaging, as timm's `ModelEmaV2`): a
//! second copy of the model whose variables follow the trained ones, `ē ← d·ē + (1 − d)·w`
//! after every optimiser step. On small data the average of the last few dozen steps' weights
//! generalises better than the weights of any one step; the optimiser keeps training the raw
//! weights. Batch-norm running statistics are averaged as the weights are.

use std::path::Path;

use tch::{Tensor, nn};

use crate::error::{Error, Result};
use crate::model::{InterAct, ModelConfig};

/// The decay at optimiser step `step` (steps done, from 1): `decay`, warmed up as
/// `(1 + s) / (10 + s)` so that the first steps' weights, from the random start of the
/// class-specific tensors, fade within a few steps instead of `1 / (1 − decay)`.
pub fn decay_at(decay: f64, step: usize) -> f64 {
    decay.min((1 + step) as f64 / (10 + step) as f64)
}

/// The averaged copy of a model being trained.
pub struct WeightAverage {
    vs: nn::VarStore,
    net: InterAct,
    /// `(trained, averaged)` for every variable, paired by name.
    pairs: Vec<(Tensor, Tensor)>,
    decay: f64,
}

impl WeightAverage {
    /// An average that starts at `trained`'s current weights; `cfg` is the trained model's.
    pub fn new(trained: &nn::VarStore, cfg: &ModelConfig, decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::invalid("training", format!("EMA decay {decay} is not in [0, 1)")));
        }
        let vs = nn::VarStore::new(trained.device());
        let net = InterAct::new(&vs.root(), cfg)?;
        let averaged = vs.variables();
        let mut pairs = Vec::with_capacity(averaged.len());
        for (name, w) in trained.variables() {
            let e = averaged.get(&name).ok_or_else(|| {
                Error::invalid("training", format!("the averaged model lacks tensor {name}"))
            })?;
            pairs.push((w, e.set_requires_grad(false)));
        }
        let average = WeightAverage { vs, net, pairs, decay };
        average.reset();
        Ok(average)
    }

    /// Restarts the average at the trained weights.
    pub fn reset(&self) {
        tch::no_grad(|| {
            for (w, e) in &self.pairs {
                e.shallow_clone().copy_(w);
            }
        });
        self.net.weights_changed();
    }

    /// Folds in the trained weights after optimiser step `step` (steps done, from 1).
    pub fn update(&self, step: usize) {
        let keep = decay_at(self.decay, step);
        tch::no_grad(|| {
            for (w, e) in &self.pairs {
                // ē + (1 − d)(w − ē) = d·ē + (1 − d)·w
                let _ = e.shallow_clone().lerp_(w, 1.0 - keep);
            }
        });
        self.net.weights_changed();
    }

    /// The model with the averaged weights (for validation and checkpoints).
    pub fn net(&self) -> &InterAct {
        &self.net
    }

    /// The averaged weights.
    pub fn vs(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Loads averaged weights saved by an earlier run (`--resume`).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        self.vs.load(path).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            expected: "readable averaged training-state weights".into(),
            found: e.to_string(),
        })?;
        self.net.weights_changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn the_decay_warms_up_to_its_setting() {
        assert!((decay_at(0.99, 0) - 0.1).abs() < 1e-12);
        assert!((decay_at(0.99, 1) - 2.0 / 11.0).abs() < 1e-12);
        assert!((decay_at(0.99, 80) - 81.0 / 90.0).abs() < 1e-12);
        assert_eq!(decay_at(0.99, 10_000), 0.99);
    }

    #[test]
    fn the_average_follows_the_trained_weights_step_by_step() {
        tch::manual_seed(0);
        let cfg = ModelConfig::tiny(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = InterAct::new(&vs.root(), &cfg).expect("model");
        let average = WeightAverage::new(&vs, &cfg, 0.9).expect("average");
        let name = "mfai.input.weight";
        let trained = vs.variables()[name].shallow_clone();
        let start = trained.copy();
        assert!(average.vs().variables()[name].equal(&start), "starts at the trained weights");
        // Two steps that move the trained weights by +1, then by +1 again.
        let mut want = start.copy();
        for step in 1..=2 {
            tch::no_grad(|| {
                let _ = trained.shallow_clone().g_add_scalar_(1.0);
            });
            average.update(step);
            let d = decay_at(0.9, step);
            want = &want * d + &trained * (1.0 - d);
            let got = &average.vs().variables()[name];
            assert!(got.allclose(&want, 1e-6, 1e-6, false), "step {step}");
        }
        // The averaged copy is a model of its own: inference runs on it without gradients.
        let x = Tensor::randn([1, cfg.hidden, 64], (Kind::Float, Device::Cpu));
        let mask = Tensor::ones([1, 64], (Kind::Float, Device::Cpu));
        let out = average.net().mfai(&x, &mask, false).expect("forward");
        assert!(!out.final_action_probs().expect("probs").requires_grad());
    }
}
