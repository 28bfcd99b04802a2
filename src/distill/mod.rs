//! `tinyrank distill`: builds the teacher, student and examples from flags, runs the trainer
//! with a progress bar, then compares BM25, the teacher and the student on an evaluation set.
//!
//! With no flags it is the main job: the shared teacher, a student of its layers 1, 3 and 5,
//! Simplified TinyBERT on TREC DL 2020-2022 pools sized for the device (a [`Recipe`]), and a
//! table on TREC DL 2019.

mod bi_encoder;
mod data;
mod progress;
mod recipe;
mod report;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use tinyrank_core::{
    Checkpoint, DEFAULT_MAX_LEN, Precision, Reranker, SelectedDevice, TitleSource, select_device,
};
use tinyrank_distill::augment::{SpanWords, TopK};
use tinyrank_distill::rerank::EvalSet;
use tinyrank_distill::student::{StudentSpec, build_student};
use tinyrank_distill::train::{Method, RunIdentity, TrainConfig, TrainSetup};

use self::bi_encoder::BiEncoderData;
pub use self::data::DocPassages;
use self::data::TrainingData;
use self::recipe::Recipe;
use self::report::Baselines;
use crate::{DeviceArgs, assets};

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
    /// Candidates per training query taken from the top of its run [default: the recipe's, 16].
    #[arg(long)]
    train_top_k: Option<usize>,
    /// Peak learning rate [default: the recipe's, 5e-4].
    #[arg(long)]
    lr: Option<f64>,
    /// Pseudo-queries to add (`tinyrank augment`'s, made in memory): spans of passages of the
    /// --train collections, each with its --augment-top-k BM25 candidates over them, the source
    /// labelled relevant; the --eval set's passages and queries are kept out [default: the
    /// recipe's with the default training sets (64 on a CPU, 640 on a hardware GPU), else none].
    #[arg(long)]
    augment: Option<u64>,
    /// BM25 candidates per pseudo-query of --augment, at least 2 [default: --train-top-k's], so
    /// that deep real pools and many shallow pseudo-queries can be combined.
    #[arg(long)]
    augment_top_k: Option<TopK>,
    /// Words per pseudo-query of --augment, MIN-MAX.
    #[arg(long, default_value_t = SpanWords::DEFAULT)]
    augment_span: SpanWords,
    /// Word-replaced variants of the --train sets' queries to add (TinyBERT's augmentation:
    /// each word replaced with probability 0.4 by one of its 15 nearest words in the teacher's
    /// word embeddings), each with its --augment-top-k BM25 candidates over the --train
    /// collections, unlabelled: the teacher's scores are their only signal.
    #[arg(long, default_value_t = 0)]
    augment_variants: u64,
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
    /// Fine-tune's prior as an ensemble: the bi-encoder's scores mixed, query by query, with
    /// the --teacher's at this weight (standardised, on the scale between theirs); 0 keeps the
    /// bi-encoder's alone (docs/results.md, "A better teacher").
    #[arg(long, default_value_t = 0.0, value_name = "W", value_parser = crate::weight)]
    prior_teacher: f64,
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

/// Where the run's inputs are, from the flags and the shared assets' layout.
struct Paths {
    assets: PathBuf,
    teacher: PathBuf,
    train: Vec<PathBuf>,
    eval: PathBuf,
    /// No training data was named, so the defaults (and the recipe's augmentation) apply.
    default_data: bool,
}

impl Paths {
    /// Resolves the defaults and fails early, with a hint, when an input is missing.
    fn resolve(args: &DistillArgs) -> Result<Self> {
        let assets = assets::root(args.assets.clone());
        let teacher = args
            .teacher
            .clone()
            .unwrap_or_else(|| assets::teacher(&assets));
        let default_data =
            args.train.is_empty() && args.triples.is_empty() && args.train_docs.is_empty();
        let train = if default_data {
            assets::train_dirs(&assets)
        } else {
            args.train.clone()
        };
        let eval = args
            .eval
            .clone()
            .unwrap_or_else(|| assets::eval_dir(&assets));
        let hint = "point --assets or TINYRANK_SHARED at the folder that holds models/ and data/ \
                    (the shared assets), or give --teacher, --train and --eval";
        if !teacher.join("config.json").is_file() {
            bail!("the teacher {} is missing: {hint}", teacher.display());
        }
        for dir in train.iter().chain((!args.no_eval).then_some(&eval)) {
            if !dir.join("queries.tsv").is_file() {
                bail!("the dataset {} is missing: {hint}", dir.display());
            }
        }
        Ok(Self {
            assets,
            teacher,
            train,
            eval,
            default_data,
        })
    }
}

/// The training configuration with the recipe's choices where the flags leave them open, and
/// the candidates per query and pseudo-queries to read.
fn plan(args: &DistillArgs, paths: &Paths, device: &SelectedDevice) -> (TrainConfig, usize, u64) {
    let recipe = Recipe::for_device(device);
    let train_top_k = args.train_top_k.unwrap_or(recipe.train_top_k);
    let mut config = args.config.clone();
    config.learning_rate = args.lr.unwrap_or(recipe.learning_rate);
    let augment = match args.augment {
        Some(n) => n,
        None if paths.default_data => recipe.augment,
        None => 0,
    };
    if args.train_top_k.is_none() || args.lr.is_none() || args.augment.is_none() {
        eprintln!(
            "recipe: {} (train top {train_top_k}, {augment} augmented queries, lr {:e}; \
             --train-top-k, --augment and --lr override)",
            recipe.name, config.learning_rate
        );
    }
    (config, train_top_k, augment)
}

/// Everything the run reads before a model loads, so bad input fails first.
struct Inputs {
    paths: Paths,
    selected: SelectedDevice,
    config: TrainConfig,
    data: TrainingData,
    evaluation: Option<EvalSet>,
    dev: Option<EvalSet>,
    spec: StudentSpec,
}

impl Inputs {
    fn read(args: &DistillArgs) -> Result<Self> {
        let paths = Paths::resolve(args)?;
        // The device decides the recipe, and so what data to read.
        let selected = select_device(args.device.device)?;
        eprintln!("device: {}", selected.description);
        let (config, train_top_k, augment) = plan(args, &paths, &selected);
        if args.prior_teacher > 0.0 && config.method != Method::FineTune {
            bail!("--prior-teacher mixes fine-tune's priors: use it with --method fine-tune");
        }
        let spec = args.student.parse().map_err(anyhow::Error::msg)?;
        let data = TrainingData::read(args, &paths, train_top_k, augment)?;
        let evaluation = (!args.no_eval)
            .then(|| EvalSet::read(&paths.eval, args.eval_top_k))
            .transpose()?;
        let dev = args
            .dev
            .as_ref()
            .map(|d| EvalSet::read(d, args.dev_top_k))
            .transpose()?;
        Ok(Self {
            paths,
            selected,
            config,
            data,
            evaluation,
            dev,
            spec,
        })
    }
}

/// The teacher, loaded when anything uses it: training, the evaluation, the choice of a
/// document's passages or fine-tune's ensemble prior.
fn load_teacher(args: &DistillArgs, inputs: &Inputs) -> Result<Option<Checkpoint>> {
    let wanted = inputs.config.method.needs_teacher()
        || inputs.evaluation.is_some()
        || inputs.data.wants_teacher_filter(args.doc_passages)
        || args.prior_teacher > 0.0;
    let load = || Checkpoint::load(&inputs.paths.teacher, &inputs.selected.device);
    Ok(wanted.then(load).transpose()?)
}

/// Completes the examples with what needs a model: documents' passages (filtered by the
/// teacher when asked), the bi-encoder's mined negatives and priors, and the teacher's share
/// of those priors. Returns the bi-encoder, a baseline of the evaluation.
fn finish_examples(
    args: &DistillArgs,
    inputs: &mut Inputs,
    teacher: Option<&Checkpoint>,
) -> Result<Option<BiEncoderData>> {
    let max_len = inputs.config.max_len;
    let filter = match teacher {
        Some(t) if inputs.data.wants_teacher_filter(args.doc_passages) => {
            Some(scorer(t, &inputs.selected, max_len)?)
        }
        _ => None,
    };
    inputs.data.merge_documents(filter.as_ref())?;
    let bi = BiEncoderData::load(args, &inputs.paths)?;
    if let Some(bi) = &bi {
        bi.apply(&mut inputs.data, args, &inputs.paths)?;
    }
    if let Some(t) = teacher.filter(|_| args.prior_teacher > 0.0) {
        let cross = scorer(t, &inputs.selected, max_len)?;
        let dir = &inputs.paths.teacher;
        bi_encoder::blend_teacher(&mut inputs.data, &cross, args.prior_teacher, dir)?;
    }
    Ok(bi)
}

/// --steps, else the steps --epochs of the examples take.
fn steps(args: &DistillArgs, config: &TrainConfig, data: &TrainingData) -> usize {
    let per_epoch = config.examples_per_epoch(&data.examples);
    if config.skip_idle {
        eprintln!(
            "--skip-idle: {per_epoch} of {} examples are in units some loss term learns from",
            data.examples.len()
        );
    }
    args.steps
        .unwrap_or_else(|| config.steps_for_epochs(args.epochs, per_epoch))
}

/// One line on what trains what, on how much, before the first step.
fn describe(
    args: &DistillArgs,
    inputs: &Inputs,
    teacher: Option<&Checkpoint>,
    student: &Checkpoint,
) {
    let config = &inputs.config;
    eprintln!(
        "teacher {} ({} layers, {} hidden) -> student {} ({} layers, {} hidden); {} with {} \
         examples, {} steps of {} pairs, max length {} (--max-len; training costs grow with \
         length, so half of rerank's {DEFAULT_MAX_LEN})",
        inputs.paths.teacher.display(),
        teacher.map_or(0, |t| t.model.num_layers()),
        teacher.map_or(0, |t| t.model.hidden_size()),
        args.student,
        student.model.num_layers(),
        student.model.hidden_size(),
        config.method,
        inputs.data.examples.len(),
        config.steps,
        config.pairs_per_step(),
        config.max_len
    );
}

fn scorer(checkpoint: &Checkpoint, device: &SelectedDevice, max_len: usize) -> Result<Reranker> {
    let mut reranker = Reranker::new(
        checkpoint.model.clone(),
        checkpoint.tokenizer.clone(),
        device,
        Precision::F32,
    )?;
    reranker.set_max_len(max_len)?;
    Ok(reranker)
}

pub fn run_distill(args: DistillArgs) -> Result<()> {
    let mut inputs = Inputs::read(&args)?;
    let teacher = load_teacher(&args, &inputs)?;
    let bi = finish_examples(&args, &mut inputs, teacher.as_ref())?;
    inputs.config.steps = steps(&args, &inputs.config, &inputs.data);
    let on = inputs.selected.device.clone().autodiff();
    let student = build_student(&inputs.spec, &inputs.paths.teacher, &on)?;
    describe(&args, &inputs, teacher.as_ref(), &student);
    let eval_teacher = match &teacher {
        Some(t) if inputs.evaluation.is_some() && !args.no_teacher_eval => {
            Some(scorer(t, &inputs.selected, inputs.config.max_len)?)
        }
        _ => None,
    };
    let (selected, config) = (inputs.selected.clone(), inputs.config.clone());
    let (setup, evaluation) = train_setup(&args, inputs, teacher, student);
    let Some(student_dir) = progress::train_with_progress(setup, &args.out)? else {
        return Ok(());
    };
    let Some(evaluation) = evaluation else {
        return Ok(());
    };
    let baselines = Baselines {
        bi_encoder: bi.as_ref(),
        teacher: eval_teacher,
    };
    let name = format!("student ({})", config.method);
    let results = args.out.join("results.md");
    report::compare(
        &evaluation,
        baselines,
        &student_dir,
        &name,
        &selected,
        config.max_len,
        &results,
    )
}

/// The trainer's inputs (the teacher only where the method learns from it), and the
/// evaluation set kept for after training.
fn train_setup(
    args: &DistillArgs,
    inputs: Inputs,
    teacher: Option<Checkpoint>,
    student: Checkpoint,
) -> (TrainSetup, Option<EvalSet>) {
    let (config, data) = (inputs.config, inputs.data);
    let identity = RunIdentity {
        config: config.clone(),
        teacher: inputs.paths.teacher.display().to_string(),
        student: args.student.clone(),
        data: data.sources,
        examples: data.examples.len(),
    };
    let setup = TrainSetup {
        teacher: teacher.filter(|_| config.method.needs_teacher()),
        config,
        identity,
        student,
        examples: data.examples,
        device: inputs.selected,
        out_dir: args.out.clone(),
        resume: args.resume.clone(),
        checkpoint_every: args.checkpoint_every,
        dev: inputs.dev,
        eval_every: args.eval_every,
        profile: args.profile,
    };
    (setup, inputs.evaluation)
}
