//! Ranking metrics with trec_eval's definitions.
//!
//! - Documents are ordered by score descending, ties by document id descending (trec_eval).
//! - nDCG@k: linear gain (the grade), log2 discount, ideal ranking from every judged document
//!   of the query (trec_eval `ndcg_cut`); it uses the grades, not the relevance threshold.
//! - RR@k, MAP, R@k, P@k count a document relevant when its grade >= `min_rel` (trec_eval `-l`,
//!   default 1; TREC DL reports use 2).
//! - Queries in the qrels but missing from the run score 0 (trec_eval `-c`) by default; queries
//!   in the run without judgments are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::data::{Qrels, Run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Ndcg(usize),
    /// Reciprocal rank of the first relevant document within the cutoff (`None`: no cutoff).
    Rr(Option<usize>),
    Map,
    Recall(usize),
    Precision(usize),
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, cutoff) = match lower.split_once('@') {
            Some((name, k)) => {
                let k: usize =
                    k.parse().ok().filter(|&k| k > 0).ok_or_else(|| {
                        format!("metric {s}: the cutoff must be a positive integer")
                    })?;
                (name.to_string(), Some(k))
            }
            None => (lower.clone(), None),
        };
        let need =
            |k: Option<usize>| k.ok_or_else(|| format!("metric {s} needs a cutoff, e.g. {s}@10"));
        match name.as_str() {
            "ndcg" => Ok(Metric::Ndcg(need(cutoff)?)),
            "rr" | "mrr" => Ok(Metric::Rr(cutoff)),
            "map" if cutoff.is_none() => Ok(Metric::Map),
            "r" | "recall" => Ok(Metric::Recall(need(cutoff)?)),
            "p" | "precision" => Ok(Metric::Precision(need(cutoff)?)),
            _ => Err(format!(
                "unknown metric {s}: expected ndcg@k, rr or rr@k, map, r@k or p@k"
            )),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Ndcg(k) => write!(f, "nDCG@{k}"),
            Metric::Rr(Some(k)) => write!(f, "RR@{k}"),
            Metric::Rr(None) => write!(f, "RR"),
            Metric::Map => write!(f, "MAP"),
            Metric::Recall(k) => write!(f, "R@{k}"),
            Metric::Precision(k) => write!(f, "P@{k}"),
        }
    }
}

pub const DEFAULT_METRICS: [Metric; 5] = [
    Metric::Ndcg(10),
    Metric::Rr(Some(10)),
    Metric::Map,
    Metric::Recall(100),
    Metric::Precision(10),
];

#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Lowest grade that counts as relevant for the binary metrics.
    pub min_rel: i32,
    /// Average over every judged query, scoring those absent from the run as 0 (trec_eval -c).
    pub missing_as_zero: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            min_rel: 1,
            missing_as_zero: true,
        }
    }
}

/// Per-query values and their means.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: Vec<Metric>,
    /// query id -> one value per metric, in `metrics` order.
    pub per_query: BTreeMap<String, Vec<f64>>,
    pub means: Vec<f64>,
}

impl Evaluation {
    pub fn mean(&self, metric: Metric) -> Option<f64> {
        self.metrics
            .iter()
            .position(|&m| m == metric)
            .map(|i| self.means[i])
    }
}

/// The value of one metric for one query, given the grades of the ranked documents (None =
/// unjudged) and all of the query's judgments.
pub fn query_metric(
    metric: Metric,
    ranked_grades: &[Option<i32>],
    judged: &[i32],
    min_rel: i32,
) -> f64 {
    let relevant = |g: &Option<i32>| g.is_some_and(|g| g >= min_rel);
    let total_relevant = judged.iter().filter(|&&g| g >= min_rel).count();
    match metric {
        Metric::Ndcg(k) => {
            let dcg = |grades: &mut dyn Iterator<Item = i32>| -> f64 {
                grades
                    .take(k)
                    .enumerate()
                    .map(|(i, g)| g.max(0) as f64 / ((i + 2) as f64).log2())
                    .sum()
            };
            let actual = dcg(&mut ranked_grades.iter().map(|g| g.unwrap_or(0)));
            let mut ideal: Vec<i32> = judged.iter().copied().filter(|&g| g > 0).collect();
            ideal.sort_unstable_by(|a, b| b.cmp(a));
            let ideal = dcg(&mut ideal.into_iter());
            if ideal > 0.0 { actual / ideal } else { 0.0 }
        }
        Metric::Rr(cutoff) => ranked_grades
            .iter()
            .take(cutoff.unwrap_or(usize::MAX))
            .position(relevant)
            .map_or(0.0, |i| 1.0 / (i + 1) as f64),
        Metric::Map => {
            if total_relevant == 0 {
                return 0.0;
            }
            let mut hits = 0usize;
            let mut sum = 0.0;
            for (i, g) in ranked_grades.iter().enumerate() {
                if relevant(g) {
                    hits += 1;
                    sum += hits as f64 / (i + 1) as f64;
                }
            }
            sum / total_relevant as f64
        }
        Metric::Recall(k) => {
            if total_relevant == 0 {
                return 0.0;
            }
            ranked_grades.iter().take(k).filter(|g| relevant(g)).count() as f64
                / total_relevant as f64
        }
        Metric::Precision(k) => {
            ranked_grades.iter().take(k).filter(|g| relevant(g)).count() as f64 / k as f64
        }
    }
}

/// Evaluates `run` against `qrels`.
pub fn evaluate(run: &Run, qrels: &Qrels, metrics: &[Metric], options: EvalOptions) -> Evaluation {
    let mut per_query = BTreeMap::new();
    for (qid, judgments) in &qrels.judgments {
        let in_run = run.results.contains_key(qid);
        if !in_run && !options.missing_as_zero {
            continue;
        }
        let ranked: Vec<Option<i32>> = run
            .ranked(qid)
            .into_iter()
            .map(|e| judgments.get(&e.doc_id).copied())
            .collect();
        let judged: Vec<i32> = judgments.values().copied().collect();
        let values = metrics
            .iter()
            .map(|&m| query_metric(m, &ranked, &judged, options.min_rel))
            .collect();
        per_query.insert(qid.clone(), values);
    }
    let n = per_query.len().max(1) as f64;
    let means = (0..metrics.len())
        .map(|i| per_query.values().map(|v: &Vec<f64>| v[i]).sum::<f64>() / n)
        .collect();
    Evaluation {
        metrics: metrics.to_vec(),
        per_query,
        means,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_uses_linear_gain_and_all_judged_documents_for_the_ideal() {
        // Ranked grades 0, 3, 1; a judged grade-2 document was not retrieved.
        let ranked = [Some(0), Some(3), Some(1)];
        let judged = [0, 3, 1, 2];
        let dcg = 3.0 / 3f64.log2() + 1.0 / 4f64.log2();
        let ideal = 3.0 + 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        let got = query_metric(Metric::Ndcg(10), &ranked, &judged, 1);
        assert!((got - dcg / ideal).abs() < 1e-12);
    }

    #[test]
    fn binary_metrics_respect_the_relevance_threshold() {
        let ranked = [None, Some(1), Some(2)];
        let judged = [1, 2, 2];
        assert_eq!(query_metric(Metric::Rr(Some(10)), &ranked, &judged, 1), 0.5);
        assert!(
            (query_metric(Metric::Rr(Some(10)), &ranked, &judged, 2) - 1.0 / 3.0).abs() < 1e-12
        );
        assert_eq!(query_metric(Metric::Rr(Some(2)), &ranked, &judged, 2), 0.0);
        // MAP with min_rel 2: one of two relevant found, at rank 3.
        assert!((query_metric(Metric::Map, &ranked, &judged, 2) - (1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(
            query_metric(Metric::Recall(2), &ranked, &judged, 1),
            1.0 / 3.0
        );
        assert_eq!(query_metric(Metric::Precision(2), &ranked, &judged, 1), 0.5);
    }

    #[test]
    fn metric_names_parse_and_reject_nonsense() {
        assert_eq!("nDCG@10".parse::<Metric>().unwrap(), Metric::Ndcg(10));
        assert_eq!("rr".parse::<Metric>().unwrap(), Metric::Rr(None));
        assert_eq!("R@100".parse::<Metric>().unwrap(), Metric::Recall(100));
        assert!("ndcg".parse::<Metric>().is_err());
        assert!("ndcg@0".parse::<Metric>().is_err());
        assert!("bleu@4".parse::<Metric>().is_err());
    }
}
