#!/usr/bin/env python3
"""Independent reference for torchvision's ResNet-18/34/50: numpy + Pillow only, no torch, no Wick code.

Reads the legacy torch checkpoint (the loader of efficientnet_lite_numpy.py), reads the layout from
the state dict's names (bottleneck blocks if `layer1.0.conv3` exists; blocks per layer counted),
preprocesses like torchvision (shorter side 256, BILINEAR, centre crop 224 with Python's `round`,
ImageNet mean and std) and runs the network with *unfolded* BatchNorm (eps 1e-5).

    resnet_numpy.py CHECKPOINT.pth IMAGE... > reference.json     # features, top5, top2_margin
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from efficientnet_lite_numpy import load_checkpoint  # noqa: E402

EPS = 1e-5
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def preprocess(path):
    from PIL import Image
    im = Image.open(path).convert("RGB")
    w, h = im.size
    ow, oh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    im = im.resize((ow, oh), Image.BILINEAR)
    top, left = int(round((oh - 224) / 2.0)), int(round((ow - 224) / 2.0))
    x = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def conv(x, wt, stride, pad):
    k = wt.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, w = xp.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    cols = np.stack([xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] for i in range(k) for j in range(k)], axis=2)
    cols = cols.reshape(n, c * k * k, oh * ow)
    return np.einsum("oi,nip->nop", wt.reshape(wt.shape[0], -1), cols).reshape(n, -1, oh, ow)


def bn(x, p, name):
    g, b, m, v = (p[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    r = lambda a: a[None, :, None, None]
    return (x - r(m)) / np.sqrt(r(v) + EPS) * r(g) + r(b)


relu = lambda x: np.maximum(x, 0)


def maxpool(x):
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    oh, ow = (x.shape[2] - 1) // 2 + 1, (x.shape[3] - 1) // 2 + 1
    return np.max(np.stack([xp[:, :, i:i + 2 * oh:2, j:j + 2 * ow:2] for i in range(3) for j in range(3)]), axis=0)


def features(p, x):
    x = maxpool(relu(bn(conv(x, p["conv1.weight"], 2, 3), p, "bn1")))
    bottleneck = "layer1.0.conv3.weight" in p
    for layer in range(1, 5):
        b = 0
        while f"layer{layer}.{b}.conv1.weight" in p:
            pre, stride = f"layer{layer}.{b}", 2 if b == 0 and layer > 1 else 1
            if bottleneck:
                h = relu(bn(conv(x, p[f"{pre}.conv1.weight"], 1, 0), p, f"{pre}.bn1"))
                h = relu(bn(conv(h, p[f"{pre}.conv2.weight"], stride, 1), p, f"{pre}.bn2"))
                h = bn(conv(h, p[f"{pre}.conv3.weight"], 1, 0), p, f"{pre}.bn3")
            else:
                h = relu(bn(conv(x, p[f"{pre}.conv1.weight"], stride, 1), p, f"{pre}.bn1"))
                h = bn(conv(h, p[f"{pre}.conv2.weight"], 1, 1), p, f"{pre}.bn2")
            if f"{pre}.downsample.0.weight" in p:
                x = bn(conv(x, p[f"{pre}.downsample.0.weight"], stride, 0), p, f"{pre}.downsample.1")
            x = relu(h + x)
            b += 1
    return x.mean(axis=(2, 3))


def main():
    p = load_checkpoint(sys.argv[1])
    x = np.stack([preprocess(path) for path in sys.argv[2:]]).astype(np.float32)
    f = features(p, x)
    logits = f @ p["fc.weight"].T + p["fc.bias"]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    margin = np.take_along_axis(logits, top5[:, :1], 1) - np.take_along_axis(logits, top5[:, 1:2], 1)
    json.dump({"features": f.tolist(), "top5": top5.tolist(), "top2_margin": margin[:, 0].tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
