//! Query-passage pair tokenisation: `[CLS] query [SEP] passage [SEP]`, token types 0/1.
//!
//! The tokenizer comes from a checkpoint's `tokenizer.json`, or is built as BERT's WordPiece
//! from `vocab.txt` (+ `tokenizer_config.json`) when there is none. Padding and truncation baked
//! into tokenizer.json are dropped: batches are padded by the model code, and each text is
//! tokenised whole and then cut by the caller's [`Cut`] (longest-first by default, as
//! transformers truncates pairs), so the tokenizer holds no per-call state.

use tokenizers::Tokenizer;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;

use crate::Error;

/// The pair length (special tokens included) used unless a caller sets another: the paper's.
pub const DEFAULT_MAX_LEN: usize = 256;

/// Which text of a pair longer than its [`Cut::max_len`] gives way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Remove tokens from the longer of the two texts, one at a time (transformers' default).
    #[default]
    LongestFirst,
    /// Cut only the passage; the query is kept whole unless it alone is too long, in which case
    /// the pair falls back to longest-first.
    OnlyPassage,
}

/// How a pair is cut: its length limit (special tokens included) and which text gives way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub max_len: usize,
    pub truncation: Truncation,
}

impl Default for Cut {
    fn default() -> Self {
        Self {
            max_len: DEFAULT_MAX_LEN,
            truncation: Truncation::default(),
        }
    }
}

impl Cut {
    /// Longest-first at `max_len`; refuses a length with no room for a passage.
    pub fn new(max_len: usize) -> Result<Self, Error> {
        if max_len < 4 {
            return Err(Error::Input(format!(
                "max length {max_len} is too short for [CLS] query [SEP] passage [SEP]"
            )));
        }
        Ok(Self {
            max_len,
            truncation: Truncation::default(),
        })
    }

    pub fn with_truncation(self, truncation: Truncation) -> Self {
        Self { truncation, ..self }
    }

    /// The tokens left for query and passage after `[CLS]`, `[SEP]`, `[SEP]`.
    fn budget(self) -> usize {
        self.max_len.saturating_sub(3)
    }
}

/// One text tokenised alone, without special tokens: the part of a pair that can be tokenised
/// once and joined to many queries (see [`PairTokenizer::join`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// Whether each token begins a word (false for WordPiece continuations such as `##ing`), so
    /// that windows can start and end between words.
    pub word_start: Vec<bool>,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// One tokenised pair, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// A BERT tokenizer for `[CLS] query [SEP] passage [SEP]` pairs; read-only once built.
#[derive(Clone)]
pub struct PairTokenizer {
    /// Without padding or truncation: texts are tokenised whole, pairs cut by [`Cut`].
    inner: Tokenizer,
    pad_id: u32,
    cls_id: u32,
    sep_id: u32,
}

impl std::fmt::Debug for PairTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairTokenizer")
            .field("vocab_size", &self.vocab_size())
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
        inner.with_truncation(None).map_err(|e| Error::Tokenizer {
            file: origin.into(),
            message: e.to_string(),
        })?;
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        let special = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| Error::Tokenizer {
                file: origin.into(),
                message: format!("a BERT tokenizer needs a {token} token and this one has none"),
            })
        };
        let (cls_id, sep_id) = (special("[CLS]")?, special("[SEP]")?);
        Ok(Self {
            inner,
            pad_id,
            cls_id,
            sep_id,
        })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Size of the vocabulary including added tokens: the highest id it can emit, plus one.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The vocabulary's token `id`, as the vocabulary spells it (`##`-prefixed for a word piece).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Tokenises one (query, passage) pair, cut by `cut`.
    pub fn encode_pair(&self, query: &str, passage: &str, cut: Cut) -> Result<Encoded, Error> {
        let [query, passage] = <[Tokens; 2]>::try_from(self.tokenize(&[query, passage])?)
            .map_err(|_| Error::Input("the tokenizer lost a text".into()))?;
        Ok(self.join(&query.ids, &passage.ids, cut))
    }

    /// Tokenises texts alone, whole (no special tokens, no truncation), in parallel on native
    /// targets.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>, Error> {
        let tokens = |e: &tokenizers::Encoding| {
            let words = e.get_word_ids();
            Tokens {
                ids: e.get_ids().to_vec(),
                word_start: (0..words.len())
                    .map(|i| i == 0 || words[i].is_none() || words[i] != words[i - 1])
                    .collect(),
            }
        };
        let fail = |e: tokenizers::Error| Error::Input(format!("cannot tokenise text: {e}"));
        #[cfg(not(target_arch = "wasm32"))]
        {
            let inputs: Vec<tokenizers::EncodeInput> = texts.iter().map(|&t| t.into()).collect();
            let encodings = self.inner.encode_batch_fast(inputs, false).map_err(fail)?;
            Ok(encodings.iter().map(tokens).collect())
        }
        #[cfg(target_arch = "wasm32")]
        texts
            .iter()
            .map(|&t| self.inner.encode_fast(t, false).map(|e| tokens(&e)))
            .collect::<Result<_, _>>()
            .map_err(fail)
    }

    /// `[CLS] text [SEP]` for each text, cut to `max_len` tokens: single sequences, as a
    /// bi-encoder embeds queries and passages.
    pub fn encode_texts(&self, texts: &[&str], max_len: usize) -> Result<Vec<Encoded>, Error> {
        if max_len < 3 {
            return Err(Error::Input(format!(
                "max length {max_len} is too short for [CLS] text [SEP]"
            )));
        }
        Ok(self
            .tokenize(texts)?
            .into_iter()
            .map(|text| {
                let kept = text.ids.len().min(max_len - 2);
                let mut ids = Vec::with_capacity(kept + 2);
                ids.push(self.cls_id);
                ids.extend_from_slice(&text.ids[..kept]);
                ids.push(self.sep_id);
                let type_ids = vec![0; ids.len()];
                Encoded { ids, type_ids }
            })
            .collect())
    }

    /// `[CLS] query [SEP] passage [SEP]` from texts tokenised alone, cut as the `tokenizers`
    /// crate truncates a pair.
    pub fn join(&self, query: &[u32], passage: &[u32], cut: Cut) -> Encoded {
        let (q, p) = pair_lengths(query.len(), passage.len(), cut);
        let mut ids = Vec::with_capacity(q + p + 3);
        ids.push(self.cls_id);
        ids.extend_from_slice(&query[..q]);
        ids.push(self.sep_id);
        let first = ids.len();
        ids.extend_from_slice(&passage[..p]);
        ids.push(self.sep_id);
        let mut type_ids = vec![0; first];
        type_ids.resize(ids.len(), 1);
        Encoded { ids, type_ids }
    }

    /// Windows over a document's tokens such that each pair `[CLS] query [SEP] title window
    /// [SEP]` fills max_len exactly (the last may be shorter), a new window every `stride`
    /// tokens (at most one window), starting and ending between words where a word boundary is
    /// within reach. A query longer than half of max_len is cut to half; a title to half of
    /// what the query leaves. An empty document has no windows.
    pub fn token_windows(
        &self,
        query: &[u32],
        title: &[u32],
        body: &Tokens,
        stride: usize,
        cut: Cut,
    ) -> Result<Vec<Encoded>, Error> {
        let budget = cut.budget();
        let query = &query[..query.len().min(budget / 2)];
        let room = budget - query.len();
        let title = &title[..title.len().min(room / 2)];
        let window = room - title.len();
        if window == 0 || stride == 0 {
            return Err(Error::Input(format!(
                "token windows need a stride of at least 1 and room for a passage: max length \
                 {} leaves none",
                cut.max_len
            )));
        }
        let stride = stride.min(window);
        let n = body.len();
        let starts_word = |i: usize| i >= n || body.word_start[i];
        let mut out = Vec::new();
        let mut start = 0;
        while start < n {
            let mut end = (start + window).min(n);
            // Cut before a word's continuation pieces, unless the window is one long word.
            if let Some(e) = (start + 1..=end).rev().find(|&e| starts_word(e)) {
                end = e;
            }
            let mut passage = Vec::with_capacity(title.len() + end - start);
            passage.extend_from_slice(title);
            passage.extend_from_slice(&body.ids[start..end]);
            out.push(self.join(query, &passage, cut));
            if end == n {
                break;
            }
            let next = start + stride;
            start = (next..end)
                .find(|&s| starts_word(s))
                .unwrap_or(next.min(end));
        }
        Ok(out)
    }

    /// Tokenises a query against many passages: the query once, the passages in parallel on
    /// native targets, each pair cut by `cut`.
    pub fn encode_pairs(
        &self,
        query: &str,
        passages: &[&str],
        cut: Cut,
    ) -> Result<Vec<Encoded>, Error> {
        let query = self.tokenize(&[query])?.remove(0);
        Ok(self
            .tokenize(passages)?
            .iter()
            .map(|passage| self.join(&query.ids, &passage.ids, cut))
            .collect())
    }
}

/// How many query and passage tokens a pair keeps: the rule of the `tokenizers` crate's
/// truncation (tested against it), so that pairs equal what transformers makes.
fn pair_lengths(query: usize, passage: usize, cut: Cut) -> (usize, usize) {
    let budget = cut.budget();
    if query + passage <= budget {
        return (query, passage);
    }
    if cut.truncation == Truncation::OnlyPassage && query < budget {
        return (query, budget - query);
    }
    // Longest-first: the shorter text stays whole if the longer can make room, else both
    // get half (the second the odd token).
    let (short, long) = (query.min(passage), query.max(passage));
    let (mut short_keep, mut long_keep) = if short > budget {
        (short, short)
    } else {
        (short, long.min(short.max(budget - short)))
    };
    if short_keep + long_keep > budget {
        short_keep = budget / 2;
        long_keep = short_keep + budget % 2;
    }
    if query <= passage {
        (short_keep.min(query), long_keep.min(passage))
    } else {
        (long_keep.min(query), short_keep.min(passage))
    }
}
