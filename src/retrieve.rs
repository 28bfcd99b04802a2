//! `tinyrank retrieve`: a dense first stage. A bi-encoder embeds every passage of a collection
//! and ranks them all for each query by cosine similarity; the result is a TREC run that
//! `rerank` and `eval` read, e.g. to check that a cross-encoder improves a strong first stage.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use tinyrank_core::BiEncoder;
use tinyrank_core::bi_encoder::BI_ENCODER_MAX_LEN;
use tinyrank_distill::data::Run;
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
    let bi = BiEncoder::load(&args.model, args.max_len)
        .with_context(|| format!("loading the bi-encoder {}", args.model.display()))?;
    let started = Instant::now();
    let (ids, texts): (Vec<&str>, Vec<&str>) = collection.iter().unzip();
    let index = DenseIndex::build(&bi, &texts)?;
    eprintln!(
        "embedded {} passages in {:.1} s",
        index.len(),
        started.elapsed().as_secs_f64()
    );
    let (qids, qtexts): (Vec<&str>, Vec<&str>) = queries.iter().unzip();
    let mut run = Run::default();
    for (qid, vector) in qids.iter().zip(bi.embed(&qtexts)?) {
        for (i, score) in index.search(&vector, args.top_k) {
            run.push_score(qid, ids[i], score);
        }
    }
    run.write(&args.output, &args.tag)?;
    eprintln!(
        "wrote the top {} of {} queries to {}",
        args.top_k,
        qids.len(),
        args.output.display()
    );
    Ok(())
}
