//! Query-passage pair tokenisation: `[CLS] query [SEP] passage [SEP]`, token types 0/1.
//!
//! The tokenizer comes from a checkpoint's `tokenizer.json`, or is built as BERT's WordPiece
//! from `vocab.txt` (+ `tokenizer_config.json`) when there is none. Padding and truncation baked
//! into tokenizer.json are replaced: batches are padded by the model code and truncation is
//! ours (`max_len`, longest-first by default, as transformers does for pairs).

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::Error;

/// How a pair longer than `max_len` is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Remove tokens from the longer of the two texts, one at a time (transformers' default).
    #[default]
    LongestFirst,
    /// Cut only the passage; the query is kept whole unless it alone is too long, in which case
    /// the pair falls back to longest-first.
    OnlyPassage,
}

/// One tokenised pair, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

#[derive(Clone)]
pub struct PairTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    max_len: usize,
    truncation: Truncation,
}

impl std::fmt::Debug for PairTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_len", &self.max_len)
            .field("truncation", &self.truncation)
            .finish()
    }
}

/// The BERT options transformers keeps in `tokenizer_config.json`.
#[derive(Debug, Default, serde::Deserialize)]
struct TokenizerConfig {
    do_lower_case: Option<bool>,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: Option<bool>,
}

impl PairTokenizer {
    /// From the text of a `tokenizer.json`; `origin` names the file in errors.
    pub fn from_json(json: &[u8], origin: &str) -> Result<Self, Error> {
        let inner = Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer {
            file: origin.into(),
            message: e.to_string(),
        })?;
        Self::wrap(inner, origin)
    }

    /// BERT WordPiece from the text of `vocab.txt` (one token a line, id = line number) and,
    /// optionally, of `tokenizer_config.json`.
    pub fn from_vocab(vocab: &str, config_json: Option<&str>, origin: &str) -> Result<Self, Error> {
        let fail = |message: String| Error::Tokenizer {
            file: origin.into(),
            message,
        };
        let config: TokenizerConfig = match config_json {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| fail(format!("tokenizer_config.json: {e}")))?,
            None => TokenizerConfig::default(),
        };
        let vocab: ahash::AHashMap<String, u32> = vocab
            .lines()
            .enumerate()
            .map(|(i, token)| (token.trim_end_matches('\r').to_string(), i as u32))
            .collect();
        if vocab.is_empty() {
            return Err(fail("the vocabulary is empty".into()));
        }
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| fail(format!("the vocabulary has no {token} token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        id("[UNK]")?;
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(
                true,
                config.tokenize_chinese_chars.unwrap_or(true),
                config.strip_accents,
                config.do_lower_case.unwrap_or(true),
            )))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )))
            .with_decoder(Some(WordPieceDecoder::default()));
        Self::wrap(inner, origin)
    }

    fn wrap(mut inner: Tokenizer, origin: &str) -> Result<Self, Error> {
        inner.with_padding(None);
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        let mut tokenizer = Self {
            inner,
            pad_id,
            max_len: 256,
            truncation: Truncation::default(),
        };
        tokenizer.set_max_len(256).map_err(|e| Error::Tokenizer {
            file: origin.into(),
            message: e.to_string(),
        })?;
        Ok(tokenizer)
    }

    /// Sets the maximum pair length in tokens, special tokens included.
    pub fn set_max_len(&mut self, max_len: usize) -> Result<(), Error> {
        if max_len < 4 {
            return Err(Error::Input(format!(
                "max length {max_len} is too short for [CLS] query [SEP] passage [SEP]"
            )));
        }
        self.max_len = max_len;
        self.apply_truncation(self.truncation)
    }

    pub fn set_truncation(&mut self, truncation: Truncation) -> Result<(), Error> {
        self.truncation = truncation;
        self.apply_truncation(truncation)
    }

    fn apply_truncation(&mut self, truncation: Truncation) -> Result<(), Error> {
        let strategy = match truncation {
            Truncation::LongestFirst => TruncationStrategy::LongestFirst,
            Truncation::OnlyPassage => TruncationStrategy::OnlySecond,
        };
        self.inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: self.max_len,
                strategy,
                stride: 0,
            }))
            .map(|_| ())
            .map_err(|e| Error::Input(format!("cannot set truncation: {e}")))
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Size of the vocabulary including added tokens: the highest id it can emit, plus one.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenises one (query, passage) pair.
    pub fn encode_pair(&self, query: &str, passage: &str) -> Result<Encoded, Error> {
        let encoding = match self.inner.encode_fast((query, passage), true) {
            Ok(encoding) => encoding,
            // Only-passage truncation cannot fit a query that alone exceeds max_len.
            Err(_) if self.truncation == Truncation::OnlyPassage => {
                let mut fallback = self.clone();
                fallback.set_truncation(Truncation::LongestFirst)?;
                return fallback.encode_pair(query, passage);
            }
            Err(e) => return Err(Error::Input(format!("cannot tokenise pair: {e}"))),
        };
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    /// Tokenises a query against many passages (in parallel on native targets).
    pub fn encode_pairs(&self, query: &str, passages: &[&str]) -> Result<Vec<Encoded>, Error> {
        #[cfg(not(target_arch = "wasm32"))]
        if self.truncation == Truncation::LongestFirst {
            let inputs: Vec<tokenizers::EncodeInput> =
                passages.iter().map(|p| (query, *p).into()).collect();
            let encodings = self
                .inner
                .encode_batch_fast(inputs, true)
                .map_err(|e| Error::Input(format!("cannot tokenise pairs: {e}")))?;
            return Ok(encodings
                .into_iter()
                .map(|e| Encoded {
                    ids: e.get_ids().to_vec(),
                    type_ids: e.get_type_ids().to_vec(),
                })
                .collect());
        }
        passages
            .iter()
            .map(|p| self.encode_pair(query, p))
            .collect()
    }
}
