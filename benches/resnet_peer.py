#!/usr/bin/env python3
"""ResNet-18 forward: Wick native against ONNX Runtime (CPU) on the same graph and weights, same run.

The weights are torchvision's layout with seeded random values (tests/reference/make_random_resnet.py:
pretrained ones cannot be fetched here; the arithmetic is the same). The ONNX graph is built here with
the `onnx` package from the same tensors, BatchNorm folded, and must agree with the independent numpy
reference (tests/reference/resnet_numpy.py) before anything is timed. Prints ms/image for batch 1 and
16 at 1 thread and all cores, and Wick / ONNX Runtime (< 1 means Wick is faster).

    python3 benches/resnet_peer.py [--wick PATH]
Needs: onnx, onnxruntime, numpy, Pillow (`scripts/setup.sh bench`).
"""
import argparse
import os
import platform
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import make_random_resnet  # noqa: E402
import make_zip_checkpoint  # noqa: E402
import resnet_numpy as ref  # noqa: E402
from peer import ROUNDS, native_rounds  # noqa: E402  (benches/peer.py: same rounds, same clock)


def folded(p, conv, bn):
    g, b, m, v = (p[f"{bn}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    scale = g / np.sqrt(v + ref.EPS)
    return (p[f"{conv}.weight"] * scale[:, None, None, None]).astype(np.float32), (b - m * scale).astype(np.float32)


def build_onnx(p):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, counter = [], [], [0]

    def conv(x, name, bn, stride, pad, relu):
        w, b = folded(p, name, bn)
        inits.extend([numpy_helper.from_array(w, name + ".w"), numpy_helper.from_array(b, name + ".b")])
        counter[0] += 1
        out = f"t{counter[0]}"
        nodes.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [out + ("_pre" if relu else "")],
                                      strides=[stride] * 2, pads=[pad] * 4, kernel_shape=list(w.shape[2:])))
        if relu:
            nodes.append(helper.make_node("Relu", [out + "_pre"], [out]))
        return out

    x = conv("input", "conv1", "bn1", 2, 3, True)
    nodes.append(helper.make_node("MaxPool", [x], ["pooled"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x = "pooled"
    for layer in range(1, 5):
        b = 0
        while f"layer{layer}.{b}.conv1.weight" in p:
            pre, stride = f"layer{layer}.{b}", 2 if b == 0 and layer > 1 else 1
            h = conv(x, f"{pre}.conv1", f"{pre}.bn1", stride, 1, True)
            h = conv(h, f"{pre}.conv2", f"{pre}.bn2", 1, 1, False)
            identity = conv(x, f"{pre}.downsample.0", f"{pre}.downsample.1", stride, 0, False) \
                if f"{pre}.downsample.0.weight" in p else x
            counter[0] += 1
            out = f"t{counter[0]}"
            nodes.append(helper.make_node("Add", [h, identity], [out + "_sum"]))
            nodes.append(helper.make_node("Relu", [out + "_sum"], [out]))
            x, b = out, b + 1
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["features"]))
    graph = helper.make_graph(nodes, "resnet18", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 224, 224])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 512])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--wick", default=os.path.join(target, "release", "wick"))
    args = ap.parse_args()
    import onnxruntime as ort

    p = make_random_resnet.random_resnet18()
    onnx_bytes = build_onnx(p)
    photo = ref.preprocess(os.path.join(ROOT, "tests", "fixtures", "coffee.png"))[None].astype(np.float32)
    a = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, {"input": photo})[0][0]
    b = ref.features(p, photo)[0]
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.9999, f"ONNX graph disagrees with the reference (cosine {cos})"

    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        pth = os.path.join(tmp, "resnet18-random.pth")
        make_zip_checkpoint.write(pth, p)
        results = native_rounds(onnx_bytes, [args.wick, "bench", "--pth", pth], cores)

    print(f"# ResNet-18 forward (224 px), ms/image (best of {ROUNDS} alternating rounds' median passes) — "
          f"{platform.processor() or platform.machine()}, {cores} cores; "
          f"ONNX graph cosine {cos:.6f} to the numpy reference")
    print(f"{'runtime':<14}{'threads':>8}{'batch':>7}{'ms/image':>10}{'/ ORT same':>12}")
    for (who, threads, batch), ms in sorted(results.items()):
        print(f"{who:<14}{threads:>8}{batch:>7}{ms:>10.2f}{ms / results[('onnxruntime', threads, batch)]:>11.2f}x")


if __name__ == "__main__":
    main()
