#!/usr/bin/env bash
# Where a step's time goes in the browser: builds the site with the wasm's function names kept
# (into .cache/profile-dist; the served build strips them) and samples the sampling worker with
# Chromium's profiler during a benchmark run (tests/e2e/profile.mjs). Prints figures; asserts nothing.
# Environment: PROFILE_BACKEND (cpu), PROFILE_GRIDS ("1,16"), PROFILE_STEPS (20), PROFILE_TOP (25).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-tools.sh --browser
CARGO_PROFILE_WEB_STRIP=none trunk build --locked --release --dist .cache/profile-dist
node scripts/finish-dist.mjs .cache/profile-dist
(cd tests/e2e && npm ci --no-audit --no-fund --silent)
# WebSocket is global from Node 22; Node 20 needs the flag.
ws_flag=$(node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' || echo --experimental-websocket)
PROFILE_DIST="$PWD/.cache/profile-dist" node $ws_flag tests/e2e/profile.mjs
