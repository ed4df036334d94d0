#!/usr/bin/env bash
# The drop-in classifier's runtime, next to Trunk's build: the same crate with only the
# `web-runtime` feature (single-threaded, inference only: `web::Runtime`), bound by wasm-bindgen as
# `wick_runtime.js` + `wick_runtime_bg.wasm`. `wick export --format web` (reading it from
# dist/runtime, or --runtime DIR) and the page's *Export model* → web page put it beside the model
# with the runtime's ES module (static/runtime/).
#
# Trunk runs this after its own build (Trunk.toml's post_build hook) and it writes `runtime/` into
# Trunk's staging folder; run by hand, `scripts/build-web-runtime.sh DIR` writes DIR/runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${TRUNK_STAGING_DIR:?run by Trunk, or give the output folder}}/runtime"
profile=wasm-release
[ "${TRUNK_PROFILE:-release}" = debug ] && profile=dev
target_dir="${CARGO_TARGET_DIR:-target}/web-runtime"
cargo build --quiet --lib --profile "$profile" --target wasm32-unknown-unknown \
  --no-default-features --features web-runtime --target-dir "$target_dir"
built="$target_dir/wasm32-unknown-unknown/$([ "$profile" = dev ] && echo debug || echo "$profile")/wick.wasm"
rm -rf "$out"
wasm-bindgen --target web --no-typescript --remove-name-section --out-name wick_runtime --out-dir "$out" "$built"
