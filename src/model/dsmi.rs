//! DSMI, the spatial module: per-modality multi-scale graph convolution,
//! interactive attention fusion over the joint tokens of each frame, joints →
//! frame collapse. Everything is per frame (no temporal operator), so the streaming runtime can
//! run it once per incoming frame and cache the `(N, D)` result.
//!
//! Variants (`Spatial`): `dsmi` (above), `concat` (the three `S_m` concatenated + MLP instead of
//! attention fusion), `none` (InterAct*: the modalities flattened per frame + a 1×1 embedding).

use std::cell::RefCell;

use tch::Tensor;
use tch::nn::{self, Module};

use super::attention::{MaskedBatchNorm, MultiHeadAttention};
use super::config::{ModelConfig, Spatial};
use super::profile::block;
use super::records_grad;
use crate::skeleton::graph::k_hop_adjacency;

/// Multi-scale graph convolution (DeST `MultiScale_GraphConv`): `(Â_k + B_k)` mixes the joints
/// per scale, then 1×1 conv + BatchNorm + ReLU to D. In `(N, C, T, V)`, out `(N, D, T, V)`.
#[derive(Debug)]
struct MultiScaleGcn {
    /// Stacked normalised adjacencies `(K·V, V)`, a constant of the joint layout.
    adj: Tensor,
    /// Learnable residual `B^(k)`, same shape.
    residual: Tensor,
    conv: nn::Conv2D,
    bn: MaskedBatchNorm,
    scales: i64,
}

impl MultiScaleGcn {
    fn new(p: &nn::Path, cfg: &ModelConfig, adj: &Tensor) -> Self {
        let (k, v) = (cfg.scales, cfg.joints);
        Self {
            adj: adj.shallow_clone(),
            residual: p.uniform("A_res", &[k * v, v], -1e-6, 1e-6),
            conv: nn::conv2d(p / "conv", k * cfg.in_channels, cfg.hidden, 1, Default::default()),
            bn: MaskedBatchNorm::new(&(p / "bn"), cfg.hidden),
            scales: k,
        }
    }
}

impl MultiScaleGcn {
    /// The graph aggregation and the 1×1 conv as one matrix, `(C·V, V·D)`, and the conv bias
    /// laid out to match, `(V·D)`:
    /// `M[c·V + u, v·D + d] = Σ_k W[d, k·C + c] · (Â_k + B_k)[v, u]`. A frame's
    /// `(C, V)` input times `M` gives its `(V, D)` joint tokens in one matrix product, instead of
    /// an aggregation with an inner dimension of 25, a permuted copy and a convolution.
    fn fused(&self) -> (Tensor, Tensor) {
        let a = &self.adj + &self.residual; // (K·V, V)
        let s = a.size();
        let v = s[1];
        let w = &self.conv.ws; // (D, K·C, 1, 1)
        let d = w.size()[0];
        let c = w.size()[1] / self.scales;
        let w = w.view([d, self.scales, c]);
        let a = a.view([self.scales, v, v]).to_kind(w.kind());
        let m = Tensor::einsum("dkc,kvu->cuvd", &[&w, &a], None::<i64>).reshape([c * v, v * d]);
        let bias = match &self.conv.bs {
            Some(b) => b.repeat([v]),
            None => Tensor::zeros([v * d], (w.kind(), w.device())),
        };
        (m, bias)
    }

    /// [`Self::fused`] with the inference BatchNorm folded in: `relu(x·M + b)` is the whole
    /// graph convolution of a frame.
    fn folded(&self) -> (Tensor, Tensor) {
        let (m, bias) = self.fused();
        let (scale, shift) = self.bn.inference_affine(); // (D)
        let v = m.size()[1] / scale.size()[0];
        let (scale, shift) = (scale.repeat([v]), shift.repeat([v]));
        (m * &scale, bias * scale + shift)
    }

    /// Training (and uncached) path: `x (N·T, C·V)`, `mask (N·T)` → joint tokens `(N·T, V, D)`.
    fn forward_tokens(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let (m, bias) = self.fused();
        let rows = x.size()[0];
        let d = self.conv.ws.size()[0];
        let tokens = bias.addmm(x, &m).view([rows, -1, d]); // (N·T, V, D)
        // BatchNorm over channels D: a (N·T, D, V) view, mask (N·T, 1, 1).
        let mask = mask.map(|m| m.view([rows, 1, 1]));
        self.bn.forward_t(&tokens.transpose(1, 2), mask.as_ref(), train).transpose(1, 2).relu()
    }
}

/// `(N, C, T, V)` → one row per frame, `(N·T, C·V)`, channel-major (`c·V + u`).
fn frame_rows(x: &Tensor) -> Tensor {
    let s = x.size();
    x.permute([0, 2, 1, 3]).reshape([s[0] * s[2], s[1] * s[3]])
}

/// One fusion step: pre-LN self-attention over the V joint tokens of each
/// frame, then MLP `width → D → D`. Tokens `(N·T, V, width)` → `(N·T, V, D)`.
#[derive(Debug)]
struct JointFusion {
    ln: nn::LayerNorm,
    attn: MultiHeadAttention,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl JointFusion {
    fn new(p: &nn::Path, width: i64, dim: i64, heads: i64) -> Self {
        Self {
            ln: nn::layer_norm(p / "ln", vec![width], Default::default()),
            attn: MultiHeadAttention::new(&(p / "attn"), width, heads),
            fc1: nn::linear(p / "fc1", width, dim, Default::default()),
            fc2: nn::linear(p / "fc2", dim, dim, Default::default()),
        }
    }

    fn forward(&self, z: &Tensor, qkv: Option<&(Tensor, Tensor)>) -> Tensor {
        let zn = self.ln.forward(z);
        let z = z + self.attn.forward_self(&zn, qkv);
        self.fc2.forward(&self.fc1.forward(&z).relu())
    }
}

/// The MLP of the `concat` variant: `3D → D → D` per joint token.
#[derive(Debug)]
struct ConcatFusion {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

/// The variant's layers (one per model, so the variants' size difference does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Body {
    Dsmi {
        gcns: [MultiScaleGcn; 3],
        fuse_ar: JointFusion,
        fuse_m: JointFusion,
        collapse: nn::Linear,
    },
    Concat {
        gcns: [MultiScaleGcn; 3],
        mlp: ConcatFusion,
        collapse: nn::Linear,
    },
    Embed {
        embed: nn::Linear,
    },
}

/// The spatial module. Inputs three `(N, C, T, V)` modalities (abs, rel, motion), output `(N, D, T)`.
#[derive(Debug)]
pub(crate) struct Dsmi {
    body: Body,
    hidden: i64,
    /// Inference weights derived from the parameters (see [`Folded`]); built by the first
    /// inference call, dropped by any training call and by [`Dsmi::weights_changed`].
    folded: RefCell<Option<Folded>>,
}

/// Inference-only weights derived from the parameters, so a frame costs a few large matrix
/// products: the three graph convolutions with their BatchNorms folded in, stacked for one
/// batched product, and each fusion's q/k/v projections concatenated into one.
#[derive(Debug)]
struct Folded {
    /// `(3, C·V, V·D)` and `(3, 1, V·D)`.
    gcn: Tensor,
    gcn_bias: Tensor,
    /// Per fusion: `(3·W, W)` weight and `(3·W)` bias.
    qkv: [(Tensor, Tensor); 2],
}

impl Dsmi {
    pub(crate) fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let (d, v) = (cfg.hidden, cfg.joints);
        let adj_values = k_hop_adjacency(cfg.scales as usize);
        let adj = Tensor::from_slice(&adj_values).view([cfg.scales * v, v]).to_device(p.device());
        let gcns =
            || ["abs", "rel", "motion"].map(|m| MultiScaleGcn::new(&(p / "gcn" / m), cfg, &adj));
        let collapse = || nn::linear(p / "collapse", v * d, d, Default::default());
        let body = match cfg.spatial {
            Spatial::Dsmi => Body::Dsmi {
                gcns: gcns(),
                fuse_ar: JointFusion::new(&(p / "fuse_abs_rel"), 2 * d, d, cfg.heads),
                fuse_m: JointFusion::new(&(p / "fuse_motion"), 2 * d, d, cfg.heads),
                collapse: collapse(),
            },
            Spatial::Concat => Body::Concat {
                gcns: gcns(),
                mlp: ConcatFusion {
                    fc1: nn::linear(p / "concat" / "fc1", 3 * d, d, Default::default()),
                    fc2: nn::linear(p / "concat" / "fc2", d, d, Default::default()),
                },
                collapse: collapse(),
            },
            Spatial::None => Body::Embed {
                embed: nn::linear(p / "embed", 3 * cfg.in_channels * v, d, Default::default()),
            },
        };
        Self { body, hidden: d, folded: RefCell::new(None) }
    }

    /// Drops the inference weights derived from the parameters; the next inference call
    /// derives them again. Training calls do this themselves.
    pub(crate) fn weights_changed(&self) {
        self.folded.replace(None);
    }

    fn fold(gcns: &[MultiScaleGcn; 3], fusions: [&JointFusion; 2]) -> Folded {
        let [a, r, m] = gcns.each_ref().map(MultiScaleGcn::folded);
        Folded {
            gcn: Tensor::stack(&[&a.0, &r.0, &m.0], 0),
            gcn_bias: Tensor::stack(&[&a.1, &r.1, &m.1], 0).unsqueeze(1),
            qkv: fusions.map(|f| f.attn.fused_qkv()),
        }
    }

    /// `abs`, `rel`, `motion (N, C, T, V)` → `(N, D, T)`. Shapes are checked by the caller.
    /// `mask (N, T)`, when given, keeps padded frames out of BatchNorm's training statistics
    /// (everything else is per frame).
    pub(crate) fn forward_t(
        &self,
        abs: &Tensor,
        rel: &Tensor,
        motion: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let s = abs.size();
        let (n, t, v) = (s[0], s[2], s[3]);
        let d = self.hidden;
        // joint tokens (N·T, V, D) -> (N, D, T)
        let to_frames = |x: Tensor, collapse: &nn::Linear| {
            collapse.forward(&x.reshape([n, t, v * d])).transpose(1, 2)
        };
        let rows = || [abs, rel, motion].map(frame_rows);
        let mask = mask.map(|m| m.reshape([n * t]));
        match &self.body {
            // Inference: the cached weights. Not when gradients are being recorded (a caller
            // differentiating through an inference-mode DSMI gets the parameters' gradients).
            Body::Dsmi { gcns, fuse_ar, fuse_m, collapse }
                if !train && !records_grad(&fuse_ar.fc2.ws) =>
            {
                let mut cache = self.folded.borrow_mut();
                let stale = cache.as_ref().is_some_and(|f| f.gcn.kind() != abs.kind());
                if stale || cache.is_none() {
                    *cache = Some(tch::no_grad(|| Self::fold(gcns, [fuse_ar, fuse_m])));
                }
                let Some(f) = cache.as_ref() else { unreachable!("filled above") };
                // (3, N·T, C·V) × (3, C·V, V·D) -> (3, N·T, V·D): all three graph convolutions
                let s = block("dsmi.gcn", None, || {
                    let x = f.gcn_bias.baddbmm(&Tensor::stack(&rows(), 0), &f.gcn, 1, 1).relu_();
                    x.view([3, n * t, v, d]).unbind(0)
                });
                let x = block("dsmi.fuse_abs_rel", None, || {
                    fuse_ar.forward(&Tensor::cat(&[&s[0], &s[1]], 2), Some(&f.qkv[0]))
                });
                let x = block("dsmi.fuse_motion", None, || {
                    fuse_m.forward(&Tensor::cat(&[&x, &s[2]], 2), Some(&f.qkv[1]))
                });
                block("dsmi.collapse", None, || to_frames(x, collapse))
            }
            Body::Dsmi { gcns, fuse_ar, fuse_m, collapse } => {
                self.weights_changed();
                let [sa, sr, sm] = run_gcns(gcns, rows(), mask.as_ref(), train);
                let x = fuse_ar.forward(&Tensor::cat(&[sa, sr], 2), None); // (N·T, V, 2D)
                let x = fuse_m.forward(&Tensor::cat(&[x, sm], 2), None);
                to_frames(x, collapse)
            }
            Body::Concat { gcns, mlp, collapse } => {
                let [sa, sr, sm] = run_gcns(gcns, rows(), mask.as_ref(), train);
                let x = Tensor::cat(&[sa, sr, sm], 2); // (N·T, V, 3D)
                let x = mlp.fc2.forward(&mlp.fc1.forward(&x).relu());
                to_frames(x, collapse)
            }
            Body::Embed { embed } => {
                // (N, 3C, T, V) -> (N, T, 3C·V) -> (N, D, T)
                let x =
                    Tensor::cat(&[abs, rel, motion], 1).permute([0, 2, 1, 3]).reshape([n, t, -1]);
                embed.forward(&x).transpose(1, 2)
            }
        }
        .contiguous()
    }
}

/// The three graph convolutions on frame rows `(N·T, C·V)` → joint tokens `(N·T, V, D)` each.
fn run_gcns(
    gcns: &[MultiScaleGcn; 3],
    rows: [Tensor; 3],
    mask: Option<&Tensor>,
    train: bool,
) -> [Tensor; 3] {
    let [abs, rel, motion] = rows;
    [
        gcns[0].forward_tokens(&abs, mask, train),
        gcns[1].forward_tokens(&rel, mask, train),
        gcns[2].forward_tokens(&motion, mask, train),
    ]
}

/// Multiply-adds of DSMI for one frame of one stream (see [`super::dsmi_flops_per_frame`]).
pub(crate) fn flops_per_frame(cfg: &ModelConfig) -> u64 {
    let (c, v, d, k) =
        (cfg.in_channels as u64, cfg.joints as u64, cfg.hidden as u64, cfg.scales as u64);
    let gcn = c * k * v * v + k * c * d * v; // aggregation + 1×1 conv
    let fusion = |w: u64| 4 * w * w * v + 2 * v * v * w + (w * d + d * d) * v; // q,k,v,out + scores·values + MLP
    let collapse = v * d * d;
    match cfg.spatial {
        Spatial::Dsmi => 3 * gcn + 2 * fusion(2 * d) + collapse,
        Spatial::Concat => 3 * gcn + (3 * d * d + d * d) * v + collapse,
        Spatial::None => 3 * c * v * d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The graph convolution as the paper writes it: einsum('vu,nctu->nctv'), then
    /// channel = k·C + c, 1×1 conv, BatchNorm, ReLU; `(N, D, T, V)`.
    fn reference_gcn(gcn: &MultiScaleGcn, x: &Tensor, train: bool) -> Tensor {
        let (n, c, t, v) = x.size4().expect("4-d");
        let a = &gcn.adj + &gcn.residual;
        let agg = Tensor::einsum("vu,nctu->nctv", &[&a, x], None::<i64>);
        let agg = agg.view([n, c, t, 13, v]).permute([0, 3, 1, 2, 4]).reshape([n, 13 * c, t, v]);
        gcn.bn.forward_t(&gcn.conv.forward(&agg), None, train).relu()
    }

    #[test]
    fn fused_graph_conv_matches_the_reference_einsum() {
        tch::manual_seed(3);
        let cfg = ModelConfig::tiny(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let adj = Tensor::from_slice(&k_hop_adjacency(13)).view([13 * 25, 25]);
        let gcn = MultiScaleGcn::new(&vs.root(), &cfg, &adj);
        tch::no_grad(|| {
            let _ = gcn.residual.shallow_clone().normal_(0.0, 0.1);
            let _ = gcn.bn.running_mean.shallow_clone().normal_(0.0, 0.5);
            let _ = gcn.bn.running_var.shallow_clone().uniform_(0.5, 2.0);
        });
        let x = Tensor::randn([2, 6, 3, 25], (Kind::Float, Device::Cpu));
        // (N, D, T, V) -> tokens (N·T, V, D)
        let tokens = |y: Tensor| y.permute([0, 2, 3, 1]).reshape([6, 25, 16]);
        // Inference: the fused product, and the folded BatchNorm the cached path uses.
        let want = tokens(reference_gcn(&gcn, &x, false));
        let got = gcn.forward_tokens(&frame_rows(&x), None, false);
        assert_eq!(got.size(), [6, 25, 16]);
        assert!(got.allclose(&want, 1e-5, 1e-5, false));
        let (m, b) = gcn.folded();
        let folded = (frame_rows(&x).matmul(&m) + b).relu().view([6, 25, 16]);
        assert!(folded.allclose(&want, 1e-5, 1e-5, false));
        // Training: batch statistics over every frame and joint, gradients reach A_res and W.
        let want = tokens(reference_gcn(&gcn, &x, true));
        let got = gcn.forward_tokens(&frame_rows(&x), None, true);
        assert!(got.allclose(&want, 1e-5, 1e-5, false));
        let grads = |y: Tensor| {
            let g = Tensor::run_backward(
                &[y.square().sum(Kind::Float)],
                &[&gcn.residual, &gcn.conv.ws],
                false,
                false,
            );
            (g[0].shallow_clone(), g[1].shallow_clone())
        };
        let (ga, gw) = grads(gcn.forward_tokens(&frame_rows(&x), None, true));
        let (ra, rw) = grads(tokens(reference_gcn(&gcn, &x, true)));
        // float32 sums in another order: compare against the gradient's own scale (an element-wise
        // rtol fails on the near-zero entries, and the global RNG that parallel tests share
        // makes the inputs differ from run to run).
        for (name, got, want) in [("A_res", &ga, &ra), ("W", &gw, &rw)] {
            let err = (got - want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]);
            assert!(err <= 1e-4 * scale, "gradient of {name}: max error {err:e}, scale {scale:e}");
        }
    }

    #[test]
    fn graph_conv_parameter_count_follows_the_reference_formula() {
        // architecture.md §11.3: 13·6·D + D (conv) + 2D (BN) + 325·25 (B) per modality.
        let cfg = ModelConfig::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let adj = Tensor::zeros([325, 25], (Kind::Float, Device::Cpu));
        let _gcn = MultiScaleGcn::new(&vs.root(), &cfg, &adj);
        let count: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(count, 13 * 6 * 64 + 64 + 2 * 64 + 325 * 25);
    }
}
