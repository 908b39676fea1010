#!/usr/bin/env bash
# The deployable site: builds the app with trunk (cargo profile `web`, set in www/index.html) into
# dist/, then content-hashes its large files, adds the offline service worker and precompressed
# .gz/.br copies (scripts/finish-dist.mjs). Publish dist/ on any static host; no special headers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-tools.sh
trunk build --locked --release
node scripts/finish-dist.mjs dist
