//! The Hugging Face `BertConfig` as found in a checkpoint's `config.json`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// Activation of the feed-forward block, as named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU (`erf`), transformers' `gelu`.
    #[serde(rename = "gelu")]
    Gelu,
    /// Tanh-approximated GELU, transformers' `gelu_new` / `gelu_pytorch_tanh`.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

/// The fields of `BertConfig` that shape the network. Unknown fields are kept in `extra`
/// so that a checkpoint we rewrite keeps everything transformers wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_activation() -> Activation {
    Activation::Gelu
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_embedding_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// A config for a fresh BERT of the given shape (vocabulary from `vocab_size`).
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        let mut config = Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: default_position_embedding_type(),
            extra: Map::new(),
        };
        config.set_num_labels(1);
        config
    }

    /// Parses `config.json` text; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, Error> {
        let config: Self = serde_json::from_str(text).map_err(|e| Error::Config {
            file: origin.into(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a BertConfig always serializes")
    }

    /// Checks that the fields describe a BERT tinyrank can build; `origin` names the source.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        let fail = |message: String| {
            Err(Error::Config {
                file: origin.into(),
                message,
            })
        };
        if self.position_embedding_type != "absolute" {
            return fail(format!(
                "position_embedding_type \"{}\" is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return fail(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            return fail(
                "num_hidden_layers, vocab_size and intermediate_size must be positive".into(),
            );
        }
        if let Some(n) = self.extra.get("num_labels").and_then(Value::as_u64)
            && n != self.num_labels() as u64
        {
            return fail(format!(
                "num_labels {n} disagrees with id2label ({} labels)",
                self.num_labels()
            ));
        }
        Ok(())
    }

    /// Number of classifier outputs: transformers derives it from `id2label` (default 2).
    pub fn num_labels(&self) -> usize {
        match self.extra.get("id2label").and_then(Value::as_object) {
            Some(labels) => labels.len(),
            None => self
                .extra
                .get("num_labels")
                .and_then(Value::as_u64)
                .map_or(2, |n| n as usize),
        }
    }

    /// Sets the label count the way transformers writes it, and marks the checkpoint as a
    /// sequence classifier so `AutoModelForSequenceClassification` picks the right class.
    pub fn set_num_labels(&mut self, n: usize) {
        let id2label: Map<String, Value> = (0..n)
            .map(|i| (i.to_string(), Value::from(format!("LABEL_{i}"))))
            .collect();
        let label2id: Map<String, Value> = (0..n)
            .map(|i| (format!("LABEL_{i}"), Value::from(i)))
            .collect();
        self.extra.remove("num_labels");
        self.extra.insert("id2label".into(), id2label.into());
        self.extra.insert("label2id".into(), label2id.into());
        self.extra.insert(
            "architectures".into(),
            vec!["BertForSequenceClassification"].into(),
        );
        self.extra.insert("model_type".into(), "bert".into());
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
