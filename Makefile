# The README's two commands are `make app` and `make test`; both set up what they need first.
.PHONY: app test lint test-native test-browser test-scale dist bench bench-finetune bench-head-fit check-cuda fuzz check-torch

app:
	scripts/setup.sh app
	trunk serve --release

test: lint test-native test-browser

lint:
	scripts/setup.sh test
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --target wasm32-unknown-unknown --no-default-features -- -D warnings
	cargo clippy --release --lib --target wasm32-unknown-unknown --no-default-features --features export -- -D warnings
	cargo clippy --release --lib --target wasm32-unknown-unknown --no-default-features --features web-runtime -- -D warnings
	RUSTFLAGS='-C target-feature=+simd128,+relaxed-simd --cfg getrandom_backend="wasm_js"' cargo clippy --release --lib --target wasm32-unknown-unknown --no-default-features --target-dir $(or $(CARGO_TARGET_DIR),target)/web-relaxed -- -D warnings

test-native:
	scripts/setup.sh test
	cargo test --release

# Wick against PyTorch itself on torchvision's ResNet-18/34/50 (random weights, randomised BatchNorm
# statistics; torch.save and safetensors files): needs `pip install torch torchvision safetensors`
# (~3 GB with PyTorch's CUDA libraries), so it is not part of `make test`.
TORCHVISION_DIR ?= $(or $(CARGO_TARGET_DIR),target)/torchvision
check-torch:
	python3 tests/reference/check_torchvision.py $(TORCHVISION_DIR) $(CURDIR)/tests/fixtures/coffee.png $(CURDIR)/tests/fixtures/chelsea.png $(CURDIR)/tests/fixtures/brick.png
	WICK_TORCHVISION=$(TORCHVISION_DIR) cargo test --release --test torchvision -- --ignored --nocapture

# The fuzzing harness for longer (make test runs 300 cases per file format): 20 000 cases per format.
fuzz:
	WICK_FUZZ_ITERS=$${WICK_FUZZ_ITERS:-20000} cargo test --release --test fuzz -- --nocapture

dist:
	scripts/setup.sh app
	trunk build --release

test-browser: dist
	scripts/setup.sh test
	node --test tests/browser/

# 10,000 real photos added, trained, checked, mapped and reloaded in the tab (~15 min on 2 cores; it
# skips without the CIFAR-10 JPEG copy in ../shared/data). CI runs it after `make test`.
test-scale: dist
	scripts/setup.sh test
	node --test tests/browser/scale.long.mjs

bench: dist
	scripts/setup.sh bench
	python3 benches/peer.py
	python3 benches/resnet_peer.py
	python3 benches/head.py
	node benches/tfjs_peer.mjs
	node benches/web_export.mjs
	test -d $(CIFAR10_DIR)/train || (mkdir -p $(CIFAR10_DIR) && tar -xzf ../shared/data/cifar10-train-jpeg.tar.gz -C $(CIFAR10_DIR))
	python3 benches/probe_extraction.py $(CIFAR10_DIR)
	node benches/page_extraction.mjs $(CIFAR10_DIR)
	node benches/layers_browser.mjs $(CIFAR10_DIR)

# The default head against scikit-learn's tuned logistic regression on real CIFAR-10 features (the
# JPEG copy in ../shared/data; ~10 min for the 64-px features on 2 cores, then ~25 min of fits).
CIFAR10_DIR ?= $(or $(CARGO_TARGET_DIR),target)/cifar10
bench-head-fit:
	scripts/setup.sh bench
	cargo build --release
	test -d $(CIFAR10_DIR)/train || (mkdir -p $(CIFAR10_DIR) && tar -xzf ../shared/data/cifar10-train-jpeg.tar.gz -C $(CIFAR10_DIR))
	$(or $(CARGO_TARGET_DIR),target)/release/wick cifar10 --data $(CIFAR10_DIR) --img-size 64 --out $(CIFAR10_DIR)/probe64.wick --save-features $(CIFAR10_DIR)/features64 --quiet
	python3 benches/head_fit.py $(CIFAR10_DIR)/features64

# Fine-tuning steps against PyTorch eager on the CPU (needs `pip install torch`, ~4 GB with its CUDA
# libraries; on a GPU machine scripts/gpu-check.sh runs the CUDA comparison).
bench-finetune:
	cargo build --release
	scripts/fetch-weights.sh > /dev/null
	python3 benches/finetune.py --shapes 32x32,64x16,128x16 --iters 4 --threads 1
	python3 benches/finetune.py --shapes 32x32,64x16,128x16 --iters 4 --threads 2

# The `cuda` feature must build on machines without a GPU (as a user's CI would): CUDA 13.0 from PyPI
# wheels, Candle's kernels compiled by nvcc. Its own target dir: the kernel build is slow, keep it.
CUDA_TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)-cuda
check-cuda:
	eval "$$(scripts/setup-cuda.sh)" && CARGO_TARGET_DIR=$(CUDA_TARGET_DIR) cargo build --release --features cuda --bins
	scripts/check-cuda-launcher.sh $(CUDA_TARGET_DIR)/release
