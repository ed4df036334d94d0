//! The Wick backbone file: one self-describing safetensors file with the BN-folded backbone and its
//! ImageNet classifier in int8, plus everything needed to use it (architecture, preprocessing, class
//! names, provenance).
//!
//! Layout (format version 1):
//! - every weight with ≥ 2 dimensions and at least [`MIN_INT8_ROW`] values per output channel (the
//!   1×1 convolutions and the classifier, 99% of the parameters) is stored as `<name>.q` (I8, same
//!   shape) and `<name>.scale` (F32, one per output channel): `weight[c, …] = q[c, …] · scale[c]`,
//!   symmetric, scale = max|w|/127;
//! - weights with shorter rows (the depthwise and stem filters) are stored as `<name>` in F16: with
//!   only 9–27 weights sharing a scale, int8 costs them the most accuracy (feature cosine to the f32
//!   network drops from ≈0.998 to ≈0.98 on real photos) for < 1% of the file;
//! - every other tensor (the folded biases) is stored as `<name>` in F32;
//! - `__metadata__` holds `format` = "wick-backbone" (files written before 2026-12 say "wick-model", read the same), `format_version` = "1" and `meta`, the JSON of
//!   [`BackboneMeta`].
//!
//! Tensors are written F32 first, then F16, then I8, each group sorted by name, and the metadata keys are
//! sorted: the same weights always give the same bytes.

use std::collections::BTreeMap;

use half::f16;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::backbone::efficientnet_lite::MAX_ACTIVATION_BYTES;
use crate::backbone::fold::FloatWeights;
use crate::backbone::NetworkConfig;
use crate::data::dataset::check_label;
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::formats::{f32_bytes, f32_values, FileKind};
use crate::kernels::int8::quantize_per_output_channel;

pub const FORMAT: &str = "wick-backbone";
pub const FORMAT_VERSION: &str = "1";
pub const MIN_INT8_ROW: usize = 32;

/// How the file stores a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Biases (and any 1-D tensor): as they are.
    F32,
    /// Filters with rows too short to share an int8 scale (depthwise filters, Lite's stem).
    F16,
    /// Symmetric int8, one f32 scale per output channel.
    Int8,
}

/// The rule: how a tensor of `shape` is stored. A weight (≥ 2 dimensions) is int8 when each output
/// channel has at least [`MIN_INT8_ROW`] values, otherwise f16; biases are f32.
///
/// Measured per layer on 6 real photos, each weight alone int8 or f16, the rest f32, f32 products
/// (`tests/it/int8_cost.rs`; BENCHMARKS.md, "What int8 weights cost, layer by layer", 2026-12-07):
/// - EfficientNet-Lite0: a depthwise filter (9 or 25 weights per channel) in int8 costs up to 2.4e-2
///   of feature cosine (f16: 2.5e-5), a 1×1 convolution at most 6.2e-3 (the first blocks'
///   projections; the head convolution 4.5e-5), the stem 5.4e-4: the depthwise and stem filters stay
///   f16, for 0.3% of the file. The first two blocks' projections would pay for f16 too (0.5 and
///   2.2 KB more), but a new Lite0 file would orphan every model trained on the shipped one and
///   cross the page's 6 MB first load: not done. Lite2 alike (depthwise 1.8e-2, 1×1 2.8e-3).
/// - A seeded random ResNet-50 with randomised BatchNorm statistics: every convolution in int8 costs
///   at most 3.0e-6, the 7×7 stem 9.4e-8 (so it stays int8), the whole file 2.4e-5. Its own
///   ImageNet probabilities move by up to 0.09 (no top-1 that led by more than 0.05 changed), and
///   by 0.32 with the classifier in f16 instead (2 MB more): a random classifier on large pooled
///   features is that sensitive to any change, so f16 there does not pay.
pub fn storage(shape: &[usize]) -> Storage {
    match shape {
        [] | [_] => Storage::F32,
        [channels, ..] if shape.iter().product::<usize>() / (*channels).max(1) < MIN_INT8_ROW => Storage::F16,
        _ => Storage::Int8,
    }
}

/// `data` (of `shape`) as the network gets it back from the file when stored as `storage`.
pub fn stored_values(shape: &[usize], data: &[f32], storage: Storage) -> Vec<f32> {
    match storage {
        Storage::F32 => data.to_vec(),
        Storage::F16 => data.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        Storage::Int8 => {
            let (q, scales) = quantize_per_output_channel(data, shape[0]);
            dequantize(q.into_iter(), &scales)
        }
    }
}

/// Int8 weights back to f32, each row (output channel) times its scale.
fn dequantize(q: impl ExactSizeIterator<Item = i8>, scales: &[f32]) -> Vec<f32> {
    let per_channel = q.len() / scales.len();
    q.enumerate().map(|(i, v)| v as f32 * scales[i / per_channel]).collect()
}

/// Written by [`write`] itself (deterministically); read through [`FileKind::read_meta`].
const FILE: FileKind = FileKind {
    format: FORMAT,
    version: FORMAT_VERSION,
    noun: "Wick backbone file",
    version_label: "Wick backbone",
    written: "the backbone file",
    mistaken_for: &[],
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneMeta {
    pub architecture: String,
    pub config: NetworkConfig,
    pub preprocess: Preprocess,
    pub labels: Vec<String>,
    pub source: Source,
    pub quantization: String,
}

/// Where the weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub package: String,
    pub file: String,
    pub sha256: String,
    pub license: String,
}

/// How [`write`] stores the weights ([`storage`]), as the metadata says it.
pub const QUANTIZATION: &str =
    "int8 symmetric per output channel for rows of >= 32 weights; f16 depthwise and stem filters; f32 biases";

/// Quantizes `weights` and serialises them with `meta`. Refuses to write what [`read`] would refuse:
/// the weights are checked first ([`FloatWeights::check`]), and the file written is read back.
pub fn write(weights: &FloatWeights, meta: &BackboneMeta) -> Result<Vec<u8>> {
    weights.check()?;
    meta.validate()?;
    let out = encode(weights, meta)?;
    read(&out).map_err(|e| invalid!("the backbone file would not load: {e}"))?;
    Ok(out)
}

fn encode(weights: &FloatWeights, meta: &BackboneMeta) -> Result<Vec<u8>> {
    let mut floats: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut halves: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut int8s: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, (shape, data)) in &weights.0 {
        match storage(shape) {
            Storage::F16 => halves.push((
                name.clone(),
                shape.clone(),
                data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            )),
            Storage::Int8 => {
                let (q, scales) = quantize_per_output_channel(data, shape[0]);
                int8s.push((format!("{name}.q"), shape.clone(), q.iter().map(|&v| v as u8).collect()));
                floats.push((format!("{name}.scale"), vec![shape[0]], f32_bytes(&scales)));
            }
            Storage::F32 => floats.push((name.clone(), shape.clone(), f32_bytes(data))),
        }
    }
    for group in [&mut floats, &mut halves, &mut int8s] {
        group.sort_by(|a, b| a.0.cmp(&b.0));
    }

    let mut header: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let metadata: BTreeMap<&str, String> = [
        ("format", FORMAT.to_string()),
        ("format_version", FORMAT_VERSION.to_string()),
        ("meta", serde_json::to_string(meta).expect("metadata serialises")),
    ]
    .into();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).unwrap());
    let mut offset = 0usize;
    let groups = [("F32", &floats), ("F16", &halves), ("I8", &int8s)];
    for (dtype, group) in groups {
        for (name, shape, bytes) in group.iter() {
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
            );
            offset += bytes.len();
        }
    }
    let mut header = serde_json::to_vec(&header).expect("header serialises");
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, group) in groups {
        for (_, _, bytes) in group.iter() {
            out.extend_from_slice(bytes);
        }
    }
    Ok(out)
}

impl BackboneMeta {
    /// Checks metadata read from a file before anything is sized by it: the architecture (it names
    /// cache files), the configuration and preprocessing against their bounds, one label per class,
    /// and the memory one image's activations would take.
    pub fn validate(&self) -> Result<()> {
        check_identifier("architecture", &self.architecture)?;
        self.config.validate()?;
        self.preprocess.validate()?;
        if self.labels.len() != self.config.num_classes() {
            return Err(invalid!(
                "model has {} class names for {} classes",
                self.labels.len(),
                self.config.num_classes()
            ));
        }
        // Class names are printed and drawn: checked like a project's (ImageNet's repeat a few,
        // "crane" and "maillot", so repeats are allowed).
        for label in &self.labels {
            check_label(label)?;
        }
        check_activation_memory(&self.config, &self.preprocess)
    }
}

/// Refuses a configuration and preprocessing whose activations for one image would exceed
/// [`MAX_ACTIVATION_BYTES`].
pub fn check_activation_memory(config: &NetworkConfig, preprocess: &Preprocess) -> Result<()> {
    let bytes = config.peak_activation_bytes(preprocess.crop as usize);
    if bytes > MAX_ACTIVATION_BYTES {
        return Err(invalid!(
            "this network at {0}×{0} pixels needs {1} MB for one layer's activations, over the limit of {2} MB",
            preprocess.crop,
            bytes >> 20,
            MAX_ACTIVATION_BYTES >> 20
        ));
    }
    Ok(())
}

/// Names read from files that end up in file names (the architecture, in the feature cache's):
/// 1 to 64 of `a-z`, `0-9`, `.`, `_` and `-`, starting with a letter or digit.
pub fn check_identifier(what: &str, name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > 64 || !starts_well || !name.chars().all(allowed) {
        return Err(invalid!(
            "the {what} `{}` is not a valid name (1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit)",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Parses and dequantizes a backbone file. Every tensor is checked — its type, a per-channel scale
/// for each int8 one, finite values — before its values are used.
pub fn read(bytes: &[u8]) -> Result<(BackboneMeta, FloatWeights)> {
    let not_wick = |why: String| FILE.invalid(why);
    let meta: BackboneMeta = FILE.read_meta(bytes)?;
    meta.validate().map_err(|e| not_wick(e.to_string()))?;
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| not_wick(e.to_string()))?;

    let mut weights = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        let shape = view.shape().to_vec();
        let values = if let Some(base) = name.strip_suffix(".q") {
            let scale_name = format!("{base}.scale");
            let scale = tensors.tensor(&scale_name).map_err(|_| not_wick(format!("`{name}` has no `{scale_name}`")))?;
            let channels = shape.first().copied().unwrap_or(0);
            if view.dtype() != Dtype::I8 || scale.dtype() != Dtype::F32 || channels == 0 || scale.shape() != [channels]
            {
                return Err(not_wick(format!("`{name}` or its scale has the wrong type or shape")));
            }
            let data = dequantize(view.data().iter().map(|&q| q as i8), &f32_values(scale.data()));
            weights.insert(base.to_string(), (shape, data));
            continue;
        } else {
            match view.dtype() {
                Dtype::F32 => f32_values(view.data()),
                Dtype::F16 => view.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                other => return Err(not_wick(format!("`{name}` is {other:?}, expected F32 or F16"))),
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(not_wick(format!("`{name}` holds NaN or infinite values")));
        }
        if !name.ends_with(".scale") {
            weights.insert(name.clone(), (shape, values));
        }
    }
    // The values as the network uses them (int8 × scale, f16 widened) are checked too: a scale of
    // 3·10³⁸ is finite, its product with 127 is not.
    let weights = FloatWeights(weights);
    weights.check().map_err(|e| not_wick(e.to_string()))?;
    Ok((meta, weights))
}
