//! tinyrank-core: a BERT cross-encoder on burn that loads and writes Hugging Face checkpoints,
//! tokenises query-passage pairs and scores them, on CPUs, GPUs and in the browser (wasm32).

pub mod bi_encoder;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod engine;
mod fast;
pub mod model;
mod params;
pub mod passages;
pub mod reranker;
pub mod rules;
#[cfg(not(target_arch = "wasm32"))]
mod soup;
pub mod tokenizer;
pub mod weights;

pub use bi_encoder::BiEncoder;
pub use burn;
pub use checkpoint::Checkpoint;
pub use config::BertConfig;
pub use device::{BackendKind, DeviceChoice, SelectedDevice, select_device};
pub use engine::{EngineKind, Precision, check_f16};
pub use fast::FastCrossEncoder;
pub use model::{Batch, CrossEncoder, Output, Padding, Trace};
pub use passages::{
    Aggregation, DocumentEncoder, DocumentPairs, TitleSource, Windows, WordWindows,
};
pub use reranker::Reranker;
pub use tokenizer::{Cut, DEFAULT_MAX_LEN, Encoded, PairTokenizer, Tokens, Truncation};
pub use weights::SaveDtype;

/// Everything that can go wrong in tinyrank-core. Each message names the file or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    #[error("{file}: {message}")]
    Weights { file: String, message: String },
    #[error("{file}: {message}")]
    Tokenizer { file: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Device(String),
    #[error("{0}")]
    Input(String),
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, err: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            message: err.to_string(),
        }
    }
}
