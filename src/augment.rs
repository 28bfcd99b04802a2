//! `tinyrank augment`: writes teacher-labelled augmentation data (pseudo-queries with BM25
//! candidates over the training collections) as a dataset directory for `distill --train`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use tinyrank_distill::augment::{
    Augmenter, Bm25Index, Origin, Pool, QueryVariants, SpanWords, TopK, WordVectors, write_dataset,
};

use crate::assets;

#[derive(Args)]
pub struct AugmentArgs {
    /// Root of the shared assets the defaults point into; default $TINYRANK_SHARED, else ../shared.
    #[arg(long)]
    assets: Option<PathBuf>,
    /// Dataset directories whose collection.tsv passages are the pool queries are cut from and
    /// searched in [default: TREC DL 2020-2022 under <assets>/data].
    #[arg(long, value_delimiter = ',')]
    from: Vec<PathBuf>,
    /// Dataset directories held out: no passage with their text enters the pool and none of their
    /// queries is generated [default: TREC DL 2019, the evaluation set].
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<PathBuf>,
    /// Where the dataset directory goes (it must not exist); without it, only counts are printed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Queries to write.
    #[arg(long, default_value_t = 1000)]
    queries: u64,
    /// BM25 candidates per query, its source passage always among them.
    #[arg(long, default_value_t = TopK::DEFAULT)]
    top_k: TopK,
    /// Words per pseudo-query, MIN-MAX, cut from one passage.
    #[arg(long, default_value_t = SpanWords::DEFAULT)]
    span_words: SpanWords,
    /// Make word-replaced variants of the --from sets' queries instead of spans (TinyBERT's
    /// augmentation: each word replaced with probability 0.4 by one of its 15 nearest words in
    /// --vectors' word embeddings); they have no source passage, so no qrels.
    #[arg(long)]
    variants: bool,
    /// The checkpoint whose word embeddings give --variants their replacements [default: the
    /// shared teacher, <assets>/models/teacher-minilm-l6].
    #[arg(long)]
    vectors: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write qrels.txt grading each query's source passage 2, so the hard-label loss has a
    /// positive (the others stay unjudged, i.e. negatives); without it only the teacher's scores
    /// are the signal.
    #[arg(long)]
    label_source: bool,
}

pub fn run_augment(args: AugmentArgs) -> Result<()> {
    let root = assets::root(args.assets.clone());
    let from = or_default(args.from, || assets::train_dirs(&root));
    let exclude = or_default(args.exclude, || vec![assets::eval_dir(&root)]);
    let started = Instant::now();
    let pool = Pool::read(&from, &exclude)?;
    let (origin, distinct, what) = if args.variants {
        if args.label_source {
            bail!("--label-source grades a span's source passage; --variants have none");
        }
        let vectors = WordVectors::load(&args.vectors.unwrap_or_else(|| assets::teacher(&root)))?;
        let variants = QueryVariants::read(&from, &vectors)?;
        let distinct = variants.distinct();
        (
            Origin::Variants(variants),
            distinct,
            "query variants".to_string(),
        )
    } else {
        let distinct = pool.distinct_queries(args.span_words);
        let what = format!(
            "(passage, span) pseudo-queries of {} words",
            args.span_words
        );
        (Origin::Spans(args.span_words), distinct, what)
    };
    let index = Bm25Index::new(&pool);
    let augmenter = Augmenter::new(&index, origin, args.top_k, args.seed);
    eprintln!(
        "pool: {} passages ({} held out by {}, {} repeated texts skipped), {} {}; \
         indexed in {:.1} s",
        pool.len(),
        pool.excluded,
        display(&exclude),
        pool.duplicates,
        augmenter.sources(),
        if args.variants {
            "real queries to vary"
        } else {
            "can be a source"
        },
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "distinct {what}: {distinct}, i.e. up to {} pairs at top {}",
        distinct.saturating_mul(args.top_k.get() as u64),
        args.top_k
    );
    let Some(out) = args.out else {
        return Ok(());
    };
    let started = Instant::now();
    let written = write_dataset(&out, &augmenter, args.queries, args.label_source)?;
    eprintln!(
        "wrote {} queries, {} pairs to {} in {:.1} s (seed {})",
        written.queries,
        written.pairs,
        out.display(),
        started.elapsed().as_secs_f64(),
        args.seed
    );
    if written.queries < args.queries {
        eprintln!(
            "(the pool gave no more: every source was used once per round and a round gave none)"
        );
    }
    Ok(())
}

fn or_default(given: Vec<PathBuf>, default: impl FnOnce() -> Vec<PathBuf>) -> Vec<PathBuf> {
    if given.is_empty() { default() } else { given }
}

fn display(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
