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
