//! The drop-in classifier's runtime (the `web-runtime` feature's build only, made by
//! `scripts/build-web-feature.sh runtime`): a trained model, or the backbone alone, answering for one image
//! at a time — what `wick export --format web` ships with the model to run on any web page. Nothing
//! of training, the project or the page is in this build, so its wasm is the smallest that classifies.

use candle_core::Device;
use image::RgbImage;
use wasm_bindgen::prelude::*;

use super::fail;
use crate::data::preprocess::{decode_image, rgba_image};
use crate::model::features::{compute, View};
use crate::model::{Backbone, Classifier};

/// A model ready to answer: the backbone fed the way its training images were, and the classifier
/// (or, without one, the backbone's own classes).
#[wasm_bindgen]
pub struct Runtime {
    extractor: Backbone,
    classifier: Option<Classifier>,
}

#[wasm_bindgen]
impl Runtime {
    /// A `.wick` model (`wick`) on its backbone file, or without it the backbone alone. A model
    /// trained on another backbone is refused, naming both.
    #[wasm_bindgen(constructor)]
    pub fn new(backbone_file: &[u8], wick: Option<Vec<u8>>) -> Result<Runtime, JsError> {
        let base = Backbone::from_backbone_file(backbone_file, &Device::Cpu).map_err(fail)?;
        Ok(match wick {
            Some(bytes) => {
                let classifier = Classifier::from_bytes(&bytes, &Device::Cpu).map_err(fail)?;
                Self { extractor: classifier.feature_extractor(&base).map_err(fail)?, classifier: Some(classifier) }
            }
            None => Self { extractor: base, classifier: None },
        })
    }

    /// The classes, in the order of [`Runtime::classify_file`]'s probabilities.
    pub fn labels(&self) -> Vec<String> {
        match &self.classifier {
            Some(classifier) => classifier.meta.labels.clone(),
            None => self.extractor.meta.labels.clone(),
        }
    }

    /// How many numbers [`Runtime::features_file`] returns.
    #[wasm_bindgen(getter)]
    pub fn feature_dim(&self) -> usize {
        self.extractor.feature_dim()
    }

    /// An image file (JPEG, PNG, WebP, GIF, BMP) → the probability of each class.
    pub fn classify_file(&self, file_bytes: &[u8]) -> Result<Vec<f32>, JsError> {
        self.probabilities(&decode_image(file_bytes).map_err(fail)?)
    }

    /// RGBA pixels (a canvas's `ImageData`) → the probability of each class.
    pub fn classify_rgba(&self, rgba: &[u8], width: u32, height: u32) -> Result<Vec<f32>, JsError> {
        self.probabilities(&rgba_image(rgba, width, height).map_err(fail)?)
    }

    /// An image file → its features (what the classifier reads).
    pub fn features_file(&self, file_bytes: &[u8]) -> Result<Vec<f32>, JsError> {
        self.features(&decode_image(file_bytes).map_err(fail)?)
    }

    /// RGBA pixels → their features.
    pub fn features_rgba(&self, rgba: &[u8], width: u32, height: u32) -> Result<Vec<f32>, JsError> {
        self.features(&rgba_image(rgba, width, height).map_err(fail)?)
    }

    fn features(&self, image: &RgbImage) -> Result<Vec<f32>, JsError> {
        Ok(compute(&self.extractor, &[image], View::AsIs).map_err(fail)?.remove(0))
    }

    /// The page's answer for one image (as its `Session` classifies), every class's probability.
    fn probabilities(&self, image: &RgbImage) -> Result<Vec<f32>, JsError> {
        let features = self.extractor.features(&self.extractor.input_tensor(&[image]).map_err(fail)?).map_err(fail)?;
        let mut rows = match &self.classifier {
            Some(classifier) => classifier.probabilities(&features),
            None => self.extractor.own_probabilities(&features),
        }
        .map_err(fail)?;
        Ok(rows.remove(0))
    }
}
