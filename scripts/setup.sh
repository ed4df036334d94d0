#!/usr/bin/env bash
# Installs what Wick needs, idempotently (each step is skipped when already done).
#   scripts/setup.sh app     wasm target, wasm-bindgen-cli (the exact crate version), trunk, and the
#                            pinned nightly (rust-src, wasm target) for the multi-threaded web build
#   scripts/setup.sh test    app + the three browser engines the tests drive (Debian's chromium,
#                            firefox-esr, and webkit2gtk-driver with xvfb), their drivers from npm
#                            (playwright-core, puppeteer-core, selenium-webdriver), numpy/Pillow, onnx and
#                            onnxruntime (the ONNX export is run in it), the reference checkpoint
#   scripts/setup.sh bench   test + scikit-learn (the native peers)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-app}"
WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
TRUNK_VERSION=0.21.14 # trunk 0.22 needs rustc >= 1.96.1
THREADS_TOOLCHAIN=$(sed -n 's/^TOOLCHAIN=//p' scripts/build-web-threads.sh)
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "setup: $*" >&2; }

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! rustup component list --toolchain "$THREADS_TOOLCHAIN" --installed 2>/dev/null | grep -q '^rust-src' \
  || ! rustup target list --toolchain "$THREADS_TOOLCHAIN" --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "installing Rust $THREADS_TOOLCHAIN with rust-src and the wasm target (the multi-threaded web build)"
  rustup toolchain install "$THREADS_TOOLCHAIN" --profile minimal --component rust-src --target wasm32-unknown-unknown
fi
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
if [ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]; then
  say "installing trunk $TRUNK_VERSION (a few minutes, once)"
  cargo install --force "trunk@$TRUNK_VERSION" --locked
fi
[ "$what" = app ] && exit 0

# The browsers: Chromium, Firefox ESR, and WebKitGTK's WebDriver with its MiniBrowser, which runs on
# a virtual X display (xvfb-run, which needs xauth).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v firefox-esr >/dev/null || missing+=(firefox-esr)
command -v WebKitWebDriver >/dev/null || missing+=(webkit2gtk-driver)
command -v xvfb-run >/dev/null || missing+=(xvfb)
command -v xauth >/dev/null || missing+=(xauth)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian's ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# node_modules is reinstalled whenever package-lock.json changed since the last `npm ci`.
if ! cmp -s package-lock.json node_modules/.wick-package-lock.json; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.wick-package-lock.json
fi
python3 -c 'import numpy, PIL' 2>/dev/null || python3 -m pip install --quiet numpy pillow
# The ONNX export's tests check the file with onnx's checker and run it in onnxruntime.
python3 -c 'import onnx, onnxruntime' 2>/dev/null || python3 -m pip install --quiet onnx onnxruntime
scripts/fetch-weights.sh all >/dev/null
[ "$what" = test ] && exit 0

python3 -c 'import sklearn' 2>/dev/null || python3 -m pip install --quiet scikit-learn
