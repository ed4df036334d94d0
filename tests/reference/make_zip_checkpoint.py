"""Writes tests/fixtures/tiny-zip.pth: a state dict in torch.save's zip container (PyTorch >= 1.6),
made without PyTorch: stand-in `torch` modules give the pickle the same globals and persistent ids
torch writes, and the zip has torch's layout (archive/data.pkl, archive/byteorder, archive/data/<key>,
archive/version, stored entries). Three tensors: `a.weight` (2×3, contiguous), `b.weight` (3×2, a
transposed view), `c.bias` (3 values of a.weight's storage from offset 2) — shared storage, strides
and offsets all exercised. Run: python3 tests/reference/make_zip_checkpoint.py
"""
import collections, io, pickle, struct, sys, types, zipfile
from pathlib import Path

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")


class FloatStorage:  # pickled by reference, as `torch.FloatStorage`
    pass


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


FloatStorage.__module__ = "torch"
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
sys.modules.update({"torch": torch, "torch._utils": utils})


class Storage:
    def __init__(self, key, values):
        self.key, self.values = key, values


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", len(obj.values))
        return None


def write(out, tensors):
    """Writes `tensors` ({name: float32 numpy array}) as a zip-container state dict at `out`."""
    import numpy as np
    state = collections.OrderedDict()
    storages = []
    for i, (name, array) in enumerate(tensors.items()):
        storage = Storage(str(i), np.ascontiguousarray(array, dtype=np.float32).ravel())
        storages.append(storage)
        shape = tuple(array.shape)
        stride = tuple(int(np.prod(shape[d + 1:])) for d in range(len(shape)))
        state[name] = Tensor(storage, 0, shape, stride)
    save(out, state, storages)


def save(out, state, storages):
    data = io.BytesIO()
    Pickler(data, protocol=2).dump(state)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data.getvalue())
        z.writestr("archive/byteorder", "little")
        for s in storages:
            values = s.values
            z.writestr(f"archive/data/{s.key}", values.tobytes() if hasattr(values, "tobytes") else struct.pack(f"<{len(values)}f", *values))
        z.writestr("archive/version", "3\n")


def main():
    s0 = Storage("0", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    s1 = Storage("1", [10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    state = collections.OrderedDict()
    state["a.weight"] = Tensor(s0, 0, (2, 3), (3, 1))
    state["b.weight"] = Tensor(s1, 0, (3, 2), (1, 3))
    state["c.bias"] = Tensor(s0, 2, (3,), (1,))
    state._metadata = collections.OrderedDict([("", {"version": 1})])
    out = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-zip.pth"
    save(out, state, [s0, s1])
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
