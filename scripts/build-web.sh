#!/usr/bin/env bash
# Builds the npm package in web/: tinyrank-wasm compiled by wasm-pack (wasm-bindgen from
# crates.io, no downloads) into web/pkg, optimised by wasm-opt from npm's binaryen.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x web/node_modules/.bin/wasm-opt ]; then
  (cd web && npm ci --no-audit --no-fund)
fi
export PATH="$PWD/web/node_modules/.bin:$PATH"
wasm-pack build crates/tinyrank-wasm --release --target web --mode no-install \
  --out-dir ../../web/pkg --out-name tinyrank_wasm --no-pack
ls -l web/pkg/tinyrank_wasm_bg.wasm
