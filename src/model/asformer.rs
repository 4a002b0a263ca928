//! One ASFormer encoder layer: dilated conv, masked instance norm,
//! sliding-window (block + halo) attention vectorised over blocks and batch, 1×1 conv, residual.
//!
//! The window behaviour is the released one: queries of block `b` (positions
//! `[b·bl, (b+1)·bl)`) see keys `[b·bl − bl/2, (b+1)·bl + bl/2 − 1)`. Deviation: instance norm over
//! valid frames only (the anchor includes padding), and padded keys get a -1e9 bias instead of
//! `log(1e-6)`.

use tch::nn;
use tch::{Kind, Tensor};

use super::attention::masked_instance_norm;
use super::conv;
use super::mask::FrameMask;

/// ASFormer `AttLayer` in sliding-window mode with `r1 = r2 = r3 = 2`. `(N, C, L)` → `(N, C, L)`.
#[derive(Debug)]
struct SlidingAttention {
    q: nn::Conv1D,
    k: nn::Conv1D,
    v: nn::Conv1D,
    out: nn::Conv1D,
    block: i64,
}

impl SlidingAttention {
    fn new(p: &nn::Path, dim: i64, block: i64) -> Self {
        let conv = |name: &str, i, o| nn::conv1d(p / name, i, o, 1, Default::default());
        Self {
            q: conv("query_conv", dim, dim / 2),
            k: conv("key_conv", dim, dim / 2),
            v: conv("value_conv", dim, dim / 2),
            out: conv("conv_out", dim / 2, dim),
            block,
        }
    }

    /// The q/k/v 1×1 convolutions as one: weight `(3c, C)`, bias `(3c, 1)` (derived weights,
    /// kept by the caller while the parameters stay as they are).
    fn fused_qkv(&self) -> (Tensor, Tensor) {
        let weight = |conv: &nn::Conv1D| conv.ws.squeeze_dim(2);
        let bias = |conv: &nn::Conv1D| match &conv.bs {
            Some(b) => b.shallow_clone(),
            None => conv.ws.zeros_like().select(2, 0).select(1, 0),
        };
        (
            Tensor::cat(&[weight(&self.q), weight(&self.k), weight(&self.v)], 0),
            Tensor::cat(&[bias(&self.q), bias(&self.k), bias(&self.v)], 0).unsqueeze(1),
        )
    }

    /// `x (N, C, L)` (normalised), `mask (N, 1, L)`; `qkv` ([`Self::fused_qkv`]) makes one
    /// sequence's three projections one product in inference.
    fn forward(
        &self,
        x: &Tensor,
        mask: &FrameMask,
        train: bool,
        qkv: Option<&(Tensor, Tensor)>,
    ) -> Tensor {
        let s = x.size();
        let (n, l) = (s[0], s[2]);
        let bl = self.block;
        let half = bl / 2;
        let nb = (l + bl - 1) / bl;
        let right = nb * bl - l;
        let proj = |conv| conv::pointwise(conv, x, train);
        if bl == 1 && !train {
            // Blocks of one query whose window is its own key: the softmax over one key is 1,
            // so the output is the value (zero on padding). Same numbers, no attention.
            return mask.apply(conv::pointwise(
                &self.out,
                &mask.apply(proj(&self.v)).relu(),
                train,
            ));
        }
        let (q, k, v) = match qkv {
            Some((w, b)) if n == 1 && !train => {
                let y = b.addmm(w, &x.view([s[1], l])); // (3c, L)
                let c = y.size()[0] / 3;
                let part = |i: i64| y.narrow(0, i * c, c).unsqueeze(0);
                (part(0), part(1), part(2))
            }
            _ => (proj(&self.q), proj(&self.k), proj(&self.v)), // (N, c, L)
        };
        let c = q.size()[1];
        if l <= bl && !train {
            // One block holds the whole level and its window (the first 2·bl − 1 of
            // bl + 2·(bl/2) keys from −bl/2) sees every frame: plain attention over the L
            // frames, without padding L up to the block (the two deepest levels of a window).
            let energy = q.transpose(1, 2).matmul(&k) / (c as f64).sqrt(); // (N, L, L)
            let att = if mask.all_valid() {
                energy.softmax(-1, Kind::Float)
            } else {
                let m = mask.tensor(); // padded keys: -1e9 before the softmax, 0 after
                (energy + (m - 1.0) * 1e9).softmax(-1, Kind::Float) * m
            };
            let o = v.matmul(&att.to_kind(v.kind()).transpose(1, 2)); // (N, c, L)
            return mask.apply(conv::pointwise(&self.out, &o.relu(), train));
        }
        // queries: (N, c, nb·bl) -> (N, c, nb, bl) -> (N, nb, bl, c)
        let q = q.pad([0, right], "constant", None).view([n, c, nb, bl]).permute([0, 2, 3, 1]);
        // Keys/values with halo: pad bl/2 left, right + bl/2 right; the anchor's windows hold
        // bl + 2·(bl/2) keys every bl, of which the released window mask lets every query row
        // see only the first 2·bl − 1 (bl = 1: column 0), so the windows are just those (still
        // nb of them: the unseen last key never starts a window of its own).
        let visible = 2 * bl - 1;
        let windows =
            |t: &Tensor| t.pad([half, right + half], "constant", None).unfold(2, visible, bl); // (N, c, nb, visible)
        let k = windows(&k).permute([0, 2, 1, 3]); // (N, nb, c, visible)
        let v = windows(&v).permute([0, 2, 3, 1]); // (N, nb, visible, c)
        let keep = windows(mask.tensor()).permute([0, 2, 1, 3]); // (N, nb, 1, visible)
        // The anchor adds log(keep + 1e-6), which still gives padded keys a 1e-6 share of the
        // softmax denominator (so results shift slightly with the padded length); a -1e9 bias
        // removes them exactly. Masked keys are then zeroed as in the anchor.
        let energy = q.matmul(&k) / (c as f64).sqrt() + (&keep - 1.0) * 1e9; // (N, nb, bl, visible)
        let att = energy.softmax(-1, Kind::Float) * &keep;
        let o = att.to_kind(v.kind()).matmul(&v); // (N, nb, bl, c)
        // (N, nb, bl, c) -> (N, c, nb·bl) -> crop to L
        let o = o.permute([0, 3, 1, 2]).reshape([n, c, nb * bl]).narrow(2, 0, l);
        mask.apply(conv::pointwise(&self.out, &o.relu(), train))
    }
}

/// ASFormer `AttModule` (encoder mode, alpha 1) with dilation = window = `2^(level)`.
/// `(N, C, L)` → `(N, C, L)`, masked.
#[derive(Debug)]
pub(crate) struct AsformerLayer {
    ff: nn::Conv1D,
    att: SlidingAttention,
    conv_1x1: nn::Conv1D,
    dilation: i64,
    dropout: f64,
}

impl AsformerLayer {
    pub(crate) fn new(p: &nn::Path, dim: i64, dilation: i64, dropout: f64) -> Self {
        let ff_cfg = nn::ConvConfig { padding: dilation, dilation, ..Default::default() };
        Self {
            ff: nn::conv1d(p / "feed_forward", dim, dim, 3, ff_cfg),
            att: SlidingAttention::new(&(p / "att_layer"), dim, dilation),
            conv_1x1: nn::conv1d(p / "conv_1x1", dim, dim, 1, Default::default()),
            dilation,
            dropout,
        }
    }

    /// The attention's q/k/v projections as one product (see [`Self::forward_t`]).
    pub(crate) fn fused_qkv(&self) -> (Tensor, Tensor) {
        self.att.fused_qkv()
    }

    /// `x (N, C, L)`, `mask (N, 1, L)`; `qkv`: [`Self::fused_qkv`] for inference, or `None`.
    pub(crate) fn forward_t(
        &self,
        x: &Tensor,
        mask: &FrameMask,
        train: bool,
        qkv: Option<&(Tensor, Tensor)>,
    ) -> Tensor {
        let out = conv::same_conv(&self.ff, x, self.dilation, train).relu();
        let out = self.att.forward(&masked_instance_norm(&out, mask), mask, train, qkv) + out;
        let out = conv::pointwise(&self.conv_1x1, &out, train).dropout(self.dropout, train);
        mask.apply(x + out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;
    use tch::nn::Module;

    /// Reference loop over blocks (the released per-block computation, one block at a time).
    fn looped(att: &SlidingAttention, x: &Tensor, mask: &Tensor) -> Tensor {
        let (l, bl) = (x.size()[2], att.block);
        let half = bl / 2;
        let nb = (l + bl - 1) / bl;
        let pad = |t: &Tensor| t.pad([half, nb * bl - l + half], "constant", None);
        let (q, k, v) = (att.q.forward(x), att.k.forward(x), att.v.forward(x));
        let c = q.size()[1] as f64;
        let qp = q.pad([0, nb * bl - l], "constant", None);
        let (kp, vp, mp) = (pad(&k), pad(&v), pad(mask));
        let mut outs = Vec::new();
        for b in 0..nb {
            let qb = qp.narrow(2, b * bl, bl); // (1, c, bl)
            let kb = kp.narrow(2, b * bl, bl + 2 * half);
            let vb = vp.narrow(2, b * bl, bl + 2 * half);
            let mb = mp.narrow(2, b * bl, bl + 2 * half).copy();
            let visible = (2 * bl - 1).min(bl + 2 * half);
            if visible < bl + 2 * half {
                let _ = mb.narrow(2, visible, bl + 2 * half - visible).fill_(0.0);
            }
            let e = qb.transpose(1, 2).matmul(&kb) / c.sqrt() + (&mb - 1.0) * 1e9;
            let a = e.softmax(-1, Kind::Float) * &mb;
            outs.push(vb.matmul(&a.transpose(1, 2)));
        }
        let o = Tensor::cat(&outs, 2).narrow(2, 0, l);
        att.out.forward(&o.relu()) * mask
    }

    #[test]
    fn vectorised_sliding_attention_equals_the_per_block_loop() {
        tch::manual_seed(5);
        for (bl, l) in [(1, 7), (2, 9), (4, 16), (8, 13), (32, 5), (16, 8), (4, 4)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let att = SlidingAttention::new(&vs.root(), 8, bl);
            let x = Tensor::randn([1, 8, l], (Kind::Float, Device::Cpu));
            // Two padded frames, then none (the mask's products skipped).
            for valid in [l - 2, l] {
                let mask = Tensor::cat(
                    &[
                        Tensor::ones([1, 1, valid], (Kind::Float, Device::Cpu)),
                        Tensor::zeros([1, 1, l - valid], (Kind::Float, Device::Cpu)),
                    ],
                    2,
                );
                let want = looped(&att, &x, &mask);
                let mask = FrameMask::new(mask, true);
                assert_eq!(mask.all_valid(), valid == l);
                // Inference (block 1: the value shortcut; the fused q/k/v product) and training
                // forms alike.
                let qkv = att.fused_qkv();
                for (train, fused) in [(false, None), (false, Some(&qkv)), (true, None)] {
                    let got = att.forward(&x, &mask, train, fused);
                    let form = if fused.is_some() { "fused" } else { "separate" };
                    assert!(
                        got.allclose(&want, 1e-5, 1e-6, false),
                        "bl {bl} l {l} valid {valid} train {train} {form}"
                    );
                }
            }
        }
    }
}
