#!/usr/bin/env bash
# Everything `scripts/gpu-check.sh` needs on a GPU machine that has no Rust toolchain, in one folder
# small enough to carry (the `device` tool takes 64 MiB): the CUDA build's `wick` launcher and
# `wick-cuda`, the library's tests built for CUDA (the check runs the depthwise ones) (both stripped and gzipped: Candle's PTX makes
# them ~64 MB each), and the ImageNet checkpoint. Prints the folder and its size.
#
#   scripts/gpu-bundle.sh                  # → gpu-bundle/
#   # there: scripts/gpu-check.sh --bundle gpu-bundle
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-bundle}"
eval "$(scripts/setup-cuda.sh)"
target="${CUDA_TARGET_DIR:-${CARGO_TARGET_DIR:-target}-cuda}"
export CARGO_TARGET_DIR="$target"
cargo build --release --features cuda --bins
depthwise=$(cargo test --release --features cuda --no-run --lib --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "lib" in m["target"]["kind"] and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])')
rm -rf "$out" && mkdir -p "$out"
for pair in "wick:$target/release/wick" "wick-cuda:$target/release/wick-cuda" "depthwise-test:$depthwise"; do
  strip -o "$out/${pair%%:*}" "${pair#*:}"
  gzip -9 "$out/${pair%%:*}"
done
cp "$(scripts/fetch-weights.sh)" "$out/"
du -sh "$out"
