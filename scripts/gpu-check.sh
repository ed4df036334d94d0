#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (build anywhere, run there):
#   1. CUDA against CPU: the same fine-tuning steps (forward, backward, SGD update) from the same
#      ImageNet weights on the same images. Every step's loss depends on all earlier gradients, so
#      matching losses over several steps checks the gradients too.
#   2. The depthwise convolution's values and gradients on CUDA against the naive loop
#      (the library's test `kernels::depthwise`, within 1e-5).
#   3. Fine-tuning images/s at 224² (batch 64) and 64² (batch 128): Wick, then PyTorch eager running
#      the same recipe on the same GPU (benches/finetune_peer.py), and the ratio.
#
# Build on any machine (no GPU needed), then run on the GPU machine (the NVIDIA driver, CUDA 13
# libraries — e.g. the pip nvidia-* packages PyTorch brings — and python3 with torch):
#   scripts/gpu-bundle.sh                   # here: gpu-bundle/ (binaries, depthwise test, checkpoint)
#   scripts/gpu-check.sh --bundle gpu-bundle    # there
# or, where the tree was built with `--features cuda` in place: WICK_BIN=<dir with wick, wick-cuda>
# WICK_DEPTHWISE_TEST=<the cuda build's library test binary> scripts/gpu-check.sh.
# Results go to $OUT (default: gpu-check/): JSON lines per measurement, and summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
bin="${WICK_BIN:-target/release}"
pth="${WICK_LITE0_PTH:-$HOME/.cache/wick/efficientnet-lite0-57934424.pth}"
if [ "${1:-}" = "--bundle" ]; then
  bundle="${2:?--bundle needs the folder scripts/gpu-bundle.sh made}"
  bin="$out/bin"
  mkdir -p "$bin"
  for name in wick wick-cuda depthwise-test; do
    gunzip -c "$bundle/$name.gz" > "$bin/$name"
    chmod +x "$bin/$name"
  done
  export WICK_DEPTHWISE_TEST="$bin/depthwise-test"
  pth="$bundle/efficientnet-lite0-57934424.pth"
fi

# The CUDA libraries pip installed (nvidia/*/lib) are not on the loader's path by default.
pip_cuda_libs=$(python3 - <<'PY'
import glob, os, site
dirs = {os.path.dirname(p) for sp in site.getsitepackages() + [site.getusersitepackages()]
        for p in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${pip_cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"; } \
  | tee "$out/gpu.txt"

echo "== 1. fine-tuning steps, CUDA against CPU (same weights, same images)"
steps=(bench --finetune --pth "$pth" --img-size 64 --batch 16 --warmup 0 --iters 6 --json)
"$bin/wick" "${steps[@]}" --device cpu > "$out/steps-cpu.json"
"$bin/wick" "${steps[@]}" --device cuda > "$out/steps-cuda.json"
"$bin/wick" "${steps[@]}" --device cuda --precision bf16 > "$out/steps-cuda-bf16.json"
python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, sys
losses = lambda name: json.loads(open(f"{sys.argv[1]}/steps-{name}.json").readline())["losses"]
cpu = losses("cpu")
ok = True
# f32 on CUDA must follow the CPU closely; bf16 convolutions round to 8 bits of mantissa.
for name, first_tol, all_tol in [("cuda", 1e-4, 1e-2), ("cuda-bf16", 2e-2, 5e-2)]:
    other = losses(name)
    worst = 0.0
    for step, (a, b) in enumerate(zip(cpu, other), 1):
        rel = abs(a - b) / max(abs(a), 1e-6)
        worst = max(worst, rel)
        print(f"step {step}: cpu loss {a:.6f}  {name} loss {b:.6f}  relative difference {rel:.2e}")
    good = len(cpu) == len(other) and abs(cpu[0] - other[0]) / abs(cpu[0]) < first_tol and worst < all_tol
    ok &= good
    print(f"{name} against CPU f32: {'ok' if good else 'MISMATCH'} (first step < {first_tol:g}, all < {all_tol:g}; worst {worst:.2e})")
sys.exit(0 if ok else 1)
PY

echo "== 2. depthwise convolution on CUDA against the naive loop"
if [ -n "${WICK_DEPTHWISE_TEST:-}" ]; then
  WICK_TEST_DEVICE=cuda "$WICK_DEPTHWISE_TEST" kernels::depthwise --test-threads 1 2>&1 | tee "$out/depthwise.txt"
else
  echo "skipped: set WICK_DEPTHWISE_TEST to the cuda build's library test binary" | tee "$out/depthwise.txt"
fi

echo "== 3. fine-tuning throughput, Wick and PyTorch eager on the same GPU"
python3 benches/finetune.py --wick "$bin/wick" --pth "$pth" --device cuda --shapes 224x64,64x128 --iters 20 \
  --out "$out/throughput.json" | tee -a "$out/summary.txt"
