//! A trained classifier as it runs: the head with its `.wick` metadata, on the backbone it was
//! trained on ([`crate::formats::classifier`] is the file).

use candle_core::{Device, Tensor};

use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::formats::classifier::{self as file, ClassifierMeta};
use crate::model::head::{Head, Trained};
use crate::model::{Backbone, Prediction};
use crate::train::config::TrainConfig;
use crate::util::utc_timestamp;

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
                backbone: backbone.reference(),
                preprocess: backbone.meta.preprocess.clone(),
                pooling: backbone.pooling(),
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
        file::write(&self.head.tensors(), &self.meta)
    }

    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let (meta, tensors) = file::read(bytes, device)?;
        let head = Head::from_tensors(meta.head, &tensors).map_err(file::invalid_head)?;
        Ok(Self { meta, head })
    }

    /// A classifier only makes sense on the exact backbone it was trained on.
    fn check_backbone(&self, backbone: &Backbone) -> Result<()> {
        let expected = &self.meta.backbone;
        if expected.sha256 != backbone.sha256 {
            let hint = if self.meta.finetune.is_some() {
                "its backbone was fine-tuned with it: open that backbone file (`<name>.backbone.safetensors`) with it"
            } else if self.meta.training.train_layers > 0 {
                "the backbone's last layers trained with it: give the backbone file written beside it \
                 (`<name>.backbone.safetensors`) with it"
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
        let dim = backbone.meta.config.pooled_dim(self.meta.pooling);
        if self.meta.head.input_dim != dim {
            return Err(invalid!(
                "this model's head takes {} features, but backbone {} gives {dim} with pooling `{}`",
                self.meta.head.input_dim,
                backbone.id,
                self.meta.pooling.name()
            ));
        }
        Ok(())
    }

    /// The backbone fed the way this model's training images were (the classifier's preprocessing)
    /// and giving the features its head reads (its pooling).
    pub fn feature_extractor(&self, backbone: &Backbone) -> Result<Backbone> {
        self.check_backbone(backbone)?;
        Ok(backbone.with_preprocess(self.meta.preprocess.clone())?.with_pooling(self.meta.pooling))
    }

    /// Features (N, dim) → class probabilities, one row per image.
    pub fn probabilities(&self, features: &Tensor) -> Result<Vec<Vec<f32>>> {
        let dim = features.dim(candle_core::D::Minus1)?;
        if dim != self.meta.head.input_dim {
            return Err(invalid!(
                "this model reads {} features (pooling `{}`), not {dim}",
                self.meta.head.input_dim,
                self.meta.pooling.name()
            ));
        }
        let probabilities = self.head.probabilities(features)?.to_vec2::<f32>()?;
        // Finite weights can still sum past f32 (a head of 10³⁸s): no answer is NaN.
        if probabilities.iter().flatten().any(|p| !p.is_finite()) {
            return Err(invalid!("the model computed NaN or infinite probabilities: its weights are out of range"));
        }
        Ok(probabilities)
    }

    /// Classes ranked by probability, most likely first, `k` at most.
    pub fn ranked(&self, probabilities: &[f32], k: usize) -> Vec<Prediction> {
        crate::model::ranked(probabilities, &self.meta.labels, k)
    }
}
