//! Reduced precision: which kind the model runs in, and how far its outputs move from fp32's.

use anyhow::Result;
use serde::Serialize;
use skelseg::model::InterAct;
use tch::{Device, Kind, Tensor};

/// Numeric precision the bench runs the model in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Precision {
    /// 32-bit floats (the default everywhere).
    Fp32,
    /// bfloat16 weights and activations (AVX-512 BF16 / AMX on CPU, tensor cores on CUDA).
    Bf16,
    /// IEEE half precision (CUDA).
    Fp16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Self::Fp32 => Kind::Float,
            Self::Bf16 => Kind::BFloat16,
            Self::Fp16 => Kind::Half,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct PrecisionCheck {
    /// Largest |Δ| of the final action probabilities.
    max_abs_prob_diff: f64,
    /// Largest |Δ| of the final boundary probabilities.
    max_abs_boundary_diff: f64,
    /// Frames whose arg-max class differs from fp32's.
    argmax_disagreement: f64,
}

impl PrecisionCheck {
    /// Final-stage outputs of `model` (already in `kind`) against the fp32 `reference` on one
    /// random window of `w` frames.
    pub fn run(
        reference: &InterAct,
        model: &InterAct,
        kind: Kind,
        w: i64,
        device: Device,
    ) -> Result<Self> {
        tch::manual_seed(7);
        let x = Tensor::randn([1, 6, w, 25], (Kind::Float, device)) * 0.5;
        let mask = Tensor::ones([1, w], (Kind::Float, device));
        let want = reference.forward_t(&x, &x, &x, &mask, false)?;
        let xk = x.to_kind(kind);
        let got = model.forward_t(&xk, &xk, &xk, &mask.to_kind(kind), false)?;
        let (pw, pg) = (want.final_action_probs()?, got.final_action_probs()?.to_kind(Kind::Float));
        let (bw, bg) =
            (want.final_boundary_probs()?, got.final_boundary_probs()?.to_kind(Kind::Float));
        let differs = pw.argmax(1, false).ne_tensor(&pg.argmax(1, false));
        Ok(Self {
            max_abs_prob_diff: (&pw - &pg).abs().max().double_value(&[]),
            max_abs_boundary_diff: (&bw - &bg).abs().max().double_value(&[]),
            argmax_disagreement: differs.to_kind(Kind::Float).mean(Kind::Float).double_value(&[]),
        })
    }

    /// One line for the table.
    pub fn describe(&self, precision: &str) -> String {
        format!(
            "{precision} vs fp32 on one window: max |Δ prob| {:.2e}, max |Δ boundary| {:.2e}, arg-max differs on {:.2}% of frames",
            self.max_abs_prob_diff,
            self.max_abs_boundary_diff,
            self.argmax_disagreement * 100.0
        )
    }
}
