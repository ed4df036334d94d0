//! The library's face to JavaScript (wasm32 only). The page (`static/app.js` and its modules in
//! `static/app/`) owns the DOM and the storage; everything that computes — decoding, the backbone, training, metrics, the `.wick` and
//! project formats — is the shared library, reached through these bindings. [`Session`] and
//! [`Training`] live in the Web Worker (`static/worker.js`), so the page never freezes.

use candle_core::{Device, Tensor};
use image::RgbImage;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::data::augment::{self, stored_copy};
use crate::data::dataset::{check_labels, stratified_split};
use crate::data::feature_set::FeatureSet;
use crate::data::preprocess::{decode_image, decode_waves, decoded_bytes, PAGE_DECODE_BUDGET};
use crate::eval::check::find_suspects;
use crate::eval::class_map::{self, overlay};
use crate::formats::project::{Project, ProjectMeta, TrainReport};
use crate::infer::MatmulPrecision;
use crate::kernels::map_parallel;
use crate::model::features::{compute, View};
use crate::model::Backbone;
use crate::model::Classifier;
use crate::train::config::{Solver, TrainConfig};
use crate::train::head_fit::{time_head_fit, HeadData, HeadFit};
use crate::train::layers::{self, Activations, LayerFit, TrainImages, ValImages};
use crate::train::report::Stop;

/// Thumbnails are at most this many pixels on their longer side: small, since a project of 10,000
/// images keeps them all (96 px JPEGs are 2–4 KB).
const THUMBNAIL_SIDE: u32 = 96;

/// Starts the pool of `threads` Web Workers that the backbone and the head run on (the page's
/// multi-threaded build only; the page calls it once, before anything computes).
#[cfg(feature = "web-threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// How many threads the backbone and the head run on: the pool's size in the multi-threaded build, 1
/// in the single-threaded one.
#[wasm_bindgen]
pub fn available_threads() -> usize {
    crate::kernels::available_threads()
}

fn fail(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The backbone (and the trained classifier, once there is one, with the backbone fed the way its
/// training images were).
#[wasm_bindgen]
pub struct Session {
    backbone: Backbone,
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
    /// Loads a Wick backbone file.
    #[wasm_bindgen(constructor)]
    pub fn new(model_file: &[u8]) -> Result<Session, JsError> {
        Ok(Self { backbone: Backbone::from_backbone_file(model_file, &Device::Cpu).map_err(fail)?, model: None })
    }

    /// JSON of the backbone's id, architecture and sha256, plus how many classes its own classifier
    /// has (`own_classes`: 1000 for ImageNet, 10 for a `wick cifar10 --mode finetune` backbone) and
    /// where its weights came from (`source`).
    pub fn backbone(&self) -> String {
        let mut description = serde_json::to_value(self.backbone.reference()).expect("serialises");
        description["own_classes"] = self.backbone.meta.labels.len().into();
        description["source"] = self.backbone.meta.source.package.clone().into();
        description["precision"] = self.backbone.precision().name().into();
        description.to_string()
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
        let image = rgba_image(rgba, width, height)?;
        self.embed_images(&[&image])?.remove(0)
    }

    /// Images → their features (one batch through the backbone), thumbnails and kept copies (one
    /// image per thread), each image's [`Embedding`] or why its thumbnail or copy failed.
    fn embed_images(&self, images: &[&RgbImage]) -> Result<Vec<Result<Embedding, JsError>>, JsError> {
        let features = compute(&self.backbone, images, View::AsIs).map_err(fail)?;
        let resize_shorter = self.backbone.meta.preprocess.resize_shorter;
        let encoded = map_parallel(images, |image| {
            Ok::<_, image::ImageError>((thumbnail_jpeg(image)?, stored_copy(image, resize_shorter)?))
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
    /// on a few random images.
    pub fn layer_cost(&self, depth: usize) -> Result<String, JsError> {
        let cost = layers::layer_cost(&self.backbone, depth, 4, now_ms).map_err(fail)?;
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
        self.classify(&rgba_image(rgba, width, height)?)
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
        let values = maps.of(class);
        let top = (0..values.len()).max_by(|&a, &b| values[a].total_cmp(&values[b])).unwrap_or(0);
        let drawn = overlay(&extractor.meta.preprocess.view(&image), &values, (maps.h, maps.w));
        let mut png = Vec::new();
        drawn.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(fail)?;
        Ok(WhereItLooks { png, class, size: vec![maps.h, maps.w], peak: vec![top / maps.w, top % maps.w] })
    }

    fn classify(&self, image: &RgbImage) -> Result<String, JsError> {
        let answer = match &self.model {
            Some((classifier, extractor)) => {
                let features = compute(extractor, &[image], View::AsIs).map_err(fail)?.remove(0);
                let x = Tensor::from_vec(features, (1, extractor.feature_dim()), &Device::Cpu).map_err(fail)?;
                serde_json::json!({ "probabilities": classifier.probabilities(&x).map_err(fail)?.remove(0) })
            }
            None => {
                let top = self.backbone.top_k(std::slice::from_ref(image), 5).map_err(fail)?.remove(0);
                serde_json::json!({ "backbone": top })
            }
        };
        Ok(answer.to_string())
    }
}

fn rgba_image(rgba: &[u8], width: u32, height: u32) -> Result<RgbImage, JsError> {
    if width == 0 || height == 0 || rgba.len() != 4 * width as usize * height as usize {
        return Err(JsError::new("the frame's size does not match its pixels"));
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    Ok(RgbImage::from_raw(width, height, rgb).expect("size checked"))
}

fn thumbnail_jpeg(image: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let (w, h) = image.dimensions();
    let scale = (THUMBNAIL_SIDE as f32 / w.max(h) as f32).min(1.0);
    let small =
        image::imageops::thumbnail(image, ((w as f32 * scale) as u32).max(1), ((h as f32 * scale) as u32).max(1));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 82).encode_image(&small)?;
    Ok(jpeg)
}

/// A training run, one step per call so the worker can answer Cancel in between.
#[wasm_bindgen]
pub struct Training {
    fit: Option<Fit>,
}

/// The head alone, or with the backbone's last layers (whose run records its classes, settings
/// and backbone itself).
enum Fit {
    Head(Box<HeadRun>),
    Layers(Box<LayerFit>),
}

/// A head fit and what its `.wick` records besides: the classes, the settings, the backbone.
struct HeadRun {
    fit: HeadFit,
    labels: Vec<String>,
    config: TrainConfig,
    backbone: Backbone,
}

/// What a finished training run gives the page.
#[wasm_bindgen(getter_with_clone)]
pub struct TrainedModel {
    /// The `.wick` bytes.
    pub wick: Vec<u8>,
    /// The backbone file the model runs on, when its last layers trained (else it runs on the
    /// page's backbone).
    pub backbone: Option<Vec<u8>>,
    /// JSON: `history`, `best_epoch`, `stop`, `train_count`, `validation` (metrics; the names of
    /// misclassified images are sample indices).
    pub report: String,
}

/// The page's Advanced settings.
#[derive(serde::Deserialize)]
struct WebSettings {
    /// Epochs, batch size and learning rate: the hidden-layer head's (the linear head is solved by
    /// L-BFGS, its regularisation chosen on the validation images).
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    /// 0 for a linear head.
    hidden_units: usize,
    /// Share of each class held out for validation.
    validation_share: f32,
    #[serde(default)]
    seed: u64,
    /// How many parts at the end of the backbone train with the head (0: the head only).
    #[serde(default)]
    train_layers: usize,
    /// The most epochs those layers train.
    #[serde(default = "default_layer_epochs")]
    layer_epochs: usize,
}

fn default_layer_epochs() -> usize {
    TrainConfig::default().layer_epochs
}

/// The data map: each sample's features (rows of `dim`) → its 2-D PCA coordinates, x then y.
#[wasm_bindgen]
pub fn project_map(features: &[f32], dim: usize) -> Result<Vec<f32>, JsError> {
    let points = crate::eval::projection::pca_2d(features, dim, &Device::Cpu).map_err(fail)?;
    Ok(points.into_iter().flatten().collect())
}

/// Suspects listed by [`check_project_labels`].
const CHECK_LISTED: usize = 50;

/// The label check ([`crate::eval::check`]) over every sample: JSON `{"suspects": [the 50 most
/// doubtful, each {row, given, suggested, given_probability, suggested_probability,
/// probably_mislabelled}], "predicted": [each row's out-of-fold class]}`.
#[wasm_bindgen]
pub fn check_project_labels(features: &[f32], labels: &[u32], classes: usize, seed: u64) -> Result<String, JsError> {
    let dim = if labels.is_empty() { 0 } else { features.len() / labels.len() };
    if dim == 0 || features.len() != dim * labels.len() {
        return Err(JsError::new(&format!(
            "{} feature values do not divide into {} samples",
            features.len(),
            labels.len()
        )));
    }
    let set = FeatureSet { dim, features: features.to_vec(), labels: labels.to_vec() };
    let suspects = find_suspects(&set, classes, seed, &Device::Cpu, |_, _| {}).map_err(fail)?;
    let mut predicted = labels.to_vec();
    for s in &suspects {
        if s.probably_mislabelled() {
            predicted[s.row] = s.suggested;
        }
    }
    let listed: Vec<serde_json::Value> = suspects
        .iter()
        .take(CHECK_LISTED)
        .map(|s| {
            let mut v = serde_json::to_value(s).expect("serialises");
            v["probably_mislabelled"] = s.probably_mislabelled().into();
            v
        })
        .collect();
    Ok(serde_json::json!({ "suspects": listed, "predicted": predicted }).to_string())
}

/// Views of each training image when the page augments them ([`augment::AUGMENTED_VIEWS`]).
#[wasm_bindgen]
pub fn augmented_views() -> usize {
    augment::AUGMENTED_VIEWS
}

/// The samples held out for validation: their indices into `labels` (the split [`Training`] makes
/// with the same share and seed), so the page computes only their plain view.
#[wasm_bindgen]
pub fn validation_split(labels: &[u32], classes: usize, share: f32, seed: u64) -> Vec<u32> {
    stratified_split(labels, classes, share, seed).1.into_iter().map(|i| i as u32).collect()
}

#[wasm_bindgen]
impl Training {
    /// `features`: one row of `session.feature_dim` per sample; `labels`: each sample's class index into
    /// `class_names` (a JSON array); `settings`: JSON of the page's training settings. Trains the
    /// head only; [`Training::with_layers`] trains the backbone's last layers too.
    #[wasm_bindgen(constructor)]
    pub fn new(
        session: &Session,
        features: &[f32],
        labels: &[u32],
        class_names: &str,
        settings: &str,
    ) -> Result<Training, JsError> {
        let run = Run::new(session, features, labels, class_names, settings)?;
        if run.config.train_layers != 0 {
            return Err(JsError::new(
                "training the backbone's layers needs their activations: use Training.with_layers",
            ));
        }
        let data = HeadData {
            train: run.subset(&run.train_idx),
            val: run.subset(&run.val_idx),
            val_names: run.val_names(),
            labels: run.names.clone(),
        };
        let fit = HeadFit::new(data, &run.config, &Device::Cpu).map_err(fail)?;
        let (labels, config, backbone) = (run.names, run.config, session.backbone.clone());
        Ok(Self { fit: Some(Fit::Head(Box::new(HeadRun { fit, labels, config, backbone }))) })
    }

    /// As [`Training::new`], with the backbone's last `settings.train_layers` parts training too.
    /// `activations`: f16 bits of every sample's rows at the cut ([`Session::activations`]), sample
    /// after sample, `rows_per_sample[i]` rows each (the first the plain view; validation samples,
    /// [`validation_split`], use only it); `shape`: one row's (C, H, W).
    #[allow(clippy::too_many_arguments)] // one flat call across the JavaScript boundary
    pub fn with_layers(
        session: &Session,
        features: &[f32],
        labels: &[u32],
        class_names: &str,
        settings: &str,
        activations: Vec<u16>,
        shape: Vec<usize>,
        rows_per_sample: &[u32],
    ) -> Result<Training, JsError> {
        let run = Run::new(session, features, labels, class_names, settings)?;
        let depth = run.config.train_layers;
        if depth == 0 {
            return Err(JsError::new("the settings train the head only: use new Training"));
        }
        let [c, h, w] = shape[..] else { return Err(JsError::new("the activations' shape must be (C, H, W)")) };
        let rows = Activations::from_bits([c, h, w], activations).map_err(fail)?;
        if rows_per_sample.len() != labels.len() || rows_per_sample.contains(&0) {
            return Err(JsError::new("every sample needs at least one activation row"));
        }
        let total: usize = rows_per_sample.iter().map(|&r| r as usize).sum();
        if total != rows.len() {
            return Err(JsError::new(&format!("{} activation rows, but the samples list {total}", rows.len())));
        }
        let mut starts = Vec::with_capacity(labels.len());
        let mut next = 0;
        for &r in rows_per_sample {
            starts.push(next);
            next += r as usize;
        }
        // Training samples bring every view; validation samples their plain view only.
        let (mut train_rows, mut views) = (Vec::new(), Vec::new());
        for &i in &run.train_idx {
            let first = train_rows.len();
            train_rows.extend(starts[i]..starts[i] + rows_per_sample[i] as usize);
            views.push((first..train_rows.len()).collect());
        }
        let plain: Vec<usize> = run.val_idx.iter().map(|&i| starts[i]).collect();
        let train = TrainImages { activations: rows.select(&train_rows), views, features: run.subset(&run.train_idx) };
        let val =
            ValImages { activations: rows.select(&plain), features: run.subset(&run.val_idx), names: run.val_names() };
        let fit = LayerFit::new(&session.backbone, depth, train, val, run.names.clone(), &run.config).map_err(fail)?;
        Ok(Self { fit: Some(Fit::Layers(Box::new(fit))) })
    }

    /// Runs one step (an epoch, or a strength of the L-BFGS path): its numbers as JSON, or
    /// `undefined` once training has stopped.
    pub fn next_epoch(&mut self) -> Result<Option<String>, JsError> {
        let stats = match self.fit.as_mut().ok_or_else(|| JsError::new("training has finished"))? {
            Fit::Head(run) => run.fit.next_epoch(),
            Fit::Layers(fit) => fit.next_epoch(),
        };
        Ok(stats.map_err(fail)?.map(|s| serde_json::to_string(s).expect("serialises")))
    }

    pub fn cancel(&mut self) {
        match &mut self.fit {
            Some(Fit::Head(run)) => run.fit.cancel(),
            Some(Fit::Layers(fit)) => fit.cancel(),
            None => {}
        }
    }

    /// The best weights as a `.wick` model (and, when the backbone's last layers trained, the
    /// backbone file it runs on), with validation metrics.
    pub fn finish(&mut self, unix_seconds: f64) -> Result<TrainedModel, JsError> {
        let unix_seconds = unix_seconds.max(0.0) as u64;
        let (classifier, backbone, train_count, validation) =
            match self.fit.take().ok_or_else(|| JsError::new("training has finished"))? {
                Fit::Head(run) => {
                    let HeadRun { fit, labels, config, backbone } = *run;
                    let fitted = fit.finish().map_err(fail)?;
                    let validation = fitted.validation;
                    let classifier = Classifier::from_training(
                        fitted.trained,
                        labels,
                        &backbone,
                        config,
                        validation.as_ref(),
                        unix_seconds,
                    );
                    (classifier, None, fitted.train_rows, validation)
                }
                Fit::Layers(fit) => {
                    let fitted = fit.finish(unix_seconds).map_err(fail)?;
                    (fitted.classifier, Some(fitted.backbone_file), fitted.train_images, fitted.validation)
                }
            };
        // The report keeps the misclassified images, which the `.wick` leaves out.
        let meta = &classifier.meta;
        let report = TrainReport {
            history: meta.history.clone(),
            best_epoch: meta.best_epoch,
            stop: meta.stop.clone(),
            train_count,
            validation,
        };
        Ok(TrainedModel {
            wick: classifier.to_bytes().map_err(fail)?,
            backbone,
            report: serde_json::to_string(&report).expect("serialises"),
        })
    }
}

/// A training request's parts, checked: the classes, the settings, and the split.
struct Run<'a> {
    names: Vec<String>,
    config: TrainConfig,
    features: &'a [f32],
    labels: &'a [u32],
    dim: usize,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
}

impl<'a> Run<'a> {
    fn new(
        session: &Session,
        features: &'a [f32],
        labels: &'a [u32],
        class_names: &str,
        settings: &str,
    ) -> Result<Run<'a>, JsError> {
        let names: Vec<String> = serde_json::from_str(class_names).map_err(fail)?;
        check_labels(&names).map_err(fail)?;
        let s: WebSettings = serde_json::from_str(settings).map_err(|e| fail(format!("bad settings: {e}")))?;
        if !(0.0..1.0).contains(&s.validation_share) {
            return Err(JsError::new("the validation share must be at least 0 and below 1"));
        }
        for (c, name) in names.iter().enumerate() {
            if !labels.contains(&(c as u32)) {
                return Err(JsError::new(&format!("class `{name}` has no images: add some or delete the class")));
            }
        }
        let dim = session.feature_dim();
        if features.len() != labels.len() * dim {
            return Err(JsError::new("features must hold one row per label"));
        }
        let hidden = (s.hidden_units > 0).then_some(s.hidden_units);
        let config = TrainConfig {
            hidden,
            epochs: s.epochs,
            batch_size: s.batch_size,
            learning_rate: s.learning_rate,
            seed: s.seed,
            solver: Solver::for_head(hidden),
            train_layers: s.train_layers,
            layer_epochs: s.layer_epochs,
            ..TrainConfig::default()
        };
        config.validate().map_err(fail)?;
        let (train_idx, val_idx) = stratified_split(labels, names.len(), s.validation_share, s.seed);
        Ok(Run { names, config, features, labels, dim, train_idx, val_idx })
    }

    fn subset(&self, idx: &[usize]) -> FeatureSet {
        let mut set = FeatureSet::new(self.dim);
        for &i in idx {
            set.push(&self.features[i * self.dim..(i + 1) * self.dim], self.labels[i]);
        }
        set
    }

    /// The validation samples' names: their indices.
    fn val_names(&self) -> Vec<String> {
        self.val_idx.iter().map(|i| i.to_string()).collect()
    }
}

/// The Wick format a file names (`wick-model` for a backbone, `wick-classifier` for a `.wick`), or
/// undefined for anything else.
#[wasm_bindgen]
pub fn wick_format(bytes: &[u8]) -> Option<String> {
    crate::formats::format_of(bytes)
}

/// The sha256 of the backbone a backbone file was derived from (its recorded source), or undefined
/// for anything else: the page tells a backbone whose last layers trained from its own backbone
/// (a model's companion) from one to switch to.
#[wasm_bindgen]
pub fn backbone_source(bytes: &[u8]) -> Option<String> {
    crate::formats::backbone_file::read(bytes).ok().map(|(meta, _)| meta.source.sha256)
}

/// Whether training stopped because it diverged (for the page's message).
#[wasm_bindgen]
pub fn describe_stop(stop_json: &str) -> String {
    serde_json::from_str::<Stop>(stop_json).map_or_else(|_| "unknown".into(), |stop| stop.describe())
}

/// One project file's parts, for the page to store.
#[wasm_bindgen(getter_with_clone)]
pub struct ProjectParts {
    /// JSON of the project's metadata (backbone, classes and samples, settings).
    pub meta: String,
    pub features: Vec<f32>,
    pub thumbnails: Vec<u8>,
    pub sources: Vec<u8>,
    pub model: Option<Vec<u8>>,
    pub model_backbone: Option<Vec<u8>>,
}

/// Writes a project file. `meta` is the JSON of the project's metadata.
#[wasm_bindgen]
pub fn encode_project(
    meta: &str,
    features: Vec<f32>,
    thumbnails: Vec<u8>,
    sources: Vec<u8>,
    model: Option<Vec<u8>>,
    model_backbone: Option<Vec<u8>>,
    dim: usize,
) -> Result<Vec<u8>, JsError> {
    let meta: ProjectMeta = serde_json::from_str(meta).map_err(|e| fail(format!("bad project metadata: {e}")))?;
    let project = Project { meta, features, thumbnails, sources, model, model_backbone };
    project.check(dim).map_err(fail)?;
    project.to_bytes().map_err(fail)
}

/// Reads and checks a project file made for the backbone `backbone_sha256` (feature size `dim`).
#[wasm_bindgen]
pub fn decode_project(bytes: &[u8], backbone_sha256: &str, dim: usize) -> Result<ProjectParts, JsError> {
    let project = Project::from_bytes(bytes, dim).map_err(fail)?;
    if project.meta.backbone.sha256 != backbone_sha256 {
        return Err(JsError::new(&format!(
            "this project's features were computed by backbone {}, not by the one loaded here",
            project.meta.backbone.id
        )));
    }
    Ok(ProjectParts {
        meta: serde_json::to_string(&project.meta).expect("serialises"),
        features: project.features,
        thumbnails: project.thumbnails,
        sources: project.sources,
        model: project.model,
        model_backbone: project.model_backbone,
    })
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Backbone forward time in this tab, multiplying in `precision` (`int8` or `f32`):
/// `{"batch": B, "ms_per_image": …}` (for `benches/`).
#[wasm_bindgen]
pub fn bench_backbone(model_file: &[u8], batch: usize, iters: usize, precision: &str) -> Result<String, JsError> {
    let precision = MatmulPrecision::parse(precision).map_err(fail)?;
    let backbone =
        Backbone::from_backbone_file(model_file, &Device::Cpu).map(|b| b.with_precision(precision)).map_err(fail)?;
    let crop = backbone.meta.preprocess.crop as usize;
    let input = Tensor::randn(0f32, 1f32, (batch, 3, crop, crop), &Device::Cpu).map_err(fail)?;
    let run = || backbone.features(&input).and_then(|f| Ok(f.to_vec2::<f32>()?)).map_err(fail);
    run()?; // warm-up
    let start = now_ms();
    for _ in 0..iters {
        run()?;
    }
    let ms = (now_ms() - start) / (iters * batch) as f64;
    Ok(format!(r#"{{"batch":{batch},"ms_per_image":{ms}}}"#))
}

/// Head training time in this tab on the given features (row-major, `labels.len()` rows): a linear
/// head, `epochs` epochs of mini-batches of `batch_size`, best of `iters` runs after a warm-up.
/// Returns `{"ms": …, "train_accuracy": …}` (for `benches/`).
#[wasm_bindgen]
pub fn bench_head(
    features: &[f32],
    labels: &[u8],
    epochs: usize,
    batch_size: usize,
    iters: usize,
) -> Result<String, JsError> {
    if labels.is_empty() || !features.len().is_multiple_of(labels.len()) {
        return Err(JsError::new("features must hold one row per label"));
    }
    let set = FeatureSet {
        dim: features.len() / labels.len(),
        features: features.to_vec(),
        labels: labels.iter().map(|&l| l as u32).collect(),
    };
    let (best, accuracy) = time_head_fit(&set, epochs, batch_size, iters, now_ms).map_err(fail)?;
    Ok(format!(r#"{{"ms":{best},"train_accuracy":{accuracy}}}"#))
}

/// Fetches `url` (the backbone file), calling `on_progress(received_bytes, total_bytes)` as bytes
/// arrive (`total_bytes` is 0 when the server does not say). Works in the page and in a worker.
#[wasm_bindgen]
pub async fn download(url: String, on_progress: js_sys::Function) -> Result<Vec<u8>, JsError> {
    let fetched = match web_sys::window() {
        Some(window) => window.fetch_with_str(&url),
        None => js_sys::global().unchecked_into::<web_sys::WorkerGlobalScope>().fetch_with_str(&url),
    };
    let js = |e: JsValue| JsError::new(&format!("{url}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))));
    let response: web_sys::Response = JsFuture::from(fetched).await.map_err(js)?.unchecked_into();
    if !response.ok() {
        return Err(JsError::new(&format!("{url}: HTTP {}", response.status())));
    }
    let total: f64 = response.headers().get("content-length").map_err(js)?.and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let body = response.body().ok_or_else(|| JsError::new(&format!("{url}: empty response")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(js)?;
        if js_sys::Reflect::get(&chunk, &"done".into()).map_err(js)?.as_bool().unwrap_or(true) {
            break;
        }
        let value: js_sys::Uint8Array = js_sys::Reflect::get(&chunk, &"value".into()).map_err(js)?.unchecked_into();
        bytes.extend(value.to_vec());
        on_progress.call2(&JsValue::NULL, &(bytes.len() as f64).into(), &total.into()).map_err(js)?;
    }
    Ok(bytes)
}
