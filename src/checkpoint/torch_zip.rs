//! Reader for PyTorch's zip `torch.save` format (PyTorch ≥ 1.6; what `torch.hub` caches, e.g.
//! torchvision's `resnet18-f37072fd.pth`), enough for a state dict.
//!
//! Layout: a zip archive (entries stored, not compressed) with one top-level folder (`archive/`, or
//! the file's stem in older versions) holding `data.pkl` — the pickled object, whose tensors point at
//! storages through persistent ids `('storage', StorageType, key, location, numel)` — and one entry
//! `data/<key>` per storage with its raw little-endian bytes, plus `version` and `byteorder`.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::pickle::Reader;
use super::StateDict;
use crate::error::{invalid, Result};

/// Parses a zip-format checkpoint. Every entry's size is checked against the archive's own length
/// before it is read, and each storage must hold exactly the elements its persistent id declares.
pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict> {
    let broken = |e: zip::result::ZipError| invalid!("the zip container of this torch checkpoint is damaged: {e}");
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(broken)?;
    let pickle_name = archive
        .file_names()
        .filter_map(|name| name.ok().map(|name| name.into_owned()))
        .filter(|name| name.ends_with("/data.pkl") && name.matches('/').count() == 1)
        .min()
        .ok_or_else(|| invalid!("not a torch checkpoint: the zip archive has no <folder>/data.pkl"))?;
    let folder = pickle_name.trim_end_matches("data.pkl").to_owned();
    if let Some(order) = read_entry(&mut archive, &format!("{folder}byteorder"), bytes.len())? {
        if order != b"little" {
            return Err(invalid!("this torch checkpoint stores big-endian numbers, which Wick does not read"));
        }
    }
    let pickle = read_entry(&mut archive, &pickle_name, bytes.len())?.expect("listed above");

    let mut r = Reader::new(&pickle);
    let object = r.pickle()?;
    if r.pos != pickle.len() {
        return Err(invalid!("{} trailing bytes after the pickle in {pickle_name}", pickle.len() - r.pos));
    }
    let tensors = r.state_dict_entries(object)?;
    let mut storages = HashMap::new();
    for (key, dtype, numel) in r.storages.drain(..) {
        if storages.contains_key(&key) {
            continue; // several tensors (views) may share one storage
        }
        let name = format!("{folder}data/{key}");
        let expected =
            numel.checked_mul(dtype.size_in_bytes()).ok_or_else(|| invalid!("storage `{key}` is too large"))?;
        let data = read_entry(&mut archive, &name, expected)?
            .ok_or_else(|| invalid!("storage `{key}` is missing: the archive has no {name}"))?;
        if data.len() != expected {
            return Err(invalid!("storage `{key}` holds {} bytes, expected {numel} elements of {dtype:?}", data.len()));
        }
        storages.insert(key, (dtype, data));
    }
    StateDict::new(tensors, storages)
}

/// The bytes of entry `name` (None if the archive has none), refusing compressed entries and any
/// that claims more than `limit` bytes before reading it.
fn read_entry(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, limit: usize) -> Result<Option<Vec<u8>>> {
    let mut entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(invalid!("{name} in the torch checkpoint cannot be read: {e}")),
    };
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(invalid!(
            "{name} in the torch checkpoint is compressed ({}); torch.save stores entries",
            entry.compression()
        ));
    }
    if entry.size() > limit as u64 {
        return Err(invalid!(
            "{name} in the torch checkpoint claims {} bytes, more than expected ({limit})",
            entry.size()
        ));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry
        .by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| invalid!("{name} in the torch checkpoint cannot be read: {e}"))?;
    Ok(Some(data))
}
