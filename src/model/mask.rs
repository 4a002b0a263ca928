//! The frame mask the temporal blocks pass along: `(N, 1, T)`, 1 = valid frame, 0 = padding,
//! and whether every frame is valid.
//!
//! A window of a running stream has no padding, yet MFAI masks every tensor a temporal operator
//! consumes (about ninety products per window, each an operation over the window, plus the
//! masked statistics of every instance norm). When the mask is all ones those products are the
//! identity (`x · 1 = x` exactly, NaN and infinities included), so [`FrameMask::apply`] skips
//! them: same numbers, fewer operations. Training never reads the mask back (a device sync on
//! CUDA) and keeps every product.

use tch::{Kind, Tensor};

/// A frame mask `(N, 1, T)` that knows whether it is all ones.
#[derive(Debug)]
pub(crate) struct FrameMask {
    mask: Tensor,
    all_valid: bool,
}

impl FrameMask {
    /// `mask (N, 1, T)`; `check`: find out whether every frame is valid (one reduction and a
    /// read; inference), else treat the mask as partial (training).
    pub(crate) fn new(mask: Tensor, check: bool) -> Self {
        let all_valid = check && mask.numel() > 0 && mask.min().double_value(&[]) >= 1.0;
        Self { mask, all_valid }
    }

    /// The mask tensor, `(N, 1, T)`.
    pub(crate) fn tensor(&self) -> &Tensor {
        &self.mask
    }

    /// Whether every frame is valid.
    pub(crate) fn all_valid(&self) -> bool {
        self.all_valid
    }

    /// `x · mask` (padded frames zeroed): `x` itself when every frame is valid.
    pub(crate) fn apply(&self, x: Tensor) -> Tensor {
        if self.all_valid { x } else { x * &self.mask }
    }

    /// The number of valid frames per sequence, `(N, 1, 1)` in float32, at least 1.
    pub(crate) fn count(&self) -> Tensor {
        self.mask.sum_dim_intlist(2, true, Kind::Float).clamp_min(1.0)
    }

    /// Every second frame from the first (the encoder's stride-2 grid).
    pub(crate) fn down2(&self) -> Self {
        Self { mask: self.mask.slice(2, 0, None, 2), all_valid: self.all_valid }
    }

    /// Frames `start..start + len`.
    pub(crate) fn narrow(&self, start: i64, len: i64) -> Self {
        Self { mask: self.mask.narrow(2, start, len), all_valid: self.all_valid }
    }

    /// The same mask (a shallow copy of the tensor).
    pub(crate) fn shallow_clone(&self) -> Self {
        Self { mask: self.mask.shallow_clone(), all_valid: self.all_valid }
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn applying_a_full_mask_is_the_identity_and_a_partial_one_zeroes_padding() {
        let values = |t: Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).expect("values");
        let x = Tensor::from_slice(&[1.0f32, f32::NAN, -3.0, 4.0]).view([1, 1, 4]);
        let full = FrameMask::new(Tensor::ones([1, 1, 4], (Kind::Float, Device::Cpu)), true);
        assert!(full.all_valid());
        let same = values(full.apply(x.copy()));
        assert_eq!((same[0], same[2], same[3]), (1.0, -3.0, 4.0));
        assert!(same[1].is_nan());
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 1.0]).view([1, 1, 4]);
        let partial = FrameMask::new(mask, true);
        assert!(!partial.all_valid());
        assert_eq!(
            values(partial.apply(Tensor::ones([1, 2, 4], (Kind::Float, Device::Cpu)))),
            [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
        );
        assert_eq!(values(partial.count()), [3.0]);
        // Unchecked (training): treated as partial, so the products stay.
        let unchecked = FrameMask::new(Tensor::ones([1, 1, 4], (Kind::Float, Device::Cpu)), false);
        assert!(!unchecked.all_valid());
        assert!(full.down2().all_valid() && !partial.down2().all_valid());
        assert_eq!(values(partial.down2().tensor().shallow_clone()), [1.0, 0.0]);
        assert_eq!(values(partial.narrow(2, 2).tensor().shallow_clone()), [0.0, 1.0]);
    }
}
