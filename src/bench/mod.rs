//! `tinyrank bench`: pairs/s and peak memory of cross-encoder shapes on every backend.
//!
//! Each (shape, length, device) is measured in a child process of its own, so that its peak
//! memory is its own and one backend's thread pools or caches do not slow the next. Weights are
//! random (BERT's initialisation) unless `--model` is given: speed does not depend on them.

mod single;

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use tinyrank_core::{BackendKind, BertConfig, DeviceChoice, select_device};

/// BERT-Base's WordPiece vocabulary: the embedding table's size matters for memory, not speed.
const VOCAB: usize = 30522;

#[derive(Args)]
pub struct BenchArgs {
    /// Shapes as layers/hidden[/heads]: heads default to 12, or hidden/64 below 384 hidden;
    /// the feed-forward width is 4 x hidden.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "12/768,6/768,6/384,3/384,2/128"
    )]
    shapes: Vec<Shape>,
    /// Pair lengths in tokens (every pair of a synthetic batch is exactly this long).
    #[arg(long, value_delimiter = ',', default_value = "128,256")]
    lengths: Vec<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Backends: cpu, gpu, or auto (cpu, and gpu when a hardware GPU is present).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    devices: Vec<DeviceChoice>,
    /// Timed batches per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Untimed batches first (kernel compilation and autotuning on wgpu, caches on the CPU).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// On the CPU, which scoring paths: fast (tinyrank's fused, unpadded path, what `rerank`
    /// uses), int8 (the same with 8-bit projections, `rerank --int8`) and burn (the burn model
    /// op by op on flex, the reference).
    #[arg(long, value_delimiter = ',', default_value = "fast,int8,burn")]
    cpu_paths: Vec<CpuPath>,
    /// On the GPU, which precisions of the burn model: f32, f16 (`rerank --f16`; adapters with
    /// `shader-f16`).
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    gpu_precisions: Vec<GpuPrecision>,
    /// CPU threads (the rayon pool of every CPU path) [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// Real text instead of synthetic batches: a dataset directory (queries.tsv, collection.tsv,
    /// bm25.run), whose first --text-queries queries' top-100 are scored with real lengths,
    /// sorted by length into batches so that padding stays small.
    #[arg(long)]
    text: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    text_queries: usize,
    /// With --text, pad burn's batches to a multiple of this many tokens (`rerank --pad-to`,
    /// length buckets); 1 pads each to its longest pair.
    #[arg(long, default_value_t = 1)]
    pad_to: usize,
    /// Measure this checkpoint (real weights) instead of the --shapes; with --text its
    /// tokenizer is used, otherwise the shared teacher's.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Root of the shared assets (for the tokenizer of --text) [default: $TINYRANK_SHARED or
    /// ../shared].
    #[arg(long)]
    assets: Option<PathBuf>,
    /// Write one JSON object per measurement to this file as well.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: measure one case in this process and print it as JSON.
    #[arg(long, hide = true)]
    single: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuPath {
    Fast,
    Int8,
    Burn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuPrecision {
    F32,
    F16,
}

/// A BERT cross-encoder shape: `layers/hidden[/heads]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    /// Feed-forward width: 4 x hidden for the --shapes, the checkpoint's for --model.
    pub ffn: usize,
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<usize> = s
            .split('/')
            .map(|p| p.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("shape {s:?}: expected layers/hidden[/heads], e.g. 3/384"))?;
        let (layers, hidden, heads) = match parts[..] {
            [layers, hidden] => (layers, hidden, default_heads(hidden)),
            [layers, hidden, heads] => (layers, hidden, heads),
            _ => return Err(format!("shape {s:?}: expected layers/hidden[/heads]")),
        };
        if layers == 0 || hidden == 0 || heads == 0 || hidden % heads != 0 {
            return Err(format!(
                "shape {s:?}: layers, hidden and heads must be positive and heads must divide hidden"
            ));
        }
        Ok(Shape {
            layers,
            hidden,
            heads,
            ffn: 4 * hidden,
        })
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.layers, self.hidden)
    }
}

/// 12 heads as in BERT-Base and MiniLM, fewer for the smallest widths (2/128 has 2).
fn default_heads(hidden: usize) -> usize {
    if hidden >= 384 && hidden.is_multiple_of(12) {
        12
    } else {
        (hidden / 64).max(1)
    }
}

impl Shape {
    fn config(&self) -> BertConfig {
        BertConfig::new(VOCAB, self.hidden, self.layers, self.heads, self.ffn)
    }

    /// Floating-point operations of one pair's forward pass at `len` tokens (a multiply-add
    /// counts two): the projections, attention's two products, the feed-forward block.
    pub fn flops_per_pair(&self, len: usize) -> f64 {
        let (h, f, l) = (self.hidden as f64, self.ffn as f64, len as f64);
        let per_layer = 2.0 * l * (4.0 * h * h + 2.0 * h * f) + 4.0 * l * l * h;
        self.layers as f64 * per_layer + 2.0 * h * h
    }
}

/// One measurement, as the child prints it and the table shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Measurement {
    model: String,
    len: String,
    device: String,
    backend: String,
    batch_size: usize,
    pairs: usize,
    /// Pairs/s of each timed repeat.
    rates: Vec<f64>,
    median_pairs_per_s: f64,
    gflops_per_s: f64,
    /// The process's peak resident memory (host memory; GPU memory is not counted).
    peak_rss_mb: Option<f64>,
    weights: String,
    threads: usize,
}

pub fn run_bench(args: BenchArgs) -> Result<()> {
    if args.batch_size == 0 || args.repeats == 0 {
        bail!("--batch-size and --repeats must be at least 1");
    }
    if args.single {
        let measurement = single::measure_here(&args)?;
        println!("{}", serde_json::to_string(&measurement)?);
        return Ok(());
    }
    let devices = expand_devices(&args.devices)?;
    let cases: Vec<(Option<Shape>, usize)> = if args.model.is_some() {
        args.lengths.iter().map(|&len| (None, len)).collect()
    } else {
        args.shapes
            .iter()
            .flat_map(|&s| args.lengths.iter().map(move |&len| (Some(s), len)))
            .collect()
    };
    eprintln!("{}", banner(&args));
    let exe = std::env::current_exe().context("finding the tinyrank executable")?;
    let mut results = Vec::new();
    let mut json_out = Vec::new();
    let runs: Vec<(DeviceChoice, [String; 2])> = devices
        .iter()
        .flat_map(|&device| match device {
            DeviceChoice::Cpu => path_runs(device, "--cpu-paths", &args.cpu_paths),
            _ => path_runs(device, "--gpu-precisions", &args.gpu_precisions),
        })
        .collect();
    for &(shape, len) in &cases {
        for (device, path) in &runs {
            let measurement = measure_in_child(&args, &exe, shape, len, *device, path)?;
            eprintln!(
                "  {:>7} @ {:>4}  {:<4} {:>9.1} pairs/s",
                measurement.model,
                measurement.len,
                measurement.device,
                measurement.median_pairs_per_s
            );
            json_out.push(serde_json::to_string(&measurement)?);
            // Written after every measurement, so a run cut short keeps what it measured.
            if let Some(path) = &args.json {
                std::fs::write(path, json_out.join("\n") + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            results.push((shape, measurement));
        }
    }
    print_table(&results);
    Ok(())
}

/// The line that says what is measured and how.
fn banner(args: &BenchArgs) -> String {
    let weights = if args.model.is_some() {
        "real weights (--model)"
    } else {
        "random weights (BERT initialisation): speed does not depend on them"
    };
    let input = match &args.text {
        Some(dir) => format!(
            "real text: the top-100 of the first {} queries of {}, length-sorted batches{}",
            args.text_queries,
            dir.display(),
            match args.pad_to {
                1 => String::new(),
                n => format!(" padded to multiples of {n} tokens"),
            }
        ),
        None => "synthetic pairs of exactly the given length".into(),
    };
    format!(
        "tinyrank bench: batch {}, median of {} timed batches after {} warm-up; {weights}; {input}",
        args.batch_size, args.repeats, args.warmup
    )
}

/// Runs `tinyrank bench --single` for one case in a child process and reads its measurement.
fn measure_in_child(
    args: &BenchArgs,
    exe: &std::path::Path,
    shape: Option<Shape>,
    len: usize,
    device: DeviceChoice,
    path: &[String; 2],
) -> Result<Measurement> {
    let mut child = Command::new(exe);
    child.arg("bench").arg("--single");
    child.args(["--lengths", &len.to_string()]);
    child.args(["--devices", &device.to_string()]);
    child.args(path);
    child.args(["--batch-size", &args.batch_size.to_string()]);
    child.args(["--repeats", &args.repeats.to_string()]);
    child.args(["--warmup", &args.warmup.to_string()]);
    child.args(["--text-queries", &args.text_queries.to_string()]);
    child.args(["--pad-to", &args.pad_to.to_string()]);
    if let Some(shape) = shape {
        child.args([
            "--shapes",
            &format!("{}/{}/{}", shape.layers, shape.hidden, shape.heads),
        ]);
    }
    for (flag, path) in [
        ("--model", &args.model),
        ("--text", &args.text),
        ("--assets", &args.assets),
    ] {
        if let Some(path) = path {
            child.arg(flag).arg(path);
        }
    }
    if let Some(threads) = args.threads {
        child.env("RAYON_NUM_THREADS", threads.to_string());
    }
    let label = shape.map_or("model".to_string(), |s| s.to_string());
    let output = child
        .output()
        .with_context(|| format!("running the {label} @ {len} {device} measurement"))?;
    if !output.status.success() {
        bail!(
            "the {label} @ {len} {device} measurement failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim())
        .with_context(|| format!("reading the {label} @ {len} {device} measurement"))
}

/// `auto` becomes the CPU plus a hardware GPU when one is present.
fn expand_devices(choices: &[DeviceChoice]) -> Result<Vec<DeviceChoice>> {
    let mut devices = Vec::new();
    for &choice in choices {
        let expanded: Vec<DeviceChoice> = match choice {
            DeviceChoice::Auto => {
                let gpu = select_device(DeviceChoice::Auto)?.kind == BackendKind::Gpu;
                let mut both = vec![DeviceChoice::Cpu];
                if gpu {
                    both.push(DeviceChoice::Gpu);
                }
                both
            }
            other => vec![other],
        };
        for device in expanded {
            if !devices.contains(&device) {
                devices.push(device);
            }
        }
    }
    Ok(devices)
}

fn print_table(results: &[(Option<Shape>, Measurement)]) {
    println!(
        "| model | tokens | backend | pairs/s (median) | min-max | GFLOP/s | peak RSS MB | vs 3/384 same tokens+backend |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // The 3/384 student measured at the same length on the same backend.
    let student_beside = |m: &Measurement| {
        results.iter().find(|(s, r)| {
            s.is_some_and(|s| s.layers == 3 && s.hidden == 384)
                && r.len == m.len
                && r.device == m.device
        })
    };
    for (shape, m) in results {
        let ratio = match (shape, student_beside(m)) {
            (Some(_), Some((_, r))) => {
                format!("{:.2}x", m.median_pairs_per_s / r.median_pairs_per_s)
            }
            _ => "-".into(),
        };
        let (lo, hi) = m
            .rates
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });
        println!(
            "| {} | {} | {} | {:.1} | {:.1}-{:.1} | {:.0} | {} | {ratio} |",
            m.model,
            m.len,
            m.backend,
            m.median_pairs_per_s,
            lo,
            hi,
            m.gflops_per_s,
            m.peak_rss_mb.map_or("-".into(), |r| format!("{r:.0}")),
        );
    }
    // The paper's headline: the 12/768 teacher vs the 3/384 student, against the FLOP ratio.
    for (shape, m) in results {
        if !shape.is_some_and(|s| s.layers == 12 && s.hidden == 768) {
            continue;
        }
        if let Some((Some(small), r)) = student_beside(m) {
            let big = shape.expect("checked above");
            let len: usize = m.len.parse().unwrap_or(0);
            println!(
                "3/384 vs 12/768 at {} tokens on {}: {:.1}x faster (FLOP ratio {:.1}x)",
                m.len,
                m.backend,
                r.median_pairs_per_s / m.median_pairs_per_s,
                big.flops_per_pair(len) / small.flops_per_pair(len)
            );
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// One run per value of the flag that picks a device's scoring path (a CPU path or a GPU
/// precision): the device and the flag as the child process takes it.
fn path_runs<V: ValueEnum>(
    device: DeviceChoice,
    flag: &str,
    values: &[V],
) -> Vec<(DeviceChoice, [String; 2])> {
    values
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| (device, [flag.to_string(), v.get_name().to_string()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_with_default_heads() {
        let s: Shape = "12/768".parse().unwrap();
        assert_eq!((s.layers, s.hidden, s.heads), (12, 768, 12));
        assert_eq!("2/128".parse::<Shape>().unwrap().heads, 2);
        assert_eq!("3/384/6".parse::<Shape>().unwrap().heads, 6);
        assert!("3/384/5".parse::<Shape>().is_err());
        assert!("3".parse::<Shape>().is_err());
    }

    #[test]
    fn base_is_about_fifteen_times_the_flops_of_3_384() {
        let base: Shape = "12/768".parse().unwrap();
        let small: Shape = "3/384".parse().unwrap();
        let ratio = base.flops_per_pair(256) / small.flops_per_pair(256);
        assert!((13.0..17.0).contains(&ratio), "{ratio}");
    }
}
