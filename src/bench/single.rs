//! One measurement in this process (`tinyrank bench --single`): the child that `run_bench`
//! starts per (shape, length, device, path), printing its [`Measurement`] as JSON.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use tinyrank_core::checkpoint::CheckpointFiles;
use tinyrank_core::{
    BackendKind, Checkpoint, CrossEncoder, DeviceChoice, Encoded, EngineKind, PairTokenizer,
    Precision, Reranker, SelectedDevice, select_device,
};
use tinyrank_distill::rerank::{Dataset, EmptyText};

use super::{BenchArgs, CpuPath, GpuPrecision, Measurement, Shape, VOCAB, median};
use crate::assets;

/// The model measured: its shape, the tokenizer it brings, and whether its weights are real.
struct Loaded {
    model: CrossEncoder,
    shape: Shape,
    tokenizer: Option<PairTokenizer>,
    weights: &'static str,
}

/// Timed passes: pairs/s of each, pairs per pass, the length's label and FLOPs per pair.
struct Timings {
    rates: Vec<f64>,
    pairs: usize,
    len_label: String,
    flops_per_pair: f64,
}

pub(super) fn measure_here(args: &BenchArgs) -> Result<Measurement> {
    let [len] = args.lengths[..] else {
        bail!("--single measures one length");
    };
    let [device_choice] = args.devices[..] else {
        bail!("--single measures one device");
    };
    let selected = select_device(device_choice)?;
    let (engine, device_label, backend) = engine_for(args, &selected, device_choice)?;
    let loaded = load(args, &selected)?;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (shape, weights) = (loaded.shape, loaded.weights);
    let timings = match &args.text {
        None => time_synthetic(args, loaded, &selected, engine, len)?,
        Some(dir) => time_text(args, loaded, &selected, engine, len, dir)?,
    };
    let median_rate = median(&timings.rates);
    Ok(Measurement {
        model: shape.to_string(),
        len: timings.len_label,
        device: device_label,
        backend,
        batch_size: args.batch_size,
        pairs: timings.pairs,
        median_pairs_per_s: median_rate,
        gflops_per_s: timings.flops_per_pair * median_rate / 1e9,
        rates: timings.rates,
        peak_rss_mb: peak_rss_mb(),
        weights: weights.into(),
        threads,
    })
}

/// The scoring engine the flags pick on this device, with the table's device label and the
/// backend's description.
fn engine_for(
    args: &BenchArgs,
    selected: &SelectedDevice,
    choice: DeviceChoice,
) -> Result<(EngineKind, String, String)> {
    let cpu = selected.kind == BackendKind::Cpu;
    let engine = match (cpu, args.cpu_paths.first(), args.gpu_precisions.first()) {
        (true, Some(CpuPath::Fast), _) => EngineKind::Fused(Precision::F32),
        (true, Some(CpuPath::Int8), _) => EngineKind::Fused(Precision::Int8),
        (false, _, Some(GpuPrecision::F16)) => EngineKind::BurnF16,
        _ => EngineKind::Burn,
    };
    let (label, backend) = match engine {
        EngineKind::Fused(Precision::F32) => ("cpu".into(), "cpu (tinyrank fused path)".into()),
        EngineKind::Fused(Precision::Int8) => (
            "cpu-int8".into(),
            "cpu (tinyrank fused path, int8 projections)".into(),
        ),
        EngineKind::Burn if cpu => ("cpu-burn".into(), selected.description.clone()),
        EngineKind::Burn => (choice.to_string(), selected.description.clone()),
        EngineKind::BurnF16 => (
            format!("{choice}-f16"),
            format!("{}, f16", selected.description),
        ),
        EngineKind::Fused(Precision::F16) => bail!("the fused CPU engine has no f16 path"),
    };
    Ok((engine, label, backend))
}

/// --model's checkpoint, or a random model of the first --shapes.
fn load(args: &BenchArgs, selected: &SelectedDevice) -> Result<Loaded> {
    let device = &selected.device;
    Ok(match &args.model {
        Some(dir) => {
            let checkpoint = Checkpoint::load(dir, device)?;
            let c = &checkpoint.config;
            Loaded {
                shape: Shape {
                    layers: c.num_hidden_layers,
                    hidden: c.hidden_size,
                    heads: c.num_attention_heads,
                    ffn: c.intermediate_size,
                },
                model: checkpoint.model,
                tokenizer: Some(checkpoint.tokenizer),
                weights: "real",
            }
        }
        None => {
            let shape = *args.shapes.first().context("no shape to measure")?;
            Loaded {
                model: tinyrank_core::weights::random_model(&shape.config(), device),
                shape,
                tokenizer: None,
                weights: "random",
            }
        }
    })
}

/// One batch of synthetic pairs of exactly `len` tokens, scored --repeats times.
fn time_synthetic(
    args: &BenchArgs,
    loaded: Loaded,
    selected: &SelectedDevice,
    engine: EngineKind,
    len: usize,
) -> Result<Timings> {
    let encoded = synthetic_pairs(args.batch_size, len);
    // Synthetic ids need no vocabulary beyond BERT's special tokens.
    let tokenizer = PairTokenizer::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", None, "synthetic")?;
    let reranker = Reranker::with_engine(loaded.model, tokenizer, selected.device.clone(), engine)?;
    let rows: Vec<&Encoded> = encoded.iter().collect();
    // Reading the scores waits for the device to finish the batch.
    let score = || reranker.score_batch(&rows).map(drop);
    for _ in 0..args.warmup {
        score()?;
    }
    let mut rates = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let started = Instant::now();
        score()?;
        rates.push(args.batch_size as f64 / started.elapsed().as_secs_f64());
    }
    Ok(Timings {
        rates,
        pairs: args.batch_size,
        len_label: len.to_string(),
        flops_per_pair: loaded.shape.flops_per_pair(len),
    })
}

/// The real pairs of --text (cut at `len`, batched as rerank batches them), scored whole
/// --repeats times.
fn time_text(
    args: &BenchArgs,
    loaded: Loaded,
    selected: &SelectedDevice,
    engine: EngineKind,
    len: usize,
    dir: &std::path::Path,
) -> Result<Timings> {
    // Random shapes borrow the shared teacher's tokenizer.
    let tokenizer = match loaded.tokenizer {
        Some(tokenizer) => tokenizer,
        None => {
            let teacher = assets::teacher(&assets::root(args.assets.clone()));
            CheckpointFiles::read(&teacher)?.tokenizer()?
        }
    };
    let mut reranker =
        Reranker::with_engine(loaded.model, tokenizer, selected.device.clone(), engine)?;
    reranker.set_max_len(len)?;
    reranker.set_batch_size(args.batch_size)?;
    reranker.set_pad_to(args.pad_to)?;
    let encoded = real_pairs(&reranker, dir, args.text_queries)?;
    let mean_len = encoded.iter().map(|e| e.ids.len()).sum::<usize>() as f64 / encoded.len() as f64;
    // One warm-up pass over the first batches compiles the kernels of most lengths.
    let warm: Vec<Encoded> = encoded
        .iter()
        .take(args.batch_size * args.warmup)
        .cloned()
        .collect();
    reranker.score_encoded(&warm, |_| {})?;
    let mut rates = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let started = Instant::now();
        reranker.score_encoded(&encoded, |_| {})?;
        rates.push(encoded.len() as f64 / started.elapsed().as_secs_f64());
    }
    let buckets = match args.pad_to {
        1 => String::new(),
        n => format!(", pad-to {n}"),
    };
    Ok(Timings {
        rates,
        pairs: encoded.len(),
        len_label: format!("text<={len} (mean {mean_len:.0}{buckets})"),
        // FLOPs at the mean length: attention's quadratic term makes this a slight
        // underestimate for a spread of lengths.
        flops_per_pair: loaded.shape.flops_per_pair(mean_len.round() as usize),
    })
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `batch` pairs of exactly `len` tokens: [CLS] query [SEP] passage [SEP] with ids spread over
/// the vocabulary (fixed, so every run sees the same input).
fn synthetic_pairs(batch: usize, len: usize) -> Vec<Encoded> {
    let query_len = (len / 8).max(1);
    (0..batch)
        .map(|row| {
            let ids = (0..len)
                .map(|j| (1000 + (row * 7919 + j * 104_729) % (VOCAB - 1000)) as u32)
                .collect();
            let type_ids = (0..len).map(|j| u32::from(j > query_len)).collect();
            Encoded { ids, type_ids }
        })
        .collect()
}

/// The first `queries` queries' candidates of a dataset directory, tokenised.
fn real_pairs(reranker: &Reranker, dir: &std::path::Path, queries: usize) -> Result<Vec<Encoded>> {
    let data = Dataset::read(dir)?;
    let todo = data.candidates(100, EmptyText::Refused)?;
    let mut encoded = Vec::new();
    for candidate in todo.iter().take(queries) {
        encoded.extend(reranker.encode(candidate.query, &candidate.passages)?);
    }
    if encoded.is_empty() {
        bail!("{}: no candidates to score", dir.display());
    }
    Ok(encoded)
}
