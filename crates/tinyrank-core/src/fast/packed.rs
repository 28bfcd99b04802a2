//! f32 projections against weights packed once, at load, for a vector micro-kernel (AVX-512,
//! AVX2 + FMA, or wasm32 `simd128`).
//!
//! A general GEMM (the `gemm` crate) packs both operands on every call; the weights of a
//! projection never change, so here they are packed once into panels of 16 columns, and each
//! token row is read in place. Each kernel call multiplies 6 rows by one panel over all of k
//! into 12 vector accumulators, so each output is written once.

use super::gemm::tiled;

/// Rows of one micro-kernel call (one broadcast each per step).
const MR: usize = 6;
/// Columns of one micro-kernel call: two vectors of eight f32.
const NR: usize = 16;
/// Token rows per rayon task: a multiple of MR.
const TASK_ROWS: usize = 48;

/// A `[k, n]` weight matrix packed as `[n / NR][k][NR]` (zero columns pad the last panel).
pub(super) struct PackedWeight {
    packed: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedWeight {
    pub(super) fn new(weight: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), k * n, "weight shape");
        let panels = n.div_ceil(NR);
        let mut packed = vec![0.0f32; panels * k * NR];
        for row in 0..k {
            for col in 0..n {
                packed[(col / NR) * k * NR + row * NR + col % NR] = weight[row * n + col];
            }
        }
        Self { packed, k, n }
    }
}

/// `out[rows, n] = input[rows, k] x weight` (no bias), on every core.
pub(super) fn matmul(input: &[f32], rows: usize, weight: &PackedWeight, out: &mut [f32]) {
    let (k, n) = (weight.k, weight.n);
    assert_eq!(input.len(), rows * k);
    assert_eq!(out.len(), rows * n);
    let isa = Isa::detect();
    let panel_len = k * NR;
    tiled(out, n, TASK_ROWS, |panel, first_row, rows_here, tile| {
        // A short last block repeats its last row; those results are dropped.
        let lhs: [&[f32]; MR] = std::array::from_fn(|r| {
            let row = first_row + r.min(rows_here - 1);
            &input[row * k..][..k]
        });
        let weights = &weight.packed[panel * panel_len..][..panel_len];
        kernel(isa, &lhs, weights, tile);
    });
}

/// Whether this CPU (or wasm32 build) has a vector kernel for packed weights; without one the
/// `gemm` crate, which packs per call, is faster than the portable kernel.
pub(super) fn has_vector_kernel() -> bool {
    Isa::detect() != Isa::Portable
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The vector instructions of the kernel, best first, chosen once per product at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // each target builds only its own
enum Isa {
    /// AVX-512F: a panel row of NR = 16 columns is one vector.
    Avx512,
    Avx2Fma,
    /// wasm32 `simd128` (the build's target feature: WebAssembly cannot detect it at run time).
    Simd128,
    Portable,
}

impl Isa {
    fn detect() -> Self {
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            return Isa::Simd128;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if has_avx2_fma() {
            return Isa::Avx2Fma;
        }
        Isa::Portable
    }
}

/// `tile[r][c] = lhs[r] . weights[:, c]` for MR rows and one packed panel of NR columns.
fn kernel(isa: Isa, lhs: &[&[f32]; MR], weights: &[f32], tile: &mut [[f32; NR]; MR]) {
    let k = lhs[0].len();
    assert!(lhs.iter().all(|row| row.len() == k) && weights.len() == k * NR);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F, and the slices have the lengths asserted above.
        Isa::Avx512 => unsafe { kernel_avx512(lhs, weights, tile) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA, and the slices have the lengths asserted above.
        Isa::Avx2Fma => unsafe { kernel_avx2(lhs, weights, tile) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => kernel_simd128(lhs, weights, tile),
        _ => kernel_portable(lhs, weights, tile),
    }
}

/// The reference kernel (products rounded before they are added, unlike FMA).
fn kernel_portable(lhs: &[&[f32]; MR], weights: &[f32], tile: &mut [[f32; NR]; MR]) {
    *tile = [[0.0; NR]; MR];
    for (t, w) in weights.chunks_exact(NR).enumerate() {
        for (values, row) in tile.iter_mut().zip(lhs) {
            let x = row[t];
            for (value, &w) in values.iter_mut().zip(w) {
                *value += x * w;
            }
        }
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA; every `lhs` row must hold k values and `weights` k * NR.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(lhs: &[&[f32]; MR], weights: &[f32], tile: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let k = lhs[0].len();
    let rows = lhs.map(<[f32]>::as_ptr);
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    let mut w = weights.as_ptr();
    for t in 0..k {
        // SAFETY: t < k, and each step reads NR weights, in bounds by the caller's contract.
        unsafe {
            let left = _mm256_loadu_ps(w);
            let right = _mm256_loadu_ps(w.add(8));
            for r in 0..MR {
                let x = _mm256_set1_ps(*rows[r].add(t));
                acc[2 * r] = _mm256_fmadd_ps(x, left, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(x, right, acc[2 * r + 1]);
            }
            w = w.add(NR);
        }
    }
    for (r, values) in tile.iter_mut().enumerate() {
        // SAFETY: each tile row holds NR = 16 values, two vectors.
        unsafe {
            _mm256_storeu_ps(values.as_mut_ptr(), acc[2 * r]);
            _mm256_storeu_ps(values.as_mut_ptr().add(8), acc[2 * r + 1]);
        }
    }
}

/// # Safety
/// The CPU must have AVX-512F; the slices as for [`kernel_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512(lhs: &[&[f32]; MR], weights: &[f32], tile: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let k = lhs[0].len();
    let rows = lhs.map(<[f32]>::as_ptr);
    let w = weights.as_ptr();
    // Even and odd steps of k go to separate accumulators: twelve FMA chains instead of six,
    // enough to hide the FMA latency on two units.
    let (mut even, mut odd) = ([_mm512_setzero_ps(); MR], [_mm512_setzero_ps(); MR]);
    let accumulate = |acc: &mut [__m512; MR], t: usize| {
        // SAFETY: callers pass `t < k`; each step reads NR weights and one value of each row,
        // in bounds by the caller's contract.
        unsafe {
            let weights = _mm512_loadu_ps(w.add(t * NR));
            for (r, sum) in acc.iter_mut().enumerate() {
                *sum = _mm512_fmadd_ps(_mm512_set1_ps(*rows[r].add(t)), weights, *sum);
            }
        }
    };
    for t in (0..k - k % 2).step_by(2) {
        accumulate(&mut even, t);
        accumulate(&mut odd, t + 1);
    }
    if k % 2 == 1 {
        accumulate(&mut even, k - 1);
    }
    for (r, values) in tile.iter_mut().enumerate() {
        // SAFETY: each tile row holds NR = 16 values, one vector.
        unsafe { _mm512_storeu_ps(values.as_mut_ptr(), _mm512_add_ps(even[r], odd[r])) };
    }
}

/// Browsers map simd128 onto the 16 vector registers of x86-64 (one kept as scratch), and it
/// has no FMA: the tile is done in three passes of two rows by the panel's 16 columns, eight
/// accumulators, four weight vectors, a broadcast and a product, so that nothing spills.
/// Products are rounded before they are added, as in the portable kernel. Raw pointers: bounds
/// checks in this loop cost as much as the arithmetic.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn kernel_simd128(lhs: &[&[f32]; MR], weights: &[f32], tile: &mut [[f32; NR]; MR]) {
    use std::arch::wasm32::*;
    const ROWS: usize = 2;
    const VECTORS: usize = NR / 4;
    let k = lhs[0].len();
    assert!(lhs.iter().all(|row| row.len() == k) && weights.len() == k * NR);
    for group in 0..MR / ROWS {
        let rows: [*const f32; ROWS] = std::array::from_fn(|r| lhs[ROWS * group + r].as_ptr());
        let mut acc = [[f32x4_splat(0.0); VECTORS]; ROWS];
        // SAFETY: each step reads the panel's NR weights and one value of each row: in bounds
        // for t < k by the lengths asserted above.
        unsafe {
            let mut w = weights.as_ptr().cast::<v128>();
            for t in 0..k {
                let panel: [v128; VECTORS] = std::array::from_fn(|v| v128_load(w.add(v)));
                for r in 0..ROWS {
                    let x = v128_load32_splat(rows[r].add(t).cast());
                    for v in 0..VECTORS {
                        acc[r][v] = f32x4_add(acc[r][v], f32x4_mul(x, panel[v]));
                    }
                }
                w = w.add(VECTORS);
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            let out = tile[ROWS * group + r].as_mut_ptr().cast::<v128>();
            for (v, &sum) in sums.iter().enumerate() {
                // SAFETY: the tile row holds NR = 4 * VECTORS f32.
                unsafe { v128_store(out.add(v), sum) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Production packs only on AVX2 + FMA CPUs, so the portable kernel is held to the vector
    /// kernels here (equal: every product and sum below is exact in f32, in any order).
    #[test]
    fn vector_kernels_equal_the_portable_kernel() {
        let k = 77;
        let rows: Vec<Vec<f32>> = (0..MR)
            .map(|r| {
                (0..k)
                    .map(|t| ((r * 31 + t * 7) % 17) as f32 - 8.0)
                    .collect()
            })
            .collect();
        let lhs: [&[f32]; MR] = std::array::from_fn(|r| rows[r].as_slice());
        let weights: Vec<f32> = (0..k * NR).map(|i| ((i % 13) as f32 - 6.0) / 4.0).collect();
        let mut reference = [[0.0; NR]; MR];
        kernel_portable(&lhs, &weights, &mut reference);
        #[cfg(target_arch = "x86_64")]
        let isas = [
            (Isa::Avx512, std::arch::is_x86_feature_detected!("avx512f")),
            (Isa::Avx2Fma, has_avx2_fma()),
        ];
        #[cfg(target_arch = "wasm32")]
        let isas = [(Isa::Simd128, Isa::detect() == Isa::Simd128)];
        #[cfg(not(any(target_arch = "x86_64", target_arch = "wasm32")))]
        let isas: [(Isa, bool); 0] = [];
        for (isa, present) in isas {
            if present {
                let mut fast = [[0.0; NR]; MR];
                kernel(isa, &lhs, &weights, &mut fast);
                assert_eq!(fast, reference, "{isa:?}");
            }
        }
    }

    #[test]
    fn packed_product_equals_the_plain_product() {
        // Odd sizes: rows not a multiple of MR or of TASK_ROWS, n not of NR.
        let (m, k, n) = (53, 29, 37);
        let input: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 8.0)
            .collect();
        let weight: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) / 16.0)
            .collect();
        let mut out = vec![0.0; m * n];
        matmul(&input, m, &PackedWeight::new(&weight, k, n), &mut out);
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|t| input[i * k + t] * weight[t * n + j]).sum();
                let got = out[i * n + j];
                assert!((got - exact).abs() <= 1e-4, "[{i}, {j}]: {got} vs {exact}");
            }
        }
    }
}
