//! Hugging Face `model.safetensors` in and out, under transformers' BERT tensor names (the
//! table in `params.rs`).
//!
//! Weights are read with or without the `bert.` prefix (`BertForSequenceClassification` vs
//! `BertModel`), in f32, f16 or bf16. Every tensor the architecture needs must be present with
//! the right shape, and every tensor in the file must be used: anything else is an error that
//! names the tensor.

use std::collections::BTreeSet;

use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::Error;
use crate::config::BertConfig;
use crate::model::CrossEncoder;
use crate::params::{self, ParamSource, RandomInit, linear, names};
#[cfg(not(target_arch = "wasm32"))]
use crate::params::{ParamRef, push_linear};

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
        params::full_name(name, self.bert_prefix)
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
        if self.allow_missing_head && params::is_head(name) {
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
        let weight = format!("{}.weight", names::FIT_DENSE);
        let Ok(view) = self.tensors.tensor(&weight) else {
            return Ok(None);
        };
        let &[d_out, d_in] = view.shape() else {
            return Err(Error::Weights {
                file: self.file.clone(),
                message: format!("tensor {weight} has shape {:?}, not 2-D", view.shape()),
            });
        };
        linear(self, names::FIT_DENSE, d_in, d_out).map(Some)
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
    let mut params = model.named_params();
    if let Some(fit) = fit_dense {
        push_linear(&mut params, names::FIT_DENSE, fit);
    }
    params
        .into_iter()
        .map(|(name, param)| {
            let name = params::full_name(&name, "bert.");
            let (data, transposed) = match param {
                ParamRef::Matrix { param, transposed } => (param.val().into_data(), transposed),
                ParamRef::Vector(param) => (param.val().into_data(), false),
            };
            let shape = data.shape().to_vec();
            let values = f32_values(&name, data)?;
            Ok(if transposed {
                let values = transpose(&values, shape[0], shape[1]);
                (name, vec![shape[1], shape[0]], encode(&values, dtype))
            } else {
                (name, shape, encode(&values, dtype))
            })
        })
        .collect()
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
