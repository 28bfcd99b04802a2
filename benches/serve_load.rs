//! Load test of `tinyrank serve`, against 127.0.0.1 only, bounded in requests and time.
//!
//!     cargo bench --bench serve_load -- --model DIR [--clients 1,8,32,128] [--docs 100]
//!         [--precisions f32,int8] [--batching on,off] [--rounds 2] [--max-seconds 240]
//!
//! For each precision x batching setting it starts a `tinyrank serve` process on a free
//! loopback port, then for each client count runs that many closed-loop clients, each sending
//! one TREC DL 2019 query with its `--docs` BM25 passages per request (`/v1/rerank`), waiting
//! for the answer, and sending the next. Each client's first request warms up and is not
//! counted; each then sends `--rounds` more (at least 16 requests are measured in all), or
//! stops at `--max-seconds`. Reported: pairs/s over the measured window, p50/p95/p99 latency,
//! the server's peak memory, and `tinyrank bench` on the same model, text and max length
//! (measured in the same run) as the single-process baseline.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tinyrank_distill::rerank::{Dataset, EmptyText};

const BIN: &str = env!("CARGO_BIN_EXE_tinyrank");

#[derive(Parser)]
struct Args {
    /// The checkpoint served [default: the shared teacher].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Dataset directory the requests come from [default: the shared TREC DL 2019].
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    clients: Vec<usize>,
    /// Passages per request (each query's BM25 top).
    #[arg(long, default_value_t = 100)]
    docs: usize,
    #[arg(long, value_delimiter = ',', default_value = "f32,int8")]
    precisions: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    batching: Vec<String>,
    /// Measured requests per client after its warm-up request.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Per client count: no request is sent after this many seconds.
    #[arg(long, default_value_t = 240)]
    max_seconds: u64,
    #[arg(long, default_value_t = 256)]
    max_len: usize,
    /// Extra flags for `tinyrank serve` (e.g. "--max-batch-tokens 4096").
    #[arg(long, default_value = "")]
    serve_flags: String,
    /// Skip the `tinyrank bench` baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Write every row as JSON lines here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn shared() -> PathBuf {
    std::env::var_os("TINYRANK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| shared().join("models/teacher-minilm-l6"));
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| shared().join("data/trec-dl-2019"));
    let bodies = Arc::new(request_bodies(&data, args.docs)?);
    println!(
        "model {}; {} requests of {} passages (DL19 queries in turn), max-len {}",
        model.display(),
        bodies.len(),
        args.docs,
        args.max_len
    );
    let mut rows = Vec::new();
    for precision in &args.precisions {
        let baseline = if args.no_baseline {
            None
        } else {
            Some(bench_baseline(&model, &data, precision, args.max_len)?)
        };
        if let Some(rate) = baseline {
            println!("tinyrank bench ({precision}, real text): {rate:.1} pairs/s");
        }
        for batching in &args.batching {
            let mut server = Server::start(&model, precision, batching == "on", &args)?;
            for &clients in &args.clients {
                let load = run_load(&server.addr, &bodies, clients, &args)?;
                let row = serde_json::json!({
                    "precision": precision,
                    "batching": batching,
                    "clients": clients,
                    "docs": args.docs,
                    "requests": load.latencies.len(),
                    "failed": load.failed,
                    "pairs_per_s": load.pairs_per_s,
                    "p50_ms": percentile(&load.latencies, 0.50),
                    "p95_ms": percentile(&load.latencies, 0.95),
                    "p99_ms": percentile(&load.latencies, 0.99),
                    "vs_bench": baseline.map(|b| load.pairs_per_s / b),
                    "bench_pairs_per_s": baseline,
                });
                print_row(&row);
                rows.push(row);
            }
            let peak = server.peak_memory_mb();
            println!("  server peak memory: {peak:.0} MB");
            for row in rows.iter_mut().rev().take(args.clients.len()) {
                row["server_peak_mb"] = peak.into();
            }
            server.stop()?;
        }
    }
    if let Some(path) = &args.json {
        let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        std::fs::write(path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One Cohere-shaped body per query: the query and its top `docs` BM25 passages.
fn request_bodies(dir: &std::path::Path, docs: usize) -> Result<Vec<String>> {
    let data = Dataset::read(dir)?;
    let todo = data.candidates(docs, EmptyText::Refused)?;
    Ok(todo
        .iter()
        .filter(|c| c.passages.len() == docs)
        .map(|c| serde_json::json!({"query": c.query, "documents": c.passages}).to_string())
        .collect())
}

/// `tinyrank bench` on the same model and text: the single-process pairs/s.
fn bench_baseline(
    model: &std::path::Path,
    data: &std::path::Path,
    precision: &str,
    max_len: usize,
) -> Result<f64> {
    let json = std::env::temp_dir().join(format!("serve-load-bench-{}.json", std::process::id()));
    let path = if precision == "int8" { "int8" } else { "fast" };
    let out = Command::new(BIN)
        .args([
            "bench",
            "--devices",
            "cpu",
            "--cpu-paths",
            path,
            "--text-queries",
            "10",
        ])
        .args([
            "--repeats",
            "3",
            "--lengths",
            &max_len.to_string(),
            "--model",
        ])
        .arg(model)
        .arg("--text")
        .arg(data)
        .arg("--json")
        .arg(&json)
        .output()
        .context("running tinyrank bench")?;
    if !out.status.success() {
        bail!("tinyrank bench: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&json)?;
    let _ = std::fs::remove_file(&json);
    let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or_default())?;
    row["median_pairs_per_s"]
        .as_f64()
        .context("no median_pairs_per_s in tinyrank bench's JSON")
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(
        model: &std::path::Path,
        precision: &str,
        batching: bool,
        args: &Args,
    ) -> Result<Self> {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--device", "cpu", "--port", "0", "--model"])
            .arg(model)
            .args(["--max-len", &args.max_len.to_string()])
            .args(["--max-concurrent-requests", "100000"])
            .args(args.serve_flags.split_whitespace())
            .stderr(Stdio::piped());
        if precision == "int8" {
            command.arg("--int8");
        }
        if !batching {
            command.arg("--no-batching");
        }
        let mut child = command.spawn().context("starting tinyrank serve")?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let event: serde_json::Value = serde_json::from_str(&line?)?;
            if let Some(a) = event["addr"].as_str() {
                addr = Some(a.to_string());
            }
            if event["message"] == "model loaded" {
                break;
            }
        }
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let addr = addr.context("the server logged no address")?;
        Ok(Self { child, addr })
    }

    /// VmHWM: the most resident memory the process has had.
    fn peak_memory_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn stop(&mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

struct Load {
    pairs_per_s: f64,
    latencies: Vec<f64>,
    failed: usize,
}

/// Closed loop: `clients` threads, each a warm-up request then up to `rounds` measured ones.
fn run_load(addr: &str, bodies: &Arc<Vec<String>>, clients: usize, args: &Args) -> Result<Load> {
    let per_client = 1 + args.rounds.max(16usize.div_ceil(clients));
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let url = format!("http://{addr}/v1/rerank");
    // Each record: (start, end, status ok).
    let records: Vec<Vec<(Instant, Instant, bool)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (next, url) = (&next, &url);
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let mut records = Vec::new();
                    for k in 0..per_client {
                        if k > 0 && Instant::now() > deadline {
                            break;
                        }
                        let body = &bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()];
                        let start = Instant::now();
                        let ok = agent
                            .post(url)
                            .header("content-type", "application/json")
                            .send(body.as_bytes())
                            .map(|mut r| r.status() == 200 && r.body_mut().read_to_string().is_ok())
                            .unwrap_or(false);
                        records.push((start, Instant::now(), ok));
                    }
                    records
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    // The window opens when every client has had its warm-up answered.
    let opened = records
        .iter()
        .filter_map(|r| r.first().map(|first| first.1))
        .max()
        .context("no request finished")?;
    let measured: Vec<&(Instant, Instant, bool)> = records
        .iter()
        .flat_map(|r| r.iter().skip(1))
        .filter(|r| r.0 >= opened)
        .collect();
    let closed = records
        .iter()
        .flat_map(|r| r.iter())
        .map(|r| r.1)
        .max()
        .unwrap_or(opened);
    let completed_in_window = records
        .iter()
        .flat_map(|r| r.iter())
        .filter(|r| r.1 > opened && r.2)
        .count();
    let window = (closed - opened).as_secs_f64();
    let mut latencies: Vec<f64> = measured
        .iter()
        .filter(|r| r.2)
        .map(|r| (r.1 - r.0).as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(Load {
        pairs_per_s: (completed_in_window * args.docs) as f64 / window.max(1e-9),
        failed: records.iter().flatten().filter(|r| !r.2).count(),
        latencies,
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn print_row(row: &serde_json::Value) {
    let f = |key: &str| row[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "  {:>4} batching {:>3}  {:>3} clients  {:>4} requests ({} failed)  {:>7.1} pairs/s  \
         p50 {:>7.0} ms  p95 {:>7.0}  p99 {:>7.0}  p99/p50 {:.2}  vs bench {:.2}",
        row["precision"].as_str().unwrap_or(""),
        row["batching"].as_str().unwrap_or(""),
        row["clients"],
        row["requests"],
        row["failed"],
        f("pairs_per_s"),
        f("p50_ms"),
        f("p95_ms"),
        f("p99_ms"),
        f("p99_ms") / f("p50_ms"),
        f("vs_bench"),
    );
}
