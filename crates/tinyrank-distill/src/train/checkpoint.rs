//! The training checkpoint: the student (an HF checkpoint with its `fit_dense`), the optimiser
//! state and `trainer_state.json` (step, run identity, best dev score), written as one
//! directory swapped in whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinyrank_core::checkpoint::{checkpoint_files, write_dir_atomically};
use tinyrank_core::{BertConfig, SaveDtype};

use super::config::TrainConfig;
use super::{Student, TrainError};
use crate::optim::AdamW;

pub const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// What a run was started from; a checkpoint resumes only a run with the same identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub config: TrainConfig,
    pub teacher: String,
    pub student: String,
    pub data: Vec<String>,
    pub examples: usize,
}

impl RunIdentity {
    /// The first field (dotted path) in which two identities differ.
    pub(super) fn first_difference(&self, other: &RunIdentity) -> Option<String> {
        fn walk(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
            match (a, b) {
                (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                    x.keys().chain(y.keys()).find_map(|k| {
                        let null = serde_json::Value::Null;
                        let sub = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), &sub)
                    })
                }
                _ if a != b => Some(format!("{path} ({b} there, {a} now)")),
                _ => None,
            }
        }
        let a = serde_json::to_value(self).ok()?;
        let b = serde_json::to_value(other).ok()?;
        walk(&a, &b, "")
    }
}

/// Saved beside the weights in a training checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TrainerState {
    pub identity: RunIdentity,
    pub step: usize,
    pub optimizer_updates: u64,
    pub best_dev: Option<(usize, f64)>,
    /// `--balance-terms`: each term's divisor, fixed at its first step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub term_scales: BTreeMap<String, f64>,
}

/// Where a run's training checkpoint lives and what it is written with.
pub(super) struct CheckpointWriter {
    pub dir: PathBuf,
    pub student_config: BertConfig,
    pub tokenizer_files: Vec<(String, Vec<u8>)>,
    pub identity: RunIdentity,
}

impl CheckpointWriter {
    /// Whether `dir` holds a training checkpoint (of some run).
    pub fn exists(dir: &Path) -> bool {
        dir.join(STATE_FILE).is_file()
    }

    pub fn save(
        &self,
        student: &Student,
        optimizer: &AdamW,
        step: usize,
        best_dev: Option<(usize, f64)>,
        term_scales: &BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let mut files = checkpoint_files(
            &self.student_config,
            &student.model,
            student.fit_dense.as_ref(),
            &self.tokenizer_files,
            SaveDtype::F32,
        )?;
        files.push((OPTIMIZER_FILE.into(), optimizer_bytes(optimizer)?));
        let state = TrainerState {
            identity: self.identity.clone(),
            step,
            optimizer_updates: optimizer.updates,
            best_dev,
            term_scales: term_scales.clone(),
        };
        let json = serde_json::to_string_pretty(&state)
            .map_err(|e| TrainError::Setup(format!("trainer state: {e}")))?;
        files.push((STATE_FILE.into(), json.into_bytes()));
        write_dir_atomically(&self.dir, &files)?;
        Ok(())
    }
}

/// Reads a checkpoint's `trainer_state.json`.
pub(super) fn read_state(dir: &Path) -> Result<TrainerState, TrainError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        TrainError::Setup(format!(
            "{}: {e} (is {} a training checkpoint?)",
            path.display(),
            dir.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| TrainError::Setup(format!("{}: {e}", path.display())))
}

/// Restores a checkpoint's optimiser state into `optimizer`.
pub(super) fn load_optimizer(
    dir: &Path,
    state: &TrainerState,
    optimizer: &mut AdamW,
    device: &burn::tensor::Device,
) -> Result<(), TrainError> {
    let path = dir.join(OPTIMIZER_FILE);
    let tensors = read_f32_safetensors(&path)?;
    optimizer
        .load_state(state.optimizer_updates, tensors, device)
        .map_err(|e| TrainError::Setup(format!("{}: {e}", path.display())))
}

fn optimizer_bytes(optimizer: &AdamW) -> Result<Vec<u8>, TrainError> {
    let tensors = optimizer.state_tensors().map_err(TrainError::Setup)?;
    let bytes: Vec<(String, Vec<u8>, usize)> = tensors
        .into_iter()
        .map(|(name, values)| {
            let n = values.len();
            (
                name,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                n,
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, n)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*n], data)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Setup(format!("optimizer state: {e}")))?;
    safetensors::tensor::serialize(views, None)
        .map_err(|e| TrainError::Setup(format!("optimizer state: {e}")))
}

/// Every tensor of an f32 safetensors file (optimizer state, training checkpoints) by name.
pub fn read_f32_safetensors(path: &Path) -> Result<BTreeMap<String, Vec<f32>>, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| tinyrank_core::Error::io(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| tinyrank_core::Error::io(path, e))?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            if view.dtype() != safetensors::Dtype::F32 {
                let message = format!("tensor {name} is {:?}, expected F32", view.dtype());
                return Err(tinyrank_core::Error::io(path, message).into());
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((name, values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Method;

    #[test]
    fn identities_name_their_first_difference() {
        let a = RunIdentity {
            config: TrainConfig::new(Method::Simplified, 10),
            teacher: "t".into(),
            student: "s".into(),
            data: vec!["d".into()],
            examples: 5,
        };
        let mut b = a.clone();
        assert_eq!(a.first_difference(&b), None);
        b.config.learning_rate = 2e-4;
        let diff = a.first_difference(&b).unwrap();
        assert!(diff.starts_with("config.learning_rate"), "{diff}");
    }
}
