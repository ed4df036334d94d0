#!/usr/bin/env python3
"""PyTorch's own answers for torchvision's ResNet-18, -34 and -50, for `make check-torch` (it needs
`pip install torch torchvision`, ~3 GB, so it is not part of `make test`).

Each network gets seeded random weights and randomised BatchNorm parameters and running statistics
(pretrained weights cannot be fetched here) and is saved by `torch.save` (the zip container) and, if
the `safetensors` package is installed, as a safetensors state dict. torchvision's ImageNet
transform (Resize(256), CenterCrop(224), Normalize) and forward pass give the pooled features and the
logits of each photo, written next to the checkpoints as JSON; `tests/torchvision.rs` compares
Wick's against them.

    check_torchvision.py OUT_DIR IMAGE...
"""
import json
import sys
from pathlib import Path

import torch
import torchvision
from PIL import Image

torch.manual_seed(0)
transform = torchvision.transforms.Compose([
    torchvision.transforms.Resize(256),
    torchvision.transforms.CenterCrop(224),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])


def random_network(name):
    model = getattr(torchvision.models, name)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def main():
    out, photos = Path(sys.argv[1]), sys.argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in photos])
    for name in ("resnet18", "resnet34", "resnet50"):
        model = random_network(name)
        torch.save(model.state_dict(), out / f"{name}.pth")
        try:
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / f"{name}.safetensors")
        except ImportError:
            pass
        with torch.no_grad():
            features = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(model.layer1(
                model.maxpool(model.relu(model.bn1(model.conv1(x))))))))), 1)
            logits = model.fc(features)
        (out / f"{name}.json").write_text(json.dumps(
            {"photos": photos, "features": features.tolist(), "logits": logits.tolist()}))
        print(out / f"{name}.pth")


if __name__ == "__main__":
    main()
