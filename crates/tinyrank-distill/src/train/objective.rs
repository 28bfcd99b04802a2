//! Each method's loss, next to its definition: the named terms of one micro-batch and their
//! weights in the total. A new loss is one arm of [`Method`] and one function here.

use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use tinyrank_core::model::{Batch, Output};
use tinyrank_core::rules::ranking_scores;

use super::config::{Method, TrainConfig};
use crate::losses::{
    LayerMap, attention_loss, hard_loss, hidden_loss, listwise_kl, margin_mse, soft_loss,
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
            "attention",
            attention_loss(&s.attention_scores, &t.attention_scores, map, mask),
        ),
        term(
            "hidden",
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
        "soft",
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
        "hard",
        hard_loss(
            o.student.logits.clone(),
            Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), o.device),
            Tensor::<1>::from_data(TensorData::new(labelled, [n]), o.device),
        ),
    )
}

/// Student and teacher ranking scores, `[groups, group_size]`.
fn grouped_scores(o: &Outputs) -> (Tensor<2>, Tensor<2>) {
    let g = o.config.group_size;
    let groups = |scores: Tensor<1>| scores.reshape([o.labels.len() / g, g]);
    (
        groups(ranking_scores(o.student.logits.clone())),
        groups(ranking_scores(teacher_logits(o))),
    )
}

fn margin(o: &Outputs) -> Term {
    let (student, teacher) = grouped_scores(o);
    term("margin", margin_mse(student, teacher))
}

fn listwise(o: &Outputs) -> Term {
    let (student, teacher) = grouped_scores(o);
    term(
        "listwise",
        listwise_kl(student, teacher, o.config.temperature),
    )
}
