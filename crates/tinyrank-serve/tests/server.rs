//! The server as its clients meet it: a real server on a loopback port with the shared
//! teacher's weights. Good requests get the library's scores; bad ones a 4xx with a JSON error,
//! never a 500 or a panic; the server keeps serving after each.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{TestServer, dl19_query, teacher_args, teacher_dir};
use serde_json::json;
use tinyrank_core::{DEFAULT_MAX_LEN, Precision, Reranker, SelectedDevice};

fn library_scores(query: &str, passages: &[String]) -> Vec<f32> {
    let cpu = SelectedDevice::cpu("");
    let mut reranker = Reranker::load(&teacher_dir(), &cpu, Precision::F32).expect("the teacher");
    reranker.set_max_len(DEFAULT_MAX_LEN).expect("max len");
    let passages: Vec<&str> = passages.iter().map(String::as_str).collect();
    reranker.score(query, &passages).expect("scores")
}

#[test]
fn the_three_rerank_routes_give_the_library_s_scores_also_under_concurrency() {
    let server = TestServer::start(teacher_args());
    let (query, passages) = dl19_query(24);
    let expected = library_scores(&query, &passages);

    let (status, body) = server.post_json(
        "/rerank",
        &json!({"query": query, "texts": passages, "raw_scores": true, "return_text": true}),
    );
    assert_eq!(status, 200, "{body}");
    let results = body.as_array().expect("TEI answers a list");
    assert_eq!(results.len(), passages.len());
    let mut previous = f64::INFINITY;
    for result in results {
        let index = result["index"].as_u64().unwrap() as usize;
        let score = result["score"].as_f64().unwrap();
        assert!(score <= previous, "results are best first");
        previous = score;
        assert!(
            (score as f32 - expected[index]).abs() < 1e-4,
            "{score} vs {}",
            expected[index]
        );
        assert_eq!(result["text"], passages[index].as_str());
    }

    for route in ["/v1/rerank", "/v2/rerank"] {
        let documents: Vec<serde_json::Value> = passages
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i % 2 == 0 {
                    json!(p)
                } else {
                    json!({ "text": p })
                }
            })
            .collect();
        let request = json!({"model": "any", "query": query, "documents": documents,
                              "top_n": 5, "return_documents": true});
        let (status, body) = server.post_json(route, &request);
        assert_eq!(status, 200, "{body}");
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 5);
        let best = expected.iter().cloned().fold(f32::MIN, f32::max);
        let first = results[0]["index"].as_u64().unwrap() as usize;
        assert_eq!(expected[first], best);
        let probability = results[0]["relevance_score"].as_f64().unwrap() as f32;
        assert!((probability - 1.0 / (1.0 + (-best).exp())).abs() < 1e-5);
        assert_eq!(results[0]["document"]["text"], passages[first].as_str());
        assert_eq!(body["model"], "teacher-minilm-l6");
        assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 24 * 10);
    }

    // Concurrent requests share batches; each still gets its own pairs' scores.
    let answers: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|k| {
                let (server, query, passages) = (&server, &query, &passages);
                scope.spawn(move || {
                    let texts = &passages[k..k + 12];
                    let (status, body) = server.post_json(
                        "/rerank",
                        &json!({"query": query, "texts": texts, "raw_scores": true}),
                    );
                    assert_eq!(status, 200, "{body}");
                    let mut scores = vec![0.0; texts.len()];
                    for r in body.as_array().unwrap() {
                        scores[r["index"].as_u64().unwrap() as usize] =
                            r["score"].as_f64().unwrap() as f32;
                    }
                    scores
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, scores) in answers.iter().enumerate() {
        for (i, score) in scores.iter().enumerate() {
            assert!(
                (score - expected[k + i]).abs() < 1e-4,
                "request {k}, text {i}"
            );
        }
    }
    let scored = server.metric("tinyrank_pairs_scored_total");
    assert_eq!(scored, (24 + 2 * 24 + 6 * 12) as f64);
    assert_eq!(server.metric("tinyrank_queue_pairs"), 0.0);
    server.stop().expect("a clean stop");
}

/// Every case is refused with its status and a JSON error naming the problem, and the server
/// answers a good request after each.
#[test]
fn bad_input_gets_a_4xx_with_a_json_error_and_the_server_keeps_serving() {
    let mut args = teacher_args();
    args.max_body_bytes = 200_000;
    args.max_documents = 1000;
    args.max_len = 64;
    let server = TestServer::start(args);
    let long = "word ".repeat(200);
    let ten_thousand: Vec<String> = (0..10_000).map(|i| format!("d{i}")).collect();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/rerank",
            b"{\"query\": \"q\", \"texts\": [".to_vec(),
            400,
            "not valid JSON",
        ),
        ("POST", "/v1/rerank", b"".to_vec(), 400, "not valid JSON"),
        ("POST", "/v1/rerank", b"null".to_vec(), 422, "invalid type"),
        (
            "POST",
            "/v2/rerank",
            b"[1, 2]".to_vec(),
            422,
            "invalid type",
        ),
        (
            "POST",
            "/v2/rerank",
            br#"{"documents": ["a"]}"#.to_vec(),
            422,
            "missing field `query`",
        ),
        (
            "POST",
            "/v2/rerank",
            br#"{"query": 1, "documents": ["a"]}"#.to_vec(),
            422,
            "query:",
        ),
        (
            "POST",
            "/v2/rerank",
            br#"{"query": "q", "documents": "a"}"#.to_vec(),
            422,
            "documents:",
        ),
        (
            "POST",
            "/v2/rerank",
            br#"{"query": "q", "documents": [{"txt": "a"}]}"#.to_vec(),
            422,
            "documents[0]",
        ),
        (
            "POST",
            "/v2/rerank",
            br#"{"query": "q", "documents": ["a"], "top_n": "3"}"#.to_vec(),
            422,
            "top_n:",
        ),
        (
            "POST",
            "/rerank",
            br#"{"query": "", "texts": ["a"]}"#.to_vec(),
            422,
            "query is empty",
        ),
        (
            "POST",
            "/rerank",
            br#"{"query": "q", "texts": []}"#.to_vec(),
            422,
            "nothing to rerank",
        ),
        (
            "POST",
            "/rerank",
            br#"{"query": "q", "texts": ["a", " "]}"#.to_vec(),
            422,
            "texts[1] is empty",
        ),
        (
            "POST",
            "/rerank",
            b"{\"query\": \"caf\xe9\", \"texts\": [\"a\"]}".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": ten_thousand})
                .to_string()
                .into_bytes(),
            422,
            "10000 given, at most 1000",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": [long], "truncate": false})
                .to_string()
                .into_bytes(),
            422,
            "over the max length 64",
        ),
        // Well past the limit, so that the server must read it on for the client to get the 413
        // rather than a connection reset while it is still sending.
        ("POST", "/rerank", vec![b' '; 700_000], 413, "length limit"),
        ("GET", "/rerank", vec![], 405, "take GET"),
        ("POST", "/health", vec![], 405, "take POST"),
        ("GET", "/v3/rerank", vec![], 404, "no route /v3/rerank"),
    ];
    let agent = common::agent();
    for (method, path, body, status, message) in cases {
        let url = server.url(path);
        let response = match method {
            "GET" => agent.get(&url).call(),
            _ => agent.post(&url).send(&body[..]),
        };
        let mut response = response.expect("an answer");
        let text = response.body_mut().read_to_string().expect("a body");
        let what = format!(
            "{method} {path} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        assert_eq!(response.status().as_u16(), status, "{what}: {text}");
        let error: serde_json::Value = serde_json::from_str(&text).expect("a JSON error");
        let said = error["error"].as_str().expect("an error message");
        assert!(said.contains(message), "{what}: {said:?} lacks {message:?}");
        assert!(error["error_type"].is_string());
        let (ok, _) = server.post_json("/rerank", &json!({"query": "q", "texts": ["a b"]}));
        assert_eq!(ok, 200, "a good request after {what}");
    }
    // Over-long pairs are cut by default.
    let (status, _) = server.post_json("/rerank", &json!({"query": "q", "texts": [long]}));
    assert_eq!(status, 200);
    assert_eq!(
        server.metric("tinyrank_requests_total{route=\"/rerank\",status=\"422\"}"),
        5.0
    );
    assert_eq!(
        server.metric("tinyrank_requests_total{route=\"other\",status=\"404\"}"),
        1.0
    );
}

#[test]
fn a_burst_over_the_concurrency_limit_is_answered_429_and_the_rest_are_served() {
    let mut args = teacher_args();
    args.max_concurrent_requests = 2;
    let server = TestServer::start(args);
    let (query, passages) = dl19_query(40);
    let body = json!({"query": query, "documents": passages}).to_string();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|_| scope.spawn(|| server.post("/v1/rerank", &body).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok + refused, statuses.len(), "{statuses:?}");
    assert!(ok >= 1 && refused >= 1, "{statuses:?}");
    let (status, _) = server.post("/v1/rerank", &body);
    assert_eq!(status, 200, "served again after the burst");
    let counted = server.metric("tinyrank_requests_total{route=\"/v1/rerank\",status=\"429\"}");
    assert_eq!(counted, refused as f64);
}

#[test]
fn clients_that_go_away_mid_request_do_not_disturb_the_server() {
    let server = TestServer::start(teacher_args());
    let (query, passages) = dl19_query(100);
    let body = json!({"query": query, "texts": passages}).to_string();
    // A body cut short: the client promises more bytes than it sends, then closes.
    {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let head = format!(
            "POST /rerank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream
            .write_all(&body.as_bytes()[..body.len() / 2])
            .unwrap();
    }
    // A whole request whose client leaves while its 100 pairs are being scored.
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let request = format!(
            "POST /rerank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Garbage that is not HTTP at all.
    {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(b"\x00\xffnot http\r\n\r\n").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"));
    }
    let (status, results) =
        server.post_json("/rerank", &json!({"query": query, "texts": passages}));
    assert_eq!(status, 200, "{results}");
    assert_eq!(results.as_array().unwrap().len(), 100);
    // The requests whose clients left were dropped, not left in the queue.
    assert_eq!(server.metric("tinyrank_queue_pairs"), 0.0);
    assert!(server.metric("tinyrank_pairs_scored_total") < 400.0);
}

#[test]
fn info_and_metrics_describe_the_server_and_a_bad_model_fails_the_start() {
    let server = TestServer::start(teacher_args());
    let (status, info) = server.get("/info");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["ready"], true);
    assert_eq!(info["model"]["layers"], 6);
    assert_eq!(info["model"]["fused_cpu_path"], true);
    assert_eq!(info["settings"]["max_len"], DEFAULT_MAX_LEN);
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "tinyrank_requests_total",
        "tinyrank_request_duration_seconds_bucket",
        "tinyrank_queue_pairs",
        "tinyrank_model_loaded 1",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    server.stop().expect("a clean stop");

    // A checkpoint whose weights are not safetensors: the server says so and ends.
    let dir = tempfile_dir();
    for file in std::fs::read_dir(teacher_dir()).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("model.safetensors"), b"not weights").unwrap();
    let mut args = teacher_args();
    args.model = dir.clone();
    let failed = TestServer::spawn(args).stop_when_done();
    let message = format!("{:#}", failed.expect_err("a failed start"));
    assert!(message.contains("model.safetensors"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyrank-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

trait WaitDone {
    fn stop_when_done(self) -> anyhow::Result<()>;
}

impl WaitDone for TestServer {
    /// Waits for `serve` to end by itself (a failed load ends it).
    fn stop_when_done(self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(self.addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not end"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop()
    }
}
