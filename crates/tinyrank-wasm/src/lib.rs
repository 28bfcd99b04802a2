//! WebAssembly bindings of tinyrank-core: a `Reranker` that JavaScript builds from a Hugging Face
//! checkpoint's files (bytes fetched by the JS layer) and asks for scores. Only bindings live
//! here; the model, tokenizer and scoring are tinyrank-core's, the same code the native side runs.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use tinyrank_core::burn::tensor::Device;
use tinyrank_core::checkpoint::CheckpointFiles;
use tinyrank_core::device::{AdapterFacts, choose};
use tinyrank_core::{
    BackendKind, Cut, DeviceChoice, Error as CoreError, Precision, Reranker as CoreReranker,
    SelectedDevice,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

#[wasm_bindgen(start)]
fn start() {
    // A panic becomes a JS exception carrying the Rust message instead of "unreachable".
    console_error_panic_hook::set_once();
}

thread_local! {
    /// burn registers the WebGPU runtime once per page: later rerankers share its device.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The WebGPU device, acquired on first use; an error says why there is none.
async fn webgpu_device() -> Result<Device, String> {
    if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
        return Ok(device);
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("WebGPU is not usable here: {e}"))?;
    WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

/// The precisions the browser offers (the fused CPU engine's; WebGPU scores in f32).
const BROWSER_PRECISIONS: [Precision; 2] = [Precision::F32, Precision::Int8];

fn parse_precision(name: &str) -> Result<Precision, JsValue> {
    BROWSER_PRECISIONS
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            js_error(format!(
                "unknown precision {name:?}: use \"f32\" or \"int8\""
            ))
        })
}

/// Refuses a precision name other than "f32" and "int8", before anything is fetched.
#[wasm_bindgen(js_name = checkPrecision)]
pub fn check_precision(precision: &str) -> Result<(), JsValue> {
    parse_precision(precision).map(drop)
}

/// Refuses a device name that tinyrank-core's policy does not know, before anything is fetched.
#[wasm_bindgen(js_name = checkDevice)]
pub fn check_device(device: &str) -> Result<(), JsValue> {
    device.parse::<DeviceChoice>().map(drop).map_err(js_error)
}

/// What the page told about its WebGPU adapter: "hardware", "software" or "none".
fn adapter_facts(adapter: &str) -> AdapterFacts {
    match adapter {
        "hardware" | "software" => AdapterFacts::Found {
            software: adapter == "software",
            description: format!("WebGPU ({adapter} adapter)"),
        },
        _ => AdapterFacts::Missing("this browser gives WebGPU no adapter".into()),
    }
}

/// "webgpu" or "cpu": where tinyrank-core's device policy puts `device` given the page's
/// adapter, so that JS can start CPU workers before any model is built.
#[wasm_bindgen(js_name = chooseBackend)]
pub fn choose_backend(device: &str, adapter: &str) -> Result<String, JsValue> {
    let request: DeviceChoice = device.parse().map_err(js_error)?;
    let decision = choose(request, &adapter_facts(adapter)).map_err(js_error)?;
    Ok(match decision.kind {
        BackendKind::Gpu => "webgpu",
        BackendKind::Cpu => "cpu",
    }
    .into())
}

/// The device for `request`, by tinyrank-core's policy over what the page told about its
/// adapter. A WebGPU device that fails to start counts as no adapter.
async fn select(request: DeviceChoice, adapter: &str) -> Result<SelectedDevice, CoreError> {
    let decision = choose(request, &adapter_facts(adapter))?;
    if decision.kind == BackendKind::Cpu {
        return Ok(SelectedDevice::cpu(&decision.reason));
    }
    match webgpu_device().await {
        Ok(device) => Ok(SelectedDevice {
            device,
            kind: BackendKind::Gpu,
            software: adapter == "software",
            description: format!("webgpu ({adapter} adapter)"),
        }),
        Err(why) => {
            let decision = choose(request, &AdapterFacts::Missing(why))?;
            Ok(SelectedDevice::cpu(&decision.reason))
        }
    }
}

/// A cross-encoder ready to score in this page.
#[wasm_bindgen]
pub struct Reranker {
    model: Rc<CoreReranker>,
    backend: &'static str,
}

#[wasm_bindgen]
impl Reranker {
    /// Builds a reranker from a checkpoint's files: `config.json` text, `model.safetensors`
    /// bytes (f32, f16 or bf16, read as f32), and the tokenizer file (`tokenizer.json` or
    /// `vocab.txt`, with `tokenizer_config.json` if there is one) by name. `device` is "webgpu",
    /// "cpu" or "auto", decided by tinyrank-core's device policy from `adapter`, what the page
    /// found: "hardware", "software" (a fallback adapter such as SwiftShader) or "none".
    /// `origin` names the files in error messages. `precision` is "f32" or "int8" (the fused
    /// CPU engine's 8-bit projections; CPU only). The weight bytes are consumed: after loading,
    /// the only copies of the weights are the model's.
    #[wasm_bindgen(js_name = fromFiles)]
    #[allow(clippy::too_many_arguments)]
    pub async fn from_files(
        config_json: String,
        weights: Vec<u8>,
        tokenizer_name: String,
        tokenizer: Vec<u8>,
        tokenizer_config: Option<Vec<u8>>,
        device: String,
        adapter: String,
        origin: String,
        precision: String,
    ) -> Result<Reranker, JsValue> {
        let request: DeviceChoice = device.parse().map_err(js_error)?;
        let precision = parse_precision(&precision)?;
        let selected = select(request, &adapter).await.map_err(js_error)?;
        let backend = match selected.kind {
            BackendKind::Gpu => "webgpu",
            BackendKind::Cpu => "cpu",
        };
        let files = CheckpointFiles {
            config_json,
            weights,
            tokenizer_files: std::iter::once((tokenizer_name, tokenizer))
                .chain(tokenizer_config.map(|c| ("tokenizer_config.json".to_string(), c)))
                .collect(),
            origin,
        };
        let model = CoreReranker::from_files(files, &selected, precision).map_err(js_error)?;
        Ok(Reranker {
            model: Rc::new(model),
            backend,
        })
    }

    /// "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.into()
    }

    /// The longest input the model's position embeddings allow.
    #[wasm_bindgen(getter, js_name = maxPositions)]
    pub fn max_positions(&self) -> usize {
        self.model.model().max_positions()
    }

    /// Scores (higher is more relevant) of `passages` for `query`, in input order, as a
    /// Promise of a Float32Array. Pairs longer than `max_length` tokens are truncated; any
    /// number of passages is scored in batches.
    pub fn score(&self, query: String, passages: Vec<String>, max_length: usize) -> Promise {
        let encoded = self.encode(&query, &passages, max_length);
        let model = self.model.clone();
        future_to_promise(async move {
            let encoded = encoded.map_err(js_error)?;
            let scores = model
                .score_encoded_async(&encoded, |_| {})
                .await
                .map_err(js_error)?;
            Ok(js_sys::Float32Array::from(&scores[..]).into())
        })
    }
}

impl Reranker {
    fn encode(
        &self,
        query: &str,
        passages: &[String],
        max_length: usize,
    ) -> Result<Vec<tinyrank_core::Encoded>, CoreError> {
        let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
        self.model.encode_with(query, &refs, Cut::new(max_length)?)
    }
}

/// BM25 over a corpus held in the page (the `bm25` crate's search engine, English stemming and
/// stop words): the first stage the demo reranks.
#[wasm_bindgen]
pub struct Bm25 {
    engine: bm25::SearchEngine<u32>,
    documents: usize,
}

#[wasm_bindgen]
impl Bm25 {
    /// Indexes `documents`; results refer to them by position.
    #[wasm_bindgen(constructor)]
    pub fn new(documents: Vec<String>) -> Bm25 {
        let count = documents.len();
        let engine =
            bm25::SearchEngineBuilder::<u32>::with_corpus(bm25::Language::English, documents)
                .build();
        Bm25 {
            engine,
            documents: count,
        }
    }

    /// How many documents the index holds.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> usize {
        self.documents
    }

    /// The `limit` best documents for `query` as `[{ index, score }]`, best first.
    pub fn search(&self, query: &str, limit: usize) -> js_sys::Array {
        self.engine
            .search(query, limit)
            .into_iter()
            .map(|hit| {
                let entry = js_sys::Object::new();
                let set = |key: &str, value: f64| {
                    js_sys::Reflect::set(&entry, &key.into(), &value.into())
                        .expect("setting a property of a plain object");
                };
                set("index", f64::from(hit.document.id));
                set("score", f64::from(hit.score));
                JsValue::from(entry)
            })
            .collect()
    }
}
