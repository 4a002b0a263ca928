//! Action and boundary queries: learnable `Q = [Q_a; Q_b]`
//! with a learnable query PE, H QBlocks (pre-LN self-attention over the A+1 queries,
//! cross-attention to the frames with a key padding mask and a sinusoidal key PE, FFN), the
//! FBlock (frames attend to the queries, FACT-style frame-action interaction, as a residual MHA)
//! and the dot-product heads `P_a = ⟨MLP_a(Q_a), F_a⟩/√D`, `P_b = ⟨MLP_b(Q_b), F_b⟩/√D`.
//!
//! Additions to the reference, for scale: channel LayerNorms on `F_a`, `F_b`, a final LayerNorm
//! on the queries (pre-LN decoder), and the `1/√D` on the heads (see the fields).

use std::cell::RefCell;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::attention::{MultiHeadAttention, sincos_pe};
use super::config::ModelConfig;
use super::mask::FrameMask;
use super::profile::block;

/// One ASQuery decoder block. Queries `(N, A+1, D)`, frames `(N, D, T)`.
#[derive(Debug)]
struct QBlock {
    ln_self: nn::LayerNorm,
    self_attn: MultiHeadAttention,
    ln_cross: nn::LayerNorm,
    cross_attn: MultiHeadAttention,
    ln_ffn: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl QBlock {
    fn new(p: &nn::Path, d: i64, heads: i64) -> Self {
        let ln = |name: &str| nn::layer_norm(p / name, vec![d], Default::default());
        Self {
            ln_self: ln("ln_self"),
            self_attn: MultiHeadAttention::new(&(p / "self_attn"), d, heads),
            ln_cross: ln("ln_cross"),
            cross_attn: MultiHeadAttention::new(&(p / "cross_attn"), d, heads),
            ln_ffn: ln("ln_ffn"),
            fc1: nn::linear(p / "fc1", d, 4 * d, Default::default()),
            fc2: nn::linear(p / "fc2", 4 * d, d, Default::default()),
        }
    }

    /// The part of the block before it meets the frames: self-attention over the queries, then
    /// the cross-attention's query projection. `q (N, A+1, D)`, `pe (1, A+1, D)` → the queries
    /// after self-attention and their projection, each `(N, A+1, D)`.
    fn query_stage(&self, q: &Tensor, pe: &Tensor) -> (Tensor, Tensor) {
        let qn = self.ln_self.forward(q);
        let qk = &qn + pe;
        let q = q + self.self_attn.forward(&qk, &qk, &qn, None);
        let q_cross = self.cross_attn.project_queries(&(self.ln_cross.forward(&q) + pe));
        (q, q_cross)
    }

    /// `q (N, A+1, D)`, `pe (1, A+1, D)`, `frames (N, D, T)`, `key_pe (1, T, D)`,
    /// `mask (N, 1, T)`. `start`: [`Self::query_stage`] of `q`, when the caller keeps it.
    fn forward(
        &self,
        q: &Tensor,
        pe: &Tensor,
        frames: &Tensor,
        key_pe: &Tensor,
        mask: &FrameMask,
        start: Option<&(Tensor, Tensor)>,
    ) -> Tensor {
        let n = frames.size()[0];
        let (q, q_cross) = match start {
            Some((q, q_cross)) => {
                (q.expand([n, -1, -1], false), q_cross.expand([n, -1, -1], false))
            }
            None => self.query_stage(q, pe),
        };
        let f = frames.transpose(1, 2); // (N, T, D)
        let fk = &f + key_pe;
        // (N, T); none when every frame is valid (its bias would add zeros)
        let key_mask = (!mask.all_valid()).then(|| mask.tensor().squeeze_dim(1));
        let q = &q + self.cross_attn.forward_projected(&q_cross, &fk, &f, key_mask.as_ref());
        &q + self.fc2.forward(&self.fc1.forward(&self.ln_ffn.forward(&q)).relu())
    }
}

/// ASQuery's prediction MLP `D → D/4 → D → D` (ReLU between).
#[derive(Debug)]
struct Embed {
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
}

impl Embed {
    fn new(p: &nn::Path, d: i64) -> Self {
        Self {
            fc1: nn::linear(p / "fc1", d, d / 4, Default::default()),
            fc2: nn::linear(p / "fc2", d / 4, d, Default::default()),
            fc3: nn::linear(p / "fc3", d, d, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc3.forward(&self.fc2.forward(&self.fc1.forward(x).relu()).relu())
    }
}

/// FBlock: frames attend to the queries (residual pre-LN MHA). Action frames see the A action
/// queries; boundary frames see all A+1 (a single key would make the softmax trivial).
#[derive(Debug)]
struct FBlock {
    ln_a: nn::LayerNorm,
    attn_a: MultiHeadAttention,
    ln_b: nn::LayerNorm,
    attn_b: MultiHeadAttention,
}

impl FBlock {
    fn new(p: &nn::Path, d: i64, heads: i64) -> Self {
        Self {
            ln_a: nn::layer_norm(p / "ln_a", vec![d], Default::default()),
            attn_a: MultiHeadAttention::new(&(p / "attn_a"), d, heads),
            ln_b: nn::layer_norm(p / "ln_b", vec![d], Default::default()),
            attn_b: MultiHeadAttention::new(&(p / "attn_b"), d, heads),
        }
    }

    /// `f (N, D, T)`, `keys (N, S, D)` → `(N, D, T)` masked.
    fn attend(
        ln: &nn::LayerNorm,
        attn: &MultiHeadAttention,
        f: &Tensor,
        keys: &Tensor,
        mask: &FrameMask,
    ) -> Tensor {
        let ft = f.transpose(1, 2); // (N, T, D)
        let out = &ft + attn.forward(&ln.forward(&ft), keys, keys, None);
        mask.apply(out.transpose(1, 2))
    }
}

/// Per-stage logits: `(N, A, T)` and `(N, T)`.
pub(crate) struct StageLogits {
    pub(crate) action: Tensor,
    pub(crate) boundary: Tensor,
}

/// Queries, H QBlocks, FBlock and heads.
#[derive(Debug)]
pub(crate) struct QueryDecoder {
    query: Tensor,
    query_pe: Tensor,
    blocks: Vec<QBlock>,
    /// Channel LayerNorms on `F_a`, `F_b` (ASQuery's heads read LayerNorm-ed FPN features; the
    /// action/boundary blocks' residual stacks are unnormalised and reach magnitudes of 10³).
    norm_a: nn::LayerNorm,
    norm_b: nn::LayerNorm,
    /// Final LayerNorm of the pre-LN query decoder before the FBlock and the heads.
    norm_q: nn::LayerNorm,
    /// One FBlock per stage, chained (revision 2); revision 1 had one shared FBlock that
    /// attended from the stage-0 features at every stage.
    fblocks: Vec<FBlock>,
    chained: bool,
    embed_a: Embed,
    embed_b: Embed,
    num_classes: i64,
    /// `1/√D` on the dot products (ASQuery uses the plain dot product; scaled, the logits of an
    /// untrained model are O(1) instead of O(10), which keeps the first focal-loss steps sane).
    logit_scale: f64,
    /// The QBlocks' sinusoidal key PEs `(1, T, D)` by frame count and kind: constants, made
    /// once instead of a dozen operations per QBlock and window.
    key_pes: RefCell<Vec<(i64, Kind, Device, Tensor)>>,
}

impl QueryDecoder {
    pub(crate) fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let (d, a) = (cfg.hidden, cfg.num_classes);
        Self {
            query: p.var("query", &[a + 1, d], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            query_pe: p.var("query_pe", &[a + 1, d], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            blocks: (0..cfg.query_scales)
                .map(|i| QBlock::new(&(p / "qblocks" / i), d, cfg.heads))
                .collect(),
            norm_a: nn::layer_norm(p / "norm_action", vec![d], Default::default()),
            norm_b: nn::layer_norm(p / "norm_boundary", vec![d], Default::default()),
            norm_q: nn::layer_norm(p / "norm_query", vec![d], Default::default()),
            fblocks: if cfg.revision >= 2 {
                (0..cfg.query_scales)
                    .map(|i| FBlock::new(&(p / "fblocks" / i), d, cfg.heads))
                    .collect()
            } else {
                vec![FBlock::new(&(p / "fblock"), d, cfg.heads)]
            },
            chained: cfg.revision >= 2,
            embed_a: Embed::new(&(p / "embed_action"), d),
            embed_b: Embed::new(&(p / "embed_boundary"), d),
            num_classes: a,
            logit_scale: 1.0 / (d as f64).sqrt(),
            key_pes: RefCell::new(Vec::new()),
        }
    }

    /// The key PE for `frames (N, D, T)`: `(1, T, D)` in their kind and on their device.
    fn key_pe(&self, frames: &Tensor) -> Tensor {
        let (d, t) = (frames.size()[1], frames.size()[2]);
        let key = (t, frames.kind(), frames.device());
        let mut cache = self.key_pes.borrow_mut();
        if let Some((.., pe)) = cache.iter().find(|(len, k, dev, _)| (*len, *k, *dev) == key) {
            return pe.shallow_clone();
        }
        let pe = sincos_pe(t, d, key.2).unsqueeze(0).to_kind(key.1);
        cache.push((t, key.1, key.2, pe.shallow_clone()));
        pe
    }

    /// The first QBlock's [`QBlock::query_stage`]: its input is the learned queries, so the
    /// stage is a constant of the weights (`(1, A+1, D)` each), which inference keeps.
    pub(crate) fn first_query_stage(&self) -> Option<(Tensor, Tensor)> {
        let first = self.blocks.first()?;
        Some(first.query_stage(&self.query.unsqueeze(0), &self.query_pe.unsqueeze(0)))
    }

    /// `levels`: one `(frames (N, D, T_h), mask (N, 1, T_h))` per QBlock, coarse to fine;
    /// `f_a`, `f_b (N, D, S)` and `mask (N, 1, S)`: the finest level's frames the heads run on,
    /// all `T` of them or (inference) the last `S`. The FBlock chain and the heads work frame by
    /// frame (frames attend to the queries, not to each other), so the other frames can be
    /// left out. One prediction per QBlock; with `final_only`, the final one alone (the earlier
    /// stages' heads left out).
    pub(crate) fn forward(
        &self,
        levels: &[(&Tensor, &FrameMask)],
        f_a: &Tensor,
        f_b: &Tensor,
        mask: &FrameMask,
        final_only: bool,
        first_stage: Option<&(Tensor, Tensor)>,
    ) -> Vec<StageLogits> {
        let n = f_a.size()[0];
        let a = self.num_classes;
        let mut q = self.query.unsqueeze(0).expand([n, -1, -1], false); // (N, A+1, D)
        let pe = self.query_pe.unsqueeze(0);
        // (N, D, T) -> LayerNorm over D per frame -> (N, D, T)
        let channel_norm = |ln: &nn::LayerNorm, f: &Tensor| {
            mask.apply(ln.forward(&f.transpose(1, 2)).transpose(1, 2))
        };
        // F^0: the normalised action / boundary block outputs.
        let (mut f_a, mut f_b) = (channel_norm(&self.norm_a, f_a), channel_norm(&self.norm_b, f_b));
        let mut stages = Vec::with_capacity(self.blocks.len());
        for (r, (qblock, (frames, level_mask))) in self.blocks.iter().zip(levels).enumerate() {
            let key_pe = self.key_pe(frames);
            q = block("mfai.qblock", Some(r), || {
                let start = if r == 0 { first_stage } else { None };
                qblock.forward(&q, &pe, frames, &key_pe, level_mask, start)
            });
            let _fblock = super::profile::Span::new("mfai.fblock_heads", Some(r));
            let qn = self.norm_q.forward(&q);
            let q_a = qn.narrow(1, 0, a); // (N, A, D)
            let q_b = qn.narrow(1, a, 1); // (N, 1, D)
            // Final prediction only: an earlier stage matters only through the chained F^r.
            let skip_heads = final_only && r + 1 < self.blocks.len();
            if skip_heads && !self.chained {
                continue;
            }
            let fblock = &self.fblocks[r.min(self.fblocks.len() - 1)];
            let fa = FBlock::attend(&fblock.ln_a, &fblock.attn_a, &f_a, &q_a, mask);
            let fb = FBlock::attend(&fblock.ln_b, &fblock.attn_b, &f_b, &qn, mask);
            if skip_heads {
                (f_a, f_b) = (fa, fb);
                continue;
            }
            let action = self.embed_a.forward(&q_a).matmul(&fa) * self.logit_scale; // (N, A, T)
            let boundary =
                (self.embed_b.forward(&q_b).matmul(&fb) * self.logit_scale).squeeze_dim(1); // (N, T)
            stages.push(StageLogits { action, boundary });
            if self.chained {
                (f_a, f_b) = (fa, fb); // F^r = CAttn(F^(r−1), Q^r)
            }
        }
        stages
    }
}

/// Multiply-adds of the query decoder for a window of `t` finest frames, `level_lens` the frame
/// count each QBlock attends to.
pub(crate) fn flops(cfg: &ModelConfig, t: u64, level_lens: &[u64]) -> u64 {
    let (d, q) = (cfg.hidden as u64, cfg.num_classes as u64 + 1);
    let a = q - 1;
    let mut total = 0;
    for &len in level_lens {
        let self_attn = 4 * q * d * d + 2 * q * q * d;
        let cross = 2 * q * d * d + 2 * len * d * d + 2 * q * len * d;
        let ffn = 8 * q * d * d;
        // FBlock (action: A keys, boundary: A+1 keys: q/out on frames, k/v on keys) +
        // embeddings + dot products
        let fblock = 2 * 2 * t * d * d + 2 * (a + q) * d * d + 2 * t * (a + q) * d;
        let heads = q * (d * d / 4 * 2 + d * d) + (a + 1) * t * d;
        total += self_attn + cross + ffn + fblock + heads;
    }
    total
}
