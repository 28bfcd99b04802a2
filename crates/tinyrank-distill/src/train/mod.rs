//! The trainer: one loop for Simplified TinyBERT and its baselines, crash-safe.
//!
//! - `config.rs`: [`Method`] and [`TrainConfig`], every default in one place ([`DEFAULTS`]).
//! - `objective.rs`: each method's loss terms.
//! - `run.rs`: [`train`], the loop: steps, evaluation, checkpoints, export; `run/setup.rs`:
//!   its start (checks, tokenised data, `fit_dense`, resume).
//! - `batches.rs`: the data order, a pure function of (seed, step).
//! - `pending.rs`: each step's values, kept on the device and read in one go.
//! - `profile.rs`: `--profile`, where a step's time goes.
//! - `checkpoint.rs`, `log.rs`: what a run writes.
//!
//! Every `checkpoint_every` optimiser steps (and on a stop request) the student, its `fit_dense`,
//! the optimiser state and the step are written to `<out>/checkpoint` as one directory swapped in
//! whole. The data order is a pure function of (seed, step), so resuming needs nothing else and a
//! resumed run ends with the same weights as an uninterrupted one.

mod batches;
mod checkpoint;
mod config;
mod log;
mod objective;
mod pending;
mod profile;
mod run;

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use tinyrank_core::{Checkpoint, CrossEncoder, Cut, SelectedDevice};

pub use checkpoint::{CHECKPOINT_DIR, RunIdentity, read_f32_safetensors};
pub use config::{DEFAULTS, Method, TERM_NAMES, TermWeights, TrainConfig};
pub use log::{LOG_FILE, PLOT_FILE, StepLog};
pub use run::train;

use crate::data::DataError;
use crate::examples::Example;
use crate::losses::LayerMap;
use crate::rerank::EvalSet;

pub const BEST_DIR: &str = "best";
pub const STUDENT_DIR: &str = "student";

/// The trainable part: the student and the projection of its hidden states.
#[derive(Module, Debug)]
pub struct Student {
    pub model: CrossEncoder,
    pub fit_dense: Option<Linear>,
}

/// Inputs of [`train`].
pub struct TrainSetup {
    pub config: TrainConfig,
    pub identity: RunIdentity,
    /// On the plain (non-autodiff) `device`; None for `labels`.
    pub teacher: Option<Checkpoint>,
    /// On `device.autodiff()`.
    pub student: Checkpoint,
    pub examples: Vec<Example>,
    /// The plain device; the student trains on its autodiff twin, and evaluation scores with
    /// the engine this device selects.
    pub device: SelectedDevice,
    pub out_dir: PathBuf,
    /// Checkpoint to continue from; default `<out>/checkpoint` when it holds this run.
    pub resume: Option<PathBuf>,
    pub checkpoint_every: usize,
    /// Evaluated (nDCG@10) every `eval_every` steps; the best student is kept.
    pub dev: Option<EvalSet>,
    pub eval_every: usize,
    /// Synchronise the device after each phase of a step and report where the time goes.
    pub profile: bool,
}

/// What the trainer reports while it runs.
pub enum Event<'a> {
    Started {
        start_step: usize,
        total_steps: usize,
        examples: usize,
        resumed_from: Option<&'a Path>,
    },
    Step(&'a StepLog),
    Saved {
        step: usize,
        dir: &'a Path,
    },
    Dev {
        step: usize,
        ndcg10: f64,
        best: bool,
    },
    /// At the end of a `profile` run: the phases' times (its Display is a Markdown table).
    Profile(&'a dyn std::fmt::Display),
}

#[derive(Debug)]
pub enum Outcome {
    /// Trained to the last step; the student is exported at `student_dir`.
    Finished {
        student_dir: PathBuf,
        steps: usize,
        best_dev: Option<(usize, f64)>,
    },
    /// Stopped on request after `step` steps; `<out>/checkpoint` holds it.
    Stopped { step: usize, checkpoint: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Model(#[from] tinyrank_core::Error),
    #[error("{0}")]
    Data(#[from] DataError),
    #[error(
        "the loss became {value} at step {step}; stopped. {}",
        match .last_good { Some((s, dir)) => format!("The last good checkpoint (step {s}) is intact at {}", dir.display()), None => "No checkpoint had been written yet".into() }
    )]
    NonFinite {
        step: usize,
        value: f64,
        last_good: Option<(usize, PathBuf)>,
    },
}

/// A projection from the student's hidden width to the teacher's: the identity when they are
/// equal (so training starts from the unprojected loss), N(0, 0.02) otherwise.
pub fn new_fit_dense(student_width: usize, teacher_width: usize, device: &Device) -> Linear {
    let mut linear = burn::nn::LinearConfig::new(student_width, teacher_width)
        .with_initializer(burn::nn::Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device);
    if student_width == teacher_width {
        let identity = Tensor::<2>::eye(student_width, device);
        linear.weight = Param::from_tensor(identity.require_grad());
    }
    linear.bias = Some(Param::from_tensor(
        Tensor::<1>::zeros([teacher_width], device).require_grad(),
    ));
    linear
}

/// Checks that teacher and student can be distilled under `config` and returns the layer map.
pub fn check_pair(
    teacher: &Checkpoint,
    student: &Checkpoint,
    config: &TrainConfig,
) -> Result<Option<LayerMap>, String> {
    let probe = ("what is tinyrank?", "A reranker distilled from a teacher.");
    let t = teacher
        .tokenizer
        .encode_pair(probe.0, probe.1, Cut::default());
    let s = student
        .tokenizer
        .encode_pair(probe.0, probe.1, Cut::default());
    let same_ids = matches!((&t, &s), (Ok(a), Ok(b)) if a.ids == b.ids);
    if teacher.tokenizer.vocab_size() != student.tokenizer.vocab_size() || !same_ids {
        return Err(format!(
            "teacher and student tokenise differently (vocabularies of {} and {} tokens): \
             distillation needs one vocabulary",
            teacher.tokenizer.vocab_size(),
            student.tokenizer.vocab_size()
        ));
    }
    if !config.method.intermediate() {
        return Ok(None);
    }
    let (tl, sl) = (teacher.model.num_layers(), student.model.num_layers());
    let map = match &config.layer_map {
        Some(map) => map.clone(),
        None => LayerMap::uniform(tl, sl)?,
    };
    map.validate(tl, sl)?;
    let (th, sh) = (teacher.model.num_heads(), student.model.num_heads());
    if th != sh {
        return Err(format!(
            "the attention loss compares heads one to one, but the teacher has {th} heads and \
             the student {sh}: use a student with {th} heads or a method without it (standard)"
        ));
    }
    Ok(Some(map))
}
