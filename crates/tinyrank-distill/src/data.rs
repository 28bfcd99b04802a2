//! Readers for the IR formats tinyrank consumes and a safe TREC run writer.
//!
//! Every malformed line is an error naming the file, the line and the field; nothing panics on
//! bad input.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A problem in an input file, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub file: PathBuf,
    /// 1-based line number, when the problem is on one line.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for DataError {}

impl DataError {
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }
    pub fn line(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }
}

/// Reads a whole text file, failing on a missing, unreadable, non-UTF-8 or empty file.
fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::file(path, e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        DataError::line(path, line, "not valid UTF-8")
    })?;
    if text.trim().is_empty() {
        return Err(DataError::file(path, "the file is empty"));
    }
    Ok(text)
}

/// Non-blank lines with their 1-based numbers (a trailing `\r` is dropped).
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// `id<TAB>text` files (queries.tsv, collection.tsv), in file order.
#[derive(Debug, Clone, Default)]
pub struct TextTable {
    pub path: PathBuf,
    entries: Vec<(String, String, usize)>,
    index: HashMap<String, usize>,
}

impl TextTable {
    /// Reads `id<TAB>text` lines. The text may be empty (a collection can hold empty
    /// documents); whoever needs the text decides whether that is an error, see
    /// [`TextTable::non_empty`].
    pub fn read(path: &Path, what: &str) -> Result<Self, DataError> {
        let text = read_text(path)?;
        let mut table = Self {
            path: path.to_path_buf(),
            ..Self::default()
        };
        for (n, line) in lines(&text) {
            let Some((id, body)) = line.split_once('\t') else {
                return Err(DataError::line(
                    path,
                    n,
                    format!("expected `{what}_id<TAB>text`, found no tab"),
                ));
            };
            let id = id.trim();
            if id.is_empty() {
                return Err(DataError::line(path, n, format!("empty {what} id")));
            }
            if table.index.contains_key(id) {
                return Err(DataError::line(
                    path,
                    n,
                    format!("duplicate {what} id {id}"),
                ));
            }
            table.index.insert(id.to_string(), table.entries.len());
            table.entries.push((id.to_string(), body.to_string(), n));
        }
        Ok(table)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&str> {
        self.index.get(id).map(|&i| self.entries[i].1.as_str())
    }

    /// The text of `id`, or an error naming the file (and line) when it is absent or blank.
    pub fn non_empty(&self, id: &str, what: &str) -> Result<&str, DataError> {
        let Some(&i) = self.index.get(id) else {
            return Err(DataError::file(
                &self.path,
                format!("no {what} with id {id}"),
            ));
        };
        let (_, text, line) = &self.entries[i];
        if text.trim().is_empty() {
            return Err(DataError::line(
                &self.path,
                *line,
                format!("{what} {id} is empty"),
            ));
        }
        Ok(text)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(id, text, _)| (id.as_str(), text.as_str()))
    }
}

/// One line of a TREC run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub doc_id: String,
    pub rank: i64,
    pub score: f64,
}

/// A TREC run: per query, the retrieved documents as listed in the file.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Query ids in the order they first appear.
    pub query_ids: Vec<String>,
    pub results: HashMap<String, Vec<RunEntry>>,
}

impl Run {
    /// Reads `qid Q0 docid rank score tag` lines (whitespace separated; ids are strings).
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let text = read_text(path)?;
        let mut run = Run::default();
        for (n, line) in lines(&text) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 6 {
                return Err(DataError::line(
                    path,
                    n,
                    format!(
                        "expected 6 fields `qid Q0 docid rank score tag`, found {}",
                        fields.len()
                    ),
                ));
            }
            let rank = fields[3].parse::<i64>().map_err(|_| {
                DataError::line(
                    path,
                    n,
                    format!("field 4 (rank) is not an integer: {:?}", fields[3]),
                )
            })?;
            let score = fields[4]
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .ok_or_else(|| {
                    DataError::line(
                        path,
                        n,
                        format!("field 5 (score) is not a number: {:?}", fields[4]),
                    )
                })?;
            run.push(
                fields[0],
                RunEntry {
                    doc_id: fields[2].to_string(),
                    rank,
                    score,
                },
            );
        }
        Ok(run)
    }

    pub fn push(&mut self, query_id: &str, entry: RunEntry) {
        if !self.results.contains_key(query_id) {
            self.query_ids.push(query_id.to_string());
        }
        self.results
            .entry(query_id.to_string())
            .or_default()
            .push(entry);
    }

    /// Adds a scored document (rank 0: ranks are assigned when the run is written).
    pub fn push_score(&mut self, query_id: &str, doc_id: &str, score: f32) {
        let entry = RunEntry {
            doc_id: doc_id.to_string(),
            rank: 0,
            score: f64::from(score),
        };
        self.push(query_id, entry);
    }

    /// The documents of `query_id` in trec_eval's order: score descending, ties broken by
    /// document id descending (the rank column is ignored, as trec_eval ignores it).
    pub fn ranked(&self, query_id: &str) -> Vec<&RunEntry> {
        let mut entries: Vec<&RunEntry> =
            self.results.get(query_id).into_iter().flatten().collect();
        entries.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.doc_id.cmp(&a.doc_id))
        });
        entries
    }

    /// The first `k` documents of `query_id` by the file's rank column (ties in file order).
    pub fn top_k(&self, query_id: &str, k: usize) -> Vec<&RunEntry> {
        let mut entries: Vec<&RunEntry> =
            self.results.get(query_id).into_iter().flatten().collect();
        entries.sort_by_key(|e| e.rank);
        entries.truncate(k);
        entries
    }

    /// Writes the run in TREC format, ranks renumbered from 1 by descending score, to a temporary
    /// file beside `path` that is renamed over it only once complete.
    pub fn write(&self, path: &Path, tag: &str) -> Result<(), DataError> {
        let mut out = String::new();
        for qid in &self.query_ids {
            for (i, e) in self.ranked(qid).into_iter().enumerate() {
                out.push_str(&format!(
                    "{qid} Q0 {} {} {:.6} {tag}\n",
                    e.doc_id,
                    i + 1,
                    e.score
                ));
            }
        }
        write_atomically(path, out.as_bytes())
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so a reader never
/// sees a half-written file and a failure leaves any previous file intact.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let fail = |e: std::io::Error| DataError::file(path, e.to_string());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| DataError::file(path, "not a file path"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let result = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Graded relevance judgments: query id -> document id -> grade.
#[derive(Debug, Clone, Default)]
pub struct Qrels {
    pub judgments: HashMap<String, HashMap<String, i32>>,
}

impl Qrels {
    /// Reads `qid iteration docid grade` lines.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let text = read_text(path)?;
        let mut qrels = Qrels::default();
        for (n, line) in lines(&text) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 4 {
                return Err(DataError::line(
                    path,
                    n,
                    format!(
                        "expected 4 fields `qid 0 docid grade`, found {}",
                        fields.len()
                    ),
                ));
            }
            let grade = fields[3].parse::<i32>().map_err(|_| {
                DataError::line(
                    path,
                    n,
                    format!("field 4 (grade) is not an integer: {:?}", fields[3]),
                )
            })?;
            qrels
                .judgments
                .entry(fields[0].to_string())
                .or_default()
                .insert(fields[2].to_string(), grade);
        }
        Ok(qrels)
    }

    pub fn grade(&self, query_id: &str, doc_id: &str) -> Option<i32> {
        self.judgments.get(query_id)?.get(doc_id).copied()
    }
}

/// One MS MARCO training triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triple {
    pub query: String,
    pub positive: String,
    pub negative: String,
}

/// Reads `query<TAB>positive<TAB>negative` lines.
pub fn read_triples(path: &Path) -> Result<Vec<Triple>, DataError> {
    let text = read_text(path)?;
    lines(&text)
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 3 {
                return Err(DataError::line(
                    path,
                    n,
                    format!(
                        "expected 3 tab-separated fields `query positive negative`, found {}",
                        fields.len()
                    ),
                ));
            }
            for (i, name) in [(0, "query"), (1, "positive"), (2, "negative")] {
                if fields[i].trim().is_empty() {
                    return Err(DataError::line(
                        path,
                        n,
                        format!("field {} ({name}) is empty", i + 1),
                    ));
                }
            }
            Ok(Triple {
                query: fields[0].to_string(),
                positive: fields[1].to_string(),
                negative: fields[2].to_string(),
            })
        })
        .collect()
}
