#!/usr/bin/env bash
# Every test: installs what is missing (idempotent), then
#   1. the repository checks (scripts/check-docs.sh): the README's size, links and doc paths;
#   2. the native suite (`cargo test`): maths, model, weights, data, samplers, contract;
#   3. the browser suite (wasm-bindgen-test in headless Chromium, WebGPU via SwiftShader and the
#      CPU fallback), with the flags from webdriver.json;
#   4. the end-to-end tests of the deployable site (scripts/build-web.sh): the sampler
#      (tests/e2e/sample.mjs), the explainer (tests/e2e/explainer.mjs), the restore page
#      (tests/e2e/restore.mjs), and all three on a phone and a desktop with the accessibility
#      checks and an offline reload (tests/e2e/layout.mjs).
# Every suite runs even when an earlier one fails (cargo with --no-fail-fast); the summary at
# the end names each failed suite and the exit status is non-zero when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Without the tools nothing can run: these two stop the script at once.
scripts/install-tools.sh --browser || { echo "test.sh: installing the tools failed"; exit 1; }
scripts/fetch-data.sh || { echo "test.sh: fetching the MNIST data failed"; exit 1; }

failed=()
suite() {
  local name=$1
  shift
  echo "== $name =="
  local start=$SECONDS
  if "$@"; then
    echo "== $name: ok ($((SECONDS - start)) s) =="
  else
    echo "== $name: FAILED ($((SECONDS - start)) s) =="
    failed+=("$name")
  fi
}

e2e() {
  scripts/build-web.sh || return 1
  (cd tests/e2e && npm ci --no-audit --no-fund --silent) || return 1
  local status=0
  node tests/e2e/sample.mjs || status=1
  node tests/e2e/explainer.mjs || status=1
  node tests/e2e/restore.mjs || status=1
  node tests/e2e/layout.mjs || status=1
  return $status
}

export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"

suite "repository checks" scripts/check-docs.sh
suite "native tests" cargo test --locked --no-fail-fast
suite "browser tests (headless Chromium: WebGPU and CPU fallback)" \
  cargo test --locked --no-fail-fast --profile web --target wasm32-unknown-unknown --no-default-features --features webgpu --test web -- --nocapture
suite "end-to-end tests of the deployable build (headless Chromium via playwright-core)" e2e

echo
if ((${#failed[@]})); then
  echo "test.sh: ${#failed[@]} suite(s) failed:"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
echo "test.sh: every suite passed"
