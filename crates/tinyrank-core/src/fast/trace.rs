//! The burn model's padded, traced forward through the fused path: a teacher's side of a
//! distillation step on the CPU, where the teacher needs no gradient and the burn model would
//! run it op by op.

use burn::tensor::{Device, Tensor, TensorData};

use super::forward::{FastCrossEncoder, QueryRows, Record, Span};
use crate::model::{Output, Padding, Trace};
use crate::tokenizer::Encoded;

impl FastCrossEncoder {
    /// What [`crate::model::CrossEncoder::forward`] gives for the batch that
    /// [`crate::model::Batch::padded`] builds from `pairs` and `padding`, with its tensors on
    /// `device`. Padded rows run as in the burn model (they attend to the real tokens only), so
    /// hidden states and scores agree with it to rounding (tests/parity.rs); the scores of
    /// padded keys, which the burn model masks, are 0 here.
    pub fn forward_padded(
        &self,
        pairs: &[&Encoded],
        padding: Padding,
        trace: Trace,
        device: &Device,
    ) -> Output {
        let (n, h) = (pairs.len(), self.hidden);
        let (len, padded) = padding.pad(pairs);
        let rows: Vec<&Encoded> = padded.iter().collect();
        let spans: Vec<Span> = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| Span {
                start: i * len,
                rows: len,
                keys: p.ids.len(),
            })
            .collect();
        let mut record = Record::default();
        let traced = trace.attention_scores || trace.hidden_states;
        let (logits, last) = self.encode(
            &rows,
            &spans,
            QueryRows::All,
            traced.then_some(&mut record),
            |hidden| {
                let logits: Vec<f32> = (0..n).flat_map(|i| self.logits(hidden, i * len)).collect();
                (logits, hidden.to_vec())
            },
        );
        let states =
            |values: Vec<f32>| Tensor::<3>::from_data(TensorData::new(values, [n, len, h]), device);
        let scores = |values: Vec<f32>| {
            Tensor::<4>::from_data(TensorData::new(values, [n, self.heads, len, len]), device)
        };
        let hidden_states = if trace.hidden_states {
            record.hidden_states.into_iter().map(states).collect()
        } else {
            Vec::new()
        };
        let attention_scores = if trace.attention_scores {
            record.attention_scores.into_iter().map(scores).collect()
        } else {
            Vec::new()
        };
        let labels = self.classifier.d_out;
        Output {
            logits: Tensor::from_data(TensorData::new(logits, [n, labels]), device),
            sequence_output: states(last),
            hidden_states,
            attention_scores,
        }
    }
}
