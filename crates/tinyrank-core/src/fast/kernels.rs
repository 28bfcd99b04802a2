//! Element-wise kernels of the fused forward: LayerNorm with bias and residual, softmax,
//! activation, bias. Written so that LLVM vectorises them (no calls, lane-wise accumulators) and
//! compiled per target feature level by [`simd_dispatch!`]; this is the part of the fused path
//! that differs per target.

use super::layout::Norm;
use crate::config::Activation;
use crate::rules::{clamp, gelu_erf, gelu_tanh};

/// Defines `fn $name` three times over the same body: for AVX-512, for AVX2 + FMA and for the
/// build's baseline, and picks at run time. The element-wise kernels below are written so that
/// LLVM vectorises them (no calls, lane-wise accumulators); the wider the target, the more lanes.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features v4 was compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for v3.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body
        }
    };
}

/// Lanes of the partial sums, so that a sum vectorises (floats do not reassociate otherwise).
pub(super) const LANES: usize = 16;

simd_dispatch! {
    /// `row = LayerNorm(row + bias + residual)` with burn's biased variance.
    pub(super) fn add_norm(row: &mut [f32], bias: &[f32], residual: &[f32], norm: &Norm, eps: f32) {
        let n = row.len();
        for ((x, b), r) in row.iter_mut().zip(bias).zip(residual) {
            *x += b + r;
        }
        let mean = sum(row) / n as f32;
        let mut squares = [0.0f32; LANES];
        for chunk in row.chunks(LANES) {
            for (s, x) in squares.iter_mut().zip(chunk) {
                let d = x - mean;
                *s += d * d;
            }
        }
        let var: f32 = squares.iter().sum::<f32>() / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
            *x = (*x - mean) * inv * g + b;
        }
    }
}

#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for chunk in values.chunks(LANES) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
}

simd_dispatch! {
    /// Softmax over each row of `len` scores, in place, but unnormalised: each row's 1/sum goes
    /// to `inv_sums`, applied later to the (head_dim-wide, not len-wide) context rows.
    pub(super) fn softmax_rows(scores: &mut [f32], len: usize, inv_sums: &mut [f32]) {
        for (row, inv_sum) in scores.chunks_mut(len).zip(inv_sums.iter_mut()) {
            let mut maxes = [f32::NEG_INFINITY; LANES];
            for chunk in row.chunks(LANES) {
                for (m, x) in maxes.iter_mut().zip(chunk) {
                    // A comparison, not f32::max: see rules::clamp.
                    *m = if *x > *m { *x } else { *m };
                }
            }
            let max = maxes.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            // Exponentials and their sum in one pass over the row.
            let mut sums = [0.0f32; LANES];
            for chunk in row.chunks_mut(LANES) {
                for (s, x) in sums.iter_mut().zip(chunk) {
                    *x = exp(*x - max);
                    *s += *x;
                }
            }
            *inv_sum = 1.0 / sums.iter().sum::<f32>();
        }
    }
}

/// e^x to about 2 ulp for x <= 0 (softmax's range), in arithmetic only: Cephes' expf.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let x = clamp(x, -87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4 * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(round_to_bits(n + 127.0) << 23)
}

/// `x` (0 <= x < 2^22) rounded to the nearest integer, ties to even: adding 1.5 x 2^23 leaves
/// that integer in the low mantissa bits. Unlike `as u32`, which saturates and so compiles to a
/// scalar conversion per lane, this stays in vector registers.
#[inline(always)]
pub(super) fn round_to_bits(x: f32) -> u32 {
    (x + 12_582_912.0).to_bits() & 0x3f_ffff
}

simd_dispatch! {
    pub(super) fn activate(row: &mut [f32], bias: &[f32], activation: Activation) {
        match activation {
            Activation::Gelu => {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x = gelu_erf(*x + b);
                }
            }
            Activation::GeluTanh => {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x = gelu_tanh(*x + b);
                }
            }
            Activation::Relu => {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x = clamp(*x + b, 0.0, f32::INFINITY);
                }
            }
        }
    }
}

simd_dispatch! {
    pub(super) fn add_bias(row: &mut [f32], bias: &[f32]) {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_for_softmax_inputs() {
        let mut worst = 0.0f32;
        for i in 0..=200_000 {
            let x = -(i as f32) * 4e-4;
            let exact = x.exp();
            worst = worst.max((exp(x) - exact).abs() / exact);
        }
        assert!(worst < 5e-7, "max relative error {worst}");
    }
}
