#!/usr/bin/env python3
"""Backbone forward benchmark: Wick (native and wasm in headless Chromium) against its peers, same run.

Peers: ONNX Runtime (CPU) running EfficientNet-Lite0 built here with the `onnx` package from the same
checkpoint (BatchNorm folded, TF 'SAME' pads), and the numpy reference (tests/reference/efficientnet_lite_numpy.py).
Prints ms/image for batch 1 and 16 (native: the best of 3 alternating rounds, each a median pass) and
the ratios Wick / peer (< 1 means Wick is faster).

    python3 benches/peer.py [--wick PATH] [--no-browser]
Needs: `make dist` (for the browser run), onnx, onnxruntime, numpy, Pillow (`scripts/setup.sh bench`).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import efficientnet_lite_numpy as ref  # noqa: E402


def folded(p, conv, bn):
    w = p[f"{conv}.weight"]
    g, b, m, v = (p[f"{bn}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    scale = g / np.sqrt(v + ref.EPS)
    return (w * scale[:, None, None, None]).astype(np.float32), (b - m * scale).astype(np.float32)


def build_onnx(p):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    const = lambda name, arr: inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name)) or name
    const("zero", 0.0), const("six", 6.0)

    def conv(x, conv_name, bn_name, size, stride, groups, relu6, out):
        w, b = folded(p, conv_name, bn_name)
        k = w.shape[-1]
        o = -(-size // stride)
        total = max((o - 1) * stride + k - size, 0)
        pads = [total // 2, total // 2, total - total // 2, total - total // 2]
        y = out if not relu6 else out + "_pre"
        nodes.append(helper.make_node("Conv", [x, const(conv_name + ".w", w), const(conv_name + ".b", b)], [y],
                                      strides=[stride, stride], pads=pads, group=groups, kernel_shape=[k, k]))
        if relu6:
            nodes.append(helper.make_node("Clip", [y, "zero", "six"], [out]))
        return out, o

    x, size = conv("input", "_conv_stem", "_bn0", 224, 2, 1, True, "stem")
    i, c_in = 0, 32
    for k, s, e, c_out, r in ref.stages(p):
        for j in range(r):
            stride, pre = (s if j == 0 else 1), f"_blocks.{i}"
            h, hidden = x, c_in * e
            if e != 1:
                h, _ = conv(h, f"{pre}._expand_conv", f"{pre}._bn0", size, 1, 1, True, f"{pre}.expand")
            h, new_size = conv(h, f"{pre}._depthwise_conv", f"{pre}._bn1", size, stride, hidden, True, f"{pre}.dw")
            h, _ = conv(h, f"{pre}._project_conv", f"{pre}._bn2", new_size, 1, 1, False, f"{pre}.project")
            if stride == 1 and c_in == c_out:
                nodes.append(helper.make_node("Add", [h, x], [f"{pre}.out"]))
                h = f"{pre}.out"
            x, size, c_in, i = h, new_size, c_out, i + 1
    x, _ = conv(x, "_conv_head", "_bn1", size, 1, 1, True, "head")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"]))
    graph = helper.make_graph(nodes, "efficientnet_lite0", [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1280])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


# Rounds alternate the runtimes, and each keeps its best round: the host is shared and noisy, and a
# slow minute should not land on one side only. Within a round each keeps its median pass, so a
# single 100-200 ms stall of the hypervisor's is not spread over the passes around it.
ROUNDS = 3


def median_ms_per_image(fn, batch, seconds):
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    fn(x)  # warm-up
    passes, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(passes) < 3:
        t = time.perf_counter()
        fn(x)
        passes.append(time.perf_counter() - t)
    return statistics.median(passes) * 1e3 / batch


def native_rounds(onnx_bytes, wick_bench, cores, rounds=ROUNDS):
    """{(runtime, threads, batch): ms/image} for ONNX Runtime and Wick (`wick_bench`: the `wick bench`
    command line up to its threads and precision) in int8 and f32, each at 1 thread and `cores`,
    batch 1 and 16, in alternating rounds (see ROUNDS)."""
    import onnxruntime as ort

    sessions = {}
    for threads in (1, cores):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sessions[threads] = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
    best = {}

    def keep(key, ms):
        best[key] = min(best.get(key, float("inf")), ms)

    for _ in range(rounds):
        for threads, sess in sessions.items():
            for batch in (1, 16):
                keep(("onnxruntime", threads, batch),
                     median_ms_per_image(lambda x: sess.run(None, {"input": x}), batch, seconds=1.5))
        for precision in ("int8", "f32"):
            for threads in (1, cores):
                out = subprocess.run(wick_bench + ["--threads", str(threads), "--batch", "1,16", "--json",
                                                   "--precision", precision], check=True, capture_output=True,
                                     text=True).stdout
                for line in out.splitlines():
                    r = json.loads(line)
                    keep((f"wick-{precision}", threads, r["batch"]), r["ms_per_image"])
    return best


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--wick", default=os.path.join(target, "release", "wick"))
    ap.add_argument("--pth", default=os.path.expanduser("~/.cache/wick/efficientnet-lite0-57934424.pth"))
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds (more on a noisy host)")
    args = ap.parse_args()
    import onnxruntime as ort

    p = ref.load_checkpoint(args.pth)
    onnx_bytes = build_onnx(p)
    cores = os.cpu_count()
    results = {}  # (who, threads, batch) -> ms/image

    # The ONNX graph must compute what the reference computes.
    photo = ref.preprocess(os.path.join(ROOT, "tests", "fixtures", "coffee.png"), 224)[None].astype(np.float32)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    a, b = sess.run(None, {"input": photo})[0][0], ref.features(p, photo)[0]
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.9999, f"ONNX graph disagrees with the reference (cosine {cos})"

    results.update(native_rounds(onnx_bytes, [args.wick, "bench"], cores, args.rounds))
    for batch in (1, 16):
        results[("numpy", "blas", batch)] = median_ms_per_image(lambda x: ref.features(p, x), batch, seconds=2.0)
    if not args.no_browser:
        out = subprocess.run(["node", os.path.join(ROOT, "benches", "browser.mjs"), "--json"],
                             check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            results[(f"wick-wasm-{r['precision']}", 1, r["batch"])] = r["ms_per_image"]

    print(f"# EfficientNet-Lite0 forward, ms/image (native: best of {args.rounds} alternating rounds' median passes) — "
          f"{platform.processor() or platform.machine()}, {cores} cores")
    print(f"{'runtime':<18}{'threads':>8}{'batch':>7}{'ms/image':>10}{'/ ORT same thr':>16}{'/ ORT 1 thr':>13}{'/ numpy':>9}")
    for (who, threads, batch), ms in sorted(results.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        ort_same = results.get(("onnxruntime", threads, batch))
        ort_one = results[("onnxruntime", 1, batch)]
        npy = results[("numpy", "blas", batch)]
        same = f"{ms / ort_same:.2f}x" if ort_same else "-"
        print(f"{who:<18}{threads!s:>8}{batch:>7}{ms:>10.2f}{same:>16}{ms / ort_one:>12.2f}x{ms / npy:>8.2f}x")


if __name__ == "__main__":
    main()
