//! A Wick model in other tools' formats, computed from the same description the CPU path runs:
//! each family's op graph ([`crate::backbone::ops`]), the folded weights and the trained head.
//!
//! - [`onnx`]: one ONNX graph from pixels to class probabilities (onnxruntime, onnxruntime-web,
//!   onnx2tf);
//! - [`tfjs`]: a TensorFlow.js layers model with Teachable Machine's metadata (`tf.loadLayersModel`,
//!   `@teachablemachine/image`, ml5).

pub mod onnx;
pub mod tfjs;

use crate::model::head::Head;
use crate::model::{Backbone, Classifier};

/// What an export holds: the backbone fed the way the model's images were, and the classes it
/// answers with — a trained head's, or the backbone's own classifier's.
pub struct Exported<'a> {
    pub backbone: &'a Backbone,
    /// `None`: the backbone's own classifier (ImageNet's, or the classes it was fine-tuned on).
    pub head: Option<&'a Head>,
    pub labels: &'a [String],
}

impl<'a> Exported<'a> {
    /// A trained model on `backbone`, the feature extractor it runs on
    /// ([`Classifier::feature_extractor`]).
    pub fn model(classifier: &'a Classifier, backbone: &'a Backbone) -> Self {
        Self { backbone, head: Some(&classifier.head), labels: &classifier.meta.labels }
    }

    /// The backbone alone, with its own classifier.
    pub fn backbone(backbone: &'a Backbone) -> Self {
        Self { backbone, head: None, labels: &backbone.meta.labels }
    }
}
