//! The training loop: [`train`] and the state of a run between steps.

mod setup;
mod teacher;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;
use tinyrank_core::checkpoint::save_checkpoint;
use tinyrank_core::{
    Batch, Checkpoint, Encoded, Padding, PairTokenizer, Precision, Reranker, SaveDtype,
    SelectedDevice, Trace,
};

use super::batches::EpochOrders;
use super::checkpoint::CheckpointWriter;
use super::config::{Method, TrainConfig};
use super::log::{LOG_FILE, PLOT_FILE, StepLog, append_log, write_plot};
use super::objective::{Outputs, Term, total, weigh};
use super::pending::{PendingSteps, StepSums};
use super::profile::Profile;
use super::{BEST_DIR, Event, Outcome, STUDENT_DIR, Student, TrainError, TrainSetup};
use crate::examples::Example;
use crate::losses::LayerMap;
use crate::optim::{AccumulatedGrads, AdamW};
use crate::rerank::EvalSet;
use teacher::Teacher;

/// Ends a phase of `--profile` (nothing without it). A function of the field, not of the run,
/// so that a caller can hold other fields of the run meanwhile.
fn mark(profile: &mut Option<Profile>, phase: &'static str) {
    if let Some(profile) = profile {
        profile.mark(phase);
    }
}

/// Trains, checkpoints, evaluates and exports; see the module docs.
pub fn train(
    setup: TrainSetup,
    stop: &AtomicBool,
    mut observe: impl FnMut(Event<'_>),
) -> Result<Outcome, TrainError> {
    let (mut run, mut student) = Run::prepare(setup)?;
    observe(Event::Started {
        start_step: run.start_step,
        total_steps: run.config.steps,
        examples: run.examples.len(),
        resumed_from: run.resumed_from.as_deref(),
    });
    for step in run.start_step..run.config.steps {
        student = run.step(student, step)?;
        let done = step + 1;
        let evaluate = run.evaluation_due(done);
        let scheduled = done.is_multiple_of(run.checkpoint_every) || done == run.config.steps;
        if evaluate || scheduled || run.pending.due() {
            run.read_pending(&student, evaluate, &mut observe)?;
        }
        // Read after the events, so that a stop asked for on seeing a step stops right there.
        let stopping = stop.load(Ordering::SeqCst);
        if stopping || scheduled {
            // A checkpoint is written only after its steps' values were read and found finite.
            run.read_pending(&student, false, &mut observe)?;
            run.save(&student, done)?;
            let dir = &run.writer.dir;
            observe(Event::Saved { step: done, dir });
        }
        if stopping && done < run.config.steps {
            let checkpoint = run.writer.dir.clone();
            return Ok(Outcome::Stopped {
                step: done,
                checkpoint,
            });
        }
    }
    if let Some(profile) = &run.profile {
        observe(Event::Profile(profile));
    }
    run.export(&student)
}

/// A run between steps: everything but the student, which the optimiser takes and gives back.
struct Run {
    config: TrainConfig,
    teacher: Option<Teacher>,
    layer_map: Option<LayerMap>,
    examples: Vec<Example>,
    encoded: Vec<Encoded>,
    units: Vec<Vec<usize>>,
    orders: EpochOrders,
    tokenizer: PairTokenizer,
    device: SelectedDevice,
    optimizer: AdamW,
    grads: AccumulatedGrads,
    writer: CheckpointWriter,
    out_dir: PathBuf,
    dev: Option<EvalSet>,
    eval_every: usize,
    checkpoint_every: usize,
    start_step: usize,
    resumed_from: Option<PathBuf>,
    logs: Vec<StepLog>,
    best_dev: Option<(usize, f64)>,
    last_saved: Option<(usize, PathBuf)>,
    /// `--balance-terms`: each term's divisor, fixed at its first step (saved in checkpoints).
    term_scales: BTreeMap<String, f64>,
    /// Steps whose values are still on the device.
    pending: PendingSteps,
    profile: Option<Profile>,
}

impl Run {
    /// One optimiser step over `accumulation` micro-batches; returns the updated student. The
    /// step's values stay on the device, queued in `pending` (nothing here waits for the device).
    fn step(&mut self, student: Student, step: usize) -> Result<Student, TrainError> {
        let config = self.config.clone();
        if config.method == Method::Tinybert && step == config.split_step() && step > 0 {
            self.optimizer.reset();
        }
        let lr = config.learning_rate_at(step);
        self.grads.clear();
        if let Some(profile) = &mut self.profile {
            profile.start_step(step > self.start_step);
        }
        let mut sums = StepSums::default();
        for micro in 0..config.accumulation {
            let picked = self.picked(step, micro);
            let mut terms = self.terms(&student, &picked, step);
            weigh(&mut terms, &config, &mut self.term_scales);
            mark(&mut self.profile, "loss terms");
            let Some(total) = total(&terms) else {
                return Err(TrainError::Setup(format!(
                    "{} has no loss terms",
                    config.method
                )));
            };
            sums.add(&total, &terms);
            let grads = total.backward();
            mark(&mut self.profile, "backward");
            self.grads.add(&student, &grads);
            mark(&mut self.profile, "gradient sums");
            self.pending.trained(picked.len());
        }
        // No gradient at all (every term constant in this step): a norm of 0 and no update.
        let grads = self.grads.flatten(&self.device.device);
        let norm = grads.global_norm();
        let scale = grads.scale(&norm, config.max_grad_norm);
        let student = self.optimizer.step(student, &grads, lr, scale);
        mark(&mut self.profile, "clipping and AdamW");
        self.pending.push(self.step_log(step + 1, lr), sums, norm);
        Ok(student)
    }

    /// Reads the queued steps' values, evaluates when due, and logs them in order.
    fn read_pending(
        &mut self,
        student: &Student,
        evaluate: bool,
        observe: &mut impl FnMut(Event<'_>),
    ) -> Result<(), TrainError> {
        let mut logs = self.pending.read().map_err(|e| TrainError::NonFinite {
            step: e.step,
            value: e.value,
            last_good: self.last_saved.clone(),
        })?;
        if let (true, Some(last)) = (evaluate, logs.last_mut()) {
            let (ndcg10, best) = self.evaluate(student, last.step)?;
            last.dev_ndcg10 = Some(ndcg10);
            observe(Event::Dev {
                step: last.step,
                ndcg10,
                best,
            });
        }
        for log in logs {
            self.record(log)?;
            if let Some(log) = self.logs.last() {
                observe(Event::Step(log));
            }
        }
        Ok(())
    }

    /// The examples of micro-batch `micro` of `step`, in the run's data order.
    fn picked(&mut self, step: usize, micro: usize) -> Vec<usize> {
        let per_micro = self.config.batch_size / self.config.group();
        let first = (step * self.config.accumulation + micro) * per_micro;
        (first..first + per_micro)
            .flat_map(|u| self.units[self.orders.unit_at(u)].iter().copied())
            .collect()
    }

    /// The forward passes of one micro-batch and its method's loss terms.
    fn terms(&mut self, student: &Student, picked: &[usize], step: usize) -> Vec<Term> {
        let intermediate = self.config.intermediate_at(step);
        let trace = if intermediate {
            Trace::ALL
        } else {
            Trace::default()
        };
        let rows: Vec<&Encoded> = picked.iter().map(|&i| &self.encoded[i]).collect();
        let padding = Padding {
            pad_id: self.tokenizer.pad_id(),
            multiple: self.config.pad_to,
            cap: self.config.max_len,
        };
        let device = &self.device.device;
        let batch = Batch::padded(rows.iter().copied(), padding, device);
        mark(&mut self.profile, "batch");
        let teacher = self
            .teacher
            .as_ref()
            .map(|t| t.forward(&rows, padding, &batch, trace, device));
        mark(&mut self.profile, "teacher forward");
        let student_output = student.model.forward(&batch, trace);
        mark(&mut self.profile, "student forward");
        let outputs = Outputs {
            config: &self.config,
            batch: &batch,
            student: student_output,
            teacher,
            fit_dense: student.fit_dense.as_ref(),
            layer_map: self.layer_map.as_ref(),
            labels: picked.iter().map(|&i| self.examples[i].label).collect(),
            grades: picked.iter().map(|&i| self.examples[i].grade).collect(),
            priors: picked.iter().map(|&i| self.examples[i].prior).collect(),
            device,
        };
        self.config.method.terms(&outputs, intermediate)
    }

    /// The log of step `done` but for what [`PendingSteps`] fills in when it reads the step.
    fn step_log(&self, done: usize, lr: f64) -> StepLog {
        let examples = (self.units.len() * self.config.group()) as f64;
        StepLog {
            step: done,
            epoch: (done * self.config.pairs_per_step()) as f64 / examples,
            lr,
            loss: 0.0,
            terms: BTreeMap::new(),
            grad_norm: 0.0,
            pairs_per_sec: 0.0,
            elapsed_s: 0.0,
            dev_ndcg10: None,
        }
    }

    fn evaluation_due(&self, done: usize) -> bool {
        self.dev.is_some()
            && self.eval_every > 0
            && (done.is_multiple_of(self.eval_every) || done == self.config.steps)
    }

    /// Dev nDCG@10 of the student as it is; keeps it in `best/` when it is the best so far.
    fn evaluate(&mut self, student: &Student, done: usize) -> Result<(f64, bool), TrainError> {
        let Some(dev) = &self.dev else {
            return Ok((0.0, false));
        };
        let model = student.model.valid();
        let mut reranker =
            Reranker::new(model, self.tokenizer.clone(), &self.device, Precision::F32)?;
        reranker.set_max_len(self.config.max_len)?;
        reranker.set_pad_to(self.config.pad_to)?;
        let run = dev
            .rerank(&reranker, |_| {})
            .map_err(|e| TrainError::Setup(e.to_string()))?;
        let (ndcg, _) = dev.ndcg10_rr10(&run);
        let best = self.best_dev.is_none_or(|(_, b)| ndcg > b);
        if best {
            self.best_dev = Some((done, ndcg));
            self.export_weights(student, &self.out_dir.join(BEST_DIR))?;
        }
        Ok((ndcg, best))
    }

    fn record(&mut self, log: StepLog) -> Result<(), TrainError> {
        append_log(&self.out_dir.join(LOG_FILE), &log)?;
        self.logs.push(log);
        Ok(())
    }

    fn save(&mut self, student: &Student, done: usize) -> Result<(), TrainError> {
        self.writer.save(
            student,
            &self.optimizer,
            done,
            self.best_dev,
            &self.term_scales,
        )?;
        write_plot(
            &self.out_dir.join(PLOT_FILE),
            &self.logs,
            self.config.method,
        )?;
        self.last_saved = Some((done, self.writer.dir.clone()));
        Ok(())
    }

    /// The student as an HF checkpoint, without `fit_dense`.
    fn export_weights(&self, student: &Student, dir: &std::path::Path) -> Result<(), TrainError> {
        save_checkpoint(
            dir,
            &self.writer.student_config,
            &student.model,
            None,
            &self.writer.tokenizer_files,
            SaveDtype::F32,
        )?;
        Ok(())
    }

    /// Writes `student/`: the best dev checkpoint when there is one, else the last weights.
    fn export(self, student: &Student) -> Result<Outcome, TrainError> {
        let student_dir = self.out_dir.join(STUDENT_DIR);
        let best_dir = self.out_dir.join(BEST_DIR);
        match self.best_dev {
            Some(_) if best_dir.join("config.json").is_file() => {
                let best = Checkpoint::load(&best_dir, &self.device.device)?;
                best.save(&student_dir, SaveDtype::F32)?;
            }
            _ => self.export_weights(student, &student_dir)?,
        }
        write_plot(
            &self.out_dir.join(PLOT_FILE),
            &self.logs,
            self.config.method,
        )?;
        Ok(Outcome::Finished {
            student_dir,
            steps: self.config.steps,
            best_dev: self.best_dev,
        })
    }
}
