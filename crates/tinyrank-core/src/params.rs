//! The model's parameters under their Hugging Face names: the one table that both loading
//! (`CrossEncoder::build` asks a [`ParamSource`] for each name) and saving
//! (`CrossEncoder::named_params`, written by `weights.rs`) read.
//!
//! Names are transformers' `BertForSequenceClassification` names without the `bert.` prefix;
//! [`Names::full`] puts it back for the encoder's parameters.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Distribution, Tensor};

use crate::Error;

/// HF module names, each written once.
pub(crate) mod names {
    pub const WORD: &str = "embeddings.word_embeddings";
    pub const POSITION: &str = "embeddings.position_embeddings";
    pub const TOKEN_TYPE: &str = "embeddings.token_type_embeddings";
    pub const EMBEDDING_NORM: &str = "embeddings.LayerNorm";
    pub const POOLER: &str = "pooler.dense";
    pub const CLASSIFIER: &str = "classifier";
    /// The student-to-teacher projection a distillation checkpoint carries.
    pub const FIT_DENSE: &str = "fit_dense";

    /// An encoder layer's modules, under `encoder.layer.{i}.`.
    pub const QUERY: &str = "attention.self.query";
    pub const KEY: &str = "attention.self.key";
    pub const VALUE: &str = "attention.self.value";
    pub const ATTENTION_OUTPUT: &str = "attention.output.dense";
    pub const ATTENTION_NORM: &str = "attention.output.LayerNorm";
    pub const INTERMEDIATE: &str = "intermediate.dense";
    pub const OUTPUT: &str = "output.dense";
    pub const OUTPUT_NORM: &str = "output.LayerNorm";

    pub fn layer(i: usize, module: &str) -> String {
        format!("encoder.layer.{i}.{module}")
    }
}

/// Whether `name` is a parameter of one of `modules`.
fn in_modules(name: &str, modules: &[&str]) -> bool {
    modules.iter().any(|module| {
        name.strip_prefix(module)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The name in a checkpoint whose encoder parameters carry `bert_prefix` ("bert." in
/// `BertForSequenceClassification`, "" in a bare `BertModel`); the head and `fit_dense` never
/// carry it.
pub(crate) fn full_name(name: &str, bert_prefix: &str) -> String {
    if in_modules(name, &[names::CLASSIFIER, names::FIT_DENSE]) {
        name.to_string()
    } else {
        format!("{bert_prefix}{name}")
    }
}

/// Parameters that a checkpoint of a bare encoder (`BertModel`, e.g. a sentence-transformers
/// model used to start a student) may lack and that then start from BERT's initialisation.
pub(crate) fn is_head(name: &str) -> bool {
    in_modules(name, &[names::CLASSIFIER, names::POOLER])
}

/// One parameter of a built model, for saving: matrices in burn's `[in, out]` layout say
/// whether the checkpoint stores them transposed (`nn.Linear` keeps `[out, in]`).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) enum ParamRef<'a> {
    Matrix {
        param: &'a Param<Tensor<2>>,
        transposed: bool,
    },
    Vector(&'a Param<Tensor<1>>),
}

/// Appends the parameters of a Linear under `name`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn push_linear<'a>(
    out: &mut Vec<(String, ParamRef<'a>)>,
    name: &str,
    linear: &'a Linear,
) {
    out.push((
        format!("{name}.weight"),
        ParamRef::Matrix {
            param: &linear.weight,
            transposed: true,
        },
    ));
    if let Some(bias) = &linear.bias {
        out.push((format!("{name}.bias"), ParamRef::Vector(bias)));
    }
}

/// Appends the parameters of a LayerNorm under `name`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn push_norm<'a>(
    out: &mut Vec<(String, ParamRef<'a>)>,
    name: &str,
    norm: &'a LayerNorm,
) {
    out.push((format!("{name}.weight"), ParamRef::Vector(&norm.gamma)));
    if let Some(beta) = &norm.beta {
        out.push((format!("{name}.bias"), ParamRef::Vector(beta)));
    }
}

/// Where the model builder gets each parameter from. Matrices are requested in burn's shape
/// and `transposed` says the checkpoint stores them the other way round.
pub(crate) trait ParamSource {
    fn device(&self) -> &Device;
    fn matrix(
        &mut self,
        name: &str,
        shape: [usize; 2],
        transposed: bool,
    ) -> Result<Tensor<2>, Error>;
    /// `init` is the value a fresh parameter starts at (1 for LayerNorm gains, 0 for biases).
    fn vector(&mut self, name: &str, len: usize, init: f32) -> Result<Tensor<1>, Error>;
}

/// BERT's initialisation: N(0, 0.02) matrices, zero biases, unit LayerNorm gains.
pub(crate) struct RandomInit<'a> {
    pub device: &'a Device,
}

const INIT_STD: f64 = 0.02;

impl ParamSource for RandomInit<'_> {
    fn device(&self) -> &Device {
        self.device
    }
    fn matrix(&mut self, _: &str, shape: [usize; 2], _: bool) -> Result<Tensor<2>, Error> {
        Ok(Tensor::random(
            shape,
            Distribution::Normal(0.0, INIT_STD),
            self.device,
        ))
    }
    fn vector(&mut self, _: &str, len: usize, init: f32) -> Result<Tensor<1>, Error> {
        Ok(Tensor::full([len], init, self.device))
    }
}

pub(crate) fn embedding(
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

pub(crate) fn layer_norm(
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
