//! The fused forward pass over a batch of pairs packed end to end (no padding).

use gemm::Parallelism;
use rayon::prelude::*;

use super::gemm::{SharedMut, View, matmul, project};
use super::int8;
use super::kernels::{activate, add_bias, add_norm, softmax_rows};
use super::layout::{Dense, Layer, Norm, dense_row};
use crate::config::Activation;
use crate::engine::Precision;
use crate::rules;
use crate::tokenizer::Encoded;

/// A read-only copy of a [`crate::model::CrossEncoder`]'s weights laid out for the CPU scoring path.
pub struct FastCrossEncoder {
    pub(super) word: Vec<f32>,
    pub(super) position: Vec<f32>,
    pub(super) token_type: Vec<f32>,
    pub(super) embedding_norm: Norm,
    pub(super) layers: Vec<Layer>,
    pub(super) pooler: Dense,
    pub(super) classifier: Dense,
    pub(super) hidden: usize,
    pub(super) heads: usize,
    pub(super) eps: f32,
    pub(super) activation: Activation,
    pub(super) precision: Precision,
    /// Scratch space of the last batch, taken by the next (a second concurrent caller
    /// allocates its own).
    pub(super) scratch: std::sync::Mutex<Buffers>,
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

/// Rows per rayon task for the element-wise passes: enough work to outweigh scheduling.
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

/// Which rows of a layer go on past attention. The score reads only each pair's [CLS] row of
/// the last layer's output, and everything after attention works row by row, so the last layer
/// attends from the [CLS] rows alone and runs its projections, norms and feed-forward on one
/// row per pair: a quarter of the encoder's multiply-adds at 3 layers, with the same result.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QueryRows {
    All,
    Cls,
}

/// Scratch buffers reused across the layers of one batch.
#[derive(Default)]
pub(super) struct Buffers {
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
    /// Ranking scores of already tokenised pairs ([`rules::ranking_score`]).
    pub fn score(&self, pairs: &[&Encoded]) -> Vec<f32> {
        let h = self.hidden;
        // After the last layer (run on [CLS] rows only) `hidden` holds one row per pair.
        self.encode(pairs, QueryRows::Cls, |hidden, _| {
            (0..pairs.len())
                .map(|row| {
                    let cls = &hidden[row * h..(row + 1) * h];
                    let pooled: Vec<f32> = dense_row(cls, &self.pooler)
                        .into_iter()
                        .map(f32::tanh)
                        .collect();
                    rules::ranking_score(&dense_row(&pooled, &self.classifier))
                })
                .collect()
        })
    }

    /// The mean of each sequence's last-layer token rows (sentence-transformers' mean pooling;
    /// the sequences are packed, so no padding enters the mean).
    pub fn mean_pooled(&self, sequences: &[&Encoded]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        self.encode(sequences, QueryRows::All, |hidden, starts| {
            sequences
                .iter()
                .zip(starts)
                .map(|(sequence, &start)| {
                    let len = sequence.ids.len();
                    let mut mean = vec![0.0f32; h];
                    for row in hidden[start * h..(start + len) * h].chunks_exact(h) {
                        mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
                    }
                    mean.iter_mut().for_each(|m| *m /= len.max(1) as f32);
                    mean
                })
                .collect()
        })
    }

    /// Runs the encoder over `pairs` packed end to end and hands the last layer's rows (every
    /// token's, or with `last_rows` Cls one per pair) and each pair's first row to `read`.
    fn encode<T>(
        &self,
        pairs: &[&Encoded],
        last_rows: QueryRows,
        read: impl FnOnce(&[f32], &[usize]) -> Vec<T>,
    ) -> Vec<T> {
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
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let rows = if i == last { last_rows } else { QueryRows::All };
            self.layer(layer, pairs, &starts, rows, &mut hidden, &mut buffers);
        }
        let out = if self.layers.is_empty() && last_rows == QueryRows::Cls {
            // No layer gathered the [CLS] rows: do it here.
            let cls: Vec<f32> = starts
                .iter()
                .flat_map(|&s| hidden[s * h..(s + 1) * h].iter().copied())
                .collect();
            read(&cls, &starts)
        } else {
            read(&hidden, &starts)
        };
        buffers.hidden = hidden;
        if let Ok(mut kept) = self.scratch.try_lock() {
            *kept = buffers;
        }
        out
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
        rows: QueryRows,
        hidden: &mut Vec<f32>,
        buffers: &mut Buffers,
    ) {
        self.attention(layer, pairs, starts, rows, hidden, buffers);
        let tokens = match rows {
            QueryRows::All => hidden.len() / self.hidden,
            QueryRows::Cls => {
                keep_cls_rows(starts, self.hidden, layer, hidden, buffers);
                pairs.len()
            }
        };
        self.feed_forward(layer, tokens, hidden, buffers);
    }

    /// Self-attention of every (pair, head) into `buffers.context`: the `rows` of each pair.
    fn attention(
        &self,
        layer: &Layer,
        pairs: &[&Encoded],
        starts: &[usize],
        rows: QueryRows,
        hidden: &[f32],
        buffers: &mut Buffers,
    ) {
        let h = self.hidden;
        let tokens = hidden.len() / h;
        let heads = self.heads;
        let head_dim = h / heads;

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
                // Query rows of this pair and the context row the first of them writes.
                let (queries, out_row) = match rows {
                    QueryRows::All => (len, start),
                    QueryRows::Cls => (1, pair),
                };
                // SAFETY: every task reads Q, K, V of its own pair and head and writes only its
                // pair's rows and head's columns of `context`; the buffers outlive the loop.
                unsafe {
                    let head_view = |offset: usize| View {
                        ptr: qkv.get().add(start * stride + offset + head * head_dim),
                        row_stride: stride,
                    };
                    let qkv = [head_view(0), head_view(h), head_view(2 * h)];
                    let out = context.get().add(out_row * h + head * head_dim);
                    let shape = [queries, len, head_dim];
                    attend_head(qkv, shape, out, h, scores, inv_sums);
                }
            },
        );
    }

    /// Attention output with its residual and norm, then the feed-forward block with its
    /// residual and norm, over `tokens` rows; the result replaces `hidden`.
    fn feed_forward(
        &self,
        layer: &Layer,
        tokens: usize,
        hidden: &mut [f32],
        buffers: &mut Buffers,
    ) {
        let (h, eps) = (self.hidden, self.eps);
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

/// Keeps only the [CLS] rows, in pair order: the last layer's output needs no other row.
fn keep_cls_rows(
    starts: &[usize],
    h: usize,
    layer: &Layer,
    hidden: &mut Vec<f32>,
    buffers: &mut Buffers,
) {
    let pairs = starts.len();
    for (pair, &start) in starts.iter().enumerate() {
        hidden.copy_within(start * h..(start + 1) * h, pair * h);
    }
    hidden.truncate(pairs * h);
    for buffer in [&mut buffers.context, &mut buffers.attended] {
        buffer.truncate(pairs * h);
    }
    buffers.inner.truncate(pairs * layer.intermediate.d_out);
}

/// One head of one pair: `out[queries, head_dim] = softmax(Q K^T) V`, Q pre-scaled, rows of
/// `out` `out_stride` apart; `scores` and `inv_sums` are the task's scratch.
///
/// # Safety
/// The views must hold `queries` (Q) and `len` (K, V) rows of `head_dim` values, and `out` must
/// be writable for `queries` rows that no other task touches.
unsafe fn attend_head(
    [q, k, v]: [View; 3],
    [queries, len, head_dim]: [usize; 3],
    out: *mut f32,
    out_stride: usize,
    scores: &mut Vec<f32>,
    inv_sums: &mut Vec<f32>,
) {
    scores.resize(queries * len, 0.0);
    inv_sums.resize(queries, 0.0);
    let none = Parallelism::None;
    // SAFETY: the caller's contract covers every read and write below.
    unsafe {
        matmul(
            [queries, len, head_dim],
            scores.as_mut_ptr(),
            len,
            q,
            k,
            true,
            none,
        );
        softmax_rows(scores, len, inv_sums);
        let probs = View {
            ptr: scores.as_ptr(),
            row_stride: len,
        };
        // The softmax's division is folded into the (shorter) context rows.
        matmul(
            [queries, head_dim, len],
            out,
            out_stride,
            probs,
            v,
            false,
            none,
        );
        for (row, &inv) in inv_sums.iter().enumerate() {
            let row = std::slice::from_raw_parts_mut(out.add(row * out_stride), head_dim);
            for x in row {
                *x *= inv;
            }
        }
    }
}
