//! The trainer: one loop for Simplified TinyBERT and its baselines, crash-safe.
//!
//! Every `checkpoint_every` optimiser steps (and on a stop request) the student, its `fit_dense`,
//! the optimiser state and the step are written to `<out>/checkpoint` as one directory swapped in
//! whole. The data order is a pure function of (seed, step), so resuming needs nothing else and a
//! resumed run ends with the same weights as an uninterrupted one.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tinyrank_core::checkpoint::{checkpoint_files, save_checkpoint, write_dir_atomically};
use tinyrank_core::model::ranking_scores;
use tinyrank_core::{Batch, Checkpoint, CrossEncoder, Encoded, Reranker, SaveDtype, Trace};

use crate::data::DataError;
use crate::examples::{Example, epoch_order};
use crate::losses::{
    LayerMap, attention_loss, hard_loss, hidden_loss, listwise_kl, margin_mse, soft_loss,
};
use crate::rerank::EvalSet;

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Simplified TinyBERT: attention + hidden + soft + hard, in one step.
    Simplified,
    /// Standard KD: alpha * soft + (1 - alpha) * hard.
    Standard,
    /// TinyBERT's two steps: attention + hidden at a constant learning rate, then soft only.
    Tinybert,
    /// Margin-MSE to the teacher's score differences within each group.
    MarginMse,
    /// KL divergence to the teacher's softmax over each group of a query's candidates.
    Listwise,
    /// Hard labels only, no teacher: plain fine-tuning.
    Labels,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Simplified,
        Method::Standard,
        Method::Tinybert,
        Method::MarginMse,
        Method::Listwise,
        Method::Labels,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Simplified => "simplified",
            Method::Standard => "standard",
            Method::Tinybert => "tinybert",
            Method::MarginMse => "margin-mse",
            Method::Listwise => "listwise",
            Method::Labels => "labels",
        }
    }

    pub fn needs_teacher(self) -> bool {
        self != Method::Labels
    }

    /// Methods whose loss compares candidates of one query with each other.
    pub fn grouped(self) -> bool {
        matches!(self, Method::MarginMse | Method::Listwise)
    }

    /// Methods with attention and hidden-state terms (at some step).
    pub fn intermediate(self) -> bool {
        matches!(self, Method::Simplified | Method::Tinybert)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("unknown method {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Everything that shapes the trained weights (and so must match when resuming).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Method,
    pub temperature: f64,
    /// Standard KD's weight of the soft loss.
    pub alpha: f64,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Fraction of the steps spent warming up.
    pub warmup: f64,
    /// Clip the global gradient norm to this; 0 disables clipping.
    pub max_grad_norm: f64,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub accumulation: usize,
    /// Candidates of one query per group (margin-mse, listwise).
    pub group_size: usize,
    pub max_len: usize,
    pub steps: usize,
    pub seed: u64,
    /// TinyBERT: the fraction of steps spent on the intermediate step.
    pub tinybert_split: f64,
    pub layer_map: Option<LayerMap>,
}

impl TrainConfig {
    pub fn new(method: Method, steps: usize) -> Self {
        Self {
            method,
            temperature: 1.0,
            alpha: 0.5,
            learning_rate: 1e-4,
            weight_decay: 0.01,
            warmup: 0.1,
            max_grad_norm: 1.0,
            batch_size: 16,
            accumulation: 1,
            group_size: 8,
            max_len: 128,
            steps,
            seed: 42,
            tinybert_split: 0.5,
            layer_map: None,
        }
    }

    /// Examples consumed by one optimiser step.
    pub fn pairs_per_step(&self) -> usize {
        self.batch_size * self.accumulation
    }

    /// Steps that `epochs` passes over `examples` take.
    pub fn steps_for_epochs(&self, epochs: f64, examples: usize) -> usize {
        ((epochs * examples as f64) / self.pairs_per_step() as f64).ceil() as usize
    }

    fn check(&self) -> Result<(), String> {
        let positive = [
            ("batch size", self.batch_size),
            ("accumulation", self.accumulation),
            ("steps", self.steps),
            ("max length", self.max_len),
            ("group size", self.group_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.method.grouped() {
            if self.group_size < 2 {
                return Err(format!("{} needs a group size of at least 2", self.method));
            }
            if !self.batch_size.is_multiple_of(self.group_size) {
                return Err(format!(
                    "batch size {} is not a multiple of the group size {}",
                    self.batch_size, self.group_size
                ));
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err("the learning rate must be a positive number".into());
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err("the temperature must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.alpha)
            || !(0.0..1.0).contains(&self.warmup)
            || !(0.0..1.0).contains(&self.tinybert_split)
        {
            return Err("alpha must be in [0, 1], warmup and tinybert split in [0, 1)".into());
        }
        Ok(())
    }

    fn group(&self) -> usize {
        if self.method.grouped() {
            self.group_size
        } else {
            1
        }
    }

    /// First step of TinyBERT's prediction-layer step.
    fn split_step(&self) -> usize {
        (self.steps as f64 * self.tinybert_split).round() as usize
    }

    /// Learning rate at `step`: warm-up then linear decay; TinyBERT's first step is constant
    /// and its second step gets a schedule of its own.
    fn learning_rate_at(&self, step: usize) -> f64 {
        let schedule = |step: usize, total: usize| {
            let warmup = (self.warmup * total as f64).round() as usize;
            crate::optim::linear_schedule(step, total, warmup, self.learning_rate)
        };
        if self.method == Method::Tinybert {
            let split = self.split_step();
            if step < split {
                return self.learning_rate;
            }
            return schedule(step - split, self.steps - split);
        }
        schedule(step, self.steps)
    }
}

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
    fn first_difference(&self, other: &RunIdentity) -> Option<String> {
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
    /// The plain device; the student trains on its autodiff twin.
    pub device: Device,
    pub out_dir: PathBuf,
    /// Checkpoint to continue from; default `<out>/checkpoint` when it holds this run.
    pub resume: Option<PathBuf>,
    pub checkpoint_every: usize,
    /// Evaluated (nDCG@10) every `eval_every` steps; the best student is kept.
    pub dev: Option<EvalSet>,
    pub eval_every: usize,
}

/// One optimiser step, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: f64,
    pub lr: f64,
    pub loss: f64,
    /// Loss terms by name (attention, hidden, soft, hard, margin, listwise), means over the
    /// micro-batches.
    pub terms: BTreeMap<String, f64>,
    pub grad_norm: f64,
    pub pairs_per_sec: f64,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dev_ndcg10: Option<f64>,
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

/// Saved beside the weights in a training checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    identity: RunIdentity,
    step: usize,
    optimizer_updates: u64,
    best_dev: Option<(usize, f64)>,
}

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const BEST_DIR: &str = "best";
pub const STUDENT_DIR: &str = "student";
pub const LOG_FILE: &str = "log.jsonl";
pub const PLOT_FILE: &str = "loss.svg";
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

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
    let t = teacher.tokenizer.encode_pair(probe.0, probe.1);
    let s = student.tokenizer.encode_pair(probe.0, probe.1);
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

/// Trains, checkpoints, evaluates and exports; see the module docs.
pub fn train(
    setup: TrainSetup,
    stop: &AtomicBool,
    mut observe: impl FnMut(Event<'_>),
) -> Result<Outcome, TrainError> {
    let TrainSetup {
        config,
        identity,
        teacher,
        student,
        examples,
        device,
        out_dir,
        resume,
        checkpoint_every,
        dev,
        eval_every,
    } = setup;
    config.check().map_err(TrainError::Setup)?;
    if config.method.needs_teacher() && teacher.is_none() {
        return Err(TrainError::Setup(format!(
            "{} needs a teacher",
            config.method
        )));
    }
    let layer_map = match &teacher {
        Some(t) => check_pair(t, &student, &config).map_err(TrainError::Setup)?,
        None => None,
    };
    if config.method == Method::Labels && examples.iter().all(|e| e.label.is_none()) {
        return Err(TrainError::Setup(
            "labels: none of the training examples has a label (give qrels or triples)".into(),
        ));
    }
    let autodiff = device.clone().autodiff();
    let mut tokenizer = student.tokenizer.clone();
    tokenizer.set_max_len(config.max_len)?;
    let encoded = encode_examples(&tokenizer, &examples)?;
    let units = make_units(&examples, config.group(), config.seed);
    if units.is_empty() {
        return Err(TrainError::Setup(format!(
            "no training examples{}",
            if config.method.grouped() {
                format!(
                    " form a group of {} candidates of one query",
                    config.group_size
                )
            } else {
                String::new()
            }
        )));
    }

    let checkpoint_dir = out_dir.join(CHECKPOINT_DIR);
    let Checkpoint {
        config: student_config,
        model,
        fit_dense,
        tokenizer_files,
        ..
    } = student;
    let fit_dense = match (&layer_map, fit_dense, &teacher) {
        (Some(_), None, Some(t)) => Some(new_fit_dense(
            model.hidden_size(),
            t.model.hidden_size(),
            &autodiff,
        )),
        (_, fit, _) => fit,
    };
    if let (Some(_), Some(fit), Some(t)) = (&layer_map, &fit_dense, &teacher) {
        let want = [model.hidden_size(), t.model.hidden_size()];
        if fit.weight.dims() != want {
            return Err(TrainError::Setup(format!(
                "the student's fit_dense maps {:?} but student and teacher widths need {want:?}",
                fit.weight.dims()
            )));
        }
    }
    let mut student = Student { model, fit_dense };
    let mut optimizer = crate::optim::AdamW::new(config.weight_decay);
    let mut start_step = 0;
    let mut best_dev = None;

    // Resume from an explicit directory, or from <out>/checkpoint when it holds this very run.
    let resume_from = match resume {
        Some(dir) => Some(dir),
        None if checkpoint_dir.join(STATE_FILE).is_file() => Some(checkpoint_dir.clone()),
        None => None,
    };
    if let Some(dir) = &resume_from {
        let state = read_state(dir)?;
        if let Some(field) = identity.first_difference(&state.identity) {
            return Err(TrainError::Setup(format!(
                "{} is a checkpoint of another run: {field} differs. Resume with the same \
                 settings, or pick another --out",
                dir.display()
            )));
        }
        let saved = Checkpoint::load(dir, &autodiff)?;
        student = Student {
            model: saved.model,
            fit_dense: saved.fit_dense.or(student.fit_dense),
        };
        let tensors = read_f32_safetensors(&dir.join(OPTIMIZER_FILE))?;
        optimizer
            .load_state(state.optimizer_updates, tensors, &device)
            .map_err(|e| {
                TrainError::Setup(format!("{}: {e}", dir.join(OPTIMIZER_FILE).display()))
            })?;
        start_step = state.step;
        best_dev = state.best_dev;
    }

    std::fs::create_dir_all(&out_dir).map_err(|e| tinyrank_core::Error::io(&out_dir, e))?;
    let mut logs = read_log(&out_dir.join(LOG_FILE), start_step);
    rewrite_log(&out_dir.join(LOG_FILE), &logs)?;
    observe(Event::Started {
        start_step,
        total_steps: config.steps,
        examples: examples.len(),
        resumed_from: resume_from.as_deref(),
    });

    let context = StepContext {
        config: &config,
        teacher: teacher.as_ref().map(|t| &t.model),
        layer_map: layer_map.as_ref(),
        examples: &examples,
        encoded: &encoded,
        pad_id: tokenizer.pad_id(),
        device: &device,
    };
    let save = |student: &Student,
                optimizer: &crate::optim::AdamW,
                step: usize,
                best_dev: Option<(usize, f64)>|
     -> Result<(), TrainError> {
        let mut files = checkpoint_files(
            &student_config,
            &student.model,
            student.fit_dense.as_ref(),
            &tokenizer_files,
            SaveDtype::F32,
        )?;
        files.push((OPTIMIZER_FILE.into(), optimizer_bytes(optimizer)?));
        let state = TrainerState {
            identity: identity.clone(),
            step,
            optimizer_updates: optimizer.updates,
            best_dev,
        };
        let json = serde_json::to_string_pretty(&state).expect("state serialises");
        files.push((STATE_FILE.into(), json.into_bytes()));
        write_dir_atomically(&checkpoint_dir, &files)?;
        Ok(())
    };
    let mut last_saved = resume_from
        .as_ref()
        .map(|_| (start_step, checkpoint_dir.clone()));
    let started = Instant::now();
    let mut grads = crate::optim::AccumulatedGrads::default();
    let mut orders = EpochOrders::new(units.len(), config.seed);
    let mut trained_pairs = 0usize;

    for step in start_step..config.steps {
        if config.method == Method::Tinybert && step == config.split_step() && step > 0 {
            optimizer.reset();
        }
        let lr = config.learning_rate_at(step);
        grads.clear();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let units_per_micro = config.batch_size / config.group();
        for micro in 0..config.accumulation {
            let first = (step * config.accumulation + micro) * units_per_micro;
            let picked: Vec<usize> = (first..first + units_per_micro)
                .flat_map(|u| units[orders.unit_at(u)].iter().copied())
                .collect();
            let (total, terms) = context.loss(&student, &picked, step);
            let values = read_terms(&total, &terms);
            let loss_value = values[0];
            if !loss_value.is_finite() {
                return Err(TrainError::NonFinite {
                    step: step + 1,
                    value: loss_value,
                    last_good: last_saved.clone(),
                });
            }
            for ((name, _), v) in terms.iter().zip(&values[1..]) {
                *sums.entry(name.to_string()).or_default() += v;
            }
            *sums.entry("loss".into()).or_default() += loss_value;
            let backward = total.backward();
            grads.add(&student, &backward);
            trained_pairs += picked.len();
        }
        let norm = grads.global_norm();
        if !norm.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                value: norm,
                last_good: last_saved.clone(),
            });
        }
        let clip = if config.max_grad_norm > 0.0 && norm > config.max_grad_norm {
            config.max_grad_norm / norm
        } else {
            1.0
        };
        let scale = clip / config.accumulation as f64;
        student = optimizer.step(student, &grads, lr, scale);

        let done = step + 1;
        let micro = config.accumulation as f64;
        let elapsed = started.elapsed().as_secs_f64();
        let mut log = StepLog {
            step: done,
            epoch: (done * config.pairs_per_step()) as f64 / (units.len() * config.group()) as f64,
            lr,
            loss: sums.remove("loss").unwrap_or(0.0) / micro,
            terms: sums.into_iter().map(|(k, v)| (k, v / micro)).collect(),
            grad_norm: norm,
            pairs_per_sec: trained_pairs as f64 / elapsed.max(1e-9),
            elapsed_s: elapsed,
            dev_ndcg10: None,
        };
        let evaluate_now = dev.is_some()
            && eval_every > 0
            && (done.is_multiple_of(eval_every) || done == config.steps);
        if evaluate_now && let Some(dev) = &dev {
            let reranker = Reranker::new(student.model.valid(), tokenizer.clone(), device.clone());
            let run = dev
                .rerank(&reranker, |_| {})
                .map_err(|e| TrainError::Setup(e.to_string()))?;
            let (ndcg, _) = dev.ndcg10_rr10(&run);
            let best = best_dev.is_none_or(|(_, b)| ndcg > b);
            if best {
                best_dev = Some((done, ndcg));
                save_checkpoint(
                    &out_dir.join(BEST_DIR),
                    &student_config,
                    &student.model,
                    None,
                    &tokenizer_files,
                    SaveDtype::F32,
                )?;
            }
            log.dev_ndcg10 = Some(ndcg);
            observe(Event::Dev {
                step: done,
                ndcg10: ndcg,
                best,
            });
        }
        append_log(&out_dir.join(LOG_FILE), &log)?;
        observe(Event::Step(&log));
        logs.push(log);

        let stopping = stop.load(Ordering::SeqCst);
        if stopping || done.is_multiple_of(checkpoint_every.max(1)) || done == config.steps {
            save(&student, &optimizer, done, best_dev)?;
            write_plot(&out_dir.join(PLOT_FILE), &logs, config.method)?;
            last_saved = Some((done, checkpoint_dir.clone()));
            observe(Event::Saved {
                step: done,
                dir: &checkpoint_dir,
            });
        }
        if stopping && done < config.steps {
            return Ok(Outcome::Stopped {
                step: done,
                checkpoint: checkpoint_dir,
            });
        }
    }

    // The exported student: the best dev checkpoint when there is one, else the last weights.
    let student_dir = out_dir.join(STUDENT_DIR);
    match best_dev {
        Some(_) if out_dir.join(BEST_DIR).join("config.json").is_file() => {
            let best = Checkpoint::load(&out_dir.join(BEST_DIR), &device)?;
            best.save(&student_dir, SaveDtype::F32)?;
        }
        _ => save_checkpoint(
            &student_dir,
            &student_config,
            &student.model,
            None,
            &tokenizer_files,
            SaveDtype::F32,
        )?,
    }
    write_plot(&out_dir.join(PLOT_FILE), &logs, config.method)?;
    Ok(Outcome::Finished {
        student_dir,
        steps: config.steps,
        best_dev,
    })
}

/// The order in which units are visited: epoch after epoch, each a seeded permutation.
struct EpochOrders {
    len: usize,
    seed: u64,
    epoch: u64,
    order: Vec<usize>,
}

impl EpochOrders {
    fn new(len: usize, seed: u64) -> Self {
        Self {
            len,
            seed,
            epoch: 0,
            order: epoch_order(len, seed, 0),
        }
    }

    /// The unit at position `position` of the endless stream of epochs.
    fn unit_at(&mut self, position: usize) -> usize {
        let epoch = (position / self.len) as u64;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.order = epoch_order(self.len, self.seed, epoch);
        }
        self.order[position % self.len]
    }
}

/// Groups of example indices visited together: single examples, or for grouped methods chunks
/// of `group` candidates of one query (shuffled within the query with the seed; a remainder
/// smaller than a group is left out).
fn make_units(examples: &[Example], group: usize, seed: u64) -> Vec<Vec<usize>> {
    if group == 1 {
        return (0..examples.len()).map(|i| vec![i]).collect();
    }
    let mut units = Vec::new();
    for range in runs_of(examples, |e| &e.query_id) {
        let order = epoch_order(range.len(), seed, range.start as u64);
        for chunk in order.chunks_exact(group) {
            units.push(chunk.iter().map(|i| range.start + i).collect());
        }
    }
    units
}

/// The index ranges of consecutive examples that share `key`.
fn runs_of<'a, K: PartialEq + 'a>(
    examples: &'a [Example],
    key: impl Fn(&'a Example) -> K + 'a,
) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = examples.get(start)?;
        let k = key(first);
        let len = examples[start..].iter().take_while(|e| key(e) == k).count();
        let range = start..start + len;
        start += len;
        Some(range)
    })
}

fn encode_examples(
    tokenizer: &tinyrank_core::PairTokenizer,
    examples: &[Example],
) -> Result<Vec<Encoded>, TrainError> {
    let mut encoded = Vec::with_capacity(examples.len());
    // Consecutive examples of one query are tokenised as one batch.
    for range in runs_of(examples, |e| &e.query) {
        let passages: Vec<&str> = examples[range.clone()]
            .iter()
            .map(|e| e.passage.as_str())
            .collect();
        encoded.extend(tokenizer.encode_pairs(&examples[range.start].query, &passages)?);
    }
    Ok(encoded)
}

struct StepContext<'a> {
    config: &'a TrainConfig,
    teacher: Option<&'a CrossEncoder>,
    layer_map: Option<&'a LayerMap>,
    examples: &'a [Example],
    encoded: &'a [Encoded],
    pad_id: u32,
    device: &'a Device,
}

impl StepContext<'_> {
    /// The loss of one micro-batch and its named terms.
    fn loss(
        &self,
        student: &Student,
        picked: &[usize],
        step: usize,
    ) -> (Tensor<1>, Vec<(&'static str, Tensor<1>)>) {
        let config = self.config;
        let rows = picked.iter().map(|&i| &self.encoded[i]);
        let batch = Batch::from_encoded(rows, self.pad_id, self.device);
        let intermediate = match config.method {
            Method::Simplified => true,
            Method::Tinybert => step < config.split_step(),
            _ => false,
        };
        let trace = if intermediate {
            Trace::ALL
        } else {
            Trace::default()
        };
        let teacher = self.teacher.map(|t| t.forward(&batch, trace));
        let student_out = student.model.forward(&batch, trace);

        let mut terms: Vec<(&'static str, Tensor<1>)> = Vec::new();
        if intermediate && let (Some(t), Some(map)) = (&teacher, self.layer_map) {
            terms.push((
                "attention",
                attention_loss(
                    &student_out.attention_scores,
                    &t.attention_scores,
                    map,
                    &batch.attention_mask,
                ),
            ));
            let fit = student
                .fit_dense
                .as_ref()
                .expect("intermediate methods have fit_dense");
            terms.push((
                "hidden",
                hidden_loss(&student_out.hidden_states, &t.hidden_states, map, fit),
            ));
        }
        let hard = || {
            let n = picked.len();
            let labels: Vec<i64> = picked
                .iter()
                .map(|&i| i64::from(self.examples[i].label.unwrap_or(0)))
                .collect();
            let labelled: Vec<f32> = picked
                .iter()
                .map(|&i| f32::from(u8::from(self.examples[i].label.is_some())))
                .collect();
            hard_loss(
                student_out.logits.clone(),
                Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), self.device),
                Tensor::<1>::from_data(TensorData::new(labelled, [n]), self.device),
            )
        };
        let teacher_logits = || teacher.as_ref().expect("a teacher").logits.clone();
        let soft = || {
            soft_loss(
                student_out.logits.clone(),
                teacher_logits(),
                config.temperature,
            )
        };
        let groups = |scores: Tensor<1>| {
            let g = config.group_size;
            scores.reshape([picked.len() / g, g])
        };
        let total = match config.method {
            Method::Simplified => {
                terms.push(("soft", soft()));
                terms.push(("hard", hard()));
                sum(&terms)
            }
            Method::Standard => {
                let (soft, hard) = (soft(), hard());
                terms.push(("soft", soft.clone()));
                terms.push(("hard", hard.clone()));
                soft * config.alpha + hard * (1.0 - config.alpha)
            }
            Method::Tinybert if intermediate => sum(&terms),
            Method::Tinybert => {
                terms.push(("soft", soft()));
                sum(&terms)
            }
            Method::MarginMse => {
                terms.push((
                    "margin",
                    margin_mse(
                        groups(ranking_scores(student_out.logits.clone())),
                        groups(ranking_scores(teacher_logits())),
                    ),
                ));
                sum(&terms)
            }
            Method::Listwise => {
                terms.push((
                    "listwise",
                    listwise_kl(
                        groups(ranking_scores(student_out.logits.clone())),
                        groups(ranking_scores(teacher_logits())),
                        config.temperature,
                    ),
                ));
                sum(&terms)
            }
            Method::Labels => {
                terms.push(("hard", hard()));
                sum(&terms)
            }
        };
        (total, terms)
    }
}

fn sum(terms: &[(&'static str, Tensor<1>)]) -> Tensor<1> {
    terms
        .iter()
        .map(|(_, t)| t.clone())
        .reduce(|a, b| a + b)
        .expect("every method has a term")
}

/// The total and each term in one read from the device.
fn read_terms(total: &Tensor<1>, terms: &[(&'static str, Tensor<1>)]) -> Vec<f64> {
    let all: Vec<Tensor<1>> = std::iter::once(total.clone())
        .chain(terms.iter().map(|(_, t)| t.clone()))
        .map(|t| t.detach().inner())
        .collect();
    Tensor::cat(all, 0)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn optimizer_bytes(optimizer: &crate::optim::AdamW) -> Result<Vec<u8>, TrainError> {
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

fn read_state(dir: &Path) -> Result<TrainerState, TrainError> {
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

/// The log lines of steps up to `up_to` (a resumed run drops what came after its checkpoint).
fn read_log(path: &Path, up_to: usize) -> Vec<StepLog> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<StepLog>(line).ok())
        .filter(|log| log.step <= up_to)
        .collect()
}

fn rewrite_log(path: &Path, logs: &[StepLog]) -> Result<(), TrainError> {
    let mut text = String::new();
    for log in logs {
        text.push_str(&serde_json::to_string(log).expect("log serialises"));
        text.push('\n');
    }
    crate::data::write_atomically(path, text.as_bytes())?;
    Ok(())
}

fn append_log(path: &Path, log: &StepLog) -> Result<(), TrainError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| tinyrank_core::Error::io(path, e))?;
    writeln!(
        file,
        "{}",
        serde_json::to_string(log).expect("log serialises")
    )
    .map_err(|e| tinyrank_core::Error::io(path, e))?;
    Ok(())
}

/// A loss curve per term on a log scale, as a self-contained SVG.
fn write_plot(path: &Path, logs: &[StepLog], method: Method) -> Result<(), TrainError> {
    const W: f64 = 720.0;
    const H: f64 = 400.0;
    const M: f64 = 50.0;
    const COLOURS: [&str; 7] = [
        "#111111", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for log in logs {
        let points = std::iter::once(("loss".to_string(), log.loss))
            .chain(log.terms.iter().map(|(k, v)| (k.clone(), *v)));
        for (name, value) in points {
            if value > 0.0 && value.is_finite() {
                series
                    .entry(name)
                    .or_default()
                    .push((log.step as f64, value.log10()));
            }
        }
    }
    let all = series.values().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let sx = |x: f64| M + (x - x0) / (x1 - x0).max(1.0) * (W - 2.0 * M);
    let sy = |y: f64| H - M - (y - y0) / (y1 - y0) * (H - 2.0 * M);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{M}\" y=\"20\">tinyrank distill ({method}): loss per step, log scale</text>\n\
         <line x1=\"{M}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{M}\" y1=\"{M}\" x2=\"{M}\" y2=\"{}\" stroke=\"black\"/>\n",
        H - M,
        W - M,
        H - M,
        H - M
    );
    let mut decade = y0;
    while decade <= y1 {
        svg.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\">1e{decade}</text>\n",
            sy(decade) + 4.0
        ));
        decade += 1.0;
    }
    svg.push_str(&format!(
        "<text x=\"{M}\" y=\"{}\">step {x0}</text><text x=\"{}\" y=\"{}\">step {x1}</text>\n",
        H - M + 18.0,
        W - M - 60.0,
        H - M + 18.0
    ));
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            path.join(" "),
            W - M + 4.0 - 40.0,
            M + 16.0 * i as f64
        ));
    }
    svg.push_str("</svg>\n");
    crate::data::write_atomically(path, svg.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_and_print() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert!("kd".parse::<Method>().unwrap_err().contains("simplified"));
    }

    #[test]
    fn tinybert_runs_its_first_step_at_a_constant_rate() {
        let mut config = TrainConfig::new(Method::Tinybert, 100);
        config.learning_rate = 1.0;
        assert_eq!(config.learning_rate_at(0), 1.0);
        assert_eq!(config.learning_rate_at(49), 1.0);
        assert!((config.learning_rate_at(50) - 0.2).abs() < 1e-12);
        assert!(config.learning_rate_at(99) < 0.03);
    }

    #[test]
    fn groups_hold_candidates_of_one_query() {
        let ex = |q: &str| Example {
            query_id: q.into(),
            query: q.into(),
            passage: "p".into(),
            label: None,
        };
        let examples: Vec<Example> = ["a", "a", "a", "a", "a", "b", "b", "c"]
            .into_iter()
            .map(ex)
            .collect();
        let units = make_units(&examples, 2, 1);
        assert_eq!(units.len(), 3);
        for u in &units {
            assert_eq!(examples[u[0]].query_id, examples[u[1]].query_id);
        }
        assert_eq!(make_units(&examples, 1, 1).len(), 8);
    }

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
