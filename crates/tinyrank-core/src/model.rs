//! A BERT cross-encoder as one burn module: embeddings, encoder layers, pooler and a
//! classification head of one logit (sentence-transformers cross-encoders) or two (monoBERT).
//!
//! The same definition runs on every burn device (flex on CPUs, wgpu on GPUs and WebGPU) and is
//! what distillation trains, so it can also hand back each layer's pre-softmax attention scores
//! and every hidden state.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, gelu_approximate, relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::Error;
use crate::config::{Activation, BertConfig};
use crate::tokenizer::Encoded;
use crate::weights::ParamSource;

/// Added to the attention scores of padded keys so softmax gives them no weight. Finite, so a
/// fully padded row (which never occurs: [CLS] is always there) could not produce NaN.
const MASKED_SCORE: f32 = -1.0e9;

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

impl Batch {
    /// Builds a batch from tokenised pairs, padding each to the longest with `pad_id`.
    pub fn from_encoded<'a>(
        encoded: impl IntoIterator<Item = &'a Encoded>,
        pad_id: u32,
        device: &Device,
    ) -> Self {
        let rows: Vec<&Encoded> = encoded.into_iter().collect();
        let len = rows.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let n = rows.len();
        let mut ids = vec![pad_id as i64; n * len];
        let mut types = vec![0i64; n * len];
        let mut mask = vec![0f32; n * len];
        for (row, e) in rows.iter().enumerate() {
            let base = row * len;
            for (j, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                ids[base + j] = id as i64;
                types[base + j] = ty as i64;
                mask[base + j] = 1.0;
            }
        }
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
    /// The ranking score: the logit of a 1-logit head, `logit[1] - logit[0]` of a 2-logit head
    /// (the log-odds of relevance, so it orders like softmax[1]).
    pub fn ranking_scores(&self) -> Tensor<1> {
        ranking_scores(self.logits.clone())
    }
}

/// See [`Output::ranking_scores`].
pub fn ranking_scores(logits: Tensor<2>) -> Tensor<1> {
    let [batch, labels] = logits.dims();
    match labels {
        1 => logits.reshape([batch]),
        _ => {
            let positive = logits.clone().narrow(1, 1, 1);
            let negative = logits.narrow(1, 0, 1);
            (positive - negative).reshape([batch])
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
        // Scaling q before the product costs len*width multiplies instead of len*len*heads.
        let scale = 1.0 / (head_dim as f64).sqrt();
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
        let inner = match self.activation {
            Activation::Gelu => gelu(inner),
            Activation::GeluTanh => gelu_approximate(inner),
            Activation::Relu => relu(inner),
        };
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
    /// a random initialiser) in Hugging Face naming.
    pub(crate) fn build(config: &BertConfig, source: &mut dyn ParamSource) -> Result<Self, Error> {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let embeddings = Embeddings {
            word: embedding(source, "embeddings.word_embeddings", config.vocab_size, h)?,
            position: embedding(
                source,
                "embeddings.position_embeddings",
                config.max_position_embeddings,
                h,
            )?,
            token_type: embedding(
                source,
                "embeddings.token_type_embeddings",
                config.type_vocab_size,
                h,
            )?,
            layer_norm: layer_norm(source, "embeddings.LayerNorm", h, eps)?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let ffn = config.intermediate_size;
            layers.push(EncoderLayer {
                query: linear(source, &format!("{p}.attention.self.query"), h, h)?,
                key: linear(source, &format!("{p}.attention.self.key"), h, h)?,
                value: linear(source, &format!("{p}.attention.self.value"), h, h)?,
                attention_output: linear(source, &format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: layer_norm(
                    source,
                    &format!("{p}.attention.output.LayerNorm"),
                    h,
                    eps,
                )?,
                intermediate: linear(source, &format!("{p}.intermediate.dense"), h, ffn)?,
                output: linear(source, &format!("{p}.output.dense"), ffn, h)?,
                output_norm: layer_norm(source, &format!("{p}.output.LayerNorm"), h, eps)?,
                heads: config.num_attention_heads,
                activation: config.hidden_act,
            });
        }
        Ok(Self {
            embeddings,
            layers,
            pooler: linear(source, "pooler.dense", h, h)?,
            classifier: linear(source, "classifier", h, config.num_labels())?,
            layer_norm_eps: eps,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
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

    #[cfg(not(target_arch = "wasm32"))]
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

fn embedding(
    source: &mut dyn ParamSource,
    name: &str,
    rows: usize,
    width: usize,
) -> Result<Embedding, Error> {
    Ok(Embedding {
        weight: Param::from_tensor(source.matrix(
            &format!("{name}.weight"),
            [rows, width],
            false,
        )?),
    })
}

/// A Linear from HF's `[out, in]` weight, stored as burn's `[in, out]`.
pub(crate) fn linear(
    source: &mut dyn ParamSource,
    name: &str,
    d_in: usize,
    d_out: usize,
) -> Result<Linear, Error> {
    Ok(Linear {
        weight: Param::from_tensor(source.matrix(
            &format!("{name}.weight"),
            [d_in, d_out],
            true,
        )?),
        bias: Some(Param::from_tensor(source.vector(
            &format!("{name}.bias"),
            d_out,
            0.0,
        )?)),
    })
}

fn layer_norm(
    source: &mut dyn ParamSource,
    name: &str,
    width: usize,
    eps: f64,
) -> Result<LayerNorm, Error> {
    let mut norm = LayerNormConfig::new(width)
        .with_epsilon(eps)
        .init(source.device());
    norm.gamma = Param::from_tensor(source.vector(&format!("{name}.weight"), width, 1.0)?);
    norm.beta = Some(Param::from_tensor(source.vector(
        &format!("{name}.bias"),
        width,
        0.0,
    )?));
    Ok(norm)
}
