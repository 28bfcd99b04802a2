//! The teacher's side of a step: its forward pass without gradients, through the engine that
//! scoring picks for the device ([`EngineKind::choose`]). On a CPU that is the fused engine,
//! whose padded forward hands back what the burn model's traced forward does at about 2.4
//! times its speed (docs/performance.md); elsewhere the burn model itself, in f16 with
//! `--teacher-f16`.

use burn::tensor::{DType, Device};
use tinyrank_core::{
    Batch, Checkpoint, CrossEncoder, Encoded, EngineKind, FastCrossEncoder, Output, Padding,
    Precision, SelectedDevice, Trace, check_f16,
};

use crate::train::TrainError;

pub(super) struct Teacher {
    model: CrossEncoder,
    /// The fused copy of the weights, on a CPU.
    fused: Option<Box<FastCrossEncoder>>,
    /// `--teacher-f16`: the burn model is cast to f16 and its outputs back to f32.
    f16: bool,
}

impl Teacher {
    pub fn new(
        checkpoint: Checkpoint,
        f16: bool,
        device: &SelectedDevice,
    ) -> Result<Self, TrainError> {
        let mut model = checkpoint.model;
        if f16 {
            check_f16(device.kind, &device.device)
                .map_err(|e| TrainError::Setup(format!("--teacher-f16: {e}")))?;
            model = model.cast(DType::F16);
        }
        let fused = match EngineKind::choose(device.kind, Precision::F32) {
            Ok(EngineKind::Fused(precision)) if !f16 => {
                Some(Box::new(FastCrossEncoder::from_model(&model, precision)))
            }
            _ => None,
        };
        Ok(Self { model, fused, f16 })
    }

    pub fn hidden_size(&self) -> usize {
        self.model.hidden_size()
    }

    /// The teacher's outputs on a micro-batch: `rows` padded as `batch` is.
    pub fn forward(
        &self,
        rows: &[&Encoded],
        padding: Padding,
        batch: &Batch,
        trace: Trace,
        device: &Device,
    ) -> Output {
        match &self.fused {
            Some(fused) => fused.forward_padded(rows, padding, trace, device),
            None if self.f16 => self.model.forward(batch, trace).into_f32(),
            None => self.model.forward(batch, trace),
        }
    }
}
