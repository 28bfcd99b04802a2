//! Scoring (query, passage) pairs with a loaded cross-encoder.

use burn::tensor::Device;

use crate::Error;
use crate::checkpoint::{Checkpoint, CheckpointFiles};
#[cfg(not(target_arch = "wasm32"))]
use crate::fast::{FastCrossEncoder, Precision};
use crate::model::{Batch, CrossEncoder, Trace};
use crate::tokenizer::{Encoded, PairTokenizer};

pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Every scoring entry point (native, documents, the browser) refuses an empty query.
pub fn check_query(query: &str) -> Result<(), Error> {
    if query.trim().is_empty() {
        return Err(Error::Input("the query is empty".into()));
    }
    Ok(())
}

/// A cross-encoder ready to score. Pairs are sorted by length before batching so that a batch
/// holds pairs of similar length and padding stays small; scores come back in input order.
///
/// On burn's CPU device (native builds) scoring goes through [`FastCrossEncoder`], a fused,
/// unpadded copy of the model's forward pass; everywhere else through the burn model.
#[derive(Debug)]
pub struct Reranker {
    model: CrossEncoder,
    pub tokenizer: PairTokenizer,
    pub device: Device,
    batch_size: usize,
    #[cfg(not(target_arch = "wasm32"))]
    fast: Option<FastCrossEncoder>,
}

impl Reranker {
    pub fn new(model: CrossEncoder, tokenizer: PairTokenizer, device: Device) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        let fast = (device == Device::flex())
            .then(|| FastCrossEncoder::from_model(&model, Precision::F32));
        Self {
            model,
            tokenizer,
            device,
            batch_size: DEFAULT_BATCH_SIZE,
            #[cfg(not(target_arch = "wasm32"))]
            fast,
        }
    }

    /// The burn model (read-only: the CPU fast path holds a copy of its weights).
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }

    /// Scores through the burn model even on the CPU (to compare with the fast path).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn without_fast_path(mut self) -> Self {
        self.fast = None;
        self
    }

    /// Runs the encoder layers' projections in 8-bit integers or in f32 (the default). Only the
    /// fused CPU path has int8.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), Error> {
        match &self.fast {
            Some(fast) if fast.precision() == precision => {}
            Some(_) => self.fast = Some(FastCrossEncoder::from_model(&self.model, precision)),
            None if precision == Precision::F32 => {}
            None => {
                return Err(Error::Input(
                    "int8 scoring runs on the CPU only (--device cpu)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether scoring takes the fused CPU path.
    pub fn uses_fast_path(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        return self.fast.is_some();
        #[cfg(target_arch = "wasm32")]
        return false;
    }

    /// Builds a reranker from checkpoint files already in memory (the browser's path).
    pub fn from_files(files: CheckpointFiles, device: &Device) -> Result<Self, Error> {
        let checkpoint = files.build(device, false)?;
        Ok(Self::new(
            checkpoint.model,
            checkpoint.tokenizer,
            device.clone(),
        ))
    }

    /// Loads a Hugging Face cross-encoder directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path, device: &Device) -> Result<Self, Error> {
        let checkpoint = Checkpoint::load(dir, device)?;
        Ok(Self::new(
            checkpoint.model,
            checkpoint.tokenizer,
            device.clone(),
        ))
    }

    pub fn from_checkpoint(checkpoint: Checkpoint, device: &Device) -> Self {
        Self::new(checkpoint.model, checkpoint.tokenizer, device.clone())
    }

    pub fn set_batch_size(&mut self, batch_size: usize) -> Result<(), Error> {
        if batch_size == 0 {
            return Err(Error::Input("batch size must be at least 1".into()));
        }
        self.batch_size = batch_size;
        Ok(())
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Sets the maximum pair length (special tokens included).
    pub fn set_max_len(&mut self, max_len: usize) -> Result<(), Error> {
        self.model.check_max_len(max_len)?;
        self.tokenizer.set_max_len(max_len)
    }

    /// Tokenises `passages` against `query`; rejects an empty query.
    pub fn encode(&self, query: &str, passages: &[&str]) -> Result<Vec<Encoded>, Error> {
        check_query(query)?;
        self.tokenizer.encode_pairs(query, passages)
    }

    /// Ranking scores (higher is more relevant) for each passage, in input order.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, Error> {
        futures_lite::future::block_on(self.score_async(query, passages))
    }

    /// Like [`Reranker::score`]; the only form available on WebGPU, where reads are async.
    pub async fn score_async(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, Error> {
        let encoded = self.encode(query, passages)?;
        self.score_encoded_async(&encoded, |_| {}).await
    }

    /// Scores already tokenised pairs; `progress` is told how many pairs each batch finished.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn score_encoded(
        &self,
        encoded: &[Encoded],
        progress: impl FnMut(usize),
    ) -> Result<Vec<f32>, Error> {
        futures_lite::future::block_on(self.score_encoded_async(encoded, progress))
    }

    pub async fn score_encoded_async(
        &self,
        encoded: &[Encoded],
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<f32>, Error> {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut scores = vec![0.0f32; encoded.len()];
        for chunk in order.chunks(self.batch_size) {
            let rows: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            for (&i, value) in chunk.iter().zip(self.score_batch_async(&rows).await?) {
                scores[i] = value;
            }
            progress(chunk.len());
        }
        Ok(scores)
    }

    /// Scores `pairs` as one batch, in their order: one forward pass, unpadded on the fused
    /// CPU path and padded to the longest pair on burn. Callers that form their own batches
    /// (the HTTP server's token budget) use this; the others go through the length-sorted
    /// [`Reranker::score_encoded`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn score_batch(&self, pairs: &[&Encoded]) -> Result<Vec<f32>, Error> {
        futures_lite::future::block_on(self.score_batch_async(pairs))
    }

    pub async fn score_batch_async(&self, pairs: &[&Encoded]) -> Result<Vec<f32>, Error> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(fast) = &self.fast {
            return Ok(fast.score(pairs));
        }
        let batch =
            Batch::from_encoded(pairs.iter().copied(), self.tokenizer.pad_id(), &self.device);
        let scores = self
            .model
            .forward(&batch, Trace::default())
            .ranking_scores();
        let data = scores
            .into_data_async()
            .await
            .map_err(|e| Error::Device(format!("reading scores from the device failed: {e:?}")))?;
        data.try_into_vec::<f32>()
            .map_err(|e| Error::Device(format!("unexpected score data: {e:?}")))
    }
}
