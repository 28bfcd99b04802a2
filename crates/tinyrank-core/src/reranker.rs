//! Scoring (query, passage) pairs with a loaded cross-encoder.

use burn::tensor::Device;

use crate::Error;
use crate::checkpoint::{Checkpoint, CheckpointFiles};
use crate::device::SelectedDevice;
use crate::engine::{Engine, EngineKind, Precision};
use crate::model::{CrossEncoder, Padding};
use crate::tokenizer::{Cut, Encoded, PairTokenizer, Truncation};

pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Every scoring entry point (native, documents, the browser) refuses an empty query.
pub fn check_query(query: &str) -> Result<(), Error> {
    if query.trim().is_empty() {
        return Err(Error::Input("the query is empty".into()));
    }
    Ok(())
}

/// A cross-encoder ready to score: the one scoring entry point of every command, the server
/// and the browser. Pairs are sorted by length before batching so that a batch holds pairs of
/// similar length and padding stays small; scores come back in input order.
///
/// The engine (see [`crate::engine`]) is chosen once, when the reranker is built, from the
/// selected device and precision.
pub struct Reranker {
    model: CrossEncoder,
    pub tokenizer: PairTokenizer,
    pub device: Device,
    batch_size: usize,
    /// How [`Reranker::encode`] cuts pairs; [`Reranker::encode_with`] takes one per call.
    cut: Cut,
    /// Burn's batches are padded to a multiple of this many tokens (length buckets).
    pad_to: usize,
    kind: EngineKind,
    engine: Engine,
}

impl std::fmt::Debug for Reranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reranker")
            .field("engine", &self.kind)
            .field("device", &self.device)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl Reranker {
    /// A reranker on `device` with the engine [`EngineKind::choose`] picks for it.
    pub fn new(
        model: CrossEncoder,
        tokenizer: PairTokenizer,
        device: &SelectedDevice,
        precision: Precision,
    ) -> Result<Self, Error> {
        let kind = EngineKind::choose(device.kind, precision)?;
        Self::with_engine(model, tokenizer, device.device.clone(), kind)
    }

    /// A reranker with a given engine (benchmarks and tests compare the engines this way).
    pub fn with_engine(
        model: CrossEncoder,
        tokenizer: PairTokenizer,
        device: Device,
        kind: EngineKind,
    ) -> Result<Self, Error> {
        let engine = Engine::build(kind, &model, &device)?;
        Ok(Self {
            model,
            tokenizer,
            device,
            batch_size: DEFAULT_BATCH_SIZE,
            cut: Cut::default(),
            pad_to: 1,
            kind,
            engine,
        })
    }

    /// The burn model (read-only: the fused engine holds a copy of its weights).
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }

    /// The engine that scores.
    pub fn engine(&self) -> EngineKind {
        self.kind
    }

    /// Builds a reranker from checkpoint files already in memory (the browser's path).
    pub fn from_files(
        files: CheckpointFiles,
        device: &SelectedDevice,
        precision: Precision,
    ) -> Result<Self, Error> {
        let checkpoint = files.build(&device.device, false)?;
        Self::from_checkpoint(checkpoint, device, precision)
    }

    /// Loads a Hugging Face cross-encoder directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        dir: &std::path::Path,
        device: &SelectedDevice,
        precision: Precision,
    ) -> Result<Self, Error> {
        let checkpoint = Checkpoint::load(dir, &device.device)?;
        Self::from_checkpoint(checkpoint, device, precision)
    }

    pub fn from_checkpoint(
        checkpoint: Checkpoint,
        device: &SelectedDevice,
        precision: Precision,
    ) -> Result<Self, Error> {
        Self::new(checkpoint.model, checkpoint.tokenizer, device, precision)
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

    /// Sets the maximum pair length (special tokens included) of [`Reranker::encode`].
    pub fn set_max_len(&mut self, max_len: usize) -> Result<(), Error> {
        self.model.check_max_len(max_len)?;
        self.cut = Cut::new(max_len)?.with_truncation(self.cut.truncation);
        Ok(())
    }

    /// Pads burn's batches to a multiple of `multiple` tokens, at most the max length: a few
    /// batch shapes, which a GPU build with burn's fusion compiles once; 1 pads to the longest
    /// pair. The fused CPU engine does not pad, and scores do not change.
    pub fn set_pad_to(&mut self, multiple: usize) -> Result<(), Error> {
        if multiple == 0 {
            return Err(Error::Input("pad-to must be at least 1 token".into()));
        }
        self.pad_to = multiple;
        Ok(())
    }

    pub fn set_truncation(&mut self, truncation: Truncation) {
        self.cut = self.cut.with_truncation(truncation);
    }

    pub fn cut(&self) -> Cut {
        self.cut
    }

    /// Tokenises `passages` against `query` with the reranker's cut; rejects an empty query.
    pub fn encode(&self, query: &str, passages: &[&str]) -> Result<Vec<Encoded>, Error> {
        self.encode_with(query, passages, self.cut)
    }

    /// [`Reranker::encode`] with a cut of this call's own.
    pub fn encode_with(
        &self,
        query: &str,
        passages: &[&str],
        cut: Cut,
    ) -> Result<Vec<Encoded>, Error> {
        check_query(query)?;
        self.model.check_max_len(cut.max_len)?;
        self.tokenizer.encode_pairs(query, passages, cut)
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
    /// CPU path and padded to the longest pair (or its length bucket) on burn. Callers that form their own batches
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
        self.engine
            .score(&self.model, &self.device, self.burn_padding(), pairs)
            .await
    }

    /// How the engine pads a batch (what a token budget must count); `None` for the fused
    /// engine, which does not pad.
    pub fn padding(&self) -> Option<Padding> {
        self.kind.pads().then(|| self.burn_padding())
    }

    fn burn_padding(&self) -> Padding {
        Padding {
            pad_id: self.tokenizer.pad_id(),
            multiple: self.pad_to,
            cap: self.cut.max_len,
        }
    }
}
