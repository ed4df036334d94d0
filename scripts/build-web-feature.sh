#!/usr/bin/env bash
# The page's extra single-threaded wasm builds, next to Trunk's, each the same crate with one
# feature or target feature:
#   export   → export/wick.js + wick_bg.wasm: ONNX (prost) and TF.js, loaded by the page only when
#              someone exports a model to another format, so the first load does not carry it (its
#              margin under 6 MB would not hold the ONNX schema's code);
#   runtime  → runtime/wick_runtime.js + wick_runtime_bg.wasm: the drop-in classifier's runtime
#              (`web-runtime`: inference only, `web::Runtime`), which the web export ships beside
#              the model (`wick export --format web` reads it from dist/runtime, or --runtime DIR),
#              and its relaxed-SIMD twin runtime/wick_runtime_relaxed.js + wick_runtime_relaxed_bg.wasm
#              (the export's wick-worker.js picks one at run time, as static/app/wasm.js does);
#   relaxed  → relaxed/wick.js + wick_bg.wasm: the page's build with WebAssembly's relaxed SIMD (the
#              int8 products' dot instruction), which static/app/wasm.js loads where the browser
#              compiles it (Chrome/Edge ≥ 114, Firefox ≥ 145; no Safari), Trunk's build elsewhere.
#
# Trunk runs this after its own build (Trunk.toml's post_build hooks) and it writes into Trunk's
# staging folder; run by hand, `scripts/build-web-feature.sh export|runtime|relaxed DIR` writes into DIR.
# (Trunk starts its hooks together: the runtime's two builds are one hook, because they share a folder.)
set -euo pipefail
cd "$(dirname "$0")/.."
# RUSTFLAGS replaces .cargo/config.toml's flags for the target: the same ones, and relaxed SIMD.
RELAXED_RUSTFLAGS='-C target-feature=+simd128,+relaxed-simd --cfg getrandom_backend="wasm_js"'
case "${1:-}" in
  export|runtime|relaxed) ;;
  *) echo "usage: $0 export|runtime|relaxed [DIR]" >&2; exit 2 ;;
esac
out="${2:-${TRUNK_STAGING_DIR:?run by Trunk, or give the output folder}}/$1"
profile=wasm-release
[ "${TRUNK_PROFILE:-release}" = debug ] && profile=dev

# build FEATURE NAME TARGET_DIR: the crate with FEATURE, bound by wasm-bindgen as NAME.js +
# NAME_bg.wasm in $out (RUSTFLAGS from the caller's environment).
build() {
  local target_dir="${CARGO_TARGET_DIR:-target}/$3"
  cargo build --quiet --lib --profile "$profile" --target wasm32-unknown-unknown \
    --no-default-features --features "$1" --target-dir "$target_dir"
  local built="$target_dir/wasm32-unknown-unknown/$([ "$profile" = dev ] && echo debug || echo "$profile")/wick.wasm"
  wasm-bindgen --target web --no-typescript --remove-name-section --out-name "$2" --out-dir "$out" "$built"
}

rm -rf "$out"
case "$1" in
  export) build export wick web-export ;;
  runtime)
    build web-runtime wick_runtime web-runtime
    RUSTFLAGS="$RELAXED_RUSTFLAGS" build web-runtime wick_runtime_relaxed web-runtime-relaxed ;;
  relaxed) RUSTFLAGS="$RELAXED_RUSTFLAGS" build "" wick web-relaxed ;;
esac
