//! Wick's file formats. What every Wick file shares: a safetensors file whose `__metadata__` holds
//! `format`, `format_version` and `meta` (the JSON of the file's metadata struct). The backbone file
//! ([`backbone_file`]), the `.wick` classifier ([`classifier`]), the web app's project
//! ([`project`]) and the fine-tuning checkpoint each describe themselves with a [`FileKind`]. The
//! feature cache has its own append-only layout ([`crate::model::features`]).

pub mod backbone_file;
pub mod classifier;
pub mod finetune_checkpoint;
pub mod project;

use std::collections::HashMap;

use candle_core::Tensor;
use safetensors::{Dtype, SafeTensors};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{invalid, Error, Result};

/// Formats written under another name before, read as the new one: (old, new). The backbone file
/// was `wick-model` until "model" came to mean only the trained `.wick`; the backbone files written
/// then (the page's own among them: its sha256 names the backbone in users' projects) still read.
const RENAMED: &[(&str, &str)] = &[("wick-model", backbone_file::FORMAT)];

fn canonical(format: &str) -> &str {
    RENAMED.iter().find(|(old, _)| *old == format).map_or(format, |(_, new)| new)
}

pub struct FileKind {
    pub format: &'static str,
    pub version: &'static str,
    /// For "not a valid …": e.g. ".wick model".
    pub noun: &'static str,
    /// For "… format version N is not supported": e.g. ".wick".
    pub version_label: &'static str,
    /// For "cannot write …": e.g. "the classifier".
    pub written: &'static str,
    /// Other Wick formats someone may hand over instead, with what to tell them.
    pub mistaken_for: &'static [(&'static str, &'static str)],
}

impl FileKind {
    /// `not a valid <noun>: <why>`.
    pub fn invalid(&self, why: impl std::fmt::Display) -> Error {
        invalid!("not a valid {}: {why}", self.noun)
    }

    /// Serialises `tensors` (name, dtype, shape, little-endian bytes) with `meta`.
    pub fn write(&self, tensors: &[(&str, Dtype, Vec<usize>, &[u8])], meta: &impl Serialize) -> Result<Vec<u8>> {
        let cannot = |e: safetensors::SafeTensorError| invalid!("cannot write {}: {e}", self.written);
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                Ok((*name, safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)?))
            })
            .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(cannot)?;
        let metadata: HashMap<String, String> = [
            ("format".to_string(), self.format.to_string()),
            ("format_version".to_string(), self.version.to_string()),
            ("meta".to_string(), serde_json::to_string(meta).expect("metadata serialises")),
        ]
        .into();
        Ok(with_sorted_header(safetensors::serialize(views, Some(metadata)).map_err(cannot)?))
    }

    /// Serialises named f32 tensors (any shape, any device) with `meta`.
    pub fn write_f32_tensors(&self, tensors: &[(String, Tensor)], meta: &impl Serialize) -> Result<Vec<u8>> {
        let encoded = tensors
            .iter()
            .map(|(name, t)| Ok((name.as_str(), t.dims().to_vec(), f32_bytes(&t.flatten_all()?.to_vec1::<f32>()?))))
            .collect::<Result<Vec<_>>>()?;
        let parts: Vec<_> =
            encoded.iter().map(|(name, shape, bytes)| (*name, Dtype::F32, shape.clone(), bytes.as_slice())).collect();
        self.write(&parts, meta)
    }

    /// Checks the format and version and parses `meta`; the tensors are the caller's to read.
    pub fn read_meta<M: DeserializeOwned>(&self, bytes: &[u8]) -> Result<M> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| self.invalid(e))?;
        let fields = header.metadata().as_ref().ok_or_else(|| self.invalid("it has no Wick metadata"))?;
        let format = fields.get("format").map(|f| canonical(f));
        if format != Some(self.format) {
            let hint = self.mistaken_for.iter().find(|(other, _)| format == Some(*other));
            return Err(self.invalid(hint.map_or("it has no Wick metadata", |(_, hint)| *hint)));
        }
        let version = fields.get("format_version").map(String::as_str);
        if version != Some(self.version) {
            return Err(invalid!(
                "{} format version {} is not supported (this build reads version {})",
                self.version_label,
                version.unwrap_or("?"),
                self.version
            ));
        }
        serde_json::from_str(fields.get("meta").map_or("", String::as_str))
            .map_err(|e| self.invalid(format!("bad metadata: {e}")))
    }
}

/// The `format` a Wick file names in its metadata (`wick-backbone`, `wick-classifier`, …; an older
/// name as the format's current one), if any: how the web app tells a backbone file from a `.wick`
/// model among the files the user picks.
pub fn format_of(bytes: &[u8]) -> Option<String> {
    let (_, header) = SafeTensors::read_metadata(bytes).ok()?;
    header.metadata().as_ref()?.get("format").map(|f| canonical(f).to_string())
}

/// f32 values as little-endian bytes (safetensors' F32 layout, and the feature cache's).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes as f32 values (a trailing partial value is ignored).
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// safetensors writes its `__metadata__` map in a `HashMap`'s order, which changes from one map to
/// the next: the header is written again with its keys sorted. It keeps its length (the same
/// compact JSON), so the tensors stay where they are, and the same content always gives the same
/// file, byte for byte (a project saved, opened elsewhere and saved again is the same file).
fn with_sorted_header(mut file: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().expect("safetensors writes an 8-byte length")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).expect("safetensors writes JSON");
    let sorted = serde_json::to_vec(&header).expect("a JSON value serialises");
    if sorted.len() <= n {
        file[8..8 + sorted.len()].copy_from_slice(&sorted);
        file[8 + sorted.len()..8 + n].fill(b' ');
    }
    file
}

#[cfg(test)]
mod sorted_header_tests {
    use super::*;

    #[test]
    fn the_same_content_gives_the_same_file() {
        const KIND: FileKind = FileKind {
            format: "wick-test",
            version: "1",
            noun: "test file",
            version_label: "test",
            written: "the test file",
            mistaken_for: &[],
        };
        let data = [1u8, 2, 3, 4];
        let write =
            || KIND.write(&[("b", Dtype::U8, vec![4], &data), ("a", Dtype::U8, vec![4], &data)], &"meta").unwrap();
        let first = write();
        // Each write's metadata map iterates in an order of its own: 3 keys, 6 orders.
        for _ in 0..30 {
            assert_eq!(write(), first);
        }
        let (_, read) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        let meta = read.metadata().as_ref().unwrap();
        assert_eq!(meta["format"], "wick-test");
        assert_eq!(meta["meta"], "\"meta\"");
    }
}
