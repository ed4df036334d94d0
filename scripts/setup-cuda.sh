#!/usr/bin/env bash
# A CUDA 13.0 toolkit from PyPI wheels — no root, no NVIDIA installer, no GPU needed — for building
# Wick's `cuda` feature. Idempotent: the wheels are installed once under $WICK_CUDA_DIR (default
# ~/.cache/wick/cuda-13.0). Prints the environment to build with:
#
#   eval "$(scripts/setup-cuda.sh)" && cargo build --release --features cuda
#
# Why these pins: CUDA 12 wheels lack nvcc; 13.1+ may emit PTX that the 580 driver on the project's
# GPU machines refuses; cudarc does not know 13.5+. CUDA_COMPUTE_CAP=90 targets H100/H200.
set -euo pipefail
dir="${WICK_CUDA_DIR:-$HOME/.cache/wick/cuda-13.0}"
packages=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35)
stamp="$dir/.installed"
if [ "$(cat "$stamp" 2>/dev/null)" != "${packages[*]}" ]; then
  echo "setup-cuda: installing ${#packages[@]} CUDA 13.0 wheels into $dir (once)" >&2
  rm -rf "$dir"
  python3 -m pip install --quiet --no-deps --target "$dir/site" "${packages[@]}" >&2
  cu="$dir/site/nvidia/cu13"
  mkdir -p "$dir/home/lib"
  for part in bin include nvvm; do ln -sfn "$cu/$part" "$dir/home/$part"; done
  # The wheels ship versioned libraries (libcudart.so.13); linkers look for the bare name.
  for lib in "$cu"/lib/*.so.*; do
    name="${lib##*/}"
    ln -sf "$lib" "$dir/home/lib/$name"
    ln -sf "$lib" "$dir/home/lib/${name%%.so.*}.so"
  done
  echo "${packages[*]}" > "$stamp"
fi
# Linking `wick-cuda` needs libcuda.so, which only the NVIDIA driver ships: a stub with the same
# symbols (every driver function cudarc binds) stands in at link time. It is named libcuda.so (the
# link-time name) in the linker's folder; at run time the loader wants the driver's libcuda.so.1.
cudarc=$(sed -n '/^name = "cudarc"$/{n;s/^version = "\(.*\)"$/\1/p}' "$(dirname "$0")/../Cargo.lock")
if [ ! -f "$dir/stub/.cudarc-$cudarc" ]; then
  (cd "$(dirname "$0")/.." && cargo fetch --quiet >&2)
  sys=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc"/src/driver/sys/mod.rs | head -1)
  mkdir -p "$dir/stub"
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$sys" | sed 's/^pub unsafe fn //' | sort -u \
    | sed 's/.*/void &(void) {}/' > "$dir/stub/libcuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$dir/stub/libcuda.so" "$dir/stub/libcuda-stub.c"
  ln -sf "$dir/stub/libcuda.so" "$dir/home/lib/libcuda.so"
  touch "$dir/stub/.cudarc-$cudarc"
fi
echo "export CUDA_HOME='$dir/home' CUDA_PATH='$dir/home' PATH='$dir/home/bin':\"\$PATH\" CUDA_COMPUTE_CAP=90"
