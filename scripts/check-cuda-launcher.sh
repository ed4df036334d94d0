#!/usr/bin/env bash
# After a CUDA build: `wick` must start on this machine whatever it has. With the CUDA libraries it
# runs `wick-cuda`; without them it must name what is missing — never die in the dynamic loader.
set -euo pipefail
bin="${1:?usage: scripts/check-cuda-launcher.sh TARGET_DIR/release}"
if out=$("$bin/wick" --version 2>&1); then
  echo "check-cuda: the CUDA libraries are here; wick ran wick-cuda: $out"
elif grep -q "no CUDA available" <<<"$out" && ! grep -q "error while loading shared libraries" <<<"$out"; then
  echo "check-cuda: no CUDA here, and wick says so:"
  sed 's/^/  /' <<<"$out"
else
  echo "check-cuda: wick failed without naming what is missing:" >&2
  echo "$out" >&2
  exit 1
fi
