//! The `.wick` classifier: a trained head with everything needed to use and trust it, in one
//! safetensors file that the CLI and the browser app both read and write.
//!
//! Layout (format version 1):
//! - tensors, all F32: `hidden.weight` (hidden, features) and `hidden.bias` (hidden) for a
//!   hidden-layer head; `output.weight` (classes, inputs) and `output.bias` (classes);
//! - `__metadata__`: `format` = "wick-classifier", `format_version` = "1", and `meta`, the JSON of
//!   [`ClassifierMeta`]: class labels, the backbone's id and sha256 (a classifier only runs on the backbone
//!   it was trained on), preprocessing, the head's shape, the training configuration and history,
//!   validation metrics, creation time and the Wick version that wrote it.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::backbone::Pooling;
use crate::data::dataset::check_labels;
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::formats::{f32_values, FileKind};
use crate::train::config::{FinetuneConfig, HeadSpec, TrainConfig};
use crate::train::report::{EpochStats, Stop};

pub const FORMAT: &str = "wick-classifier";
pub const FORMAT_VERSION: &str = "1";

const FILE: FileKind = FileKind {
    format: FORMAT,
    version: FORMAT_VERSION,
    noun: ".wick model",
    version_label: ".wick",
    written: "the classifier",
    mistaken_for: &[(crate::formats::backbone_file::FORMAT, "this is a backbone file, not a trained classifier")],
};

/// Which backbone a head was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneRef {
    pub id: String,
    pub architecture: String,
    /// sha256 of the backbone file (or checkpoint) bytes.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    pub labels: Vec<String>,
    pub backbone: BackboneRef,
    pub preprocess: Preprocess,
    /// Which maps of the backbone the head's features average (a `.wick` written before pooling
    /// was a choice: the last map's).
    #[serde(default)]
    pub pooling: Pooling,
    pub head: HeadSpec,
    pub training: TrainConfig,
    /// Set when the backbone itself was fine-tuned with the head (`wick cifar10 --mode finetune`):
    /// its settings. The history's `val_*` numbers are then the test set's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
    pub history: Vec<EpochStats>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    pub stop: Stop,
    /// Metrics on the validation images (none when there were too few images to hold any out).
    pub validation: Option<Metrics>,
    /// UTC, RFC 3339.
    pub created: String,
    pub wick_version: String,
}

impl ClassifierMeta {
    /// Checks metadata read from a file before anything uses it: labels (one per class), the
    /// preprocessing it feeds the backbone with, and the validation metrics it shows.
    pub fn validate(&self) -> Result<()> {
        check_labels(&self.labels)?;
        if self.labels.len() != self.head.classes {
            return Err(invalid!("{} labels for {} classes", self.labels.len(), self.head.classes));
        }
        self.preprocess.validate()?;
        if let Some(metrics) = &self.validation {
            metrics.check(&self.labels)?;
        }
        Ok(())
    }
}

/// The head's tensors (by name: `hidden.weight`, `output.bias`, …) with `meta`, as a `.wick` file.
pub fn write(tensors: &[(String, Tensor)], meta: &ClassifierMeta) -> Result<Vec<u8>> {
    FILE.write_f32_tensors(tensors, meta)
}

/// A `.wick` file → its metadata (checked) and the head's tensors on `device` (F32, finite).
pub fn read(bytes: &[u8], device: &Device) -> Result<(ClassifierMeta, HashMap<String, Tensor>)> {
    let not_classifier = |why: String| FILE.invalid(why);
    let meta: ClassifierMeta = FILE.read_meta(bytes)?;
    meta.validate().map_err(|e| not_classifier(e.to_string()))?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| not_classifier(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(not_classifier(format!("`{name}` is {:?}, expected F32", view.dtype())));
        }
        let values = f32_values(view.data());
        if values.iter().any(|v| !v.is_finite()) {
            return Err(not_classifier(format!("`{name}` holds NaN or infinite weights")));
        }
        tensors.insert(name.clone(), Tensor::from_vec(values, view.shape(), device)?);
    }
    Ok((meta, tensors))
}

/// The head's tensors that do not fit `meta`'s head, named as the file's error.
pub fn invalid_head(why: impl std::fmt::Display) -> crate::Error {
    FILE.invalid(why)
}
