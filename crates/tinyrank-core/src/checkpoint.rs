//! A Hugging Face checkpoint directory: `config.json`, `model.safetensors` and the tokenizer
//! (`tokenizer.json`, or `vocab.txt` with `tokenizer_config.json`).

use burn::nn::Linear;
use burn::tensor::Device;

use crate::Error;
use crate::config::BertConfig;
use crate::model::CrossEncoder;
use crate::tokenizer::PairTokenizer;
use crate::weights;

/// Tokenizer files carried along so that a checkpoint we write is complete.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The raw files of a checkpoint, as read from disk or fetched by a browser.
#[derive(Debug, Clone, Default)]
pub struct CheckpointFiles {
    pub config_json: String,
    pub weights: Vec<u8>,
    /// (file name, bytes) for whichever of [`TOKENIZER_FILES`] exist.
    pub tokenizer_files: Vec<(String, Vec<u8>)>,
    /// Where the files came from, for messages.
    pub origin: String,
}

pub struct Checkpoint {
    pub config: BertConfig,
    pub model: CrossEncoder,
    /// The student-to-teacher projection of a distillation checkpoint.
    pub fit_dense: Option<Linear>,
    pub tokenizer: PairTokenizer,
    pub tokenizer_files: Vec<(String, Vec<u8>)>,
    /// Head tensors (pooler, classifier) that the file lacked and that were initialised.
    pub initialised: Vec<String>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("config", &self.config)
            .field("initialised", &self.initialised)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Keeps only the encoder layers listed in `keep` (in that order), with the embeddings,
    /// pooler and head: a student initialised from some of a teacher's layers.
    pub fn select_layers(mut self, keep: &[usize]) -> Result<Self, Error> {
        let available = self.model.layers.len();
        if keep.is_empty() {
            return Err(Error::Input("a student needs at least one layer".into()));
        }
        if let Some(bad) = keep.iter().find(|&&i| i >= available) {
            return Err(Error::Input(format!(
                "layer {bad} does not exist: the model has layers 0..{}",
                available - 1
            )));
        }
        let mut slots: Vec<Option<crate::model::EncoderLayer>> =
            self.model.layers.drain(..).map(Some).collect();
        for &i in keep {
            let layer = match slots[i].take() {
                Some(layer) => layer,
                None => return Err(Error::Input(format!("layer {i} is listed twice"))),
            };
            self.model.layers.push(layer);
        }
        self.config.num_hidden_layers = keep.len();
        Ok(self)
    }

    /// A freshly initialised model of `config`'s shape that reuses this checkpoint's tokenizer.
    pub fn fresh_with_config(&self, config: BertConfig, device: &Device) -> Result<Self, Error> {
        if config.vocab_size < self.tokenizer.vocab_size() {
            return Err(Error::Input(format!(
                "vocab_size {} is smaller than the tokenizer's {} tokens",
                config.vocab_size,
                self.tokenizer.vocab_size()
            )));
        }
        Ok(Checkpoint {
            model: weights::random_model(&config, device),
            config,
            fit_dense: None,
            tokenizer: self.tokenizer.clone(),
            tokenizer_files: self.tokenizer_files.clone(),
            initialised: Vec::new(),
        })
    }
}

impl CheckpointFiles {
    fn tokenizer_file(&self, name: &str) -> Option<&[u8]> {
        self.tokenizer_files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Builds the tokenizer: tokenizer.json if present, else WordPiece from vocab.txt.
    pub fn tokenizer(&self) -> Result<PairTokenizer, Error> {
        let at = |name: &str| format!("{}/{name}", self.origin);
        if let Some(json) = self.tokenizer_file("tokenizer.json") {
            return PairTokenizer::from_json(json, &at("tokenizer.json"));
        }
        let Some(vocab) = self.tokenizer_file("vocab.txt") else {
            return Err(Error::Tokenizer {
                file: self.origin.clone(),
                message: "no tokenizer.json or vocab.txt".into(),
            });
        };
        let text = |name: &str, bytes: &[u8]| {
            String::from_utf8(bytes.to_vec()).map_err(|_| Error::Tokenizer {
                file: at(name),
                message: "not UTF-8 text".into(),
            })
        };
        let vocab = text("vocab.txt", vocab)?;
        let config = self
            .tokenizer_file("tokenizer_config.json")
            .map(|b| text("tokenizer_config.json", b))
            .transpose()?;
        PairTokenizer::from_vocab(&vocab, config.as_deref(), &at("vocab.txt"))
    }

    /// Parses and builds everything. `allow_missing_head` lets a bare encoder (`BertModel`)
    /// load with a freshly initialised pooler and classifier.
    pub fn build(self, device: &Device, allow_missing_head: bool) -> Result<Checkpoint, Error> {
        let config =
            BertConfig::from_json(&self.config_json, &format!("{}/config.json", self.origin))?;
        let tokenizer = self.tokenizer()?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::Tokenizer {
                file: self.origin.clone(),
                message: format!(
                    "the tokenizer has {} tokens but config.json's vocab_size (the embedding rows) is {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let weights_file = format!("{}/model.safetensors", self.origin);
        let (model, fit_dense, initialised) = weights::load_from_bytes(
            &config,
            &self.weights,
            &weights_file,
            device,
            allow_missing_head,
        )?;
        Ok(Checkpoint {
            config,
            model,
            fit_dense,
            tokenizer,
            tokenizer_files: self.tokenizer_files,
            initialised,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod fs {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::weights::SaveDtype;

    impl CheckpointFiles {
        /// Reads a checkpoint directory.
        pub fn read(dir: &Path) -> Result<Self, Error> {
            if !dir.is_dir() {
                return Err(Error::io(dir, "no such checkpoint directory"));
            }
            let read = |name: &str| {
                let path = dir.join(name);
                std::fs::read(&path).map_err(|e| Error::io(&path, e))
            };
            let config_json = String::from_utf8(read("config.json")?)
                .map_err(|_| Error::io(dir.join("config.json"), "not UTF-8 text"))?;
            let weights = read("model.safetensors")?;
            if weights.is_empty() {
                return Err(Error::io(
                    dir.join("model.safetensors"),
                    "the file is empty",
                ));
            }
            let tokenizer_files = TOKENIZER_FILES
                .iter()
                .filter(|name| dir.join(name).is_file())
                .map(|name| Ok((name.to_string(), read(name)?)))
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(Self {
                config_json,
                weights,
                tokenizer_files,
                origin: dir.display().to_string(),
            })
        }
    }

    impl Checkpoint {
        /// Loads a cross-encoder checkpoint; every tensor must be there.
        pub fn load(dir: &Path, device: &Device) -> Result<Self, Error> {
            CheckpointFiles::read(dir)?.build(device, false)
        }

        /// Loads a checkpoint that may be a bare encoder: a missing pooler or classifier is
        /// initialised (see [`Checkpoint::initialised`]).
        pub fn load_encoder(dir: &Path, device: &Device) -> Result<Self, Error> {
            CheckpointFiles::read(dir)?.build(device, true)
        }

        /// Writes this checkpoint (see [`save_checkpoint`]).
        pub fn save(&self, dir: &Path, dtype: SaveDtype) -> Result<(), Error> {
            save_checkpoint(
                dir,
                &self.config,
                &self.model,
                self.fit_dense.as_ref(),
                &self.tokenizer_files,
                dtype,
            )
        }
    }

    /// Writes an HF `BertForSequenceClassification` checkpoint that transformers loads. The
    /// directory is assembled beside `dir` and swapped in whole, so an interrupted write never
    /// leaves a half-written checkpoint where a good one was.
    pub fn save_checkpoint(
        dir: &Path,
        config: &BertConfig,
        model: &CrossEncoder,
        fit_dense: Option<&Linear>,
        tokenizer_files: &[(String, Vec<u8>)],
        dtype: SaveDtype,
    ) -> Result<(), Error> {
        let files = checkpoint_files(config, model, fit_dense, tokenizer_files, dtype)?;
        write_dir_atomically(dir, &files)
    }

    /// The (file name, bytes) of an HF checkpoint, for callers that add files of their own
    /// before writing the directory with [`write_dir_atomically`].
    pub fn checkpoint_files(
        config: &BertConfig,
        model: &CrossEncoder,
        fit_dense: Option<&Linear>,
        tokenizer_files: &[(String, Vec<u8>)],
        dtype: SaveDtype,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut config = config.clone();
        config.num_hidden_layers = model.num_layers();
        config.set_num_labels(model.num_labels());
        config.extra.insert(
            "torch_dtype".into(),
            match dtype {
                SaveDtype::F32 => "float32",
                SaveDtype::F16 => "float16",
            }
            .into(),
        );
        let tensors = weights::hf_tensors(model, fit_dense, dtype)?;
        let bytes = weights::serialize(&tensors, dtype)?;
        let mut files: Vec<(String, Vec<u8>)> = vec![
            ("config.json".into(), config.to_json().into_bytes()),
            ("model.safetensors".into(), bytes),
        ];
        files.extend(tokenizer_files.iter().cloned());
        Ok(files)
    }

    fn sibling(dir: &Path, suffix: &str) -> PathBuf {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        dir.with_file_name(format!(".{name}.{suffix}"))
    }

    /// Writes `files` into a fresh directory next to `dir`, syncs them, then replaces `dir`.
    pub fn write_dir_atomically(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), Error> {
        use std::io::Write;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let staging = sibling(dir, "partial");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        for (name, bytes) in files {
            let path = staging.join(name);
            let mut file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            file.write_all(bytes)
                .and_then(|_| file.sync_all())
                .map_err(|e| {
                    let _ = std::fs::remove_dir_all(&staging);
                    Error::io(&path, e)
                })?;
        }
        let previous = sibling(dir, "previous");
        let _ = std::fs::remove_dir_all(&previous);
        if dir.exists() {
            std::fs::rename(dir, &previous).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::rename(&staging, dir).map_err(|e| {
            // Put the good checkpoint back before reporting.
            let _ = std::fs::rename(&previous, dir);
            Error::io(dir, e)
        })?;
        let _ = std::fs::remove_dir_all(&previous);
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use fs::{checkpoint_files, save_checkpoint, write_dir_atomically};
