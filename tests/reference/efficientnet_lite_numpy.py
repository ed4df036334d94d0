#!/usr/bin/env python3
"""Independent reference for EfficientNet-Lite0/1/2: numpy + Pillow only, no torch, no Wick code.

Reads the legacy torch checkpoint with a restricted unpickler (strides honoured with numpy's
as_strided), reads the stages from the checkpoint itself (blocks grouped by output width; kernel,
stride and expansion from EfficientNet-B0's table), preprocesses with Pillow (resize the shorter
side to SIZE + 32, BILINEAR, centre crop SIZE, [-1, 1]) and runs the network with *unfolded*
BatchNorm.

    efficientnet_lite_numpy.py [--size 224] CHECKPOINT.pth IMAGE... > reference.json   # features, top5, top2_margin
    efficientnet_lite_numpy.py --bench CHECKPOINT.pth                                # ms/image, batch 1 and 16
"""
import json
import pickle
import struct
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import as_strided

EPS = 1e-3
B0_STAGES = [(3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6)]  # kernel, stride, expand


def stages(p):
    """(kernel, stride, expand, out, repeats) per stage, from the checkpoint's block shapes."""
    outs = []
    while f"_blocks.{len(outs)}._project_conv.weight" in p:
        outs.append(p[f"_blocks.{len(outs)}._project_conv.weight"].shape[0])
    groups = []
    for c in outs:
        if groups and groups[-1][0] == c:
            groups[-1][1] += 1
        else:
            groups.append([c, 1])
    return [(k, s, e, c, r) for (k, s, e), (c, r) in zip(B0_STAGES, groups)]
DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}


def load_checkpoint(path):
    f = open(path, "rb")
    for _ in range(3):  # magic number, protocol version, sys info
        pickle.load(f)

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                import collections
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *rest: (storage, offset, size, stride)
            if module == "torch" and name in DTYPES:
                return name
            raise pickle.UnpicklingError(f"refused global {module}.{name}")

        def persistent_load(self, pid):
            _, storage_type, key, _, numel, _ = pid
            return (key, storage_type, numel)

    views = Unpickler(f).load()
    keys = pickle.load(f)
    storages = {}
    by_key = {v[0][0]: v[0] for v in views.values()}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        dtype = np.dtype(DTYPES[by_key[key][1]])
        storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    out = {}
    for name, ((key, _, _), offset, size, stride) in views.items():
        s = storages[key]
        out[name] = np.array(as_strided(s[offset:], shape=size, strides=[x * s.itemsize for x in stride]))
    return out


def preprocess(path, size):
    from PIL import Image
    im = Image.open(path).convert("RGB")
    w, h = im.size
    shorter = size + 32
    if w <= h:
        ow, oh = shorter, int(shorter * h / w)
    else:
        ow, oh = int(shorter * w / h), shorter
    im = im.resize((ow, oh), Image.BILINEAR)
    top, left = int(round((oh - size) / 2.0)), int(round((ow - size) / 2.0))
    im = im.crop((left, top, left + size, top + size))
    x = np.asarray(im, dtype=np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)


def same_pad(x, k, s):
    n, c, h, w = x.shape
    oh, ow = -(-h // s), -(-w // s)
    ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
    return np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))), oh, ow


def conv_full(x, wt, s):
    k = wt.shape[-1]
    xp, oh, ow = same_pad(x, k, s)
    cols = np.stack([xp[:, :, i:i + s * oh:s, j:j + s * ow:s] for i in range(k) for j in range(k)], axis=2)
    n, c = x.shape[:2]
    cols = cols.reshape(n, c * k * k, oh * ow)  # (c, tap) order matches wt.reshape(o, c*k*k)
    return np.einsum("oi,nip->nop", wt.reshape(wt.shape[0], -1), cols).reshape(n, -1, oh, ow)


def conv_depthwise(x, wt, s):
    k = wt.shape[-1]
    xp, oh, ow = same_pad(x, k, s)
    out = np.zeros((x.shape[0], x.shape[1], oh, ow), np.float32)
    for i in range(k):
        for j in range(k):
            out += xp[:, :, i:i + s * oh:s, j:j + s * ow:s] * wt[None, :, 0, i, j, None, None]
    return out


def conv_1x1(x, wt):
    n, c, h, w = x.shape
    return np.matmul(wt.reshape(wt.shape[0], c), x.reshape(n, c, h * w)).reshape(n, -1, h, w)


def bn(x, p, name):
    g, b, m, v = (p[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    r = lambda a: a[None, :, None, None]
    return (x - r(m)) / np.sqrt(r(v) + EPS) * r(g) + r(b)


relu6 = lambda x: np.clip(x, 0, 6)


def features(p, x):
    x = relu6(bn(conv_full(x, p["_conv_stem.weight"], 2), p, "_bn0"))
    i, c_in = 0, 32
    for k, s, e, c_out, r in stages(p):
        for j in range(r):
            stride = s if j == 0 else 1
            pre = f"_blocks.{i}"
            h = x
            if e != 1:
                h = relu6(bn(conv_1x1(h, p[f"{pre}._expand_conv.weight"]), p, f"{pre}._bn0"))
            h = relu6(bn(conv_depthwise(h, p[f"{pre}._depthwise_conv.weight"], stride), p, f"{pre}._bn1"))
            h = bn(conv_1x1(h, p[f"{pre}._project_conv.weight"]), p, f"{pre}._bn2")
            x = h + x if stride == 1 and c_in == c_out else h
            c_in, i = c_out, i + 1
    x = relu6(bn(conv_1x1(x, p["_conv_head.weight"]), p, "_bn1"))
    return x.mean(axis=(2, 3))


def main():
    if sys.argv[1] == "--bench":
        p = load_checkpoint(sys.argv[2])
        for batch in (1, 16):
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            features(p, x)
            iters = 5 if batch == 1 else 2
            t = time.perf_counter()
            for _ in range(iters):
                features(p, x)
            ms = (time.perf_counter() - t) * 1e3 / (iters * batch)
            print(json.dumps({"peer": "numpy", "batch": batch, "ms_per_image": ms}))
        return
    args = sys.argv[1:]
    size = 224
    if args[0] == "--size":
        size, args = int(args[1]), args[2:]
    p = load_checkpoint(args[0])
    x = np.stack([preprocess(path, size) for path in args[1:]]).astype(np.float32)
    f = features(p, x)
    logits = f @ p["_fc.weight"].T + p["_fc.bias"]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    margin = np.take_along_axis(logits, top5[:, :1], 1) - np.take_along_axis(logits, top5[:, 1:2], 1)
    json.dump({"features": f.tolist(), "top5": top5.tolist(), "top2_margin": margin[:, 0].tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
