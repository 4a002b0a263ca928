//! The action block: DeST's linear-attention refinement on the finest decoder output:
//! `Conv1d(D→D, 1)` → L × `AttModule` (linear attention, encoder
//! mode, dilation 2^i) → `Conv1d(D→D, 1)`, masked. Gives `F_a (N, D, T)`.
//!
//! Deviations: masked instance norm and masked keys/values (the anchor leaks padding).

use tch::Tensor;
use tch::nn;

use super::attention::{LinearAttention, masked_instance_norm};
use super::config::ModelConfig;
use super::conv;
use super::mask::FrameMask;
use super::profile::block;

/// DeST `AttModule` with linear attention, encoder mode, alpha 1. `(N, C, T)` → `(N, C, T)`.
#[derive(Debug)]
struct LinearAttModule {
    ff: nn::Conv1D,
    att: LinearAttention,
    conv_1x1: nn::Conv1D,
    dilation: i64,
    dropout: f64,
}

impl LinearAttModule {
    fn new(p: &nn::Path, cfg: &ModelConfig, dilation: i64) -> Self {
        let d = cfg.hidden;
        let ff_cfg = nn::ConvConfig { padding: dilation, dilation, ..Default::default() };
        Self {
            ff: nn::conv1d(p / "feed_forward", d, d, 3, ff_cfg),
            att: LinearAttention::new(&(p / "att_layer"), d, cfg.heads, cfg.attention_dropout),
            conv_1x1: nn::conv1d(p / "conv_1x1", d, d, 1, Default::default()),
            dilation,
            dropout: cfg.layer_dropout,
        }
    }

    /// `qkv`: the attention's fused projections ([`LinearAttention::fused_qkv`]) for
    /// inference, or `None`. `from` (inference; 0 in training): the outputs of frames `from..T`
    /// alone, `(N, C, T − from)`; every frame still feeds the norm's statistics and the
    /// attention's keys.
    fn forward_t(
        &self,
        x: &Tensor,
        mask: &FrameMask,
        train: bool,
        qkv: Option<&(Tensor, Tensor)>,
        from: i64,
    ) -> Tensor {
        let out = block("mfai.action_block/ff", None, || {
            conv::same_conv(&self.ff, x, self.dilation, train).relu()
        });
        let normed = block("mfai.action_block/norm", None, || masked_instance_norm(&out, mask));
        let att = block("mfai.action_block/attention", None, || {
            // One sequence (the streaming engine's window) or some of the frames: the channel
            // layout, no transposes. Whole batches keep the token form, whose products libtorch
            // batches better.
            if train || (normed.size()[0] > 1 && from == 0) {
                // (N, T, C), one copy: `linear` on the transposed view would copy it for
                // each of the q, k and v projections.
                let q = normed.transpose(1, 2).contiguous();
                self.att.forward_t(&q, &q, &mask.tensor().transpose(1, 2), train).transpose(1, 2)
            } else {
                self.att.forward_channels(&normed, mask, qkv, from)
            }
        });
        block("mfai.action_block/out", None, || {
            let keep = x.size()[2] - from;
            let out = conv::pointwise(&self.conv_1x1, &(att + out.narrow(2, from, keep)), train)
                .dropout(self.dropout, train);
            mask.narrow(from, keep).apply(x.narrow(2, from, keep) + out)
        })
    }
}

/// The action block. `(N, D, T)` → `F_a (N, D, T)`.
#[derive(Debug)]
pub(crate) struct ActionBlock {
    conv_in: nn::Conv1D,
    layers: Vec<LinearAttModule>,
    conv_out: nn::Conv1D,
}

impl ActionBlock {
    pub(crate) fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.hidden;
        Self {
            conv_in: nn::conv1d(p / "conv_in", d, d, 1, Default::default()),
            layers: (0..cfg.action_layers)
                .map(|i| LinearAttModule::new(&(p / "layers" / i), cfg, 1 << i))
                .collect(),
            conv_out: nn::conv1d(p / "conv_out", d, d, 1, Default::default()),
        }
    }

    /// Each layer's linear-attention q/k/v projections as one (derived weights for
    /// [`Self::forward_t`]).
    pub(crate) fn fused_qkv(&self) -> Vec<(Tensor, Tensor)> {
        self.layers.iter().map(|l| l.att.fused_qkv()).collect()
    }

    /// `x (N, D, T)`, `mask (N, 1, T)`; `qkv`: [`Self::fused_qkv`] for inference, or `None`.
    /// `from` (inference; 0 in training): `F_a` of frames `from..T` alone, `(N, D, T − from)`.
    /// Every layer's attention is global, so the layers before the last run on every frame;
    /// the last one's queries, read-out and 1×1 convolutions, and `conv_out`, on those frames.
    pub(crate) fn forward_t(
        &self,
        x: &Tensor,
        mask: &FrameMask,
        train: bool,
        qkv: Option<&[(Tensor, Tensor)]>,
        from: i64,
    ) -> Tensor {
        let mut h = block("mfai.action_block/conv_in", None, || {
            mask.apply(conv::pointwise(&self.conv_in, x, train))
        });
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let fused = qkv.and_then(|q| q.get(i));
            let from = if i == last { from } else { 0 };
            // The whole layer, beside its four parts: on the loaded machine of 2026-11-30 the
            // layers took 3–6× the sum of their parts (BENCHMARKS.md, unresolved).
            h = block("mfai.action_block/layer", None, || {
                layer.forward_t(&h, mask, train, fused, from)
            });
        }
        if self.layers.is_empty() {
            h = h.narrow(2, from, h.size()[2] - from);
        }
        block("mfai.action_block/conv_out", None, || {
            mask.narrow(from, h.size()[2]).apply(conv::pointwise(&self.conv_out, &h, train))
        })
    }
}

/// Multiply-adds of the action block per frame.
pub(crate) fn flops_per_frame(cfg: &ModelConfig) -> u64 {
    let d = cfg.hidden as u64;
    let layer = 3 * d * d + 4 * d * d + 2 * d * (d / cfg.heads as u64) + d * d; // conv k3, q/k/v/out, KV + read-out, 1×1
    2 * d * d + cfg.action_layers as u64 * layer
}
