//! Documents longer than a model's input: overlapping passage windows, and the aggregation of
//! passage scores into a document score (MaxP, FirstP, SumP; Dai & Callan, 2019).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::tokenizer::{Cut, Encoded, PairTokenizer, Tokens};

/// Overlapping windows of `size` words, a new one every `stride` words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordWindows {
    pub size: usize,
    pub stride: usize,
}

impl WordWindows {
    /// The usual setting: 150 words, stride 75.
    pub const DEFAULT: WordWindows = WordWindows {
        size: 150,
        stride: 75,
    };

    pub fn new(size: usize, stride: usize) -> Result<Self, Error> {
        if size == 0 {
            return Err(Error::Input(
                "the window must hold at least one word".into(),
            ));
        }
        if stride == 0 || stride > size {
            return Err(Error::Input(format!(
                "the stride must be between 1 and the window ({size} words), not {stride}: \
                 a larger stride would skip words"
            )));
        }
        Ok(Self { size, stride })
    }

    /// The passages of `text`, each prefixed with `title` when given. A text of `size` words
    /// or fewer is one passage; the last window always reaches the end of the text. An empty
    /// text has no passages.
    pub fn split(&self, text: &str, title: Option<&str>) -> Vec<String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut passages = Vec::new();
        let mut start = 0;
        while start < words.len() {
            let end = (start + self.size).min(words.len());
            let body = words[start..end].join(" ");
            passages.push(match title {
                Some(t) if !t.trim().is_empty() => format!("{} {body}", t.trim()),
                _ => body,
            });
            if end == words.len() {
                break;
            }
            start += self.stride;
        }
        passages
    }
}

/// How documents are cut into passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Fixed windows of words; a passage longer than the pair's max length is truncated.
    Words(WordWindows),
    /// Windows of tokens that fill the pair's max length with the query, a new one every
    /// `stride` tokens.
    Tokens { stride: usize },
}

/// Where a document's title comes from, to be put before each of its passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TitleSource {
    #[default]
    None,
    /// The text up to the first ` . ` (collections stored as `title . body`, such as
    /// Cranfield's), when that is at most 40 words.
    FirstSentence,
}

impl TitleSource {
    /// (title, body) of a document's text.
    pub fn split(self, text: &str) -> (Option<&str>, &str) {
        if self == TitleSource::FirstSentence
            && let Some((title, body)) = text.split_once(" . ")
            && !title.trim().is_empty()
            && !body.trim().is_empty()
            && title.split_whitespace().count() <= 40
        {
            return (Some(title.trim()), body);
        }
        (None, text)
    }
}

impl FromStr for TitleSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(TitleSource::None),
            "first-sentence" => Ok(TitleSource::FirstSentence),
            _ => Err(Error::Input(format!(
                "unknown title source {s:?}: expected none or first-sentence"
            ))),
        }
    }
}

/// The passage pairs of one query's candidate documents.
#[derive(Debug, Default)]
pub struct DocumentPairs {
    pub pairs: Vec<Encoded>,
    /// The document (index into the candidates) each pair belongs to.
    pub document: Vec<usize>,
    /// Pairs whose passage did not fit max length whole (word windows only).
    pub truncated: usize,
}

/// Turns (query, candidate documents) into passage pairs. Each document, or word window, is
/// tokenised once however many queries it is a candidate for: the tokens are kept and joined to
/// each query.
pub struct DocumentEncoder<'t> {
    tokenizer: &'t PairTokenizer,
    cut: Cut,
    windows: Windows,
    title: TitleSource,
    tokens: HashMap<String, Tokens>,
}

impl<'t> DocumentEncoder<'t> {
    pub fn new(
        tokenizer: &'t PairTokenizer,
        cut: Cut,
        windows: Windows,
        title: TitleSource,
    ) -> Self {
        Self {
            tokenizer,
            cut,
            windows,
            title,
            tokens: HashMap::new(),
        }
    }

    /// Texts tokenised so far (each once).
    pub fn tokenised_texts(&self) -> usize {
        self.tokens.len()
    }

    fn tokenize_missing(&mut self, texts: &[&str]) -> Result<(), Error> {
        let mut missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.tokens.contains_key(*t))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let tokens = self.tokenizer.tokenize(&missing)?;
        for (text, tokens) in missing.into_iter().zip(tokens) {
            self.tokens.insert(text.to_string(), tokens);
        }
        Ok(())
    }

    /// The passage pairs of `documents` for `query`. A document without words has none.
    pub fn encode(&mut self, query: &str, documents: &[&str]) -> Result<DocumentPairs, Error> {
        crate::reranker::check_query(query)?;
        let query_ids = self.tokenizer.tokenize(&[query])?.remove(0).ids;
        let split: Vec<(Option<&str>, &str)> =
            documents.iter().map(|d| self.title.split(d)).collect();
        let mut out = DocumentPairs::default();
        match self.windows {
            Windows::Words(words) => {
                let passages: Vec<Vec<String>> = split
                    .iter()
                    .map(|(title, body)| words.split(body, *title))
                    .collect();
                let all: Vec<&str> = passages.iter().flatten().map(String::as_str).collect();
                self.tokenize_missing(&all)?;
                let room = self.cut.max_len - 3;
                for (doc, passages) in passages.iter().enumerate() {
                    for passage in passages {
                        let ids = &self.tokens[passage.as_str()].ids;
                        out.truncated += usize::from(query_ids.len() + ids.len() > room);
                        out.pairs
                            .push(self.tokenizer.join(&query_ids, ids, self.cut));
                        out.document.push(doc);
                    }
                }
            }
            Windows::Tokens { stride } => {
                let texts: Vec<&str> = split
                    .iter()
                    .flat_map(|(title, body)| title.iter().copied().chain([*body]))
                    .collect();
                self.tokenize_missing(&texts)?;
                for (doc, (title, body)) in split.iter().enumerate() {
                    let title_ids = title.map_or(&[][..], |t| &self.tokens[t].ids[..]);
                    let windows = self.tokenizer.token_windows(
                        &query_ids,
                        title_ids,
                        &self.tokens[*body],
                        stride,
                        self.cut,
                    )?;
                    out.document.extend(std::iter::repeat_n(doc, windows.len()));
                    out.pairs.extend(windows);
                }
            }
        }
        Ok(out)
    }
}

/// How passage scores become a document score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// The best passage (the default; MaxP).
    #[default]
    Max,
    /// The first passage only.
    First,
    /// The sum over passages.
    Sum,
    /// The mean over passages.
    Mean,
    /// The mean of the best k passages.
    TopMean(usize),
}

impl Aggregation {
    /// Aggregates one document's passage scores (in document order); None when there are none.
    pub fn apply(self, scores: &[f32]) -> Option<f32> {
        let first = *scores.first()?;
        Some(match self {
            Aggregation::Max => scores.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Aggregation::First => first,
            Aggregation::Sum => scores.iter().sum(),
            Aggregation::Mean => scores.iter().sum::<f32>() / scores.len() as f32,
            Aggregation::TopMean(k) => {
                let mut sorted = scores.to_vec();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let top = &sorted[..k.min(sorted.len())];
                top.iter().sum::<f32>() / top.len() as f32
            }
        })
    }
}

impl FromStr for Aggregation {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "maxp" | "max" => return Ok(Aggregation::Max),
            "firstp" | "first" => return Ok(Aggregation::First),
            "sump" | "sum" => return Ok(Aggregation::Sum),
            "mean" | "meanp" => return Ok(Aggregation::Mean),
            _ => {}
        }
        lower
            .strip_prefix("top")
            .and_then(|k| k.strip_suffix("mean"))
            .and_then(|k| k.parse::<usize>().ok())
            .filter(|&k| k > 0)
            .map(Aggregation::TopMean)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown document mode {s:?}: expected maxp, firstp, sump, mean or topKmean \
                     (e.g. top3mean)"
                ))
            })
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregation::Max => f.write_str("maxp"),
            Aggregation::First => f.write_str("firstp"),
            Aggregation::Sum => f.write_str("sump"),
            Aggregation::Mean => f.write_str("mean"),
            Aggregation::TopMean(k) => write!(f, "top{k}mean"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_cover_the_end_and_take_a_title() {
        let w = WordWindows::new(4, 2).unwrap();
        let text = "a b c d e f g";
        assert_eq!(w.split(text, None), ["a b c d", "c d e f", "e f g"]);
        assert_eq!(w.split("a b", Some("T")), ["T a b"]);
        assert_eq!(w.split("a b c d", None), ["a b c d"]);
        assert!(w.split("  \n ", None).is_empty());
        let one_enormous = "x".repeat(100_000);
        assert_eq!(w.split(&one_enormous, None).len(), 1);
        assert!(WordWindows::new(4, 0).is_err());
        assert!(
            WordWindows::new(4, 5)
                .unwrap_err()
                .to_string()
                .contains("skip")
        );
        assert!(WordWindows::new(0, 1).is_err());
    }

    #[test]
    fn aggregations() {
        let s = [1.0, 3.0, 2.0];
        assert_eq!(Aggregation::Max.apply(&s), Some(3.0));
        assert_eq!(Aggregation::First.apply(&s), Some(1.0));
        assert_eq!(Aggregation::Sum.apply(&s), Some(6.0));
        assert_eq!(Aggregation::Mean.apply(&s), Some(2.0));
        assert_eq!(Aggregation::TopMean(2).apply(&s), Some(2.5));
        assert_eq!(Aggregation::TopMean(9).apply(&s), Some(2.0));
        assert_eq!(Aggregation::Max.apply(&[]), None);
        for name in ["maxp", "firstp", "sump", "mean", "top3mean"] {
            let a: Aggregation = name.parse().unwrap();
            assert_eq!(a.to_string(), name);
        }
        assert!("top0mean".parse::<Aggregation>().is_err());
        assert!("best".parse::<Aggregation>().is_err());
    }
}
