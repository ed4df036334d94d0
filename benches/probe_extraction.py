#!/usr/bin/env python3
"""What `wick cifar10 --mode probe` users wait for: feature extraction on real CIFAR-10 images (the JPEG
copy in ../shared/data), images/s, with int8 products and with f32 in the same run (no cache, so every
image is decoded, upsampled and run through the backbone).

    python3 benches/probe_extraction.py DIR [--limit N] [--img-size S] [--wick PATH]
DIR holds train/<class>/*.jpg; --limit N takes N training and N test images (default 2500 each).
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("data")
    ap.add_argument("--wick", default=os.path.join(target, "release", "wick"))
    ap.add_argument("--limit", type=int, default=2500)
    ap.add_argument("--img-size", type=int, default=96)
    args = ap.parse_args()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("int8", "f32"):
            out = subprocess.run([args.wick, "cifar10", "--data", args.data, "--limit", str(args.limit), "--no-cache",
                                  "--img-size", str(args.img_size), "--precision", precision, "--json", "--quiet",
                                  "--out", os.path.join(tmp, f"probe-{precision}.wick")],
                                 check=True, capture_output=True, text=True).stdout
            report = json.loads(out)
            rates[precision] = (report["extraction_images_per_second"], report["features_computed"],
                                report["test"]["accuracy"])
    print(f"# wick cifar10 --mode probe feature extraction, CIFAR-10 (JPEG copy), {args.img_size} px, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{'precision':<10}{'images':>8}{'images/s':>10}{'test acc':>10}{'speed-up':>10}")
    for precision, (rate, count, accuracy) in rates.items():
        print(f"{precision:<10}{count:>8}{rate:>10.1f}{100 * accuracy:>9.2f}%{rate / rates['f32'][0]:>9.2f}x")


if __name__ == "__main__":
    main()
