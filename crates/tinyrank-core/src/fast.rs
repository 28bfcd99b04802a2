//! The CPU scoring path: the cross-encoder's forward pass, fused by hand and without padding.
//!
//! burn's flex backend runs the model op by op on padded batches and keeps most element-wise
//! work on one thread. Scoring needs none of that generality, so this path packs a batch's pairs
//! end to end (no padding at all), runs each projection as one multithreaded product over every
//! token (Q, K and V as one) against weights laid out once at load (`packed.rs`; the `gemm`
//! crate, which flex uses too, on CPUs without AVX2 + FMA and for attention), fuses bias + GELU
//! and bias + residual + LayerNorm into one pass per row, and computes attention per (pair, head)
//! in parallel. The burn model stays the definition: weights are read from it once, and the tests
//! hold these scores to the burn model's within 1e-4. [`Precision::Int8`] runs the projections
//! in 8-bit integers instead (`int8.rs`).

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use crate::config::Activation;
use crate::model::CrossEncoder;
use crate::tokenizer::Encoded;

/// A linear layer as a row-major `[d_in, d_out]` matrix and its bias.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
    /// The weight packed for the f32 micro-kernel (encoder layers, CPUs with AVX2 + FMA).
    packed: Option<packed::PackedWeight>,
    /// The weight in 8 bits, when the encoder layers run in [`Precision::Int8`].
    quantized: Option<int8::QuantizedWeight>,
}

impl Dense {
    /// A layer in plain row-major layout (as the pooler and head stay).
    fn new(weight: Vec<f32>, bias: Vec<f32>, d_in: usize, d_out: usize) -> Self {
        Self {
            weight,
            bias,
            d_in,
            d_out,
            packed: None,
            quantized: None,
        }
    }

    /// Lays the weight out for the encoder layers' projections.
    fn prepare(mut self, precision: Precision) -> Self {
        let (k, n) = (self.d_in, self.d_out);
        match precision {
            Precision::Int8 => {
                self.quantized = Some(int8::QuantizedWeight::new(&self.weight, k, n));
            }
            Precision::F32 if packed::has_avx2_fma() => {
                self.packed = Some(packed::PackedWeight::new(&self.weight, k, n));
            }
            Precision::F32 => return self,
        }
        // Only the laid-out copy is read from now on.
        self.weight = Vec::new();
        self
    }
}

/// The arithmetic of the encoder layers' projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 throughout: the burn model's scores within 1e-4.
    #[default]
    F32,
    /// Projections in 8-bit integers (weights per column, activations per token, both
    /// quantised; see `fast/int8.rs`); attention, normalisation and the head stay f32. Scores
    /// move by a few hundredths; rankings barely.
    Int8,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value side by side (`[hidden, 3 hidden]`), the query pre-scaled by
    /// 1/sqrt(head_dim).
    qkv: Dense,
    attention_output: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// A read-only copy of a [`CrossEncoder`]'s weights laid out for the CPU scoring path.
pub struct FastCrossEncoder {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    pooler: Dense,
    classifier: Dense,
    hidden: usize,
    heads: usize,
    eps: f32,
    activation: Activation,
    precision: Precision,
    /// Scratch space of the last batch, taken by the next (a second concurrent caller
    /// allocates its own).
    scratch: std::sync::Mutex<Buffers>,
}

impl std::fmt::Debug for FastCrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FastCrossEncoder({} layers, {} hidden, {:?})",
            self.layers.len(),
            self.hidden,
            self.precision
        )
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data after convert")
}

fn param<const D: usize>(param: &Param<Tensor<D>>) -> Vec<f32> {
    values(param.val())
}

fn dense(linear: &Linear) -> Dense {
    let [d_in, d_out] = linear.weight.val().dims();
    let bias = linear.bias.as_ref().map_or_else(|| vec![0.0; d_out], param);
    Dense::new(param(&linear.weight), bias, d_in, d_out)
}

fn norm(layer_norm: &LayerNorm) -> Norm {
    let gamma = param(&layer_norm.gamma);
    let beta = layer_norm
        .beta
        .as_ref()
        .map_or_else(|| vec![0.0; gamma.len()], param);
    Norm { gamma, beta }
}

/// Shares a buffer between rayon tasks that each write a disjoint part of it.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// A method, so that closures capture the whole (Sync) wrapper, not its raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Defines `fn $name` three times over the same body: for AVX-512, for AVX2 + FMA and for the
/// build's baseline, and picks at run time. The element-wise kernels below are written so that
/// LLVM vectorises them (no calls, lane-wise accumulators); the wider the target, the more lanes.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
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

mod int8;
mod packed;

/// Lanes of the partial sums, so that a sum vectorises (floats do not reassociate otherwise).
const LANES: usize = 16;

/// A row-major f32 matrix inside a larger buffer: its first element and its row stride (columns
/// are contiguous). Attention reads each head's Q, K and V this way out of the packed QKV rows.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    row_stride: usize,
}

/// `dst[m, n] = lhs[m, k] x rhs[k, n]`; `rhs_transposed` reads `rhs` as the transpose of an
/// `[n, k]` view (K for Q K^T).
///
/// # Safety
/// Every view must address an in-bounds matrix of its shape, and `dst` must not overlap them.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
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
fn project(
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
fn tiled<const MR: usize, const NR: usize>(
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

/// Rows per rayon task for the element-wise passes: enough work to outweigh scheduling.
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

simd_dispatch! {
    /// `row = LayerNorm(row + bias + residual)` with burn's biased variance.
    fn add_norm(row: &mut [f32], bias: &[f32], residual: &[f32], norm: &Norm, eps: f32) {
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
    fn softmax_rows(scores: &mut [f32], len: usize, inv_sums: &mut [f32]) {
        for (row, inv_sum) in scores.chunks_mut(len).zip(inv_sums.iter_mut()) {
            let mut maxes = [f32::NEG_INFINITY; LANES];
            for chunk in row.chunks(LANES) {
                for (m, x) in maxes.iter_mut().zip(chunk) {
                    *m = m.max(*x);
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

/// erf to within 1e-6 of the exact function, in arithmetic only (so loops of it vectorise):
/// a rational fit on [-4, 4] (as in Eigen and XLA), where |erf| reaches 1 - 1.5e-8.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
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

/// e^x to about 2 ulp for x <= 0 (softmax's range), in arithmetic only: Cephes' expf.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
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
fn round_to_bits(x: f32) -> u32 {
    (x + 12_582_912.0).to_bits() & 0x3f_ffff
}

simd_dispatch! {
    fn activate(row: &mut [f32], bias: &[f32], activation: Activation) {
        match activation {
            Activation::Gelu => {
                for (x, b) in row.iter_mut().zip(bias) {
                    let v = *x + b;
                    *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                }
            }
            Activation::GeluTanh => {
                for (x, b) in row.iter_mut().zip(bias) {
                    let v = *x + b;
                    let inner = 0.797_884_6 * (v + 0.044_715 * v * v * v);
                    *x = 0.5 * v * (1.0 + inner.tanh());
                }
            }
            Activation::Relu => {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x = (*x + b).max(0.0);
                }
            }
        }
    }
}

simd_dispatch! {
    fn add_bias(row: &mut [f32], bias: &[f32]) {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
    }
}

/// Scratch buffers reused across the layers of one batch.
#[derive(Default)]
struct Buffers {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
    quantized: int8::QuantizedRows,
}

impl Buffers {
    /// Sizes every buffer for `tokens` rows. Kept between batches: fresh buffers this large
    /// come from the kernel as zeroed pages, which cost 5% of the time in profiles.
    fn resize(&mut self, tokens: usize, hidden: usize, ffn: usize) {
        self.hidden.resize(tokens * hidden, 0.0);
        self.qkv.resize(tokens * 3 * hidden, 0.0);
        self.context.resize(tokens * hidden, 0.0);
        self.attended.resize(tokens * hidden, 0.0);
        self.inner.resize(tokens * ffn, 0.0);
    }
}

impl FastCrossEncoder {
    pub fn from_model(model: &CrossEncoder, precision: Precision) -> Self {
        let hidden = model.hidden_size();
        let heads = model.num_heads().max(1);
        let scale = 1.0 / ((hidden / heads) as f32).sqrt();
        let layers = model
            .layers
            .iter()
            .map(|layer| {
                let (q, k, v) = (dense(&layer.query), dense(&layer.key), dense(&layer.value));
                let mut weight = Vec::with_capacity(hidden * 3 * hidden);
                for row in 0..hidden {
                    let span = row * hidden..(row + 1) * hidden;
                    weight.extend(q.weight[span.clone()].iter().map(|w| w * scale));
                    weight.extend_from_slice(&k.weight[span.clone()]);
                    weight.extend_from_slice(&v.weight[span]);
                }
                let mut bias: Vec<f32> = q.bias.iter().map(|b| b * scale).collect();
                bias.extend_from_slice(&k.bias);
                bias.extend_from_slice(&v.bias);
                Layer {
                    qkv: Dense::new(weight, bias, hidden, 3 * hidden).prepare(precision),
                    attention_output: dense(&layer.attention_output).prepare(precision),
                    attention_norm: norm(&layer.attention_norm),
                    intermediate: dense(&layer.intermediate).prepare(precision),
                    output: dense(&layer.output).prepare(precision),
                    output_norm: norm(&layer.output_norm),
                }
            })
            .collect();
        Self {
            word: param(&model.embeddings.word.weight),
            position: param(&model.embeddings.position.weight),
            token_type: param(&model.embeddings.token_type.weight),
            embedding_norm: norm(&model.embeddings.layer_norm),
            layers,
            pooler: dense(&model.pooler),
            classifier: dense(&model.classifier),
            hidden,
            heads,
            eps: model.layer_norm_eps as f32,
            activation: model.activation(),
            precision,
            scratch: Default::default(),
        }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Ranking scores of already tokenised pairs (as [`crate::model::ranking_scores`]).
    pub fn score(&self, pairs: &[&Encoded]) -> Vec<f32> {
        if pairs.is_empty() {
            return Vec::new();
        }
        let h = self.hidden;
        let starts: Vec<usize> = pairs
            .iter()
            .scan(0, |at, p| {
                let start = *at;
                *at += p.ids.len();
                Some(start)
            })
            .collect();
        let tokens: usize = pairs.iter().map(|p| p.ids.len()).sum();

        let mut buffers = self
            .scratch
            .try_lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default();
        let ffn = self.layers.first().map_or(0, |l| l.intermediate.d_out);
        buffers.resize(tokens, h, ffn);
        let mut hidden = std::mem::take(&mut buffers.hidden);
        self.embed(pairs, &mut hidden);
        for layer in &self.layers {
            self.layer(layer, pairs, &starts, &mut hidden, &mut buffers);
        }

        // Pooler and head on each pair's [CLS] row: small, so plain loops.
        let scores = starts
            .iter()
            .map(|&start| {
                let cls = &hidden[start * h..(start + 1) * h];
                let pooled: Vec<f32> = dense_row(cls, &self.pooler)
                    .into_iter()
                    .map(f32::tanh)
                    .collect();
                let logits = dense_row(&pooled, &self.classifier);
                match logits[..] {
                    [score] => score,
                    _ => logits[1] - logits[0],
                }
            })
            .collect();
        buffers.hidden = hidden;
        if let Ok(mut kept) = self.scratch.try_lock() {
            *kept = buffers;
        }
        scores
    }

    /// Word + position + token-type embeddings, then LayerNorm, into `out` (`[tokens, hidden]`).
    fn embed(&self, pairs: &[&Encoded], out: &mut [f32]) {
        let h = self.hidden;
        let mut rows: Vec<(u32, u32, usize)> = Vec::with_capacity(out.len() / h);
        for pair in pairs {
            for (position, (&id, &ty)) in pair.ids.iter().zip(&pair.type_ids).enumerate() {
                rows.push((id, ty, position));
            }
        }
        let zeros = vec![0.0f32; h];
        out.par_chunks_mut(h)
            .zip(rows.par_iter())
            .with_min_len(rows_per_task(h))
            .for_each(|(row, &(id, ty, position))| {
                let word = &self.word[id as usize * h..][..h];
                let pos = &self.position[position * h..][..h];
                let typ = &self.token_type[ty as usize * h..][..h];
                for (j, x) in row.iter_mut().enumerate() {
                    *x = word[j] + pos[j] + typ[j];
                }
                add_norm(row, &zeros, &zeros, &self.embedding_norm, self.eps);
            });
    }

    fn layer(
        &self,
        layer: &Layer,
        pairs: &[&Encoded],
        starts: &[usize],
        hidden: &mut [f32],
        buffers: &mut Buffers,
    ) {
        let h = self.hidden;
        let tokens = hidden.len() / h;
        let heads = self.heads;
        let head_dim = h / heads;
        let eps = self.eps;

        let quantized = &mut buffers.quantized;
        project(hidden, tokens, &layer.qkv, &mut buffers.qkv, quantized);
        buffers
            .qkv
            .par_chunks_mut(3 * h)
            .with_min_len(rows_per_task(3 * h))
            .for_each(|row| add_bias(row, &layer.qkv.bias));

        // Attention per (pair, head): scores = Q K^T (Q pre-scaled), softmax, context = P V.
        let qkv = SharedMut(buffers.qkv.as_mut_ptr());
        let context = SharedMut(buffers.context.as_mut_ptr());
        let stride = 3 * h;
        (0..pairs.len() * heads).into_par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(scores, inv_sums): &mut (Vec<f32>, Vec<f32>), task| {
                let (pair, head) = (task / heads, task % heads);
                let len = pairs[pair].ids.len();
                let start = starts[pair];
                scores.resize(len * len, 0.0);
                inv_sums.resize(len, 0.0);
                // SAFETY: every task reads Q, K, V of its own pair and head and writes only its
                // pair's rows and head's columns of `context`; the buffers outlive the loop.
                unsafe {
                    let head_view = |offset: usize| View {
                        ptr: qkv.get().add(start * stride + offset + head * head_dim),
                        row_stride: stride,
                    };
                    let (q, k, v) = (head_view(0), head_view(h), head_view(2 * h));
                    let none = Parallelism::None;
                    matmul(
                        [len, len, head_dim],
                        scores.as_mut_ptr(),
                        len,
                        q,
                        k,
                        true,
                        none,
                    );
                    softmax_rows(scores, len, inv_sums);
                    let out = context.get().add(start * h + head * head_dim);
                    let probs = View {
                        ptr: scores.as_ptr(),
                        row_stride: len,
                    };
                    matmul([len, head_dim, len], out, h, probs, v, false, none);
                    for (row, &inv) in inv_sums.iter().enumerate() {
                        let row = std::slice::from_raw_parts_mut(out.add(row * h), head_dim);
                        for x in row {
                            *x *= inv;
                        }
                    }
                }
            },
        );

        project(
            &buffers.context,
            tokens,
            &layer.attention_output,
            &mut buffers.attended,
            &mut buffers.quantized,
        );
        buffers
            .attended
            .par_chunks_mut(h)
            .zip(hidden.par_chunks(h))
            .with_min_len(rows_per_task(h))
            .for_each(|(row, residual)| {
                add_norm(
                    row,
                    &layer.attention_output.bias,
                    residual,
                    &layer.attention_norm,
                    eps,
                )
            });

        let ffn = layer.intermediate.d_out;
        project(
            &buffers.attended,
            tokens,
            &layer.intermediate,
            &mut buffers.inner,
            &mut buffers.quantized,
        );
        let activation = self.activation;
        buffers
            .inner
            .par_chunks_mut(ffn)
            .with_min_len(rows_per_task(ffn))
            .for_each(|row| activate(row, &layer.intermediate.bias, activation));

        project(
            &buffers.inner,
            tokens,
            &layer.output,
            hidden,
            &mut buffers.quantized,
        );
        hidden
            .par_chunks_mut(h)
            .zip(buffers.attended.par_chunks(h))
            .with_min_len(rows_per_task(h))
            .for_each(|(row, residual)| {
                add_norm(row, &layer.output.bias, residual, &layer.output_norm, eps)
            });
    }
}

/// One row through a small dense layer.
fn dense_row(input: &[f32], dense: &Dense) -> Vec<f32> {
    let mut out = dense.bias.clone();
    for (i, &x) in input.iter().enumerate() {
        let weights = &dense.weight[i * dense.d_out..(i + 1) * dense.d_out];
        for (o, w) in out.iter_mut().zip(weights) {
            *o += x * w;
        }
    }
    out
}

#[cfg(test)]
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
