//! DSMI, the spatial module: per-modality multi-scale graph convolution (architecture.md §3.2,
//! §11.3), interactive attention fusion over the joint tokens of each frame (§11.4), joints →
//! frame collapse. Everything is per frame (no temporal operator), so the streaming runtime can
//! run it once per incoming frame and cache the `(N, D)` result.
//!
//! Variants (`Spatial`): `dsmi` (above), `concat` (the three `S_m` concatenated + MLP instead of
//! attention fusion), `none` (InterAct*: the modalities flattened per frame + a 1×1 embedding).

use tch::Tensor;
use tch::nn::{self, Module};

use super::attention::{MaskedBatchNorm, MultiHeadAttention};
use super::config::{ModelConfig, Spatial};
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
    /// `x (N, C, T, V)`; `mask (N, 1, T, 1)` keeps padded frames out of the training statistics.
    fn forward_t(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let s = x.size();
        let (n, c, t, v) = (s[0], s[1], s[2], s[3]);
        let a = &self.adj + &self.residual; // (K·V, V)
        // s[..., k·V + v] = Σ_u A[k·V + v, u] x[..., u]: (N, C, T, V) -> (N, C, T, K·V)
        let agg = x.matmul(&a.tr());
        // (N, C, T, K, V) -> (N, K, C, T, V) -> (N, K·C, T, V); channel = k·C + c
        let agg = agg.view([n, c, t, self.scales, v]).permute([0, 3, 1, 2, 4]).reshape([
            n,
            self.scales * c,
            t,
            v,
        ]);
        self.bn.forward_t(&self.conv.forward(&agg), mask, train).relu()
    }
}

/// One fusion step (architecture.md §11.4): pre-LN self-attention over the V joint tokens of each
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

    fn forward(&self, z: &Tensor) -> Tensor {
        let zn = self.ln.forward(z);
        let z = z + self.attn.forward(&zn, &zn, &zn, None);
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
        Self { body, hidden: d }
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
        let mask = mask.map(|m| m.view([n, 1, t, 1]));
        let mask = mask.as_ref();
        // (N, D, T, V) -> joint tokens (N·T, V, D)
        let tokens = |x: Tensor| x.permute([0, 2, 3, 1]).reshape([n * t, v, d]);
        // joint tokens (N·T, V, D) -> (N, D, T)
        let to_frames = |x: Tensor, collapse: &nn::Linear| {
            collapse.forward(&x.reshape([n, t, v * d])).transpose(1, 2)
        };
        match &self.body {
            Body::Dsmi { gcns, fuse_ar, fuse_m, collapse } => {
                let [sa, sr, sm] = run_gcns(gcns, [abs, rel, motion], mask, train).map(tokens);
                let x = fuse_ar.forward(&Tensor::cat(&[sa, sr], 2)); // (N·T, V, D)
                let x = fuse_m.forward(&Tensor::cat(&[x, sm], 2));
                to_frames(x, collapse)
            }
            Body::Concat { gcns, mlp, collapse } => {
                let [sa, sr, sm] = run_gcns(gcns, [abs, rel, motion], mask, train).map(tokens);
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

fn run_gcns(
    gcns: &[MultiScaleGcn; 3],
    modalities: [&Tensor; 3],
    mask: Option<&Tensor>,
    train: bool,
) -> [Tensor; 3] {
    let [abs, rel, motion] = modalities;
    [
        gcns[0].forward_t(abs, mask, train),
        gcns[1].forward_t(rel, mask, train),
        gcns[2].forward_t(motion, mask, train),
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

    #[test]
    fn graph_conv_matches_the_reference_einsum() {
        tch::manual_seed(3);
        let cfg = ModelConfig::tiny(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let adj = Tensor::from_slice(&k_hop_adjacency(13)).view([13 * 25, 25]);
        let gcn = MultiScaleGcn::new(&vs.root(), &cfg, &adj);
        let x = Tensor::randn([2, 6, 3, 25], (Kind::Float, Device::Cpu));
        let got = gcn.forward_t(&x, None, false);
        // einsum('vu,nctu->nctv') then channel = k*C + c (architecture.md §3.2)
        let a = &gcn.adj + &gcn.residual;
        let agg = Tensor::einsum("vu,nctu->nctv", &[&a, &x], None::<i64>);
        let agg = agg.view([2, 6, 3, 13, 25]).permute([0, 3, 1, 2, 4]).reshape([2, 78, 3, 25]);
        let want = gcn.bn.forward_t(&gcn.conv.forward(&agg), None, false).relu();
        assert_eq!(got.size(), [2, 16, 3, 25]);
        assert!(got.allclose(&want, 1e-5, 1e-6, false));
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
