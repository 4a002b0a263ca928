//! MFAI, the temporal module (architecture.md §11.5–§11.6): a C2F-style encoder/decoder with
//! ASFormer layers, H QBlocks over the last H decoder outputs (coarse to fine), action and
//! boundary blocks on the finest output, FBlock and dot-product heads.
//!
//! Masking: the caller pads T to a multiple of `2^encoder_layers`; every tensor consumed by a
//! temporal operator is masked, so padded frames never reach valid ones. Deviations from the
//! anchors, all for that reason: masked instance norm / linear attention (see their files), and
//! ×2 up-sampling with half-pixel linear interpolation and zeros beyond the end
//! (`align_corners = False` on a zero-extended input) instead of C2F's `align_corners = True`,
//! whose sampling grid depends on the padded length; BatchNorm of the decoder conv blocks over
//! valid frames only.

use tch::Tensor;
use tch::nn::{self, Module};

use super::action_block::{self, ActionBlock};
use super::asformer::AsformerLayer;
use super::attention::{MaskedBatchNorm, channel_dropout};
use super::boundary_block::{self, BoundaryBlock};
use super::config::{ModelConfig, Temporal};
use super::query::{self, QueryDecoder, StageLogits};

/// One encoder level: depthwise conv k3 stride 2 (ASQuery), then an ASFormer layer.
#[derive(Debug)]
struct EncoderLayer {
    down: nn::Conv1D,
    layer: AsformerLayer,
}

/// C2F `double_conv`: `[Conv1d(k5, p2) → BN → ReLU] × 2`, `2D → D → D`.
#[derive(Debug)]
struct ConvBlock {
    conv1: nn::Conv1D,
    bn1: MaskedBatchNorm,
    conv2: nn::Conv1D,
    bn2: MaskedBatchNorm,
}

impl ConvBlock {
    fn new(p: &nn::Path, d: i64) -> Self {
        let k5 = nn::ConvConfig { padding: 2, ..Default::default() };
        Self {
            conv1: nn::conv1d(p / "conv1", 2 * d, d, 5, k5),
            bn1: MaskedBatchNorm::new(&(p / "bn1"), d),
            conv2: nn::conv1d(p / "conv2", d, d, 5, k5),
            bn2: MaskedBatchNorm::new(&(p / "bn2"), d),
        }
    }

    fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let h = self.bn1.forward_t(&self.conv1.forward(x), Some(mask), train).relu() * mask;
        self.bn2.forward_t(&self.conv2.forward(&h), Some(mask), train).relu() * mask
    }
}

/// ×2 linear up-sampling, half-pixel grid, zero beyond the last frame: `(N, C, L)` → `(N, C, 2L)`.
fn upsample2(x: &Tensor) -> Tensor {
    let l = x.size()[2];
    x.pad([0, 1], "constant", None).upsample_linear1d([2 * (l + 1)], false, None).narrow(
        2,
        0,
        2 * l,
    )
}

/// The temporal module. Features `(N, D, T)`, mask `(N, 1, T)`, T a multiple of `2^encoder_layers`.
#[derive(Debug)]
pub(crate) struct Mfai {
    input: nn::Conv1D,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<ConvBlock>,
    action: ActionBlock,
    boundary: BoundaryBlock,
    queries: QueryDecoder,
    temporal: Temporal,
    query_scales: usize,
    channel_dropout: f64,
}

impl Mfai {
    pub(crate) fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.hidden;
        let dw =
            nn::ConvConfig { stride: 2, padding: 1, groups: d, bias: false, ..Default::default() };
        Self {
            input: nn::conv1d(p / "input", d, d, 1, Default::default()),
            encoder: (0..cfg.encoder_layers)
                .map(|l| {
                    let q = p / "encoder" / l;
                    EncoderLayer {
                        down: nn::conv1d(&q / "down", d, d, 3, dw),
                        layer: AsformerLayer::new(&(&q / "asformer"), d, 1 << l, cfg.layer_dropout),
                    }
                })
                .collect(),
            decoder: (0..cfg.decoder_layers)
                .map(|j| ConvBlock::new(&(p / "decoder" / j), d))
                .collect(),
            action: ActionBlock::new(&(p / "action_block"), cfg),
            boundary: BoundaryBlock::new(&(p / "boundary_block"), cfg),
            queries: QueryDecoder::new(&(p / "queries"), cfg),
            temporal: cfg.temporal,
            query_scales: cfg.query_scales as usize,
            channel_dropout: cfg.channel_dropout,
        }
    }

    /// `x (N, D, T)`, `mask (N, 1, T)` → one prediction per QBlock, final last.
    pub(crate) fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Vec<StageLogits> {
        let x = channel_dropout(x, self.channel_dropout, train);
        // Encoder: E_0 at T, E_l at T/2^l.
        let mut masks = vec![mask.shallow_clone()];
        let mut skips = vec![self.input.forward(&x) * mask];
        for layer in &self.encoder {
            let (prev, prev_mask) = (skips.last(), masks.last());
            let (Some(prev), Some(prev_mask)) = (prev, prev_mask) else { break };
            let m = prev_mask.slice(2, 0, None, 2); // nearest down-sampling
            let e = layer.down.forward(prev) * &m;
            let e = layer.layer.forward_t(&e, &m, train);
            masks.push(m);
            skips.push(e);
        }
        // Decoder: U_j at T/2^(L-j); skips[L-j] is its skip connection.
        let levels = self.encoder.len();
        let mut u = skips[levels].shallow_clone();
        let mut outputs = Vec::with_capacity(levels);
        for (j, block) in self.decoder.iter().enumerate() {
            let at = levels - 1 - j;
            let up = upsample2(&u) * &masks[at];
            u = block.forward_t(&Tensor::cat(&[&skips[at], &up], 1), &masks[at], train);
            outputs.push((u.shallow_clone(), masks[at].shallow_clone()));
        }
        let finest = &u;
        let f_a = self.action.forward_t(finest, mask, train);
        let f_b = self.boundary.forward_t(finest, mask, train);
        let h = self.query_scales;
        let levels_used: Vec<(&Tensor, &Tensor)> = match self.temporal {
            Temporal::Mfai => outputs[outputs.len() - h..].iter().map(|(f, m)| (f, m)).collect(),
            Temporal::Fixed => (0..h).map(|_| (finest, mask)).collect(),
        };
        self.queries.forward(&levels_used, &f_a, &f_b, mask)
    }
}

/// Multiply-adds of MFAI for one window of `w` frames (padded to the multiple MFAI uses).
pub(crate) fn flops_per_window(cfg: &ModelConfig, w: u64) -> u64 {
    let m = cfg.pad_multiple() as u64;
    let t = w.div_ceil(m) * m;
    let d = cfg.hidden as u64;
    let mut total = t * d * d; // input 1×1
    for l in 0..cfg.encoder_layers as u32 {
        let len = t >> (l + 1);
        let bl = 1u64 << l;
        let win = bl + 2 * (bl / 2);
        let down = len * d * 3;
        // conv k3, q/k/v (D → D/2), scores + values over the window, out (D/2 → D), 1×1
        let asformer = len * (3 * d * d + 3 * d * d / 2 + 2 * win * d / 2 + d * d / 2 + d * d);
        total += down + asformer;
    }
    for j in 0..cfg.decoder_layers as u32 {
        let len = t >> (cfg.decoder_layers as u32 - 1 - j);
        total += len * (5 * 2 * d * d + 5 * d * d);
    }
    total += t * (action_block::flops_per_frame(cfg) + boundary_block::flops_per_frame(cfg));
    let h = cfg.query_scales as u32;
    let lens: Vec<u64> = match cfg.temporal {
        Temporal::Mfai => (0..h).map(|i| t >> (h - 1 - i)).collect(),
        Temporal::Fixed => (0..h).map(|_| t).collect(),
    };
    total + query::flops(cfg, t, &lens)
}
