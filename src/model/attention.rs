//! Attention and normalisation building blocks shared by DSMI and MFAI: standard multi-head
//! attention with a key padding mask, DeST's linear attention
//!, a masked instance norm, channel dropout and the sinusoidal frame PE.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::mask::FrameMask;

/// Additive bias given to padded keys: finite so that a fully padded row stays a (harmless)
/// uniform average instead of NaN.
const MASKED_BIAS: f64 = -1e9;

/// Multi-head attention with separate q/k/v in-projections and an out-projection (PyTorch's
/// `nn.MultiheadAttention`, batch first, attention dropout 0). Tokens `(N, L, E)`.
#[derive(Debug)]
pub(crate) struct MultiHeadAttention {
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    out: nn::Linear,
    heads: i64,
}

impl MultiHeadAttention {
    pub(crate) fn new(p: &nn::Path, dim: i64, heads: i64) -> Self {
        let lin = |name: &str| nn::linear(p / name, dim, dim, Default::default());
        Self { q: lin("q"), k: lin("k"), v: lin("v"), out: lin("out"), heads }
    }

    /// The q/k/v projections as one: weight `(3E, E)`, bias `(3E)` (for [`Self::forward_self`]).
    pub(crate) fn fused_qkv(&self) -> (Tensor, Tensor) {
        let bias = |l: &nn::Linear| match &l.bs {
            Some(b) => b.shallow_clone(),
            None => l.ws.zeros_like().select(1, 0),
        };
        (
            Tensor::cat(&[&self.q.ws, &self.k.ws, &self.v.ws], 0),
            Tensor::cat(&[bias(&self.q), bias(&self.k), bias(&self.v)], 0),
        )
    }

    /// Self-attention without a mask, `x (N, L, E)` → `(N, L, E)`. With `qkv` (the caller's
    /// [`Self::fused_qkv`], kept for inference) one `E → 3E` projection replaces three; without
    /// it (training) the three projections run separately: measured on 2,048 frames × 25 joint
    /// tokens, the fused projection made forward + backward 1.2–1.9× slower, since attention
    /// on its strided q/k/v views is slow.
    pub(crate) fn forward_self(&self, x: &Tensor, qkv: Option<&(Tensor, Tensor)>) -> Tensor {
        let Some((w, b)) = qkv else { return self.forward(x, x, x, None) };
        let (n, l, e) = x.size3().unwrap_or((1, 1, 1));
        let dh = e / self.heads;
        // (N, L, 3E) -> (3, N, heads, L, dh)
        let qkv = x
            .linear(w, Some(b))
            .view([n, l, 3, self.heads, dh])
            .permute([2, 0, 3, 1, 4])
            .contiguous();
        let o = Tensor::scaled_dot_product_attention(
            &qkv.get(0),
            &qkv.get(1),
            &qkv.get(2),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.out.forward(&o.transpose(1, 2).reshape([n, l, e]))
    }

    /// `q (N, L, E)`, `k`/`v (N, S, E)`, `key_mask (N, S)` float 1 = valid → `(N, L, E)`.
    pub(crate) fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: Option<&Tensor>,
    ) -> Tensor {
        self.forward_projected(&self.project_queries(q), k, v, key_mask)
    }

    /// The query in-projection alone: `q (N, L, E)` → `(N, L, E)`.
    pub(crate) fn project_queries(&self, q: &Tensor) -> Tensor {
        self.q.forward(q)
    }

    /// [`Self::forward`] with the queries already projected ([`Self::project_queries`]).
    pub(crate) fn forward_projected(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: Option<&Tensor>,
    ) -> Tensor {
        let (qs, s) = (q.size(), k.size()[1]);
        let (n, l, e) = (qs[0], qs[1], qs[2]);
        let dh = e / self.heads;
        // (N, L, E) -> (N, heads, L, dh)
        let split = |x: &Tensor, len: i64| x.view([n, len, self.heads, dh]).transpose(1, 2);
        let q = split(q, l);
        let k = split(&self.k.forward(k), s);
        let v = split(&self.v.forward(v), s);
        // (N, 1, 1, S) additive bias on padded keys.
        let bias = key_mask
            .map(|m: &Tensor| ((1f64 - m) * MASKED_BIAS).view([n, 1, 1, s]).to_kind(q.kind()));
        let o = Tensor::scaled_dot_product_attention(&q, &k, &v, bias, 0.0, false, None, false);
        self.out.forward(&o.transpose(1, 2).contiguous().view([n, l, e]))
    }
}

/// DeST's linear attention: `φ = sigmoid`, per-head `KV = Σ_s φ(k_s) v_sᵀ`,
/// normaliser `1 / (φ(q_t)·Σ_s φ(k_s) + 1e-6)`. Tokens `(N, T, C)`.
///
/// Deviation: padded keys and values are zeroed before the sums (DeST leaks them).
#[derive(Debug)]
pub(crate) struct LinearAttention {
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    out: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl LinearAttention {
    pub(crate) fn new(p: &nn::Path, dim: i64, heads: i64, dropout: f64) -> Self {
        let lin = |name: &str| nn::linear(p / name, dim, dim, Default::default());
        Self { q: lin("q"), k: lin("k"), v: lin("v"), out: lin("out"), heads, dropout }
    }

    /// `q`, `kv (N, T, C)`, `mask (N, T, 1)` → `(N, T, C)` (masked).
    pub(crate) fn forward_t(&self, q: &Tensor, kv: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let qs = q.size();
        let (n, t, c) = (qs[0], qs[1], qs[2]);
        let dh = c / self.heads;
        // (N, T, C) -> (N, heads, T, dh)
        let split = |x: Tensor| x.view([n, t, self.heads, dh]).transpose(1, 2);
        let phi_q = split(self.q.forward(q).sigmoid());
        let phi_k = split(self.k.forward(kv).sigmoid() * mask);
        let v = split(self.v.forward(kv) * mask);
        let kv_sum = phi_k.transpose(2, 3).matmul(&v); // (N, h, dh, dh)
        let k_sum = phi_k.sum_dim_intlist(2, true, Kind::Float); // (N, h, 1, dh)
        let z = (&phi_q * k_sum).sum_dim_intlist(3, true, Kind::Float) + 1e-6; // (N, h, T, 1)
        // (N, h, T, dh); the normaliser's sums are float32 whatever the model's precision
        let o = (phi_q.matmul(&kv_sum) / z).to_kind(phi_q.kind());
        let o = o.transpose(1, 2).contiguous().view([n, t, c]);
        self.out.forward(&o).dropout(self.dropout, train) * mask
    }
}

impl LinearAttention {
    /// The q/k/v projections as one, for [`Self::forward_channels`]: weight `(3C, C)`, bias
    /// `(3C, 1)` (derived weights: the caller keeps them while the parameters stay as they are).
    pub(crate) fn fused_qkv(&self) -> (Tensor, Tensor) {
        let bias = |l: &nn::Linear| match &l.bs {
            Some(b) => b.shallow_clone(),
            None => l.ws.zeros_like().select(1, 0),
        };
        (
            Tensor::cat(&[&self.q.ws, &self.k.ws, &self.v.ws], 0),
            Tensor::cat(&[bias(&self.q), bias(&self.k), bias(&self.v)], 0).unsqueeze(1),
        )
    }

    /// Inference in the channel layout the temporal blocks use: `x (N, C, T)`, `mask (N, 1, T)`
    /// → the outputs of frames `from..T`, `(N, C, T − from)` (masked), equal to
    /// [`Self::forward_t`] on `x` transposed (self-attention, no dropout) on those frames.
    /// Heads split the channels as `(N, heads, dh, T)`, so every product runs on the layout as
    /// it comes and the four transposes of the token form (each a copy of the window)
    /// disappear. Every frame is a key; only frames `from..T` are queries, so the query
    /// projection, the read-out and the out-projection run on those alone. With `qkv`
    /// ([`Self::fused_qkv`]) and one sequence, the projections are products with the bias as
    /// their start (one for q/k/v when `from` is 0).
    pub(crate) fn forward_channels(
        &self,
        x: &Tensor,
        mask: &FrameMask,
        qkv: Option<&(Tensor, Tensor)>,
        from: i64,
    ) -> Tensor {
        let (n, c, t) = x.size3().unwrap_or((1, 1, 1));
        let keep = t - from;
        let dh = c / self.heads;
        let split = |y: Tensor, len: i64| y.view([n, self.heads, dh, len]);
        let (q, k, v) = match qkv {
            Some((w, b)) if n == 1 => {
                let x = x.view([c, t]);
                let rows = |r: i64, len: i64| (b.narrow(0, r, len), w.narrow(0, r, len));
                if from == 0 {
                    let y = b.addmm(w, &x); // (3C, T)
                    (y.narrow(0, 0, c), y.narrow(0, c, c), y.narrow(0, 2 * c, c))
                } else {
                    let ((bq, wq), (bkv, wkv)) = (rows(0, c), rows(c, 2 * c));
                    let kv = bkv.addmm(&wkv, &x); // (2C, T)
                    (
                        bq.addmm(&wq, &x.narrow(1, from, keep)),
                        kv.narrow(0, 0, c),
                        kv.narrow(0, c, c),
                    )
                }
            }
            // (N, C, T − from), (N, C, T), (N, C, T)
            _ => (
                proj_out(&self.q, &x.narrow(2, from, keep)),
                proj_out(&self.k, x),
                proj_out(&self.v, x),
            ),
        };
        let phi_q = split(q.sigmoid(), keep);
        let phi_k = split(mask.apply(k.sigmoid()), t);
        let v = split(mask.apply(v), t);
        let kv_sum = phi_k.matmul(&v.transpose(2, 3)); // (N, h, dh_k, dh_v)
        let k_sum = phi_k.sum_dim_intlist(3, true, Kind::Float); // (N, h, dh, 1)
        let z = (&phi_q * k_sum).sum_dim_intlist(2, true, Kind::Float) + 1e-6; // (N, h, 1, T − from)
        let o = (kv_sum.transpose(2, 3).matmul(&phi_q) / z).to_kind(phi_q.kind()); // (N, h, dh, T − from)
        mask.narrow(from, keep).apply(proj_out(&self.out, &o.view([n, c, keep])))
    }
}

/// The linear layer `l` on the channels of `x (N, C, T)`: `(N, O, T)`; one sequence as one
/// product with the bias as its start.
fn proj_out(l: &nn::Linear, x: &Tensor) -> Tensor {
    let (n, c, t) = x.size3().unwrap_or((1, 1, 1));
    let o = l.ws.size()[0];
    match (&l.bs, n) {
        (Some(b), 1) => b.unsqueeze(1).addmm(&l.ws, &x.view([c, t])).unsqueeze(0),
        (Some(b), _) => l.ws.matmul(x) + b.view([1, o, 1]),
        (None, _) => l.ws.matmul(x),
    }
}

/// Instance norm without affine over the valid frames only: `x (N, C, T)`, `mask (N, 1, T)`.
/// Statistics in float32; the result in `x`'s kind.
/// The anchors (ASFormer, DeST) normalise over all frames including padding; this deviation keeps
/// padded frames from changing the statistics. With every frame valid (inference on a running
/// stream) the statistics are plain ones: libtorch's layer norm over T computes them in one
/// operation instead of the masked form's nine (same biased variance and eps, to float rounding;
/// 3–5× faster on one 64-channel window, the same on a batch of 8).
pub(crate) fn masked_instance_norm(x: &Tensor, mask: &FrameMask) -> Tensor {
    if mask.all_valid() {
        // Per (sequence, channel) over T: a layer norm over the last dimension, one fused
        // kernel (float32 statistics for reduced-precision inputs, as below).
        return x.layer_norm([x.size()[2]], None::<&Tensor>, None::<&Tensor>, 1e-5, false);
    }
    let (count, mask) = (mask.count(), mask.tensor()); // (N, 1, 1), (N, 1, T)
    let mean = (x * mask).sum_dim_intlist(2, true, Kind::Float) / &count;
    let centred = (x - &mean) * mask;
    let var = centred.square().sum_dim_intlist(2, true, Kind::Float) / &count; // biased
    (centred / (var + 1e-5).sqrt()).to_kind(x.kind())
}

/// BatchNorm over the valid frames only: `x (N, C, T)` or `(N, C, T, V)`. Same variables as
/// `nn::batch_norm1d/2d` (`weight`, `bias`, `running_mean`, `running_var`; momentum 0.1, eps 1e-5,
/// unbiased running variance). C2F's BatchNorm counts padded frames in training, so the
/// statistics would depend on how much a batch is padded; this deviation removes that.
#[derive(Debug)]
pub(crate) struct MaskedBatchNorm {
    weight: Tensor,
    bias: Tensor,
    pub(super) running_mean: Tensor,
    pub(super) running_var: Tensor,
}

impl MaskedBatchNorm {
    const MOMENTUM: f64 = 0.1;
    const EPS: f64 = 1e-5;

    pub(crate) fn new(p: &nn::Path, channels: i64) -> Self {
        Self {
            weight: p.var("weight", &[channels], nn::Init::Const(1.0)),
            bias: p.var("bias", &[channels], nn::Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
        }
    }

    /// Inference BatchNorm as a per-channel affine map: `(scale, shift)`, each `(C)`, with
    /// `bn(x) = x · scale + shift`.
    pub(crate) fn inference_affine(&self) -> (Tensor, Tensor) {
        let scale = &self.weight / (&self.running_var + Self::EPS).sqrt();
        let shift = &self.bias - &self.running_mean * &scale;
        (scale, shift)
    }

    /// `x (N, C, ...)`, `mask` broadcastable as `(N, 1, ...)` (1 = valid; `None` = all valid).
    pub(crate) fn forward_t(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let dims = x.dim() as i64;
        // per-channel shape (1, C, 1, ...) and the dims reduced over (all but channels)
        let mut stat_shape = vec![1i64; dims as usize];
        stat_shape[1] = -1;
        let reduce: Vec<i64> = (0..dims).filter(|&d| d != 1).collect();
        if !train {
            // One pass over x instead of four: `x · scale + shift` (the same map, rounded
            // differently).
            let (scale, shift) = self.inference_affine();
            return shift
                .view(stat_shape.as_slice())
                .addcmul(x, &scale.view(stat_shape.as_slice()));
        }
        let (mean, var) = {
            let mut one_channel = x.size();
            one_channel[1] = 1;
            let mask = match mask {
                Some(m) => m.expand(one_channel.as_slice(), false).to_kind(x.kind()),
                None => Tensor::ones(one_channel.as_slice(), (x.kind(), x.device())),
            };
            let count = mask.sum(Kind::Float).clamp_min(1.0);
            let mean = (x * &mask).sum_dim_intlist(reduce.as_slice(), true, Kind::Float) / &count;
            let var = ((x - &mean).square() * &mask).sum_dim_intlist(
                reduce.as_slice(),
                true,
                Kind::Float,
            ) / &count;
            tch::no_grad(|| {
                let unbiased = &var * &count / (&count - 1.0).clamp_min(1.0);
                let m = Self::MOMENTUM;
                let new_mean = &self.running_mean * (1.0 - m) + mean.view([-1]) * m;
                let new_var = &self.running_var * (1.0 - m) + unbiased.view([-1]) * m;
                self.running_mean.shallow_clone().copy_(&new_mean);
                self.running_var.shallow_clone().copy_(&new_var);
            });
            (mean, var)
        };
        let (w, b) =
            (self.weight.view(stat_shape.as_slice()), self.bias.view(stat_shape.as_slice()));
        (x - mean) / (var + Self::EPS).sqrt() * w + b
    }
}

/// `Dropout2d` on `(N, C, T)`: drops whole channels of each sequence (ASFormer's
/// `x.unsqueeze(2)` trick).
pub(crate) fn channel_dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    let (n, c) = (x.size()[0], x.size()[1]);
    let keep = Tensor::empty([n, c, 1], (x.kind(), x.device())).bernoulli_float_(1.0 - p);
    x * keep / (1.0 - p)
}

/// ASQuery's fixed sinusoidal frame PE divided by √D: `(T, D)`, interleaved sin/cos with
/// `inv_freq_j = 10000^(-2j/D)`.
pub(crate) fn sincos_pe(t: i64, dim: i64, device: tch::Device) -> Tensor {
    let pos = Tensor::arange(t, (Kind::Float, device)).unsqueeze(1); // (T, 1)
    let j = Tensor::arange(dim / 2, (Kind::Float, device)); // (D/2)
    let inv_freq = (j * (-2.0 * 10000f64.ln() / dim as f64)).exp().unsqueeze(0); // (1, D/2)
    let angle = pos * inv_freq; // (T, D/2)
    // interleave: [sin0, cos0, sin1, cos1, ...]
    Tensor::stack(&[angle.sin(), angle.cos()], 2).view([t, dim]) / (dim as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn masked_instance_norm_ignores_padding() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 100.0, -50.0]).view([1, 1, 5]);
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0, 0.0]).view([1, 1, 5]);
        let y = masked_instance_norm(&x, &FrameMask::new(mask, true));
        // mean 2, biased var 2/3 over the three valid frames.
        let want = [
            -1.0 / (2.0f64 / 3.0 + 1e-5).sqrt(),
            0.0,
            1.0 / (2.0f64 / 3.0 + 1e-5).sqrt(),
            0.0,
            0.0,
        ];
        for (i, w) in want.iter().enumerate() {
            assert!((y.double_value(&[0, 0, i as i64]) - w).abs() < 1e-5, "frame {i}");
        }
        // Every frame valid: the fused form gives what the masked sums give, down to one frame
        // (the deepest encoder level of a 64-frame window), where both are exactly zero.
        for t in [7, 1] {
            let x = Tensor::randn([2, 3, t], (Kind::Float, Device::Cpu)) * 100.0;
            let ones = Tensor::ones([2, 1, t], (Kind::Float, Device::Cpu));
            let fused = masked_instance_norm(&x, &FrameMask::new(ones.shallow_clone(), true));
            let masked = masked_instance_norm(&x, &FrameMask::new(ones, false));
            assert!(fused.allclose(&masked, 1e-5, 1e-6, false), "{t} frames");
        }
    }

    #[test]
    fn masked_batch_norm_uses_valid_frames_and_tracks_running_stats() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = MaskedBatchNorm::new(&vs.root(), 1);
        let x = Tensor::from_slice(&[1.0f32, 3.0, 1000.0, 5.0, 7.0, -1000.0]).view([2, 1, 3]);
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 1.0, 1.0, 0.0]).view([2, 1, 3]);
        let y = bn.forward_t(&x, Some(&mask), true);
        // valid values 1, 3, 5, 7: mean 4, biased var 5, unbiased 20/3
        let want = (7.0 - 4.0) / (5.0f64 + 1e-5).sqrt();
        assert!((y.double_value(&[1, 0, 1]) - want).abs() < 1e-5);
        assert!((bn.running_mean.double_value(&[0]) - 0.4).abs() < 1e-6);
        assert!((bn.running_var.double_value(&[0]) - (0.9 + 0.1 * 20.0 / 3.0)).abs() < 1e-5);
        let y = bn.forward_t(&x, Some(&mask), false);
        let want = (7.0 - 0.4) / (0.9 + 2.0 / 3.0 + 1e-5f64).sqrt();
        assert!((y.double_value(&[1, 0, 1]) - want).abs() < 1e-5);
    }

    #[test]
    fn multi_head_attention_ignores_masked_keys() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let mha = MultiHeadAttention::new(&vs.root(), 8, 2);
        let q = Tensor::randn([1, 3, 8], (Kind::Float, Device::Cpu));
        let kv = Tensor::randn([1, 4, 8], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).view([1, 4]);
        let full = mha.forward(&q, &kv, &kv, Some(&mask));
        let cut = kv.narrow(1, 0, 2);
        let short = mha.forward(&q, &cut, &cut, None);
        assert!(full.allclose(&short, 1e-5, 1e-6, false));
    }

    #[test]
    fn linear_attention_ignores_masked_frames() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let att = LinearAttention::new(&vs.root(), 8, 2, 0.0);
        let x = Tensor::randn([1, 5, 8], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0, 0.0]).view([1, 5, 1]);
        let full = att.forward_t(&x, &x, &mask, false).narrow(1, 0, 3);
        let cut = x.narrow(1, 0, 3);
        let short = att.forward_t(&cut, &cut, &mask.narrow(1, 0, 3), false);
        assert!(full.allclose(&short, 1e-5, 1e-6, false));
    }

    #[test]
    fn linear_attention_in_the_channel_layout_equals_the_token_form() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let att = LinearAttention::new(&vs.root(), 8, 2, 0.0);
        for (n, t, valid) in [(1, 16, 16), (2, 9, 6)] {
            let x = Tensor::randn([n, 8, t], (Kind::Float, Device::Cpu));
            let mask = Tensor::cat(
                &[
                    Tensor::ones([n, 1, valid], (Kind::Float, Device::Cpu)),
                    Tensor::zeros([n, 1, t - valid], (Kind::Float, Device::Cpu)),
                ],
                2,
            );
            let xt = x.transpose(1, 2);
            let want = att.forward_t(&xt, &xt, &mask.transpose(1, 2), false).transpose(1, 2);
            let fm = FrameMask::new(mask, true);
            // Every frame a query, then only the last few (the frames a stream finalises); the
            // fused q/k/v products (one sequence; batches ignore them) and the separate ones.
            for from in [0, 1, t - 3] {
                let want = want.narrow(2, from, t - from);
                for qkv in [None, Some(att.fused_qkv())] {
                    let got = att.forward_channels(&x, &fm, qkv.as_ref(), from);
                    let form = if qkv.is_some() { "fused" } else { "separate" };
                    assert!(
                        got.allclose(&want, 1e-5, 1e-6, false),
                        "{form}: n {n} t {t} valid {valid} from {from}"
                    );
                }
            }
        }
    }

    #[test]
    fn sincos_pe_matches_the_formula() {
        let pe = sincos_pe(4, 8, Device::Cpu);
        assert_eq!(pe.size(), [4, 8]);
        let s = 8f64.sqrt();
        assert!((pe.double_value(&[3, 0]) - 3f64.sin() / s).abs() < 1e-6);
        assert!((pe.double_value(&[3, 1]) - 3f64.cos() / s).abs() < 1e-6);
        let f1 = 10000f64.powf(-2.0 / 8.0);
        assert!((pe.double_value(&[2, 2]) - (2.0 * f1).sin() / s).abs() < 1e-6);
    }
}
