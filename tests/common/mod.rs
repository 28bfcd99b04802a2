//! Helpers shared by the integration tests of every crate (each includes this file with
//! `#[path]`): where the real assets are, golden files, plain TSV and run readers for the crates
//! below tinyrank-distill, and devices.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tinyrank_core::burn::tensor::Device;
use tinyrank_core::{DeviceChoice, SelectedDevice, select_device};

/// The repository root: the nearest folder above the crate that holds Cargo.lock.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the crate lies inside the repository")
        .to_path_buf()
}

/// The shared assets (models/, data/): `$TINYRANK_SHARED`, else `../shared` beside the repo.
pub fn shared() -> PathBuf {
    std::env::var_os("TINYRANK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
}

pub fn teacher_dir() -> PathBuf {
    shared().join("models/teacher-minilm-l6")
}

pub fn encoder_dir() -> PathBuf {
    shared().join("models/all-MiniLM-L6-v2")
}

pub fn dl19() -> PathBuf {
    shared().join("data/trec-dl-2019")
}

pub fn golden_dir() -> PathBuf {
    repo_root().join("tests/golden")
}

/// The rows of an `id<TAB>text` file, in file order.
pub fn tsv_rows(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("a TSV file of the shared assets");
    text.lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(id, text)| (id.to_string(), text.to_string()))
        .collect()
}

/// An `id<TAB>text` file by id.
pub fn tsv(path: &Path) -> HashMap<String, String> {
    tsv_rows(path).into_iter().collect()
}

/// The first `queries` queries of a dataset's `bm25.run` (file order) with the texts of their
/// `k` best passages, best first.
pub fn bm25_candidates(dir: &Path, queries: usize, k: usize) -> Vec<(String, Vec<String>)> {
    let texts = tsv(&dir.join("queries.tsv"));
    let collection = tsv(&dir.join("collection.tsv"));
    let run = std::fs::read_to_string(dir.join("bm25.run")).expect("a bm25.run");
    let mut order: Vec<String> = Vec::new();
    let mut ranked: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    for line in run.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [qid, _, pid, rank, ..] = fields[..] else {
            continue;
        };
        if !ranked.contains_key(qid) {
            order.push(qid.to_string());
        }
        let rank = rank.parse().expect("a rank");
        ranked
            .entry(qid.into())
            .or_default()
            .push((rank, pid.into()));
    }
    order
        .into_iter()
        .take(queries)
        .map(|qid| {
            let mut entries = ranked.remove(&qid).unwrap_or_default();
            entries.sort();
            let passages = entries
                .into_iter()
                .take(k)
                .map(|(_, pid)| collection[&pid].clone())
                .collect();
            (texts[&qid].clone(), passages)
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// burn's CPU device, as `--device cpu` selects it.
pub fn cpu() -> SelectedDevice {
    SelectedDevice::cpu("")
}

/// The wgpu device, or None (test skipped, said on stderr) when this machine has no adapter.
/// CI sets TINYRANK_REQUIRE_GPU=1 so that a missing adapter fails instead.
pub fn gpu_device() -> Option<Device> {
    gpu().map(|selected| selected.device)
}

/// The selected wgpu device, or None as for [`gpu_device`].
pub fn gpu() -> Option<SelectedDevice> {
    match select_device(DeviceChoice::Gpu) {
        Ok(selected) => {
            eprintln!("wgpu device: {}", selected.description);
            Some(selected)
        }
        Err(e) if std::env::var_os("TINYRANK_REQUIRE_GPU").is_none() => {
            eprintln!("skipping the wgpu check: {e}");
            None
        }
        Err(e) => panic!("TINYRANK_REQUIRE_GPU is set but {e}"),
    }
}
