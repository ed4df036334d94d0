"""docs/elsewhere.md's Python snippet, as a script the tests run: classify photos with a Wick ONNX
export, preprocessing with Pillow as the export's metadata says.

    python3 tests/reference/onnx_snippet.py MODEL.onnx PHOTO...
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
labels, resize, crop = json.loads(meta["labels"]), int(meta["resize_shorter"]), int(meta["crop"])

def pixels(path):
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0

batch = np.stack([pixels(p) for p in sys.argv[2:]])
probabilities, = session.run(["probabilities"], {"pixels": batch})
for path, p in zip(sys.argv[2:], probabilities):
    best = int(p.argmax())
    print(json.dumps({"path": path, "label": labels[best], "probability": float(p[best])}))
