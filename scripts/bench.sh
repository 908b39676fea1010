#!/usr/bin/env bash
# Sampling benchmark: native (Burn flex) and in headless Chromium (WebGPU and CPU in wasm).
# Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-tools.sh --browser
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) =="
cargo run --release --locked --bin bench -- --steps "${BENCH_STEPS:-20}"
trunk build --locked
(cd tests/e2e && npm ci --no-audit --no-fund --silent)
node tests/e2e/bench.mjs "${BENCH_BROWSER_STEPS:-10}"
