"""The ONNX export against Wick on the same machine, same run: `wick export` writes Lite0 (with its
ImageNet classifier) as ONNX, onnxruntime runs it on one thread, and `wick bench` times Wick's own
forward pass (f32 products, which the export's f32 weights answer like, and the default int8), in
alternating rounds; ms per image at batch 1 and 8, and each runtime's best round.

    python3 benches/onnx_export.py [--wick target/release/wick] [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("--wick", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release/wick"))
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "lite0.onnx")
    start = time.perf_counter()
    subprocess.run([args.wick, "export", "--format", "onnx", "--out", path], check=True, capture_output=True)
    export_s = time.perf_counter() - start
    size = os.path.getsize(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    best = {}
    for _ in range(args.rounds):
        for batch in (1, 8):
            x = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)
            session.run(None, {"pixels": x})
            times = []
            for _ in range(15):
                t = time.perf_counter()
                session.run(None, {"pixels": x})
                times.append((time.perf_counter() - t) * 1e3 / batch)
            key = ("onnxruntime", batch)
            best[key] = min(best.get(key, float("inf")), float(np.median(times)))
        for precision in ("f32", "int8"):
            out = subprocess.run([args.wick, "bench", "--threads", "1", "--batch", "1,8", "--iters", "15",
                                  "--precision", precision, "--json"], check=True, capture_output=True, text=True)
            for line in out.stdout.splitlines():
                r = json.loads(line)
                key = (f"wick {precision}", r["batch"])
                best[key] = min(best.get(key, float("inf")), r["ms_per_image"])
    print(f"export: {size / 1e6:.2f} MB in {export_s:.2f} s (the wick process, loading included)")
    for batch in (1, 8):
        peer = best[("onnxruntime", batch)]
        for who in ("onnxruntime", "wick f32", "wick int8"):
            ms = best[(who, batch)]
            print(f"batch {batch}: {who:12s} {ms:6.2f} ms/image  {ms / peer:.2f}x onnxruntime on the export")
