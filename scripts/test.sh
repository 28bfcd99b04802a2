#!/usr/bin/env bash
# Every test tinyrank has: the lint gates (rustfmt, clippy on native and wasm32 with the
# workspace's [workspace.lints] as errors), the Rust suites (unit, parity with transformers on CPU and wgpu,
# real-data CLI tests) in release mode so that the real models run at speed, then the npm
# package built for wasm32 and tested from Node and in headless Chromium (WebGPU through
# SwiftShader, and the CPU fallback). Assets come from ../shared or $TINYRANK_SHARED.
set -euo pipefail
cd "$(dirname "$0")/.."
# Absolute, since each crate's tests run in its own folder.
TINYRANK_SHARED="${TINYRANK_SHARED:-../shared}"
[ -d "$TINYRANK_SHARED" ] || { echo "no shared assets at $TINYRANK_SHARED (set TINYRANK_SHARED)" >&2; exit 1; }
export TINYRANK_SHARED="$(cd "$TINYRANK_SHARED" && pwd)"

echo "== Gates: rustfmt, clippy (native, wasm32)"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets
cargo clippy --release --target wasm32-unknown-unknown -p tinyrank-wasm

echo "== Rust tests"
cargo test --release --workspace

echo "== npm package: build (wasm-pack) and test (Node, Chromium)"
./scripts/build-web.sh
export TINYRANK_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tinyrank"
(cd web && npm test)
