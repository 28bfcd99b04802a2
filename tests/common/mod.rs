//! Helpers shared by the integration tests: where the real assets are, and golden files.
#![allow(dead_code)]

use std::path::PathBuf;

use tinyrank_core::burn::tensor::Device;
use tinyrank_core::{DeviceChoice, SelectedDevice, select_device};

/// The shared assets (models/, data/): `$TINYRANK_SHARED`, else `../shared` beside the repo.
pub fn shared() -> PathBuf {
    std::env::var_os("TINYRANK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
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
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
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
