//! A state dict saved as safetensors (timm's and Hugging Face's `model.safetensors`): every tensor
//! contiguous, each its own storage. The `safetensors` crate checks the header and that every
//! tensor's bytes lie inside the file.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use super::{StateDict, StorageDtype, TensorView};
use crate::error::{invalid, Result};

/// A safetensors file starts with its header's length and the header's opening brace.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes[8] == b'{' && u64::from_le_bytes(bytes[..8].try_into().unwrap()) < bytes.len() as u64
}

pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict> {
    // Wick's own files are safetensors too, and name their format in the metadata.
    let wick_format = SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, header)| header.metadata().as_ref()?.get("format").filter(|f| f.starts_with("wick-")).cloned());
    if let Some(format) = wick_format {
        return Err(invalid!(
            "this is a Wick file ({format}), not a PyTorch state dict: a backbone file goes to --backbone, a .wick to --model"
        ));
    }
    let file = SafeTensors::deserialize(bytes).map_err(|e| invalid!("not a valid safetensors state dict: {e}"))?;
    let mut tensors = Vec::new();
    let mut storages = HashMap::new();
    for (name, view) in file.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => StorageDtype::F32,
            Dtype::F16 => StorageDtype::F16,
            Dtype::BF16 => StorageDtype::BF16,
            Dtype::I64 => StorageDtype::I64,
            other => {
                return Err(invalid!(
                    "tensor `{name}` is {other:?}: a state dict's tensors are floats (or I64 counters)"
                ))
            }
        };
        let size = view.shape().to_vec();
        let mut stride = vec![1usize; size.len()];
        for d in (0..size.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1].saturating_mul(size[d + 1]);
        }
        tensors.push((name.clone(), TensorView { storage_key: name.clone(), dtype, offset: 0, size, stride }));
        storages.insert(name, (dtype, view.data().to_vec()));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    StateDict::new(tensors, storages)
}
