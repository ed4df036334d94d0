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

use crate::backbone::{Backbone, Prediction};
use crate::data::dataset::check_labels;
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::formats::{f32_values, FileKind};
use crate::train::config::FinetuneConfig;
use crate::train::head::{EpochStats, Head, HeadSpec, Stop, TrainConfig, Trained};
use crate::util::utc_timestamp;

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

/// A trained classifier: the head and its metadata; it runs on the backbone named in the metadata.
pub struct Classifier {
    pub meta: ClassifierMeta,
    pub head: Head,
}

impl Classifier {
    /// A finished training run on `backbone` (fed with its current preprocessing) as a `.wick` model.
    /// Validation metrics keep their numbers only: the names of misclassified files stay out of it.
    pub fn from_training(
        trained: Trained,
        labels: Vec<String>,
        backbone: &Backbone,
        training: TrainConfig,
        validation: Option<&Metrics>,
        unix_seconds: u64,
    ) -> Self {
        Self {
            meta: ClassifierMeta {
                labels,
                backbone: BackboneRef::of(backbone),
                preprocess: backbone.meta.preprocess.clone(),
                head: trained.head.spec,
                training,
                finetune: None,
                history: trained.history,
                best_epoch: trained.best_epoch,
                stop: trained.stop,
                validation: validation.map(|m| Metrics { misclassified: Vec::new(), ..m.clone() }),
                created: utc_timestamp(unix_seconds),
                wick_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            head: trained.head,
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        FILE.write_f32_tensors(&self.head.tensors(), &self.meta)
    }

    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
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
        let head = Head::from_tensors(meta.head, &tensors).map_err(|e| not_classifier(e.to_string()))?;
        Ok(Self { meta, head })
    }

    /// A classifier only makes sense on the exact backbone it was trained on.
    fn check_backbone(&self, backbone: &Backbone) -> Result<()> {
        let expected = &self.meta.backbone;
        if expected.sha256 != backbone.sha256 {
            let hint = if self.meta.finetune.is_some() {
                "its backbone was fine-tuned with it: open that backbone file (`<name>.backbone.safetensors`) with it"
            } else {
                "use the backbone it was trained with"
            };
            return Err(invalid!(
                "this model was trained on backbone {} (sha256 {}), but the loaded backbone is {} (sha256 {}); {hint}",
                expected.id,
                expected.sha256,
                backbone.id,
                backbone.sha256
            ));
        }
        if self.meta.head.input_dim != backbone.feature_dim() {
            return Err(invalid!("this model's feature size does not match backbone {}", backbone.id));
        }
        Ok(())
    }

    /// The backbone fed the way this model's training images were (the classifier's preprocessing).
    pub fn feature_extractor(&self, backbone: &Backbone) -> Result<Backbone> {
        self.check_backbone(backbone)?;
        backbone.with_preprocess(self.meta.preprocess.clone())
    }

    /// Features (N, dim) → class probabilities, one row per image.
    pub fn probabilities(&self, features: &Tensor) -> Result<Vec<Vec<f32>>> {
        let probabilities = self.head.probabilities(features)?.to_vec2::<f32>()?;
        // Finite weights can still sum past f32 (a head of 10³⁸s): no answer is NaN.
        if probabilities.iter().flatten().any(|p| !p.is_finite()) {
            return Err(invalid!("the model computed NaN or infinite probabilities: its weights are out of range"));
        }
        Ok(probabilities)
    }

    /// Classes ranked by probability, most likely first, `k` at most.
    pub fn ranked(&self, probabilities: &[f32], k: usize) -> Vec<Prediction> {
        crate::backbone::ranked(probabilities, &self.meta.labels, k)
    }
}

impl BackboneRef {
    pub fn of(backbone: &Backbone) -> Self {
        Self {
            id: backbone.id.clone(),
            architecture: backbone.meta.architecture.clone(),
            sha256: backbone.sha256.clone(),
        }
    }
}
