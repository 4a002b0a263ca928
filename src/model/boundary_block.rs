//! The boundary block: an ETSPNet-style dense dilated stack:
//! `f0 = Conv1d(D→D, 1)(x)`, `o_1 = DRL(1)(f0)`, `o_i = DRL(2^(i−1))(f0 + o_{i−1})`,
//! `F_b = Conv1d(L·D → D, 1)(PReLU(concat o_i)) + f0`. Gives `F_b (N, D, T)`.
//!
//! Deviation: every DRL output is masked (ETSPNet's DRL has no mask, which would leak padded
//! frames into valid ones through the next dilated conv).

use tch::Tensor;
use tch::nn;

use super::config::ModelConfig;
use super::conv;
use super::mask::FrameMask;

/// MS-TCN dilated residual layer: `x + Dropout(Conv1x1(ReLU(Conv_k3_dil(x))))`, masked.
#[derive(Debug)]
struct DilatedResidual {
    conv_dilated: nn::Conv1D,
    conv_1x1: nn::Conv1D,
    dilation: i64,
    dropout: f64,
}

impl DilatedResidual {
    fn new(p: &nn::Path, dim: i64, dilation: i64, dropout: f64) -> Self {
        let cfg = nn::ConvConfig { padding: dilation, dilation, ..Default::default() };
        Self {
            conv_dilated: nn::conv1d(p / "conv_dilated", dim, dim, 3, cfg),
            conv_1x1: nn::conv1d(p / "conv_1x1", dim, dim, 1, Default::default()),
            dilation,
            dropout,
        }
    }

    fn forward_t(&self, x: &Tensor, mask: &FrameMask, train: bool) -> Tensor {
        let h = conv::same_conv(&self.conv_dilated, x, self.dilation, train).relu();
        let out = conv::pointwise(&self.conv_1x1, &h, train).dropout(self.dropout, train);
        mask.apply(x + out)
    }
}

/// The boundary block. `(N, D, T)` → `F_b (N, D, T)`.
#[derive(Debug)]
pub(crate) struct BoundaryBlock {
    conv_in: nn::Conv1D,
    layers: Vec<DilatedResidual>,
    prelu: Tensor,
    fuse: nn::Conv1D,
}

impl BoundaryBlock {
    pub(crate) fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let (d, l) = (cfg.hidden, cfg.boundary_layers);
        Self {
            conv_in: nn::conv1d(p / "conv_in", d, d, 1, Default::default()),
            layers: (0..l)
                .map(|i| DilatedResidual::new(&(p / "layers" / i), d, 1 << i, cfg.layer_dropout))
                .collect(),
            prelu: p.var("prelu", &[l * d], nn::Init::Const(0.25)),
            fuse: nn::conv1d(p / "fuse", l * d, d, 1, Default::default()),
        }
    }

    /// Frames on each side that reach one output frame: the dilations' sum, `2^L − 1`.
    pub(crate) fn receptive_radius(&self) -> i64 {
        (1 << self.layers.len()) - 1
    }

    /// Inference for the frames `from..T` only, `(N, D, T − from)`: the block is local
    /// (dilated convolutions and per-frame operations), so it runs on the frames within
    /// [`BoundaryBlock::receptive_radius`] of them and gives the same numbers there.
    pub(crate) fn forward_from(&self, x: &Tensor, mask: &FrameMask, from: i64) -> Tensor {
        let t = x.size()[2];
        let start = (from - self.receptive_radius()).clamp(0, t);
        let out =
            self.forward_t(&x.narrow(2, start, t - start), &mask.narrow(start, t - start), false);
        out.narrow(2, from - start, t - from)
    }

    pub(crate) fn forward_t(&self, x: &Tensor, mask: &FrameMask, train: bool) -> Tensor {
        let f0 = mask.apply(conv::pointwise(&self.conv_in, x, train));
        let mut outs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let input = match outs.last() {
                Some(prev) => &f0 + prev,
                None => f0.shallow_clone(),
            };
            outs.push(layer.forward_t(&input, mask, train));
        }
        let h = Tensor::cat(&outs, 1).prelu(&self.prelu); // (N, L·D, T)
        mask.apply(conv::pointwise(&self.fuse, &h, train) + f0)
    }
}

/// Multiply-adds of the boundary block per frame.
pub(crate) fn flops_per_frame(cfg: &ModelConfig) -> u64 {
    let (d, l) = (cfg.hidden as u64, cfg.boundary_layers as u64);
    d * d + l * (3 * d * d + d * d) + l * d * d
}
