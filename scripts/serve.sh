#!/usr/bin/env bash
# Set up everything (idempotent) and serve the app on http://127.0.0.1:8080 with trunk.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-tools.sh
exec trunk serve "$@"
