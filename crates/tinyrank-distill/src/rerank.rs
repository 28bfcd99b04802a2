//! Reranking a TREC run's candidates with a cross-encoder.

use std::fmt;
use std::path::{Path, PathBuf};

use tinyrank_core::{Aggregation, DocumentEncoder, Reranker, TitleSource, Windows};

use crate::data::{DataError, Qrels, Run, TextTable};
use crate::metrics::{EvalOptions, Metric, evaluate};

/// A TREC DL-style dataset directory: queries.tsv, collection.tsv, a run, maybe qrels.txt.
#[derive(Debug, Clone)]
pub struct DatasetPaths {
    pub queries: PathBuf,
    pub collection: PathBuf,
    pub run: PathBuf,
    pub qrels: Option<PathBuf>,
}

impl DatasetPaths {
    /// The conventional file names inside `dir` (run: `bm25.run`).
    pub fn in_dir(dir: &Path) -> Self {
        let qrels = dir.join("qrels.txt");
        Self {
            queries: dir.join("queries.tsv"),
            collection: dir.join("collection.tsv"),
            run: dir.join("bm25.run"),
            qrels: qrels.is_file().then_some(qrels),
        }
    }
}

/// A dataset directory read whole: queries, collection, first-stage run, qrels when present.
pub struct Dataset {
    pub queries: TextTable,
    pub collection: TextTable,
    pub run: Run,
    pub run_path: PathBuf,
    pub qrels: Option<Qrels>,
}

impl Dataset {
    pub fn read(dir: &Path) -> Result<Self, DataError> {
        let paths = DatasetPaths::in_dir(dir);
        Ok(Self {
            queries: TextTable::read(&paths.queries, "query")?,
            collection: TextTable::read(&paths.collection, "passage")?,
            run: Run::read(&paths.run)?,
            run_path: paths.run,
            qrels: paths.qrels.as_deref().map(Qrels::read).transpose()?,
        })
    }

    /// Each query's top-`top_k` candidates with their texts (see [`candidates`]).
    pub fn candidates(
        &self,
        top_k: usize,
        empty: EmptyText,
    ) -> Result<Vec<Candidates<'_>>, DataError> {
        candidates(
            &self.queries,
            &self.collection,
            &self.run,
            &self.run_path,
            top_k,
            empty,
        )
    }
}

#[derive(Debug)]
pub enum RerankError {
    Data(DataError),
    Model(tinyrank_core::Error),
}

impl fmt::Display for RerankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data(e) => e.fmt(f),
            Self::Model(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RerankError {}

impl From<DataError> for RerankError {
    fn from(e: DataError) -> Self {
        Self::Data(e)
    }
}

impl From<tinyrank_core::Error> for RerankError {
    fn from(e: tinyrank_core::Error) -> Self {
        Self::Model(e)
    }
}

/// One query's candidate passages, texts resolved.
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    pub query_id: &'a str,
    pub query: &'a str,
    pub doc_ids: Vec<&'a str>,
    pub passages: Vec<&'a str>,
}

/// Whether a candidate may have no text: a passage may not (it is an error), a document may (it
/// has no passages and ranks last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyText {
    Refused,
    Allowed,
}

/// Resolves the top-`k` candidates of every query in `run` against the query and passage
/// tables, checking everything before any model work starts: a query without text, a query
/// without candidates, a candidate missing from the collection (or empty, unless `empty`
/// allows it) is an error naming the file at fault.
pub fn candidates<'a>(
    queries: &'a TextTable,
    collection: &'a TextTable,
    run: &'a Run,
    run_path: &Path,
    top_k: usize,
    empty: EmptyText,
) -> Result<Vec<Candidates<'a>>, DataError> {
    let mut out = Vec::with_capacity(run.query_ids.len());
    for qid in &run.query_ids {
        let query = queries.non_empty(qid, "query")?;
        let entries = run.top_k(qid, top_k);
        if entries.is_empty() {
            return Err(DataError::file(
                run_path,
                format!("query {qid} has no candidates"),
            ));
        }
        let mut doc_ids = Vec::with_capacity(entries.len());
        let mut passages = Vec::with_capacity(entries.len());
        for e in entries {
            passages.push(match empty {
                EmptyText::Refused => collection.non_empty(&e.doc_id, "passage")?,
                EmptyText::Allowed => collection.get(&e.doc_id).ok_or_else(|| {
                    DataError::file(
                        &collection.path,
                        format!("no document with id {}", e.doc_id),
                    )
                })?,
            });
            doc_ids.push(e.doc_id.as_str());
        }
        out.push(Candidates {
            query_id: qid,
            query,
            doc_ids,
            passages,
        });
    }
    if out.is_empty() {
        return Err(DataError::file(run_path, "the run lists no queries"));
    }
    if let Some((qid, _)) = queries
        .iter()
        .find(|(qid, _)| !run.results.contains_key(*qid))
    {
        return Err(DataError::file(
            run_path,
            format!(
                "query {qid} of {} has no candidates in this run",
                queries.path.display()
            ),
        ));
    }
    Ok(out)
}

/// Scores every candidate and returns the reranked run. `progress` hears how many pairs each
/// batch finished.
pub fn rerank(
    reranker: &Reranker,
    candidates: &[Candidates<'_>],
    mut progress: impl FnMut(usize),
) -> Result<Run, RerankError> {
    let mut run = Run::default();
    for c in candidates {
        let encoded = reranker.encode(c.query, &c.passages)?;
        let scores = reranker.score_encoded(&encoded, &mut progress)?;
        for (doc_id, score) in c.doc_ids.iter().zip(scores) {
            run.push_score(c.query_id, doc_id, score);
        }
    }
    Ok(run)
}

/// What a document-level reranking scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassageCount {
    pub documents: usize,
    pub passages: usize,
    /// Documents without any words: no passages, ranked below the scored ones.
    pub empty_documents: usize,
    /// Passages cut at max length (word windows longer than the model reads).
    pub truncated: usize,
    /// Distinct texts tokenised (a text shared by several queries counts once).
    pub tokenised: usize,
}

/// Document reranking: every candidate document is cut into `windows` (with its title, if
/// `title` finds one, before each passage), all passages of one query are scored together in
/// length-sorted batches, and each document gets the aggregation of its passages' scores: one
/// run per entry of `aggregations`, from one scoring pass. Each text is tokenised once however
/// many queries share it.
pub fn rerank_documents(
    reranker: &Reranker,
    candidates: &[Candidates<'_>],
    windows: Windows,
    title: TitleSource,
    aggregations: &[Aggregation],
    mut progress: impl FnMut(usize),
) -> Result<(Vec<Run>, PassageCount), RerankError> {
    let mut runs = vec![Run::default(); aggregations.len()];
    let mut count = PassageCount::default();
    let mut encoder = DocumentEncoder::new(&reranker.tokenizer, reranker.cut(), windows, title);
    for c in candidates {
        let pairs = encoder.encode(c.query, &c.passages)?;
        let scores = reranker.score_encoded(&pairs.pairs, &mut progress)?;
        let mut per_doc = vec![Vec::new(); c.doc_ids.len()];
        for (&doc, score) in pairs.document.iter().zip(scores) {
            per_doc[doc].push(score);
        }
        for (run, aggregation) in runs.iter_mut().zip(aggregations) {
            let scored: Vec<Option<f32>> = per_doc.iter().map(|s| aggregation.apply(s)).collect();
            let floor = scored.iter().flatten().copied().fold(0.0f32, f32::min);
            for (i, (doc_id, score)) in c.doc_ids.iter().zip(scored).enumerate() {
                // Empty documents keep their first-stage order, below every scored one.
                let score = score.unwrap_or(floor - 1.0 - i as f32);
                run.push_score(c.query_id, doc_id, score);
            }
        }
        count.documents += c.doc_ids.len();
        count.passages += pairs.pairs.len();
        count.truncated += pairs.truncated;
        count.empty_documents += per_doc.iter().filter(|s| s.is_empty()).count();
    }
    count.tokenised = encoder.tokenised_texts();
    Ok((runs, count))
}

/// A judged dataset directory for comparing rerankers: each query's top-k of the first-stage run
/// is reranked and the rest keeps its first-stage order below them.
pub struct EvalSet {
    pub dir: PathBuf,
    pub top_k: usize,
    data: Dataset,
    qrels: Qrels,
}

impl EvalSet {
    /// Reads and checks the directory (which must hold qrels.txt).
    pub fn read(dir: &Path, top_k: usize) -> Result<Self, DataError> {
        if DatasetPaths::in_dir(dir).qrels.is_none() {
            return Err(DataError::file(dir, "evaluation needs qrels.txt here"));
        }
        let mut data = Dataset::read(dir)?;
        let qrels = data.qrels.take().expect("checked above");
        let set = Self {
            dir: dir.to_path_buf(),
            top_k,
            data,
            qrels,
        };
        set.candidates()?;
        Ok(set)
    }

    /// The first-stage run (BM25).
    pub fn run(&self) -> &Run {
        &self.data.run
    }

    /// Each query's top-k candidates with their texts.
    pub fn candidates(&self) -> Result<Vec<Candidates<'_>>, DataError> {
        self.data.candidates(self.top_k, EmptyText::Refused)
    }

    /// Query-passage pairs one reranking scores.
    pub fn pairs(&self) -> usize {
        self.candidates()
            .map(|c| c.iter().map(|c| c.passages.len()).sum())
            .unwrap_or(0)
    }

    /// The run after reranking each query's top-k with `reranker`.
    pub fn rerank(
        &self,
        reranker: &Reranker,
        progress: impl FnMut(usize),
    ) -> Result<Run, RerankError> {
        let run = rerank(reranker, &self.candidates()?, progress)?;
        Ok(self.below_top_k(run))
    }

    /// The run after reranking each query's top-k by `score` (the candidates' scores, in order):
    /// for scorers other than a cross-encoder, such as a bi-encoder.
    pub fn rerank_by(
        &self,
        mut score: impl FnMut(&Candidates<'_>) -> Result<Vec<f32>, RerankError>,
    ) -> Result<Run, RerankError> {
        let mut run = Run::default();
        for c in self.candidates()? {
            for (doc_id, s) in c.doc_ids.iter().zip(score(&c)?) {
                run.push_score(c.query_id, doc_id, s);
            }
        }
        Ok(self.below_top_k(run))
    }

    /// `run` (each query's reranked top-k) with the rest of the first-stage list below, in its
    /// order.
    fn below_top_k(&self, mut run: Run) -> Run {
        let floor = run
            .results
            .values()
            .flatten()
            .map(|e| e.score)
            .fold(f64::INFINITY, f64::min);
        for qid in &self.data.run.query_ids {
            for (i, entry) in self
                .data
                .run
                .ranked(qid)
                .into_iter()
                .enumerate()
                .skip(self.top_k)
            {
                let mut entry = entry.clone();
                entry.score = floor - 1.0 - i as f64;
                run.push(qid, entry);
            }
        }
        run
    }

    /// nDCG@10 and RR@10 (grade >= 2 relevant, as TREC DL reports it) of `run`.
    pub fn ndcg10_rr10(&self, run: &Run) -> (f64, f64) {
        let options = EvalOptions {
            min_rel: 2,
            ..EvalOptions::default()
        };
        let metrics = [Metric::Ndcg(10), Metric::Rr(Some(10))];
        let e = evaluate(run, &self.qrels, &metrics, options);
        (e.means[0], e.means[1])
    }
}
