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
pub(super) enum QueryRows {
    All,
    Cls,
}

/// One sequence's place in the packed batch: its first row, its rows, and how many of those
/// are keys (real tokens; the rest is padding, which only a traced batch has).
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    pub start: usize,
    pub rows: usize,
    pub keys: usize,
}

impl Span {
    /// Sequences packed end to end without padding.
    fn packed(sequences: &[&Encoded]) -> Vec<Span> {
        let mut at = 0;
        sequences
            .iter()
            .map(|s| {
                let span = Span {
                    start: at,
                    rows: s.ids.len(),
                    keys: s.ids.len(),
                };
                at += span.rows;
                span
            })
            .collect()
    }
}

/// What a traced forward keeps: the embedding output and each layer's output (`[tokens,
/// hidden]`), and each layer's pre-softmax scores (`[rows, keys]` per (sequence, head), in
/// `rows x rows` blocks whose padded key columns stay 0).
#[derive(Default)]
pub(super) struct Record {
    pub hidden_states: Vec<Vec<f32>>,
    pub attention_scores: Vec<Vec<f32>>,
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
        let spans = Span::packed(pairs);
        // After the last layer (run on [CLS] rows only) `hidden` holds one row per pair.
        self.encode(pairs, &spans, QueryRows::Cls, None, |hidden| {
            (0..pairs.len())
                .map(|row| rules::ranking_score(&self.logits(hidden, row)))
                .collect()
        })
    }

    /// The classifier's logits of the pair whose [CLS] row is `row` of `hidden`.
    pub(super) fn logits(&self, hidden: &[f32], row: usize) -> Vec<f32> {
        let h = self.hidden;
        let cls = &hidden[row * h..(row + 1) * h];
        let pooled: Vec<f32> = dense_row(cls, &self.pooler)
            .into_iter()
            .map(f32::tanh)
            .collect();
        dense_row(&pooled, &self.classifier)
    }

    /// The mean of each sequence's last-layer token rows (sentence-transformers' mean pooling;
    /// the sequences are packed, so no padding enters the mean).
    pub fn mean_pooled(&self, sequences: &[&Encoded]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let spans = Span::packed(sequences);
        self.encode(sequences, &spans, QueryRows::All, None, |hidden| {
            spans
                .iter()
                .map(|span| {
                    let mut mean = vec![0.0f32; h];
                    for row in hidden[span.start * h..(span.start + span.rows) * h].chunks_exact(h)
                    {
                        mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
                    }
                    mean.iter_mut().for_each(|m| *m /= span.rows.max(1) as f32);
                    mean
                })
                .collect()
        })
    }

    /// Runs the encoder over `sequences` laid out as `spans` and hands the last layer's rows
    /// (every token's, or with `last_rows` Cls one per sequence) to `read`; `record` keeps
    /// every hidden state and attention score on the way.
    pub(super) fn encode<T>(
        &self,
        sequences: &[&Encoded],
        spans: &[Span],
        last_rows: QueryRows,
        mut record: Option<&mut Record>,
        read: impl FnOnce(&[f32]) -> T,
    ) -> T {
        if spans.is_empty() {
            return read(&[]);
        }
        let h = self.hidden;
        let tokens: usize = spans.iter().map(|s| s.rows).sum();
        let mut buffers = self
            .scratch
            .try_lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default();
        let ffn = self.layers.first().map_or(0, |l| l.intermediate.d_out);
        buffers.resize(tokens, h, ffn);
        let mut hidden = std::mem::take(&mut buffers.hidden);
        self.embed(sequences, &mut hidden);
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(record) = record.as_deref_mut() {
                record.hidden_states.push(hidden.clone());
            }
            let rows = if i == last { last_rows } else { QueryRows::All };
            let scores = record.as_deref_mut().map(|r| {
                let size = spans.iter().map(|s| self.heads * s.rows * s.rows).sum();
                r.attention_scores.push(vec![0.0; size]);
                r.attention_scores
                    .last_mut()
                    .expect("just pushed")
                    .as_mut_slice()
            });
            self.layer(layer, spans, rows, &mut hidden, &mut buffers, scores);
        }
        if let Some(record) = record {
            record.hidden_states.push(hidden.clone());
        }
        let out = if self.layers.is_empty() && last_rows == QueryRows::Cls {
            // No layer gathered the [CLS] rows: do it here.
            let cls: Vec<f32> = spans
                .iter()
                .flat_map(|s| hidden[s.start * h..(s.start + 1) * h].iter().copied())
                .collect();
            read(&cls)
        } else {
            read(&hidden)
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
        spans: &[Span],
        rows: QueryRows,
        hidden: &mut Vec<f32>,
        buffers: &mut Buffers,
        scores: Option<&mut [f32]>,
    ) {
        self.attention(layer, spans, rows, hidden, buffers, scores);
        let tokens = match rows {
            QueryRows::All => hidden.len() / self.hidden,
            QueryRows::Cls => {
                keep_cls_rows(spans, self.hidden, layer, hidden, buffers);
                spans.len()
            }
        };
        self.feed_forward(layer, tokens, hidden, buffers);
    }

    /// Self-attention of every (sequence, head) into `buffers.context`: the `rows` of each
    /// sequence over its keys; `scores`, when given, receives the pre-softmax scores
    /// ([`Record`]'s layout, `rows` All).
    fn attention(
        &self,
        layer: &Layer,
        spans: &[Span],
        rows: QueryRows,
        hidden: &[f32],
        buffers: &mut Buffers,
        scores: Option<&mut [f32]>,
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

        // Attention per (sequence, head): scores = Q K^T (Q pre-scaled), softmax, context = P V.
        let qkv = SharedMut(buffers.qkv.as_mut_ptr());
        let context = SharedMut(buffers.context.as_mut_ptr());
        let record = scores.map(|s| SharedMut(s.as_mut_ptr()));
        // Where each sequence's score blocks begin in `scores` (rows x rows per head).
        let blocks: Vec<usize> = spans
            .iter()
            .scan(0, |at, s| {
                let first = *at;
                *at += heads * s.rows * s.rows;
                Some(first)
            })
            .collect();
        let stride = 3 * h;
        (0..spans.len() * heads).into_par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(scores, inv_sums): &mut (Vec<f32>, Vec<f32>), task| {
                let (seq, head) = (task / heads, task % heads);
                let Span {
                    start,
                    rows: len,
                    keys,
                } = spans[seq];
                // Query rows of this sequence and the context row the first of them writes.
                let (queries, out_row) = match rows {
                    QueryRows::All => (len, start),
                    QueryRows::Cls => (1, seq),
                };
                // SAFETY: every task reads Q, K, V of its own sequence and head and writes only
                // its sequence's rows and head's columns of `context` and its own block of the
                // recorded scores; the buffers outlive the loop.
                unsafe {
                    let head_view = |offset: usize| View {
                        ptr: qkv.get().add(start * stride + offset + head * head_dim),
                        row_stride: stride,
                    };
                    let qkv = [head_view(0), head_view(h), head_view(2 * h)];
                    let out = context.get().add(out_row * h + head * head_dim);
                    let record = record.map(|r| r.get().add(blocks[seq] + head * len * len));
                    let shape = [queries, keys, head_dim];
                    attend_head(qkv, shape, out, h, (scores, inv_sums), record, len);
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

/// Keeps only the [CLS] rows, in sequence order: the last layer's output needs no other row.
fn keep_cls_rows(
    spans: &[Span],
    h: usize,
    layer: &Layer,
    hidden: &mut Vec<f32>,
    buffers: &mut Buffers,
) {
    let pairs = spans.len();
    for (pair, span) in spans.iter().enumerate() {
        hidden.copy_within(span.start * h..(span.start + 1) * h, pair * h);
    }
    hidden.truncate(pairs * h);
    for buffer in [&mut buffers.context, &mut buffers.attended] {
        buffer.truncate(pairs * h);
    }
    buffers.inner.truncate(pairs * layer.intermediate.d_out);
}

/// One head of one sequence: `out[queries, head_dim] = softmax(Q K^T) V` over `keys` keys, Q
/// pre-scaled, rows of `out` `out_stride` apart; `scratch` is the task's scores and row sums.
/// `record`, when given, receives the scores before softmax, rows `record_stride` apart.
///
/// # Safety
/// The views must hold `queries` (Q) and `keys` (K, V) rows of `head_dim` values, `out` must
/// be writable for `queries` rows that no other task touches, and so must `record` for
/// `queries` rows of `keys` values.
unsafe fn attend_head(
    [q, k, v]: [View; 3],
    [queries, keys, head_dim]: [usize; 3],
    out: *mut f32,
    out_stride: usize,
    (scores, inv_sums): (&mut Vec<f32>, &mut Vec<f32>),
    record: Option<*mut f32>,
    record_stride: usize,
) {
    scores.resize(queries * keys, 0.0);
    inv_sums.resize(queries, 0.0);
    let none = Parallelism::None;
    // SAFETY: the caller's contract covers every read and write below.
    unsafe {
        matmul(
            [queries, keys, head_dim],
            scores.as_mut_ptr(),
            keys,
            q,
            k,
            true,
            none,
        );
        if let Some(record) = record {
            for (row, values) in scores.chunks_exact(keys).enumerate() {
                let to = record.add(row * record_stride);
                std::ptr::copy_nonoverlapping(values.as_ptr(), to, keys);
            }
        }
        softmax_rows(scores, keys, inv_sums);
        let probs = View {
            ptr: scores.as_ptr(),
            row_stride: keys,
        };
        // The softmax's division is folded into the (shorter) context rows.
        matmul(
            [queries, head_dim, keys],
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
