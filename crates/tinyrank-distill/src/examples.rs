//! Training examples: (query, passage, label) from TREC-style dataset directories and MS MARCO
//! triples, and a seeded per-epoch order so that a run can resume at an exact position.

use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use tinyrank_core::{TitleSource, WordWindows};

use crate::data::{DataError, read_triples};
use crate::rerank::{Candidates, Dataset, EmptyText};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Example {
    pub query_id: String,
    pub query: String,
    pub passage: String,
    /// 1 relevant, 0 not; None when the source has no judgments (the pair then only gets the
    /// teacher's signal).
    pub label: Option<u8>,
    /// The qrels grade (0 when unjudged); None when the source has no judgments.
    pub grade: Option<u8>,
    /// A score given with the data (a bi-encoder's scaled similarity, see `mining`), the
    /// target of `fine-tune`'s listwise term; None when there is none.
    pub prior: Option<f32>,
}

/// A pair's `(label, grade)` as [`Example`] keeps them, from its qrels grade: `None` when the
/// source has no qrels, `Some(None)` when unjudged (grade 0, label 0). Labelled 1 at a grade of
/// at least `min_rel`; negative grades count as 0.
pub fn judgment(grade: Option<Option<i32>>, min_rel: i32) -> (Option<u8>, Option<u8>) {
    let label = grade.map(|g| u8::from(g.is_some_and(|g| g >= min_rel)));
    let grade = grade.map(|g| g.unwrap_or(0).clamp(0, i32::from(u8::MAX)) as u8);
    (label, grade)
}

/// Examples from each query's BM25 top-`top_k` in a dataset directory (queries.tsv,
/// collection.tsv, bm25.run, optional qrels.txt). With qrels, a pair is labelled 1 when its
/// grade is >= `min_rel` and 0 when judged lower or unjudged; without qrels it has no label.
pub fn from_dataset(dir: &Path, top_k: usize, min_rel: i32) -> Result<Vec<Example>, DataError> {
    let mut examples = Vec::new();
    for_each_candidate(
        dir,
        top_k,
        min_rel,
        EmptyText::Refused,
        |query, _, text, (label, grade)| {
            examples.push(Example {
                query_id: query.query_id.to_string(),
                query: query.query.to_string(),
                passage: text.to_string(),
                label,
                grade,
                prior: None,
            })
        },
    )?;
    Ok(examples)
}

/// The passage examples of one candidate document.
#[derive(Debug, Clone)]
pub struct DocumentExamples {
    pub doc_id: String,
    pub label: Option<u8>,
    pub passages: Vec<Example>,
}

/// Examples from the passages of each query's top-`top_k` documents: every window of a
/// document (its title before each, when `title` finds one) is an example with the document's
/// label (as [`from_dataset`] labels). Documents without words give none.
pub fn from_documents(
    dir: &Path,
    top_k: usize,
    min_rel: i32,
    windows: WordWindows,
    title: TitleSource,
) -> Result<Vec<DocumentExamples>, DataError> {
    let mut documents = Vec::new();
    for_each_candidate(
        dir,
        top_k,
        min_rel,
        EmptyText::Allowed,
        |query, doc_id, text, (label, grade)| {
            let (title, body) = title.split(text);
            let passages: Vec<Example> = windows
                .split(body, title)
                .into_iter()
                .map(|passage| Example {
                    query_id: query.query_id.to_string(),
                    query: query.query.to_string(),
                    passage,
                    label,
                    grade,
                    prior: None,
                })
                .collect();
            if !passages.is_empty() {
                documents.push(DocumentExamples {
                    doc_id: doc_id.to_string(),
                    label,
                    passages,
                });
            }
        },
    )?;
    Ok(documents)
}

/// Calls `f(query, doc_id, text, (label, grade))` for each of the top-`top_k` candidates of
/// each query.
fn for_each_candidate(
    dir: &Path,
    top_k: usize,
    min_rel: i32,
    empty: EmptyText,
    mut f: impl FnMut(&Candidates<'_>, &str, &str, (Option<u8>, Option<u8>)),
) -> Result<(), DataError> {
    let data = Dataset::read(dir)?;
    let qrels = data.qrels.as_ref();
    for c in data.candidates(top_k, empty)? {
        for (doc_id, text) in c.doc_ids.iter().zip(&c.passages) {
            let grade = qrels.map(|q| q.grade(c.query_id, doc_id));
            f(&c, doc_id, text, judgment(grade, min_rel));
        }
    }
    Ok(())
}

/// Two examples per MS MARCO triple: the positive (label 1) and the negative (label 0).
pub fn from_triples(path: &Path) -> Result<Vec<Example>, DataError> {
    Ok(read_triples(path)?
        .into_iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let query_id = format!("triple-{i}");
            [(t.positive, 1), (t.negative, 0)].map(|(passage, label)| Example {
                query_id: query_id.clone(),
                query: t.query.clone(),
                passage,
                label: Some(label),
                grade: Some(label),
                prior: None,
            })
        })
        .collect())
}

/// The order in which epoch `epoch` visits `len` examples: a permutation that depends only on
/// (seed, epoch), so a resumed run needs nothing but the epoch and its position in it.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch);
    order.shuffle(&mut rng);
    order
}

/// The index ranges of consecutive examples that share `key` (a query's candidates are one run:
/// every reader keeps them together).
pub(crate) fn runs_of<'a, K: PartialEq + 'a>(
    examples: &'a [Example],
    key: impl Fn(&'a Example) -> K + 'a,
) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = examples.get(start)?;
        let k = key(first);
        let len = examples[start..].iter().take_while(|e| key(e) == k).count();
        let range = start..start + len;
        start += len;
        Some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_permutations_that_repeat_by_seed_and_differ_by_epoch() {
        let a = epoch_order(1000, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(1000, 7, 0));
        assert_ne!(a, epoch_order(1000, 7, 1));
        assert_ne!(a, epoch_order(1000, 8, 0));
    }
}
