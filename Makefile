# The README's two commands are `make app` and `make test`; both set up what they need first.
.PHONY: app test lint test-native test-browser dist bench

app:
	scripts/setup.sh app
	trunk serve --release

test: lint test-native test-browser

lint:
	scripts/setup.sh test
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --target wasm32-unknown-unknown --no-default-features -- -D warnings

test-native:
	scripts/setup.sh test
	cargo test --release

dist:
	scripts/setup.sh app
	trunk build --release

test-browser: dist
	scripts/setup.sh test
	node --test tests/browser/

bench: dist
	scripts/setup.sh bench
	python3 benches/peer.py
	python3 benches/head.py
	node benches/tfjs_peer.mjs
