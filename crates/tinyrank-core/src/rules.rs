//! The numeric rules of the network that both scoring engines follow: the burn model
//! (`model.rs`, tensors on any device) and the fused CPU forward (`fast/`, one row at a time).
//! A change here changes both; the parity tests hold them together.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate, relu};

use crate::config::Activation;

/// The factor on `Q K^T`: 1/sqrt(head_dim), rounded once from f64. Both engines apply it to
/// the query (len x width multiplies instead of len x len x heads).
pub fn attention_scale(head_dim: usize) -> f32 {
    (1.0 / (head_dim as f64).sqrt()) as f32
}

/// The ranking score of one pair's logits: the logit of a 1-logit head, `logit[1] - logit[0]`
/// of a 2-logit head (the log-odds of relevance, so it orders like softmax[1]).
pub fn ranking_score(logits: &[f32]) -> f32 {
    match logits {
        [score] => *score,
        [negative, positive, ..] => positive - negative,
        [] => f32::NAN,
    }
}

/// [`ranking_score`] over a batch's `[batch, labels]` logits.
pub fn ranking_scores(logits: Tensor<2>) -> Tensor<1> {
    let [batch, labels] = logits.dims();
    match labels {
        1 => logits.reshape([batch]),
        _ => {
            let positive = logits.clone().narrow(1, 1, 1);
            let negative = logits.narrow(1, 0, 1);
            (positive - negative).reshape([batch])
        }
    }
}

impl Activation {
    /// The feed-forward activation over a tensor (burn's kernels).
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_approximate(x),
            Activation::Relu => relu(x),
        }
    }
}

/// Exact GELU, `x Φ(x)`, through [`erf`].
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation (transformers' `gelu_new`).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    0.5 * x * (1.0 + inner.tanh())
}

/// `x.clamp(lo, hi)` for numbers (a NaN comes out as `hi`) as two comparisons, which vectorise on
/// every target: `f32::clamp`, `max` and `min` keep IEEE NaN rules, which wasm32's `f32.max`
/// does not match, so there they become calls to libm's fmaxf/fminf, one per element.
#[inline(always)]
pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x > lo { x } else { lo };
    if x < hi { x } else { hi }
}

/// erf to within 1e-6 of the exact function, in arithmetic only (so loops of it vectorise):
/// a rational fit on [-4, 4] (as in Eigen and XLA), where |erf| reaches 1 - 1.5e-8.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = clamp(x, -4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_600_5e-3;
    p = p * x2 + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329_4e-3;
    q = q * x2 + -1.426_474e-2;
    p / q
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_1e6_of_libm() {
        let mut worst = 0.0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf(x) - libm::erff(x)).abs());
        }
        assert!(worst < 1e-6, "max |erf - libm| = {worst}");
    }

    #[test]
    fn ranking_score_of_one_and_two_logits() {
        assert_eq!(ranking_score(&[1.5]), 1.5);
        assert_eq!(ranking_score(&[0.5, 2.0]), 1.5);
    }
}
