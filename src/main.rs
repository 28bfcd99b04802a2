//! The `tinyrank` command line: rerank TREC runs with a cross-encoder, evaluate runs, and
//! distil a teacher into a small student.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tinyrank_core::{DeviceChoice, SaveDtype};
use tinyrank_distill::data::{Qrels, Run, TextTable};
use tinyrank_distill::metrics::{DEFAULT_METRICS, EvalOptions, Evaluation, Metric, evaluate};

mod assets;
mod augment;
mod bench;
mod demo;
mod distill;
mod rerank;
mod retrieve;
mod serve;
use augment::AugmentArgs;
use bench::BenchArgs;
use demo::DemoArgs;
use distill::DistillArgs;
use rerank::RerankArgs;
use retrieve::RetrieveArgs;

// Inference allocates and frees large activation buffers every batch; glibc hands them back to
// the kernel each time (page faults showed up in profiles), mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`, its place in mimalloc 3's `mi_option_t` (libmimalloc-sys
/// names no constant for it; the test below checks it by its default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc returns freed pages to the kernel 1 s after the free, and a training step
/// (2-3 s on a CPU) frees and reallocates its activations, so every step paid the kernel for
/// zeroed pages again: training ran 16% faster on 2 cores without it, holding 150-220 MB
/// more at its peak. `MIMALLOC_PURGE_DELAY` set by the user still wins.
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain option value; mimalloc reads it at its next purge decision.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

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
    /// Rewrite a checkpoint as a Hugging Face directory, optionally in f16, or average several
    /// fine-tunes of one model into one (a model soup).
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

/// Parses a mixing weight (`--interpolate`, `--prior-teacher`): a number from 0 to 1.
fn weight(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(w) if (0.0..=1.0).contains(&w) => Ok(w),
        _ => Err("expected a weight from 0 to 1".into()),
    }
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
struct EvalArgs {
    /// TREC qrels (qid 0 docid grade).
    #[arg(long)]
    qrels: PathBuf,
    /// TREC run (qid Q0 docid rank score tag).
    #[arg(long)]
    run: PathBuf,
    /// Comma-separated: ndcg@k, rr or rr@k, map, r@k, p@k.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_METRICS)]
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
    /// Checkpoint directory; several, comma-separated, are averaged parameter by parameter
    /// (they must share shape and tokenizer: fine-tunes of one starting point).
    #[arg(long, required = true, value_delimiter = ',')]
    model: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// f32 or f16 (half the download; read back as f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    keep_freed_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rerank(args) => rerank::run_rerank(args),
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

fn run_eval(args: EvalArgs) -> Result<()> {
    let qrels = Qrels::read(&args.qrels)?;
    let run = Run::read(&args.run)?;
    let options = EvalOptions {
        min_rel: args.min_rel,
        missing_as_zero: !args.judged_in_run_only,
    };
    let evaluation = evaluate(&run, &qrels, &args.metrics, options);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&eval_json(&args, &evaluation, options))?
        );
        return Ok(());
    }
    let header: Vec<String> = args
        .metrics
        .iter()
        .map(|m| format!("{:>9}", m.to_string()))
        .collect();
    println!("{:<12}{}", "query", header.join(""));
    let row = |name: &str, values: &[f64]| {
        let cells: Vec<String> = values.iter().map(|v| format!("{v:>9.4}")).collect();
        println!("{name:<12}{}", cells.join(""));
    };
    if args.per_query {
        for (qid, values) in &evaluation.per_query {
            row(qid, values);
        }
    }
    row("all", &evaluation.means);
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

/// `eval --json`: the means by metric name, and with --per-query each query's values.
fn eval_json(args: &EvalArgs, evaluation: &Evaluation, options: EvalOptions) -> serde_json::Value {
    let by_metric = |values: &[f64]| -> serde_json::Value {
        args.metrics
            .iter()
            .zip(values)
            .map(|(m, v)| (m.to_string(), (*v).into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let mut out = serde_json::json!({
        "run": args.run,
        "qrels": args.qrels,
        "min_rel": args.min_rel,
        "queries": evaluation.per_query.len(),
        "missing_queries_count_as_zero": options.missing_as_zero,
        "means": by_metric(&evaluation.means),
    });
    if args.per_query {
        out["per_query"] = evaluation
            .per_query
            .iter()
            .map(|(q, values)| (q.clone(), by_metric(values)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    out
}

fn run_export(args: ExportArgs) -> Result<()> {
    let dtype = match args.dtype.as_str() {
        "f32" => SaveDtype::F32,
        "f16" => SaveDtype::F16,
        other => bail!("--dtype {other}: expected f32 or f16"),
    };
    let device = tinyrank_core::burn::tensor::Device::flex();
    let checkpoints = args
        .model
        .iter()
        .map(|dir| tinyrank_core::Checkpoint::load(dir, &device))
        .collect::<Result<Vec<_>, _>>()?;
    let checkpoint = match <[_; 1]>::try_from(checkpoints) {
        Ok([one]) => one,
        Err(several) => {
            let origins: Vec<String> = args.model.iter().map(|d| d.display().to_string()).collect();
            tinyrank_core::Checkpoint::average(&several, &origins, &device)?
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The hard-coded option index is the purge delay: mimalloc 3's default of 1 s (1000 ms)
    /// before, never purging after.
    #[test]
    fn keep_freed_pages_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads a plain option value.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 1000);
        keep_freed_pages();
        assert_eq!(get(), -1);
    }
}
