//! The engines a [`crate::Reranker`] scores with, and the one rule that picks between them.
//!
//! - **burn**: the model itself on its device (flex on CPUs, wgpu on GPUs and WebGPU), batches
//!   padded to their longest pair. The definition of the network, and what distillation trains.
//!   On a GPU whose adapter has f16 arithmetic (`shader-f16`), optionally an f16 copy of it.
//! - **fused** (CPUs, native and wasm32): `fast/`, a copy of the weights laid out once and a hand-fused,
//!   unpadded forward, its projections in f32 or int8. Distillation on a CPU runs its teacher
//!   through it too (a padded forward that hands back the burn model's traced outputs).
//!
//! Both follow the rules in `rules.rs`; the parity tests hold the fused scores to burn's.

use std::fmt;

use burn::tensor::{DType, Device};

use crate::Error;
use crate::device::BackendKind;
use crate::fast::FastCrossEncoder;
use crate::model::{Batch, CrossEncoder, Padding, Trace};
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
    /// The burn model with every weight and activation in f16 (GPUs whose adapter supports
    /// `shader-f16`); scores are read back as f32.
    F16,
}

impl Precision {
    /// The CLI's and the server's `--int8` / `--f16` flags (at most one is set: clap refuses both).
    pub fn from_flags(int8: bool, f16: bool) -> Self {
        match (int8, f16) {
            (true, _) => Self::Int8,
            (_, true) => Self::F16,
            _ => Self::F32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
            Self::F16 => "f16",
        }
    }
}

/// Which engine scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// The burn model on the reranker's device.
    Burn,
    /// An f16 copy of the burn model (GPU).
    BurnF16,
    /// The fused CPU forward at this precision.
    Fused(Precision),
}

impl EngineKind {
    /// The policy: on a CPU (native or wasm32) the fused engine, else burn; int8 only where the
    /// fused engine runs, f16 only on a GPU.
    pub fn choose(backend: BackendKind, precision: Precision) -> Result<Self, Error> {
        match (backend, precision) {
            (BackendKind::Cpu, Precision::F16) => Err(f16_on_cpu()),
            (BackendKind::Cpu, precision) => Ok(Self::Fused(precision)),
            (_, Precision::F32) => Ok(Self::Burn),
            (_, Precision::F16) => Ok(Self::BurnF16),
            (_, Precision::Int8) => Err(Error::Input(
                "int8 scoring runs on the CPU only (device cpu)".into(),
            )),
        }
    }

    /// Whether batches are padded to their longest pair (what a token budget must count).
    pub fn pads(self) -> bool {
        matches!(self, Self::Burn | Self::BurnF16)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Burn => f.write_str("burn"),
            Self::BurnF16 => f.write_str("burn f16"),
            Self::Fused(precision) => write!(f, "fused {}", precision.name()),
        }
    }
}

/// A built engine: for burn nothing beyond the model (or its f16 copy), for the fused path its
/// weight copy.
pub(crate) enum Engine {
    Burn,
    BurnF16(Box<CrossEncoder>),
    Fused(Box<FastCrossEncoder>),
}

impl Engine {
    pub fn build(kind: EngineKind, model: &CrossEncoder, device: &Device) -> Result<Self, Error> {
        match kind {
            EngineKind::Burn => Ok(Self::Burn),
            EngineKind::BurnF16 => {
                check_f16_adapter(device)?;
                Ok(Self::BurnF16(Box::new(model.cast(DType::F16))))
            }
            EngineKind::Fused(Precision::F16) => {
                Err(Error::Input("the fused CPU engine has no f16 path".into()))
            }
            EngineKind::Fused(precision) => Ok(Self::Fused(Box::new(
                FastCrossEncoder::from_model(model, precision),
            ))),
        }
    }

    /// Ranking scores of `pairs` as one batch, in their order; `padding` is burn's (the fused
    /// engine does not pad).
    pub async fn score(
        &self,
        model: &CrossEncoder,
        device: &Device,
        padding: Padding,
        pairs: &[&Encoded],
    ) -> Result<Vec<f32>, Error> {
        match self {
            Self::Fused(fused) => Ok(fused.score(pairs)),
            Self::Burn => burn_scores(model, device, padding, pairs).await,
            Self::BurnF16(half) => burn_scores(half, device, padding, pairs).await,
        }
    }
}

async fn burn_scores(
    model: &CrossEncoder,
    device: &Device,
    padding: Padding,
    pairs: &[&Encoded],
) -> Result<Vec<f32>, Error> {
    let batch = Batch::padded(pairs.iter().copied(), padding, device);
    let scores = model.forward(&batch, Trace::default()).ranking_scores();
    let data = scores
        .into_data_async()
        .await
        .map_err(|e| Error::Device(format!("reading scores from the device failed: {e:?}")))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("unexpected score data: {e:?}")))
}

/// The rule for f16 arithmetic (scoring's f16 engine, distillation's f16 teacher): a GPU whose
/// adapter has `shader-f16`.
pub fn check_f16(backend: BackendKind, device: &Device) -> Result<(), Error> {
    match backend {
        BackendKind::Cpu => Err(f16_on_cpu()),
        _ => check_f16_adapter(device),
    }
}

fn f16_on_cpu() -> Error {
    Error::Input("f16 runs on a GPU only (device gpu)".into())
}

fn check_f16_adapter(device: &Device) -> Result<(), Error> {
    if device.supports_dtype(DType::F16) {
        Ok(())
    } else {
        Err(Error::Input(
            "this GPU adapter has no f16 arithmetic (shader-f16); use f32".into(),
        ))
    }
}
