//! What shapes a training run: the method, its terms, and every hyper-parameter with its one
//! default. The CLI flattens [`TrainConfig`] into `tinyrank distill`'s flags.

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::batches::units_for;
use crate::examples::Example;
use crate::losses::LayerMap;

/// The training objective. Each method's loss terms are defined in `objective.rs`; its name
/// (flag value, log, checkpoint identity) is the variant's in kebab case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Method {
    /// Simplified TinyBERT: attention + hidden + soft + hard, in one step.
    Simplified,
    /// Standard KD: alpha * soft + (1 - alpha) * hard.
    Standard,
    /// TinyBERT's two steps: attention + hidden at a constant learning rate, then soft only.
    Tinybert,
    /// Margin-MSE to the teacher's score differences within each group.
    MarginMse,
    /// KL divergence to the teacher's softmax over each group of a query's candidates.
    Listwise,
    /// Hard labels only, no teacher: plain fine-tuning.
    Labels,
    /// A cross-encoder trained without one as teacher (from a pretrained encoder, to become a
    /// teacher): graded listwise cross-entropy on the qrels + listwise KL to the examples' own
    /// scores (a bi-encoder's similarities), over groups of one query's candidates.
    FineTune,
}

impl Method {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|value| value.get_name().to_string())
            .unwrap_or_default()
    }

    pub fn needs_teacher(self) -> bool {
        !matches!(self, Method::Labels | Method::FineTune)
    }

    /// Methods whose loss compares candidates of one query with each other.
    pub fn grouped(self) -> bool {
        matches!(
            self,
            Method::MarginMse | Method::Listwise | Method::FineTune
        )
    }

    /// Methods with attention and hidden-state terms (at some step).
    pub fn intermediate(self) -> bool {
        matches!(self, Method::Simplified | Method::Tinybert)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        <Method as ValueEnum>::from_str(s, false).map_err(|_| {
            let names: Vec<String> = Method::value_variants().iter().map(|m| m.name()).collect();
            format!("unknown method {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// The loss terms' names: the log's keys and `--term-weights`' keys; `objective.rs` names its
/// terms with these.
pub mod term_name {
    pub const ATTENTION: &str = "attention";
    pub const HIDDEN: &str = "hidden";
    pub const SOFT: &str = "soft";
    pub const HARD: &str = "hard";
    pub const MARGIN: &str = "margin";
    pub const LISTWISE: &str = "listwise";
    pub const GRADED: &str = "graded";
    pub const PRIOR: &str = "prior";
}

/// Every loss term's name.
pub const TERM_NAMES: [&str; 8] = [
    term_name::ATTENTION,
    term_name::HIDDEN,
    term_name::SOFT,
    term_name::HARD,
    term_name::MARGIN,
    term_name::LISTWISE,
    term_name::GRADED,
    term_name::PRIOR,
];

/// Per-term weights, `attention=0.1,soft=2`: each multiplies its term (after the method's own
/// weights, such as Standard KD's alpha); a term not named keeps weight 1.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TermWeights(pub std::collections::BTreeMap<String, f64>);

impl TermWeights {
    pub fn get(&self, term: &str) -> f64 {
        self.0.get(term).copied().unwrap_or(1.0)
    }
}

impl FromStr for TermWeights {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = std::collections::BTreeMap::new();
        for item in s.split(',').filter(|item| !item.trim().is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not term=weight"))?;
            let name = name.trim();
            if !TERM_NAMES.contains(&name) {
                return Err(format!(
                    "unknown loss term {name:?}: expected one of {}",
                    TERM_NAMES.join(", ")
                ));
            }
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("the weight of {name} is not a number: {value:?}"))?;
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("the weight of {name} must be finite and >= 0"));
            }
            weights.insert(name.to_string(), value);
        }
        Ok(Self(weights))
    }
}

impl fmt::Display for TermWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&items.join(","))
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

fn one() -> usize {
    1
}

fn is_one(value: &usize) -> bool {
    *value == 1
}

/// Every default of [`TrainConfig`], in one place (the CLI's flags read them from here).
pub const DEFAULTS: TrainConfig = TrainConfig {
    method: Method::Simplified,
    temperature: 1.0,
    alpha: 0.5,
    learning_rate: 1e-4,
    weight_decay: 0.01,
    warmup: 0.1,
    max_grad_norm: 1.0,
    batch_size: 16,
    accumulation: 1,
    group_size: 8,
    // Half of rerank's 256: training costs grow with length, and DL's BM25 passages average
    // about 90 tokens a pair.
    max_len: 128,
    pad_to: 1,
    teacher_f16: false,
    steps: 1,
    seed: 42,
    tinybert_split: 0.5,
    layer_map: None,
    term_weights: None,
    balance_terms: false,
    skip_idle: false,
};

/// Everything that shapes the trained weights (and so must match when resuming).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct TrainConfig {
    /// simplified, standard, tinybert, margin-mse, listwise, labels or fine-tune.
    #[arg(long, default_value_t = DEFAULTS.method)]
    pub method: Method,
    /// Softmax temperature of the soft cross-entropy and the listwise KL (fine-tune's prior
    /// term included).
    #[arg(long, default_value_t = DEFAULTS.temperature)]
    pub temperature: f64,
    /// Standard KD's weight of the soft loss.
    #[arg(long, default_value_t = DEFAULTS.alpha)]
    pub alpha: f64,
    /// Peak learning rate. Not a flag here: `tinyrank distill` takes `--lr` itself, since its
    /// default depends on the recipe it picks for the device.
    #[arg(skip = DEFAULTS.learning_rate)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = DEFAULTS.weight_decay)]
    pub weight_decay: f64,
    /// Fraction of the steps of linear warm-up.
    #[arg(long, default_value_t = DEFAULTS.warmup)]
    pub warmup: f64,
    /// Global gradient-norm clip; 0 disables.
    #[arg(long, default_value_t = DEFAULTS.max_grad_norm)]
    pub max_grad_norm: f64,
    /// Pairs per micro-batch.
    #[arg(long, default_value_t = DEFAULTS.batch_size)]
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = DEFAULTS.accumulation)]
    pub accumulation: usize,
    /// Candidates of one query per group (margin-mse, listwise, fine-tune).
    #[arg(long, default_value_t = DEFAULTS.group_size)]
    pub group_size: usize,
    /// Pair length in tokens for training and this command's evaluation; half of rerank's
    /// 256, since training costs grow with length and DL's BM25 pairs average about 90 tokens.
    #[arg(long, default_value_t = DEFAULTS.max_len)]
    pub max_len: usize,
    /// Pad each batch to a multiple of this many tokens (at most --max-len); 1 pads it to its
    /// longest pair. A GPU build with burn's fusion compiles kernels per shape, and a few
    /// lengths let them be reused. Padding counts in the intermediate terms' means, as in
    /// TinyBERT, so this changes the loss a little.
    #[arg(long, default_value_t = DEFAULTS.pad_to)]
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub pad_to: usize,
    /// Run the teacher's forward in f16 (GPU adapters with `shader-f16`), its outputs read
    /// into the f32 losses; the student trains in f32. A reduced-precision path for the half
    /// of a step that the teacher's forward takes.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub teacher_f16: bool,
    /// Optimiser steps; set from --steps or --epochs.
    #[arg(skip = DEFAULTS.steps)]
    pub steps: usize,
    #[arg(long, default_value_t = DEFAULTS.seed)]
    pub seed: u64,
    /// TinyBERT: the fraction of steps spent on its first (intermediate) step.
    #[arg(long, default_value_t = DEFAULTS.tinybert_split)]
    pub tinybert_split: f64,
    /// attention=1,3,5;hidden=0,2,4,6 (default: the paper's uniform map).
    #[arg(long)]
    pub layer_map: Option<LayerMap>,
    /// Per-term weights, e.g. attention=0.1,hidden=1,soft=1,hard=1 (unnamed terms keep 1; the
    /// default is the method's plain sum).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_weights: Option<TermWeights>,
    /// Divide each term by its value at its first step, so that every term starts at 1 (times
    /// its weight) and none dominates the gradient clipping.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub balance_terms: bool,
    /// Leave out the units (pairs, or groups of one query's candidates) that no weighted term
    /// learns from: for fine-tune with prior=0, groups without a relevant candidate (DL 2022's
    /// queries, pseudo-queries' groups without their source); for labels, unlabelled pairs.
    /// Saves their passes; off by default, so that the runs documented before it reproduce.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_idle: bool,
}

impl TrainConfig {
    pub fn new(method: Method, steps: usize) -> Self {
        Self {
            method,
            steps,
            ..DEFAULTS
        }
    }

    /// Examples consumed by one optimiser step.
    pub fn pairs_per_step(&self) -> usize {
        self.batch_size * self.accumulation
    }

    /// A term's weight from --term-weights (1 when not named).
    pub fn term_weight(&self, term: &str) -> f64 {
        self.term_weights.as_ref().map_or(1.0, |w| w.get(term))
    }

    /// Examples one epoch visits: every one, or with --skip-idle those in units some term
    /// learns from. (Without it, a grouped method's remainders still count, as they did in
    /// every documented run's step count.)
    pub fn examples_per_epoch(&self, examples: &[Example]) -> usize {
        if self.skip_idle {
            units_for(self, examples).len() * self.group()
        } else {
            examples.len()
        }
    }

    /// Steps that `epochs` passes over `examples` take.
    pub fn steps_for_epochs(&self, epochs: f64, examples: usize) -> usize {
        ((epochs * examples as f64) / self.pairs_per_step() as f64).ceil() as usize
    }

    pub(super) fn check(&self) -> Result<(), String> {
        let positive = [
            ("batch size", self.batch_size),
            ("accumulation", self.accumulation),
            ("steps", self.steps),
            ("max length", self.max_len),
            ("pad-to", self.pad_to),
            ("group size", self.group_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.method.grouped() {
            if self.group_size < 2 {
                return Err(format!("{} needs a group size of at least 2", self.method));
            }
            if !self.batch_size.is_multiple_of(self.group_size) {
                return Err(format!(
                    "batch size {} is not a multiple of the group size {}",
                    self.batch_size, self.group_size
                ));
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err("the learning rate must be a positive number".into());
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err("the temperature must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.alpha)
            || !(0.0..1.0).contains(&self.warmup)
            || !(0.0..1.0).contains(&self.tinybert_split)
        {
            return Err("alpha must be in [0, 1], warmup and tinybert split in [0, 1)".into());
        }
        Ok(())
    }

    /// Examples per unit of the data order: a group of one query's candidates, or one.
    pub(super) fn group(&self) -> usize {
        if self.method.grouped() {
            self.group_size
        } else {
            1
        }
    }

    /// First step of TinyBERT's prediction-layer step.
    pub(super) fn split_step(&self) -> usize {
        (self.steps as f64 * self.tinybert_split).round() as usize
    }

    /// Whether `step` trains the attention and hidden-state terms.
    pub(super) fn intermediate_at(&self, step: usize) -> bool {
        match self.method {
            Method::Simplified => true,
            Method::Tinybert => step < self.split_step(),
            _ => false,
        }
    }

    /// Learning rate at `step`: warm-up then linear decay; TinyBERT's first step is constant
    /// and its second step gets a schedule of its own.
    pub(super) fn learning_rate_at(&self, step: usize) -> f64 {
        let schedule = |step: usize, total: usize| {
            let warmup = (self.warmup * total as f64).round() as usize;
            crate::optim::linear_schedule(step, total, warmup, self.learning_rate)
        };
        if self.method == Method::Tinybert {
            let split = self.split_step();
            if step < split {
                return self.learning_rate;
            }
            return schedule(step - split, self.steps - split);
        }
        schedule(step, self.steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_weights_parse_and_refuse_bad_input() {
        let weights: TermWeights = "attention=0.1, soft=2".parse().unwrap();
        assert_eq!(weights.get("attention"), 0.1);
        assert_eq!(weights.get("soft"), 2.0);
        assert_eq!(weights.get("hard"), 1.0);
        assert_eq!(weights.to_string(), "attention=0.1,soft=2");
        assert!(
            "atention=1"
                .parse::<TermWeights>()
                .unwrap_err()
                .contains("hidden")
        );
        assert!(
            "soft"
                .parse::<TermWeights>()
                .unwrap_err()
                .contains("term=weight")
        );
        assert!("soft=x".parse::<TermWeights>().is_err());
        assert!("soft=-1".parse::<TermWeights>().is_err());
    }

    #[test]
    fn default_configs_serialise_as_before_the_term_options() {
        let json = serde_json::to_value(DEFAULTS).unwrap();
        assert!(json.get("term_weights").is_none() && json.get("balance_terms").is_none());
        let read: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(read, DEFAULTS);
    }

    #[test]
    fn methods_parse_and_print() {
        for &m in Method::value_variants() {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert!("kd".parse::<Method>().unwrap_err().contains("simplified"));
    }

    #[test]
    fn tinybert_runs_its_first_step_at_a_constant_rate() {
        let mut config = TrainConfig::new(Method::Tinybert, 100);
        config.learning_rate = 1.0;
        assert_eq!(config.learning_rate_at(0), 1.0);
        assert_eq!(config.learning_rate_at(49), 1.0);
        assert!((config.learning_rate_at(50) - 0.2).abs() < 1e-12);
        assert!(config.learning_rate_at(99) < 0.03);
    }
}
