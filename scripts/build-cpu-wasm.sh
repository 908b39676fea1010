#!/usr/bin/env bash
# The CPU-only build of the app (no `webgpu` feature: Burn's flex backend without CubeCL), which a
# page downloads instead of the WebGPU build when the browser offers no WebGPU adapter. Run by
# trunk after each build (the hook in Trunk.toml), for `trunk serve` and the deploy build alike:
# writes ddpm-web-cpu.js and ddpm-web-cpu_bg.wasm beside trunk's ddpm-web.js in its staging dir.
set -euo pipefail
staging="${TRUNK_STAGING_DIR:?run by trunk (see Trunk.toml)}"
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --lib --target wasm32-unknown-unknown --profile web --no-default-features
wasm-bindgen --target web --no-typescript --out-dir "$staging" --out-name ddpm-web-cpu \
  "$target/wasm32-unknown-unknown/web/ddpm_web.wasm"
