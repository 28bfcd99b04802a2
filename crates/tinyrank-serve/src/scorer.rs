//! The scoring thread: it owns the model, takes tokenised requests from a queue and scores
//! their pairs in batches formed by a token budget, across requests, so that many small
//! concurrent requests run at the throughput of one large batch.
//!
//! Pairs are taken first-in first-out, so requests finish in the order they came and a
//! request's wait is the work queued before it. A request whose client has gone is dropped
//! before any more of its pairs are scored.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tinyrank_core::{
    BertConfig, Checkpoint, Cut, DeviceChoice, Encoded, EngineKind, PairTokenizer, Precision,
    Reranker, select_device,
};
use tokio::sync::{oneshot, watch};

use crate::metrics::Metrics;

/// What the scoring thread needs to load and batch.
#[derive(Debug, Clone)]
pub struct ScorerConfig {
    pub model: PathBuf,
    pub device: DeviceChoice,
    pub precision: Precision,
    pub max_len: usize,
    /// Burn's batches are padded to a multiple of this many tokens (`Reranker::set_pad_to`).
    pub pad_to: usize,
    /// Tokens per batch (padded tokens on burn, whose batches are padded; real ones on the
    /// fused CPU path, which packs pairs end to end).
    pub max_batch_tokens: usize,
    /// Off: each request is scored alone, as `tinyrank rerank` scores a query's candidates.
    pub batching: bool,
}

/// The loaded model, as the HTTP side sees it.
#[derive(Debug)]
pub struct ModelInfo {
    pub config: BertConfig,
    pub device: String,
    pub engine: EngineKind,
    /// Cloned into tokenising tasks.
    pub tokenizer: PairTokenizer,
    /// The server's max length, longest-first.
    pub cut: Cut,
}

#[derive(Debug, Clone)]
pub enum Status {
    Loading,
    Ready(Arc<ModelInfo>),
    Failed(String),
    /// The scoring thread has ended (shut down, or it panicked).
    Stopped,
}

/// Why a request got no scores.
#[derive(Debug)]
pub enum ScoreError {
    NotReady(Status),
    Backend(String),
}

struct Job {
    pairs: Vec<Encoded>,
    reply: oneshot::Sender<Result<Vec<f32>, String>>,
}

/// The handle the HTTP handlers share.
pub struct Scorer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    status: watch::Receiver<Status>,
    metrics: Arc<Metrics>,
}

impl Scorer {
    /// Starts the scoring thread, which loads the model (status `Loading` until then).
    pub fn start(
        config: ScorerConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
        let (jobs, queue) = mpsc::channel();
        let (status_tx, status) = watch::channel(Status::Loading);
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("tinyrank-scorer".into())
            .spawn(move || {
                // Status goes to Stopped however the thread ends, a panic included.
                let stopped = StopGuard(&status_tx);
                let reranker = match load(&config) {
                    Ok((reranker, info)) => {
                        thread_metrics.model_loaded.set(1);
                        stopped.0.send_replace(Status::Ready(Arc::new(info)));
                        reranker
                    }
                    Err(e) => {
                        stopped.0.send_replace(Status::Failed(e));
                        return;
                    }
                };
                let batches = Batches {
                    reranker: &reranker,
                    config: &config,
                    metrics: &thread_metrics,
                };
                if config.batching {
                    batches.run(queue);
                } else {
                    batches.run_unbatched(queue);
                }
                thread_metrics.model_loaded.set(0);
            })?;
        let scorer = Arc::new(Self {
            jobs: Mutex::new(Some(jobs)),
            status,
            metrics,
        });
        Ok((scorer, thread))
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of status.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Scores `pairs` (in their order) once the scoring thread reaches them.
    pub async fn score(&self, pairs: Vec<Encoded>) -> Result<Vec<f32>, ScoreError> {
        let status = self.status();
        if !matches!(status, Status::Ready(_)) {
            return Err(ScoreError::NotReady(status));
        }
        let count = pairs.len();
        let (reply, answer) = oneshot::channel();
        // Counted before sending: the thread may finish the job before send returns.
        self.metrics.entered_queue(count);
        let sent = match &*self.jobs.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(jobs) => jobs.send(Job { pairs, reply }).is_ok(),
            None => false,
        };
        if !sent {
            self.metrics.left_queue(count);
            return Err(ScoreError::NotReady(Status::Stopped));
        }
        match answer.await {
            Ok(Ok(scores)) => Ok(scores),
            Ok(Err(message)) => Err(ScoreError::Backend(message)),
            Err(_) => Err(ScoreError::NotReady(Status::Stopped)),
        }
    }

    /// No new work; the thread ends once what is queued is scored.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

struct StopGuard<'a>(&'a watch::Sender<Status>);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        // A failed load stays visible as such.
        self.0.send_if_modified(|status| {
            let changed = !matches!(status, Status::Failed(_));
            if changed {
                *status = Status::Stopped;
            }
            changed
        });
    }
}

fn load(config: &ScorerConfig) -> Result<(Reranker, ModelInfo), String> {
    let fail = |e: tinyrank_core::Error| e.to_string();
    let selected = select_device(config.device).map_err(fail)?;
    let checkpoint = Checkpoint::load(&config.model, &selected.device).map_err(fail)?;
    let model_config = checkpoint.config.clone();
    let mut reranker =
        Reranker::from_checkpoint(checkpoint, &selected, config.precision).map_err(fail)?;
    reranker.set_max_len(config.max_len).map_err(fail)?;
    reranker.set_pad_to(config.pad_to).map_err(fail)?;
    let info = ModelInfo {
        config: model_config,
        device: selected.description,
        engine: reranker.engine(),
        tokenizer: reranker.tokenizer.clone(),
        cut: reranker.cut(),
    };
    Ok((reranker, info))
}

/// A queued request and how far its scoring has come.
struct Active {
    job: Job,
    scores: Vec<f32>,
    /// Next pair to put in a batch.
    next: usize,
    /// Pairs scored.
    done: usize,
    failed: Option<String>,
}

struct Batches<'a> {
    reranker: &'a Reranker,
    config: &'a ScorerConfig,
    metrics: &'a Metrics,
}

impl Batches<'_> {
    fn run(&self, queue: mpsc::Receiver<Job>) {
        let mut active: VecDeque<Active> = VecDeque::new();
        loop {
            if active.is_empty() {
                let Ok(job) = queue.recv() else { return };
                active.push_back(Active::new(job));
            }
            active.extend(queue.try_iter().map(Active::new));
            active.retain(|request| {
                let gone = request.job.reply.is_closed();
                if gone {
                    self.metrics.left_queue(request.job.pairs.len());
                }
                !gone
            });
            let picks = self.take_batch(&mut active);
            if picks.is_empty() {
                continue;
            }
            let rows: Vec<&Encoded> = picks
                .iter()
                .map(|&(a, i)| &active[a].job.pairs[i])
                .collect();
            match self.score(&rows) {
                Ok(scores) => {
                    for (&(a, i), score) in picks.iter().zip(scores) {
                        active[a].scores[i] = score;
                        active[a].done += 1;
                    }
                }
                Err(message) => {
                    for &(a, _) in &picks {
                        active[a].failed = Some(message.clone());
                    }
                }
            }
            self.finish(&mut active);
        }
    }

    /// Pairs from the front of the queue, in order, until the next would pass the budget
    /// (always at least one).
    fn take_batch(&self, active: &mut VecDeque<Active>) -> Vec<(usize, usize)> {
        let padding = self.reranker.padding();
        let (mut picks, mut tokens, mut longest) = (Vec::new(), 0, 0);
        for (a, request) in active.iter_mut().enumerate() {
            while request.next < request.job.pairs.len() {
                let len = request.job.pairs[request.next].ids.len();
                let cost = match padding {
                    Some(padding) => (picks.len() + 1) * padding.len(longest.max(len)),
                    None => tokens + len,
                };
                if !picks.is_empty() && cost > self.config.max_batch_tokens {
                    return picks;
                }
                picks.push((a, request.next));
                request.next += 1;
                tokens += len;
                longest = longest.max(len);
            }
        }
        picks
    }

    /// Replies to every request that is complete or failed.
    fn finish(&self, active: &mut VecDeque<Active>) {
        let mut k = 0;
        while k < active.len() {
            let request = &active[k];
            if request.failed.is_none() && request.done < request.job.pairs.len() {
                k += 1;
                continue;
            }
            let Some(request) = active.remove(k) else {
                break;
            };
            self.metrics.left_queue(request.job.pairs.len());
            let answer = match request.failed {
                Some(message) => Err(message),
                None => Ok(request.scores),
            };
            // The client may have gone meanwhile; nothing is owed to it then.
            let _ = request.job.reply.send(answer);
        }
    }

    fn run_unbatched(&self, queue: mpsc::Receiver<Job>) {
        for job in queue {
            let count = job.pairs.len();
            if job.reply.is_closed() {
                self.metrics.left_queue(count);
                continue;
            }
            let started = Instant::now();
            let scores = self
                .reranker
                .score_encoded(&job.pairs, |_| {})
                .map_err(|e| e.to_string());
            let tokens = job.pairs.iter().map(|p| p.ids.len()).sum();
            self.metrics.batch_done(count, tokens, started.elapsed());
            self.metrics.left_queue(count);
            let _ = job.reply.send(scores);
        }
    }

    fn score(&self, rows: &[&Encoded]) -> Result<Vec<f32>, String> {
        let started = Instant::now();
        let scores = self.reranker.score_batch(rows).map_err(|e| e.to_string());
        let tokens = rows.iter().map(|p| p.ids.len()).sum();
        self.metrics
            .batch_done(rows.len(), tokens, started.elapsed());
        scores
    }
}

impl Active {
    fn new(job: Job) -> Self {
        let n = job.pairs.len();
        Self {
            job,
            scores: vec![0.0; n],
            next: 0,
            done: 0,
            failed: None,
        }
    }
}
