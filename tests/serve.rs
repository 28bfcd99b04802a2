//! `tinyrank serve` as a deployment runs it: a process on a free loopback port, JSON logs on
//! stderr, the scores `tinyrank rerank` writes, and SIGTERM that finishes admitted requests.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct Server {
    child: Child,
    addr: String,
    log: std::sync::mpsc::Receiver<String>,
}

/// Starts `tinyrank serve --port 0 ARGS` and reads the address from its "listening" line.
fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyrank"))
        .args(["serve", "--port", "0", "--device", "cpu"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("tinyrank serve starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addr = None;
    while addr.is_none() {
        let line = log
            .recv_timeout(Duration::from_secs(60))
            .expect("a log line");
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a JSON log line, not {line:?}: {e}"));
        if event["message"] == "listening" {
            addr = event["addr"].as_str().map(String::from);
        }
    }
    Server {
        child,
        addr: addr.unwrap(),
        log,
    }
}

impl Server {
    fn wait_ready(&self) {
        for _ in 0..1200 {
            if ureq::get(&format!("http://{}/health", self.addr))
                .call()
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("not ready in 60 s");
    }
}

fn post(addr: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&format!("http://{addr}{path}"))
        .send(body.to_string().as_bytes())
        .expect("an answer");
    let text = response.body_mut().read_to_string().unwrap();
    (
        response.status().as_u16(),
        serde_json::from_str(&text).unwrap(),
    )
}

#[test]
fn serve_scores_as_rerank_does_and_sigterm_finishes_admitted_requests() {
    let teacher = teacher_dir();
    let dl19 = dl19();
    // One DL19 query's BM25 top-30, reranked by the command line.
    let run = std::fs::read_to_string(dl19.join("bm25.run")).unwrap();
    let qid = run.split_whitespace().next().unwrap().to_string();
    let top: Vec<&str> = run
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(qid.as_str()))
        .take(30)
        .collect();
    let dir = std::env::temp_dir().join(format!("tinyrank-serve-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("top.run"), top.join("\n") + "\n").unwrap();
    let queries = std::fs::read_to_string(dl19.join("queries.tsv")).unwrap();
    let query = queries
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{qid}\t")))
        .unwrap()
        .to_string();
    std::fs::write(dir.join("queries.tsv"), format!("{qid}\t{query}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tinyrank"))
        .args(["rerank", "--device", "cpu", "--model"])
        .arg(&teacher)
        .arg("--queries")
        .arg(dir.join("queries.tsv"))
        .arg("--collection")
        .arg(dl19.join("collection.tsv"))
        .arg("--run")
        .arg(dir.join("top.run"))
        .arg("--output")
        .arg(dir.join("reranked.run"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reranked = std::fs::read_to_string(dir.join("reranked.run")).unwrap();
    let by_pid: std::collections::HashMap<String, f32> = reranked
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_string(), f[4].parse().unwrap())
        })
        .collect();

    let collection = std::fs::read_to_string(dl19.join("collection.tsv")).unwrap();
    let texts: std::collections::HashMap<&str, &str> = collection
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .collect();
    let pids: Vec<&str> = top
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    let passages: Vec<&str> = pids.iter().map(|p| texts[p]).collect();

    let server = start(&["--model", teacher.to_str().unwrap()]);
    // It listens before the model is loaded (about a second): /health says so meanwhile.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut health = agent
        .get(&format!("http://{}/health", server.addr))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let said = health.body_mut().read_to_string().unwrap();
    assert!(said.contains("the model is still loading"), "{said}");
    server.wait_ready();
    let request = serde_json::json!({"query": query, "texts": passages, "raw_scores": true});
    let (status, results) = post(&server.addr, "/rerank", &request);
    assert_eq!(status, 200, "{results}");
    for r in results.as_array().unwrap() {
        let pid = pids[r["index"].as_u64().unwrap() as usize];
        let served = r["score"].as_f64().unwrap() as f32;
        // The run file keeps scores to its printed precision.
        assert!(
            (served - by_pid[pid]).abs() < 1e-4,
            "{pid}: {served} vs {}",
            by_pid[pid]
        );
    }

    // SIGTERM while a request is being scored: it is answered, then the process exits 0.
    let in_flight = std::thread::scope(|scope| {
        let answer = scope.spawn(|| post(&server.addr, "/rerank", &request).0);
        std::thread::sleep(Duration::from_millis(100));
        let killed = Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        answer.join().unwrap()
    });
    assert_eq!(in_flight, 200);
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let messages: Vec<String> = server
        .log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect();
    for said in [
        "model loaded",
        "request",
        "shutting down: finishing admitted requests",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m == said),
            "no {said:?} in {messages:?}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn serve_refuses_bad_settings_before_listening() {
    let out = Command::new(env!("CARGO_BIN_EXE_tinyrank"))
        .args(["serve", "--port", "0", "--model", "/nonexistent/model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model: no config.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_tinyrank"))
        .args([
            "serve",
            "--port",
            "0",
            "--max-batch-tokens",
            "100",
            "--model",
        ])
        .arg(teacher_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-batch-tokens 100 is below"));
}
