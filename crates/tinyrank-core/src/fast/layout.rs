//! The fused path's copy of the weights, read out of the burn model once: Q, K and V side by
//! side with the query pre-scaled, projections packed for the f32 kernel or quantised to int8.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use super::forward::FastCrossEncoder;
use super::{int8, packed};
use crate::engine::Precision;
use crate::model::CrossEncoder;
use crate::rules;

/// A linear layer as a row-major `[d_in, d_out]` matrix and its bias.
pub(super) struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub d_in: usize,
    pub d_out: usize,
    /// The weight packed for the f32 micro-kernel (encoder layers, where a vector kernel exists).
    pub packed: Option<packed::PackedWeight>,
    /// The weight in 8 bits, when the encoder layers run in [`Precision::Int8`].
    pub quantized: Option<int8::QuantizedWeight>,
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
            Precision::F32 if packed::has_vector_kernel() => {
                self.packed = Some(packed::PackedWeight::new(&self.weight, k, n));
            }
            Precision::F32 => return self,
            Precision::F16 => unreachable!("Engine::build refuses a fused f16 engine"),
        }
        // Only the laid-out copy is read from now on.
        self.weight = Vec::new();
        self
    }
}

pub(super) struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

pub(super) struct Layer {
    /// Query, key and value side by side (`[hidden, 3 hidden]`), the query pre-scaled by
    /// 1/sqrt(head_dim).
    pub qkv: Dense,
    pub attention_output: Dense,
    pub attention_norm: Norm,
    pub intermediate: Dense,
    pub output: Dense,
    pub output_norm: Norm,
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

impl FastCrossEncoder {
    pub fn from_model(model: &CrossEncoder, precision: Precision) -> Self {
        let hidden = model.hidden_size();
        let heads = model.num_heads().max(1);
        let scale = rules::attention_scale(hidden / heads);
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
}

/// One row through a small dense layer.
pub(super) fn dense_row(input: &[f32], dense: &Dense) -> Vec<f32> {
    let mut out = dense.bias.clone();
    for (i, &x) in input.iter().enumerate() {
        let weights = &dense.weight[i * dense.d_out..(i + 1) * dense.d_out];
        for (o, w) in out.iter_mut().zip(weights) {
            *o += x * w;
        }
    }
    out
}
