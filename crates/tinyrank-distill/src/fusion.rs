//! Score interpolation with the first stage: a reranker's list mixed with the retriever's own
//! scores, so that a strong first stage (a dense retriever) keeps its say over a long list.

use std::collections::HashMap;

use crate::data::{Run, RunEntry};

/// Each query's reranked documents by `(1 - weight) * z(reranker) + weight * z(first stage)`,
/// where `z` standardises a score over that query's reranked documents (mean 0, deviation 1),
/// so that scores on different scales (logits, cosines, BM25) weigh as `weight` says. A
/// document the first stage does not list counts as its lowest score there.
pub fn interpolate(reranked: &Run, first_stage: &Run, weight: f64) -> Run {
    let mut out = Run::default();
    for qid in &reranked.query_ids {
        let entries = &reranked.results[qid];
        let listed: HashMap<&str, f64> = first_stage
            .results
            .get(qid)
            .into_iter()
            .flatten()
            .map(|e| (e.doc_id.as_str(), e.score))
            .collect();
        let floor = listed.values().copied().fold(f64::INFINITY, f64::min);
        let first: Vec<f64> = entries
            .iter()
            .map(|e| listed.get(e.doc_id.as_str()).copied().unwrap_or(floor))
            .collect();
        let second: Vec<f64> = entries.iter().map(|e| e.score).collect();
        let mixed = z_mix(&second, &first, weight);
        for (e, score) in entries.iter().zip(mixed) {
            let entry = RunEntry {
                doc_id: e.doc_id.clone(),
                rank: 0,
                score,
            };
            out.push(qid, entry);
        }
    }
    out
}

/// One query's candidates scored by two models, mixed as [`interpolate`] mixes them but on the
/// scale between theirs: the z-score mix times `(1 - weight) * dev(a) + weight * dev(b)`, plus
/// the same mix of their means. Weight 0 gives `a` back and 1 gives `b`, so a soft-label target
/// keeps the sharpness of the model it leans to.
pub fn blend(a: &[f64], b: &[f64], weight: f64) -> Vec<f64> {
    let ((mean_a, dev_a), (mean_b, dev_b)) = (moments(a), moments(b));
    let mean = (1.0 - weight) * mean_a + weight * mean_b;
    let deviation = (1.0 - weight) * dev_a + weight * dev_b;
    z_mix(a, b, weight)
        .into_iter()
        .map(|z| mean + deviation * z)
        .collect()
}

/// `(1 - weight) * z(a) + weight * z(b)` element by element.
fn z_mix(a: &[f64], b: &[f64], weight: f64) -> Vec<f64> {
    let (a, b) = (standardised(a), standardised(b));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (1.0 - weight) * x + weight * y)
        .collect()
}

/// Mean and deviation (over n) of the scores.
fn moments(scores: &[f64]) -> (f64, f64) {
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let deviation = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, deviation)
}

/// `(x - mean) / deviation`; all zeros when every score is the same (or not finite).
fn standardised(scores: &[f64]) -> Vec<f64> {
    let (mean, deviation) = moments(scores);
    if !(deviation.is_finite() && deviation > 0.0) {
        return vec![0.0; scores.len()];
    }
    scores.iter().map(|s| (s - mean) / deviation).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rows: &[(&str, f32)]) -> Run {
        let mut run = Run::default();
        for (doc, score) in rows {
            run.push_score("q", doc, *score);
        }
        run
    }

    fn order(run: &Run) -> Vec<&str> {
        run.ranked("q").iter().map(|e| e.doc_id.as_str()).collect()
    }

    #[test]
    fn the_weight_moves_the_order_from_the_reranker_to_the_first_stage() {
        // The two disagree; their scales differ by a factor of 100.
        let first = run(&[("a", 300.0), ("b", 200.0), ("c", 100.0)]);
        let reranked = run(&[("a", -1.0), ("b", 2.0), ("c", 3.0)]);
        assert_eq!(order(&interpolate(&reranked, &first, 0.0)), ["c", "b", "a"]);
        assert_eq!(order(&interpolate(&reranked, &first, 1.0)), ["a", "b", "c"]);
        // Equal weights: b is second in both lists and first in the mix.
        assert_eq!(order(&interpolate(&reranked, &first, 0.5))[0], "b");
        // A document the first stage lacks takes its lowest score there.
        let partial = run(&[("a", 300.0), ("b", 200.0)]);
        let mixed = interpolate(&reranked, &partial, 1.0);
        assert_eq!(order(&mixed)[0], "a");
        assert_eq!(mixed.results["q"][1].score, mixed.results["q"][2].score);
    }

    #[test]
    fn a_blend_ends_at_either_model_and_mixes_their_scales_between() {
        let a = [1.0, 2.0, 3.0];
        let b = [30.0, 10.0, 20.0];
        let close = |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-9);
        assert!(close(&blend(&a, &b, 0.0), &a));
        assert!(close(&blend(&a, &b, 1.0), &b));
        let half = blend(&a, &b, 0.5);
        // The mean halfway between 2 and 20; the third is second in b and first in a.
        assert!((half.iter().sum::<f64>() / 3.0 - 11.0).abs() < 1e-9);
        assert!(half[2] > half[0] && half[0] > half[1]);
    }
}
