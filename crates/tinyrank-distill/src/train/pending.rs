//! Each step's loss, terms and gradient norm, kept on the device until they are read in one go.
//!
//! A read waits for the device to finish all queued work, so reading every step stalls a GPU
//! between steps (issue 14 measured two such reads per step). The values are read after the
//! first step (which compiles the GPU's kernels), then when [`READ_INTERVAL`] has passed since
//! the last read, and always before the trainer evaluates or writes a checkpoint, so a
//! non-finite loss is still caught before a checkpoint could hold it. On the CPU a step takes
//! longer than the interval, so every step is read as it ends.
//!
//! A step's `elapsed_s` is when its values were read: the time by which the device had done it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burn::tensor::Tensor;

use super::log::StepLog;
use super::objective::Term;

/// How long values may wait on the device: the log and progress lag by at most this much.
pub(super) const READ_INTERVAL: Duration = Duration::from_secs(1);

/// One step's sums over its micro-batches, on the device.
#[derive(Default)]
pub(super) struct StepSums {
    loss: Option<Tensor<1>>,
    terms: BTreeMap<&'static str, Tensor<1>>,
    micro_batches: usize,
}

impl StepSums {
    /// Adds one micro-batch's total and terms (detached: the values keep no graph alive).
    pub fn add(&mut self, total: &Tensor<1>, terms: &[Term]) {
        let value = |t: &Tensor<1>| t.clone().detach().inner();
        self.loss = Some(add(self.loss.take(), value(total)));
        for term in terms {
            let sum = self.terms.remove(term.name);
            self.terms.insert(term.name, add(sum, value(&term.value)));
        }
        self.micro_batches += 1;
    }
}

fn add(sum: Option<Tensor<1>>, value: Tensor<1>) -> Tensor<1> {
    match sum {
        Some(sum) => sum + value,
        None => value,
    }
}

/// A step whose values are still on the device: its log without them, and `[loss, terms.., norm]`.
struct Queued {
    log: StepLog,
    /// Pairs trained on since the run (or its resume) started, this step included.
    trained_pairs: usize,
    names: Vec<&'static str>,
    micro_batches: usize,
    values: Tensor<1>,
}

/// The first non-finite value read: its step and the value.
pub(super) struct NonFinite {
    pub step: usize,
    pub value: f64,
}

pub(super) struct PendingSteps {
    queued: Vec<Queued>,
    started: Instant,
    last_read: Option<Instant>,
    trained_pairs: usize,
}

impl PendingSteps {
    pub fn new() -> Self {
        Self {
            queued: Vec::new(),
            started: Instant::now(),
            last_read: None,
            trained_pairs: 0,
        }
    }

    /// Counts the pairs of a micro-batch of the step being queued.
    pub fn trained(&mut self, pairs: usize) {
        self.trained_pairs += pairs;
    }

    /// Queues a step: `log` has everything but the values, `norm` is the gradient norm.
    pub fn push(&mut self, log: StepLog, sums: StepSums, norm: Tensor<1>) {
        let StepSums {
            loss,
            terms,
            micro_batches,
        } = sums;
        let names = terms.keys().copied().collect();
        let values = loss
            .into_iter()
            .chain(terms.into_values())
            .chain(std::iter::once(norm))
            .collect();
        self.queued.push(Queued {
            log,
            trained_pairs: self.trained_pairs,
            names,
            micro_batches,
            values: Tensor::cat(values, 0),
        });
    }

    pub fn due(&self) -> bool {
        self.last_read
            .is_none_or(|last| last.elapsed() >= READ_INTERVAL)
    }

    /// Reads every queued step in one transfer and completes their logs, in step order.
    pub fn read(&mut self) -> Result<Vec<StepLog>, NonFinite> {
        let queued = std::mem::take(&mut self.queued);
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        let all = Tensor::cat(queued.iter().map(|q| q.values.clone()).collect(), 0);
        let values: Vec<f32> = all
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap_or_default();
        let now = Instant::now();
        self.last_read = Some(now);
        let elapsed = now.duration_since(self.started).as_secs_f64().max(1e-9);
        let mut values = values.into_iter().map(f64::from);
        queued
            .into_iter()
            .map(|q| q.complete(&mut values, elapsed))
            .collect()
    }
}

impl Queued {
    fn complete(
        self,
        values: &mut impl Iterator<Item = f64>,
        elapsed: f64,
    ) -> Result<StepLog, NonFinite> {
        let Queued {
            mut log,
            trained_pairs,
            names,
            micro_batches,
            ..
        } = self;
        log.elapsed_s = elapsed;
        log.pairs_per_sec = trained_pairs as f64 / elapsed;
        let micro = micro_batches.max(1) as f64;
        let mut next = || values.next().unwrap_or(f64::NAN);
        let finite = |value: f64| {
            if value.is_finite() {
                Ok(value)
            } else {
                Err(NonFinite {
                    step: log.step,
                    value,
                })
            }
        };
        log.loss = finite(next())? / micro;
        log.terms = names
            .into_iter()
            .map(|name| (name.to_string(), next() / micro))
            .collect();
        log.grad_norm = finite(next())?;
        Ok(log)
    }
}
