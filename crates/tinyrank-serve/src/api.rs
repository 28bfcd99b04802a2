//! The two rerank APIs the server speaks, as plain functions from request bytes to a checked
//! request and from scores to a response body. Nothing here does I/O, so every bad input is
//! answered by a 4xx built here (and the property tests can drive the parser directly).
//!
//! - Cohere/Jina (`/v1/rerank`, `/v2/rerank`; also vLLM's, LiteLLM's and Infinity's shape):
//!   `{model?, query, documents: [string | {text}], top_n?, return_documents?}` ->
//!   `{id, model, results: [{index, relevance_score, document?: {text}}], usage, meta}`.
//! - Hugging Face text-embeddings-inference (`/rerank`): `{query, texts, truncate?,
//!   raw_scores?, return_text?}` -> `[{index, score, text?}]`.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which API a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Cohere's rerank (v1 or v2), which Jina, vLLM, LiteLLM and Infinity also accept.
    Cohere { version: u8 },
    /// text-embeddings-inference's `/rerank`.
    Tei,
}

/// Limits a request is checked against before any tokenisation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_documents: usize,
    pub max_body_bytes: usize,
}

/// A checked rerank request, the same for both APIs.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankRequest {
    pub query: String,
    pub documents: Vec<String>,
    /// Results to return, best first (all when None).
    pub top_n: Option<usize>,
    pub return_documents: bool,
    /// Cut over-long pairs to the model's max length (else refuse them with 422).
    pub truncate: bool,
    /// The model's ranking score instead of the relevance probability (TEI only).
    pub raw_scores: bool,
}

/// The error body of every route: TEI's `{error, error_type}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// Valid JSON that breaks a rule of the API (422).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation", message)
    }

    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self.message, "error_type": self.kind })
    }
}

#[derive(Deserialize)]
struct CohereBody {
    query: String,
    documents: Vec<Value>,
    top_n: Option<usize>,
    return_documents: Option<bool>,
    /// Accepted and not checked: one process serves one model, whatever a client calls it.
    #[serde(rename = "model")]
    _model: Option<Value>,
}

#[derive(Deserialize)]
struct TeiBody {
    query: String,
    texts: Vec<String>,
    truncate: Option<bool>,
    raw_scores: Option<bool>,
    return_text: Option<bool>,
    truncation_direction: Option<String>,
}

/// Reads `body` as a request of `api`; unknown fields are ignored, as the reference servers do.
pub fn parse(api: Api, body: &[u8], limits: &Limits) -> Result<RerankRequest, ApiError> {
    let request = match api {
        Api::Cohere { .. } => {
            let body: CohereBody = from_json(body)?;
            let documents = body
                .documents
                .into_iter()
                .enumerate()
                .map(|(i, document)| document_text(i, document))
                .collect::<Result<_, _>>()?;
            RerankRequest {
                query: body.query,
                documents,
                top_n: body.top_n,
                return_documents: body.return_documents.unwrap_or(false),
                truncate: true,
                raw_scores: false,
            }
        }
        Api::Tei => {
            let body: TeiBody = from_json(body)?;
            if let Some(direction) = body.truncation_direction
                && !direction.eq_ignore_ascii_case("right")
            {
                return Err(ApiError::validation(format!(
                    "truncation_direction: {direction:?} is not supported; pairs are cut on the \
                     right (\"Right\")"
                )));
            }
            RerankRequest {
                query: body.query,
                documents: body.texts,
                top_n: None,
                return_documents: body.return_text.unwrap_or(false),
                truncate: body.truncate.unwrap_or(true),
                raw_scores: body.raw_scores.unwrap_or(false),
            }
        }
    };
    check(&request, api, limits)?;
    Ok(request)
}

/// JSON that does not parse is a 400; JSON of the wrong shape a 422 naming the field.
fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let syntax = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Validation",
            format!("the body is not valid JSON: {e}"),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return syntax(inner);
        }
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::validation(format!("{at}{inner}"))
    })?;
    de.end().map_err(syntax)?;
    Ok(value)
}

/// A Cohere document: a string, or an object with a string `text` (Jina's and Cohere v1's form).
fn document_text(index: usize, document: Value) -> Result<String, ApiError> {
    match document {
        Value::String(text) => Ok(text),
        Value::Object(mut fields) => match fields.remove("text") {
            Some(Value::String(text)) => Ok(text),
            _ => Err(ApiError::validation(format!(
                "documents[{index}]: an object document needs a string \"text\" field"
            ))),
        },
        _ => Err(ApiError::validation(format!(
            "documents[{index}]: expected a string or an object with a string \"text\" field"
        ))),
    }
}

fn check(request: &RerankRequest, api: Api, limits: &Limits) -> Result<(), ApiError> {
    let field = match api {
        Api::Cohere { .. } => "documents",
        Api::Tei => "texts",
    };
    tinyrank_core::reranker::check_query(&request.query)
        .map_err(|e| ApiError::validation(format!("query: {e}")))?;
    if request.documents.is_empty() {
        return Err(ApiError::validation(format!(
            "{field}: there is nothing to rerank"
        )));
    }
    if request.documents.len() > limits.max_documents {
        return Err(ApiError::validation(format!(
            "{field}: {} given, at most {} per request (--max-documents)",
            request.documents.len(),
            limits.max_documents
        )));
    }
    if let Some(i) = request.documents.iter().position(|d| d.trim().is_empty()) {
        return Err(ApiError::validation(format!("{field}[{i}] is empty")));
    }
    if request.top_n == Some(0) {
        return Err(ApiError::validation("top_n: must be at least 1"));
    }
    Ok(())
}

/// The relevance probability of a ranking score: the logistic of a 1-logit head's logit, which
/// for a 2-logit head's `logit[1] - logit[0]` is its softmax probability of "relevant".
pub fn relevance(score: f32) -> f32 {
    1.0 / (1.0 + (-score).exp())
}

/// Document indices best first (ties: lower index first), at most `top_n`.
pub fn ranking(scores: &[f32], top_n: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(top_n.unwrap_or(order.len()));
    order
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct CohereResult<'a> {
    index: usize,
    relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<Text<'a>>,
}

#[derive(Serialize)]
struct TeiResult<'a> {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

/// What a response says besides the scores.
pub struct Served<'a> {
    pub id: &'a str,
    pub model: &'a str,
    /// Tokens of all pairs as scored (after truncation).
    pub tokens: usize,
}

/// The response body for `request`'s `scores` (in document order).
pub fn response(api: Api, request: &RerankRequest, scores: &[f32], served: &Served) -> Value {
    let order = ranking(scores, request.top_n);
    let text = |i: usize| {
        request
            .return_documents
            .then(|| request.documents[i].as_str())
    };
    match api {
        Api::Cohere { version } => {
            let results: Vec<CohereResult> = order
                .iter()
                .map(|&i| CohereResult {
                    index: i,
                    relevance_score: relevance(scores[i]),
                    document: text(i).map(|text| Text { text }),
                })
                .collect();
            serde_json::json!({
                "id": served.id,
                "model": served.model,
                "results": results,
                "usage": { "total_tokens": served.tokens },
                "meta": {
                    "api_version": { "version": version.to_string() },
                    "billed_units": { "search_units": 1 },
                },
            })
        }
        Api::Tei => {
            let results: Vec<TeiResult> = order
                .iter()
                .map(|&i| TeiResult {
                    index: i,
                    score: if request.raw_scores {
                        scores[i]
                    } else {
                        relevance(scores[i])
                    },
                    text: text(i),
                })
                .collect();
            serde_json::json!(results)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_documents: 3,
        max_body_bytes: 1000,
    };
    const COHERE: Api = Api::Cohere { version: 2 };

    #[test]
    fn cohere_documents_are_strings_or_text_objects() {
        let body = br#"{"model":"x","query":"q","documents":["a",{"text":"b","id":7}],"top_n":1}"#;
        let request = parse(COHERE, body, &LIMITS).unwrap();
        assert_eq!(request.documents, ["a", "b"]);
        assert_eq!(request.top_n, Some(1));
        assert!(request.truncate && !request.return_documents && !request.raw_scores);
    }

    #[test]
    fn errors_name_the_field_and_pick_the_status() {
        let err = |api, body: &[u8]| parse(api, body, &LIMITS).unwrap_err();
        let e = err(COHERE, br#"{"query":"q","documents":["a",3]}"#);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("documents[1]"), "{}", e.message);
        let e = err(COHERE, br#"{"query":5,"documents":["a"]}"#);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            e.message.starts_with("query: invalid type"),
            "{}",
            e.message
        );
        let e = err(Api::Tei, br#"{"query":"q","texts":["a"],"truncate":"yes"}"#);
        assert!(e.message.starts_with("truncate:"), "{}", e.message);
        let e = err(COHERE, br#"{"query":"q","documents":["a"]"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = err(COHERE, br#"{"query":"q","documents":["a"]} trailing"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = err(COHERE, b"{\"query\":\"\xff\",\"documents\":[\"a\"]}");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = err(COHERE, br#"{"query":"  ","documents":["a"]}"#);
        assert_eq!(e.message, "query: the query is empty");
        let e = err(Api::Tei, br#"{"query":"q","texts":[]}"#);
        assert_eq!(e.message, "texts: there is nothing to rerank");
        let e = err(Api::Tei, br#"{"query":"q","texts":["a","","c"]}"#);
        assert_eq!(e.message, "texts[1] is empty");
        let e = err(COHERE, br#"{"query":"q","documents":["a","b","c","d"]}"#);
        assert!(e.message.contains("4 given, at most 3"), "{}", e.message);
        let e = err(COHERE, br#"{"query":"q","documents":["a"],"top_n":0}"#);
        assert_eq!(e.message, "top_n: must be at least 1");
        let e = err(COHERE, br#"{"query":"q","documents":["a"],"top_n":-1}"#);
        assert!(e.message.starts_with("top_n:"), "{}", e.message);
        let e = err(
            Api::Tei,
            br#"{"query":"q","texts":["a"],"truncation_direction":"Left"}"#,
        );
        assert!(
            e.message.starts_with("truncation_direction"),
            "{}",
            e.message
        );
    }

    #[test]
    fn responses_rank_best_first_and_cut_at_top_n() {
        let request = RerankRequest {
            query: "q".into(),
            documents: vec!["a".into(), "b".into(), "c".into()],
            top_n: Some(2),
            return_documents: true,
            truncate: true,
            raw_scores: false,
        };
        let served = Served {
            id: "rerank-1",
            model: "m",
            tokens: 12,
        };
        let body = response(COHERE, &request, &[0.0, 2.0, 2.0], &served);
        assert_eq!(body["results"][0]["index"], 1);
        assert_eq!(body["results"][1]["index"], 2);
        assert_eq!(body["results"].as_array().unwrap().len(), 2);
        assert_eq!(body["results"][0]["document"]["text"], "b");
        assert_eq!(body["usage"]["total_tokens"], 12);
        let raw = RerankRequest {
            raw_scores: true,
            top_n: None,
            return_documents: false,
            ..request
        };
        let body = response(Api::Tei, &raw, &[-1.5, 0.5, 3.0], &served);
        assert_eq!(body[0]["index"], 2);
        assert_eq!(body[0]["score"], 3.0);
        assert!(body[0].get("text").is_none());
        assert!((relevance(0.0) - 0.5).abs() < 1e-7);
    }
}
