#!/usr/bin/env bash
# Idempotent install of everything the build and the tests need on a fresh Debian machine.
# Every step checks first and is cheap when its tool is already there, so it runs every time.
#   scripts/install-tools.sh          wasm target, wasm-bindgen-cli, trunk, npm data
#   scripts/install-tools.sh --browser  also chromium + chromium-driver (tests)
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14   # trunk 0.22 needs rustc >= 1.96.1; the machine has 1.95
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[install] %s\n' "$*"; }

# A prebuilt binary first where cargo-binstall is installed (it fetches release binaries; minutes
# saved), building from source otherwise or when no binary can be had (about 10 minutes for the
# two tools on 2 cores).
prebuilt() {
  cargo binstall -V >/dev/null 2>&1 || return 1
  log "trying a prebuilt $1 with cargo-binstall"
  cargo binstall --no-confirm --force --disable-strategies compile "$1" >/dev/null 2>&1
}

if [[ "${1:-}" == "--browser" ]]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    log "installing chromium and chromium-driver with apt"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  log "$(chromium --version 2>/dev/null | head -1); $(chromedriver --version | head -1)"
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock exactly.
if [[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  if prebuilt "wasm-bindgen-cli@$WASM_BINDGEN_VERSION"; then
    :
  elif ! cargo install --locked wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force; then
    # Its published lock file can name a crate version the registry mirror lacks
    # (seen: webpki-roots 1.0.11). Re-pin only that crate and install from the unpacked source.
    log "retrying wasm-bindgen-cli from source with webpki-roots re-pinned"
    src=$(ls -d "$HOME"/.cargo/registry/src/*/wasm-bindgen-cli-"$WASM_BINDGEN_VERSION" | head -1)
    work=$(mktemp -d); cp -r "$src" "$work/cli"
    (cd "$work/cli" && cargo update -p webpki-roots --precise 1.0.10 && cargo install --locked --path . --force)
    rm -rf "$work"
  fi
fi

if [[ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]]; then
  log "installing trunk $TRUNK_VERSION"
  prebuilt "trunk@$TRUNK_VERSION" || cargo install --locked trunk --version "$TRUNK_VERSION" --force
fi

log "wasm-bindgen $(wasm-bindgen --version | awk '{print $2}'), trunk $(trunk --version | awk '{print $2}')"
