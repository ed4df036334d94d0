//! Reader for PyTorch's *legacy* (pre-1.6, non-zip) `torch.save` format, enough for a state dict.
//!
//! Layout: five pickles in a row — magic number, protocol version, sys info, the object (tensors
//! point at storages through persistent ids), the list of storage keys — then every storage in key
//! order as a little-endian `u64` element count followed by its raw bytes.

use std::collections::HashMap;

use super::pickle::{Reader, Value};
use super::{StateDict, StorageDtype};
use crate::error::{invalid, Result};

const PROTOCOL_VERSION: i64 = 1001;

/// Parses a whole legacy checkpoint. Truncated input and trailing bytes are errors.
pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict> {
    let mut r = Reader::new(bytes);
    let not_legacy = || invalid!("not a legacy torch checkpoint (no magic number)");
    if !bytes.starts_with(&[0x80]) {
        return Err(not_legacy());
    }
    let magic = r.pickle()?;
    if !matches!(r.arena[magic], Value::LegacyMagic) {
        return Err(not_legacy());
    }
    let version = r.pickle()?;
    match r.arena[version] {
        Value::Int(PROTOCOL_VERSION) => {}
        Value::Int(v) => return Err(invalid!("unsupported torch protocol version {v}")),
        ref other => return Err(invalid!("the torch protocol version is {}, not a number", other.kind())),
    }
    let _sys_info = r.pickle()?;
    let object = r.pickle()?;
    let keys = r.pickle()?;

    let tensors = r.state_dict_entries(object)?;
    // Storages declared by persistent ids, in the order the reader met them.
    let storage_types: HashMap<String, (StorageDtype, usize)> =
        r.storages.drain(..).map(|(key, dtype, numel)| (key, (dtype, numel))).collect();
    let Value::List(keys) = &r.arena[keys] else {
        return Err(invalid!("storage key list is not a list"));
    };
    let keys = keys
        .iter()
        .map(|&k| match &r.arena[k] {
            Value::Str(key) => Ok(key.clone()),
            _ => Err(invalid!("storage key is not a string")),
        })
        .collect::<Result<Vec<_>>>()?;

    let mut storages = HashMap::new();
    for key in keys {
        let &(dtype, numel) =
            storage_types.get(&key).ok_or_else(|| invalid!("storage `{key}` is listed but no tensor uses it"))?;
        let count = u64::from_le_bytes(r.take(8)?.try_into().unwrap());
        if count != numel as u64 {
            return Err(invalid!("storage `{key}` holds {count} elements, expected {numel}"));
        }
        let len = numel.checked_mul(dtype.size_in_bytes()).ok_or_else(|| invalid!("storage `{key}` is too large"))?;
        storages.insert(key, (dtype, r.take(len)?.to_vec()));
    }
    if r.pos != bytes.len() {
        return Err(invalid!("{} trailing bytes after the last storage", bytes.len() - r.pos));
    }
    StateDict::new(tensors, storages)
}
