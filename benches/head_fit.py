#!/usr/bin/env python3
"""The default head's quality against a well-tuned logistic regression on the same features.

Reads the features `wick cifar10 --mode probe --save-features DIR` wrote (train / val / test), and for
each training-set size takes a class-balanced subset of the training rows and a validation subset
of a ninth of that size (the CLI's 10% share). Then fits:
- Wick's default head (`wick bench --head-fit`: L-BFGS along its regularisation path, the strength
  chosen by validation loss), and
- scikit-learn's LogisticRegression (lbfgs, max_iter 1000, warm-started) for every C in
  10^-3 … 10^3 in half-decades, keeping the C with the best validation accuracy ("tuned"), and
  with its default C = 1,
and prints the test accuracy of each, the gap Wick − tuned in points, and the time of each fit
(Wick's whole path against scikit-learn's whole grid) in the same run.

    python3 benches/head_fit.py DIR [--sizes 100,300,1000,3000,10000,36000] [--wick PATH]
Needs numpy and scikit-learn (`scripts/setup.sh bench`).
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


def load(dir_):
    y = np.fromfile(os.path.join(dir_, "labels.u8"), dtype=np.uint8)
    x = np.fromfile(os.path.join(dir_, "features.f32"), dtype="<f4").reshape(len(y), -1)
    return x, y


def balanced(y, n, seed):
    """n row indices, as even over the classes as the counts allow, in a seeded random order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    take = [list(p[: n // len(classes) + (1 if k < n % len(classes) else 0)]) for k, p in enumerate(per)]
    return np.array(sorted(sum(take, [])))


def save(dir_, x, y):
    os.makedirs(dir_, exist_ok=True)
    x.astype("<f4").tofile(os.path.join(dir_, "features.f32"))
    y.astype(np.uint8).tofile(os.path.join(dir_, "labels.u8"))


def sklearn_tuned(xt, yt, xv, yv, xs, ys):
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    model = LogisticRegression(max_iter=1000, warm_start=True)
    best = (-1.0, None, None)
    for c in 10.0 ** np.arange(-3, 3.01, 0.5):
        model.set_params(C=c).fit(xt, yt)
        val = model.score(xv, yv)
        if val > best[0]:
            best = (val, c, model.score(xs, ys))
    seconds = time.perf_counter() - start
    default = LogisticRegression(max_iter=1000).fit(xt, yt).score(xs, ys)
    return {"val": best[0], "c": best[1], "test": best[2], "default_c_test": default, "seconds": seconds}


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("dir")
    ap.add_argument("--sizes", default="100,300,1000,3000,10000,36000")
    ap.add_argument("--wick", default=os.path.join(target, "release", "wick"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    (xt, yt), (xv, yv), (xs, ys) = (load(os.path.join(args.dir, s)) for s in ("train", "val", "test"))
    print(f"# head fit vs tuned logistic regression — {xt.shape[1]}-d features from {args.dir}; "
          f"test {len(ys)} rows — {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{'train':>6}{'val':>6}{'wick':>8}{'sk tuned':>9}{'sk C=1':>8}{'gap pt':>8}"
          f"{'wick s':>8}{'sk s':>8}  wick C / sk C")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        n = min(n, len(yt))
        ti, vi = balanced(yt, n, args.seed), balanced(yv, min(len(yv), max(10, round(n / 9))), args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            save(os.path.join(tmp, "train"), xt[ti], yt[ti])
            save(os.path.join(tmp, "val"), xv[vi], yv[vi])
            save(os.path.join(tmp, "test"), xs, ys)
            out = subprocess.run([args.wick, "bench", "--head-fit", tmp, "--json"], check=True,
                                 capture_output=True, text=True).stdout
        wick = json.loads(out)
        sk = sklearn_tuned(xt[ti], yt[ti], xv[vi], yv[vi], xs, ys)
        gap = 100 * (wick["test_accuracy"] - sk["test"])
        rows.append({"train": n, "val": len(vi), "wick": wick, "sklearn": sk, "gap_points": gap})
        print(f"{n:>6}{len(vi):>6}{100 * wick['test_accuracy']:>8.2f}{100 * sk['test']:>9.2f}"
              f"{100 * sk['default_c_test']:>8.2f}{gap:>+8.2f}{wick['seconds']:>8.1f}{sk['seconds']:>8.1f}"
              f"  {wick['sklearn_c']:.3g} / {sk['c']:.3g}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
