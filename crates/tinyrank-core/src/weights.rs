//! Hugging Face `model.safetensors` in and out, under transformers' BERT tensor names.
//!
//! Weights are read with or without the `bert.` prefix (`BertForSequenceClassification` vs
//! `BertModel`), in f32, f16 or bf16. Every tensor the architecture needs must be present with
//! the right shape, and every tensor in the file must be used: anything else is an error that
//! names the tensor.

use std::collections::BTreeSet;

#[cfg(not(target_arch = "wasm32"))]
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::Error;
use crate::config::BertConfig;
use crate::model::{CrossEncoder, linear};

/// Where the model builder gets each parameter from. Names are transformers' names without the
/// `bert.` prefix; matrices are requested in burn's shape and `transposed` says the checkpoint
/// stores them the other way round (`nn.Linear` keeps `[out, in]`).
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

/// Parameters that a checkpoint of a bare encoder (`BertModel`, e.g. a sentence-transformers
/// model used to start a student) may lack and that then start from BERT's initialisation.
fn is_head(name: &str) -> bool {
    name.starts_with("classifier.") || name.starts_with("pooler.")
}

/// Buffers transformers sometimes saves that are not parameters.
fn is_buffer(name: &str) -> bool {
    name.ends_with("embeddings.position_ids")
}

/// Reads parameters from a parsed safetensors file.
pub(crate) struct SafetensorsSource<'a> {
    tensors: SafeTensors<'a>,
    file: String,
    device: &'a Device,
    bert_prefix: &'static str,
    used: BTreeSet<String>,
    allow_missing_head: bool,
    /// Head parameters that were absent and initialised instead.
    pub initialised: Vec<String>,
}

impl<'a> SafetensorsSource<'a> {
    pub fn new(
        bytes: &'a [u8],
        file: &str,
        device: &'a Device,
        allow_missing_head: bool,
    ) -> Result<Self, Error> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| Error::Weights {
            file: file.into(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        let bert_prefix = if tensors.names().iter().any(|n| n.starts_with("bert.")) {
            "bert."
        } else {
            ""
        };
        Ok(Self {
            tensors,
            file: file.into(),
            device,
            bert_prefix,
            used: BTreeSet::new(),
            allow_missing_head,
            initialised: Vec::new(),
        })
    }

    fn full_name(&self, name: &str) -> String {
        if name.starts_with("classifier.") || name.starts_with("fit_dense.") {
            name.to_string()
        } else {
            format!("{}{name}", self.bert_prefix)
        }
    }

    /// Finds `name` (or its pre-2019 LayerNorm alias gamma/beta) and returns its values as f32.
    fn read(&mut self, name: &str, expected: &[usize]) -> Result<Option<Vec<f32>>, Error> {
        let full = self.full_name(name);
        let alias = full
            .strip_suffix("LayerNorm.weight")
            .map(|p| format!("{p}LayerNorm.gamma"))
            .or_else(|| {
                full.strip_suffix("LayerNorm.bias")
                    .map(|p| format!("{p}LayerNorm.beta"))
            });
        let found = [Some(full), alias]
            .into_iter()
            .flatten()
            .find(|n| self.tensors.tensor(n).is_ok());
        let Some(found) = found else {
            return Ok(None);
        };
        let view = self.tensors.tensor(&found).expect("looked up above");
        if view.shape() != expected {
            return Err(Error::Weights {
                file: self.file.clone(),
                message: format!(
                    "tensor {found} has shape {:?} but config.json implies {:?}",
                    view.shape(),
                    expected
                ),
            });
        }
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| Error::Weights {
            file: self.file.clone(),
            message: format!(
                "tensor {found} has dtype {:?}; only F32, F16 and BF16 are supported",
                view.dtype()
            ),
        })?;
        self.used.insert(found);
        Ok(Some(values))
    }

    fn missing(&mut self, name: &str) -> Result<(), Error> {
        if self.allow_missing_head && is_head(name) {
            self.initialised.push(self.full_name(name));
            Ok(())
        } else {
            Err(Error::Weights {
                file: self.file.clone(),
                message: format!("tensor {} is missing", self.full_name(name)),
            })
        }
    }

    /// A projection stored as `fit_dense.{weight,bias}`, if the checkpoint has one.
    pub fn fit_dense(&mut self) -> Result<Option<Linear>, Error> {
        let Ok(view) = self.tensors.tensor("fit_dense.weight") else {
            return Ok(None);
        };
        let &[d_out, d_in] = view.shape() else {
            return Err(Error::Weights {
                file: self.file.clone(),
                message: format!(
                    "tensor fit_dense.weight has shape {:?}, not 2-D",
                    view.shape()
                ),
            });
        };
        linear(self, "fit_dense", d_in, d_out).map(Some)
    }

    /// Fails on any tensor in the file that the model did not take.
    pub fn finish(self) -> Result<Vec<String>, Error> {
        let unexpected: Vec<String> = self
            .tensors
            .names()
            .into_iter()
            .filter(|n| !self.used.contains(*n) && !is_buffer(n))
            .map(str::to_string)
            .collect();
        if !unexpected.is_empty() {
            let mut unexpected = unexpected;
            unexpected.sort();
            return Err(Error::Weights {
                file: self.file,
                message: format!(
                    "unexpected tensor(s) that a BERT cross-encoder does not have: {}",
                    unexpected.join(", ")
                ),
            });
        }
        Ok(self.initialised)
    }
}

impl ParamSource for SafetensorsSource<'_> {
    fn device(&self) -> &Device {
        self.device
    }

    fn matrix(
        &mut self,
        name: &str,
        shape: [usize; 2],
        transposed: bool,
    ) -> Result<Tensor<2>, Error> {
        let stored = if transposed {
            [shape[1], shape[0]]
        } else {
            shape
        };
        match self.read(name, &stored)? {
            Some(values) => {
                let values = if transposed {
                    transpose(&values, stored[0], stored[1])
                } else {
                    values
                };
                Ok(Tensor::from_data(
                    TensorData::new(values, shape),
                    self.device,
                ))
            }
            None => {
                self.missing(name)?;
                RandomInit {
                    device: self.device,
                }
                .matrix(name, shape, transposed)
            }
        }
    }

    fn vector(&mut self, name: &str, len: usize, init: f32) -> Result<Tensor<1>, Error> {
        match self.read(name, &[len])? {
            Some(values) => Ok(Tensor::from_data(
                TensorData::new(values, [len]),
                self.device,
            )),
            None => {
                self.missing(name)?;
                Ok(Tensor::full([len], init, self.device))
            }
        }
    }
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let values = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    };
    Some(values)
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// Storage precision of written checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    /// Half the size; read back as f32.
    F16,
}

#[cfg(not(target_arch = "wasm32"))]
/// One tensor ready to be written: name, shape, little-endian bytes.
pub(crate) type NamedBytes = (String, Vec<usize>, Vec<u8>);

#[cfg(not(target_arch = "wasm32"))]
/// Every parameter of `model` (and `fit_dense`) under transformers' names for
/// `BertForSequenceClassification`, in the checkpoint's layout.
pub(crate) fn hf_tensors(
    model: &CrossEncoder,
    fit_dense: Option<&Linear>,
    dtype: SaveDtype,
) -> Result<Vec<NamedBytes>, Error> {
    let mut out = Vec::new();
    let mut push = |name: String, param: &Param<Tensor<2>>, transposed: bool| {
        out.push((name, param.val().into_data(), transposed));
    };
    let emb = &model.embeddings;
    push(
        "bert.embeddings.word_embeddings.weight".into(),
        &emb.word.weight,
        false,
    );
    push(
        "bert.embeddings.position_embeddings.weight".into(),
        &emb.position.weight,
        false,
    );
    push(
        "bert.embeddings.token_type_embeddings.weight".into(),
        &emb.token_type.weight,
        false,
    );
    let mut vectors: Vec<(String, TensorData)> = Vec::new();
    let norm = |name: &str, ln: &burn::nn::LayerNorm, vectors: &mut Vec<(String, TensorData)>| {
        vectors.push((format!("{name}.weight"), ln.gamma.val().into_data()));
        if let Some(beta) = &ln.beta {
            vectors.push((format!("{name}.bias"), beta.val().into_data()));
        }
    };
    norm("bert.embeddings.LayerNorm", &emb.layer_norm, &mut vectors);

    let mut linears: Vec<(String, &Linear)> = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("bert.encoder.layer.{i}");
        linears.push((format!("{p}.attention.self.query"), &layer.query));
        linears.push((format!("{p}.attention.self.key"), &layer.key));
        linears.push((format!("{p}.attention.self.value"), &layer.value));
        linears.push((
            format!("{p}.attention.output.dense"),
            &layer.attention_output,
        ));
        linears.push((format!("{p}.intermediate.dense"), &layer.intermediate));
        linears.push((format!("{p}.output.dense"), &layer.output));
        norm(
            &format!("{p}.attention.output.LayerNorm"),
            &layer.attention_norm,
            &mut vectors,
        );
        norm(
            &format!("{p}.output.LayerNorm"),
            &layer.output_norm,
            &mut vectors,
        );
    }
    linears.push(("bert.pooler.dense".into(), &model.pooler));
    linears.push(("classifier".into(), &model.classifier));
    if let Some(fit) = fit_dense {
        linears.push(("fit_dense".into(), fit));
    }
    for (name, lin) in linears {
        push(format!("{name}.weight"), &lin.weight, true);
        if let Some(bias) = &lin.bias {
            vectors.push((format!("{name}.bias"), bias.val().into_data()));
        }
    }

    let matrices = out;
    let mut named = Vec::with_capacity(matrices.len() + vectors.len());
    for (name, data, transposed) in matrices {
        let shape = data.shape().to_vec();
        let values = f32_values(&name, data)?;
        let (values, shape) = if transposed {
            (
                transpose(&values, shape[0], shape[1]),
                vec![shape[1], shape[0]],
            )
        } else {
            (values, shape)
        };
        named.push((name, shape, encode(&values, dtype)));
    }
    for (name, data) in vectors {
        let shape = data.shape().to_vec();
        let values = f32_values(&name, data)?;
        named.push((name, shape, encode(&values, dtype)));
    }
    Ok(named)
}

#[cfg(not(target_arch = "wasm32"))]
fn f32_values(name: &str, data: TensorData) -> Result<Vec<f32>, Error> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Weights {
            file: name.into(),
            message: format!("cannot read parameter back from the device: {e:?}"),
        })
}

#[cfg(not(target_arch = "wasm32"))]
fn encode(values: &[f32], dtype: SaveDtype) -> Vec<u8> {
    match dtype {
        SaveDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        SaveDtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Serialises named tensors into safetensors bytes.
pub(crate) fn serialize(tensors: &[NamedBytes], dtype: SaveDtype) -> Result<Vec<u8>, Error> {
    let st_dtype = match dtype {
        SaveDtype::F32 => Dtype::F32,
        SaveDtype::F16 => Dtype::F16,
    };
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(st_dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Weights {
            file: "model.safetensors".into(),
            message: e.to_string(),
        })?;
    let metadata = Some([("format".to_string(), "pt".to_string())].into());
    safetensors::tensor::serialize(views, metadata).map_err(|e| Error::Weights {
        file: "model.safetensors".into(),
        message: e.to_string(),
    })
}

/// Builds a model from `config` and safetensors bytes; returns it with its `fit_dense`
/// projection (if stored) and the names of head tensors that had to be initialised.
pub fn load_from_bytes(
    config: &BertConfig,
    bytes: &[u8],
    file: &str,
    device: &Device,
    allow_missing_head: bool,
) -> Result<(CrossEncoder, Option<Linear>, Vec<String>), Error> {
    let mut source = SafetensorsSource::new(bytes, file, device, allow_missing_head)?;
    let model = CrossEncoder::build(config, &mut source)?;
    let fit_dense = source.fit_dense()?;
    let initialised = source.finish()?;
    Ok((model, fit_dense, initialised))
}

/// A freshly initialised model of `config`'s shape.
pub fn random_model(config: &BertConfig, device: &Device) -> CrossEncoder {
    CrossEncoder::build(config, &mut RandomInit { device }).expect("random init cannot fail")
}
