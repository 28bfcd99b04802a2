//! Routes, the admission limit and the per-request record (metrics and a JSON log line).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tinyrank_core::{Cut, Encoded, PairTokenizer};
use tokio::sync::Semaphore;

use crate::api::{self, Api, ApiError, Limits, RerankRequest, Served};
use crate::metrics::Metrics;
use crate::scorer::{ScoreError, Scorer, Status};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub scorer: Arc<Scorer>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Requests admitted at once; one more is answered 429.
    pub permits: Arc<Semaphore>,
    pub next_id: Arc<AtomicU64>,
    pub model_id: Arc<str>,
    /// The limits and settings `/info` reports.
    pub settings: serde_json::Value,
}

const ROUTES: [&str; 6] = [
    "/v1/rerank",
    "/v2/rerank",
    "/rerank",
    "/health",
    "/metrics",
    "/info",
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/rerank", post(cohere_v1))
        .route("/v2/rerank", post(cohere_v2))
        .route("/rerank", post(tei))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/info", get(info))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        // Kept beside the body so that `record` logs the message without reading it back.
        response.extensions_mut().insert(self);
        response
    }
}

async fn cohere_v1(State(state): State<AppState>, body: Body) -> Response {
    rerank(state, Api::Cohere { version: 1 }, body).await
}

async fn cohere_v2(State(state): State<AppState>, body: Body) -> Response {
    rerank(state, Api::Cohere { version: 2 }, body).await
}

async fn tei(State(state): State<AppState>, body: Body) -> Response {
    rerank(state, Api::Tei, body).await
}

async fn rerank(state: AppState, api: Api, body: Body) -> Response {
    match try_rerank(state, api, body).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn try_rerank(state: AppState, api: Api, body: Body) -> Result<serde_json::Value, ApiError> {
    let body = read_body(body, state.limits.max_body_bytes).await?;
    // Held until the response is built; dropped early if the client goes away.
    let _permit = state.permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Overloaded",
            "too many requests at once (--max-concurrent-requests); retry later",
        )
    })?;
    let Status::Ready(model) = state.scorer.status() else {
        return Err(not_ready(state.scorer.status()));
    };
    let request = api::parse(api, &body, &state.limits)?;
    let (tokenizer, cut) = (model.tokenizer.clone(), model.cut);
    // Tokenising is CPU work: off the async workers, and off the scoring thread.
    let (request, pairs) = tokio::task::spawn_blocking(move || {
        let pairs = encode(&tokenizer, cut, &request);
        (request, pairs)
    })
    .await
    .map_err(|e| backend(format!("tokenising failed: {e}")))?;
    let pairs = pairs?;
    let tokens = pairs.iter().map(|p| p.ids.len()).sum();
    let scores = state.scorer.score(pairs).await.map_err(|e| match e {
        ScoreError::NotReady(status) => not_ready(status),
        ScoreError::Backend(message) => backend(message),
    })?;
    let id = format!("rerank-{}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let served = Served {
        id: &id,
        model: &state.model_id,
        tokens,
    };
    Ok(api::response(api, &request, &scores, &served))
}

/// How far past the limit an over-long body is still read before the 413 goes out.
const DRAIN_FACTOR: usize = 4;

/// The request body, at most `limit` bytes. An over-long one is read on and dropped (up to
/// `DRAIN_FACTOR` times the limit) before the 413 is sent: closing a connection the client is
/// still writing to resets it, and the client would see the reset instead of the answer.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Validation",
                format!("reading the body failed: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        read += data.len();
        if read <= limit {
            kept.extend_from_slice(&data);
        } else if read > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if read > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Validation",
            format!("the body is over the length limit of {limit} bytes (--max-body-bytes)"),
        ));
    }
    Ok(Bytes::from(kept))
}

/// The query tokenised once, each document once, joined and cut to the max length; with
/// `truncate: false` an over-long pair is refused instead, naming the document.
fn encode(
    tokenizer: &PairTokenizer,
    cut: Cut,
    request: &RerankRequest,
) -> Result<Vec<Encoded>, ApiError> {
    let invalid = |e: tinyrank_core::Error| ApiError::validation(e.to_string());
    let query = tokenizer
        .tokenize(&[request.query.as_str()])
        .map_err(invalid)?;
    let query = query.first().map(|t| t.ids.as_slice()).unwrap_or_default();
    let texts: Vec<&str> = request.documents.iter().map(String::as_str).collect();
    let documents = tokenizer.tokenize(&texts).map_err(invalid)?;
    let max_len = cut.max_len;
    if !request.truncate {
        let too_long = documents
            .iter()
            .position(|d| query.len() + d.len() + 3 > max_len);
        if let Some(i) = too_long {
            return Err(ApiError::validation(format!(
                "texts[{i}]: the pair is {} tokens, over the max length {max_len}; send \
                 truncate: true to cut it",
                query.len() + documents[i].len() + 3
            )));
        }
    }
    Ok(documents
        .iter()
        .map(|d| tokenizer.join(query, &d.ids, cut))
        .collect())
}

fn not_ready(status: Status) -> ApiError {
    let message = match status {
        Status::Loading => "the model is still loading".to_string(),
        Status::Failed(e) => format!("the model failed to load: {e}"),
        Status::Stopped => "the server is shutting down".to_string(),
        Status::Ready(_) => "the model is ready".to_string(),
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Unhealthy", message)
}

fn backend(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Backend", message)
}

async fn health(State(state): State<AppState>) -> Response {
    match state.scorer.status() {
        Status::Ready(_) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        status => not_ready(status).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn info(State(state): State<AppState>) -> Response {
    let status = state.scorer.status();
    let model = match &status {
        Status::Ready(model) => {
            let c = &model.config;
            serde_json::json!({
                "layers": c.num_hidden_layers,
                "hidden_size": c.hidden_size,
                "attention_heads": c.num_attention_heads,
                "intermediate_size": c.intermediate_size,
                "vocab_size": c.vocab_size,
                "max_position_embeddings": c.max_position_embeddings,
                "device": model.device,
                "engine": model.engine.to_string(),
                "fused_cpu_path": !model.engine.pads(),
            })
        }
        _ => serde_json::Value::Null,
    };
    axum::Json(serde_json::json!({
        "model_id": &*state.model_id,
        "model_type": "cross-encoder reranker",
        "version": env!("CARGO_PKG_VERSION"),
        "ready": matches!(status, Status::Ready(_)),
        "model": model,
        "settings": state.settings,
    }))
    .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "no route {}; the routes are {}",
            request.uri().path(),
            ROUTES.join(", ")
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "{} does not take {}: the rerank routes take POST, the others GET",
            request.uri().path(),
            request.method()
        ),
    )
}

/// Counts and times every request, and writes one JSON log line for it (the error message
/// included when it failed).
async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request.uri().path();
    let route = ROUTES
        .iter()
        .find(|&&r| r == path)
        .copied()
        .unwrap_or("other");
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state.metrics.request_done(route, status.as_u16(), elapsed);
    // Milliseconds to the microsecond: enough for a log line.
    let ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    if status.is_success() {
        tracing::info!(route, %method, status = status.as_u16(), ms, "request");
        return response;
    }
    let error = response
        .extensions()
        .get::<ApiError>()
        .map_or("", |e| e.message.as_str());
    tracing::warn!(route, %method, status = status.as_u16(), ms, error, "request");
    response
}
