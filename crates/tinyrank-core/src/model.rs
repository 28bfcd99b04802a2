//! A BERT cross-encoder as one burn module: embeddings, encoder layers, pooler and a
//! classification head of one logit (sentence-transformers cross-encoders) or two (monoBERT).
//!
//! The same definition runs on every burn device (flex on CPUs, wgpu on GPUs and WebGPU) and is
//! what distillation trains, so it can also hand back each layer's pre-softmax attention scores
//! and every hidden state.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::Error;
use crate::config::{Activation, BertConfig};
#[cfg(not(target_arch = "wasm32"))]
use crate::params::{ParamRef, push_linear, push_norm};
use crate::params::{ParamSource, embedding, layer_norm, linear, names};
use crate::rules;
use crate::tokenizer::Encoded;

/// Added to the attention scores of padded keys so softmax gives them no weight. Finite, so a
/// fully padded row (which never occurs: [CLS] is always there) could not produce NaN.
const MASKED_SCORE: f32 = -1.0e9;
/// The lowest finite f16, where the mask goes in an f16 model.
const F16_LOWEST: f32 = -65504.0;

/// What the forward pass records besides the logits. Nothing is recorded unless asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trace {
    /// Each layer's scaled `QK^T`, before the mask and softmax: `[batch, heads, len, len]`.
    pub attention_scores: bool,
    /// The embedding output and each layer's output: `[batch, len, hidden]`.
    pub hidden_states: bool,
}

impl Trace {
    pub const ALL: Trace = Trace {
        attention_scores: true,
        hidden_states: true,
    };
}

/// A padded batch of token ids. `attention_mask` is 1.0 for real tokens and 0.0 for padding.
#[derive(Debug, Clone)]
pub struct Batch {
    pub input_ids: Tensor<2, Int>,
    pub token_type_ids: Tensor<2, Int>,
    pub attention_mask: Tensor<2>,
}

/// How a batch's rows are padded: one rule for training and scoring. To the longest row
/// rounded up to a multiple of `multiple` tokens (length buckets: a GPU build with burn's fusion
/// compiles kernels per shape, and a few lengths let them be reused), but not past `cap`, nor
/// cutting a longer row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    pub pad_id: u32,
    pub multiple: usize,
    pub cap: usize,
}

impl Padding {
    /// To the longest row exactly.
    pub fn longest(pad_id: u32) -> Self {
        Self {
            pad_id,
            multiple: 1,
            cap: usize::MAX,
        }
    }

    /// The padded length of a batch whose longest row has `longest` tokens.
    pub fn len(&self, longest: usize) -> usize {
        longest
            .next_multiple_of(self.multiple.max(1))
            .min(self.cap.max(longest))
    }

    /// `rows` padded to the batch's length (returned too): `pad_id` tokens of type 0.
    pub fn pad(&self, rows: &[&Encoded]) -> (usize, Vec<Encoded>) {
        let len = self.len(rows.iter().map(|e| e.ids.len()).max().unwrap_or(0));
        let padded = rows
            .iter()
            .map(|e| {
                let fill = len - e.ids.len();
                let ids = e
                    .ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(self.pad_id, fill));
                let types = e
                    .type_ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, fill));
                Encoded {
                    ids: ids.collect(),
                    type_ids: types.collect(),
                }
            })
            .collect();
        (len, padded)
    }
}

impl Batch {
    /// Builds a batch from tokenised pairs, padding each to the longest with `pad_id`.
    pub fn from_encoded<'a>(
        encoded: impl IntoIterator<Item = &'a Encoded>,
        pad_id: u32,
        device: &Device,
    ) -> Self {
        Self::padded(encoded, Padding::longest(pad_id), device)
    }

    /// Builds a batch from tokenised pairs, padded as `padding` says.
    pub fn padded<'a>(
        encoded: impl IntoIterator<Item = &'a Encoded>,
        padding: Padding,
        device: &Device,
    ) -> Self {
        let rows: Vec<&Encoded> = encoded.into_iter().collect();
        let (len, padded) = padding.pad(&rows);
        let n = rows.len();
        let ids: Vec<i64> = padded
            .iter()
            .flat_map(|e| &e.ids)
            .map(|&id| id.into())
            .collect();
        let types: Vec<i64> = (padded.iter().flat_map(|e| &e.type_ids))
            .map(|&ty| ty.into())
            .collect();
        let mask: Vec<f32> = rows
            .iter()
            .flat_map(|e| (0..len).map(move |j| f32::from(u8::from(j < e.ids.len()))))
            .collect();
        Self {
            input_ids: Tensor::from_data(TensorData::new(ids, [n, len]), device),
            token_type_ids: Tensor::from_data(TensorData::new(types, [n, len]), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, [n, len]), device),
        }
    }

    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }
}

/// What [`CrossEncoder::forward`] returns.
#[derive(Debug, Clone)]
pub struct Output {
    /// `[batch, num_labels]`.
    pub logits: Tensor<2>,
    /// The last layer's output, `[batch, len, hidden]`.
    pub sequence_output: Tensor<3>,
    /// Empty unless traced: `num_layers + 1` tensors, the embedding output first.
    pub hidden_states: Vec<Tensor<3>>,
    /// Empty unless traced: one tensor per layer.
    pub attention_scores: Vec<Tensor<4>>,
}

impl Output {
    /// The ranking score of each pair ([`rules::ranking_score`]).
    pub fn ranking_scores(&self) -> Tensor<1> {
        rules::ranking_scores(self.logits.clone())
    }

    /// Every tensor in f32 (the output of a model cast to f16, for f32 losses).
    pub fn into_f32(self) -> Self {
        let f32 = |t: Tensor<3>| t.cast(DType::F32);
        Self {
            logits: self.logits.cast(DType::F32),
            sequence_output: f32(self.sequence_output),
            hidden_states: self.hidden_states.into_iter().map(f32).collect(),
            attention_scores: self
                .attention_scores
                .into_iter()
                .map(|t| t.cast(DType::F32))
                .collect(),
        }
    }
}

#[derive(Module, Debug)]
pub struct Embeddings {
    pub word: Embedding,
    pub position: Embedding,
    pub token_type: Embedding,
    pub layer_norm: LayerNorm,
}

impl Embeddings {
    fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, len] = input_ids.dims();
        let positions = self
            .position
            .weight
            .val()
            .narrow(0, 0, len)
            .unsqueeze_dim::<3>(0);
        let summed =
            self.word.forward(input_ids) + self.token_type.forward(token_type_ids) + positions;
        self.layer_norm.forward(summed)
    }
}

#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attention_output: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
    heads: usize,
    #[module(skip)]
    activation: Activation,
}

impl EncoderLayer {
    /// Returns the layer output and, when `keep_scores`, the pre-softmax attention scores.
    fn forward(
        &self,
        hidden: Tensor<3>,
        mask_bias: Tensor<4>,
        keep_scores: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let [batch, len, width] = hidden.dims();
        let head_dim = width / self.heads;
        let split_heads = |t: Tensor<3>| {
            t.reshape([batch, len, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let scale = rules::attention_scale(head_dim);
        let query = split_heads(self.query.forward(hidden.clone()) * scale);
        let key = split_heads(self.key.forward(hidden.clone()));
        let value = split_heads(self.value.forward(hidden.clone()));

        let scores = query.matmul(key.swap_dims(2, 3));
        let kept = keep_scores.then(|| scores.clone());
        let probs = softmax(scores + mask_bias, 3);
        let context = probs
            .matmul(value)
            .swap_dims(1, 2)
            .reshape([batch, len, width]);
        let attended = self
            .attention_norm
            .forward(self.attention_output.forward(context) + hidden);

        let inner = self.intermediate.forward(attended.clone());
        let inner = self.activation.apply(inner);
        let out = self
            .output_norm
            .forward(self.output.forward(inner) + attended);
        (out, kept)
    }
}

#[derive(Module, Debug)]
pub struct CrossEncoder {
    pub embeddings: Embeddings,
    pub layers: Vec<EncoderLayer>,
    pub pooler: Linear,
    pub classifier: Linear,
    /// The LayerNorms' epsilon (burn's LayerNorm keeps its own private), for the CPU fast path.
    #[module(skip)]
    pub(crate) layer_norm_eps: f64,
}

impl CrossEncoder {
    /// Builds the network for `config`, taking every parameter from `source` (a checkpoint or
    /// a random initialiser) by its name in [`crate::params::names`].
    pub(crate) fn build(config: &BertConfig, source: &mut dyn ParamSource) -> Result<Self, Error> {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let embeddings = Embeddings {
            word: embedding(source, names::WORD, config.vocab_size, h)?,
            position: embedding(source, names::POSITION, config.max_position_embeddings, h)?,
            token_type: embedding(source, names::TOKEN_TYPE, config.type_vocab_size, h)?,
            layer_norm: layer_norm(source, names::EMBEDDING_NORM, h, eps)?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let at = |module| names::layer(i, module);
            let ffn = config.intermediate_size;
            layers.push(EncoderLayer {
                query: linear(source, &at(names::QUERY), h, h)?,
                key: linear(source, &at(names::KEY), h, h)?,
                value: linear(source, &at(names::VALUE), h, h)?,
                attention_output: linear(source, &at(names::ATTENTION_OUTPUT), h, h)?,
                attention_norm: layer_norm(source, &at(names::ATTENTION_NORM), h, eps)?,
                intermediate: linear(source, &at(names::INTERMEDIATE), h, ffn)?,
                output: linear(source, &at(names::OUTPUT), ffn, h)?,
                output_norm: layer_norm(source, &at(names::OUTPUT_NORM), h, eps)?,
                heads: config.num_attention_heads,
                activation: config.hidden_act,
            });
        }
        Ok(Self {
            embeddings,
            layers,
            pooler: linear(source, names::POOLER, h, h)?,
            classifier: linear(source, names::CLASSIFIER, h, config.num_labels())?,
            layer_norm_eps: eps,
        })
    }

    /// Every parameter under the name [`CrossEncoder::build`] reads it by, for saving.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn named_params(&self) -> Vec<(String, ParamRef<'_>)> {
        let mut out = Vec::new();
        let emb = &self.embeddings;
        for (name, table) in [
            (names::WORD, &emb.word),
            (names::POSITION, &emb.position),
            (names::TOKEN_TYPE, &emb.token_type),
        ] {
            let param = &table.weight;
            let transposed = false;
            out.push((
                format!("{name}.weight"),
                ParamRef::Matrix { param, transposed },
            ));
        }
        push_norm(&mut out, names::EMBEDDING_NORM, &emb.layer_norm);
        for (i, layer) in self.layers.iter().enumerate() {
            let at = |module| names::layer(i, module);
            push_linear(&mut out, &at(names::QUERY), &layer.query);
            push_linear(&mut out, &at(names::KEY), &layer.key);
            push_linear(&mut out, &at(names::VALUE), &layer.value);
            push_linear(
                &mut out,
                &at(names::ATTENTION_OUTPUT),
                &layer.attention_output,
            );
            push_norm(&mut out, &at(names::ATTENTION_NORM), &layer.attention_norm);
            push_linear(&mut out, &at(names::INTERMEDIATE), &layer.intermediate);
            push_linear(&mut out, &at(names::OUTPUT), &layer.output);
            push_norm(&mut out, &at(names::OUTPUT_NORM), &layer.output_norm);
        }
        push_linear(&mut out, names::POOLER, &self.pooler);
        push_linear(&mut out, names::CLASSIFIER, &self.classifier);
        out
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// A copy with every float parameter in `dtype` (the f16 engine, distillation's f16
    /// teacher); its forward takes the same batches.
    pub fn cast(&self, dtype: DType) -> Self {
        self.clone().map(&mut CastFloats(dtype))
    }

    pub fn hidden_size(&self) -> usize {
        self.embeddings.word.weight.dims()[1]
    }

    pub fn num_heads(&self) -> usize {
        self.layers.first().map_or(0, |l| l.heads)
    }

    pub fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    pub(crate) fn activation(&self) -> Activation {
        self.layers
            .first()
            .map_or(Activation::Gelu, |layer| layer.activation)
    }

    pub fn max_positions(&self) -> usize {
        self.embeddings.position.weight.dims()[0]
    }

    /// Refuses a pair length (special tokens included) beyond the position embeddings.
    pub fn check_max_len(&self, max_len: usize) -> Result<(), Error> {
        let positions = self.max_positions();
        if max_len > positions {
            return Err(Error::Input(format!(
                "max length {max_len} exceeds the model's {positions} position embeddings"
            )));
        }
        Ok(())
    }

    pub fn forward(&self, batch: &Batch, trace: Trace) -> Output {
        let [n, len] = batch.dims();
        // Padding becomes a large negative score on its key column: [n, 1, 1, len].
        let mask_bias = (batch.attention_mask.clone().neg() + 1.0) * MASKED_SCORE;
        let mask_bias = mask_bias.reshape([n, 1, 1, len]);
        // A model in another float type (the f16 engine) takes the mask in its type, clamped to
        // its range so that masked keys stay finite.
        let dtype = self.embeddings.word.weight.val().dtype();
        let mask_bias = if dtype == mask_bias.dtype() {
            mask_bias
        } else {
            mask_bias.clamp_min(F16_LOWEST).cast(dtype)
        };

        let mut hidden = self
            .embeddings
            .forward(batch.input_ids.clone(), batch.token_type_ids.clone());
        let mut hidden_states = Vec::new();
        let mut attention_scores = Vec::new();
        for layer in &self.layers {
            if trace.hidden_states {
                hidden_states.push(hidden.clone());
            }
            let (next, scores) = layer.forward(hidden, mask_bias.clone(), trace.attention_scores);
            attention_scores.extend(scores);
            hidden = next;
        }
        if trace.hidden_states {
            hidden_states.push(hidden.clone());
        }

        let width = self.hidden_size();
        let cls = hidden.clone().narrow(1, 0, 1).reshape([n, width]);
        let pooled = self.pooler.forward(cls).tanh();
        let logits = self.classifier.forward(pooled);
        Output {
            logits,
            sequence_output: hidden,
            hidden_states,
            attention_scores,
        }
    }
}

/// Casts every float parameter of a module.
struct CastFloats(DType);

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|tensor| tensor.cast(dtype))
    }
}
