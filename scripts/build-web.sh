#!/usr/bin/env bash
# Builds the npm package in web/: tinyrank-wasm compiled by wasm-pack (wasm-bindgen from
# crates.io, no downloads) into web/pkg, optimised by wasm-opt from npm's binaryen.
# wasm-opt takes minutes on the ~40 MB module, so the result is kept beside the Cargo build
# cache, keyed by everything that goes into it, and reused when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x web/node_modules/.bin/wasm-opt ]; then
  (cd web && npm ci --no-audit --no-fund)
fi
export PATH="$PWD/web/node_modules/.bin:$PATH"

key=$(cat Cargo.lock Cargo.toml .cargo/config.toml web/package-lock.json \
        $(git ls-files crates/tinyrank-core crates/tinyrank-wasm 2>/dev/null || find crates/tinyrank-core crates/tinyrank-wasm -type f | sort) \
      | sha256sum | cut -c1-16)
cache="${CARGO_TARGET_DIR:-$PWD/target}/web-pkg/$key"
if [ -f "$cache/tinyrank_wasm_bg.wasm" ]; then
  echo "web/pkg: unchanged inputs, reusing $cache"
  rm -rf web/pkg && cp -r "$cache" web/pkg
else
  wasm-pack build crates/tinyrank-wasm --release --target web --mode no-install \
    --out-dir ../../web/pkg --out-name tinyrank_wasm --no-pack
  rm -rf "$(dirname "$cache")" && mkdir -p "$(dirname "$cache")" && cp -r web/pkg "$cache"
fi
ls -l web/pkg/tinyrank_wasm_bg.wasm
