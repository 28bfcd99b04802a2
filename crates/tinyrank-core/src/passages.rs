//! Documents longer than a model's input: overlapping passage windows, and the aggregation of
//! passage scores into a document score (MaxP, FirstP, SumP; Dai & Callan, 2019).

use std::fmt;
use std::str::FromStr;

use crate::Error;

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
