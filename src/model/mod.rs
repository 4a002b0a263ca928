//! The InterAct model: DSMI, the per-frame spatial
//! module, and MFAI, the multi-scale frame-action interaction temporal module, in tch.
//!
//! - [`InterAct::dsmi`]: three modalities `(N, 6, T, 25)` → features `(N, D, T)`. Per frame, so
//!   the streaming runtime runs it once per incoming frame (T = 1) and caches the result; in
//!   inference mode per-frame and whole-sequence calls give the same numbers.
//! - [`InterAct::mfai`]: features `(N, D, T)` + mask `(N, T)` → [`Output`], one [`Stage`] per
//!   QBlock (final last). Any T ≥ 1: padded internally to a multiple of `2^encoder_layers`.
//! - [`loss()`]: focal + dice on the action logits, BCE on the boundary logits, every stage.
//! - [`crate::Model`] (re-exported at the crate root): a loaded checkpoint that owns its
//!   weights, what apps load and stream with.
//! - [`checkpoint`]: `NAME.safetensors` + `NAME.json` (config, classes, layout, data, command).
//!
//! Parameter and compute budget: [`InterAct::num_parameters`], [`dsmi_flops_per_frame`],
//! [`mfai_flops_per_window`].

mod action_block;
mod asformer;
mod attention;
mod boundary_block;
pub mod checkpoint;
mod config;
mod conv;
mod dsmi;
pub(crate) mod handle;
mod loss;
mod mask;
mod mfai;
mod profile;
mod query;

pub use config::{CURRENT_REVISION, InputNorm, ModelConfig, Spatial, Temporal};
pub use loss::{LossParts, loss};
pub use profile::{BlockTime, profile_blocks};

use tch::{Kind, Tensor, nn};
use tracing::trace_span;

use crate::error::{Error, Result};

/// One prediction of the model (one per QBlock).
#[derive(Debug)]
pub struct Stage {
    /// Action logits `(N, A, T)`.
    pub action_logits: Tensor,
    /// Boundary logits `(N, T)`.
    pub boundary_logits: Tensor,
}

/// What [`InterAct::mfai`] returns: one [`Stage`] per QBlock, coarse to fine; the final
/// prediction is the last.
#[derive(Debug)]
pub struct Output {
    /// Predictions, the final one last (never empty when produced by the model).
    pub stages: Vec<Stage>,
    /// The model's calibration temperature ([`ModelConfig::temperature`]).
    pub temperature: f64,
}

impl Output {
    /// The final stage.
    pub fn final_stage(&self) -> Result<&Stage> {
        self.stages.last().ok_or_else(|| Error::invalid("model output", "no stages"))
    }

    /// Calibrated class probabilities of the final stage, `softmax(P_a / temperature)` over
    /// classes: `(N, A, T)` (the temperature is fitted after training, `train::calibrate`).
    pub fn final_action_probs(&self) -> Result<Tensor> {
        Ok((&self.final_stage()?.action_logits / self.temperature).softmax(1, Kind::Float))
    }

    /// Boundary probabilities of the final stage, sigmoid: `(N, T)`.
    pub fn final_boundary_probs(&self) -> Result<Tensor> {
        Ok(self.final_stage()?.boundary_logits.sigmoid())
    }
}

/// The InterAct model: DSMI + MFAI. All constant tensors live on the VarStore's device.
///
/// Threading: tch tensors are `Send` but not `Sync`; own the model (and its VarStore) on one
/// inference thread.
#[derive(Debug)]
pub struct InterAct {
    cfg: ModelConfig,
    dsmi: dsmi::Dsmi,
    mfai: mfai::Mfai,
}

impl InterAct {
    /// Builds the model's variables under `p` (names: `dsmi.*`, `mfai.*`).
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            dsmi: dsmi::Dsmi::new(&(p / "dsmi"), cfg),
            mfai: mfai::Mfai::new(&(p / "mfai"), cfg),
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Trainable parameters (counted from the configuration; a unit test checks the count
    /// against the VarStore for every variant).
    pub fn num_parameters(&self) -> i64 {
        parameter_count(&self.cfg)
    }

    /// Tells the model its weights were changed other than by a training step (e.g.
    /// `VarStore::copy`, `VarStore::load` or `VarStore::set_kind` after an inference call).
    ///
    /// Inference derives weights from the parameters once and keeps them (DSMI's graph
    /// convolutions with BatchNorm folded in, MFAI's BatchNorms as affine maps, concatenated
    /// q/k/v projections in both); a training-mode call drops them, and so does this. Loading a checkpoint needs no call.
    pub fn weights_changed(&self) {
        self.dsmi.weights_changed();
        self.mfai.weights_changed();
    }

    /// Spatial module: `abs`, `rel`, `motion (N, C, T, V)` → `(N, D, T)`.
    pub fn dsmi(&self, abs: &Tensor, rel: &Tensor, motion: &Tensor, train: bool) -> Result<Tensor> {
        let _span = trace_span!("dsmi").entered();
        self.check_modalities(abs, rel, motion)?;
        Ok(self.dsmi.forward_t(abs, rel, motion, None, train))
    }

    /// Checks the three modality tensors; returns `(N, T)`.
    fn check_modalities(&self, abs: &Tensor, rel: &Tensor, motion: &Tensor) -> Result<(i64, i64)> {
        let want = format!("[N, {}, T, {}]", self.cfg.in_channels, self.cfg.joints);
        let (n, c, t, v) = abs.size4().map_err(|_| shape_error("dsmi abs", &want, abs))?;
        if c != self.cfg.in_channels || v != self.cfg.joints || t < 1 || n < 1 {
            return Err(shape_error("dsmi abs", &want, abs));
        }
        for (name, x) in [("dsmi rel", rel), ("dsmi motion", motion)] {
            if x.size() != [n, c, t, v] {
                return Err(shape_error(name, &format!("{:?} (as abs)", [n, c, t, v]), x));
            }
        }
        Ok((n, t))
    }

    /// Temporal module: `feats (N, D, T)`, `mask (N, T)` (1 valid, 0 padding) → [`Output`] with
    /// T frames. Pads to a multiple of `2^encoder_layers` internally and crops back.
    pub fn mfai(&self, feats: &Tensor, mask: &Tensor, train: bool) -> Result<Output> {
        let _span = trace_span!("mfai").entered();
        let want = format!("[N, {}, T]", self.cfg.hidden);
        let (n, d, t) = feats.size3().map_err(|_| shape_error("mfai feats", &want, feats))?;
        if d != self.cfg.hidden || t < 1 || n < 1 {
            return Err(shape_error("mfai feats", &want, feats));
        }
        if mask.size() != [n, t] {
            return Err(shape_error("mfai mask", &format!("[{n}, {t}]"), mask));
        }
        let (feats, mask) = self.pad_window(feats, mask);
        let stages = self
            .mfai
            .forward_t(&feats, &mask, train)
            .into_iter()
            .map(|s| Stage {
                action_logits: s.action.narrow(2, 0, t),
                boundary_logits: s.boundary.narrow(1, 0, t),
            })
            .collect();
        Ok(Output { stages, temperature: self.cfg.temperature })
    }

    /// Inference only: the final stage's logits for frames `from..T` of each window, the part
    /// a stream finalises. Same numbers as the final stage of [`InterAct::mfai`] on those
    /// frames (to float rounding); the other frames' and the earlier stages' heads are not
    /// computed. `from` must lie in `0..T`.
    pub fn mfai_final(&self, feats: &Tensor, mask: &Tensor, from: i64) -> Result<Output> {
        let _span = trace_span!("mfai").entered();
        let want = format!("[N, {}, T]", self.cfg.hidden);
        let (n, d, t) = feats.size3().map_err(|_| shape_error("mfai feats", &want, feats))?;
        if d != self.cfg.hidden || t < 1 || n < 1 {
            return Err(shape_error("mfai feats", &want, feats));
        }
        if mask.size() != [n, t] {
            return Err(shape_error("mfai mask", &format!("[{n}, {t}]"), mask));
        }
        if !(0..t).contains(&from) {
            return Err(Error::invalid(
                "mfai_final",
                format!("first frame {from} is not within the window's {t} frames"),
            ));
        }
        let (feats, mask) = self.pad_window(feats, mask);
        let stage = self
            .mfai
            .forward_final(&feats, &mask, from)
            .ok_or_else(|| Error::invalid("model output", "no stages"))?;
        let keep = t - from;
        Ok(Output {
            stages: vec![Stage {
                action_logits: stage.action.narrow(2, 0, keep),
                boundary_logits: stage.boundary.narrow(1, 0, keep),
            }],
            temperature: self.cfg.temperature,
        })
    }

    /// Pads `feats (N, D, T)` and `mask (N, T)` to the multiple MFAI needs: `(N, D, T')`,
    /// `(N, 1, T')`, padded frames zeroed.
    fn pad_window(&self, feats: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
        let (n, t) = (feats.size()[0], feats.size()[2]);
        let m = self.cfg.pad_multiple();
        let padded = (t + m - 1) / m * m;
        let mask = mask
            .to_device(feats.device())
            .to_kind(feats.kind())
            .pad([0, padded - t], "constant", None)
            .view([n, 1, padded]);
        let feats = feats.pad([0, padded - t], "constant", None) * &mask;
        (feats, mask)
    }

    /// DSMI then MFAI: modalities `(N, C, T, V)`, `mask (N, T)`. Unlike a separate
    /// [`InterAct::dsmi`] call, DSMI's BatchNorm then ignores padded frames in training.
    pub fn forward_t(
        &self,
        abs: &Tensor,
        rel: &Tensor,
        motion: &Tensor,
        mask: &Tensor,
        train: bool,
    ) -> Result<Output> {
        let (n, t) = self.check_modalities(abs, rel, motion)?;
        if mask.size() != [n, t] {
            return Err(shape_error("forward mask", &format!("[{n}, {t}]"), mask));
        }
        let feats = {
            let _span = trace_span!("dsmi").entered();
            let m = mask.to_device(abs.device()).to_kind(abs.kind());
            self.dsmi.forward_t(abs, rel, motion, Some(&m), train)
        };
        self.mfai(&feats, mask, train)
    }
}

fn shape_error(context: &str, expected: &str, got: &Tensor) -> Error {
    Error::Shape {
        context: context.into(),
        expected: expected.into(),
        got: format!("{:?}", got.size()),
    }
}

/// Multiply-adds of DSMI for one frame of one stream: graph aggregation and 1×1 convs of the
/// three graph convolutions, attention in/out projections, scores and weighted sums over the 25
/// joint tokens, fusion MLPs and the joints → frame linear. Norms, activations and softmax are not
/// counted (the thop/fvcore convention behind the GFLOPs of the TAS papers).
pub fn dsmi_flops_per_frame(cfg: &ModelConfig) -> u64 {
    dsmi::flops_per_frame(cfg)
}

/// Multiply-adds of MFAI for one window of `w` frames of one stream (padded to a multiple of
/// `2^encoder_layers`): encoder convs and windowed attention, decoder conv blocks, action and
/// boundary blocks, QBlocks, FBlock and heads. Same convention as [`dsmi_flops_per_frame`].
pub fn mfai_flops_per_window(cfg: &ModelConfig, w: u64) -> u64 {
    mfai::flops_per_window(cfg, w)
}

/// Trainable parameter count of a model with this configuration.
pub fn parameter_count(cfg: &ModelConfig) -> i64 {
    let (c, v, d, k, a) = (cfg.in_channels, cfg.joints, cfg.hidden, cfg.scales, cfg.num_classes);
    let lin = |i: i64, o: i64| i * o + o;
    let conv = |i: i64, o: i64, ks: i64| i * o * ks + o;
    let mha = |w: i64| 4 * lin(w, w);
    let gcn = k * v * v + conv(k * c, d, 1) + 2 * d;
    let fusion = |w: i64| 2 * w + mha(w) + lin(w, d) + lin(d, d);
    let spatial = match cfg.spatial {
        Spatial::Dsmi => 3 * gcn + 2 * fusion(2 * d) + lin(v * d, d),
        Spatial::Concat => 3 * gcn + lin(3 * d, d) + lin(d, d) + lin(v * d, d),
        Spatial::None => lin(3 * c * v, d),
    };
    let asformer = conv(d, d, 3) + 3 * conv(d, d / 2, 1) + conv(d / 2, d, 1) + conv(d, d, 1);
    let encoder = cfg.encoder_layers * (3 * d + asformer);
    let decoder = cfg.decoder_layers * (conv(2 * d, d, 5) + conv(d, d, 5) + 4 * d);
    let action =
        2 * conv(d, d, 1) + cfg.action_layers * (conv(d, d, 3) + 4 * lin(d, d) + conv(d, d, 1));
    let lb = cfg.boundary_layers;
    let boundary =
        conv(d, d, 1) + lb * (conv(d, d, 3) + conv(d, d, 1)) + lb * d + conv(lb * d, d, 1);
    let qblock = 3 * 2 * d + 2 * mha(d) + lin(d, 4 * d) + lin(4 * d, d);
    let embed = lin(d, d / 4) + lin(d / 4, d) + lin(d, d);
    let fblocks = if cfg.revision >= 2 { cfg.query_scales } else { 1 };
    let queries = 2 * (a + 1) * d
        + cfg.query_scales * qblock
        + fblocks * (2 * 2 * d + 2 * mha(d))
        + 2 * embed
        + 3 * 2 * d; // LayerNorms on F_a, F_b and the queries
    spatial + conv(d, d, 1) + encoder + decoder + action + boundary + queries
}

/// Whether an operation on `param` would be recorded for autograd now (grad mode on and the
/// parameter trainable): one element-wise op on a small tensor. Inference-mode calls that are
/// recorded skip the derived weights DSMI and MFAI keep, so gradients reach the parameters.
fn records_grad(param: &Tensor) -> bool {
    param.requires_grad() && (param * 1.0).requires_grad()
}

#[cfg(test)]
mod tests;
