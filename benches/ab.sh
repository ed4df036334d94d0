#!/usr/bin/env bash
# Two builds of `wick` side by side, in one run: do they give the same answers, and which is faster?
# For a change that should alter neither (a restructuring): features (int8 and f32 products), a head
# trained on a class folder and the last layer trained with it must predict byte for byte the same;
# the backbone's forward pass (batch 1 and 8) and head training are timed in alternating rounds on
# one thread, so both builds see the same host.
#
#   benches/ab.sh OLD_WICK NEW_WICK CLASS_FOLDER [ROUNDS]
#   # e.g. the commit before a change, built elsewhere:
#   git worktree add /tmp/before HEAD~1 && (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release)
#   benches/ab.sh /tmp/before-target/release/wick target/release/wick some/classes
set -euo pipefail
old="$(realpath "${1:?the old wick binary}")"
new="$(realpath "${2:?the new wick binary}")"
data="$(realpath "${3:?a folder of class folders}")"
rounds="${4:-3}"
fixtures="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
images=("$fixtures"/*.png "$fixtures"/*.jpg)
same() { if cmp -s "$1" "$2"; then echo "$3: identical"; else echo "$3: DIFFERENT"; diff "$1" "$2" | head -5; fi; }
for precision in int8 f32; do
  "$old" predict --json --top 10 --precision "$precision" "${images[@]}" > "old-$precision.json"
  "$new" predict --json --top 10 --precision "$precision" "${images[@]}" > "new-$precision.json"
  same "old-$precision.json" "new-$precision.json" "features ($precision products)"
done
for who in old new; do
  bin="${!who}"
  "$bin" train --data "$data" --out "$who-head.wick" --no-cache --quiet
  "$bin" predict --json --model "$who-head.wick" "${images[@]}" > "$who-head.json"
  "$bin" train --data "$data" --out "$who-layers.wick" --no-cache --quiet --train-layers 1 --layer-epochs 2
  "$bin" predict --json --model "$who-layers.wick" --backbone "$who-layers.backbone.safetensors" "${images[@]}" \
    > "$who-layers.json"
done
same old-head.json new-head.json "a trained head's predictions"
same old-layers.json new-layers.json "a trained last layer's predictions"
# Random features for the head: 2,000 rows of 1,280 values in 10 classes.
python3 -c 'import random, struct
random.seed(0)
labels = [random.randrange(10) for _ in range(2000)]
open("features.f32", "wb").write(b"".join(struct.pack("<1280f", *(random.gauss(0.3 * ((l * 7 + j) % 5 - 2), 1) for j in range(1280))) for l in labels))
open("labels.u8", "wb").write(bytes(labels))'
for round in $(seq "$rounds"); do
  for who in old new; do
    bin="${!who}"
    "$bin" bench --threads 1 --batch 1,8 --iters 15 --json | sed "s/^/$who round $round: /"
    "$bin" bench --threads 1 --head-data . --iters 3 --json | sed "s/^/$who round $round: /"
  done
done
