//! The web app's project as one file (`.wickproject`): its classes, every sample's thumbnail,
//! features and kept copy, the training settings, and the trained `.wick` model if there is one
//! (with the backbone file it runs on, when the backbone's last layers trained). "Export project"
//! writes it and "Open project" reads it back, so a project moves between browsers and machines
//! without recomputing anything.
//!
//! Layout (a safetensors file, format `wick-project`, version 1):
//! - `features`: F32 (samples, dim), the samples' backbone features in class order;
//! - `thumbnails`: U8 (total bytes), the samples' JPEG thumbnails one after another;
//! - `sources`: U8 (total bytes), the samples' kept copies (PNG or JPEG, from which the views for
//!   training the last layers are made) one after another; absent in files written before them;
//! - `model`: U8, the `.wick` bytes (absent before the first training);
//! - `model_backbone`: U8, the backbone file the model runs on (only when its last layers trained);
//! - `__metadata__`: `format`, `format_version`, and `meta`, the JSON of [`ProjectMeta`] (the backbone
//!   the features belong to, the classes with their samples' names and thumbnail lengths, the settings).

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::data::dataset::check_label;
use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::formats::classifier::BackboneRef;
use crate::formats::{f32_bytes, f32_values, FileKind};
use crate::train::report::{EpochStats, Stop};

pub const FORMAT: &str = "wick-project";
pub const FORMAT_VERSION: &str = "1";

const FILE: FileKind = FileKind {
    format: FORMAT,
    version: FORMAT_VERSION,
    noun: "Wick project file",
    version_label: "Wick project",
    written: "the project",
    mistaken_for: &[(
        crate::formats::classifier::FORMAT,
        "this is a trained model (.wick), not a project; open it as a model",
    )],
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectMeta {
    pub backbone: BackboneRef,
    pub classes: Vec<ClassMeta>,
    pub settings: ProjectSettings,
}

/// The page's training settings and what its last training run reported. Every field may be
/// missing (the page fills in its defaults); a field that is there must have the right form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_units: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_share: Option<f32>,
    /// The backbone's arithmetic ("int8" or "f32").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<crate::infer::MatmulPrecision>,
    /// Which maps the samples' features average (none: the last map's, as before it was a setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<crate::backbone::Pooling>,
    /// The last training run's report (only with a trained model).
    #[serde(default)]
    pub report: Option<TrainReport>,
    /// The samples that run trained on, as positions in the file's sample order (-1: a sample that
    /// is gone); the report names its validation images by index into this list.
    #[serde(default)]
    pub trained_on: Vec<i64>,
    /// How many parts at the end of the backbone train with the head (0: the head only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_layers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_epochs: Option<usize>,
    /// Whether the training images are also seen in augmented views when the layers train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<bool>,
}

/// What a training run in the page reports: its history (the page's chart), why it stopped, and
/// the validation metrics, whose misclassified images are named by their index into `trained_on`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
    pub stop: Stop,
    pub train_count: usize,
    pub validation: Option<Metrics>,
}

impl ProjectSettings {
    fn check(&self, samples: usize) -> Result<()> {
        if let Some(depth) = self.train_layers.filter(|&d| d > crate::backbone::MAX_TRAIN_LAYERS) {
            return Err(invalid!("train_layers is {depth}, expected 0 to {}", crate::backbone::MAX_TRAIN_LAYERS));
        }
        if let Some(epochs) = self.layer_epochs.filter(|&e| e > crate::train::config::MAX_LAYER_EPOCHS) {
            return Err(invalid!(
                "layer_epochs is {epochs}, expected at most {}",
                crate::train::config::MAX_LAYER_EPOCHS
            ));
        }
        if let Some(&bad) = self.trained_on.iter().find(|&&i| i < -1 || i >= samples as i64) {
            return Err(invalid!("trained_on names sample {bad}, but the project has {samples}"));
        }
        let Some(report) = &self.report else { return Ok(()) };
        if report.history.iter().enumerate().any(|(i, h)| h.epoch != i + 1) {
            return Err(invalid!("the report's history is not numbered by epoch"));
        }
        if let Some(metrics) = &report.validation {
            let labels: Vec<String> = metrics.classes.iter().map(|c| c.label.clone()).collect();
            metrics.check(&labels).map_err(|e| invalid!("the report's {e}"))?;
            let named = |m: &crate::eval::metrics::Misclassified| {
                m.name.parse::<usize>().is_ok_and(|i| i < self.trained_on.len())
            };
            if !metrics.misclassified.iter().all(named) {
                return Err(invalid!("the report names a validation image that is not among those trained on"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMeta {
    pub name: String,
    pub samples: Vec<SampleMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleMeta {
    /// The file name the image had (or "webcam").
    pub name: String,
    pub thumbnail_bytes: usize,
    /// The kept copy's length (0: none, in files written before copies were kept).
    #[serde(default)]
    pub source_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub meta: ProjectMeta,
    pub features: Vec<f32>,
    pub thumbnails: Vec<u8>,
    pub sources: Vec<u8>,
    pub model: Option<Vec<u8>>,
    pub model_backbone: Option<Vec<u8>>,
}

impl Project {
    pub fn samples(&self) -> usize {
        self.meta.classes.iter().map(|c| c.samples.len()).sum()
    }

    /// Checks that the parts agree: class names valid and distinct, one feature row of `dim` and one
    /// thumbnail per sample, finite features.
    pub fn check(&self, dim: usize) -> Result<()> {
        for (i, class) in self.meta.classes.iter().enumerate() {
            check_label(&class.name)?;
            if self.meta.classes[..i].iter().any(|c| c.name == class.name) {
                return Err(invalid!("class `{}` appears twice", class.name));
            }
        }
        let samples = self.samples();
        self.meta.settings.check(samples)?;
        if Some(self.features.len()) != samples.checked_mul(dim) {
            return Err(invalid!(
                "{} feature values for {samples} samples of {dim} (the features belong to another backbone?)",
                self.features.len()
            ));
        }
        let listed = |bytes: fn(&SampleMeta) -> usize, what: &str| {
            checked_total(self.meta.classes.iter().flat_map(|c| &c.samples).map(bytes), what)
        };
        let thumbnail_bytes = listed(|s| s.thumbnail_bytes, "thumbnail")?;
        if thumbnail_bytes != self.thumbnails.len() {
            return Err(invalid!(
                "thumbnails hold {} bytes, the samples list {thumbnail_bytes}",
                self.thumbnails.len()
            ));
        }
        let source_bytes = listed(|s| s.source_bytes, "kept copy")?;
        if source_bytes != self.sources.len() {
            return Err(invalid!("kept copies hold {} bytes, the samples list {source_bytes}", self.sources.len()));
        }
        if self.features.iter().any(|v| !v.is_finite()) {
            return Err(invalid!("the features contain NaN or infinite values"));
        }
        match (&self.model, &self.model_backbone) {
            (None, Some(_)) => return Err(invalid!("it has a model's backbone but no model")),
            (_, Some(backbone))
                if crate::formats::format_of(backbone).as_deref() != Some(crate::formats::backbone_file::FORMAT) =>
            {
                return Err(invalid!("its model's backbone is not a Wick backbone file"))
            }
            _ => {}
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let features = f32_bytes(&self.features);
        let rows = self.samples();
        let dim = self.features.len().checked_div(rows).unwrap_or(0);
        let mut parts = vec![
            ("features", Dtype::F32, vec![rows, dim], features.as_slice()),
            ("thumbnails", Dtype::U8, vec![self.thumbnails.len()], self.thumbnails.as_slice()),
        ];
        if !self.sources.is_empty() {
            parts.push(("sources", Dtype::U8, vec![self.sources.len()], self.sources.as_slice()));
        }
        if let Some(model) = &self.model {
            parts.push(("model", Dtype::U8, vec![model.len()], model.as_slice()));
        }
        if let Some(backbone) = &self.model_backbone {
            parts.push(("model_backbone", Dtype::U8, vec![backbone.len()], backbone.as_slice()));
        }
        FILE.write(&parts, &self.meta)
    }

    /// The pooling of a project file's features, from its metadata alone (the last map's where
    /// its settings name none).
    pub fn pooling_of(bytes: &[u8]) -> Result<crate::backbone::Pooling> {
        let meta: ProjectMeta = FILE.read_meta(bytes)?;
        Ok(meta.settings.pooling.unwrap_or_default())
    }

    /// Parses and checks a project file whose features must have `dim` values per sample.
    pub fn from_bytes(bytes: &[u8], dim: usize) -> Result<Self> {
        let not_project = |why: String| FILE.invalid(why);
        let meta: ProjectMeta = FILE.read_meta(bytes)?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| not_project(e.to_string()))?;
        let tensor = |name: &str, dtype: Dtype| -> Result<Option<Vec<u8>>> {
            match file.tensor(name) {
                Ok(view) if view.dtype() == dtype => Ok(Some(view.data().to_vec())),
                Ok(view) => Err(not_project(format!("`{name}` is {:?}, expected {dtype:?}", view.dtype()))),
                Err(_) => Ok(None),
            }
        };
        let features = tensor("features", Dtype::F32)?.ok_or_else(|| not_project("it has no features".into()))?;
        let project = Self {
            meta,
            features: f32_values(&features),
            thumbnails: tensor("thumbnails", Dtype::U8)?.ok_or_else(|| not_project("it has no thumbnails".into()))?,
            sources: tensor("sources", Dtype::U8)?.unwrap_or_default(),
            model: tensor("model", Dtype::U8)?,
            model_backbone: tensor("model_backbone", Dtype::U8)?,
        };
        project.check(dim).map_err(|e| not_project(e.to_string()))?;
        Ok(project)
    }
}
/// The sum of the samples' `what` sizes, refused when it does not fit a `usize`: a file can list
/// sizes that wrap on 32 bits (wasm32) to the length of what it holds.
fn checked_total(mut sizes: impl Iterator<Item = usize>, what: &str) -> Result<usize> {
    sizes
        .try_fold(0usize, |total, n| total.checked_add(n))
        .ok_or_else(|| invalid!("the samples' {what} sizes add up to more than this machine can address"))
}
