//! Inference forms of the temporal convolutions that libtorch runs slowly on one window.
//!
//! Profiled on one 256-frame window (BENCHMARKS.md, "Where an MFAI window goes"): libtorch
//! sends a dilated `Conv1d` to `slow_conv_dilated2d`, which took 2–3.5× the time of the same
//! arithmetic as one matrix product; a stride-2 depthwise convolution on a short sequence cost
//! more in dispatch than in arithmetic. The forms here give the same numbers (to float rounding:
//! the sums run in another order) and are used for inference only; training keeps the
//! convolution operators and their tested backward passes.

use tch::Tensor;
use tch::nn::{self, Module};

/// `conv` (`Conv1d`, kernel K odd, "same" padding `dilation·(K−1)/2`, stride 1, no groups) on
/// `x (N, C, T)` → `(N, O, T)`. Dilation 1 keeps the convolution operator (it is not slower
/// there); wider dilations, or `train`, as noted in the module docs.
pub(crate) fn same_conv(conv: &nn::Conv1D, x: &Tensor, dilation: i64, train: bool) -> Tensor {
    if train || dilation <= 1 {
        return conv.forward(x);
    }
    shifted_matmul(conv, x, dilation)
}

/// The convolution as one matrix product: the K dilated shifts of the padded input stacked
/// as `(N, C·K, T)` rows (`c·K + j`, the weight's own `(O, C, K)` order, so the weight is a
/// view), times the weight `(O, C·K)`.
fn shifted_matmul(conv: &nn::Conv1D, x: &Tensor, dilation: i64) -> Tensor {
    let (n, c, t) = x.size3().unwrap_or((1, 1, 1));
    let ws = conv.ws.size(); // (O, C, K)
    let (o, k) = (ws[0], ws[2]);
    let pad = dilation * (k - 1) / 2;
    let xp = x.pad([pad, pad], "constant", None);
    let shifts: Vec<Tensor> = (0..k).map(|j| xp.narrow(2, j * dilation, t)).collect();
    let cols = Tensor::stack(&shifts, 2).view([n, c * k, t]); // (N, C·K, T)
    let w = conv.ws.reshape([o, c * k]); // a view: loaded weights are contiguous
    match (&conv.bs, n) {
        (Some(b), 1) => b.unsqueeze(1).addmm(&w, &cols.view([c * k, t])).unsqueeze(0),
        (Some(b), _) => w.matmul(&cols) + b.view([1, o, 1]),
        (None, _) => w.matmul(&cols),
    }
}

/// A 1×1 `conv` on `x (N, C, T)` → `(N, O, T)`. For inference on one sequence, one matrix
/// product with the bias as its starting value (`addmm`): libtorch runs a 1×1 `Conv1d` through
/// im2col and a general convolution, 1.3–2.8× the time of the product on MFAI's sizes at batch
/// 1 (64 → 64 channels × 256 frames: 96 against 35 µs on one thread); MFAI has about 40 of them
/// per window. Training keeps the convolution operator.
pub(crate) fn pointwise(conv: &nn::Conv1D, x: &Tensor, train: bool) -> Tensor {
    if train {
        return conv.forward(x);
    }
    let Ok((n, c, t)) = x.size3() else { return conv.forward(x) };
    let o = conv.ws.size()[0];
    let w = conv.ws.view([o, c]);
    match (&conv.bs, n) {
        (Some(b), 1) => b.unsqueeze(1).addmm(&w, &x.reshape([c, t])).unsqueeze(0),
        (None, 1) => w.mm(&x.reshape([c, t])).unsqueeze(0),
        // Batches keep the convolution: a broadcast product over them was slower (MFAI's
        // windows are batched up to 8).
        _ => conv.forward(x),
    }
}

/// The encoder's down-sampling: depthwise `Conv1d(k3, stride 2, padding 1, groups = C)`
/// without bias on `x (N, C, L)` → `(N, C, ⌈L/2⌉)`. For inference a strided view of the padded
/// input times the three taps, summed.
pub(crate) fn depthwise_down(conv: &nn::Conv1D, x: &Tensor, train: bool) -> Tensor {
    if train || conv.bs.is_some() {
        return conv.forward(x);
    }
    let c = x.size()[1];
    let taps = x.pad([1, 1], "constant", None).unfold(2, 3, 2); // (N, C, ⌈L/2⌉, 3)
    (taps * conv.ws.reshape([1, c, 1, 3])).sum_dim_intlist(3, false, None)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    fn close(got: &Tensor, want: &Tensor) -> f64 {
        assert_eq!(got.size(), want.size());
        (got - want).abs().max().double_value(&[]) / want.abs().max().double_value(&[]).max(1e-12)
    }

    #[test]
    fn the_shifted_matmul_is_the_dilated_convolution() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        for (k, dilation, n, t, bias) in
            [(3, 2, 1, 256, true), (3, 8, 2, 37, true), (5, 4, 1, 9, true), (3, 32, 1, 8, false)]
        {
            let cfg = nn::ConvConfig {
                padding: dilation * (k - 1) / 2,
                dilation,
                bias,
                ..Default::default()
            };
            let conv = nn::conv1d(vs.root() / format!("c{k}_{dilation}"), 6, 5, k, cfg);
            let x = Tensor::randn([n, 6, t], (Kind::Float, Device::Cpu));
            let want = conv.forward(&x);
            let got = same_conv(&conv, &x, dilation, false);
            let err = close(&got, &want);
            assert!(err < 1e-5, "k {k} dilation {dilation} n {n} t {t}: relative error {err}");
            // Training keeps the operator itself.
            assert!(same_conv(&conv, &x, dilation, true).equal(&want));
        }
    }

    #[test]
    fn the_matrix_product_is_the_pointwise_convolution() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        for (c, o, bias) in [(8, 8, true), (8, 4, true), (4, 8, false)] {
            let cfg = nn::ConvConfig { bias, ..Default::default() };
            let conv = nn::conv1d(vs.root() / format!("p{c}_{o}_{bias}"), c, o, 1, cfg);
            for (n, t) in [(1, 256), (3, 7), (1, 1), (2, 34)] {
                // A strided input (the transposed layout some callers pass) must work as well.
                let x = Tensor::randn([n, t, c], (Kind::Float, Device::Cpu)).transpose(1, 2);
                let want = conv.forward(&x);
                let err = close(&pointwise(&conv, &x, false), &want);
                assert!(err < 1e-6, "{c} → {o}, n {n} t {t}: relative error {err}");
                assert!(pointwise(&conv, &x, true).equal(&want));
            }
        }
    }

    #[test]
    fn the_strided_view_is_the_depthwise_down_sampling() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg =
            nn::ConvConfig { stride: 2, padding: 1, groups: 8, bias: false, ..Default::default() };
        let conv = nn::conv1d(vs.root() / "down", 8, 8, 3, cfg);
        for (n, l) in [(1, 256), (3, 8), (1, 2), (2, 7)] {
            let x = Tensor::randn([n, 8, l], (Kind::Float, Device::Cpu));
            let want = conv.forward(&x);
            let err = close(&depthwise_down(&conv, &x, false), &want);
            assert!(err < 1e-6, "n {n} l {l}: relative error {err}");
        }
    }
}
