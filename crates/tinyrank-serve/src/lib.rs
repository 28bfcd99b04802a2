//! tinyrank-serve: a cross-encoder behind the rerank APIs that search backends and RAG
//! pipelines already call (Cohere/Jina at `/v1/rerank` and `/v2/rerank`, text-embeddings-
//! inference at `/rerank`), with `/health`, Prometheus `/metrics` and `/info`.
//!
//! One scoring thread owns the model ([`scorer`]); HTTP handlers parse and check requests
//! ([`api`]), tokenise them on tokio's blocking pool and queue their pairs, which the scoring
//! thread packs into batches by a token budget across requests.

pub mod api;
pub mod metrics;
pub mod routes;
pub mod scorer;

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tinyrank_core::Precision;
use tinyrank_core::{DEFAULT_MAX_LEN, DeviceChoice};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::Limits;
use crate::metrics::Metrics;
use crate::routes::AppState;
use crate::scorer::{Scorer, ScorerConfig, Status};

/// `tinyrank serve`'s settings (the CLI flattens this: one definition of each default).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Hugging Face cross-encoder directory (config.json, model.safetensors, tokenizer).
    #[arg(long)]
    pub model: PathBuf,
    /// auto (a hardware GPU when there is one, else the CPU), cpu or gpu.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Run the encoder's projections in 8-bit integers (CPU only).
    #[arg(long)]
    pub int8: bool,
    /// Run the burn model in f16 (GPU adapters with `shader-f16` only).
    #[arg(long, conflicts_with = "int8")]
    pub f16: bool,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0 picks a free one; the log line "listening" says which).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Maximum pair length in tokens, special tokens included; longer pairs are cut
    /// longest-first (or refused, per request, with TEI's `truncate: false`).
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    pub max_len: usize,
    /// On a GPU, pad batches to a multiple of this many tokens (length buckets: a GPU build
    /// with burn's fusion compiles kernels once per shape); 1 pads to the longest pair.
    #[arg(long, default_value_t = 1)]
    pub pad_to: usize,
    /// Tokens per scored batch, pairs of concurrent requests packed together (padded tokens
    /// on the GPU).
    #[arg(long, default_value_t = 8192)]
    pub max_batch_tokens: usize,
    /// Score each request alone, in batches of 32 pairs, as `tinyrank rerank` does (to
    /// measure what batching across requests buys).
    #[arg(long)]
    pub no_batching: bool,
    /// Requests admitted at once (queued or scoring); one more is answered 429.
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Documents per request; more is answered 422.
    #[arg(long, default_value_t = 1000)]
    pub max_documents: usize,
    /// Request body size in bytes; more is answered 413.
    #[arg(long, default_value_t = 4_000_000)]
    pub max_body_bytes: usize,
    /// The model name responses carry [default: the model directory's name].
    #[arg(long)]
    pub model_id: Option<String>,
}

impl ServeArgs {
    /// Defaults for a model directory, as the command line has them.
    pub fn for_model(model: impl Into<PathBuf>) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ServeArgs,
        }
        let model: PathBuf = model.into();
        let mut args = Wrapper::parse_from(["serve", "--model", "."]).args;
        args.model = model;
        args
    }

    fn check(&self) -> Result<()> {
        if !self.model.join("config.json").is_file() {
            bail!(
                "{}: no config.json: --model must be a checkpoint directory",
                self.model.display()
            );
        }
        if self.max_batch_tokens < self.max_len {
            bail!(
                "--max-batch-tokens {} is below --max-len {}: a batch must hold a whole pair",
                self.max_batch_tokens,
                self.max_len
            );
        }
        for (flag, value) in [
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-documents", self.max_documents),
            ("--max-body-bytes", self.max_body_bytes),
            ("--pad-to", self.pad_to),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        Ok(())
    }

    fn precision(&self) -> Precision {
        Precision::from_flags(self.int8, self.f16)
    }

    fn scorer_config(&self) -> ScorerConfig {
        ScorerConfig {
            model: self.model.clone(),
            device: self.device,
            precision: self.precision(),
            max_len: self.max_len,
            pad_to: self.pad_to,
            max_batch_tokens: self.max_batch_tokens,
            batching: !self.no_batching,
        }
    }

    /// What the handlers share: the limits these flags set, and the settings `/info` reports.
    fn app_state(&self, scorer: Arc<Scorer>, metrics: Arc<Metrics>) -> AppState {
        AppState {
            scorer,
            metrics,
            limits: Limits {
                max_documents: self.max_documents,
                max_body_bytes: self.max_body_bytes,
            },
            permits: Arc::new(Semaphore::new(self.max_concurrent_requests)),
            next_id: Arc::new(AtomicU64::new(1)),
            model_id: self.model_id().into(),
            settings: serde_json::json!({
                "max_len": self.max_len,
                "pad_to": self.pad_to,
                "precision": self.precision().name(),
                "batching": !self.no_batching,
                "max_batch_tokens": self.max_batch_tokens,
                "max_concurrent_requests": self.max_concurrent_requests,
                "max_documents": self.max_documents,
                "max_body_bytes": self.max_body_bytes,
            }),
        }
    }

    fn model_id(&self) -> String {
        self.model_id.clone().unwrap_or_else(|| {
            let dir = std::fs::canonicalize(&self.model).unwrap_or_else(|_| self.model.clone());
            dir.file_name()
                .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
        })
    }
}

/// Binds the listening socket (checking the settings first, so bad flags fail before a port
/// is taken).
pub async fn bind(args: &ServeArgs) -> Result<TcpListener> {
    args.check()?;
    TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))
}

/// Serves until `shutdown` resolves, then stops accepting, finishes every admitted request and
/// returns. Listens at once (`/health` says 503 while the model loads); a model that fails to
/// load, or a scoring thread that dies, ends the server with that error.
pub async fn serve(
    args: ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    args.check()?;
    let metrics = Arc::new(Metrics::new());
    let (scorer, thread) = Scorer::start(args.scorer_config(), metrics.clone())
        .context("starting the scoring thread")?;
    let state = args.app_state(scorer.clone(), metrics);
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %addr, model = %args.model.display(), "listening");

    let failure = Arc::new(Mutex::new(None));
    let stop = {
        let failure = failure.clone();
        let watch = scorer.watch();
        async move {
            tokio::select! {
                _ = shutdown => tracing::info!("shutting down: finishing admitted requests"),
                reason = scorer_down(watch) => {
                    tracing::error!(error = %reason, "stopping");
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                }
            }
        }
    };
    let app = routes::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .context("serving HTTP")?;
    scorer.close();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    tracing::info!("stopped");
    match failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(reason) => bail!(reason),
        None => Ok(()),
    }
}

/// Resolves, with the reason, when the model fails to load or the scoring thread ends; logs
/// the load.
async fn scorer_down(mut watch: tokio::sync::watch::Receiver<Status>) -> String {
    let started = Instant::now();
    loop {
        let status = watch.borrow_and_update().clone();
        match status {
            Status::Loading => {}
            Status::Ready(model) => {
                let c = &model.config;
                tracing::info!(
                    device = %model.device,
                    layers = c.num_hidden_layers,
                    hidden = c.hidden_size,
                    engine = %model.engine,
                    seconds = started.elapsed().as_secs_f64(),
                    "model loaded"
                );
            }
            Status::Failed(e) => return format!("the model failed to load: {e}"),
            Status::Stopped => return "the scoring thread stopped".into(),
        }
        if watch.changed().await.is_err() {
            return "the scoring thread stopped".into();
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
