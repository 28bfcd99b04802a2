//! `tinyrank distill`: builds the teacher, student and examples from flags, runs the trainer
//! with a progress bar, then compares BM25, the teacher and the student on an evaluation set.
//!
//! With no flags it is the main job: the shared teacher, a student of its layers 1, 3 and 5,
//! Simplified TinyBERT on TREC DL 2020-2022 pools sized for the device (a [`Recipe`]), and a
//! table on TREC DL 2019.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tinyrank_core::bi_encoder::{BI_ENCODER_MAX_LEN, dot};
use tinyrank_core::{
    BackendKind, BiEncoder, Checkpoint, DEFAULT_MAX_LEN, Precision, Reranker, SelectedDevice,
    TitleSource, WordWindows, select_device,
};
use tinyrank_distill::augment::{Augmenter, Pool, SpanWords};
use tinyrank_distill::examples::{
    DocumentExamples, Example, from_dataset, from_documents, from_triples,
};
use tinyrank_distill::mining::{DenseIndex, merge_by_query, mined_examples, set_priors};
use tinyrank_distill::rerank::EvalSet;
use tinyrank_distill::student::{StudentSpec, build_student};
use tinyrank_distill::train::{
    Event, Method, Outcome, RunIdentity, TrainConfig, TrainSetup, train,
};

use crate::DeviceArgs;

#[derive(Args)]
pub struct DistillArgs {
    /// Root of the shared assets (models/, data/) that the defaults point into;
    /// default $TINYRANK_SHARED, else ../shared.
    #[arg(long)]
    assets: Option<PathBuf>,
    /// Teacher cross-encoder directory [default: <assets>/models/teacher-minilm-l6].
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// A checkpoint directory, teacher-layers:1,3,5 or random:layers=3,hidden=384,heads=12,ffn=1536.
    #[arg(long, default_value = "teacher-layers:1,3,5")]
    student: String,
    /// Training dataset directories (queries.tsv, collection.tsv, bm25.run, optional qrels.txt)
    /// [default: <assets>/data/trec-dl-2020, -2021, -2022].
    #[arg(long, value_delimiter = ',')]
    train: Vec<PathBuf>,
    /// Document dataset directories to train on as well: each of a query's top --train-top-k
    /// documents is cut into --doc-window-word passages every --doc-stride words, and each
    /// passage carries its document's label.
    #[arg(long, value_delimiter = ',')]
    train_docs: Vec<PathBuf>,
    #[arg(long, default_value_t = 150)]
    doc_window: usize,
    #[arg(long, default_value_t = 75)]
    doc_stride: usize,
    /// none, or first-sentence: the title (text up to the first " . ") before every passage.
    #[arg(long, default_value = "none")]
    doc_title: TitleSource,
    /// Which passages of a relevant document become positive examples: all, or teacher-best
    /// (only the passage the teacher scores highest, since a relevant document's other passages
    /// need not be relevant). Passages of other documents are all kept.
    #[arg(long, default_value = "all")]
    doc_passages: DocPassages,
    /// MS MARCO triples files (query, positive, negative) to train on as well.
    #[arg(long, value_delimiter = ',')]
    triples: Vec<PathBuf>,
    /// Candidates per training query taken from the top of its run [default: the recipe's:
    /// 16 on a CPU, 100 on a hardware GPU].
    #[arg(long)]
    train_top_k: Option<usize>,
    /// Peak learning rate [default: the recipe's: 5e-4 on a CPU, 1e-4 on a hardware GPU].
    #[arg(long)]
    lr: Option<f64>,
    /// Pseudo-queries to add (`tinyrank augment`'s, made in memory): spans of passages of the
    /// --train collections, each with its --train-top-k BM25 candidates over them, the source
    /// labelled relevant; the --eval set's passages and queries are kept out [default: the
    /// recipe's with the default training sets (64 on a CPU, none on a hardware GPU), else none].
    #[arg(long)]
    augment: Option<u64>,
    /// Words per pseudo-query of --augment, MIN-MAX.
    #[arg(long, default_value_t = SpanWords::DEFAULT)]
    augment_span: SpanWords,
    /// Lowest qrels grade labelled relevant.
    #[arg(long, default_value_t = 2)]
    min_rel: i32,
    /// A bi-encoder (a sentence-transformers BERT, mean pooled) that mines --mine-top-k and
    /// scores every training pair: its similarity x --bi-encoder-scale is the target of
    /// fine-tune's prior term [default with fine-tune or --mine-top-k:
    /// <assets>/models/all-MiniLM-L6-v2].
    #[arg(long)]
    bi_encoder: Option<PathBuf>,
    /// Hard negatives per training query: the bi-encoder's top N over the --train collections
    /// (the --eval set's passages kept out), graded by the query's qrels, beside its
    /// --train-top-k BM25 candidates.
    #[arg(long, default_value_t = 0)]
    mine_top_k: usize,
    /// The bi-encoder's cosine similarity times this is a pair's prior score (20: the
    /// temperature 0.05 such bi-encoders are trained at).
    #[arg(long, default_value_t = 20.0)]
    bi_encoder_scale: f32,
    /// Evaluation dataset directory (with qrels.txt) [default: <assets>/data/trec-dl-2019].
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Candidates per evaluation query reranked (the rest keep their BM25 order below them).
    #[arg(long, default_value_t = 20)]
    eval_top_k: usize,
    /// Skip the final evaluation.
    #[arg(long)]
    no_eval: bool,
    /// Evaluate only the student (for when the teacher's figures are known).
    #[arg(long)]
    no_teacher_eval: bool,
    /// A dataset directory evaluated every --eval-every steps; the best student is kept.
    #[arg(long)]
    dev: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    dev_top_k: usize,
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// Output directory: checkpoint/, student/, log.jsonl, loss.svg, results.md.
    #[arg(long, default_value = "runs/distill")]
    out: PathBuf,
    /// Continue from this training checkpoint (default: <out>/checkpoint when it holds the same
    /// run).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Optimiser steps (overrides --epochs).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 1.0)]
    epochs: f64,
    #[command(flatten)]
    config: TrainConfig,
    #[arg(long, default_value_t = 50)]
    checkpoint_every: usize,
    /// Synchronise the device after each phase of every step and print where a step's time
    /// goes (teacher and student forward, loss terms, backward, optimiser); slows training.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

/// What the main job trains on when `--train-top-k`, `--lr` and `--augment` are not given,
/// sized so that `tinyrank distill` with no flags ends within 10 minutes wherever it runs
/// (docs/results.md has the measurements behind each).
#[derive(Debug, Clone, Copy)]
struct Recipe {
    name: &'static str,
    train_top_k: usize,
    learning_rate: f64,
    /// Pseudo-queries added to the default training sets.
    augment: u64,
}

impl Recipe {
    /// 2,928 pairs of DL 2020-2022 (BM25 top 16) and 1,024 augmented ones, 247 steps: about
    /// 7-9 minutes on 2 CPU cores. The short schedule wants a larger rate than the paper's
    /// (1e-4 gives a student below BM25).
    const CPU: Recipe = Recipe {
        name: "cpu",
        train_top_k: 16,
        learning_rate: 5e-4,
        augment: 64,
    };
    /// The full top-100 pools (18,300 pairs, 1,144 steps), the acceptance run's settings:
    /// about 5 minutes on an H200.
    const GPU: Recipe = Recipe {
        name: "gpu",
        train_top_k: 100,
        learning_rate: 1e-4,
        augment: 0,
    };

    /// The recipe for the device that will train: a software GPU adapter counts as a CPU.
    fn for_device(device: &SelectedDevice) -> Self {
        if device.kind == BackendKind::Gpu && !device.software {
            Self::GPU
        } else {
            Self::CPU
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DocPassages {
    All,
    TeacherBest,
}

/// Keeps, of each relevant document with several passages, only the one `teacher` scores
/// highest; returns how many passages of relevant documents remain.
fn keep_teacher_best_passages(
    teacher: &Reranker,
    documents: &mut [DocumentExamples],
) -> Result<usize> {
    let mut kept = 0;
    for doc in documents.iter_mut().filter(|d| d.label == Some(1)) {
        if doc.passages.len() > 1 {
            let query = doc.passages[0].query.clone();
            let texts: Vec<&str> = doc.passages.iter().map(|p| p.passage.as_str()).collect();
            let scores = teacher.score(&query, &texts)?;
            let best = (0..scores.len())
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .expect("several passages");
            doc.passages = vec![doc.passages.swap_remove(best)];
        }
        kept += doc.passages.len();
    }
    Ok(kept)
}

pub fn assets_root(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("TINYRANK_SHARED").map(PathBuf::from))
        .unwrap_or_else(|| Path::new("..").join("shared"))
}

/// The training sets the defaults use: TREC DL 2020-2022 (never 2019, the evaluation set).
pub fn default_train_dirs(assets: &Path) -> Vec<PathBuf> {
    ["2020", "2021", "2022"]
        .map(|y| assets.join(format!("data/trec-dl-{y}")))
        .to_vec()
}

/// The evaluation set the defaults use: TREC DL 2019.
pub fn default_eval_dir(assets: &Path) -> PathBuf {
    assets.join("data/trec-dl-2019")
}

/// `augment` pseudo-queries over the training collections (the evaluation set kept out), as
/// examples, and how the run's identity names them.
fn augmented(
    train_dirs: &[PathBuf],
    eval_dir: &Path,
    args: &DistillArgs,
    top_k: usize,
    augment: u64,
) -> Result<(Vec<Example>, String)> {
    if train_dirs.is_empty() {
        bail!("--augment cuts its queries from the --train collections: give --train");
    }
    let seed = args.config.seed;
    let pool = Pool::read(train_dirs, &[eval_dir.to_path_buf()])?;
    let examples = Augmenter::new(&pool, args.augment_span, top_k, seed).examples(augment, true)?;
    eprintln!(
        "augmentation: {} pairs of {augment} pseudo-queries over {} passages ({} held out by {})",
        examples.len(),
        pool.len(),
        pool.excluded,
        eval_dir.display()
    );
    let source = format!(
        "augment {augment} queries of {} words, top-{top_k}, seed {seed}, held out {}",
        args.augment_span,
        eval_dir.display()
    );
    Ok((examples, source))
}

pub fn run_distill(args: DistillArgs) -> Result<()> {
    let assets = assets_root(args.assets.clone());
    let teacher_dir = args
        .teacher
        .clone()
        .unwrap_or_else(|| assets.join("models/teacher-minilm-l6"));
    let default_data =
        args.train.is_empty() && args.triples.is_empty() && args.train_docs.is_empty();
    let train_dirs = if default_data {
        default_train_dirs(&assets)
    } else {
        args.train.clone()
    };
    let eval_dir = args
        .eval
        .clone()
        .unwrap_or_else(|| default_eval_dir(&assets));
    let asset_hint = "point --assets or TINYRANK_SHARED at the folder that holds models/ and data/ \
                      (the shared assets), or give --teacher, --train and --eval";
    if !teacher_dir.join("config.json").is_file() {
        bail!(
            "the teacher {} is missing: {asset_hint}",
            teacher_dir.display()
        );
    }
    for dir in train_dirs
        .iter()
        .chain((!args.no_eval).then_some(&eval_dir))
    {
        if !dir.join("queries.tsv").is_file() {
            bail!("the dataset {} is missing: {asset_hint}", dir.display());
        }
    }

    // The device decides the recipe, and so what data to read; no model loads yet.
    let selected = select_device(args.device.device)?;
    eprintln!("device: {}", selected.description);
    let recipe = Recipe::for_device(&selected);
    let train_top_k = args.train_top_k.unwrap_or(recipe.train_top_k);
    let mut config = args.config.clone();
    config.learning_rate = args.lr.unwrap_or(recipe.learning_rate);
    let augment = match args.augment {
        Some(n) => n,
        None if default_data => recipe.augment,
        None => 0,
    };
    if args.train_top_k.is_none() || args.lr.is_none() || args.augment.is_none() {
        eprintln!(
            "recipe: {} (train top {train_top_k}, {augment} augmented queries, lr {:e}; \
             --train-top-k, --augment and --lr override)",
            recipe.name, config.learning_rate
        );
    }

    // Data first: bad input fails before any model loads.
    let mut examples: Vec<Example> = Vec::new();
    let mut sources = Vec::new();
    for dir in &train_dirs {
        examples.extend(from_dataset(dir, train_top_k, args.min_rel)?);
        sources.push(format!(
            "{} top-{} min-rel {}",
            dir.display(),
            train_top_k,
            args.min_rel
        ));
    }
    if augment > 0 {
        let (more, source) = augmented(&train_dirs, &eval_dir, &args, train_top_k, augment)?;
        examples.extend(more);
        sources.push(source);
    }
    for file in &args.triples {
        examples.extend(from_triples(file)?);
        sources.push(file.display().to_string());
    }
    let windows = WordWindows::new(args.doc_window, args.doc_stride)?;
    let mut documents = Vec::new();
    for dir in &args.train_docs {
        documents.extend(from_documents(
            dir,
            train_top_k,
            args.min_rel,
            windows,
            args.doc_title,
        )?);
        sources.push(format!(
            "{} documents top-{} min-rel {}, {}-word windows stride {}, title {:?}, passages {:?}",
            dir.display(),
            train_top_k,
            args.min_rel,
            args.doc_window,
            args.doc_stride,
            args.doc_title,
            args.doc_passages
        ));
    }
    let evaluation = if args.no_eval {
        None
    } else {
        Some(EvalSet::read(&eval_dir, args.eval_top_k)?)
    };
    let dev = args
        .dev
        .as_ref()
        .map(|d| EvalSet::read(d, args.dev_top_k))
        .transpose()?;
    let spec: StudentSpec = args.student.parse().map_err(anyhow::Error::msg)?;

    let method = config.method;
    let device = selected.device.clone();
    let max_len = config.max_len;
    let filter_with_teacher =
        args.doc_passages == DocPassages::TeacherBest && !documents.is_empty();
    let teacher = if method.needs_teacher() || evaluation.is_some() || filter_with_teacher {
        Some(Checkpoint::load(&teacher_dir, &device)?)
    } else {
        None
    };
    if filter_with_teacher {
        let teacher = teacher.as_ref().expect("loaded for the filter");
        let mut scorer = Reranker::new(
            teacher.model.clone(),
            teacher.tokenizer.clone(),
            &selected,
            Precision::F32,
        )?;
        scorer.set_max_len(max_len)?;
        let kept = keep_teacher_best_passages(&scorer, &mut documents)?;
        eprintln!("teacher-best: kept {kept} passages of relevant documents");
    }
    examples.extend(documents.into_iter().flat_map(|d| d.passages));
    let bi = BiEncoderData::load(&args, &assets, &train_dirs, &eval_dir)?;
    if let Some(bi) = &bi {
        if args.mine_top_k > 0 {
            examples = bi.with_mined(&train_dirs, examples, args.mine_top_k, args.min_rel)?;
        }
        bi.set_priors(&mut examples, args.bi_encoder_scale)?;
        sources.push(format!(
            "bi-encoder {}: mined top-{}, priors x {}",
            bi.dir.display(),
            args.mine_top_k,
            args.bi_encoder_scale
        ));
    }
    config.steps = match args.steps {
        Some(steps) => steps,
        None => config.steps_for_epochs(args.epochs, examples.len()),
    };
    let student = build_student(&spec, &teacher_dir, &device.clone().autodiff())?;
    eprintln!(
        "teacher {} ({} layers, {} hidden) -> student {} ({} layers, {} hidden); {} with {} \
         examples, {} steps of {} pairs, max length {} (--max-len; training costs grow with \
         length, so half of rerank's {DEFAULT_MAX_LEN})",
        teacher_dir.display(),
        teacher.as_ref().map_or(0, |t| t.model.num_layers()),
        teacher.as_ref().map_or(0, |t| t.model.hidden_size()),
        args.student,
        student.model.num_layers(),
        student.model.hidden_size(),
        method,
        examples.len(),
        config.steps,
        config.pairs_per_step(),
        config.max_len
    );

    let identity = RunIdentity {
        config: config.clone(),
        teacher: teacher_dir.display().to_string(),
        student: args.student.clone(),
        data: sources,
        examples: examples.len(),
    };
    let mut eval_teacher = teacher
        .as_ref()
        .map(|t| {
            Reranker::new(
                t.model.clone(),
                t.tokenizer.clone(),
                &selected,
                Precision::F32,
            )
        })
        .transpose()?;
    let setup = TrainSetup {
        config: config.clone(),
        identity,
        teacher: teacher.filter(|_| method.needs_teacher()),
        student,
        examples,
        device: selected.clone(),
        out_dir: args.out.clone(),
        resume: args.resume.clone(),
        checkpoint_every: args.checkpoint_every,
        dev,
        eval_every: args.eval_every,
        profile: args.profile,
    };

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                // A second Ctrl-C: leave now. Checkpoints are written whole or not at all.
                std::process::exit(130);
            }
            eprintln!(
                "\nstopping after this step (the checkpoint is saved); Ctrl-C again to quit now"
            );
        })
        .context("installing the Ctrl-C handler")?;
    }
    let bar = ProgressBar::new(config.steps as u64).with_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let outcome = train(setup, &stop, |event| match event {
        Event::Started {
            start_step,
            resumed_from,
            ..
        } => {
            bar.set_position(start_step as u64);
            bar.reset_eta();
            if let Some(dir) = resumed_from {
                // suspend + eprintln, not println: indicatif drops println when stderr is no
                // terminal, and logs of unattended runs need these lines.
                bar.suspend(|| eprintln!("resuming from {} at step {start_step}", dir.display()));
            }
        }
        Event::Step(log) => {
            let terms: Vec<String> = log
                .terms
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            bar.set_message(format!(
                "loss {:.4} ({})  {:.1} pairs/s",
                log.loss,
                terms.join(", "),
                log.pairs_per_sec
            ));
            bar.set_position(log.step as u64);
        }
        Event::Saved { .. } => {}
        Event::Dev { step, ndcg10, best } => bar.suspend(|| {
            eprintln!(
                "step {step}: dev nDCG@10 {ndcg10:.4}{}",
                if best { " (best so far)" } else { "" }
            )
        }),
        Event::Profile(profile) => bar.suspend(|| println!("{profile}")),
    })?;
    bar.finish_and_clear();
    let student_dir = match outcome {
        Outcome::Stopped { step, checkpoint } => {
            eprintln!(
                "stopped at step {step}; checkpoint at {}. Run the same command again to resume.",
                checkpoint.display()
            );
            return Ok(());
        }
        Outcome::Finished {
            student_dir,
            steps,
            best_dev,
        } => {
            eprintln!(
                "trained {steps} steps; student written to {} (log {}, plot {}){}",
                student_dir.display(),
                args.out.join("log.jsonl").display(),
                args.out.join("loss.svg").display(),
                best_dev
                    .map(|(s, v)| format!("; best dev nDCG@10 {v:.4} at step {s}"))
                    .unwrap_or_default()
            );
            student_dir
        }
    };

    let Some(evaluation) = evaluation else {
        return Ok(());
    };
    let mut rows = vec![first_stage_row(&evaluation)];
    if let Some(bi) = &bi {
        rows.push(bi.eval_row(&evaluation)?);
    }
    if !args.no_teacher_eval
        && let Some(teacher) = eval_teacher.as_mut()
    {
        rows.push(reranked_row(&evaluation, "teacher", teacher, max_len)?);
    }
    let mut student = Reranker::load(&student_dir, &selected, Precision::F32)?;
    let name = format!("student ({})", method);
    rows.push(reranked_row(&evaluation, &name, &mut student, max_len)?);
    let table = table(&evaluation, &rows);
    println!("{table}");
    tinyrank_distill::data::write_atomically(&args.out.join("results.md"), table.as_bytes())?;
    Ok(())
}

/// The bi-encoder of `--bi-encoder`, with its index of the training collections.
struct BiEncoderData {
    dir: PathBuf,
    model: BiEncoder,
    pool: Pool,
    index: DenseIndex,
}

impl BiEncoderData {
    /// Loaded when fine-tune or --mine-top-k needs it, or --bi-encoder names one; the pool is
    /// the --train collections without the evaluation set's passages.
    fn load(
        args: &DistillArgs,
        assets: &Path,
        train_dirs: &[PathBuf],
        eval_dir: &Path,
    ) -> Result<Option<Self>> {
        let wanted = args.config.method == Method::FineTune || args.mine_top_k > 0;
        let Some(dir) = args
            .bi_encoder
            .clone()
            .or_else(|| wanted.then(|| assets.join("models/all-MiniLM-L6-v2")))
        else {
            return Ok(None);
        };
        let model = BiEncoder::load(&dir, BI_ENCODER_MAX_LEN)
            .with_context(|| format!("loading the bi-encoder {}", dir.display()))?;
        let pool = Pool::read(train_dirs, &[eval_dir.to_path_buf()])?;
        let started = Instant::now();
        let index = DenseIndex::of_pool(&model, &pool)?;
        eprintln!(
            "bi-encoder {}: {} passages embedded in {:.1} s ({} held out by {})",
            dir.display(),
            index.len(),
            started.elapsed().as_secs_f64(),
            pool.excluded,
            eval_dir.display()
        );
        Ok(Some(Self {
            dir,
            model,
            pool,
            index,
        }))
    }

    /// `examples` with the bi-encoder's top `k` for each query of each of `dirs` merged in.
    fn with_mined(
        &self,
        dirs: &[PathBuf],
        mut examples: Vec<Example>,
        k: usize,
        min_rel: i32,
    ) -> Result<Vec<Example>> {
        for dir in dirs {
            let mined = mined_examples(dir, &self.pool, &self.index, &self.model, k, min_rel)?;
            let before = examples.len();
            examples = merge_by_query(examples, mined);
            eprintln!(
                "mined: {} passages new to the BM25 candidates of {}",
                examples.len() - before,
                dir.display()
            );
        }
        Ok(examples)
    }

    fn set_priors(&self, examples: &mut [Example], scale: f32) -> Result<()> {
        Ok(set_priors(examples, &self.model, &self.index, scale)?)
    }

    /// The bi-encoder's own ranking of the evaluation set's top-k, as a baseline.
    fn eval_row(&self, set: &EvalSet) -> Result<Row> {
        let run = set.rerank_by(|c| {
            let query = self.model.embed(&[c.query])?.remove(0);
            let passages = self.model.embed(&c.passages)?;
            Ok(passages.iter().map(|p| dot(&query, p)).collect())
        })?;
        let (ndcg10, rr10) = set.ndcg10_rr10(&run);
        Ok(Row {
            name: "bi-encoder".into(),
            ndcg10,
            rr10,
            pairs_per_sec: None,
        })
    }
}

struct Row {
    name: String,
    ndcg10: f64,
    rr10: f64,
    pairs_per_sec: Option<f64>,
}

fn first_stage_row(set: &EvalSet) -> Row {
    let (ndcg10, rr10) = set.ndcg10_rr10(&set.run);
    Row {
        name: "BM25".into(),
        ndcg10,
        rr10,
        pairs_per_sec: None,
    }
}

/// Reranks the set's top-k with `reranker` at `max_len`, timing the scoring.
fn reranked_row(set: &EvalSet, name: &str, reranker: &mut Reranker, max_len: usize) -> Result<Row> {
    reranker.set_max_len(max_len)?;
    let pairs = set.pairs();
    let bar = ProgressBar::new(pairs as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{name}: {{bar:30}} {{pos}}/{{len}} pairs  {{per_sec}}  eta {{eta}}"
        ))
        .expect("valid template"),
    );
    let started = Instant::now();
    let run = set.rerank(reranker, |n| bar.inc(n as u64))?;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let (ndcg10, rr10) = set.ndcg10_rr10(&run);
    Ok(Row {
        name: name.into(),
        ndcg10,
        rr10,
        pairs_per_sec: Some(pairs as f64 / secs),
    })
}

fn table(set: &EvalSet, rows: &[Row]) -> String {
    let teacher_speed = rows
        .iter()
        .find(|r| r.name == "teacher")
        .and_then(|r| r.pairs_per_sec);
    let mut out = format!(
        "{} (top-{} reranked, {} queries)\n\n| run | nDCG@10 | RR@10 (min-rel 2) | pairs/s | vs teacher |\n|---|---|---|---|---|\n",
        set.dir.display(),
        set.top_k,
        set.run.query_ids.len()
    );
    for row in rows {
        let speed = row.pairs_per_sec.map_or("-".into(), |s| format!("{s:.1}"));
        let ratio = match (row.pairs_per_sec, teacher_speed) {
            (Some(s), Some(t)) => format!("{:.2}x", s / t),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {speed} | {ratio} |\n",
            row.name, row.ndcg10, row.rr10
        ));
    }
    out
}
