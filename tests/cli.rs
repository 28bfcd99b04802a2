//! The `tinyrank` binary on real data, and its handling of bad input: one line naming the file
//! and what is wrong, exit code 2, and no good output replaced.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use tinyrank_core::Checkpoint;
use tinyrank_core::burn::tensor::Device;
use tinyrank_distill::data::{Run, TextTable};

fn tinyrank(args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyrank"))
        .args(args)
        .output()
        .expect("the tinyrank binary runs")
}

/// Runs `tinyrank` and asserts success; its stdout and stderr.
fn succeeds(args: &[&str]) -> (String, String) {
    let out = tinyrank(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts a failure with exit code 2 and a one-line message containing every `needles`.
fn assert_rejected(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit code 2, stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{:?} not in {:?}",
            needle,
            lines[0]
        );
    }
}

fn eval_json(qrels: &Path, run: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["eval", "--qrels", path(qrels), "--run", path(run), "--json"];
    args.extend_from_slice(extra);
    let out = tinyrank(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_reproduces_the_published_bm25_figures() {
    // ../shared/data/README.md: BM25 on DL19 (trec_eval, grade >= 2 for the binary metrics).
    let dl19 = dl19();
    let v = eval_json(
        &dl19.join("qrels.txt"),
        &dl19.join("bm25.run"),
        &["--min-rel", "2"],
    );
    let means = &v["means"];
    for (metric, want) in [
        ("nDCG@10", 0.5058),
        ("RR@10", 0.7024),
        ("MAP", 0.2476),
        ("R@100", 0.4910),
    ] {
        let got = means[metric].as_f64().unwrap();
        assert!((got - want).abs() < 5e-5, "{metric}: {got:.4} vs {want}");
    }
    assert_eq!(v["queries"], 43);
    // DL20: trec_eval gives 0.4803. (The 0.4796 in ../shared/data/README.md orders tied scores
    // by the rank column; trec_eval orders them by document id, descending.)
    let dl20 = shared().join("data/trec-dl-2020");
    let v = eval_json(&dl20.join("qrels.txt"), &dl20.join("bm25.run"), &[]);
    assert!((v["means"]["nDCG@10"].as_f64().unwrap() - 0.4803).abs() < 5e-5);
}

#[test]
fn judged_queries_missing_from_the_run_count_as_zero_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let dl19 = dl19();
    // Keep only the first query of the run.
    let text = std::fs::read_to_string(dl19.join("bm25.run")).unwrap();
    let first = text.split_whitespace().next().unwrap().to_string();
    let one: String = text
        .lines()
        .filter(|l| l.starts_with(&format!("{first} ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let run = dir.path().join("one.run");
    std::fs::write(&run, one).unwrap();
    let qrels = dl19.join("qrels.txt");
    let all = eval_json(&qrels, &run, &[]);
    let only = eval_json(&qrels, &run, &["--judged-in-run-only"]);
    assert_eq!(all["queries"], 43);
    assert_eq!(only["queries"], 1);
    let (a, o) = (
        all["means"]["nDCG@10"].as_f64().unwrap(),
        only["means"]["nDCG@10"].as_f64().unwrap(),
    );
    assert!((a * 43.0 - o).abs() < 1e-9);
}

/// A small DL19 slice (3 queries, top-5) in a temp dir, for fast reranking with the tiny model.
struct Slice {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Slice {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let dl19 = dl19();
        let run = std::fs::read_to_string(dl19.join("bm25.run")).unwrap();
        let mut qids: Vec<String> = Vec::new();
        let mut kept = String::new();
        for line in run.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if !qids.iter().any(|q| q == f[0]) {
                if qids.len() == 3 {
                    continue;
                }
                qids.push(f[0].to_string());
            }
            if f[3].parse::<usize>().unwrap() <= 5 {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        std::fs::write(root.join("bm25.run"), kept).unwrap();
        let queries: String = std::fs::read_to_string(dl19.join("queries.tsv"))
            .unwrap()
            .lines()
            .filter(|l| qids.iter().any(|q| l.starts_with(&format!("{q}\t"))))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(root.join("queries.tsv"), queries).unwrap();
        std::fs::copy(dl19.join("collection.tsv"), root.join("collection.tsv")).unwrap();
        std::fs::copy(dl19.join("qrels.txt"), root.join("qrels.txt")).unwrap();
        Self { _dir: dir, root }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn rerank(&self, model: &Path, output: &Path) -> Output {
        self.rerank_on(model, output, "cpu")
    }

    fn rerank_on(&self, model: &Path, output: &Path, device: &str) -> Output {
        let mut args = slice_rerank_args(self, model, output);
        args.extend(["--device".to_string(), device.to_string()]);
        tinyrank(&args)
    }
}

/// `rerank` of the slice's BM25 run by `model` into `output`, for a test to add flags to.
fn slice_rerank_args(slice: &Slice, model: &Path, output: &Path) -> Vec<String> {
    let file = |name: &str| path(&slice.file(name)).to_string();
    vec![
        "rerank".into(),
        "--model".into(),
        path(model).into(),
        "--queries".into(),
        file("queries.tsv"),
        "--collection".into(),
        file("collection.tsv"),
        "--run".into(),
        file("bm25.run"),
        "--output".into(),
        path(output).into(),
    ]
}

fn tiny_model() -> PathBuf {
    golden_dir().join("tiny-2logit")
}

/// A copy of the tiny checkpoint that a test may damage.
fn tiny_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("model");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

#[test]
fn rerank_writes_a_trec_run_that_eval_reads() {
    let slice = Slice::new();
    let output = slice.file("out.run");
    let out = slice.rerank(&tiny_model(), &output);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("device: cpu"), "{stderr}");
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(text.lines().count(), 15);
    // Ranks restart at 1 per query and follow descending scores.
    let first: Vec<Vec<&str>> = text
        .lines()
        .take(5)
        .map(|l| l.split(' ').collect())
        .collect();
    assert_eq!(first[0][3], "1");
    assert!(
        first
            .windows(2)
            .all(|w| w[0][4].parse::<f64>().unwrap() >= w[1][4].parse::<f64>().unwrap())
    );
    let v = eval_json(&slice.file("qrels.txt"), &output, &["--judged-in-run-only"]);
    assert_eq!(v["queries"], 3);
}

/// `--interpolate 1` gives the first stage's order back (as trec_eval ranks it: score, then
/// document id, descending); a weight outside 0..1 is refused.
#[test]
fn rerank_interpolates_with_the_first_stage() {
    let slice = Slice::new();
    let output = slice.file("mixed.run");
    let mut args = slice_rerank_args(&slice, &tiny_model(), &output);
    args.extend(["--interpolate".to_string(), "1".to_string()]);
    let out = tinyrank(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let order = |p: &Path| -> Vec<Vec<String>> {
        let run = Run::read(p).unwrap();
        let ranked = |q: &String| run.ranked(q).iter().map(|e| e.doc_id.clone()).collect();
        run.query_ids.iter().map(ranked).collect()
    };
    assert_eq!(order(&output), order(&slice.file("bm25.run")));

    let mut args = slice_rerank_args(&slice, &tiny_model(), &slice.file("bad.run"));
    args.extend(["--interpolate".to_string(), "1.5".to_string()]);
    let out = tinyrank(&args);
    assert_rejected(&out, &["'1.5'", "--interpolate", "a weight from 0 to 1"]);
}

#[test]
fn bad_data_files_are_rejected_with_file_and_line() {
    let slice = Slice::new();
    let output = slice.file("out.run");
    std::fs::write(&output, "previous good run\n").unwrap();

    // Missing file.
    std::fs::rename(slice.file("queries.tsv"), slice.file("queries.bak")).unwrap();
    assert_rejected(&slice.rerank(&tiny_model(), &output), &["queries.tsv"]);
    std::fs::rename(slice.file("queries.bak"), slice.file("queries.tsv")).unwrap();

    let run = std::fs::read_to_string(slice.file("bm25.run")).unwrap();
    // Empty file.
    std::fs::write(slice.file("bm25.run"), "").unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["bm25.run", "empty"],
    );
    // Malformed line: a missing field on line 2.
    let mut lines: Vec<String> = run.lines().map(String::from).collect();
    lines[1] = lines[1].rsplit_once(' ').unwrap().0.to_string();
    std::fs::write(slice.file("bm25.run"), lines.join("\n")).unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["bm25.run:2", "6 fields"],
    );
    // A score that is not a number.
    let mut lines: Vec<String> = run.lines().map(String::from).collect();
    let f: Vec<&str> = run.lines().nth(2).unwrap().split(' ').collect();
    lines[2] = format!("{} Q0 {} {} high {}", f[0], f[2], f[3], f[5]);
    std::fs::write(slice.file("bm25.run"), lines.join("\n")).unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["bm25.run:3", "score"],
    );
    std::fs::write(slice.file("bm25.run"), &run).unwrap();

    // A query with no candidates.
    let queries = std::fs::read_to_string(slice.file("queries.tsv")).unwrap();
    std::fs::write(
        slice.file("queries.tsv"),
        format!("{queries}999999\tan extra query\n"),
    )
    .unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["999999", "no candidates"],
    );
    std::fs::write(slice.file("queries.tsv"), &queries).unwrap();

    // An empty passage that the run asks for.
    let first_pid = run
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .nth(2)
        .unwrap()
        .to_string();
    let collection = std::fs::read_to_string(slice.file("collection.tsv")).unwrap();
    let line_no = collection
        .lines()
        .position(|l| l.starts_with(&format!("{first_pid}\t")))
        .unwrap()
        + 1;
    let emptied: String = collection
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{first_pid}\t")) {
                format!("{first_pid}\t\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(slice.file("collection.tsv"), emptied).unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &[&format!("collection.tsv:{line_no}"), "empty"],
    );

    // Nothing above touched the previous output.
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "previous good run\n"
    );
}

#[test]
fn malformed_qrels_are_rejected_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let qrels = dir.path().join("qrels.txt");
    std::fs::write(&qrels, "1 0 d1 2\n1 0 d2 relevant\n").unwrap();
    let out = tinyrank(&[
        "eval",
        "--qrels",
        path(&qrels),
        "--run",
        path(&dl19().join("bm25.run")),
    ]);
    assert_rejected(&out, &["qrels.txt:2", "grade"]);
}

#[test]
fn bad_checkpoints_are_rejected_naming_what_is_wrong() {
    let slice = Slice::new();
    let output = slice.file("out.run");
    let dir = tempfile::tempdir().unwrap();

    // A config that does not match the weights.
    let model = tiny_copy(dir.path());
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        config.replace("\"intermediate_size\": 64", "\"intermediate_size\": 96"),
    )
    .unwrap();
    assert_rejected(
        &slice.rerank(&model, &output),
        &[
            "model.safetensors",
            "encoder.layer.0.intermediate.dense.weight",
            "[64, 32]",
            "[96, 32]",
        ],
    );
    std::fs::write(model.join("config.json"), &config).unwrap();

    // A vocabulary larger than the embedding matrix.
    let vocab = std::fs::read_to_string(model.join("vocab.txt")).unwrap();
    std::fs::write(model.join("vocab.txt"), format!("{vocab}extra1\nextra2\n")).unwrap();
    assert_rejected(&slice.rerank(&model, &output), &["vocab_size", "tokens"]);
    std::fs::write(model.join("vocab.txt"), &vocab).unwrap();

    // Truncated weights.
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(
        model.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    assert_rejected(
        &slice.rerank(&model, &output),
        &["model.safetensors", "safetensors"],
    );

    // An empty weights file, and no weights at all.
    std::fs::write(model.join("model.safetensors"), b"").unwrap();
    assert_rejected(
        &slice.rerank(&model, &output),
        &["model.safetensors", "empty"],
    );
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    assert_rejected(&slice.rerank(&model, &output), &["model.safetensors"]);
    assert!(!output.exists());
}

#[test]
fn export_round_trips_in_f32_and_f16_and_averages() {
    let dir = tempfile::tempdir().unwrap();
    let slice = Slice::new();
    let reference = slice.file("reference.run");
    assert!(slice.rerank(&tiny_model(), &reference).status.success());
    let one = path(&tiny_model()).to_string();
    // The mean of a checkpoint with itself is that checkpoint, bit for bit.
    let twice = format!("{one},{one}");
    for (name, models, dtype) in [
        ("f32", &one, "f32"),
        ("f16", &one, "f16"),
        ("soup", &twice, "f32"),
    ] {
        let exported = dir.path().join(name);
        let out = tinyrank(&[
            "export",
            "--model",
            models,
            "--out",
            path(&exported),
            "--dtype",
            dtype,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = slice.file(&format!("{name}.run"));
        assert!(slice.rerank(&exported, &run).status.success());
        // The tiny checkpoint is stored in f16, so both exports keep its scores exactly.
        let scores = |p: &Path| -> Vec<String> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| l.split(' ').nth(4).unwrap().to_string())
                .collect()
        };
        assert_eq!(scores(&run), scores(&reference), "{name}");
    }
}

#[test]
fn distill_without_assets_says_where_to_point() {
    let out = tinyrank(&["distill", "--assets", "/nonexistent-assets"]);
    assert_rejected(&out, &["--assets", "TINYRANK_SHARED"]);
}

/// Augmentation over the real training collections: a dataset directory with the asked number of
/// queries, none of DL19's passages or queries in it, and an existing directory left alone.
#[test]
fn augment_writes_training_data_without_the_evaluation_set() {
    let dir = tempfile::tempdir().unwrap();
    let (out, assets) = (dir.path().join("aug"), shared());
    let args = [
        "augment",
        "--assets",
        path(&assets),
        "--out",
        path(&out),
        "--queries",
        "40",
        "--top-k",
        "4",
        "--label-source",
    ];
    succeeds(&args);
    let read = |dir: &Path, name: &str, what: &str| TextTable::read(&dir.join(name), what).unwrap();
    let queries = read(&out, "queries.tsv", "query");
    assert_eq!(queries.len(), 40);
    let lines = |name: &str| {
        std::fs::read_to_string(out.join(name))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((lines("bm25.run"), lines("qrels.txt")), (160, 40));
    let held_out = read(&dl19(), "collection.tsv", "passage");
    let held_out: std::collections::HashSet<&str> = held_out.iter().map(|(_, t)| t).collect();
    let pool = read(&out, "collection.tsv", "passage");
    assert!(pool.len() > 10_000);
    assert!(pool.iter().all(|(_, text)| !held_out.contains(text)));
    let dl19_queries = read(&dl19(), "queries.tsv", "query");
    let generated: Vec<&str> = queries.iter().map(|(_, q)| q).collect();
    assert!(dl19_queries.iter().all(|(_, q)| !generated.contains(&q)));
    let before = std::fs::read(out.join("bm25.run")).unwrap();
    assert_rejected(&tinyrank(&args), &[path(&out), "already exists"]);
    assert_eq!(std::fs::read(out.join("bm25.run")).unwrap(), before);
}

/// `distill --augment`: pseudo-queries over the training collections join the examples, each
/// with --train-top-k candidates, and the evaluation set's passages stay out.
#[test]
fn distill_trains_on_augmented_queries() {
    let out = tempfile::tempdir().unwrap();
    let (teacher, assets) = (golden_dir().join("tiny-2logit"), shared());
    let train = assets.join("data/trec-dl-2020");
    let args = [
        "distill",
        "--teacher",
        path(&teacher),
        "--student",
        "teacher-layers:1",
        "--train",
        path(&train),
        "--train-top-k",
        "2",
        "--augment",
        "8",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--max-len",
        "32",
        "--no-eval",
        "--device",
        "cpu",
        "--out",
        path(out.path()),
    ];
    let (_, stderr) = succeeds(&args);
    assert!(
        stderr.contains("augmentation: 16 pairs of 8 pseudo-queries"),
        "{stderr}"
    );
    let held_out = stderr.contains("held out by") && stderr.contains("trec-dl-2019");
    assert!(held_out, "{stderr}");
    // 54 DL20 queries with 2 candidates each, and the 16 augmented pairs.
    assert!(stderr.contains("with 124 examples"), "{stderr}");
}

/// A DL20 slice for training in seconds: its first 3 queries, their BM25 top 6, and a
/// collection of those passages and up to 10 judged passages per query.
fn small_training_set(dir: &Path) -> PathBuf {
    let dl20 = shared().join("data/trec-dl-2020");
    let root = dir.join("dl20-slice");
    std::fs::create_dir_all(&root).unwrap();
    let read = |name: &str| std::fs::read_to_string(dl20.join(name)).unwrap();
    let mut qids: Vec<String> = Vec::new();
    let mut keep: std::collections::HashSet<String> = Default::default();
    let mut run = String::new();
    for line in read("bm25.run").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !qids.iter().any(|q| q == f[0]) && qids.len() < 3 {
            qids.push(f[0].to_string());
        }
        if qids.iter().any(|q| q == f[0]) && f[3].parse::<usize>().unwrap() <= 6 {
            run.push_str(&format!("{line}\n"));
            keep.insert(f[2].to_string());
        }
    }
    let mut qrels = String::new();
    for q in &qids {
        let judged = read("qrels.txt");
        let lines = judged.lines().filter(|l| l.starts_with(&format!("{q} ")));
        for line in lines.take(10) {
            keep.insert(line.split_whitespace().nth(2).unwrap().to_string());
            qrels.push_str(&format!("{line}\n"));
        }
    }
    let starts_with_one_of = |text: &str, ids: &dyn Fn(&str) -> bool| {
        text.lines()
            .filter(|l| ids(l.split('\t').next().unwrap()))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let queries = starts_with_one_of(&read("queries.tsv"), &|id| qids.iter().any(|q| q == id));
    let collection = starts_with_one_of(&read("collection.tsv"), &|id| keep.contains(id));
    for (name, text) in [
        ("bm25.run", run),
        ("qrels.txt", qrels),
        ("queries.tsv", queries),
        ("collection.tsv", collection),
    ] {
        std::fs::write(root.join(name), text).unwrap();
    }
    root
}

/// A cross-encoder fine-tuned from the pretrained encoder (a teacher in the making): hard
/// negatives mined by the bi-encoder, graded listwise and prior terms (the prior an ensemble of
/// the bi-encoder and the teacher), and the bi-encoder as a row of the comparison.
#[test]
fn distill_fine_tunes_an_encoder_on_mined_negatives_and_bi_encoder_scores() {
    let out = tempfile::tempdir().unwrap();
    let train = small_training_set(out.path());
    let slice = Slice::new();
    let (encoder, teacher) = (encoder_dir(), tiny_model());
    let run_dir = out.path().join("run");
    let args = [
        "distill",
        "--method",
        "fine-tune",
        "--teacher",
        path(&teacher),
        "--student",
        path(&encoder),
        "--train",
        path(&train),
        "--train-top-k",
        "4",
        "--mine-top-k",
        "4",
        "--prior-teacher",
        "0.5",
        "--group-size",
        "4",
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--max-len",
        "48",
        "--eval",
        path(&slice.root),
        "--eval-top-k",
        "5",
        "--device",
        "cpu",
        "--out",
        path(&run_dir),
    ];
    let (stdout, stderr) = succeeds(&args);
    assert!(stderr.contains("passages embedded"), "{stderr}");
    let mined: usize = stderr
        .split("mined: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(mined > 0, "{stderr}");
    assert!(stderr.contains("mixed in at 0.5"), "{stderr}");
    assert!(stdout.contains("| bi-encoder |"), "{stdout}");
    assert!(stdout.contains("| student (fine-tune) |"), "{stdout}");
    let log = std::fs::read_to_string(run_dir.join("log.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    for term in ["graded", "prior"] {
        let value = first["terms"][term].as_f64().unwrap();
        assert!(value.is_finite() && value >= 0.0, "{term}: {value}");
    }
    let trained = Checkpoint::load(&run_dir.join("student"), &Device::flex()).unwrap();
    assert_eq!(trained.model.num_layers(), 6);

    let missing = out.path().join("no-bi-encoder");
    let bad_args = [&args[..], &["--bi-encoder", path(&missing)]].concat();
    assert_rejected(&tinyrank(&bad_args), &["no-bi-encoder"]);
    let other_method = args.map(|a| if a == "fine-tune" { "simplified" } else { a });
    assert_rejected(&tinyrank(&other_method), &["--prior-teacher", "fine-tune"]);
}

/// A dense first stage: every passage of the collection ranked by the bi-encoder, written as a
/// run that `eval` reads; the first hit is the passage the library's embeddings put first.
#[test]
fn retrieve_ranks_a_whole_collection_with_the_bi_encoder() {
    use tinyrank_core::BiEncoder;
    use tinyrank_core::bi_encoder::{BI_ENCODER_MAX_LEN, dot};

    let dir = tempfile::tempdir().unwrap();
    let data = small_training_set(dir.path());
    let output = dir.path().join("dense.run");
    let (queries, collection) = (data.join("queries.tsv"), data.join("collection.tsv"));
    let encoder = encoder_dir();
    let args = [
        "retrieve",
        "--model",
        path(&encoder),
        "--queries",
        path(&queries),
        "--collection",
        path(&collection),
        "--output",
        path(&output),
        "--top-k",
        "5",
    ];
    succeeds(&args);
    let run = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<Vec<&str>> = run.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 3 * 5);
    let scores: Vec<f32> = lines[..5].iter().map(|f| f[4].parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0);

    let bi = BiEncoder::load(&encoder, BI_ENCODER_MAX_LEN).unwrap();
    let passages = TextTable::read(&collection, "passage").unwrap();
    let queries = TextTable::read(&queries, "query").unwrap();
    let (qid, query) = queries.iter().find(|(q, _)| *q == lines[0][0]).unwrap();
    let q = bi.embed(&[query]).unwrap().remove(0);
    let (ids, texts): (Vec<&str>, Vec<&str>) = passages.iter().unzip();
    let sims: Vec<f32> = bi
        .embed(&texts)
        .unwrap()
        .iter()
        .map(|p| dot(&q, p))
        .collect();
    let best = (0..sims.len())
        .max_by(|&a, &b| sims[a].total_cmp(&sims[b]))
        .unwrap();
    assert_eq!((lines[0][0], lines[0][2]), (qid, ids[best]));
    eval_json(&data.join("qrels.txt"), &output, &[]);

    // --run: only each query's BM25 candidates, rescored, the best of them first.
    let bm25_path = data.join("bm25.run");
    let bm25 = Run::read(&bm25_path).unwrap();
    let rescored_path = dir.path().join("rescored.run");
    let with_run: Vec<&str> = (args.iter())
        .map(|&a| {
            if a == path(&output) {
                path(&rescored_path)
            } else {
                a
            }
        })
        .chain(["--run", path(&bm25_path)])
        .collect();
    succeeds(&with_run);
    let rescored = Run::read(&rescored_path).unwrap();
    let candidates =
        |q: &str| -> Vec<&str> { bm25.results[q].iter().map(|e| e.doc_id.as_str()).collect() };
    let mine = candidates(qid);
    let best_candidate = (0..ids.len())
        .filter(|&i| mine.contains(&ids[i]))
        .max_by(|&a, &b| sims[a].total_cmp(&sims[b]))
        .unwrap();
    assert_eq!(rescored.ranked(qid)[0].doc_id, ids[best_candidate]);
    for q in &bm25.query_ids {
        let kept = rescored.ranked(q);
        assert_eq!(kept.len(), 5);
        assert!(
            kept.iter()
                .all(|e| candidates(q).contains(&e.doc_id.as_str()))
        );
    }
    // A candidate the collection lacks fails before the model loads, naming the file.
    let stray = dir.path().join("stray.run");
    std::fs::write(&stray, format!("{qid} Q0 no-such-passage 1 1.0 x\n")).unwrap();
    let with_stray: Vec<&str> = (args.iter().copied())
        .chain(["--run", path(&stray)])
        .collect();
    assert_rejected(
        &tinyrank(&with_stray),
        &["collection.tsv", "no passage with id no-such-passage"],
    );
}

/// The whole `distill` job on the tiny test checkpoints: train, export, compare, and a second run
/// of the same command that finds the finished checkpoint and only evaluates.
/// `distill` of a 1-layer student of the tiny 2-logit teacher on DL19's BM25 top 2, 3 steps of 4.
fn tiny_distill<'a>(teacher: &'a Path, data: &'a Path) -> Vec<&'a str> {
    vec![
        "distill",
        "--teacher",
        path(teacher),
        "--student",
        "teacher-layers:1",
        "--train",
        path(data),
        "--train-top-k",
        "2",
        "--steps",
        "3",
        "--batch-size",
        "4",
    ]
}

#[test]
fn distill_trains_exports_and_compares() {
    let out = tempfile::tempdir().unwrap();
    let (teacher, data) = (golden_dir().join("tiny-2logit"), dl19());
    let mut args = tiny_distill(&teacher, &data);
    args.extend([
        "--eval",
        path(&data),
        "--eval-top-k",
        "2",
        "--max-len",
        "64",
        "--device",
        "cpu",
        "--dev",
        path(&data),
        "--dev-top-k",
        "2",
        "--eval-every",
        "2",
        "--out",
        path(out.path()),
    ]);
    let (stdout, stderr) = succeeds(&args);
    assert!(stdout.contains("| BM25 | 0.5058 |"), "{stdout}");
    assert!(stdout.contains("| teacher |") && stdout.contains("| student (simplified) |"));
    assert!(stderr.contains("dev nDCG@10"), "{stderr}");
    // Explicit training sets get no augmentation unless asked for.
    assert!(!stderr.contains("augmentation:"), "{stderr}");
    for file in [
        "results.md",
        "log.jsonl",
        "loss.svg",
        "student/config.json",
        "best/config.json",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    let student = Checkpoint::load(&out.path().join("student"), &Device::flex()).unwrap();
    assert_eq!(student.model.num_layers(), 1);

    let again = tinyrank(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming from") && stderr.contains("at step 3"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(out.path().join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);

    let bad = tinyrank(&[&args[..], &["--method", "listwise", "--group-size", "3"]].concat());
    assert_rejected(&bad, &["multiple of the group size"]);
}

#[test]
fn distill_profiles_where_a_step_goes() {
    let out = tempfile::tempdir().unwrap();
    let (teacher, data) = (golden_dir().join("tiny-2logit"), dl19());
    let mut args = tiny_distill(&teacher, &data);
    args.extend([
        "--max-len",
        "64",
        "--pad-to",
        "32",
        "--no-eval",
        "--device",
        "cpu",
        "--profile",
        "--out",
        path(out.path()),
    ]);
    let (stdout, _) = succeeds(&args);
    for phase in [
        "teacher forward",
        "student forward",
        "backward",
        "clipping and AdamW",
    ] {
        assert!(
            stdout.contains(&format!("| {phase} |")),
            "{phase}: {stdout}"
        );
    }
    assert!(stdout.contains("(2 steps after the first"), "{stdout}");
    // Every step is logged, with its values read back from the device and in time order.
    let log = std::fs::read_to_string(out.path().join("log.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(steps.len(), 3);
    let elapsed: Vec<f64> = steps
        .iter()
        .map(|s| s["elapsed_s"].as_f64().unwrap())
        .collect();
    assert!(elapsed.windows(2).all(|w| w[0] <= w[1]), "{elapsed:?}");
    assert!(steps.iter().all(|s| {
        let (loss, norm) = (
            s["loss"].as_f64().unwrap(),
            s["grad_norm"].as_f64().unwrap(),
        );
        loss.is_finite() && loss > 0.0 && norm.is_finite() && norm > 0.0
    }));
}

#[test]
fn triples_read_and_malformed_triples_are_located() {
    let triples = tinyrank_distill::data::read_triples(
        &shared().join("data/msmarco-triples-sample/triples.tsv"),
    )
    .unwrap();
    assert_eq!(triples.len(), 100);
    assert!(
        triples
            .iter()
            .all(|t| !t.query.is_empty() && t.positive != t.negative)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("triples.tsv");
    std::fs::write(&bad, "q\tpos\tneg\nq\tonly positive\n").unwrap();
    let e = tinyrank_distill::data::read_triples(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("triples.tsv:2") && e.contains("3 tab-separated fields"),
        "{e}"
    );
}

#[test]
fn training_examples_carry_labels_from_qrels_and_none_without() {
    use tinyrank_distill::examples::{from_dataset, from_documents, from_triples};
    // Cranfield as documents: every window carries its document's label.
    let windows = tinyrank_core::WordWindows::new(100, 50).unwrap();
    let title = tinyrank_core::TitleSource::None;
    let docs = from_documents(&shared().join("data/cranfield"), 5, 1, windows, title).unwrap();
    assert_eq!(docs.len(), 225 * 5);
    let qrels =
        tinyrank_distill::data::Qrels::read(&shared().join("data/cranfield/qrels.txt")).unwrap();
    for d in &docs {
        let q = &d.passages[0].query_id;
        let relevant = qrels.grade(q, &d.doc_id).is_some_and(|g| g >= 1);
        assert_eq!(d.label, Some(u8::from(relevant)));
        assert!(
            d.passages
                .iter()
                .all(|p| p.label == d.label && &p.query_id == q)
        );
    }
    assert!(docs.iter().any(|d| d.passages.len() > 1) && docs.iter().any(|d| d.label == Some(1)));
    let dl20 = from_dataset(&shared().join("data/trec-dl-2020"), 100, 2).unwrap();
    assert_eq!(dl20.len(), 5400);
    let positives = dl20.iter().filter(|e| e.label == Some(1)).count();
    assert!(positives > 0 && positives < dl20.len(), "{positives}");
    assert!(dl20.iter().all(|e| e.label.is_some()));
    // A lower threshold can only add positives.
    let loose = from_dataset(&shared().join("data/trec-dl-2020"), 100, 1).unwrap();
    assert!(loose.iter().filter(|e| e.label == Some(1)).count() > positives);
    // trec-dl-2022 has no qrels: teacher signal only.
    let dl22 = from_dataset(&shared().join("data/trec-dl-2022"), 10, 2).unwrap();
    assert_eq!(dl22.len(), 760);
    assert!(dl22.iter().all(|e| e.label.is_none()));
    let triples = from_triples(&shared().join("data/msmarco-triples-sample/triples.tsv")).unwrap();
    assert_eq!(triples.len(), 200);
    assert_eq!((triples[0].label, triples[1].label), (Some(1), Some(0)));
}

#[test]
fn auto_device_picks_something_and_says_why() {
    let slice = Slice::new();
    let out = slice.rerank_on(&tiny_model(), &slice.file("auto.run"), "auto");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // A hardware GPU, or the CPU with the reason (no adapter, or only a software one).
    let device = stderr
        .lines()
        .find(|l| l.starts_with("device: "))
        .expect("the device is named");
    assert!(
        device.starts_with("device: gpu") || device.contains("; "),
        "{device}"
    );
}

/// Document reranking on Cranfield (real abstracts up to 670 words): passage windows, one score
/// per document, MaxP >= FirstP for every document, and bad windows refused.
#[test]
fn documents_are_reranked_from_their_passages() {
    let cranfield = shared().join("data/cranfield");
    let out = tempfile::tempdir().unwrap();
    let rerank_docs = |mode: &str, window: &str, stride: &str| {
        let output = out.path().join(format!("{mode}-{window}-{stride}.run"));
        let result = tinyrank(&[
            "rerank",
            "--model",
            path(&tiny_model()),
            "--queries",
            path(&cranfield.join("queries.tsv")),
            "--collection",
            path(&cranfield.join("collection.tsv")),
            "--run",
            path(&cranfield.join("bm25.run")),
            "--top-k",
            "3",
            "--max-len",
            "96",
            "--doc-mode",
            mode,
            "--window",
            window,
            "--stride",
            stride,
            "--device",
            "cpu",
            "--output",
            path(&output),
        ]);
        (result, output)
    };
    let scores = |run: &Path| -> std::collections::HashMap<(String, String), f64> {
        std::fs::read_to_string(run)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                ((f[0].into(), f[2].into()), f[4].parse().unwrap())
            })
            .collect()
    };
    // Two modes from one scoring pass: one run each.
    let (both, output) = rerank_docs("maxp,firstp", "50", "25");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(both.status.success(), "{stderr}");
    assert!(stderr.contains("675 documents as"), "{stderr}");
    let with_suffix = |mode: &str| PathBuf::from(format!("{}.{mode}", output.display()));
    let (max, first) = (scores(&with_suffix("maxp")), scores(&with_suffix("firstp")));
    let (single, single_run) = rerank_docs("maxp", "50", "25");
    assert!(single.status.success());
    assert_eq!(scores(&single_run), max);
    assert_eq!(max.len(), 225 * 3);
    assert!(first.iter().all(|(k, f)| max[k] >= *f - 1e-6));
    assert!(
        first.iter().any(|(k, f)| max[k] > *f + 1e-4),
        "some document has a better later passage"
    );

    // Token windows with the title before each: more passages than 50-word windows (each holds
    // what fits beside the query), every document scored.
    let (fill, fill_run) = rerank_docs("maxp", "fill", "40");
    let stderr = String::from_utf8_lossy(&fill.stderr);
    assert!(fill.status.success(), "{stderr}");
    assert!(
        stderr.contains("tokens filling max-len 96, stride 40"),
        "{stderr}"
    );
    assert_eq!(scores(&fill_run).len(), 225 * 3);

    let (zero, _) = rerank_docs("maxp", "50", "0");
    assert_rejected(&zero, &["stride"]);
    let (wide, _) = rerank_docs("maxp", "50", "60");
    assert_rejected(&wide, &["stride", "skip"]);
    let (bad, _) = rerank_docs("bestp", "50", "25");
    assert_rejected(&bad, &["maxp", "firstp"]);
    let (zero_fill, _) = rerank_docs("maxp", "fill", "0");
    assert_rejected(&zero_fill, &["stride"]);
    let (words, _) = rerank_docs("maxp", "many", "1");
    assert_rejected(&words, &["--window", "fill"]);
}

/// Awkward documents: an empty one ranks last (its candidates keep their order), one enormous
/// token is one passage, and windows longer than max length are cut with a note saying so.
#[test]
fn empty_and_enormous_documents_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cranfield =
        TextTable::read(&shared().join("data/cranfield/collection.tsv"), "passage").unwrap();
    let queries = file("queries.tsv", "1\tshock waves on a swept wing\n");
    let collection = file(
        "collection.tsv",
        &format!(
            "a\t{}\nempty\t\nhuge\t{}\nb\t{}\n",
            cranfield.get("1").unwrap(),
            "y".repeat(50_000),
            cranfield.get("2").unwrap()
        ),
    );
    let run = file(
        "run",
        "1 Q0 empty 1 9 bm25\n1 Q0 a 2 8 bm25\n1 Q0 huge 3 7 bm25\n1 Q0 b 4 6 bm25\n",
    );
    let output = dir.path().join("out.run");
    let model = tiny_model();
    let rerank = |extra: &[&str]| {
        let inputs = [
            "rerank",
            "--model",
            path(&model),
            "--queries",
            path(&queries),
            "--collection",
            path(&collection),
            "--run",
            path(&run),
            "--device",
            "cpu",
            "--output",
            path(&output),
        ];
        tinyrank(&[&inputs[..], extra].concat())
    };
    let out = rerank(&["--max-len", "64", "--doc-mode", "maxp", "--window", "150"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 candidate documents have no text"),
        "{stderr}"
    );
    assert!(
        stderr.contains("longer than max-len 64 and were cut"),
        "{stderr}"
    );
    let ranked: Vec<String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap().to_string())
        .collect();
    assert_eq!(ranked.len(), 4);
    assert_eq!(ranked[3], "empty");
    // Passage reranking still refuses an empty passage, naming its line.
    let passages = rerank(&[]);
    assert_rejected(&passages, &["collection.tsv:2", "empty"]);
}

/// `distill` on documents: Cranfield abstracts cut into windows, the teacher keeping the best
/// passage of each relevant document.
#[test]
fn distill_trains_on_document_passages() {
    let out = tempfile::tempdir().unwrap();
    let teacher = golden_dir().join("tiny-2logit");
    let cranfield = shared().join("data/cranfield");
    let args = |passages: &str| {
        tinyrank(&[
            "distill",
            "--teacher",
            path(&teacher),
            "--student",
            "teacher-layers:1",
            "--train-docs",
            path(&cranfield),
            "--train-top-k",
            "3",
            "--doc-window",
            "40",
            "--doc-stride",
            "20",
            "--doc-title",
            "first-sentence",
            "--doc-passages",
            passages,
            "--min-rel",
            "1",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--max-len",
            "64",
            "--no-eval",
            "--device",
            "cpu",
            "--out",
            path(&out.path().join(passages)),
        ])
    };
    let all = args("all");
    let stderr = String::from_utf8_lossy(&all.stderr);
    assert!(all.status.success(), "{stderr}");
    assert!(out.path().join("all/student/config.json").is_file());
    let best = args("teacher-best");
    let best_err = String::from_utf8_lossy(&best.stderr);
    assert!(best.status.success(), "{best_err}");
    assert!(best_err.contains("teacher-best: kept"), "{best_err}");
    let examples = |stderr: &str| -> usize {
        let at = stderr
            .find(" examples,")
            .expect("the example count is reported");
        stderr[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        examples(&best_err) < examples(&stderr),
        "the filter drops passages"
    );
}

/// `tinyrank bench` measures each case in a child process: synthetic shapes on both CPU paths,
/// then a real checkpoint on real DL19 text, each row in the table and the JSON file.
#[test]
fn bench_measures_shapes_and_real_text() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.jsonl");
    let common = [
        "--devices",
        "cpu",
        "--batch-size",
        "4",
        "--repeats",
        "2",
        "--warmup",
        "1",
    ];
    let mut args = vec!["bench", "--shapes", "2/128,3/384", "--lengths", "32"];
    args.extend(common);
    args.extend(["--cpu-paths", "fast,int8", "--json", path(&json)]);
    let (table, _) = succeeds(&args);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cases: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["device"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cases,
        [
            ("2/128", "cpu"),
            ("2/128", "cpu-int8"),
            ("3/384", "cpu"),
            ("3/384", "cpu-int8")
        ]
    );
    for r in &rows {
        assert!(r["median_pairs_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["rates"].as_array().unwrap().len(), 2);
        assert_eq!(r["weights"], "random");
    }
    // The 3/384 rows are the table's baseline: 1.00x beside themselves.
    assert!(
        table.lines().filter(|l| l.ends_with("| 1.00x |")).count() == 2,
        "{table}"
    );

    let (teacher, dl19) = (teacher_dir(), dl19());
    let mut args = vec!["bench", "--model", path(&teacher), "--text", path(&dl19)];
    args.extend(common);
    args.extend([
        "--text-queries",
        "1",
        "--lengths",
        "64",
        "--cpu-paths",
        "fast",
    ]);
    args.extend(["--json", path(&json)]);
    let (table, _) = succeeds(&args);
    let row: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
    assert_eq!(row["model"], "6/384", "{row}");
    assert_eq!(row["weights"], "real");
    assert_eq!(row["pairs"], 100, "one query's top 100");
    assert!(
        row["len"].as_str().unwrap().starts_with("text<=64 (mean "),
        "{row}"
    );
    assert!(table.contains("6/384"), "{table}");
}
