//! A real server on a free loopback port, serving the shared teacher, and a client for it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tinyrank_serve::{ServeArgs, bind, serve};
use tokio::sync::oneshot;

pub fn shared() -> PathBuf {
    std::env::var_os("TINYRANK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

pub fn teacher_dir() -> PathBuf {
    shared().join("models/teacher-minilm-l6")
}

/// The teacher on the CPU, port 0, the command line's defaults otherwise.
pub fn teacher_args() -> ServeArgs {
    let mut args = ServeArgs::for_model(teacher_dir());
    args.device = tinyrank_core::DeviceChoice::Cpu;
    args.port = 0;
    args
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    runtime: tokio::runtime::Runtime,
}

impl TestServer {
    /// Starts serving and waits until /health answers 200.
    pub fn start(args: ServeArgs) -> Self {
        let server = Self::spawn(args);
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.get("/health").0 != 200 {
            assert!(Instant::now() < deadline, "the model did not load in 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Starts serving without waiting for the model.
    pub fn spawn(args: ServeArgs) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime.block_on(bind(&args)).expect("a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = runtime.spawn(serve(args, listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            done: Some(done),
            runtime,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let response = agent().get(&self.url(path)).call();
        read(response)
    }

    pub fn post(&self, path: &str, body: impl AsRef<[u8]>) -> (u16, String) {
        let response = agent()
            .post(&self.url(path))
            .header("content-type", "application/json")
            .send(body.as_ref());
        read(response)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (status, text) = self.post(path, body.to_string());
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
        (status, value)
    }

    /// A metric's value in /metrics (the first sample whose line starts with `prefix`).
    pub fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
    }

    /// Asks the server to stop and returns how `serve` ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => self.runtime.block_on(done).expect("serve did not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn read(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .expect("a text body");
    (status, text)
}

/// DL19's first query with its BM25 candidates' texts, at most `n`.
pub fn dl19_query(n: usize) -> (String, Vec<String>) {
    let dir = shared().join("data/trec-dl-2019");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("DL19 data");
    let queries = read("queries.tsv");
    let run = read("bm25.run");
    let collection = read("collection.tsv");
    let first_run_line = run.lines().next().expect("a run line");
    let qid = first_run_line.split_whitespace().next().expect("a qid");
    let query = queries
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(id, _)| *id == qid)
        .map(|(_, text)| text.to_string())
        .expect("the query's text");
    let pids: Vec<&str> = run
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(qid))
        .filter_map(|l| l.split_whitespace().nth(2))
        .take(n)
        .collect();
    let texts: std::collections::HashMap<&str, &str> = collection
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .collect();
    let passages = pids.iter().map(|p| texts[p].to_string()).collect();
    (query, passages)
}
