#!/usr/bin/env bash
# Sampling benchmark: native (Burn flex) and in headless Chromium (the CPU pool in wasm and WebGPU,
# in workers), the served build's sizes, the pool's scaling, the CPU-path ratio, the longest
# main-thread task and the explainer's sweep time. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-tools.sh --browser
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) =="
mkdir -p .cache
cargo run --release --locked --bin bench -- --steps "${BENCH_STEPS:-20}" | tee .cache/bench-native.txt
export NATIVE_MS_16="$(awk '/fused.*grid 16:/ {print $(NF-1)}' .cache/bench-native.txt)"
scripts/build-web.sh
sizes() { echo "$(stat -c %s "$1") bytes, $(stat -c %s "$1.gz") gzipped, $(stat -c %s "$1.br") brotli"; }
echo "== served build: wasm with WebGPU $(sizes "$(ls dist/ddpm-web-*_bg.wasm | grep -v /ddpm-web-cpu-)"); CPU-only wasm $(sizes "$(ls dist/ddpm-web-cpu-*_bg.wasm)"); weights $(du -cb dist/weights-*/*.bpk | tail -1 | cut -f1) bytes =="
(cd tests/e2e && npm ci --no-audit --no-fund --silent)
node tests/e2e/bench.mjs
