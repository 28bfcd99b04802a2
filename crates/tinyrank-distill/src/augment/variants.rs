//! Word-replaced variants of real queries: TinyBERT's data augmentation (Jiao et al., Findings
//! of EMNLP 2020, section 3.1) applied to the training queries. Each word that is one token of
//! the vocabulary is replaced, with probability [`REPLACE_PROBABILITY`], by one of its
//! [`NEIGHBOURS`] nearest words by cosine in a checkpoint's input word embeddings, and at least
//! one is, so that a variant is never its query (a departure: the paper may keep one). The paper
//! takes single-piece words from BERT's masked-LM predictions and others from GloVe; our
//! cross-encoders carry no masked-LM head, and their word embeddings give GloVe-like neighbours
//! (car: cars, vehicle, automobile), so they serve for both.
//!
//! A variant keeps a real query's shape (a question, a few keywords) where a span of a passage
//! does not, so its candidates show the student the teacher at work on query-like input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use rand::Rng;
use rayon::prelude::*;
use tinyrank_core::{Checkpoint, Error};

use super::query_words;
use crate::data::{DataError, TextTable};
use crate::rerank::DatasetPaths;

/// The chance that a replaceable word is replaced (the paper's p_t).
pub const REPLACE_PROBABILITY: f64 = 0.4;
/// Nearest words a replacement is drawn from (the paper's K).
pub const NEIGHBOURS: usize = 15;

/// Whole words of a vocabulary and their unit-length input embeddings.
pub struct WordVectors {
    words: Vec<String>,
    index: HashMap<String, usize>,
    /// Row-major, one unit-length row of `dim` per word.
    vectors: Vec<f32>,
    dim: usize,
}

impl WordVectors {
    /// `vocab[i]`'s embedding is row i of `embeddings` (`dim` wide); only lower-case alphabetic
    /// tokens of two letters or more are kept: word pieces (`##ing`), special and unused tokens,
    /// numbers and single letters are neither replaced nor replacements.
    pub fn new(vocab: &[String], embeddings: &[f32], dim: usize) -> Self {
        let mut out = Self {
            words: Vec::new(),
            index: HashMap::new(),
            vectors: Vec::new(),
            dim,
        };
        for (word, row) in vocab.iter().zip(embeddings.chunks_exact(dim)) {
            let whole = word.len() >= 2 && word.chars().all(|c| c.is_ascii_lowercase());
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if !whole || norm == 0.0 || out.index.contains_key(word) {
                continue;
            }
            out.index.insert(word.clone(), out.words.len());
            out.words.push(word.clone());
            out.vectors.extend(row.iter().map(|x| x / norm));
        }
        out
    }

    /// The vocabulary and input word embeddings of the checkpoint in `dir` (on the CPU).
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let checkpoint = Checkpoint::load(dir, &Device::flex())?;
        let weight = checkpoint.model.embeddings.word.weight.val();
        let [rows, dim] = weight.dims();
        let embeddings: Vec<f32> = weight
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| Error::io(dir, format!("reading the word embeddings: {e:?}")))?;
        let vocab: Vec<String> = (0..rows as u32)
            .map(|id| checkpoint.tokenizer.token(id).unwrap_or_default())
            .collect();
        Ok(Self::new(&vocab, &embeddings, dim))
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// The `k` words nearest to `word` by cosine, nearest first (ties by vocabulary order);
    /// None for a word outside the kept vocabulary.
    pub fn nearest(&self, word: &str, k: usize) -> Option<Vec<String>> {
        let &w = self.index.get(word)?;
        let query = self.row(w);
        let mut scored: Vec<(f32, usize)> = (0..self.words.len())
            .filter(|&i| i != w)
            .map(|i| (query.iter().zip(self.row(i)).map(|(a, b)| a * b).sum(), i))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Some(Vec::new());
        }
        let by_score = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        scored.select_nth_unstable_by(k - 1, by_score);
        scored.truncate(k);
        scored.sort_by(by_score);
        Some(
            scored
                .into_iter()
                .map(|(_, i)| self.words[i].clone())
                .collect(),
        )
    }
}

/// Real queries (as pseudo-queries spell them: lower-case words) and the neighbours of each of
/// their replaceable words.
pub struct QueryVariants {
    queries: Vec<Vec<String>>,
    neighbours: HashMap<String, Vec<String>>,
}

impl QueryVariants {
    /// The queries of each dataset directory's queries.tsv, in order, with their words'
    /// neighbours in `vectors`.
    pub fn read(from: &[PathBuf], vectors: &WordVectors) -> Result<Self, DataError> {
        let mut queries = Vec::new();
        for dir in from {
            let table = TextTable::read(&DatasetPaths::in_dir(dir).queries, "query")?;
            queries.extend(table.iter().map(|(_, text)| text.to_string()));
        }
        Ok(Self::new(queries.iter().map(String::as_str), vectors))
    }

    /// `queries` with every word's [`NEIGHBOURS`] nearest in `vectors`, found in parallel.
    pub fn new<'q>(queries: impl IntoIterator<Item = &'q str>, vectors: &WordVectors) -> Self {
        let queries: Vec<Vec<String>> = queries.into_iter().map(query_words).collect();
        let mut words: Vec<&String> = queries.iter().flatten().collect();
        words.sort();
        words.dedup();
        let neighbours = words
            .par_iter()
            .filter_map(|w| {
                let near = vectors.nearest(w, NEIGHBOURS)?;
                (!near.is_empty()).then(|| ((*w).clone(), near))
            })
            .collect();
        Self {
            queries,
            neighbours,
        }
    }

    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// How many distinct variants the queries have: each replaceable word stays or becomes one
    /// of its neighbours, less the unchanged query (saturating).
    pub fn distinct(&self) -> u64 {
        self.queries
            .iter()
            .map(|words| {
                words
                    .iter()
                    .map(|w| self.neighbours.get(w).map_or(1, |n| 1 + n.len() as u64))
                    .fold(1u64, u64::saturating_mul)
                    - 1
            })
            .fold(0, u64::saturating_add)
    }

    /// A variant of query `q`: each replaceable word replaced with [`REPLACE_PROBABILITY`] by a
    /// neighbour drawn uniformly, or, when that replaced none, one such word drawn uniformly
    /// (so that a variant is never its query); None when no word has a neighbour.
    pub fn variant(&self, q: usize, rng: &mut impl Rng) -> Option<String> {
        let words = &self.queries[q];
        let replaceable: Vec<usize> = (0..words.len())
            .filter(|&i| self.neighbours.contains_key(&words[i]))
            .collect();
        if replaceable.is_empty() {
            return None;
        }
        let mut chosen: Vec<usize> = replaceable
            .iter()
            .copied()
            .filter(|_| rng.random_bool(REPLACE_PROBABILITY))
            .collect();
        if chosen.is_empty() {
            chosen.push(replaceable[rng.random_range(0..replaceable.len())]);
        }
        let mut out: Vec<&str> = words.iter().map(String::as_str).collect();
        for i in chosen {
            let near = &self.neighbours[&words[i]];
            out[i] = &near[rng.random_range(0..near.len())];
        }
        Some(out.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Five words on a plane: "car" and "auto" close, "vehicle" next, "tea" apart; "##s" and
    /// "x" are not whole words and "zero" has no direction.
    fn vectors() -> WordVectors {
        let vocab: Vec<String> = ["car", "auto", "vehicle", "tea", "##s", "x", "zero"]
            .map(String::from)
            .to_vec();
        #[rustfmt::skip]
        let rows = [1.0, 0.0,  0.9, 0.1,  0.7, 0.7,  -1.0, 0.2,  1.0, 0.0,  1.0, 0.0,  0.0, 0.0];
        WordVectors::new(&vocab, &rows, 2)
    }

    #[test]
    fn nearest_words_by_cosine_among_whole_words() {
        let v = vectors();
        assert_eq!(v.nearest("car", 2).unwrap(), ["auto", "vehicle"]);
        assert_eq!(v.nearest("car", 9).unwrap(), ["auto", "vehicle", "tea"]);
        for absent in ["##s", "x", "zero", "boat"] {
            assert!(v.nearest(absent, 2).is_none(), "{absent}");
        }
    }

    #[test]
    fn variants_replace_known_words_and_count_their_combinations() {
        let v = vectors();
        let variants = QueryVariants::new(["Car tea?", "boat 42"], &v);
        // "car" and "tea" each stay or take one of 3 neighbours; "boat 42" has nothing to replace.
        assert_eq!(variants.distinct(), 4 * 4 - 1);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let made: Vec<String> = (0..200)
            .map(|_| variants.variant(0, &mut rng).unwrap())
            .collect();
        for m in &made {
            let words: Vec<&str> = m.split(' ').collect();
            assert_eq!(words.len(), 2, "{m}");
            assert_ne!(m, "car tea");
            assert!(["car", "auto", "vehicle", "tea"].contains(&words[0]), "{m}");
        }
        assert!(made.iter().any(|m| m.starts_with("auto ")));
        // Both words replaced in about 0.4 x 0.4 of the variants.
        let both = made.iter().filter(|m| {
            let (first, second) = m.split_once(' ').unwrap();
            first != "car" && second != "tea"
        });
        assert!((15..60).contains(&both.count()));
        assert!((0..50).all(|_| variants.variant(1, &mut rng).is_none()));
    }
}
