//! [`Session`]: the backbone and, once there is one, the trained model — embedding images,
//! classifying them, and where the model looks.

use candle_core::Device;
use image::RgbImage;
use wasm_bindgen::prelude::*;

use super::{fail, now_ms};
use crate::backbone::Pooling;
use crate::data::augment::{self, stored_copy};
use crate::data::preprocess::{
    decode_image, decode_waves, decoded_bytes, rgba_image, thumbnail_jpeg, PAGE_DECODE_BUDGET,
};
use crate::eval::class_map::{self, overlay};
use crate::infer::MatmulPrecision;
use crate::kernels::map_parallel;
use crate::model::features::{compute, View};
use crate::model::{Backbone, Classifier};
use crate::train::layers::{self, Activations};

/// The backbone (and the trained classifier, once there is one, with the backbone fed the way its
/// training images were).
#[wasm_bindgen]
pub struct Session {
    pub(super) backbone: Backbone,
    model: Option<(Classifier, Backbone)>,
}

/// One image's features, its JPEG thumbnail, and the copy of it kept to make its views when the
/// backbone's last layers train ([`stored_copy`]).
#[wasm_bindgen(getter_with_clone)]
pub struct Embedding {
    pub features: Vec<f32>,
    pub thumbnail: Vec<u8>,
    pub source: Vec<u8>,
}

/// Where the model looks in an image for one class: the picture the network saw with the class's
/// activation map drawn over it (PNG), the class, the map's size and its highest cell.
#[wasm_bindgen(getter_with_clone)]
pub struct WhereItLooks {
    pub png: Vec<u8>,
    pub class: usize,
    /// (rows, columns) of the map.
    pub size: Vec<usize>,
    /// (row, column) of its highest cell.
    pub peak: Vec<usize>,
}

/// Activations at the cut, one row per image view, as f16 bits, and their shape (C, H, W).
#[wasm_bindgen(getter_with_clone)]
pub struct ActivationRows {
    pub bits: Vec<u16>,
    pub shape: Vec<usize>,
}

#[wasm_bindgen]
impl Session {
    /// Loads a Wick backbone file; images are embedded with stage pooling ([`Session::set_pooling`]).
    #[wasm_bindgen(constructor)]
    pub fn new(backbone_file: &[u8]) -> Result<Session, JsError> {
        let backbone = Backbone::from_backbone_file(backbone_file, &Device::Cpu).map_err(fail)?;
        Ok(Self { backbone: backbone.with_pooling(Pooling::Stages), model: None })
    }

    /// JSON of the backbone's id, architecture and sha256, plus how many classes its own classifier
    /// has (`own_classes`: 1000 for ImageNet, 10 for a `wick cifar10 --mode finetune` backbone) and
    /// where its weights came from (`source`).
    pub fn backbone(&self) -> String {
        let mut description = serde_json::to_value(self.backbone.reference()).expect("serialises");
        description["own_classes"] = self.backbone.meta.labels.len().into();
        description["source"] = self.backbone.meta.source.package.clone().into();
        description["precision"] = self.backbone.precision().name().into();
        description["pooling"] = self.backbone.pooling().name().into();
        // Each pooling's feature length: what a project file of either holds per image.
        let config = &self.backbone.meta.config;
        description["dims"] = serde_json::json!({ "last": config.pooled_dim(Pooling::Last), "stages": config.pooled_dim(Pooling::Stages) });
        description.to_string()
    }

    /// Which maps the features of images embedded from now on average: `stages` (the page's
    /// default) or `last` ([`Pooling`]). A loaded model keeps its own (its `.wick` records it).
    pub fn set_pooling(&mut self, name: &str) -> Result<(), JsError> {
        self.backbone = self.backbone.with_pooling(Pooling::parse(name).map_err(fail)?);
        Ok(())
    }

    /// How the backbone multiplies from now on: `int8` (the default, fast) or `f32` (exact). Images
    /// embedded before keep their features; a loaded model switches with the backbone.
    pub fn set_precision(&mut self, name: &str) -> Result<(), JsError> {
        let precision = MatmulPrecision::parse(name).map_err(fail)?;
        self.backbone = self.backbone.with_precision(precision);
        if let Some((_, extractor)) = &mut self.model {
            *extractor = extractor.with_precision(precision);
        }
        Ok(())
    }

    #[wasm_bindgen(getter)]
    pub fn feature_dim(&self) -> usize {
        self.backbone.feature_dim()
    }

    /// Image files (JPEG, PNG, WebP, GIF, BMP) → for each, its [`Embedding`], or an `Error` naming why it could not be read. In
    /// the multi-threaded build a batch keeps every thread busy: one file per thread is decoded,
    /// resized and thumbnailed, and one image per thread runs through the backbone.
    ///
    /// The batch is decoded in waves within the page's decode budget ([`PAGE_DECODE_BUDGET`]):
    /// large photos go a few at a time.
    pub fn embed_files(&self, files: Vec<js_sys::Uint8Array>) -> Result<js_sys::Array, JsError> {
        let bytes: Vec<Vec<u8>> = files.iter().map(js_sys::Uint8Array::to_vec).collect();
        let costs: Vec<u64> = bytes.iter().map(|b| decoded_bytes(b)).collect();
        let answers = js_sys::Array::new();
        for wave in decode_waves(&costs, PAGE_DECODE_BUDGET) {
            let decoded = map_parallel(&bytes[wave], |b| decode_image(b));
            let images: Vec<&RgbImage> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
            let mut embedded = if images.is_empty() { Vec::new() } else { self.embed_images(&images)? }.into_iter();
            for d in &decoded {
                let answer = match d {
                    Ok(_) => embedded.next().expect("one per decoded image").map_or_else(JsValue::from, JsValue::from),
                    Err(e) => fail(e).into(),
                };
                answers.push(&answer);
            }
        }
        Ok(answers)
    }

    /// RGBA pixels (a canvas's `ImageData`, e.g. a webcam frame) → features and a thumbnail.
    pub fn embed_rgba(&self, rgba: &[u8], width: u32, height: u32) -> Result<Embedding, JsError> {
        let image = rgba_image(rgba, width, height).map_err(fail)?;
        self.embed_images(&[&image])?.remove(0)
    }

    /// Images → their features (one batch through the backbone), thumbnails and kept copies (one
    /// image per thread), each image's [`Embedding`] or why its thumbnail or copy failed.
    fn embed_images(&self, images: &[&RgbImage]) -> Result<Vec<Result<Embedding, JsError>>, JsError> {
        let features = compute(&self.backbone, images, View::AsIs).map_err(fail)?;
        let resize_shorter = self.backbone.meta.preprocess.resize_shorter;
        let encoded = map_parallel(images, |image| {
            Ok::<_, String>((
                thumbnail_jpeg(image).map_err(|e| e.to_string())?,
                stored_copy(image, resize_shorter).map_err(|e| e.to_string())?,
            ))
        });
        Ok(features
            .into_iter()
            .zip(encoded)
            .map(|(features, encoded)| {
                let (thumbnail, source) = encoded.map_err(fail)?;
                Ok(Embedding { features, thumbnail, source })
            })
            .collect())
    }

    /// Kept copies of images ([`Embedding::source`]) → each one's activations at the cut for
    /// training the last `depth` parts: views `0..views` of image `i`, drawn from `seeds[i]`
    /// ([`augment::view`]), image by image. A copy that does not decode is named by its position.
    pub fn activations(
        &self,
        sources: Vec<js_sys::Uint8Array>,
        seeds: Vec<u32>,
        depth: usize,
        views: usize,
    ) -> Result<ActivationRows, JsError> {
        if seeds.len() != sources.len() || views == 0 || views > augment::AUGMENTED_VIEWS {
            return Err(JsError::new(&format!(
                "expected a seed per image and 1 to {} views",
                augment::AUGMENTED_VIEWS
            )));
        }
        let first = self.backbone.meta.config.first_trained_block(depth).map_err(fail)?;
        let bytes: Vec<Vec<u8>> = sources.iter().map(js_sys::Uint8Array::to_vec).collect();
        // Kept copies come back from storage, which can hand back anything: decoded within the
        // budget, and views made from a copy no larger than the backbone reads.
        let costs: Vec<u64> = bytes.iter().map(|b| decoded_bytes(b)).collect();
        let resize_shorter = self.backbone.meta.preprocess.resize_shorter;
        let mut images = Vec::with_capacity(sources.len() * views);
        for wave in decode_waves(&costs, PAGE_DECODE_BUDGET) {
            let first_index = wave.start;
            let decoded = map_parallel(&bytes[wave], |b| decode_image(b));
            for (i, image) in decoded.iter().enumerate() {
                let i = first_index + i;
                let image = image.as_ref().map_err(|e| fail(format!("image {i}'s kept copy: {e}")))?;
                let copy = augment::bounded_copy(image, resize_shorter);
                let copy = copy.as_ref().unwrap_or(image);
                images.extend((0..views).map(|v| augment::view(copy, v, seeds[i] as u64)));
            }
        }
        let batch =
            self.backbone.activations(&self.backbone.input_tensor(&images).map_err(fail)?, first).map_err(fail)?;
        let (_, c, h, w) = batch.dims4().map_err(fail)?;
        let mut rows = Activations::new([c, h, w]);
        rows.push(&batch).map_err(fail)?;
        Ok(ActivationRows { bits: rows.into_bits(), shape: vec![c, h, w] })
    }

    /// JSON of what training the last `depth` parts costs here ([`layers::LayerCost`]), measured now
    /// on a batch of `batch` random images (the batch size training will use).
    pub fn layer_cost(&self, depth: usize, batch: usize) -> Result<String, JsError> {
        // The page measures at most 32; a larger batch would only take the tab's memory.
        if batch > 256 {
            return Err(JsError::new(&format!("a batch of {batch} images: measure with 1 to 256")));
        }
        let cost =
            layers::layer_cost(&self.backbone.with_pooling(Pooling::Last), depth, batch, now_ms).map_err(fail)?;
        Ok(serde_json::to_string(&cost).expect("serialises"))
    }

    /// Makes a `.wick` model the one [`Session::classify_file`] uses; returns its metadata as JSON. The
    /// model runs on `backbone` (a backbone file whose last layers trained with it) or else on this
    /// session's backbone; a model trained on another backbone is refused.
    pub fn load_model(&mut self, wick: &[u8], backbone: Option<Vec<u8>>) -> Result<String, JsError> {
        let classifier = Classifier::from_bytes(wick, &Device::Cpu).map_err(fail)?;
        let base = match backbone {
            Some(bytes) => Backbone::from_backbone_file(&bytes, &Device::Cpu)
                .map_err(fail)?
                .with_precision(self.backbone.precision()),
            None => self.backbone.clone(),
        };
        let extractor = classifier.feature_extractor(&base).map_err(fail)?;
        let meta = serde_json::to_string(&classifier.meta).expect("serialises");
        self.model = Some((classifier, extractor));
        Ok(meta)
    }

    /// Forgets the model (the page's classes changed, so it no longer fits them).
    pub fn unload_model(&mut self) {
        self.model = None;
    }

    /// An image file → JSON `{"probabilities": […]}` over the loaded model's classes, or without a
    /// model `{"backbone": [{index, label, probability}, …]}`, the top 5 of the backbone's own
    /// classifier (ImageNet's, or a fine-tuned backbone's).
    pub fn classify_file(&self, file_bytes: &[u8]) -> Result<String, JsError> {
        self.classify(&decode_image(file_bytes).map_err(fail)?)
    }

    /// RGBA pixels (a webcam frame) → the same JSON as [`Session::classify_file`].
    pub fn classify_rgba(&self, rgba: &[u8], width: u32, height: u32) -> Result<String, JsError> {
        self.classify(&rgba_image(rgba, width, height).map_err(fail)?)
    }

    /// Where the model (the loaded one, or without one the backbone's own classifier) looks in an
    /// image file for `class` (by default the class it predicts).
    pub fn where_it_looks(&self, file_bytes: &[u8], class: Option<usize>) -> Result<WhereItLooks, JsError> {
        let image = decode_image(file_bytes).map_err(fail)?;
        let (extractor, head) = match &self.model {
            Some((classifier, extractor)) => (extractor, Some(&classifier.head)),
            None => (&self.backbone, None),
        };
        let (maps, predicted) = class_map::where_it_looks(extractor, head, &image).map_err(fail)?;
        let class = match class {
            Some(c) if c < maps.classes => c,
            Some(c) => return Err(JsError::new(&format!("there is no class {c}: the model has {}", maps.classes))),
            None => predicted,
        };
        let (row, column) = maps.peak(class);
        let drawn = overlay(&extractor.meta.preprocess.view(&image), &maps.of(class), (maps.h, maps.w));
        let mut png = Vec::new();
        drawn.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(fail)?;
        Ok(WhereItLooks { png, class, size: vec![maps.h, maps.w], peak: vec![row, column] })
    }

    fn classify(&self, image: &RgbImage) -> Result<String, JsError> {
        let answer = match &self.model {
            Some((classifier, extractor)) => {
                let features = extractor.features(&extractor.input_tensor(&[image]).map_err(fail)?).map_err(fail)?;
                serde_json::json!({ "probabilities": classifier.probabilities(&features).map_err(fail)?.remove(0) })
            }
            None => {
                let top = self.backbone.top_k(std::slice::from_ref(image), 5).map_err(fail)?.remove(0);
                serde_json::json!({ "backbone": top })
            }
        };
        Ok(answer.to_string())
    }
}
