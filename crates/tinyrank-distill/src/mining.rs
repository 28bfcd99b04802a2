//! What a bi-encoder gives cross-encoder training: hard negatives mined by dense retrieval over
//! the training collections (candidates BM25 misses), and its similarities as soft labels.
//!
//! The pool is embedded once; a query's neighbours are the passages of highest cosine
//! similarity. Mined passages are graded by the query's qrels through their text (the pool
//! spans several collections, each with its own ids).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;
use tinyrank_core::bi_encoder::dot;
use tinyrank_core::{BiEncoder, Reranker};

use crate::augment::Pool;
use crate::data::{DataError, Qrels, TextTable};
use crate::examples::{Example, judgment, runs_of};
use crate::fusion::blend;
use crate::rerank::DatasetPaths;

#[derive(Debug, thiserror::Error)]
pub enum MiningError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] tinyrank_core::Error),
}

/// Unit embeddings of passages, searched by brute force (tens of thousands of passages take a
/// few milliseconds per query).
pub struct DenseIndex {
    vectors: Vec<Vec<f32>>,
    /// Index of each (trimmed) text, to reuse embeddings when scoring pairs.
    by_text: HashMap<String, usize>,
}

impl DenseIndex {
    /// Embeds `texts`; hits are indices into them.
    pub fn build(bi: &BiEncoder, texts: &[&str]) -> Result<Self, tinyrank_core::Error> {
        Ok(Self {
            vectors: bi.embed(texts)?,
            by_text: texts
                .iter()
                .enumerate()
                .map(|(i, t)| (t.trim().to_string(), i))
                .collect(),
        })
    }

    /// An index of a [`Pool`]'s passages, in pool order.
    pub fn of_pool(bi: &BiEncoder, pool: &Pool) -> Result<Self, tinyrank_core::Error> {
        let texts: Vec<&str> = pool.texts().iter().map(String::as_str).collect();
        Self::build(bi, &texts)
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// The `k` most similar passages (pool index, cosine), best first; ties by pool order.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, dot(query, v)))
            .collect();
        let order = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = k.min(scored.len());
        if k < scored.len() {
            scored.select_nth_unstable_by(k, order);
            scored.truncate(k);
        }
        scored.sort_unstable_by(order);
        scored
    }

    fn vector_of(&self, text: &str) -> Option<&[f32]> {
        self.by_text.get(text.trim()).map(|&i| &self.vectors[i][..])
    }
}

/// For each query of the dataset in `dir`, the bi-encoder's top `k` passages of the pool as
/// examples, graded by the dataset's qrels when it has them (a pool passage takes the grade of
/// the collection passage with its text; unjudged is 0) and labelled at `min_rel`.
pub fn mined_examples(
    dir: &Path,
    pool: &Pool,
    index: &DenseIndex,
    bi: &BiEncoder,
    k: usize,
    min_rel: i32,
) -> Result<Vec<Example>, MiningError> {
    let paths = DatasetPaths::in_dir(dir);
    let queries = TextTable::read(&paths.queries, "query")?;
    let collection = TextTable::read(&paths.collection, "passage")?;
    let qrels = paths.qrels.as_deref().map(Qrels::read).transpose()?;
    let texts: Vec<&str> = queries.iter().map(|(_, q)| q).collect();
    let vectors = bi.embed(&texts)?;
    let mut examples = Vec::new();
    for ((qid, query), vector) in queries.iter().zip(&vectors) {
        // This query's judged passages, by text.
        let judged: HashMap<&str, i32> = qrels
            .as_ref()
            .and_then(|q| q.judgments.get(qid))
            .into_iter()
            .flatten()
            .filter_map(|(pid, &g)| Some((collection.get(pid)?.trim(), g)))
            .collect();
        for (i, _) in index.search(vector, k) {
            let text = &pool.texts()[i];
            let grade = qrels.is_some().then(|| judged.get(text.as_str()).copied());
            let (label, grade) = judgment(grade, min_rel);
            examples.push(Example {
                query_id: qid.to_string(),
                query: query.to_string(),
                passage: text.clone(),
                label,
                grade,
                prior: None,
            });
        }
    }
    Ok(examples)
}

/// `examples` with `extra` merged in: each query's extra passages follow its own (a query's
/// examples stay together, as grouped training needs), passages it already has are skipped,
/// and queries only `extra` has come last in their order.
pub fn merge_by_query(examples: Vec<Example>, extra: Vec<Example>) -> Vec<Example> {
    let mut by_query: HashMap<String, Vec<Example>> = HashMap::new();
    let mut extra_order = Vec::new();
    for e in extra {
        if !by_query.contains_key(&e.query_id) {
            extra_order.push(e.query_id.clone());
        }
        by_query.entry(e.query_id.clone()).or_default().push(e);
    }
    let mut out =
        Vec::with_capacity(examples.len() + by_query.values().map(Vec::len).sum::<usize>());
    let mut examples = examples.into_iter().peekable();
    while let Some(first) = examples.next() {
        let qid = first.query_id.clone();
        let rest = std::iter::from_fn(|| examples.next_if(|e| e.query_id == qid));
        let mut seen: HashSet<String> = HashSet::new();
        for e in std::iter::once(first).chain(rest) {
            seen.insert(e.passage.trim().to_string());
            out.push(e);
        }
        for e in by_query.remove(&qid).unwrap_or_default() {
            if seen.insert(e.passage.trim().to_string()) {
                out.push(e);
            }
        }
    }
    for qid in extra_order {
        out.extend(by_query.remove(&qid).unwrap_or_default());
    }
    out
}

/// Sets every example's prior to `scale` x the bi-encoder's cosine of its query and passage
/// (passages `index` holds reuse its embeddings; other texts are embedded once each).
pub fn set_priors(
    examples: &mut [Example],
    bi: &BiEncoder,
    index: &DenseIndex,
    scale: f32,
) -> Result<(), MiningError> {
    let mut unique: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for e in examples.iter() {
        let passage_known = index.vector_of(&e.passage).is_some();
        let texts = [
            Some(e.query.as_str()),
            (!passage_known).then_some(e.passage.as_str()),
        ];
        for text in texts.into_iter().flatten() {
            if seen.insert(text) {
                unique.push(text);
            }
        }
    }
    let vectors = bi.embed(&unique)?;
    let embedded: HashMap<&str, &Vec<f32>> = unique.iter().copied().zip(&vectors).collect();
    let priors: Vec<f32> = examples
        .par_iter()
        .map(|e| {
            let query = &embedded[e.query.as_str()][..];
            let passage = match index.vector_of(&e.passage) {
                Some(v) => v,
                None => &embedded[e.passage.as_str()][..],
            };
            scale * dot(query, passage)
        })
        .collect();
    for (e, prior) in examples.iter_mut().zip(priors) {
        e.prior = Some(prior);
    }
    Ok(())
}

/// Mixes a cross-encoder's scores into every example's prior (set by [`set_priors`] first),
/// query by query (each query's run of examples, as training groups them), as [`blend`] mixes two models, `weight` being the cross-encoder's: the soft
/// labels of an ensemble, which ranks better than either model alone.
pub fn blend_priors(
    examples: &mut [Example],
    cross: &Reranker,
    weight: f64,
) -> Result<(), MiningError> {
    let runs: Vec<_> = runs_of(examples, |e| &e.query_id).collect();
    for run in runs {
        let group = &examples[run.clone()];
        let passages: Vec<&str> = group.iter().map(|e| e.passage.as_str()).collect();
        let cross_scores: Vec<f64> = cross
            .score(&group[0].query, &passages)?
            .into_iter()
            .map(f64::from)
            .collect();
        let priors: Vec<f64> = group
            .iter()
            .map(|e| e.prior.map_or(0.0, f64::from))
            .collect();
        let blended = blend(&priors, &cross_scores, weight);
        for (e, prior) in examples[run].iter_mut().zip(blended) {
            e.prior = Some(prior as f32);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(query_id: &str, passage: &str) -> Example {
        Example {
            query_id: query_id.into(),
            query: format!("query {query_id}"),
            passage: passage.into(),
            ..Example::default()
        }
    }

    #[test]
    fn merging_keeps_each_querys_examples_together_and_skips_repeats() {
        let bm25 = vec![example("a", "p1"), example("a", "p2"), example("b", "p3")];
        let mined = vec![
            example("b", "p4"),
            example("a", " p2 "),
            example("c", "p5"),
            example("a", "p6"),
        ];
        let merged: Vec<(String, String)> = merge_by_query(bm25, mined)
            .into_iter()
            .map(|e| (e.query_id, e.passage))
            .collect();
        let want = [
            ("a", "p1"),
            ("a", "p2"),
            ("a", "p6"),
            ("b", "p3"),
            ("b", "p4"),
            ("c", "p5"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(q, p)| (q.to_string(), p.to_string()))
            .collect();
        assert_eq!(merged, want);
    }

    #[test]
    fn search_returns_the_most_similar_first_ties_in_pool_order() {
        let index = DenseIndex {
            vectors: vec![
                vec![1.0, 0.0],
                vec![0.0, 1.0],
                vec![0.6, 0.8],
                vec![0.0, 1.0],
            ],
            by_text: HashMap::new(),
        };
        let hits: Vec<usize> = index.search(&[0.0, 1.0], 3).iter().map(|h| h.0).collect();
        assert_eq!(hits, [1, 3, 2]);
        assert_eq!(index.search(&[1.0, 0.0], 10).len(), 4);
    }
}
