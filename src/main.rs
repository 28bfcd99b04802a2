//! The `tinyrank` command line: rerank TREC runs with a cross-encoder, evaluate runs, and
//! distil a teacher into a small student.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tinyrank_core::{
    Aggregation, DEFAULT_MAX_LEN, DeviceChoice, Precision, Reranker, SaveDtype, TitleSource,
    Truncation, Windows, WordWindows, select_device,
};
use tinyrank_distill::data::{Qrels, Run, TextTable};
use tinyrank_distill::metrics::{DEFAULT_METRICS, EvalOptions, Metric, evaluate};
use tinyrank_distill::rerank::{EmptyText, candidates, rerank, rerank_documents};

mod augment;
mod bench;
mod demo;
mod distill;
mod retrieve;
mod serve;
use augment::AugmentArgs;
use bench::BenchArgs;
use demo::DemoArgs;
use distill::DistillArgs;
use retrieve::RetrieveArgs;

// Inference allocates and frees large activation buffers every batch; glibc hands them back to
// the kernel each time (page faults showed up in profiles), mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tinyrank",
    version,
    about = "Distil BERT cross-encoder rerankers and run them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rerank each query's top-k candidates of a TREC run and write a new run.
    Rerank(RerankArgs),
    /// Evaluate a TREC run against graded judgments (trec_eval conventions).
    Eval(EvalArgs),
    /// Rank a whole collection for each query with a bi-encoder (a dense first stage) and write
    /// a TREC run.
    Retrieve(RetrieveArgs),
    /// Rewrite a checkpoint as a Hugging Face directory, optionally in f16.
    Export(ExportArgs),
    /// Distil a teacher cross-encoder into a small student (Simplified TinyBERT).
    Distill(Box<DistillArgs>),
    /// Write augmentation data for distillation: pseudo-queries cut from training passages, each
    /// with its BM25 candidates, as a dataset directory for `distill --train`.
    Augment(AugmentArgs),
    /// Serve the client-side search demo (BM25 + the model, in the browser) on 127.0.0.1.
    Demo(DemoArgs),
    /// Measure pairs/s and peak memory of model shapes (or a checkpoint) on each backend.
    Bench(BenchArgs),
    /// Serve a reranker over HTTP: Cohere/Jina (/v1/rerank, /v2/rerank) and TEI (/rerank)
    /// APIs, batching across requests, /health, /metrics (Prometheus), /info.
    Serve(Box<tinyrank_serve::ServeArgs>),
}

#[derive(Args)]
struct DeviceArgs {
    /// auto (a hardware GPU when there is one, else the CPU), cpu or gpu.
    #[arg(long, default_value = "auto")]
    pub(crate) device: DeviceChoice,
}

/// The texts a run's ids refer to.
#[derive(Args)]
struct TextArgs {
    /// queries.tsv (qid<TAB>text).
    #[arg(long)]
    queries: PathBuf,
    /// collection.tsv (pid<TAB>text).
    #[arg(long)]
    collection: PathBuf,
}

impl TextArgs {
    fn read(&self) -> Result<(TextTable, TextTable)> {
        Ok((
            TextTable::read(&self.queries, "query")?,
            TextTable::read(&self.collection, "passage")?,
        ))
    }
}

#[derive(Args)]
struct RerankArgs {
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

#[derive(Args)]
struct EvalArgs {
    /// TREC qrels (qid 0 docid grade).
    #[arg(long)]
    qrels: PathBuf,
    /// TREC run (qid Q0 docid rank score tag).
    #[arg(long)]
    run: PathBuf,
    /// Comma-separated: ndcg@k, rr or rr@k, map, r@k, p@k.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ndcg@10,rr@10,map,r@100,p@10"
    )]
    metrics: Vec<Metric>,
    /// Lowest grade counted relevant by the binary metrics (trec_eval -l; TREC DL uses 2).
    #[arg(long, default_value_t = 1)]
    min_rel: i32,
    /// Average only over queries present in the run (default: judged queries missing from the
    /// run count as 0, as trec_eval -c).
    #[arg(long)]
    judged_in_run_only: bool,
    /// Print every query's values too.
    #[arg(long)]
    per_query: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// f32 or f16 (half the download; read back as f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rerank(args) => run_rerank(args),
        Command::Eval(args) => run_eval(args),
        Command::Retrieve(args) => retrieve::run_retrieve(args),
        Command::Export(args) => run_export(args),
        Command::Distill(args) => distill::run_distill(*args),
        Command::Augment(args) => augment::run_augment(args),
        Command::Demo(args) => demo::run_demo(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Serve(args) => serve::run_serve(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of contexts, outermost first.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(2)
        }
    }
}

fn run_rerank(args: RerankArgs) -> Result<()> {
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
    // Token windows depend on each query's length: their number is known only once cut.
    let pairs: Option<usize> = match windows {
        _ if !documents => Some(todo.iter().map(|c| c.passages.len()).sum()),
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
    };

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

    let bar = match pairs {
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
    };
    let scoring = Instant::now();
    let mut written = Vec::new();
    let scored_pairs;
    if !documents {
        let reranked = rerank(&reranker, &todo, |n| bar.inc(n as u64))?;
        bar.finish_and_clear();
        reranked.write(&args.output, &args.tag)?;
        written.push(args.output.clone());
        scored_pairs = pairs.unwrap_or_default();
    } else {
        let (runs, count) =
            rerank_documents(&reranker, &todo, windows, args.title, &args.doc_mode, |n| {
                bar.inc(n as u64)
            })?;
        bar.finish_and_clear();
        scored_pairs = count.passages;
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
        for (run, mode) in runs.iter().zip(&args.doc_mode) {
            let path = if args.doc_mode.len() == 1 {
                args.output.clone()
            } else {
                let mut name = args.output.clone().into_os_string();
                name.push(format!(".{mode}"));
                PathBuf::from(name)
            };
            run.write(&path, &args.tag)?;
            written.push(path);
        }
    }
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

fn run_eval(args: EvalArgs) -> Result<()> {
    let qrels = Qrels::read(&args.qrels)?;
    let run = Run::read(&args.run)?;
    let options = EvalOptions {
        min_rel: args.min_rel,
        missing_as_zero: !args.judged_in_run_only,
    };
    let metrics = if args.metrics.is_empty() {
        DEFAULT_METRICS.to_vec()
    } else {
        args.metrics
    };
    let evaluation = evaluate(&run, &qrels, &metrics, options);
    if args.json {
        let means: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .zip(&evaluation.means)
            .map(|(m, v)| (m.to_string(), (*v).into()))
            .collect();
        let mut out = serde_json::json!({
            "run": args.run,
            "qrels": args.qrels,
            "min_rel": args.min_rel,
            "queries": evaluation.per_query.len(),
            "missing_queries_count_as_zero": options.missing_as_zero,
            "means": means,
        });
        if args.per_query {
            out["per_query"] = evaluation
                .per_query
                .iter()
                .map(|(q, values)| {
                    let row: serde_json::Map<String, serde_json::Value> = metrics
                        .iter()
                        .zip(values)
                        .map(|(m, v)| (m.to_string(), (*v).into()))
                        .collect();
                    (q.clone(), row.into())
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let header: Vec<String> = metrics
        .iter()
        .map(|m| format!("{:>9}", m.to_string()))
        .collect();
    println!("{:<12}{}", "query", header.join(""));
    if args.per_query {
        for (qid, values) in &evaluation.per_query {
            let cells: Vec<String> = values.iter().map(|v| format!("{v:>9.4}")).collect();
            println!("{qid:<12}{}", cells.join(""));
        }
    }
    let cells: Vec<String> = evaluation
        .means
        .iter()
        .map(|v| format!("{v:>9.4}"))
        .collect();
    println!("{:<12}{}", "all", cells.join(""));
    println!(
        "{} queries; binary metrics count grade >= {}; {}",
        evaluation.per_query.len(),
        args.min_rel,
        if options.missing_as_zero {
            "judged queries missing from the run count as 0 (trec_eval -c)"
        } else {
            "only queries present in the run are averaged"
        }
    );
    Ok(())
}

fn run_export(args: ExportArgs) -> Result<()> {
    let dtype = match args.dtype.as_str() {
        "f32" => SaveDtype::F32,
        "f16" => SaveDtype::F16,
        other => bail!("--dtype {other}: expected f32 or f16"),
    };
    let device = tinyrank_core::burn::tensor::Device::flex();
    let checkpoint = tinyrank_core::Checkpoint::load(&args.model, &device)?;
    checkpoint
        .save(&args.out, dtype)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let size = std::fs::metadata(args.out.join("model.safetensors"))?.len();
    eprintln!(
        "wrote {} ({:.1} MB of weights, {:?})",
        args.out.display(),
        size as f64 / 1e6,
        dtype
    );
    Ok(())
}
