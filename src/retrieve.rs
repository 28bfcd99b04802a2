//! `tinyrank retrieve`: a dense first stage. A bi-encoder embeds every passage of a collection
//! and ranks them all for each query by cosine similarity; the result is a TREC run that
//! `rerank` and `eval` read, e.g. to check that a cross-encoder improves a strong first stage.
//! With `--run` it rescores only each query's candidates in that run instead: the bi-encoder as
//! a stage between BM25 and a cross-encoder (whose `rerank --interpolate` then mixes both).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use tinyrank_core::BiEncoder;
use tinyrank_core::bi_encoder::{BI_ENCODER_MAX_LEN, dot};
use tinyrank_distill::data::{Run, TextTable};
use tinyrank_distill::mining::DenseIndex;

use crate::TextArgs;

#[derive(Args)]
pub struct RetrieveArgs {
    /// Bi-encoder directory (a sentence-transformers BERT with mean pooling, such as
    /// all-MiniLM-L6-v2).
    #[arg(long)]
    model: PathBuf,
    /// Every passage of the collection is a candidate.
    #[command(flatten)]
    texts: TextArgs,
    /// Where the TREC run goes (written whole or not at all).
    #[arg(long)]
    output: PathBuf,
    /// Score only each query's candidates in this TREC run (all of them), not the whole
    /// collection.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Passages kept per query.
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Tokens per text, special tokens included (longer texts are cut).
    #[arg(long, default_value_t = BI_ENCODER_MAX_LEN)]
    max_len: usize,
    #[arg(long, default_value = "tinyrank-dense")]
    tag: String,
}

pub fn run_retrieve(args: RetrieveArgs) -> Result<()> {
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let (queries, collection) = args.texts.read()?;
    // Every text a --run names is looked up before the model loads.
    let candidates = args.run.as_deref().map(Run::read).transpose()?;
    let texts = (candidates.as_ref())
        .map(|run| CandidateTexts::of(run, &queries, &collection))
        .transpose()?;
    let bi = BiEncoder::load(&args.model, args.max_len)
        .with_context(|| format!("loading the bi-encoder {}", args.model.display()))?;
    let run = match &texts {
        Some(texts) => rescored(&bi, texts, args.top_k)?,
        None => retrieved(&bi, &queries, &collection, args.top_k)?,
    };
    run.write(&args.output, &args.tag)?;
    eprintln!(
        "wrote the top {} of {} queries to {}",
        args.top_k,
        run.query_ids.len(),
        args.output.display()
    );
    Ok(())
}

/// Every query of `queries` against every passage of the collection.
fn retrieved(
    bi: &BiEncoder,
    queries: &TextTable,
    collection: &TextTable,
    top_k: usize,
) -> Result<Run> {
    let started = Instant::now();
    let (ids, texts): (Vec<&str>, Vec<&str>) = collection.iter().unzip();
    let index = DenseIndex::build(bi, &texts)?;
    eprintln!(
        "embedded {} passages in {:.1} s",
        index.len(),
        started.elapsed().as_secs_f64()
    );
    let (qids, qtexts): (Vec<&str>, Vec<&str>) = queries.iter().unzip();
    let mut run = Run::default();
    for (qid, vector) in qids.iter().zip(bi.embed(&qtexts)?) {
        for (i, score) in index.search(&vector, top_k) {
            run.push_score(qid, ids[i], score);
        }
    }
    Ok(run)
}

/// A run with the texts of its queries and of its passages, each passage once.
struct CandidateTexts<'a> {
    run: &'a Run,
    queries: Vec<&'a str>,
    passages: Vec<&'a str>,
    slot: HashMap<&'a str, usize>,
}

impl<'a> CandidateTexts<'a> {
    fn of(run: &'a Run, queries: &'a TextTable, collection: &'a TextTable) -> Result<Self> {
        let mut texts = Self {
            run,
            queries: Vec::new(),
            passages: Vec::new(),
            slot: HashMap::new(),
        };
        for qid in &run.query_ids {
            texts.queries.push(queries.non_empty(qid, "query")?);
            for e in &run.results[qid] {
                if !texts.slot.contains_key(e.doc_id.as_str()) {
                    texts.slot.insert(&e.doc_id, texts.passages.len());
                    texts
                        .passages
                        .push(collection.non_empty(&e.doc_id, "passage")?);
                }
            }
        }
        Ok(texts)
    }
}

/// Each query of the run against its own candidates only.
fn rescored(bi: &BiEncoder, texts: &CandidateTexts, top_k: usize) -> Result<Run> {
    let candidates = texts.run;
    let passages = bi.embed(&texts.passages)?;
    let mut run = Run::default();
    for (qid, query) in candidates.query_ids.iter().zip(bi.embed(&texts.queries)?) {
        let mut scored: Vec<(&str, f32)> = (candidates.results[qid].iter())
            .map(|e| {
                let passage = &passages[texts.slot[e.doc_id.as_str()]];
                (e.doc_id.as_str(), dot(&query, passage))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (doc, score) in scored.into_iter().take(top_k) {
            run.push_score(qid, doc, score);
        }
    }
    Ok(run)
}
