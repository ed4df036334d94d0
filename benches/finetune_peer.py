"""The PyTorch peer of `wick bench --finetune`: the same fine-tuning step in PyTorch eager mode.

EfficientNet-Lite0 (timm's `efficientnet_lite0` when timm is installed, else the same architecture
defined below; random weights: only the speed is compared), BatchNorm in training mode, seeded random
32x32 images cropped and mirrored on the CPU, upsampled (bilinear) on the device, label-smoothed
cross-entropy, SGD with Nesterov momentum, weight decay on conv/linear weights only. One JSON line per
(img_size, batch), like `wick bench --finetune --json`.

    python3 benches/finetune_peer.py --device cuda --img-size 224,64 --batch 64 --iters 20
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (kernel, stride, expand ratio, out channels, repeats): EfficientNet-Lite0.
STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]


def conv_bn(c_in, c_out, kernel, stride=1, groups=1, relu6=True):
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(c_out, eps=1e-3)]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, expand):
        super().__init__()
        hidden = c_in * expand
        self.expand = conv_bn(c_in, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn(hidden, c_out, 1, relu6=False)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self, classes):
        super().__init__()
        blocks, c_in = [], 32
        for kernel, stride, expand, c_out, repeats in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if r == 0 else 1, expand))
                c_in = c_out
        self.features = nn.Sequential(conv_bn(3, 32, 3, 2), *blocks, conv_bn(c_in, 1280, 1))
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def model(classes):
    try:
        import timm
        return timm.create_model("efficientnet_lite0", num_classes=classes), "timm efficientnet_lite0"
    except ImportError:
        return EfficientNetLite0(classes), "efficientnet_lite0 (timm's architecture, defined here)"


def crop_and_flip(images, generator, pad=4):
    """Random 32x32 crops of the zero-padded uint8 images, half of them mirrored (on the CPU)."""
    n = images.shape[0]
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out


def bench(device, img_size, batch, warmup, iters, amp):
    torch.manual_seed(0)
    net, name = model(10)
    net = net.to(device).train()
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-5}, {"params": no_decay, "weight_decay": 0}],
                                lr=0.05, momentum=0.9, nesterov=True)
    generator = torch.Generator().manual_seed(7)
    steps = warmup + iters
    images = torch.randint(0, 256, (steps * batch, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (steps * batch,), generator=generator)
    losses, ends = [], []
    start = time.perf_counter()
    for step in range(steps):
        x = crop_and_flip(images[step * batch:(step + 1) * batch], generator)
        x = x.to(device, non_blocking=True).float() / 127.5 - 1.0
        if img_size != 32:
            x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
        y = labels[step * batch:(step + 1) * batch].to(device, non_blocking=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # reads the loss back, like wick: the clock sees the work done
        ends.append(time.perf_counter() - start)
    timed_from = ends[warmup - 1] if warmup else 0.0
    return {"what": f"pytorch {torch.__version__} eager{' bf16 autocast' if amp else ''} finetune step, {name}",
            "device": device, "img_size": img_size, "batch": batch, "timed_steps": iters,
            "images_per_second": iters * batch / (ends[-1] - timed_from), "losses": losses}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--img-size", default="224,64")
    parser.add_argument("--batch", default="64")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (Wick trains in f32)")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    elif "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    for img_size in map(int, args.img_size.split(",")):
        for batch in map(int, args.batch.split(",")):
            print(json.dumps(bench(args.device, img_size, batch, args.warmup, args.iters, args.amp)), flush=True)


if __name__ == "__main__":
    main()
