//! Running the binary and the small inputs the CLI tests share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

pub fn tinyrank(args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyrank"))
        .args(args)
        .output()
        .expect("the tinyrank binary runs")
}

/// Runs `tinyrank` and asserts success; its stdout and stderr.
pub fn succeeds(args: &[&str]) -> (String, String) {
    let out = tinyrank(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts a failure with exit code 2 and a one-line message containing every `needles`.
pub fn assert_rejected(out: &Output, needles: &[&str]) {
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

pub fn eval_json(qrels: &Path, run: &Path, extra: &[&str]) -> serde_json::Value {
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

/// A small DL19 slice (3 queries, top-5) in a temp dir, for fast reranking with the tiny model.
pub struct Slice {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Slice {
    pub fn new() -> Self {
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

    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn rerank(&self, model: &Path, output: &Path) -> Output {
        self.rerank_on(model, output, "cpu")
    }

    pub fn rerank_on(&self, model: &Path, output: &Path, device: &str) -> Output {
        let mut args = slice_rerank_args(self, model, output);
        args.extend(["--device".to_string(), device.to_string()]);
        tinyrank(&args)
    }
}

/// `rerank` of the slice's BM25 run by `model` into `output`, for a test to add flags to.
pub fn slice_rerank_args(slice: &Slice, model: &Path, output: &Path) -> Vec<String> {
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

pub fn tiny_model() -> PathBuf {
    golden_dir().join("tiny-2logit")
}

/// A copy of the tiny checkpoint that a test may damage.
pub fn tiny_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("model");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

/// A DL20 slice for training in seconds: its first 3 queries, their BM25 top 6, and a
/// collection of those passages and up to 10 judged passages per query.
pub fn small_training_set(dir: &Path) -> PathBuf {
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

/// The whole `distill` job on the tiny test checkpoints: train, export, compare, and a second run
/// of the same command that finds the finished checkpoint and only evaluates.
/// `distill` of a 1-layer student of the tiny 2-logit teacher on DL19's BM25 top 2, 3 steps of 4.
pub fn tiny_distill<'a>(teacher: &'a Path, data: &'a Path) -> Vec<&'a str> {
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
