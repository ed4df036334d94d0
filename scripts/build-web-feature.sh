#!/usr/bin/env bash
# The page's extra single-threaded wasm builds, next to Trunk's, each the same crate with one
# feature or target feature:
#   export   → export/wick.js + wick_bg.wasm: ONNX (prost) and TF.js, loaded by the page only when
#              someone exports a model to another format, so the first load does not carry it (its
#              margin under 6 MB would not hold the ONNX schema's code);
#   runtime  → runtime/wick_runtime.js + wick_runtime_bg.wasm: the drop-in classifier's runtime
#              (`web-runtime`: inference only, `web::Runtime`), which the web export ships beside
#              the model (`wick export --format web` reads it from dist/runtime, or --runtime DIR);
#   relaxed  → relaxed/wick.js + wick_bg.wasm: the page's build with WebAssembly's relaxed SIMD (the
#              int8 products' dot instruction), which static/app/wasm.js loads where the browser
#              compiles it (Chrome/Edge ≥ 114, Firefox ≥ 145; no Safari), Trunk's build elsewhere.
#
# Trunk runs this after its own build (Trunk.toml's post_build hooks) and it writes into Trunk's
# staging folder; run by hand, `scripts/build-web-feature.sh export|runtime|relaxed DIR` writes into DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  export) feature=export name=wick ;;
  runtime) feature=web-runtime name=wick_runtime ;;
  relaxed) feature= name=wick
    # RUSTFLAGS replaces .cargo/config.toml's flags for the target: the same ones, and relaxed SIMD.
    export RUSTFLAGS='-C target-feature=+simd128,+relaxed-simd --cfg getrandom_backend="wasm_js"' ;;
  *) echo "usage: $0 export|runtime|relaxed [DIR]" >&2; exit 2 ;;
esac
out="${2:-${TRUNK_STAGING_DIR:?run by Trunk, or give the output folder}}/$1"
profile=wasm-release
[ "${TRUNK_PROFILE:-release}" = debug ] && profile=dev
target_dir="${CARGO_TARGET_DIR:-target}/web-$1"
cargo build --quiet --lib --profile "$profile" --target wasm32-unknown-unknown \
  --no-default-features --features "$feature" --target-dir "$target_dir"
built="$target_dir/wasm32-unknown-unknown/$([ "$profile" = dev ] && echo debug || echo "$profile")/wick.wasm"
rm -rf "$out"
wasm-bindgen --target web --no-typescript --remove-name-section --out-name "$name" --out-dir "$out" "$built"
