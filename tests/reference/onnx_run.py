"""Runs a Wick ONNX export the way a user would: onnx's own checker (full), then onnxruntime on
pixels Wick prepared (float32, N×3×S×S, RGB in [0, 1]). Prints JSON: each image's probabilities and
features, and the model's metadata.

    python3 tests/reference/onnx_run.py MODEL.onnx PIXELS.f32 N
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

path, pixels_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = onnx.load(path)
onnx.checker.check_model(model, full_check=True)
side = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
pixels = np.fromfile(pixels_path, dtype="<f4").reshape(n, 3, side, side)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
probabilities, features = session.run(["probabilities", "features"], {"pixels": pixels})
print(json.dumps({
    "probabilities": probabilities.tolist(),
    "features": features.tolist(),
    "metadata": {p.key: p.value for p in model.metadata_props},
    "opset": [o.version for o in model.opset_import],
}))
