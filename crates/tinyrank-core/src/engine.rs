//! The engines a [`crate::Reranker`] scores with, and the one rule that picks between them.
//!
//! - **burn**: the model itself on its device (flex on CPUs, wgpu on GPUs and WebGPU), batches
//!   padded to their longest pair. The definition of the network, and what distillation trains.
//! - **fused** (CPUs, native and wasm32): `fast/`, a copy of the weights laid out once and a hand-fused,
//!   unpadded forward, its projections in f32 or int8.
//!
//! Both follow the rules in `rules.rs`; the parity tests hold the fused scores to burn's.

use std::fmt;

use burn::tensor::Device;

use crate::Error;
use crate::device::BackendKind;
use crate::fast::FastCrossEncoder;
use crate::model::{Batch, CrossEncoder, Trace};
use crate::tokenizer::Encoded;

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

/// Which engine scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// The burn model on the reranker's device.
    Burn,
    /// The fused CPU forward at this precision.
    Fused(Precision),
}

impl EngineKind {
    /// The policy: on a CPU (native or wasm32) the fused engine, else burn; int8 only where the
    /// fused engine runs.
    pub fn choose(backend: BackendKind, precision: Precision) -> Result<Self, Error> {
        match (backend, precision) {
            (BackendKind::Cpu, precision) => Ok(Self::Fused(precision)),
            (_, Precision::F32) => Ok(Self::Burn),
            (_, Precision::Int8) => Err(Error::Input(
                "int8 scoring runs on the CPU only (device cpu)".into(),
            )),
        }
    }

    /// Whether batches are padded to their longest pair (what a token budget must count).
    pub fn pads(self) -> bool {
        self == Self::Burn
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Burn => "burn",
            Self::Fused(Precision::F32) => "fused f32",
            Self::Fused(Precision::Int8) => "fused int8",
        })
    }
}

/// A built engine: for burn nothing beyond the model, for the fused path its weight copy.
pub(crate) enum Engine {
    Burn,
    Fused(Box<FastCrossEncoder>),
}

impl Engine {
    pub fn build(kind: EngineKind, model: &CrossEncoder) -> Result<Self, Error> {
        match kind {
            EngineKind::Burn => Ok(Self::Burn),
            EngineKind::Fused(precision) => Ok(Self::Fused(Box::new(
                FastCrossEncoder::from_model(model, precision),
            ))),
        }
    }

    /// Ranking scores of `pairs` as one batch, in their order.
    pub async fn score(
        &self,
        model: &CrossEncoder,
        device: &Device,
        pad_id: u32,
        pairs: &[&Encoded],
    ) -> Result<Vec<f32>, Error> {
        match self {
            Self::Fused(fused) => Ok(fused.score(pairs)),
            Self::Burn => {
                let batch = Batch::from_encoded(pairs.iter().copied(), pad_id, device);
                let scores = model.forward(&batch, Trace::default()).ranking_scores();
                let data = scores.into_data_async().await.map_err(|e| {
                    Error::Device(format!("reading scores from the device failed: {e:?}"))
                })?;
                data.try_into_vec::<f32>()
                    .map_err(|e| Error::Device(format!("unexpected score data: {e:?}")))
            }
        }
    }
}
