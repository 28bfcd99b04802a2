//! 8-bit integer projections for the CPU scoring path (`Precision::Int8`).
//!
//! Weights are quantised once, symmetrically per output column; activations per token row,
//! asymmetrically to unsigned bytes, just before each projection. The product runs in integers:
//! on AVX2 `vpmaddubsw` multiplies 32 u8 x i8 pairs at once and adds neighbours into i16,
//! `vpmaddwd` widens those to i32; on AVX-512 VNNI `vpdpbusd` does both for 64 pairs (chosen at
//! run time, same sums); wasm32 `simd128` widens both to i16 and uses `i32x4.dot_i16x8_s`
//! (same sums again). Two products summed reach 2 x 255 x 64 = 32,640, inside the
//! i16 that `vpmaddubsw` saturates at, which is why weights get 7 bits (+-64) and not 8. The
//! zero point comes out afterwards through the weights' column sums:
//! `x . w = s_x s_w (q_x . q_w - z_x sum(q_w))`. Attention, LayerNorm, GELU and the head stay f32.

use rayon::prelude::*;

use super::gemm::tiled;
use super::kernels::{LANES, round_to_bits};
use crate::rules::clamp;

/// Rows of one micro-kernel call (one broadcast each per step).
const MR: usize = 4;
/// Columns of one micro-kernel call: two vectors of eight i32.
const NR: usize = 16;
/// Largest weight magnitude after quantisation (see the module comment).
const WEIGHT_MAX: f32 = 64.0;
/// Token rows per rayon task: a multiple of MR, and enough work per weight panel pass.
const TASK_ROWS: usize = 64;

fn round_up(value: usize, multiple: usize) -> usize {
    value.div_ceil(multiple) * multiple
}

/// A `[k, n]` weight matrix quantised to i8 per column and packed for the micro-kernel.
pub(super) struct QuantizedWeight {
    /// `[n / NR][k / 4][NR][4]`: per panel of 16 columns, four consecutive inputs per column, so
    /// one step of the kernel reads 64 contiguous bytes.
    packed: Vec<i8>,
    /// Per column: weight ~ scale * q.
    scales: Vec<f32>,
    /// Per column: the sum of its quantised weights (for the activations' zero point).
    column_sums: Vec<i32>,
    k: usize,
    n: usize,
}

impl QuantizedWeight {
    /// Quantises a row-major `[k, n]` matrix.
    pub(super) fn new(weight: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), k * n, "weight shape");
        let (k_padded, n_padded) = (round_up(k, 4), round_up(n, NR));
        let mut scales = vec![1.0f32; n_padded];
        for (col, scale) in scales.iter_mut().enumerate().take(n) {
            let max = (0..k).fold(0.0f32, |m, row| m.max(weight[row * n + col].abs()));
            if max > 0.0 {
                *scale = max / WEIGHT_MAX;
            }
        }
        let mut packed = vec![0i8; k_padded * n_padded];
        let mut column_sums = vec![0i32; n_padded];
        for row in 0..k {
            for col in 0..n {
                let q = (weight[row * n + col] / scales[col])
                    .round()
                    .clamp(-WEIGHT_MAX, WEIGHT_MAX) as i8;
                let at = (col / NR) * k_padded * NR + (row / 4) * NR * 4 + (col % NR) * 4 + row % 4;
                packed[at] = q;
                column_sums[col] += i32::from(q);
            }
        }
        Self {
            packed,
            scales,
            column_sums,
            k,
            n,
        }
    }

    fn k_padded(&self) -> usize {
        round_up(self.k, 4)
    }
}

/// Activations quantised to u8 per row and packed for the micro-kernel; kept between batches.
#[derive(Default)]
pub(super) struct QuantizedRows {
    /// `[rows / MR][k / 4][MR][4]`: per block of four rows, four consecutive inputs per row.
    packed: Vec<u8>,
    /// Per row: x ~ scale * (q - zero).
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

simd_dispatch! {
    /// Asymmetric u8 quantisation of one row over its range stretched to include 0, so that the
    /// zero point is a valid u8 and 0 stays exact; writes (scale, zero point). Only the first
    /// `row.len()` bytes of `out` are written (the packed layout's padding meets zero weights).
    fn quantize_row(row: &[f32], out: &mut [u8], params: &mut (f32, i32)) {
        let mut lows = [0.0f32; LANES];
        let mut highs = [0.0f32; LANES];
        for chunk in row.chunks(LANES) {
            for ((lo, hi), &x) in lows.iter_mut().zip(highs.iter_mut()).zip(chunk) {
                // Comparisons, not f32::min/max: see rules::clamp.
                *lo = if x < *lo { x } else { *lo };
                *hi = if x > *hi { x } else { *hi };
            }
        }
        let lo = lows.iter().fold(0.0f32, |m, &x| m.min(x));
        let hi = highs.iter().fold(0.0f32, |m, &x| m.max(x));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let inverse = 1.0 / scale;
        let zero = (-lo * inverse).round().clamp(0.0, 255.0);
        for (q, &x) in out.iter_mut().zip(row) {
            *q = round_to_bits(clamp(x * inverse + zero, 0.0, 255.0)) as u8;
        }
        *params = (scale, zero as i32);
    }
}

impl QuantizedRows {
    /// Quantises the row-major `[rows, k]` matrix `input`.
    pub(super) fn quantize(&mut self, input: &[f32], rows: usize, k: usize) {
        debug_assert_eq!(input.len(), rows * k);
        let k_padded = round_up(k, 4);
        let rows_padded = round_up(rows, MR);
        self.packed.resize(rows_padded * k_padded, 0);
        self.scales.resize(rows_padded, 0.0);
        self.zeros.resize(rows_padded, 0);
        self.packed
            .par_chunks_mut(MR * k_padded)
            .zip(self.scales.par_chunks_mut(MR))
            .zip(self.zeros.par_chunks_mut(MR))
            .enumerate()
            .with_min_len(TASK_ROWS / MR)
            .for_each_init(
                || vec![0u8; k_padded],
                |row_bytes, (block, ((packed, scales), zeros))| {
                    for r in 0..MR {
                        let row = block * MR + r;
                        let mut params = (0.0, 0);
                        if row < rows {
                            quantize_row(&input[row * k..][..k], row_bytes, &mut params);
                        } else {
                            row_bytes.fill(0);
                        }
                        (scales[r], zeros[r]) = params;
                        for (step, bytes) in row_bytes.chunks_exact(4).enumerate() {
                            packed[(step * MR + r) * 4..][..4].copy_from_slice(bytes);
                        }
                    }
                },
            );
    }
}

/// `out[rows, n] = dequantised(rows x weight)` (no bias), on every core. `rows` must have been
/// quantised from `rows` rows of `weight.k` columns.
pub(super) fn matmul(
    rows: &QuantizedRows,
    count: usize,
    weight: &QuantizedWeight,
    out: &mut [f32],
) {
    let (n, k_padded) = (weight.n, weight.k_padded());
    debug_assert_eq!(out.len(), count * n);
    debug_assert!(rows.packed.len() >= round_up(count, MR) * k_padded);
    let steps = k_padded / 4;
    let isa = Isa::detect();
    let (panel_len, block_len) = (k_padded * NR, k_padded * MR);
    tiled(out, n, TASK_ROWS, |panel, first_row, _, tile| {
        let block = first_row / MR;
        let dequantise = Dequantise {
            row_scales: &rows.scales[first_row..][..MR],
            row_zeros: &rows.zeros[first_row..][..MR],
            column_scales: &weight.scales[panel * NR..][..NR],
            column_sums: &weight.column_sums[panel * NR..][..NR],
        };
        let activations = &rows.packed[block * block_len..][..block_len];
        let weights = &weight.packed[panel * panel_len..][..panel_len];
        kernel(isa, activations, weights, steps, &dequantise, tile);
    });
}

/// The integer instructions the kernel uses, best first, chosen once per product at run time.
/// Every choice computes the same exact integer sums, so scores do not depend on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // each target builds only its own
enum Isa {
    /// AVX-512 VNNI: `vpdpbusd` multiplies 64 u8 x i8 pairs and adds each four into i32 in one
    /// instruction (no i16 step).
    Vnni512,
    /// AVX2: `vpmaddubsw` + `vpmaddwd` + `vpaddd`.
    Avx2,
    /// wasm32 `simd128` (the build's target feature): bytes widened to i16, `i32x4.dot_i16x8_s`.
    Simd128,
    Portable,
}

impl Isa {
    fn detect() -> Self {
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            return Isa::Simd128;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                return Isa::Vnni512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// This CPU's choices, best first (the tests hold each to the portable kernel).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut all = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.insert(0, Isa::Avx2);
            }
            if Isa::detect() == Isa::Vnni512 {
                all.insert(0, Isa::Vnni512);
            }
        }
        if Isa::detect() == Isa::Simd128 {
            all.insert(0, Isa::Simd128);
        }
        all
    }
}

/// What turns one tile's integer sums back into f32: the scale and zero point of its MR rows,
/// the scale and quantised-weight sum of its NR columns.
struct Dequantise<'a> {
    row_scales: &'a [f32],
    row_zeros: &'a [i32],
    column_scales: &'a [f32],
    column_sums: &'a [i32],
}

/// `tile[r][c] = activations[r, :] . weights[:, c]`, dequantised, for one block of MR rows and
/// one panel of NR columns, both packed.
fn kernel(
    isa: Isa,
    activations: &[u8],
    weights: &[i8],
    steps: usize,
    dequantise: &Dequantise,
    tile: &mut [[f32; NR]; MR],
) {
    assert!(activations.len() >= steps * MR * 4 && weights.len() >= steps * NR * 4);
    assert!(dequantise.row_scales.len() == MR && dequantise.row_zeros.len() == MR);
    assert!(dequantise.column_scales.len() == NR && dequantise.column_sums.len() == NR);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::detect found AVX-512F and VNNI; the slices have the lengths asserted above.
        Isa::Vnni512 => unsafe { kernel_vnni512(activations, weights, steps, dequantise, tile) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2, and the slices have the lengths asserted above.
        Isa::Avx2 => unsafe { kernel_avx2(activations, weights, steps, dequantise, tile) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => kernel_simd128(activations, weights, steps, dequantise, tile),
        _ => kernel_portable(activations, weights, steps, dequantise, tile),
    }
}

/// The reference kernel: the same sums in plain integer arithmetic (exact, since the value
/// ranges keep the AVX2 kernel's i16 steps from saturating), the same f32 operations after.
fn kernel_portable(
    activations: &[u8],
    weights: &[i8],
    steps: usize,
    dequantise: &Dequantise,
    tile: &mut [[f32; NR]; MR],
) {
    let mut sums = [[0i32; NR]; MR];
    for step in 0..steps {
        let a = &activations[step * MR * 4..][..MR * 4];
        let w = &weights[step * NR * 4..][..NR * 4];
        for (r, row_sums) in sums.iter_mut().enumerate() {
            for (c, sum) in row_sums.iter_mut().enumerate() {
                for t in 0..4 {
                    *sum += i32::from(a[r * 4 + t]) * i32::from(w[c * 4 + t]);
                }
            }
        }
    }
    let d = dequantise;
    for (r, (values, sums)) in tile.iter_mut().zip(&sums).enumerate() {
        for (c, (value, &sum)) in values.iter_mut().zip(sums).enumerate() {
            let exact = sum - d.row_zeros[r] * d.column_sums[c];
            *value = exact as f32 * (d.row_scales[r] * d.column_scales[c]);
        }
    }
}

/// # Safety
/// The CPU must have AVX2; `activations` must hold `steps * MR * 4` bytes, `weights`
/// `steps * NR * 4`, and `dequantise` MR row and NR column entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(
    activations: &[u8],
    weights: &[i8],
    steps: usize,
    dequantise: &Dequantise,
    tile: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); 2 * MR];
    let (mut a, mut w) = (activations.as_ptr(), weights.as_ptr());
    for _ in 0..steps {
        // SAFETY: each step reads MR * 4 activation bytes and NR * 4 weight bytes, in bounds by
        // the caller's contract.
        unsafe {
            let left = _mm256_loadu_si256(w.cast());
            let right = _mm256_loadu_si256(w.add(32).cast());
            for r in 0..MR {
                let x = _mm256_set1_epi32(a.add(4 * r).cast::<i32>().read_unaligned());
                let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(x, left), ones);
                acc[2 * r] = _mm256_add_epi32(acc[2 * r], pairs);
                let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(x, right), ones);
                acc[2 * r + 1] = _mm256_add_epi32(acc[2 * r + 1], pairs);
            }
            a = a.add(MR * 4);
            w = w.add(NR * 4);
        }
    }
    let d = dequantise;
    for (r, values) in tile.iter_mut().enumerate() {
        let zero = _mm256_set1_epi32(d.row_zeros[r]);
        let row_scale = _mm256_set1_ps(d.row_scales[r]);
        for half in 0..2 {
            // SAFETY: the column slices and each tile row hold NR = 16 values, two vectors.
            unsafe {
                let column_sums = _mm256_loadu_si256(d.column_sums.as_ptr().add(8 * half).cast());
                let column_scales = _mm256_loadu_ps(d.column_scales.as_ptr().add(8 * half));
                let exact =
                    _mm256_sub_epi32(acc[2 * r + half], _mm256_mullo_epi32(zero, column_sums));
                let scale = _mm256_mul_ps(row_scale, column_scales);
                let value = _mm256_mul_ps(_mm256_cvtepi32_ps(exact), scale);
                _mm256_storeu_ps(values.as_mut_ptr().add(8 * half), value);
            }
        }
    }
}

/// # Safety
/// The CPU must have AVX-512F and AVX-512 VNNI; the slices as for [`kernel_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn kernel_vnni512(
    activations: &[u8],
    weights: &[i8],
    steps: usize,
    dequantise: &Dequantise,
    tile: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    // One step's NR columns x 4 inputs are exactly one 512-bit vector. Even and odd steps go to
    // separate accumulators so that eight `vpdpbusd` chains, not four, hide its latency
    // (integer sums: the split does not change them).
    let (mut even, mut odd) = ([_mm512_setzero_si512(); MR], [_mm512_setzero_si512(); MR]);
    let (a, w) = (activations.as_ptr(), weights.as_ptr());
    let accumulate = |acc: &mut [__m512i; MR], step: usize| {
        // SAFETY: callers pass `step < steps`; each step reads MR * 4 activation bytes and
        // NR * 4 weight bytes, in bounds by the caller's contract.
        unsafe {
            let weights = _mm512_loadu_si512(w.add(step * NR * 4).cast());
            let row_bytes = a.add(step * MR * 4);
            for (r, sum) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_epi32(row_bytes.add(4 * r).cast::<i32>().read_unaligned());
                *sum = _mm512_dpbusd_epi32(*sum, x, weights);
            }
        }
    };
    for step in (0..steps - steps % 2).step_by(2) {
        accumulate(&mut even, step);
        accumulate(&mut odd, step + 1);
    }
    if steps % 2 == 1 {
        accumulate(&mut even, steps - 1);
    }
    let acc = [even, odd];
    let d = dequantise;
    // SAFETY: the column slices and each tile row hold NR = 16 values, one vector.
    unsafe {
        let column_sums = _mm512_loadu_si512(d.column_sums.as_ptr().cast());
        let column_scales = _mm512_loadu_ps(d.column_scales.as_ptr());
        for (r, values) in tile.iter_mut().enumerate() {
            let sums = _mm512_add_epi32(acc[0][r], acc[1][r]);
            let zero = _mm512_set1_epi32(d.row_zeros[r]);
            let exact = _mm512_sub_epi32(sums, _mm512_mullo_epi32(zero, column_sums));
            let scale = _mm512_mul_ps(_mm512_set1_ps(d.row_scales[r]), column_scales);
            let value = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), scale);
            _mm512_storeu_ps(values.as_mut_ptr(), value);
        }
    }
}

/// One step's 16 weight bytes for four columns are one vector; widened to i16, each half holds
/// two columns' four inputs, and `dot_i16x8` sums each adjacent pair, so a column's sum ends up
/// in two neighbouring i32 lanes, added at the end. The panel is done in quarters of four
/// columns so that the accumulators (four rows x two) stay in the 16 registers browsers use.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn kernel_simd128(
    activations: &[u8],
    weights: &[i8],
    steps: usize,
    dequantise: &Dequantise,
    tile: &mut [[f32; NR]; MR],
) {
    use std::arch::wasm32::*;
    let d = dequantise;
    for quarter in 0..4 {
        let mut acc = [i32x4_splat(0); 2 * MR];
        // SAFETY: each step reads 16 weight bytes at its quarter's offset inside the step's
        // NR * 4 and MR * 4 activation bytes: in bounds for `steps` by the caller's contract.
        unsafe {
            let mut w = weights.as_ptr().add(16 * quarter);
            let mut a = activations.as_ptr();
            for _ in 0..steps {
                let w16 = v128_load(w.cast());
                let (low, high) = (i16x8_extend_low_i8x16(w16), i16x8_extend_high_i8x16(w16));
                for r in 0..MR {
                    // The row's four bytes twice over, as u16: they meet both columns of a half.
                    let x = u16x8_extend_low_u8x16(v128_load32_splat(a.add(4 * r).cast()));
                    acc[2 * r] = i32x4_add(acc[2 * r], i32x4_dot_i16x8(x, low));
                    acc[2 * r + 1] = i32x4_add(acc[2 * r + 1], i32x4_dot_i16x8(x, high));
                }
                w = w.add(NR * 4);
                a = a.add(MR * 4);
            }
        }
        for (r, values) in tile.iter_mut().enumerate() {
            let mut lanes = [0i32; 8];
            // SAFETY: eight i32, two unaligned vectors.
            unsafe {
                v128_store(lanes.as_mut_ptr().cast(), acc[2 * r]);
                v128_store(lanes.as_mut_ptr().add(4).cast(), acc[2 * r + 1]);
            }
            for (j, pair) in lanes.chunks_exact(2).enumerate() {
                let c = 4 * quarter + j;
                let exact = pair[0] + pair[1] - d.row_zeros[r] * d.column_sums[c];
                values[c] = exact as f32 * (d.row_scales[r] * d.column_scales[c]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of values (no rand dependency in the core crate).
    fn values(count: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_kernel_equals_the_portable_kernel_at_the_extremes() {
        let steps = 97;
        // The largest magnitudes both ways: 255 x -64 and 255 x 64 in neighbouring inputs.
        let mut activations: Vec<u8> = (0..steps * MR * 4).map(|i| (i * 37 % 256) as u8).collect();
        activations[..64].fill(255);
        let mut weights: Vec<i8> = (0..steps * NR * 4)
            .map(|i| ((i * 11 % 129) as i32 - 64) as i8)
            .collect();
        weights[..64].fill(-64);
        weights[64..128].fill(64);
        let scales: Vec<f32> = (0..NR).map(|c| 1e-3 * (c + 1) as f32).collect();
        let sums: Vec<i32> = (0..NR as i32).map(|c| 1000 * c - 7000).collect();
        let dequantise = Dequantise {
            row_scales: &[0.5, 0.25, 2.0, 1e-4],
            row_zeros: &[0, 128, 255, 3],
            column_scales: &scales,
            column_sums: &sums,
        };
        let mut reference = [[0.0; NR]; MR];
        kernel_portable(&activations, &weights, steps, &dequantise, &mut reference);
        for isa in Isa::available() {
            let mut fast = [[0.0; NR]; MR];
            kernel(isa, &activations, &weights, steps, &dequantise, &mut fast);
            assert_eq!(fast, reference, "{isa:?}");
        }
    }

    #[test]
    fn int8_product_is_close_to_the_f32_product() {
        // Odd sizes: rows not a multiple of MR, k not of 4, n not of NR.
        let (m, k, n) = (70, 37, 21);
        let (input, weight) = (values(m * k, 1), values(k * n, 2));
        let quantized = QuantizedWeight::new(&weight, k, n);
        let mut rows = QuantizedRows::default();
        rows.quantize(&input, m, k);
        let mut out = vec![0.0; m * n];
        matmul(&rows, m, &quantized, &mut out);
        let (mut worst, mut total, mut magnitude) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|t| input[i * k + t] * weight[t * n + j]).sum();
                let error = (out[i * n + j] - exact).abs();
                worst = worst.max(error);
                total += error;
                magnitude += exact.abs();
            }
        }
        // Inputs in [-1, 1] over 37 terms give outputs of about 2 and, with steps of 1/128 and
        // 1/64, errors of about 0.02 (a misplaced byte would give errors of the outputs' size).
        let (mean_error, mean_magnitude) = (total / (m * n) as f32, magnitude / (m * n) as f32);
        assert!(worst < 0.1, "max |int8 - f32| = {worst}");
        assert!(
            mean_error < 0.02 * mean_magnitude.max(1.0),
            "mean error {mean_error} against mean |f32| {mean_magnitude}"
        );
        assert!(worst > 0.0, "quantisation should not be exact");
    }
}
