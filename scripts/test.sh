#!/usr/bin/env bash
# Every test tinyrank has: the core crate's wasm32 build check, then the Rust suites (unit,
# parity with transformers on CPU and wgpu, real-data CLI tests), in release mode so the real
# models run at speed. Assets come from ../shared or $TINYRANK_SHARED.
set -euo pipefail
cd "$(dirname "$0")/.."
export TINYRANK_SHARED="${TINYRANK_SHARED:-$(cd .. && pwd)/shared}"

echo "== tinyrank-core compiles for wasm32 (WebGPU + CPU backends)"
cargo check --target wasm32-unknown-unknown -p tinyrank-core --features webgpu

echo "== Rust tests"
cargo test --release --workspace
