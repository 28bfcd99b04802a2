//! Matrix products of the fused forward: the projections (packed f32, int8, or the `gemm`
//! crate) and the per-head attention products, and the tiled driver the micro-kernels share.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::int8;
use super::layout::Dense;
use super::packed;

/// Shares a buffer between rayon tasks that each write a disjoint part of it.
#[derive(Clone, Copy)]
pub(super) struct SharedMut(pub(super) *mut f32);
// SAFETY: a SharedMut is only handed to rayon tasks that each write a disjoint part of the
// buffer (and read nothing another task writes) while the buffer outlives the parallel loop.
unsafe impl Send for SharedMut {}
// SAFETY: as for Send: no two tasks touch the same elements.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// A method, so that closures capture the whole (Sync) wrapper, not its raw field.
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// A row-major f32 matrix inside a larger buffer: its first element and its row stride (columns
/// are contiguous). Attention reads each head's Q, K and V this way out of the packed QKV rows.
#[derive(Clone, Copy)]
pub(super) struct View {
    pub ptr: *const f32,
    pub row_stride: usize,
}

/// `dst[m, n] = lhs[m, k] x rhs[k, n]`; `rhs_transposed` reads `rhs` as the transpose of an
/// `[n, k]` view (K for Q K^T).
///
/// # Safety
/// Every view must address an in-bounds matrix of its shape, and `dst` must not overlap them.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    rhs_transposed: bool,
    parallelism: Parallelism,
) {
    // The gemm crate has only scalar kernels on wasm32 (and one thread there anyway).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let _ = parallelism;
        // SAFETY: the caller's contract.
        return unsafe {
            simd128::matmul([m, n, k], dst, dst_row_stride, lhs, rhs, rhs_transposed)
        };
    }
    #[allow(unreachable_code)]
    let (rhs_cs, rhs_rs) = if rhs_transposed {
        (rhs.row_stride as isize, 1)
    } else {
        (1, rhs.row_stride as isize)
    };
    // SAFETY: the caller's contract; gemm computes dst = 0 * dst + 1 * lhs * rhs.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            false,
            lhs.ptr,
            1,
            lhs.row_stride as isize,
            rhs.ptr,
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The attention products on wasm32, where the `gemm` crate has only scalar kernels: small
/// (head_dim 32 or 64), so plain loops over simd128 vectors.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use std::arch::wasm32::*;

    use super::View;

    /// `a . b` over `len` f32.
    ///
    /// # Safety
    /// Both must address `len` readable f32.
    unsafe fn dot(a: *const f32, b: *const f32, len: usize) -> f32 {
        let mut acc = f32x4_splat(0.0);
        let mut t = 0;
        // SAFETY: t + 4 <= len: in bounds by the caller's contract.
        unsafe {
            while t + 4 <= len {
                let x = v128_load(a.add(t).cast());
                acc = f32x4_add(acc, f32x4_mul(x, v128_load(b.add(t).cast())));
                t += 4;
            }
        }
        let lanes = f32x4_add(acc, i32x4_shuffle::<2, 3, 0, 1>(acc, acc));
        let mut sum = f32x4_extract_lane::<0>(lanes) + f32x4_extract_lane::<1>(lanes);
        for t in t..len {
            // SAFETY: t < len.
            sum += unsafe { *a.add(t) * *b.add(t) };
        }
        sum
    }

    /// `dst += x * src` over `len` f32.
    ///
    /// # Safety
    /// `src` must address `len` readable f32 and `dst` `len` writable ones, not overlapping.
    unsafe fn axpy(dst: *mut f32, x: f32, src: *const f32, len: usize) {
        let splat = f32x4_splat(x);
        let mut t = 0;
        // SAFETY: t + 4 <= len (or t < len below): in bounds by the caller's contract.
        unsafe {
            while t + 4 <= len {
                let sum = f32x4_add(
                    v128_load(dst.add(t).cast()),
                    f32x4_mul(splat, v128_load(src.add(t).cast())),
                );
                v128_store(dst.add(t).cast(), sum);
                t += 4;
            }
            for t in t..len {
                *dst.add(t) += x * *src.add(t);
            }
        }
    }

    /// `out[j] = row . keys[j]` for four keys at once: four accumulators over `len`, then one
    /// transposing reduction, so each query vector loaded serves four keys.
    ///
    /// # Safety
    /// `row` and the four keys must address `len` readable f32 each, `out` four writable ones.
    unsafe fn dot4(row: *const f32, keys: [*const f32; 4], len: usize, out: *mut f32) {
        let mut acc = [f32x4_splat(0.0); 4];
        let mut t = 0;
        // SAFETY: t + 4 <= len, and t < len in the tail: in bounds by the caller's contract.
        unsafe {
            while t + 4 <= len {
                let x = v128_load(row.add(t).cast());
                for (a, key) in acc.iter_mut().zip(keys) {
                    *a = f32x4_add(*a, f32x4_mul(x, v128_load(key.add(t).cast())));
                }
                t += 4;
            }
            let [a, b, c, d] = acc;
            let ab = f32x4_add(
                i32x4_shuffle::<0, 4, 1, 5>(a, b),
                i32x4_shuffle::<2, 6, 3, 7>(a, b),
            );
            let cd = f32x4_add(
                i32x4_shuffle::<0, 4, 1, 5>(c, d),
                i32x4_shuffle::<2, 6, 3, 7>(c, d),
            );
            let sums = f32x4_add(
                i32x4_shuffle::<0, 1, 4, 5>(ab, cd),
                i32x4_shuffle::<2, 3, 6, 7>(ab, cd),
            );
            v128_store(out.cast(), sums);
            for t in t..len {
                for (j, key) in keys.iter().enumerate() {
                    *out.add(j) += *row.add(t) * *key.add(t);
                }
            }
        }
    }

    /// `out[0..16] = sum_t x[t] * rows[t][0..16]`, the 16 sums held in four vectors.
    ///
    /// # Safety
    /// `x` must address `len` f32, each of the `len` rows (`rows + t * stride`) 16, `out` 16.
    unsafe fn combine16(x: *const f32, rows: *const f32, stride: usize, len: usize, out: *mut f32) {
        let mut acc = [f32x4_splat(0.0); 4];
        // SAFETY: t < len: in bounds by the caller's contract.
        unsafe {
            for t in 0..len {
                let weight = v128_load32_splat(x.add(t).cast());
                let row = rows.add(t * stride);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = f32x4_add(*a, f32x4_mul(weight, v128_load(row.add(4 * v).cast())));
                }
            }
            for (v, a) in acc.iter().enumerate() {
                v128_store(out.add(4 * v).cast(), *a);
            }
        }
    }

    /// [`super::matmul`]'s contract, one thread.
    ///
    /// # Safety
    /// As for [`super::matmul`].
    pub(super) unsafe fn matmul(
        [m, n, k]: [usize; 3],
        dst: *mut f32,
        dst_row_stride: usize,
        lhs: View,
        rhs: View,
        rhs_transposed: bool,
    ) {
        for i in 0..m {
            // SAFETY: row i of dst and lhs, rows j (or t) of rhs: in bounds by the contract.
            unsafe {
                let out = dst.add(i * dst_row_stride);
                let row = lhs.ptr.add(i * lhs.row_stride);
                let rhs_row = |j: usize| rhs.ptr.add(j * rhs.row_stride);
                if rhs_transposed {
                    let whole = n - n % 4;
                    for j in (0..whole).step_by(4) {
                        let keys = [rhs_row(j), rhs_row(j + 1), rhs_row(j + 2), rhs_row(j + 3)];
                        dot4(row, keys, k, out.add(j));
                    }
                    for j in whole..n {
                        *out.add(j) = dot(row, rhs_row(j), k);
                    }
                } else {
                    let whole = n - n % 16;
                    for j in (0..whole).step_by(16) {
                        combine16(row, rhs.ptr.add(j), rhs.row_stride, k, out.add(j));
                    }
                    if whole < n {
                        std::slice::from_raw_parts_mut(out.add(whole), n - whole).fill(0.0);
                        for t in 0..k {
                            axpy(
                                out.add(whole),
                                *row.add(t),
                                rhs_row(t).add(whole),
                                n - whole,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `out[rows, d_out] = input[rows, d_in] x weight` (bias not added), on every core; in 8 bits
/// when the layer is quantised (`quantized` then receives the quantised input).
pub(super) fn project(
    input: &[f32],
    rows: usize,
    dense: &Dense,
    out: &mut [f32],
    quantized: &mut int8::QuantizedRows,
) {
    debug_assert_eq!(input.len(), rows * dense.d_in);
    debug_assert_eq!(out.len(), rows * dense.d_out);
    if let Some(weight) = &dense.quantized {
        quantized.quantize(input, rows, dense.d_in);
        int8::matmul(quantized, rows, weight, out);
        return;
    }
    if let Some(weight) = &dense.packed {
        packed::matmul(input, rows, weight, out);
        return;
    }
    let (k, n) = (dense.d_in, dense.d_out);
    let lhs = View {
        ptr: input.as_ptr(),
        row_stride: k,
    };
    let rhs = View {
        ptr: dense.weight.as_ptr(),
        row_stride: n,
    };
    let threads = Parallelism::Rayon(rayon::current_num_threads());
    // SAFETY: the slices hold exactly these row-major matrices.
    unsafe { matmul([rows, n, k], out.as_mut_ptr(), n, lhs, rhs, false, threads) };
}

/// Fills `out` (`[rows, n]`, row-major) tile by tile on every core: `kernel(panel, row, rows,
/// tile)` computes the MR x NR tile of column panel `panel` (columns `panel * NR..`) for the
/// `rows` (<= MR) rows from `row`. Each rayon task takes `task_rows` rows (a multiple of MR) and
/// walks them panel by panel, so that a panel of weights stays in cache while the task's rows
/// pass over it; only the tile's rows and columns inside `out` are copied there.
pub(super) fn tiled<const MR: usize, const NR: usize>(
    out: &mut [f32],
    n: usize,
    task_rows: usize,
    kernel: impl Fn(usize, usize, usize, &mut [[f32; NR]; MR]) + Sync,
) {
    debug_assert!(task_rows.is_multiple_of(MR) && out.len().is_multiple_of(n));
    out.par_chunks_mut(task_rows * n)
        .enumerate()
        .for_each(|(task, out)| {
            let rows = out.len() / n;
            let mut tile = [[0.0f32; NR]; MR];
            for panel in 0..n.div_ceil(NR) {
                let columns = panel * NR..(panel * NR + NR).min(n);
                for block in (0..rows).step_by(MR) {
                    let rows_here = MR.min(rows - block);
                    kernel(panel, task * task_rows + block, rows_here, &mut tile);
                    for (r, values) in tile.iter().enumerate().take(rows_here) {
                        out[(block + r) * n..][columns.clone()]
                            .copy_from_slice(&values[..columns.len()]);
                    }
                }
            }
        });
}
