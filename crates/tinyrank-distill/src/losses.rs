//! The loss terms of Simplified TinyBERT (Chen et al., 2021) and its baselines.
//!
//! Simplified TinyBERT sums, in one training step:
//! - attention: MSE between student and teacher pre-softmax attention scores, entries at padded
//!   keys set to 0 in both;
//! - hidden: MSE between `fit_dense(student hidden state)` and the mapped teacher hidden state,
//!   embedding output included;
//! - soft: cross-entropy of the student's softmax(logits / T) against the teacher's;
//! - hard: cross-entropy to the relevance labels (pairs without a label contribute nothing).
//!
//! Every MSE is a mean over all elements of one layer's tensor, summed over mapped layers (as in
//! TinyBERT's code). A 1-logit model's logit s is treated as the two-class logits [0, s], so
//! softmax[1] = sigmoid(s) and any mix of 1- and 2-logit teacher and student works.

use burn::nn::Linear;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// Which teacher layer each student layer learns from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerMap {
    /// `attention[i]`: the teacher layer whose attention scores student layer i matches.
    pub attention: Vec<usize>,
    /// `hidden[i]`: the teacher hidden-state index (0 = embeddings) that student hidden state i
    /// matches; one more entry than there are student layers.
    pub hidden: Vec<usize>,
}

impl LayerMap {
    /// The paper's map with k = teacher layers / student layers: attention of student layer i
    /// from teacher layer (i+1)k-1, hidden state i from teacher hidden state i*k.
    pub fn uniform(teacher_layers: usize, student_layers: usize) -> Result<Self, String> {
        if student_layers == 0 || !teacher_layers.is_multiple_of(student_layers) {
            return Err(format!(
                "the teacher's {teacher_layers} layers are not a multiple of the student's \
                 {student_layers}: give an explicit layer map"
            ));
        }
        let k = teacher_layers / student_layers;
        Ok(Self {
            attention: (0..student_layers).map(|i| (i + 1) * k - 1).collect(),
            hidden: (0..=student_layers).map(|i| i * k).collect(),
        })
    }

    /// Checks the map against the two models' depths.
    pub fn validate(&self, teacher_layers: usize, student_layers: usize) -> Result<(), String> {
        if self.attention.len() != student_layers || self.hidden.len() != student_layers + 1 {
            return Err(format!(
                "a layer map for {student_layers} student layers needs {student_layers} attention \
                 and {} hidden entries",
                student_layers + 1
            ));
        }
        if let Some(bad) = self.attention.iter().find(|&&t| t >= teacher_layers) {
            return Err(format!(
                "layer map names teacher layer {bad}, but the teacher has layers 0..{}",
                teacher_layers - 1
            ));
        }
        if let Some(bad) = self.hidden.iter().find(|&&t| t > teacher_layers) {
            return Err(format!(
                "layer map names teacher hidden state {bad}, but the teacher has 0..={teacher_layers}"
            ));
        }
        Ok(())
    }
}

/// `attention=1,3,5;hidden=0,2,4,6` (the `--layer-map` syntax).
impl std::str::FromStr for LayerMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (mut attention, mut hidden) = (None, None);
        for part in s.split(';') {
            let (key, list) = part.split_once('=').ok_or_else(|| {
                format!("layer map: expected attention=...;hidden=..., found {part:?}")
            })?;
            let values = list
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("layer map: {v:?} is not a layer index"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            match key.trim() {
                "attention" => attention = Some(values),
                "hidden" => hidden = Some(values),
                other => {
                    return Err(format!(
                        "layer map: unknown key {other:?} (attention, hidden)"
                    ));
                }
            }
        }
        Ok(Self {
            attention: attention.ok_or("layer map: attention= is missing")?,
            hidden: hidden.ok_or("layer map: hidden= is missing")?,
        })
    }
}

/// `[batch, 1]` logits become the two-class `[0, s]`; `[batch, 2]` pass through.
pub fn two_class(logits: Tensor<2>) -> Tensor<2> {
    let [batch, labels] = logits.dims();
    if labels == 2 {
        return logits;
    }
    Tensor::cat(vec![logits.zeros_like(), logits], 1).reshape([batch, 2])
}

fn mse<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<1> {
    (a - b).square().mean()
}

/// Attention-score MSE summed over mapped layers. `attention_mask` is `[batch, len]`, 1 for real
/// tokens: scores at padded keys are zeroed in both tensors.
pub fn attention_loss(
    student: &[Tensor<4>],
    teacher: &[Tensor<4>],
    map: &LayerMap,
    attention_mask: &Tensor<2>,
) -> Tensor<1> {
    let [batch, len] = attention_mask.dims();
    let keys = attention_mask.clone().reshape([batch, 1, 1, len]);
    student
        .iter()
        .zip(&map.attention)
        .map(|(s, &t)| mse(s.clone() * keys.clone(), teacher[t].clone() * keys.clone()))
        .reduce(|a, b| a + b)
        .expect("at least one student layer")
}

/// Hidden-state MSE through `fit_dense`, summed over mapped hidden states (embeddings included).
pub fn hidden_loss(
    student: &[Tensor<3>],
    teacher: &[Tensor<3>],
    map: &LayerMap,
    fit_dense: &Linear,
) -> Tensor<1> {
    student
        .iter()
        .zip(&map.hidden)
        .map(|(s, &t)| mse(fit_dense.forward(s.clone()), teacher[t].clone()))
        .reduce(|a, b| a + b)
        .expect("at least the embedding output")
}

/// Soft cross-entropy to the teacher at `temperature`, averaged over the batch.
pub fn soft_loss(
    student_logits: Tensor<2>,
    teacher_logits: Tensor<2>,
    temperature: f64,
) -> Tensor<1> {
    let student = two_class(student_logits) / temperature;
    let teacher = softmax(two_class(teacher_logits) / temperature, 1);
    (teacher * log_softmax(student, 1)).sum_dim(1).neg().mean()
}

/// Cross-entropy to binary relevance labels (0/1), averaged over the labelled pairs; `labelled` is
/// 1.0 where a pair has a label and 0.0 where it has none. Zero when nothing is labelled.
pub fn hard_loss(
    student_logits: Tensor<2>,
    labels: Tensor<1, Int>,
    labelled: Tensor<1>,
) -> Tensor<1> {
    let [batch] = labels.dims();
    let log_probs = log_softmax(two_class(student_logits), 1);
    let picked = log_probs
        .gather(1, labels.reshape([batch, 1]))
        .reshape([batch]);
    let count = labelled.clone().sum().clamp_min(1.0);
    (picked * labelled).sum().neg() / count
}

/// Margin-MSE (Hofstätter et al., 2020) over groups: `scores` are `[groups, size]` ranking scores
/// (log-odds) and the loss is the mean over every ordered pair (i, j) of a group of
/// ((s_i - s_j) - (t_i - t_j))^2. With groups of (positive, negative) this is the paper's loss.
pub fn margin_mse(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let [groups, size] = student.dims();
    let margins =
        |t: Tensor<2>| t.clone().reshape([groups, size, 1]) - t.reshape([groups, 1, size]);
    mse(margins(student), margins(teacher))
}

/// Listwise KL divergence KL(teacher || student) of softmax(scores / T) over each group of a
/// query's candidates, `[groups, size]`, averaged over groups.
pub fn listwise_kl(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let teacher_log = log_softmax(teacher / temperature, 1);
    let student_log = log_softmax(student / temperature, 1);
    (teacher_log.clone().exp() * (teacher_log - student_log))
        .sum_dim(1)
        .mean()
}

/// The gain of a graded candidate in [`graded_listwise_ce`]'s target: 2^grade - 1, as nDCG's.
pub fn graded_gain(grade: u8) -> f32 {
    2f32.powi(i32::from(grade)) - 1.0
}

/// Listwise cross-entropy to graded relevance, `[groups, size]`: each group's target is its
/// candidates' gains ([`graded_gain`]) normalised; groups without a relevant candidate have
/// no target and are left out of the mean. Zero when none has one.
pub fn graded_listwise_ce(student: Tensor<2>, gains: Tensor<2>) -> Tensor<1> {
    let totals = gains.clone().sum_dim(1);
    let has_target = totals.clone().greater_elem(0.0).float();
    let target = gains / totals.clamp_min(f32::MIN_POSITIVE);
    let per_group = (target * log_softmax(student, 1)).sum_dim(1).neg() * has_target.clone();
    per_group.sum() / has_target.sum().clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn uniform_layer_map_follows_the_paper() {
        let map = LayerMap::uniform(6, 3).unwrap();
        assert_eq!(map.attention, vec![1, 3, 5]);
        assert_eq!(map.hidden, vec![0, 2, 4, 6]);
        let map = LayerMap::uniform(12, 3).unwrap();
        assert_eq!(map.attention, vec![3, 7, 11]);
        assert_eq!(map.hidden, vec![0, 4, 8, 12]);
        assert!(
            LayerMap::uniform(6, 4)
                .unwrap_err()
                .contains("explicit layer map")
        );
        assert!(map.validate(12, 3).is_ok());
        assert!(map.validate(6, 3).unwrap_err().contains("teacher layer 7"));
        let parsed: LayerMap = "attention=1,3,5;hidden=0,2,4,6".parse().unwrap();
        assert_eq!(parsed, LayerMap::uniform(6, 3).unwrap());
        assert!("attention=1,x;hidden=0".parse::<LayerMap>().is_err());
    }

    #[test]
    fn graded_listwise_ce_targets_gains_and_skips_groups_without_one() {
        let device = Device::flex();
        let t = |v: [[f32; 2]; 3]| Tensor::<2>::from_data(v, &device);
        let student = t([[0.0, 0.0], [1.0, 0.0], [5.0, -5.0]]);
        // Gains 2^g - 1: [3, 0] puts all the target on the first; [1, 1] splits it; the last
        // group has no relevant candidate and no say.
        let gains = t([
            [graded_gain(2), graded_gain(0)],
            [graded_gain(1), graded_gain(1)],
            [0.0, 0.0],
        ]);
        assert_eq!(graded_gain(3), 7.0);
        let got = graded_listwise_ce(student, gains).into_scalar::<f32>();
        let log1pe = (1.0f32 + 1f32.exp()).ln();
        let second = 0.5 * ((log1pe - 1.0) + log1pe);
        let want = (2f32.ln() + second) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        let none = graded_listwise_ce(t([[1.0, 0.0]; 3]), t([[0.0, 0.0]; 3]));
        assert_eq!(none.into_scalar::<f32>(), 0.0);
    }
}
