//! A run's start: the set-up checked, the data tokenised, `fit_dense` built, and the state of
//! a checkpoint of the same run resumed.

use std::collections::BTreeMap;

use burn::tensor::Device;
use tinyrank_core::{Checkpoint, Cut, Encoded, PairTokenizer};

use super::Run;
use super::teacher::Teacher;
use crate::examples::Example;
use crate::losses::LayerMap;
use crate::optim::{AccumulatedGrads, AdamW};
use crate::train::batches::{EpochOrders, encode_examples, units_for};
use crate::train::checkpoint::{CHECKPOINT_DIR, CheckpointWriter, load_optimizer, read_state};
use crate::train::config::{Method, TrainConfig};
use crate::train::log::{LOG_FILE, read_log, rewrite_log};
use crate::train::pending::PendingSteps;
use crate::train::profile::Profile;
use crate::train::{Student, TrainError, TrainSetup, check_pair, new_fit_dense};

impl Run {
    /// Checks the set-up, tokenises the data, builds `fit_dense` and resumes when a checkpoint
    /// of this run is there.
    pub(super) fn prepare(setup: TrainSetup) -> Result<(Self, Student), TrainError> {
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
            profile,
        } = setup;
        let layer_map = check_setup(&config, teacher.as_ref(), &student, &examples)?;
        let teacher = teacher
            .map(|t| Teacher::new(t, config.teacher_f16, &device))
            .transpose()?;
        let (encoded, units) = data_order(&config, &student.tokenizer, &examples)?;
        let autodiff = device.device.clone().autodiff();
        let teacher_width = teacher.as_ref().map(Teacher::hidden_size);
        let Checkpoint {
            config: student_config,
            model,
            fit_dense,
            tokenizer,
            tokenizer_files,
            ..
        } = student;
        let fit_dense = fit_dense_for(
            fit_dense,
            &layer_map,
            model.hidden_size(),
            teacher_width,
            &autodiff,
        )?;
        let checkpoint_dir = out_dir.join(CHECKPOINT_DIR);
        let resumed_from = resume
            .or_else(|| CheckpointWriter::exists(&checkpoint_dir).then(|| checkpoint_dir.clone()));
        let optimizer = AdamW::new(config.weight_decay);
        let mut run = Run {
            orders: EpochOrders::new(units.len(), config.seed),
            config,
            teacher,
            layer_map,
            examples,
            encoded,
            units,
            tokenizer,
            device,
            optimizer,
            grads: AccumulatedGrads::default(),
            writer: CheckpointWriter {
                dir: checkpoint_dir,
                student_config,
                tokenizer_files,
                identity,
            },
            out_dir,
            dev,
            eval_every,
            checkpoint_every: checkpoint_every.max(1),
            start_step: 0,
            resumed_from,
            logs: Vec::new(),
            best_dev: None,
            last_saved: None,
            term_scales: BTreeMap::new(),
            pending: PendingSteps::new(),
            profile: profile.then(|| Profile::new(autodiff.clone())),
        };
        let student = run.resume(Student { model, fit_dense }, &autodiff)?;
        run.open_log()?;
        Ok((run, student))
    }

    /// Creates the output folder and keeps the log's steps up to the one resumed from.
    fn open_log(&mut self) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.out_dir)
            .map_err(|e| tinyrank_core::Error::io(&self.out_dir, e))?;
        let log_path = self.out_dir.join(LOG_FILE);
        self.logs = read_log(&log_path, self.start_step);
        rewrite_log(&log_path, &self.logs)?;
        Ok(())
    }

    /// Continues from `resumed_from` when set: its weights, optimiser state and step.
    fn resume(&mut self, student: Student, autodiff: &Device) -> Result<Student, TrainError> {
        let Some(dir) = self.resumed_from.clone() else {
            return Ok(student);
        };
        let state = read_state(&dir)?;
        if let Some(field) = self.writer.identity.first_difference(&state.identity) {
            return Err(TrainError::Setup(format!(
                "{} is a checkpoint of another run: {field} differs. Resume with the same \
                 settings, or pick another --out",
                dir.display()
            )));
        }
        let saved = Checkpoint::load(&dir, autodiff)?;
        load_optimizer(&dir, &state, &mut self.optimizer, &self.device.device)?;
        self.start_step = state.step;
        self.best_dev = state.best_dev;
        self.term_scales = state.term_scales;
        self.last_saved = Some((state.step, self.writer.dir.clone()));
        Ok(Student {
            model: saved.model,
            fit_dense: saved.fit_dense.or(student.fit_dense),
        })
    }
}

/// Refuses a set-up that cannot train; returns the layer map of the intermediate terms.
fn check_setup(
    config: &TrainConfig,
    teacher: Option<&Checkpoint>,
    student: &Checkpoint,
    examples: &[Example],
) -> Result<Option<LayerMap>, TrainError> {
    config.check().map_err(TrainError::Setup)?;
    if config.method.needs_teacher() && teacher.is_none() {
        return Err(TrainError::Setup(format!(
            "{} needs a teacher",
            config.method
        )));
    }
    let layer_map = match teacher {
        Some(t) => check_pair(t, student, config).map_err(TrainError::Setup)?,
        None => None,
    };
    if config.method == Method::FineTune && examples.iter().any(|e| e.prior.is_none()) {
        return Err(TrainError::Setup(
            "fine-tune: every example needs a score to learn from (a bi-encoder's, see \
             --bi-encoder)"
                .into(),
        ));
    }
    if config.method == Method::Labels && examples.iter().all(|e| e.label.is_none()) {
        return Err(TrainError::Setup(
            "labels: none of the training examples has a label (give qrels or triples)".into(),
        ));
    }
    Ok(layer_map)
}

/// The student's fit_dense when hidden states are distilled: its own (checked against the
/// widths), else a new one.
fn fit_dense_for(
    fit: Option<burn::nn::Linear>,
    layer_map: &Option<LayerMap>,
    student_width: usize,
    teacher_width: Option<usize>,
    device: &Device,
) -> Result<Option<burn::nn::Linear>, TrainError> {
    let (Some(_), Some(teacher_width)) = (layer_map, teacher_width) else {
        return Ok(fit);
    };
    let Some(fit) = fit else {
        return Ok(Some(new_fit_dense(student_width, teacher_width, device)));
    };
    let want = [student_width, teacher_width];
    if fit.weight.dims() != want {
        return Err(TrainError::Setup(format!(
            "the student's fit_dense maps {:?} but student and teacher widths need {want:?}",
            fit.weight.dims()
        )));
    }
    Ok(Some(fit))
}

/// The examples tokenised once, and the units of them the run visits.
type DataOrder = (Vec<Encoded>, Vec<Vec<usize>>);

fn data_order(
    config: &TrainConfig,
    tokenizer: &PairTokenizer,
    examples: &[Example],
) -> Result<DataOrder, TrainError> {
    let cut = Cut::new(config.max_len)?;
    let encoded = encode_examples(tokenizer, cut, examples)?;
    let units = units_for(config, examples);
    if units.is_empty() {
        return Err(TrainError::Setup(no_units_message(config)));
    }
    Ok((encoded, units))
}

fn no_units_message(config: &TrainConfig) -> String {
    let why = if config.method.grouped() {
        format!(
            " form a group of {} candidates of one query",
            config.group_size
        )
    } else {
        String::new()
    };
    let idle = if config.skip_idle {
        " that some loss term learns from (--skip-idle)"
    } else {
        ""
    };
    format!("no training examples{why}{idle}")
}
