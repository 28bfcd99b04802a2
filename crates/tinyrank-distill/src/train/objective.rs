//! Each method's loss, next to its definition: the named terms of one micro-batch and their
//! weights in the total. A new loss is one arm of [`Method`] and one function here.

use std::collections::BTreeMap;

use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use tinyrank_core::model::{Batch, Output};
use tinyrank_core::rules::ranking_scores;

use super::config::{Method, TrainConfig, term_name};
use crate::examples::Example;
use crate::losses::{
    LayerMap, attention_loss, graded_gain, graded_listwise_ce, hard_loss, hidden_loss, listwise_kl,
    margin_mse, soft_loss,
};

/// One loss term: its name in the log, its value and its weight in the total.
pub(super) struct Term {
    pub name: &'static str,
    pub value: Tensor<1>,
    weight: f64,
}

fn term(name: &'static str, value: Tensor<1>) -> Term {
    Term {
        name,
        value,
        weight: 1.0,
    }
}

/// What the terms are computed from: one micro-batch's forward passes and labels.
pub(super) struct Outputs<'a> {
    pub config: &'a TrainConfig,
    pub batch: &'a Batch,
    pub student: Output,
    pub teacher: Option<Output>,
    pub fit_dense: Option<&'a Linear>,
    pub layer_map: Option<&'a LayerMap>,
    /// Each pair's label; None where the data has no judgment.
    pub labels: Vec<Option<u8>>,
    /// Each pair's qrels grade (None: no judgments) and its score given with the data.
    pub grades: Vec<Option<u8>>,
    pub priors: Vec<Option<f32>>,
    pub device: &'a Device,
}

impl Method {
    /// The terms of this method's loss; `intermediate` says whether this step trains the
    /// attention and hidden-state terms ([`TrainConfig::intermediate_at`]).
    pub(super) fn terms(self, o: &Outputs, intermediate: bool) -> Vec<Term> {
        let alpha = o.config.alpha;
        match self {
            Method::Simplified => {
                let mut terms = intermediate_terms(o);
                terms.extend([soft(o), hard(o)]);
                terms
            }
            Method::Standard => vec![
                Term {
                    weight: alpha,
                    ..soft(o)
                },
                Term {
                    weight: 1.0 - alpha,
                    ..hard(o)
                },
            ],
            Method::Tinybert if intermediate => intermediate_terms(o),
            Method::Tinybert => vec![soft(o)],
            Method::MarginMse => vec![margin(o)],
            Method::Listwise => vec![listwise(o)],
            Method::Labels => vec![hard(o)],
            Method::FineTune => vec![graded(o), prior(o)],
        }
    }
}

impl TrainConfig {
    /// Whether some weighted term of the method learns from this unit of examples; the rest
    /// are left out with `--skip-idle`. Terms with a teacher learn from every pair.
    pub(super) fn teaches<'a>(&self, mut unit: impl Iterator<Item = &'a Example>) -> bool {
        let weighted = |name| self.term_weight(name) > 0.0;
        match self.method {
            // The graded term skips groups without a gain (`graded_listwise_ce`).
            Method::FineTune => {
                weighted(term_name::PRIOR)
                    || (weighted(term_name::GRADED)
                        && unit.any(|e| graded_gain(e.grade.unwrap_or(0)) > 0.0))
            }
            Method::Labels => weighted(term_name::HARD) && unit.any(|e| e.label.is_some()),
            _ => true,
        }
    }
}

/// Applies the configured per-term weights and, with `balance_terms`, divides each term by its
/// value the first time it appeared (`scales` keeps those, per term name, for the whole run and
/// across resumes). The term values stay unscaled for the log.
pub(super) fn weigh(terms: &mut [Term], config: &TrainConfig, scales: &mut BTreeMap<String, f64>) {
    for term in terms.iter_mut() {
        term.weight *= config.term_weight(term.name);
        if config.balance_terms {
            let scale = *scales.entry(term.name.to_string()).or_insert_with(|| {
                let start = f64::from(term.value.clone().into_scalar::<f32>());
                // A term that starts at 0 has nothing to balance.
                if start.abs() > f64::EPSILON {
                    1.0 / start.abs()
                } else {
                    1.0
                }
            });
            term.weight *= scale;
        }
    }
}

/// The weighted sum of the terms, in their order.
pub(super) fn total(terms: &[Term]) -> Option<Tensor<1>> {
    terms
        .iter()
        // A weight of 1 adds no op, so the graph is the plain sum.
        .map(|t| {
            if t.weight == 1.0 {
                t.value.clone()
            } else {
                t.value.clone() * t.weight
            }
        })
        .reduce(|a, b| a + b)
}

/// Attention-score MSE and hidden-state MSE through `fit_dense` (embeddings included).
fn intermediate_terms(o: &Outputs) -> Vec<Term> {
    let (Some(teacher), Some(map), Some(fit)) = (&o.teacher, o.layer_map, o.fit_dense) else {
        return Vec::new();
    };
    let (s, t) = (&o.student, teacher);
    let mask = &o.batch.attention_mask;
    vec![
        term(
            term_name::ATTENTION,
            attention_loss(&s.attention_scores, &t.attention_scores, map, mask),
        ),
        term(
            term_name::HIDDEN,
            hidden_loss(&s.hidden_states, &t.hidden_states, map, fit),
        ),
    ]
}

fn teacher_logits(o: &Outputs) -> Tensor<2> {
    match &o.teacher {
        Some(teacher) => teacher.logits.clone(),
        // `train` refuses a method that needs a teacher without one; this cannot be reached.
        None => unreachable!("a method that needs a teacher runs without one"),
    }
}

/// Cross-entropy to the teacher's softened two-class distribution.
fn soft(o: &Outputs) -> Term {
    let logits = o.student.logits.clone();
    term(
        term_name::SOFT,
        soft_loss(logits, teacher_logits(o), o.config.temperature),
    )
}

/// Cross-entropy to the labels, over the labelled pairs.
fn hard(o: &Outputs) -> Term {
    let n = o.labels.len();
    let labels: Vec<i64> = o.labels.iter().map(|l| i64::from(l.unwrap_or(0))).collect();
    let labelled: Vec<f32> = o
        .labels
        .iter()
        .map(|l| f32::from(u8::from(l.is_some())))
        .collect();
    term(
        term_name::HARD,
        hard_loss(
            o.student.logits.clone(),
            Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), o.device),
            Tensor::<1>::from_data(TensorData::new(labelled, [n]), o.device),
        ),
    )
}

/// `[groups, group_size]` of per-pair values in batch order.
fn grouped(o: &Outputs, values: Tensor<1>) -> Tensor<2> {
    let g = o.config.group_size;
    values.reshape([o.labels.len() / g, g])
}

/// Per-pair host values as a grouped tensor.
fn grouped_values(o: &Outputs, values: Vec<f32>) -> Tensor<2> {
    let n = values.len();
    grouped(o, Tensor::from_data(TensorData::new(values, [n]), o.device))
}

/// Student and teacher ranking scores, `[groups, group_size]`.
fn grouped_scores(o: &Outputs) -> (Tensor<2>, Tensor<2>) {
    (
        grouped(o, ranking_scores(o.student.logits.clone())),
        grouped(o, ranking_scores(teacher_logits(o))),
    )
}

/// Listwise cross-entropy to each group's graded qrels (unjudged and unlabelled pairs gain 0).
fn graded(o: &Outputs) -> Term {
    let gains = o
        .grades
        .iter()
        .map(|g| graded_gain(g.unwrap_or(0)))
        .collect();
    let student = grouped(o, ranking_scores(o.student.logits.clone()));
    term(
        term_name::GRADED,
        graded_listwise_ce(student, grouped_values(o, gains)),
    )
}

/// Listwise KL to the scores given with the data (`train` refuses examples without them).
fn prior(o: &Outputs) -> Term {
    let priors = o.priors.iter().map(|p| p.unwrap_or(0.0)).collect();
    let student = grouped(o, ranking_scores(o.student.logits.clone()));
    term(
        term_name::PRIOR,
        listwise_kl(student, grouped_values(o, priors), o.config.temperature),
    )
}

fn margin(o: &Outputs) -> Term {
    let (student, teacher) = grouped_scores(o);
    term(term_name::MARGIN, margin_mse(student, teacher))
}

fn listwise(o: &Outputs) -> Term {
    let (student, teacher) = grouped_scores(o);
    term(
        term_name::LISTWISE,
        listwise_kl(student, teacher, o.config.temperature),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::DEFAULTS;

    fn terms(values: &[(&'static str, f32)]) -> Vec<Term> {
        let device = Device::flex();
        values
            .iter()
            .map(|&(name, v)| {
                term(
                    name,
                    Tensor::from_data(TensorData::new(vec![v], [1]), &device),
                )
            })
            .collect()
    }

    fn weighed_total(terms: &[Term]) -> f32 {
        total(terms).unwrap().into_scalar::<f32>()
    }

    #[test]
    fn weights_multiply_and_balance_divides_by_each_terms_first_value() {
        let mut config = DEFAULTS;
        config.term_weights = Some("soft=2,hard=0".parse().unwrap());
        let mut scales = BTreeMap::new();
        let mut plain = terms(&[("attention", 4.0), ("soft", 0.5), ("hard", 7.0)]);
        weigh(&mut plain, &config, &mut scales);
        assert_eq!(weighed_total(&plain), 4.0 + 1.0);
        assert!(scales.is_empty());

        config.balance_terms = true;
        let mut first = terms(&[("attention", 4.0), ("soft", 0.5)]);
        weigh(&mut first, &config, &mut scales);
        assert_eq!(weighed_total(&first), 1.0 + 2.0);
        // Later steps keep the first divisors; a term seen for the first time gets its own.
        let mut later = terms(&[("attention", 2.0), ("soft", 0.25), ("listwise", 3.0)]);
        weigh(&mut later, &config, &mut scales);
        assert_eq!(weighed_total(&later), 0.5 + 1.0 + 1.0);
        assert_eq!(scales["attention"], 0.25);
    }
}
