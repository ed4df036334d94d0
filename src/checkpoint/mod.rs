//! Readers for PyTorch checkpoints — both `torch.save` containers, the legacy one ([`torch_legacy`],
//! before PyTorch 1.6) and the zip one ([`torch_zip`]), and state dicts saved as safetensors
//! ([`safetensors`]) — giving a [`StateDict`] of strided views into raw storages. Their pickles go through [`pickle`], a small safe subset that builds plain values,
//! knows three kinds of global (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch.*Storage`), refuses any other by name, and never executes anything.

pub mod pickle;
pub mod safetensors;
pub mod torch_legacy;
pub mod torch_zip;

use std::collections::HashMap;

use crate::error::{invalid, Result};

/// A checkpoint's state dict: either `torch.save` container, or a safetensors file of a state dict
/// (timm and Hugging Face's `model.safetensors`), told apart by their first bytes.
pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict> {
    if bytes.starts_with(b"PK\x03\x04") {
        torch_zip::read_state_dict(bytes)
    } else if safetensors::looks_like(bytes) {
        safetensors::read_state_dict(bytes)
    } else {
        torch_legacy::read_state_dict(bytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A tensor as the checkpoint describes it: a strided view into one storage.
#[derive(Debug, Clone)]
pub struct TensorView {
    pub storage_key: String,
    pub dtype: StorageDtype,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A state dict read from a checkpoint, with its storages.
pub struct StateDict {
    pub tensors: Vec<(String, TensorView)>,
    storages: HashMap<String, (StorageDtype, Vec<u8>)>,
}

impl StateDict {
    pub fn get(&self, name: &str) -> Option<&TensorView> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Reads a float tensor into a contiguous row-major `Vec<f32>`, honouring its size, stride and
    /// storage offset (the weights of interest are stored in TensorFlow order, not contiguously).
    pub fn f32_contiguous(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let view = self.get(name).ok_or_else(|| invalid!("checkpoint has no tensor `{name}`"))?;
        let read: fn(&[u8]) -> f32 = match view.dtype {
            StorageDtype::F32 => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            StorageDtype::F16 => |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            StorageDtype::BF16 => |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            other => return Err(invalid!("tensor `{name}` is {other:?}, expected float32, float16 or bfloat16")),
        };
        let (_, bytes) = self
            .storages
            .get(&view.storage_key)
            .ok_or_else(|| invalid!("tensor `{name}` uses storage `{}` which is missing", view.storage_key))?;
        let size = view.dtype.size_in_bytes();
        view.check_bounds(name, bytes.len() / size)?;
        let numel: usize = view.size.iter().product();
        let read = |i: usize| read(&bytes[size * i..size * (i + 1)]);
        let mut out = Vec::with_capacity(numel);
        let mut index = vec![0usize; view.size.len()];
        for _ in 0..numel {
            let at = view.offset + index.iter().zip(&view.stride).map(|(i, s)| i * s).sum::<usize>();
            out.push(read(at));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < view.size[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        // A NaN or infinite weight or statistic would reach every answer as NaN, or as plausible
        // but wrong numbers where the int8 path rounds it away.
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(invalid!("tensor `{name}` holds a NaN or infinite value (element {i}: {})", out[i]));
        }
        Ok((view.size.clone(), out))
    }
}

impl StateDict {
    /// Checks that every tensor's storage is there and holds every element the tensor addresses.
    pub(crate) fn new(
        tensors: Vec<(String, TensorView)>,
        storages: HashMap<String, (StorageDtype, Vec<u8>)>,
    ) -> Result<Self> {
        for (name, t) in &tensors {
            let (_, bytes) = storages
                .get(&t.storage_key)
                .ok_or_else(|| invalid!("tensor `{name}` uses storage `{}` which is missing", t.storage_key))?;
            t.check_bounds(name, bytes.len() / t.dtype.size_in_bytes())?;
        }
        Ok(Self { tensors, storages })
    }
}

impl TensorView {
    /// Every element the view addresses lies inside its storage, and it addresses no more elements
    /// than the storage holds (a parameter is never a broadcast view: a stride-0 tensor of 2³⁰
    /// elements over one stored value would otherwise allocate gigabytes from a few bytes).
    fn check_bounds(&self, name: &str, storage_numel: usize) -> Result<()> {
        let bad = || {
            invalid!(
                "tensor `{name}` (size {:?}, stride {:?}) does not fit its storage of {storage_numel} elements",
                self.size,
                self.stride
            )
        };
        let numel = self.size.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(bad)?;
        if numel > storage_numel {
            return Err(bad());
        }
        if numel > 0 {
            let mut last = self.offset;
            for (&n, &s) in self.size.iter().zip(&self.stride) {
                last = (n - 1).checked_mul(s).and_then(|step| last.checked_add(step)).ok_or_else(bad)?;
            }
            if last >= storage_numel {
                return Err(bad());
            }
        }
        Ok(())
    }
}
