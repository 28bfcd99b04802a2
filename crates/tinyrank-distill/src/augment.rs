//! Teacher-labelled augmentation: pseudo-queries cut from passages of the training collections,
//! each with candidates from a BM25 index over the same passages (its source among them, and hard
//! negatives that share its words), or word-replaced variants of the training queries
//! ([`variants`]) with their candidates over the same index. The output is a dataset directory
//! that `tinyrank distill --train` reads like any TREC set; the teacher scores every pair during
//! distillation, so the pairs need no judgments.
//!
//! Generation is deterministic for a seed and streamed: memory holds the passages and their
//! index, never the pairs, so a million pairs cost what a thousand do.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bm25::{Embedder, EmbedderBuilder, Language, Scorer};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{DataError, TextTable};
use crate::examples::Example;
use crate::rerank::DatasetPaths;

pub mod variants;

pub use variants::{QueryVariants, WordVectors};

/// How many words a pseudo-query takes from its passage: `min-max`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanWords {
    pub min: usize,
    pub max: usize,
}

impl SpanWords {
    /// The span `tinyrank augment` and `distill --augment` cut when not told otherwise.
    pub const DEFAULT: SpanWords = SpanWords { min: 4, max: 10 };
}

impl FromStr for SpanWords {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected MIN-MAX words with 1 <= MIN <= MAX (e.g. 4-10), got {s:?}");
        let (min, max) = s.split_once('-').ok_or_else(bad)?;
        let (min, max) = (
            min.trim().parse().map_err(|_| bad())?,
            max.trim().parse().map_err(|_| bad())?,
        );
        if min == 0 || min > max {
            return Err(bad());
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for SpanWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// BM25 candidates per pseudo-query, its source among them: at least 2, since a pseudo-query is
/// there to bring a hard negative beside its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopK(usize);

impl TopK {
    /// What `tinyrank augment` takes when not told otherwise.
    pub const DEFAULT: TopK = TopK(16);

    pub fn new(k: usize) -> Result<Self, String> {
        if k < 2 {
            return Err(format!(
                "a pseudo-query needs at least 2 candidates (its source and a negative), got {k}"
            ));
        }
        Ok(Self(k))
    }

    pub fn get(self) -> usize {
        self.0
    }
}

impl FromStr for TopK {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let k = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number of candidates, got {s:?}"))?;
        Self::new(k)
    }
}

impl fmt::Display for TopK {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The words a pseudo-query is cut from (or a query variant made of): lower-cased, punctuation
/// trimmed from each end.
pub fn query_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The passages augmentation draws on: each once, none that an excluded set holds.
#[derive(Debug, Default)]
pub struct Pool {
    ids: Vec<String>,
    texts: Vec<String>,
    /// Passages left out because an excluded collection holds the same text.
    pub excluded: usize,
    /// Passages left out because the pool holds their text already (under another id).
    pub duplicates: usize,
    /// Queries of the excluded sets (as pseudo-queries would spell them), never generated.
    excluded_queries: HashSet<String>,
}

impl Pool {
    /// The passages of each `from` dataset's collection.tsv, in order, once each: a text
    /// already pooled is skipped (whatever its id: DL20's MS MARCO v1 ids and DL21-22's v2 ids
    /// name many of the same passages, and a copy of a query's source must not be one of its
    /// negatives); a repeated id with another text (another collection's id space) becomes
    /// `<dataset dir name>:<id>`. Passages whose text is in an `exclude` dataset's collection
    /// are left out, and its queries are never generated.
    pub fn read(from: &[PathBuf], exclude: &[PathBuf]) -> Result<Self, DataError> {
        let mut held_out = HashSet::new();
        let mut pool = Self::default();
        for dir in exclude {
            let paths = DatasetPaths::in_dir(dir);
            let collection = TextTable::read(&paths.collection, "passage")?;
            held_out.extend(collection.iter().map(|(_, text)| text.trim().to_string()));
            let queries = TextTable::read(&paths.queries, "query")?;
            let spelled = queries.iter().map(|(_, text)| query_words(text).join(" "));
            pool.excluded_queries.extend(spelled);
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut pooled: HashSet<String> = HashSet::new();
        for dir in from {
            let collection = TextTable::read(&DatasetPaths::in_dir(dir).collection, "passage")?;
            for (id, text) in collection.iter() {
                let text = text.trim();
                if held_out.contains(text) {
                    pool.excluded += 1;
                    continue;
                }
                if !pooled.insert(text.to_string()) {
                    pool.duplicates += 1;
                    continue;
                }
                let id = if seen.contains(id) {
                    format!("{}:{id}", dir_name(dir))
                } else {
                    id.to_string()
                };
                seen.insert(id.clone());
                pool.ids.push(id);
                pool.texts.push(text.to_string());
            }
        }
        Ok(pool)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The passage texts, in pool order (trimmed).
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// How many distinct (passage, span) pseudo-queries the pool holds for `span`: the ceiling
    /// of what augmentation can produce (each brings `top_k` pairs).
    pub fn distinct_queries(&self, span: SpanWords) -> u64 {
        self.texts
            .iter()
            .map(|t| {
                let n = query_words(t).len();
                (span.min..=span.max.min(n))
                    .map(|len| (n - len + 1) as u64)
                    .sum::<u64>()
            })
            .sum()
    }
}

fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// One generated query: its source passage, if it has one, and its BM25 candidates (pool
/// indices, best first; the source always among them).
#[derive(Debug, Clone, PartialEq)]
pub struct Augmented {
    pub query: String,
    pub source: Option<usize>,
    pub candidates: Vec<(usize, f32)>,
}

/// What pseudo-queries are made from.
pub enum Origin {
    /// A span of a pool passage's words, that passage being its source.
    Spans(SpanWords),
    /// A real query with some words replaced; it has no source passage.
    Variants(QueryVariants),
}

/// A BM25 index over a [`Pool`] (English stemming and stop words; k1 1.2, b 0.75), built once
/// for every kind of pseudo-query drawn on it.
pub struct Bm25Index<'a> {
    pool: &'a Pool,
    embedder: Embedder,
    scorer: Scorer<u32>,
}

impl<'a> Bm25Index<'a> {
    pub fn new(pool: &'a Pool) -> Self {
        let texts: Vec<&str> = pool.texts.iter().map(String::as_str).collect();
        let embedder: Embedder = EmbedderBuilder::with_fit_to_corpus(Language::English, &texts)
            .k1(1.2)
            .b(0.75)
            .build();
        let embeddings: Vec<_> = texts.par_iter().map(|t| embedder.embed(t)).collect();
        let mut scorer = Scorer::new();
        for (i, e) in embeddings.into_iter().enumerate() {
            scorer.upsert(&(i as u32), e);
        }
        Self {
            pool,
            embedder,
            scorer,
        }
    }

    /// The top `k` passages for `query`, ties broken by pool order (the index's own order is a
    /// hash set's), with `source` in the last place when BM25 ranks it lower; None when fewer
    /// than `k` passages match.
    fn search(&self, query: &str, k: usize, source: Option<usize>) -> Option<Vec<(usize, f32)>> {
        let mut matches = self.scorer.matches(&self.embedder.embed(query));
        if matches.len() < k {
            return None;
        }
        matches.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        let mut top: Vec<(usize, f32)> = matches[..k]
            .iter()
            .map(|m| (m.id as usize, m.score))
            .collect();
        if let Some(source) = source.filter(|&s| !top.iter().any(|&(i, _)| i == s)) {
            let score = matches
                .iter()
                .find(|m| m.id as usize == source)
                .map_or(0.0, |m| m.score);
            top[k - 1] = (source, score);
        }
        Some(top)
    }
}

/// Pseudo-queries and their candidates over a [`Bm25Index`]'s pool.
pub struct Augmenter<'a> {
    index: &'a Bm25Index<'a>,
    origin: Origin,
    /// What each round visits once: passages long enough to give a span (pool indices), or
    /// the variants' queries.
    units: Vec<usize>,
    top_k: usize,
    seed: u64,
}

impl<'a> Augmenter<'a> {
    pub fn new(index: &'a Bm25Index<'a>, origin: Origin, top_k: TopK, seed: u64) -> Self {
        let pool = index.pool;
        let units = match &origin {
            Origin::Spans(span) => (0..pool.len())
                .filter(|&i| query_words(&pool.texts[i]).len() >= span.min)
                .collect(),
            Origin::Variants(variants) => (0..variants.len()).collect(),
        };
        Self {
            index,
            origin,
            units,
            top_k: top_k.get(),
            seed,
        }
    }

    /// Passages that can be a query's source, or queries that can give variants.
    pub fn sources(&self) -> usize {
        self.units.len()
    }

    /// Query `n` of round `n / units` (each round visits every unit once, in an order that
    /// depends only on the seed and the round): a span of its source's words, or a variant of
    /// its query, and the BM25 top-k for it. None when the query finds fewer than top-k
    /// passages, is an excluded query, or is of a query with no word to replace.
    fn generate(&self, order: &[usize], n: u64) -> Option<Augmented> {
        let unit = order[(n % order.len() as u64) as usize];
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (query, source) = match &self.origin {
            Origin::Spans(span) => {
                let words = query_words(&self.index.pool.texts[unit]);
                let len = rng.random_range(span.min..=span.max.min(words.len()));
                let start = rng.random_range(0..=words.len() - len);
                (words[start..start + len].join(" "), Some(unit))
            }
            Origin::Variants(variants) => (variants.variant(unit, &mut rng)?, None),
        };
        if self.index.pool.excluded_queries.contains(&query) {
            return None;
        }
        let candidates = self.index.search(&query, self.top_k, source)?;
        Some(Augmented {
            query,
            source,
            candidates,
        })
    }

    /// The source order of round `round`.
    fn order(&self, round: u64) -> Vec<usize> {
        let mut order = self.units.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            self.seed.wrapping_add(round),
        ));
        order
    }

    /// Calls `f` on up to `count` queries in order, generated in parallel chunks. Spans without
    /// enough candidates are skipped, so a seed always gives the same list; it stops early only
    /// when a whole round of sources gives nothing.
    pub fn for_each(
        &self,
        count: u64,
        mut f: impl FnMut(Augmented) -> Result<(), DataError>,
    ) -> Result<u64, DataError> {
        const CHUNK: usize = 512;
        let per_round = self.units.len() as u64;
        let mut done = 0;
        for round in 0.. {
            let before = done;
            let order = self.order(round);
            for start in (0..order.len()).step_by(CHUNK) {
                let end = (start + CHUNK).min(order.len());
                let chunk: Vec<_> = (start..end)
                    .into_par_iter()
                    .map(|i| self.generate(&order, round * per_round + i as u64))
                    .collect();
                for a in chunk.into_iter().flatten() {
                    if done == count {
                        return Ok(done);
                    }
                    f(a)?;
                    done += 1;
                }
            }
            if done == before || done == count {
                break;
            }
        }
        Ok(done)
    }
}

/// The grade a pseudo-query's source passage gets (TREC DL's "highly relevant", so that it
/// counts at the default --min-rel).
pub const SOURCE_GRADE: u8 = 2;

impl Augmenter<'_> {
    /// The id of generated query `n`: `aug-<n>` for spans, `var-<n>` for variants, so that
    /// both kinds can train together.
    fn query_id(&self, n: u64) -> String {
        match self.origin {
            Origin::Spans(_) => format!("aug-{n}"),
            Origin::Variants(_) => format!("var-{n}"),
        }
    }

    /// The first `count` generated queries as training examples, one per candidate, for a
    /// trainer that holds its examples anyway; [`write_dataset`] streams any number to disk.
    /// With `label_source` a query's source passage is labelled 1 and its other candidates 0
    /// (as `write_dataset`'s qrels.txt reads back); without it, or without a source (a
    /// variant), no pair has a label.
    pub fn examples(&self, count: u64, label_source: bool) -> Result<Vec<Example>, DataError> {
        let mut examples = Vec::new();
        let mut n = 0;
        self.for_each(count, |a| {
            let query_id = self.query_id(n);
            n += 1;
            let source = a.source.filter(|_| label_source);
            examples.extend(a.candidates.iter().map(|&(i, _)| Example {
                query_id: query_id.clone(),
                query: a.query.clone(),
                passage: self.index.pool.texts[i].clone(),
                label: source.map(|s| u8::from(i == s)),
                grade: source.map(|s| if i == s { SOURCE_GRADE } else { 0 }),
                prior: None,
            }));
            Ok(())
        })?;
        Ok(examples)
    }
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub queries: u64,
    pub pairs: u64,
}

/// Writes `count` generated queries as a dataset directory `out`: collection.tsv (the pool),
/// queries.tsv (`aug-<n>` or `var-<n>`), bm25.run (each query's candidates) and, with
/// `label_source`, qrels.txt grading each query's source passage 2 (the one pair known to
/// match; the others stay unjudged); variants have no source, so `label_source` is refused for
/// them. Files are streamed into a hidden directory beside `out` that becomes `out` only when
/// complete; an existing `out` is refused.
pub fn write_dataset(
    out: &Path,
    augmenter: &Augmenter<'_>,
    count: u64,
    label_source: bool,
) -> Result<Written, DataError> {
    if out.exists() {
        return Err(DataError::file(
            out,
            "already exists; remove it or choose another --out",
        ));
    }
    if label_source && matches!(augmenter.origin, Origin::Variants(_)) {
        return Err(DataError::file(
            out,
            "query variants have no source passage to label",
        ));
    }
    let partial = out.with_file_name(format!(".{}.partial", dir_name(out)));
    let fail = |e: std::io::Error| DataError::file(&partial, e.to_string());
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(fail)?;
    }
    std::fs::create_dir_all(&partial).map_err(fail)?;
    match write_files(&partial, augmenter, count, label_source) {
        Ok(written) => {
            std::fs::rename(&partial, out).map_err(|e| DataError::file(out, e.to_string()))?;
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

/// A buffered file in `dir` whose errors name it.
struct Output {
    path: PathBuf,
    file: BufWriter<std::fs::File>,
}

impl Output {
    fn create(dir: &Path, name: &str) -> Result<Self, DataError> {
        let path = dir.join(name);
        let file =
            std::fs::File::create(&path).map_err(|e| DataError::file(&path, e.to_string()))?;
        Ok(Self {
            path,
            file: BufWriter::new(file),
        })
    }

    fn line(&mut self, args: fmt::Arguments<'_>) -> Result<(), DataError> {
        writeln!(self.file, "{args}").map_err(|e| DataError::file(&self.path, e.to_string()))
    }

    fn finish(self) -> Result<(), DataError> {
        let fail = |e: std::io::Error| DataError::file(&self.path, e.to_string());
        let file = self.file.into_inner().map_err(|e| fail(e.into_error()))?;
        file.sync_all().map_err(fail)
    }
}

fn write_files(
    dir: &Path,
    augmenter: &Augmenter<'_>,
    count: u64,
    label_source: bool,
) -> Result<Written, DataError> {
    let pool = augmenter.index.pool;
    let mut collection = Output::create(dir, "collection.tsv")?;
    for (id, text) in pool.ids.iter().zip(&pool.texts) {
        collection.line(format_args!("{id}\t{text}"))?;
    }
    collection.finish()?;
    let mut queries = Output::create(dir, "queries.tsv")?;
    let mut run = Output::create(dir, "bm25.run")?;
    let mut qrels = label_source
        .then(|| Output::create(dir, "qrels.txt"))
        .transpose()?;
    let (mut n, mut pairs) = (0u64, 0u64);
    let written = augmenter.for_each(count, |a| {
        let qid = augmenter.query_id(n);
        n += 1;
        queries.line(format_args!("{qid}\t{}", a.query))?;
        for (rank, &(i, score)) in a.candidates.iter().enumerate() {
            let pid = &pool.ids[i];
            run.line(format_args!("{qid} Q0 {pid} {} {score:.4} bm25", rank + 1))?;
        }
        if let (Some(qrels), Some(source)) = (qrels.as_mut(), a.source) {
            qrels.line(format_args!("{qid} 0 {} {SOURCE_GRADE}", pool.ids[source]))?;
        }
        pairs += a.candidates.len() as u64;
        Ok(())
    })?;
    queries.finish()?;
    run.finish()?;
    qrels.map(Output::finish).transpose()?;
    Ok(Written {
        queries: written,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rerank::EvalSet;

    const PASSAGES: [&str; 6] = [
        "The river Nile flows north through Egypt into the Mediterranean sea.",
        "Tea plants grow best on high slopes with steady rain and acid soil.",
        "A river delta forms where a river meets the sea and drops its silt.",
        "Egypt built its cities along the river for water and trade routes.",
        "Coffee and tea both contain caffeine, a mild stimulant of the brain.",
        "Soil erosion on slopes is slowed by terraces and deep rooted plants.",
    ];

    /// A dataset directory holding `passages` (ids p0, p1, ...) and `queries`.
    fn dataset(root: &Path, name: &str, passages: &[&str], queries: &[&str]) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let lines = |rows: &[&str], prefix: &str| -> String {
            rows.iter()
                .enumerate()
                .map(|(i, t)| format!("{prefix}{i}\t{t}\n"))
                .collect()
        };
        std::fs::write(dir.join("collection.tsv"), lines(passages, "p")).unwrap();
        std::fs::write(dir.join("queries.tsv"), lines(queries, "q")).unwrap();
        std::fs::write(dir.join("bm25.run"), "").unwrap();
        dir
    }

    fn span(s: &str) -> SpanWords {
        s.parse().unwrap()
    }

    #[test]
    fn span_words_parse_and_refuse() {
        assert_eq!(span("4-10"), SpanWords { min: 4, max: 10 });
        assert_eq!(span("3-3").to_string(), "3-3");
        for bad in ["0-3", "5-4", "4", "a-b", ""] {
            assert!(bad.parse::<SpanWords>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pool_keeps_out_held_out_and_repeated_text_and_renames_clashing_ids() {
        let root = tempfile::tempdir().unwrap();
        let a = dataset(root.path(), "a", &PASSAGES[..4], &[]);
        // b repeats p0 exactly (skipped), reuses p1 for another text (renamed), holds the
        // held-out passage under a new id (left out) and a's p2 under id p3 (skipped: one text
        // is pooled once, whatever its ids).
        let b = dataset(
            root.path(),
            "b",
            &[PASSAGES[0], PASSAGES[4], PASSAGES[5], PASSAGES[2]],
            &[],
        );
        let held = dataset(root.path(), "held", &[PASSAGES[5]], &["tea plants grow"]);
        let pool = Pool::read(&[a, b], &[held]).unwrap();
        assert_eq!(pool.ids, ["p0", "p1", "p2", "p3", "b:p1"]);
        assert_eq!((pool.excluded, pool.duplicates), (1, 2));
        assert!(!pool.texts.iter().any(|t| t == PASSAGES[5]));
        assert!(pool.excluded_queries.contains("tea plants grow"));
        // An 11-word passage has 10 two-word spans and 9 three-word ones.
        let one = Pool {
            ids: vec!["x".into()],
            texts: vec![PASSAGES[0].into()],
            ..Pool::default()
        };
        assert_eq!(one.distinct_queries(span("2-3")), 10 + 9);
    }

    #[test]
    fn writes_a_readable_dataset_the_same_for_a_seed() {
        let root = tempfile::tempdir().unwrap();
        let from = dataset(root.path(), "from", &PASSAGES, &[]);
        let pool = Pool::read(&[from], &[]).unwrap();
        let index = Bm25Index::new(&pool);
        let write = |name: &str, seed: u64| {
            let augmenter = Augmenter::new(&index, Origin::Spans(span("2-4")), TopK(3), seed);
            let out = root.path().join(name);
            let written = write_dataset(&out, &augmenter, 20, true).unwrap();
            (out, written)
        };
        let (first, written) = write("first", 7);
        assert_eq!(written.pairs, written.queries * 3);
        assert!(written.queries > 0);
        let (again, _) = write("again", 7);
        let (other, _) = write("other", 8);
        let file = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        for name in ["queries.tsv", "bm25.run", "qrels.txt", "collection.tsv"] {
            assert_eq!(file(&first, name), file(&again, name), "{name} differs");
        }
        assert_ne!(file(&first, "queries.tsv"), file(&other, "queries.tsv"));
        // Every query's source (its judged passage) is among its candidates, and the files
        // pass the checks evaluation applies to any TREC set.
        let set = EvalSet::read(&first, 3).unwrap();
        let qrels = crate::data::Qrels::read(&first.join("qrels.txt")).unwrap();
        for qid in &set.run().query_ids {
            let ranked = set.run().ranked(qid);
            assert!(
                ranked
                    .iter()
                    .any(|e| qrels.grade(qid, &e.doc_id) == Some(i32::from(SOURCE_GRADE))),
                "{qid}: its source is not among {ranked:?}"
            );
        }
        assert!(std::fs::read_dir(root.path()).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        }));
        // In memory, the same queries with the source labelled 1, as the files read back.
        let augmenter = Augmenter::new(&index, Origin::Spans(span("2-4")), TopK(3), 7);
        let examples = augmenter.examples(20, true).unwrap();
        let from_files = crate::examples::from_dataset(&first, 3, 2).unwrap();
        assert_eq!(examples, from_files);
        let refused = augmenter;
        let err = write_dataset(&first, &refused, 1, false).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn variants_search_the_pool_unlabelled() {
        let root = tempfile::tempdir().unwrap();
        let from = dataset(root.path(), "from", &PASSAGES, &["river tea"]);
        let pool = Pool::read(std::slice::from_ref(&from), &[]).unwrap();
        // "river" is replaced by "sea" or "coffee"; "tea" is not in the vocabulary, so it stays.
        let vocab = ["river", "sea", "coffee"].map(String::from);
        let vectors = WordVectors::new(&vocab, &[1.0, 0.0, 0.9, 0.1, 0.0, 1.0], 2);
        let variants = QueryVariants::read(&[from], &vectors).unwrap();
        let index = Bm25Index::new(&pool);
        let augmenter = Augmenter::new(&index, Origin::Variants(variants), TopK(2), 5);
        let examples = augmenter.examples(3, true).unwrap();
        assert_eq!(examples.len(), 3 * 2);
        for e in &examples {
            assert!(e.query_id.starts_with("var-"), "{e:?}");
            assert!(
                ["sea tea", "coffee tea"].contains(&e.query.as_str()),
                "{e:?}"
            );
            assert_eq!((e.label, e.grade), (None, None));
        }
        let out = root.path().join("variants");
        let err = write_dataset(&out, &augmenter, 3, true).unwrap_err();
        assert!(err.to_string().contains("no source passage"), "{err}");
        assert!(!out.exists());
    }
}
