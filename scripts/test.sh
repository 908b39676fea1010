#!/usr/bin/env bash
# Every test: installs what is missing (idempotent), then
#   1. the native suite (`cargo test`): maths, model, weights, data, sampler;
#   2. the browser suite (wasm-bindgen-test in headless Chromium, WebGPU via SwiftShader and the
#      CPU fallback), with the flags from webdriver.json;
#   3. the end-to-end tests of the deployable site (scripts/build-web.sh): the sampler (tests/e2e/sample.mjs),
#      the explainer (tests/e2e/explainer.mjs), and both on a phone and a desktop with an
#      accessibility scan and an offline reload (tests/e2e/layout.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/install-tools.sh --browser
scripts/fetch-data.sh

echo "== native tests =="
cargo test --locked

echo "== browser tests (headless Chromium: WebGPU and CPU fallback) =="
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
cargo test --locked --profile web --target wasm32-unknown-unknown --no-default-features --features webgpu --test web -- --nocapture

echo "== end-to-end test of the deployable build (scripts/build-web.sh, headless Chromium via playwright-core) =="
scripts/build-web.sh
(cd tests/e2e && npm ci --no-audit --no-fund --silent)
node tests/e2e/sample.mjs
node tests/e2e/explainer.mjs
node tests/e2e/layout.mjs
