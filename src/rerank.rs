//! `tinyrank rerank`: a TREC run's top candidates (passages, or documents cut into passages)
//! scored by a cross-encoder and written as a reranked run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tinyrank_core::{
    Aggregation, DEFAULT_MAX_LEN, Precision, Reranker, TitleSource, Truncation, Windows,
    WordWindows, select_device,
};
use tinyrank_distill::data::Run;
use tinyrank_distill::fusion::interpolate;
use tinyrank_distill::rerank::{Candidates, EmptyText, candidates, rerank, rerank_documents};

use crate::{DeviceArgs, TextArgs};

#[derive(Args)]
pub struct RerankArgs {
    /// Hugging Face cross-encoder directory (config.json, model.safetensors, tokenizer).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    texts: TextArgs,
    /// The TREC run whose candidates are reranked.
    #[arg(long)]
    run: PathBuf,
    /// Where the reranked TREC run goes (written whole or not at all).
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Maximum pair length in tokens, special tokens included.
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    max_len: usize,
    /// Keep the query whole and cut only the passage (default: longest-first).
    #[arg(long)]
    truncate_passage_only: bool,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// On a GPU, pad batches to a multiple of this many tokens (length buckets: a GPU build
    /// with burn's fusion compiles kernels once per shape); 1 pads to the longest pair.
    #[arg(long, default_value_t = 1)]
    pad_to: usize,
    /// Run the encoder's projections in 8-bit integers (CPU only): faster, scores within a few
    /// hundredths of f32 (docs/performance.md has the speed and DL19 nDCG@10 of both).
    #[arg(long)]
    int8: bool,
    /// Run the burn model in f16 (GPU adapters with `shader-f16` only).
    #[arg(long, conflicts_with = "int8")]
    f16: bool,
    /// Mix in the run's own scores: rank by (1 - W) x the reranker's + W x the run's, each
    /// standardised over the query's reranked candidates; 0 ranks by the reranker alone. Keeps a
    /// strong first stage's say over a long list (docs/results.md, "A better teacher").
    #[arg(long, default_value_t = 0.0, value_name = "W", value_parser = crate::weight)]
    interpolate: f64,
    /// Run tag written in the last column.
    #[arg(long, default_value = "tinyrank")]
    tag: String,
    /// Rerank documents: cut each into --window-word passages every --stride words and give the
    /// document maxp (best passage), firstp, sump, mean or topKmean of its passage scores.
    /// Several, comma-separated, write one run each (OUTPUT.maxp, OUTPUT.firstp, ...) from one
    /// scoring pass.
    #[arg(long, value_delimiter = ',')]
    doc_mode: Vec<Aggregation>,
    /// Passage size with --doc-mode: a number of words, or `fill` for windows of tokens that
    /// fill --max-len with the query exactly.
    #[arg(long, default_value = "150")]
    window: WindowSize,
    /// Between passage starts, in the window's unit [default: 75 words, or half of --max-len
    /// in tokens with --window fill].
    #[arg(long)]
    stride: Option<usize>,
    /// Put each document's title before every one of its passages: none, or first-sentence
    /// (the text up to the first " . ", as in Cranfield's `title . abstract`).
    #[arg(long, default_value = "none")]
    title: TitleSource,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `--window`: words, or token windows that fill the max length.
#[derive(Debug, Clone, Copy)]
enum WindowSize {
    Words(usize),
    Fill,
}

impl std::str::FromStr for WindowSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "fill" {
            return Ok(WindowSize::Fill);
        }
        s.parse()
            .map(WindowSize::Words)
            .map_err(|_| format!("expected a number of words or `fill`, not {s:?}"))
    }
}

impl RerankArgs {
    fn windows(&self) -> Result<Windows> {
        Ok(match self.window {
            WindowSize::Words(size) => {
                Windows::Words(WordWindows::new(size, self.stride.unwrap_or(75))?)
            }
            WindowSize::Fill => {
                let stride = self.stride.unwrap_or(self.max_len / 2);
                if stride == 0 {
                    bail!("--stride must be at least 1 token");
                }
                Windows::Tokens { stride }
            }
        })
    }
}

pub fn run_rerank(args: RerankArgs) -> Result<()> {
    let started = Instant::now();
    // Read and check every input before loading the model, so bad data fails fast.
    let (queries, collection) = args.texts.read()?;
    let run = Run::read(&args.run)?;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let documents = !args.doc_mode.is_empty();
    let empty = if documents {
        EmptyText::Allowed
    } else {
        EmptyText::Refused
    };
    let todo = candidates(&queries, &collection, &run, &args.run, args.top_k, empty)?;
    let windows = args.windows()?;
    let pairs = pair_count(&args, &todo, windows);

    let reranker = load_reranker(&args)?;
    let bar = progress_bar(pairs);
    let scoring = Instant::now();
    let (written, scored_pairs) = if documents {
        score_documents(&args, &run, &reranker, &todo, windows, &bar)?
    } else {
        let reranked = rerank(&reranker, &todo, |n| bar.inc(n as u64))?;
        bar.finish_and_clear();
        mixed(&args, &run, reranked).write(&args.output, &args.tag)?;
        (vec![args.output.clone()], pairs.unwrap_or_default())
    };
    let scoring_secs = scoring.elapsed().as_secs_f64();
    let written: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "reranked {} queries, {scored_pairs} pairs in {:.1}s ({:.1} pairs/s scoring), total {:.1}s; wrote {}",
        todo.len(),
        scoring_secs,
        scored_pairs as f64 / scoring_secs,
        started.elapsed().as_secs_f64(),
        written.join(", ")
    );
    Ok(())
}

/// The pairs to score, when known before scoring: token windows depend on each query's
/// length, so their number is known only once cut.
fn pair_count(args: &RerankArgs, todo: &[Candidates<'_>], windows: Windows) -> Option<usize> {
    match windows {
        _ if args.doc_mode.is_empty() => Some(todo.iter().map(|c| c.passages.len()).sum()),
        Windows::Words(words) => Some(
            todo.iter()
                .flat_map(|c| &c.passages)
                .map(|d| {
                    let (title, body) = args.title.split(d);
                    words.split(body, title).len()
                })
                .sum(),
        ),
        Windows::Tokens { .. } => None,
    }
}

fn load_reranker(args: &RerankArgs) -> Result<Reranker> {
    let selected = select_device(args.device.device)?;
    eprintln!("device: {}", selected.description);
    let precision = Precision::from_flags(args.int8, args.f16);
    let mut reranker = Reranker::load(&args.model, &selected, precision)?;
    reranker.set_max_len(args.max_len)?;
    reranker.set_batch_size(args.batch_size)?;
    reranker.set_pad_to(args.pad_to)?;
    if args.truncate_passage_only {
        reranker.set_truncation(Truncation::OnlyPassage);
    }
    Ok(reranker)
}

fn progress_bar(pairs: Option<usize>) -> ProgressBar {
    match pairs {
        Some(pairs) => ProgressBar::new(pairs as u64).with_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} pairs  {per_sec}  elapsed {elapsed}  eta {eta}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::no_length().with_style(
            ProgressStyle::with_template("{pos} pairs  {per_sec}  elapsed {elapsed}")
                .expect("valid template"),
        ),
    }
}

/// The reranked run as written: mixed with the first stage's scores under --interpolate.
fn mixed(args: &RerankArgs, first_stage: &Run, reranked: Run) -> Run {
    if args.interpolate > 0.0 {
        interpolate(&reranked, first_stage, args.interpolate)
    } else {
        reranked
    }
}

/// Scores documents as passages and writes one run per --doc-mode; returns the files written
/// and the passages scored.
fn score_documents(
    args: &RerankArgs,
    first_stage: &Run,
    reranker: &Reranker,
    todo: &[Candidates<'_>],
    windows: Windows,
    bar: &ProgressBar,
) -> Result<(Vec<PathBuf>, usize)> {
    let (runs, count) =
        rerank_documents(reranker, todo, windows, args.title, &args.doc_mode, |n| {
            bar.inc(n as u64)
        })?;
    bar.finish_and_clear();
    let unit = match windows {
        Windows::Words(w) => format!("{} words, stride {}", w.size, w.stride),
        Windows::Tokens { stride } => {
            format!("tokens filling max-len {}, stride {stride}", args.max_len)
        }
    };
    eprintln!(
        "{} documents as {} passages of {unit} ({:.2} per document); {} texts tokenised",
        count.documents,
        count.passages,
        count.passages as f64 / count.documents as f64,
        count.tokenised
    );
    if count.empty_documents > 0 {
        eprintln!(
            "note: {} candidate documents have no text: they rank below the scored ones",
            count.empty_documents
        );
    }
    if count.truncated > 0 {
        eprintln!(
            "note: {} of {} passages were longer than max-len {} and were cut; \
             --window fill makes windows of tokens that fit",
            count.truncated, count.passages, args.max_len
        );
    }
    let mut written = Vec::new();
    for (run, mode) in runs.into_iter().zip(&args.doc_mode) {
        let path = if args.doc_mode.len() == 1 {
            args.output.clone()
        } else {
            let mut name = args.output.clone().into_os_string();
            name.push(format!(".{mode}"));
            PathBuf::from(name)
        };
        mixed(args, first_stage, run).write(&path, &args.tag)?;
        written.push(path);
    }
    Ok((written, count.passages))
}
