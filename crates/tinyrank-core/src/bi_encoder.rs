//! A bi-encoder (sentence-transformers' BERT + mean pooling + L2 normalisation, as
//! all-MiniLM-L6-v2): queries and passages embedded apart, compared by cosine similarity.
//! Distillation uses it to mine hard negatives and as a soft teacher for cross-encoders.
//!
//! It runs on the fused CPU engine (every layer's rows kept, then averaged); the burn model is
//! the definition the tests hold it to.

use crate::engine::Precision;
use crate::fast::FastCrossEncoder;
use crate::{Checkpoint, Error, PairTokenizer};

/// Texts embedded per forward pass: enough rows to keep every core busy.
const TEXTS_PER_BATCH: usize = 64;

/// sentence-transformers' default for all-MiniLM-L6-v2: longer texts are cut.
pub const BI_ENCODER_MAX_LEN: usize = 256;

pub struct BiEncoder {
    engine: FastCrossEncoder,
    tokenizer: PairTokenizer,
    max_len: usize,
}

impl BiEncoder {
    /// Loads an encoder checkpoint (a head, if any, is ignored).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path, max_len: usize) -> Result<Self, Error> {
        let checkpoint = Checkpoint::load_encoder(dir, &burn::tensor::Device::flex())?;
        Self::new(&checkpoint, max_len)
    }

    pub fn new(checkpoint: &Checkpoint, max_len: usize) -> Result<Self, Error> {
        checkpoint.model.check_max_len(max_len)?;
        Ok(Self {
            engine: FastCrossEncoder::from_model(&checkpoint.model, Precision::F32),
            tokenizer: checkpoint.tokenizer.clone(),
            max_len,
        })
    }

    /// Unit-length embeddings of `texts`, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(TEXTS_PER_BATCH) {
            let encoded = self.tokenizer.encode_texts(chunk, self.max_len)?;
            let refs: Vec<_> = encoded.iter().collect();
            out.extend(self.engine.mean_pooled(&refs).into_iter().map(normalised));
        }
        Ok(out)
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// The dot product: the cosine similarity of unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
