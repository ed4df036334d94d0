#!/usr/bin/env bash
# The page's export build, next to Trunk's: the same crate with the `export` feature (ONNX through
# prost, TF.js), single-threaded. The page loads it only when someone exports a model to another
# format, so the first load does not carry it (its ~9 KB margin under 6 MB would not hold the ONNX
# schema's code).
#
# Trunk runs this after its own build (Trunk.toml's post_build hook) and it writes `export/` into
# Trunk's staging folder; run by hand, `scripts/build-web-export.sh DIR` writes DIR/export.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${TRUNK_STAGING_DIR:?run by Trunk, or give the output folder}}/export"
profile=wasm-release
[ "${TRUNK_PROFILE:-release}" = debug ] && profile=dev
target_dir="${CARGO_TARGET_DIR:-target}/web-export"
cargo build --quiet --lib --profile "$profile" --target wasm32-unknown-unknown \
  --no-default-features --features export --target-dir "$target_dir"
built="$target_dir/wasm32-unknown-unknown/$([ "$profile" = dev ] && echo debug || echo "$profile")/wick.wasm"
rm -rf "$out"
wasm-bindgen --target web --no-typescript --remove-name-section --out-dir "$out" "$built"
