#!/usr/bin/env bash
# The web app's multi-threaded build, next to Trunk's single-threaded one: the same crate with wasm
# threads (one shared memory, atomics), so the backbone and the head run on a pool of Web Workers
# (wasm-bindgen-rayon). Threads need a nightly Rust that rebuilds std with atomics (`-Z build-std`).
# The page loads this build only when it is cross-origin isolated (COOP + COEP headers); elsewhere
# browsers refuse shared memory, and it loads Trunk's.
#
# With `relaxed`, the same with WebAssembly's relaxed SIMD (threads-relaxed/: the int8 products'
# dot instruction; static/app/wasm.js loads it where the browser compiles it).
#
# Trunk runs this after its own build (Trunk.toml's post_build hooks) and it writes `threads/` (or
# `threads-relaxed/`) into Trunk's staging folder; run by hand, `scripts/build-web-threads.sh
# [relaxed] DIR` writes DIR/threads (DIR/threads-relaxed).
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned: scripts/setup.sh installs exactly this one, with rust-src and the wasm target.
TOOLCHAIN=nightly-2026-05-20
name=threads simd=+simd128
[ "${1:-}" = relaxed ] && { name=threads-relaxed simd=+simd128,+relaxed-simd; shift; }
out="${1:-${TRUNK_STAGING_DIR:?run by Trunk, or give the output folder}}/$name"
profile=wasm-release
[ "${TRUNK_PROFILE:-release}" = debug ] && profile=dev
target_dir="${CARGO_TARGET_DIR:-target}/web-$name"

# The profile's strip=true would also drop the section that tells wasm-bindgen which wasm features
# the module uses; wasm-bindgen removes the names itself (--remove-name-section).
export CARGO_PROFILE_WASM_RELEASE_STRIP=debuginfo
# One memory shared by every thread: imported (each Worker instantiates the module on it) and with
# its maximum declared up front (4 GiB, all a wasm32 page can address). The page makes that memory
# itself, with the largest maximum up to this one that the browser reserves (static/app/wasm.js:
# phones refuse 4 GiB); wasm-bindgen sets up each thread's stack and thread-locals through the
# exported TLS symbols.
link='--shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base'
# std is compiled here from the toolchain's sources (build-std), so its panic locations would name
# this machine's paths (/root/.rustup/toolchains/…), as the crates' do (/root/.cargo/registry/…):
# shortened as the prebuilt std's are (/rustc/…), which also keeps the threaded builds' first loads
# under 6 MB (the relaxed one was 277 bytes over on 2026-12-07).
remap="--remap-path-prefix=$(rustc "+$TOOLCHAIN" --print sysroot)/lib/rustlib/src/rust=/rustc"
for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  remap+=" --remap-path-prefix=${registry%/}=/crates"
done
export RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,$simd --cfg getrandom_backend=\"wasm_js\" $remap $(printf -- '-C link-arg=%s ' $link)"
cargo "+$TOOLCHAIN" build --quiet --lib --profile "$profile" --target wasm32-unknown-unknown \
  --no-default-features --features web-threads --target-dir "$target_dir" -Z build-std=panic_abort,std
built="$target_dir/wasm32-unknown-unknown/$([ "$profile" = dev ] && echo debug || echo "$profile")/wick.wasm"
rm -rf "$out"
wasm-bindgen --target web --no-typescript --remove-name-section --out-dir "$out" "$built"

# wasm-bindgen-rayon's worker script finds the page's module as `../../..`, which only a bundler
# resolves; a browser needs the file's name.
helpers=$(find "$out/snippets" -name workerHelpers.js)
[ "$(echo "$helpers" | wc -l)" = 1 ] && grep -q "import('../../..')" "$helpers" || {
  echo "build-web-threads: wasm-bindgen-rayon's workerHelpers.js is not the one this script knows" >&2
  exit 1
}
sed -i "s|import('../../..')|import('../../../wick.js')|" "$helpers"

# The page makes the shared memory (see above), so it needs the module's initial size: the one
# wasm-bindgen's own loader would have used, exported by the module.
initial=$(grep -o 'new WebAssembly.Memory({initial:[0-9]*,maximum:65536,shared:true})' "$out/wick.js" | grep -o 'initial:[0-9]*' | cut -d: -f2)
[ -n "$initial" ] || { echo "build-web-threads: wick.js does not make its memory the way this script knows" >&2; exit 1; }
printf '\n// scripts/build-web-threads.sh: the 64 KiB pages the module needs from the start.\nexport const initialPages = %s;\n' "$initial" >> "$out/wick.js"
