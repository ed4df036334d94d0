#!/usr/bin/env python3
"""Head-training benchmark: 1000 × 1280 features → 10 classes, 50 epochs, batch 64, the same
features for every runtime, all in one run.

Native: `wick bench --head-data` (linear head, AdamW) against scikit-learn's LogisticRegression
(lbfgs, its defaults), both with 1 thread and with all cores. Browser (headless Chromium, one thread):
Wick's wasm build against TF.js (Dense softmax + Adam) on its wasm and cpu backends
(benches/head_browser.mjs). Prints times and the ratios Wick / peer (< 1 means Wick is faster).

    python3 benches/head.py [--wick PATH] [--no-browser]
Needs: `make dist` (for the browser run), numpy, scikit-learn (`scripts/setup.sh bench`).
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES, DIM, CLASSES = 1000, 1280, 10


def make_features(seed=0):
    """Look like pooled ReLU6 features: non-negative, sparse-ish, class-dependent means."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((CLASSES, DIM))) * 0.5
    labels = np.arange(IMAGES) % CLASSES
    x = np.maximum(centres[labels] + 0.5 * rng.standard_normal((IMAGES, DIM)), 0).astype(np.float32)
    return x, labels.astype(np.uint8)


def time_sklearn(x, y, threads, iters=3):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    best, acc = float("inf"), 0.0
    with threadpool_limits(limits=threads):
        for _ in range(iters + 1):  # the first run warms up
            start = time.perf_counter()
            model = LogisticRegression().fit(x, y)
            ms = (time.perf_counter() - start) * 1e3
            best, acc = min(best, ms), model.score(x, y)
    return best, acc


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--wick", default=os.path.join(target, "release", "wick"))
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    cores = os.cpu_count()
    x, y = make_features()
    results = {}  # (runtime, threads) -> (ms, train accuracy)
    with tempfile.TemporaryDirectory() as data:
        x.tofile(os.path.join(data, "features.f32"))
        y.tofile(os.path.join(data, "labels.u8"))
        for threads in (1, cores):
            results[("sklearn-logreg", threads)] = time_sklearn(x, y, threads)
            out = subprocess.run([args.wick, "bench", "--head-data", data, "--threads", str(threads),
                                  "--iters", "3", "--json"], check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            results[("wick", threads)] = (r["ms"], r["train_accuracy"])
        if not args.no_browser:
            out = subprocess.run(["node", os.path.join(ROOT, "benches", "head_browser.mjs"), "--data", data, "--json"],
                                 check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                r = json.loads(line)
                results[(r["runtime"], r["threads"])] = (r["ms"], r["train_accuracy"])

    print(f"# head training, {IMAGES} x {DIM} -> {CLASSES} classes, 50 epochs, batch 64 — "
          f"{platform.processor() or platform.machine()}, {cores} cores")
    print(f"{'runtime':<16}{'threads':>8}{'ms':>10}{'train acc':>11}  ratio")
    for (who, threads), (ms, acc) in sorted(results.items()):
        if who == "wick":
            peer = results[("sklearn-logreg", threads)][0]
            ratio = f"{ms / peer:.2f}x sklearn"
        elif who == "wick-wasm":
            peers = [results[k][0] for k in (("tfjs-wasm", 1), ("tfjs-cpu", 1)) if k in results]
            ratio = f"{ms / min(peers):.2f}x fastest TF.js" if peers else ""
        else:
            ratio = ""
        print(f"{who:<16}{threads:>8}{ms:>10.1f}{acc:>11.3f}  {ratio}")


if __name__ == "__main__":
    main()
