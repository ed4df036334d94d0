"""Writes a torchvision-layout ResNet-18 state dict with seeded random weights and randomised
BatchNorm statistics (zip container), for the browser test: pretrained ResNet weights cannot be
fetched here. Run: python3 tests/reference/make_random_resnet.py OUT.pth
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import make_zip_checkpoint  # noqa: E402

def random_resnet18(seed=18):
    """{name: array} of a torchvision-layout ResNet-18 with seeded random weights."""
    rng = np.random.default_rng(seed)
    tensors = {}

    def conv_bn(conv, bn, out, inp, k):
        bound = np.sqrt(6.0 / (inp * k * k))
        tensors[f"{conv}.weight"] = rng.uniform(-bound, bound, (out, inp, k, k)).astype(np.float32)
        tensors[f"{bn}.weight"] = rng.uniform(0.5, 1.5, out).astype(np.float32)
        tensors[f"{bn}.bias"] = rng.uniform(-0.2, 0.2, out).astype(np.float32)
        tensors[f"{bn}.running_mean"] = rng.uniform(-0.2, 0.2, out).astype(np.float32)
        tensors[f"{bn}.running_var"] = rng.uniform(0.5, 2.0, out).astype(np.float32)

    conv_bn("conv1", "bn1", 64, 3, 7)
    inp = 64
    for layer, width in enumerate([64, 128, 256, 512], start=1):
        for b in range(2):
            pre, stride = f"layer{layer}.{b}", 2 if b == 0 and layer > 1 else 1
            conv_bn(f"{pre}.conv1", f"{pre}.bn1", width, inp, 3)
            conv_bn(f"{pre}.conv2", f"{pre}.bn2", width, width, 3)
            if stride != 1 or inp != width:
                conv_bn(f"{pre}.downsample.0", f"{pre}.downsample.1", width, inp, 1)
            inp = width
    tensors["fc.weight"] = rng.uniform(-0.044, 0.044, (1000, 512)).astype(np.float32)
    tensors["fc.bias"] = rng.uniform(-0.044, 0.044, 1000).astype(np.float32)
    return tensors


if __name__ == "__main__":
    make_zip_checkpoint.write(sys.argv[1], random_resnet18())
