//! MFAI, the temporal module: a C2F-style encoder/decoder with
//! ASFormer layers, H QBlocks over the last H decoder outputs (coarse to fine), action and
//! boundary blocks on the finest output, FBlock and dot-product heads.
//!
//! Masking: the caller pads T to a multiple of `2^encoder_layers`; every tensor consumed by a
//! temporal operator is masked, so padded frames never reach valid ones. Deviations from the
//! anchors, all for that reason: masked instance norm / linear attention (see their files),
//! BatchNorm of the decoder conv blocks over valid frames only, and ×2 up-sampling on the
//! encoder's own grid instead of C2F's `align_corners = True`, whose grid depends on the padded
//! length.
//!
//! Sampling grid: the stride-2 convolution (k3, pad 1) centres coarse sample `i` on fine frame
//! `2i`, and the masks are down-sampled as `mask[::2]`. Up-sampling therefore puts coarse sample
//! `i` back on frame `2i` and interpolates frame `2i+1` halfway to sample `i+1` (from sample `i`
//! alone when `i+1` is padding), so an edge keeps its position through all six levels
//! ([`upsample2`]). Revision-1 checkpoints were trained with half-pixel interpolation
//! ([`upsample2_half_pixel`]), which reads coarse position `j/2 − 0.25` and so lands each level
//! half a sample late (about 31 frames over six levels); they keep it.

use std::cell::{Ref, RefCell};

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::action_block::{self, ActionBlock};
use super::asformer::AsformerLayer;
use super::attention::{MaskedBatchNorm, channel_dropout};
use super::boundary_block::{self, BoundaryBlock};
use super::config::{ModelConfig, Temporal};
use super::conv;
use super::mask::FrameMask;
use super::profile::block;
use super::query::{self, QueryDecoder, StageLogits};
use super::records_grad;

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

    /// `folded`: the two convolutions with their inference BatchNorms folded in
    /// ([`Self::folded`]), or `None` (training, or gradients recorded).
    fn forward_t(
        &self,
        x: &Tensor,
        mask: &FrameMask,
        train: bool,
        folded: Option<&[FoldedConv; 2]>,
    ) -> Tensor {
        // conv → BN → ReLU; the folded form owns its output, so its ReLU runs in place.
        let layer = |i: usize, conv: &nn::Conv1D, norm: &MaskedBatchNorm, y: &Tensor| match folded {
            Some(f) => f[i].forward(y).relu_(),
            None => norm.forward_t(&conv.forward(y), Some(mask.tensor()), train).relu(),
        };
        let h = mask.apply(layer(0, &self.conv1, &self.bn1, x));
        mask.apply(layer(1, &self.conv2, &self.bn2, &h))
    }

    /// Both convolutions with the inference BatchNorm after each folded into its weight and bias:
    /// `bn(conv(x)) = conv'(x)`, so a block is two convolutions, two ReLUs and its masking.
    fn folded(&self) -> [FoldedConv; 2] {
        [FoldedConv::new(&self.conv1, &self.bn1), FoldedConv::new(&self.conv2, &self.bn2)]
    }
}

/// A "same" `Conv1d` (odd kernel, stride 1) with the inference BatchNorm that follows it folded
/// in: `W' = W · scale` (per output channel), `b' = b · scale + shift`.
#[derive(Debug)]
struct FoldedConv {
    ws: Tensor, // (O, C, K)
    bs: Tensor, // (O)
    padding: i64,
}

impl FoldedConv {
    fn new(conv: &nn::Conv1D, bn: &MaskedBatchNorm) -> Self {
        let (scale, shift) = bn.inference_affine();
        let ws = &conv.ws * scale.view([-1, 1, 1]);
        let bs = match &conv.bs {
            Some(b) => shift.addcmul(b, &scale),
            None => shift,
        };
        let padding = (conv.ws.size()[2] - 1) / 2;
        Self { ws, bs, padding }
    }

    /// `x (N, C, T)` → `(N, O, T)`.
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv1d(&self.ws, Some(&self.bs), [1], [self.padding], [1], 1)
    }
}

/// ×2 linear up-sampling on the encoder's grid (module docs): `x (N, C, L)` masked by
/// `mask (N, 1, L)` → `(N, C, 2L)`. Frame `2i` is sample `i`; frame `2i+1` is the mean of the
/// valid samples among `i` and `i+1`.
pub(crate) fn upsample2(x: &Tensor, mask: &Tensor) -> Tensor {
    let (n, c, l) = x.size3().unwrap_or((1, 1, 1));
    let next = x.narrow(2, 1, l - 1).pad([0, 1], "constant", None);
    let next_mask = mask.narrow(2, 1, l - 1).pad([0, 1], "constant", None);
    let odd = (x + next) / (mask + next_mask).clamp_min(1.0);
    Tensor::stack(&[x.shallow_clone(), odd], 3).view([n, c, 2 * l])
}

/// Revision 1's ×2 linear up-sampling: half-pixel grid, zero beyond the last frame.
fn upsample2_half_pixel(x: &Tensor) -> Tensor {
    let l = x.size()[2];
    x.pad([0, 1], "constant", None).upsample_linear1d([2 * (l + 1)], false, None).narrow(
        2,
        0,
        2 * l,
    )
}

/// Inference-only weights derived from MFAI's parameters (as DSMI's `Folded`): each costs a
/// few operations per call, and a window makes about thirty such calls.
#[derive(Debug)]
struct Folded {
    /// Per encoder level: the sliding attention's q/k/v as one `(3c, D)` weight, `(3c, 1)` bias.
    encoder_qkv: Vec<(Tensor, Tensor)>,
    /// Per decoder block: its two convolutions with their BatchNorms folded in.
    decoder: Vec<[FoldedConv; 2]>,
    /// Per action-block layer: linear attention's q/k/v as one `(3D, D)` weight, `(3D, 1)` bias.
    action_qkv: Vec<(Tensor, Tensor)>,
    /// The first QBlock's self-attention over the learned queries and its cross-attention's
    /// query projection: constants of the weights, each `(1, A+1, D)`.
    first_query_stage: Option<(Tensor, Tensor)>,
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
    revision: u32,
    /// Built by the first inference call, dropped by any training call and by
    /// [`Mfai::weights_changed`].
    folded: RefCell<Option<Folded>>,
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
            revision: cfg.revision,
            folded: RefCell::new(None),
        }
    }

    /// Drops the inference weights derived from the parameters; the next inference call
    /// derives them again. Training calls do this themselves.
    pub(crate) fn weights_changed(&self) {
        self.folded.replace(None);
    }

    /// The derived inference weights for inputs of `kind`, built when missing or of another kind;
    /// `None` when they must not be used: training, or gradients being recorded (a caller
    /// differentiating through inference-mode MFAI gets the parameters' gradients).
    fn folded(&self, kind: Kind, train: bool) -> Option<Ref<'_, Folded>> {
        if train {
            self.weights_changed();
            return None;
        }
        if records_grad(&self.input.ws) {
            return None;
        }
        let stale = self.folded.borrow().as_ref().is_none_or(|f| {
            f.action_qkv.first().or(f.encoder_qkv.first()).is_some_and(|(w, _)| w.kind() != kind)
        });
        if stale {
            let folded = tch::no_grad(|| Folded {
                encoder_qkv: self.encoder.iter().map(|e| e.layer.fused_qkv()).collect(),
                decoder: self.decoder.iter().map(ConvBlock::folded).collect(),
                action_qkv: self.action.fused_qkv(),
                first_query_stage: self.queries.first_query_stage(),
            });
            self.folded.replace(Some(folded));
        }
        Ref::filter_map(self.folded.borrow(), Option::as_ref).ok()
    }

    /// `x (N, D, T)`, `mask (N, 1, T)` → one prediction per QBlock, final last.
    pub(crate) fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Vec<StageLogits> {
        self.forward_impl(x, mask, train, None)
    }

    /// Inference: only the final prediction, for frames `from..T` ([`QueryDecoder::forward`]).
    /// `None` for a model without QBlocks.
    pub(crate) fn forward_final(
        &self,
        x: &Tensor,
        mask: &Tensor,
        from: i64,
    ) -> Option<StageLogits> {
        self.forward_impl(x, mask, false, Some(from)).pop()
    }

    fn forward_impl(
        &self,
        x: &Tensor,
        mask: &Tensor,
        train: bool,
        final_from: Option<i64>,
    ) -> Vec<StageLogits> {
        let x = channel_dropout(x, self.channel_dropout, train);
        let folded = self.folded(x.kind(), train);
        let folded = folded.as_deref();
        let mask = &FrameMask::new(mask.shallow_clone(), !train);
        // Encoder: E_0 at T, E_l at T/2^l.
        let mut masks = vec![mask.shallow_clone()];
        let mut skips =
            vec![block("mfai.input", None, || mask.apply(conv::pointwise(&self.input, &x, train)))];
        for (l, layer) in self.encoder.iter().enumerate() {
            let (prev, prev_mask) = (skips.last(), masks.last());
            let (Some(prev), Some(prev_mask)) = (prev, prev_mask) else { break };
            let (e, m) = block("mfai.encoder", Some(l), || {
                let m = prev_mask.down2(); // nearest down-sampling
                let e = m.apply(conv::depthwise_down(&layer.down, prev, train));
                let qkv = folded.map(|f| &f.encoder_qkv[l]);
                (layer.layer.forward_t(&e, &m, train, qkv), m)
            });
            masks.push(m);
            skips.push(e);
        }
        // Decoder: U_j at T/2^(L-j); skips[L-j] is its skip connection.
        let levels = self.encoder.len();
        let mut u = skips[levels].shallow_clone();
        let mut outputs = Vec::with_capacity(levels);
        for (j, conv_block) in self.decoder.iter().enumerate() {
            let at = levels - 1 - j;
            u = block("mfai.decoder", Some(j), || {
                let up = masks[at].apply(if self.revision >= 2 {
                    upsample2(&u, masks[at + 1].tensor())
                } else {
                    upsample2_half_pixel(&u)
                });
                let convs = folded.map(|f| &f.decoder[j]);
                conv_block.forward_t(&Tensor::cat(&[&skips[at], &up], 1), &masks[at], train, convs)
            });
            outputs.push((u.shallow_clone(), masks[at].shallow_clone()));
        }
        let finest = &u;
        // The frames the heads run on: all, or (final prediction) `from..T`, which is all the
        // action and boundary blocks need to give.
        let from = final_from.unwrap_or(0);
        let f_a = block("mfai.action_block", None, || {
            let qkv = folded.map(|f| f.action_qkv.as_slice());
            self.action.forward_t(finest, mask, train, qkv, from)
        });
        let f_b = block("mfai.boundary_block", None, || match final_from {
            Some(from) => self.boundary.forward_from(finest, mask, from),
            None => self.boundary.forward_t(finest, mask, train),
        });
        let head_mask = &mask.narrow(from, f_a.size()[2]);
        let h = self.query_scales;
        let levels_used: Vec<(&Tensor, &FrameMask)> = match self.temporal {
            Temporal::Mfai => {
                let used = query_levels(self.revision, outputs.len(), h);
                outputs[used].iter().map(|(f, m)| (f, m)).collect()
            }
            Temporal::Fixed => (0..h).map(|_| (finest, mask)).collect(),
        };
        let first_stage = folded.and_then(|f| f.first_query_stage.as_ref());
        let final_only = final_from.is_some();
        self.queries.forward(&levels_used, &f_a, &f_b, head_mask, final_only, first_stage)
    }
}

/// Decoder outputs (index into the `decoder_layers` outputs, coarse to fine; the last is at T)
/// that feed the `h` QBlocks: revision 2 takes `T/2^h … T/2` (the paper's `X̂_u` at
/// `T/2^(H−u)`, u = 0..H−1), revision 1 took `T/2^(h−1) … T`.
fn query_levels(revision: u32, outputs: usize, h: usize) -> std::ops::Range<usize> {
    let end = if revision >= 2 { outputs - 1 } else { outputs };
    end - h..end
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
        // keys each query sees: the first 2·bl − 1 of its window of bl + 2·(bl/2)
        let win = 2 * bl - 1;
        let down = len * d * 3;
        // Attention runs over whole blocks of `bl` queries: the last block's padded tail costs
        // as much as valid frames (the deepest levels hold fewer frames than one block).
        let blocks = len.div_ceil(bl) * bl;
        // conv k3, q/k/v (D → D/2), scores + values over the window, out (D/2 → D), 1×1
        let asformer =
            len * (3 * d * d + 3 * d * d / 2 + d * d / 2 + d * d) + blocks * 2 * win * d / 2;
        total += down + asformer;
    }
    for j in 0..cfg.decoder_layers as u32 {
        let len = t >> (cfg.decoder_layers as u32 - 1 - j);
        total += len * (5 * 2 * d * d + 5 * d * d);
    }
    total += t * (action_block::flops_per_frame(cfg) + boundary_block::flops_per_frame(cfg));
    let h = cfg.query_scales as u32;
    let skip = u32::from(cfg.revision >= 2);
    let lens: Vec<u64> = match cfg.temporal {
        Temporal::Mfai => (0..h).map(|i| t >> (h - 1 - i + skip)).collect(),
        Temporal::Fixed => (0..h).map(|_| t).collect(),
    };
    total + query::flops(cfg, t, &lens)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Tensor};

    use super::*;

    /// A soft step: 0 before `a`, 1 after `b`, linear between; `(1, 1, t)`.
    fn soft_step(t: i64, a: f64, b: f64) -> Tensor {
        let v: Vec<f32> =
            (0..t).map(|i| ((i as f64 - a) / (b - a)).clamp(0.0, 1.0) as f32).collect();
        Tensor::from_slice(&v).view([1, 1, t])
    }

    /// Position where the signal first reaches 0.5, with linear interpolation between frames.
    fn half_crossing(x: &Tensor) -> f64 {
        let v: Vec<f32> = Vec::<f32>::try_from(x.flatten(0, -1)).expect("values");
        let i = v.iter().position(|&y| y >= 0.5).expect("crossing");
        let (y0, y1) = (f64::from(v[i - 1]), f64::from(v[i]));
        (i - 1) as f64 + (0.5 - y0) / (y1 - y0)
    }

    /// Six stride-2 levels down through the encoder's depthwise convolution (centre tap only,
    /// so it shows the convolution's grid), then six ×2 levels up.
    fn down_up(x: &Tensor, up: impl Fn(&Tensor, &Tensor) -> Tensor) -> Tensor {
        let vs = nn::VarStore::new(Device::Cpu);
        let dw =
            nn::ConvConfig { stride: 2, padding: 1, groups: 1, bias: false, ..Default::default() };
        let mut down = nn::conv1d(vs.root() / "down", 1, 1, 3, dw);
        down.ws = Tensor::from_slice(&[0.0f32, 1.0, 0.0]).view([1, 1, 3]);
        let mut masks = vec![Tensor::ones_like(x)];
        let mut levels = vec![x.shallow_clone()];
        for _ in 0..6 {
            let m = masks.last().expect("mask").slice(2, 0, None, 2);
            levels.push(down.forward(levels.last().expect("level")) * &m);
            masks.push(m);
        }
        let mut u = levels.pop().expect("coarsest");
        for at in (0..6).rev() {
            u = up(&u, &masks[at + 1]) * &masks[at];
        }
        u
    }

    #[test]
    fn a_step_edge_keeps_its_position_through_six_levels() {
        // Knots on the coarsest grid (multiples of 64), so the edge is exactly representable
        // there: a grid-aligned up-sampling must give it back where it was.
        let x = soft_step(512, 192.0, 320.0);
        let want = half_crossing(&x);
        assert!((want - 256.0).abs() < 1e-6);
        let aligned = half_crossing(&down_up(&x, upsample2));
        assert!((aligned - want).abs() <= 1.0, "edge moved from {want} to {aligned}");
        // Revision 1's half-pixel grid: half a sample late per level, 31.5 frames in all.
        let legacy = half_crossing(&down_up(&x, |u, _| upsample2_half_pixel(u)));
        assert!((legacy - want - 31.5).abs() <= 1.0, "half-pixel edge at {legacy}");
    }

    #[test]
    fn upsampling_interpolates_from_valid_samples_only() {
        let x = Tensor::from_slice(&[2.0f32, 4.0, 0.0]).view([1, 1, 3]);
        let m = Tensor::from_slice(&[1.0f32, 1.0, 0.0]).view([1, 1, 3]);
        let up = Vec::<f32>::try_from(upsample2(&x, &m).flatten(0, -1)).expect("values");
        assert_eq!(up, vec![2.0, 3.0, 4.0, 4.0, 0.0, 0.0]);
    }

    #[test]
    fn revision_2_feeds_the_queries_at_t_over_8_4_2() {
        // Six decoder outputs at T/32, T/16, T/8, T/4, T/2, T.
        let lens: Vec<u64> = (0..6).map(|j| 256u64 >> (5 - j)).collect();
        let used = |rev| lens[query_levels(rev, 6, 3)].to_vec();
        assert_eq!(used(2), vec![32, 64, 128]);
        assert_eq!(used(1), vec![64, 128, 256]);
    }

    /// Multiply-adds of one MFAI window counted independently of [`flops_per_window`]: every
    /// convolution and linear weight of a freshly built model (from its `VarStore`, so a layer the
    /// formula forgot or miscounted shows) times the positions it is applied to, plus the
    /// products without weights, written from what `forward_t` executes (sliding attention over
    /// whole blocks, including the padded tail of the last block; linear attention's `KV` and
    /// read-out; the query decoder's attention and logits). Convention, as the formula's:
    /// matrix products only (no norms, softmax, biases or element-wise work).
    fn independent_macs(cfg: &ModelConfig, vs: &nn::VarStore, t: u64) -> u64 {
        let (d, a) = (cfg.hidden as u64, cfg.num_classes as u64);
        let q = a + 1;
        let h = cfg.query_scales as usize;
        let levels = cfg.encoder_layers as usize;
        // Encoder level l (0-based) runs at t/2^(l+1); decoder block j writes level L-1-j.
        let enc_len = |l: usize| t >> (l + 1);
        let dec_len = |j: usize| t >> (levels - 1 - j);
        let level_len = |i: usize| match cfg.temporal {
            Temporal::Mfai => dec_len(query_levels(cfg.revision, levels, h).start + i),
            Temporal::Fixed => t,
        };
        let mut total = 0;
        for (name, w) in vs.variables() {
            if w.dim() < 2 {
                continue; // biases, norms, PReLU
            }
            let numel = w.numel() as u64; // per position: out × in/groups × kernel
            let parts: Vec<&str> = name.split('.').collect();
            let index = |s: &str| s.parse::<usize>().expect("layer index");
            let positions = match parts.as_slice() {
                ["input", ..] | ["action_block", ..] | ["boundary_block", ..] => t,
                ["encoder", l, ..] => enc_len(index(l)),
                ["decoder", j, ..] => dec_len(index(j)),
                ["queries", "qblocks", i, "cross_attn", "k" | "v", _] => level_len(index(i)),
                ["queries", "qblocks", ..] => q,
                // FBlocks: frames are the queries, the action (A) or all (A+1) queries the keys;
                // revision 1 runs its one FBlock at every stage.
                ["queries", "fblock" | "fblocks", rest @ ..] => {
                    let stages = if parts[1] == "fblock" { h as u64 } else { 1 };
                    let keys = if rest.contains(&"attn_a") { a } else { q };
                    let on_keys = rest.contains(&"k") || rest.contains(&"v");
                    stages * if on_keys { keys } else { t }
                }
                ["queries", "query" | "query_pe"] => 0, // learned queries: no products
                ["queries", "embed_action", ..] => h as u64 * a,
                ["queries", "embed_boundary", ..] => h as u64,
                _ => panic!("weight {name} not accounted for"),
            };
            total += numel * positions;
        }
        for l in 0..levels {
            // Blocks of 2^l queries, each against the 2·2^l − 1 keys of its window that the
            // released mask leaves visible, c = D/2.
            let bl = 1u64 << l;
            let (blocks, win) = (enc_len(l).div_ceil(bl), 2 * bl - 1);
            total += 2 * blocks * bl * win * (d / 2);
        }
        let dh = d / cfg.heads as u64;
        total += cfg.action_layers as u64 * 2 * t * d * dh; // φ(K)ᵀV and φ(Q)·KV per head
        for i in 0..h {
            total += 2 * q * q * d + 2 * q * level_len(i) * d; // QBlock self and cross attention
            total += 2 * t * a * d + 2 * t * q * d; // FBlock: frames attend A and A+1 queries
            total += a * d * t + d * t; // action and boundary logits
        }
        total
    }

    #[test]
    fn flop_count_matches_an_independent_count_from_the_weights() {
        for (temporal, revision) in [(Temporal::Mfai, 2), (Temporal::Mfai, 1), (Temporal::Fixed, 2)]
        {
            let cfg = ModelConfig { temporal, revision, ..ModelConfig::tiny(5) };
            let vs = nn::VarStore::new(Device::Cpu);
            let _mfai = Mfai::new(&vs.root(), &cfg);
            // 100 frames pad to 128: the deepest levels hold fewer frames than a block.
            for (w, t) in [(100, 128), (256, 256)] {
                let formula = flops_per_window(&cfg, w);
                let counted = independent_macs(&cfg, &vs, t);
                assert_eq!(formula, counted, "{temporal:?} revision {revision}, {w} frames");
            }
        }
    }
}
