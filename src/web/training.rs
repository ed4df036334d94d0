//! [`Training`]: a training run over the page's samples, one step per call so the worker can
//! answer Cancel in between — the head alone, or with the backbone's last layers.

use candle_core::Device;
use wasm_bindgen::prelude::*;

use super::fail;
use super::session::Session;
use crate::backbone::Pooling;
use crate::data::augment;
use crate::data::dataset::{check_every_class_has_samples, check_labels, stratified_split};
use crate::data::feature_set::FeatureSet;
use crate::formats::project::TrainReport;
use crate::model::Backbone;
use crate::model::Classifier;
use crate::train::config::{Solver, TrainConfig};
use crate::train::head_fit::{HeadData, HeadFit};
use crate::train::layers::{Activations, LayerFit, SampleRows};
use crate::train::report::Stop;

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

/// Views of each training image when the page augments them ([`augment::AUGMENTED_VIEWS`]).
#[wasm_bindgen]
pub fn augmented_views() -> usize {
    augment::AUGMENTED_VIEWS
}

/// The samples held out for validation: their indices into `labels` (the split [`Training`] makes
/// with the same share and seed), so the page computes only their plain view.
#[wasm_bindgen]
pub fn validation_split(labels: &[u32], class_names: &str, share: f32, seed: u64) -> Result<Vec<u32>, JsError> {
    let names: Vec<String> = serde_json::from_str(class_names).map_err(fail)?;
    let (_, val) = stratified_split(labels, names.len(), share, seed).map_err(fail)?;
    Ok(val.into_iter().map(|i| i as u32).collect())
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
            train: run.samples.subset(&run.train_idx),
            val: run.samples.subset(&run.val_idx),
            val_names: run.val_idx.iter().map(|i| i.to_string()).collect(),
            labels: run.names.clone(),
        };
        let fit = HeadFit::new(data, &run.config, &Device::Cpu).map_err(fail)?;
        let (labels, config, backbone) = (run.names, run.config, session.backbone.clone());
        Ok(Self { fit: Some(Fit::Head(Box::new(HeadRun { fit, labels, config, backbone }))) })
    }

    /// As [`Training::new`], with the backbone's last `settings.train_layers` parts training too,
    /// on the last map's pool ([`Pooling::Last`]: the first values of any pooling's features).
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
        let mut run = Run::new(session, features, labels, class_names, settings)?;
        let backbone = session.backbone.with_pooling(Pooling::Last);
        run.samples = run.samples.leading(backbone.feature_dim());
        let depth = run.config.train_layers;
        if depth == 0 {
            return Err(JsError::new("the settings train the head only: use new Training"));
        }
        let [c, h, w] = shape[..] else { return Err(JsError::new("the activations' shape must be (C, H, W)")) };
        let rows = Activations::from_bits([c, h, w], activations).map_err(fail)?;
        let counts = rows_per_sample.iter().map(|&r| r as usize).collect();
        let names = (0..labels.len()).map(|i| i.to_string()).collect();
        let samples = SampleRows::new(rows, counts, run.samples, names).map_err(fail)?;
        // Training samples bring every view; validation samples their plain view only.
        let (train, val) = samples.split(&run.train_idx, &run.val_idx);
        let fit = LayerFit::new(&backbone, depth, train, val, run.names.clone(), &run.config).map_err(fail)?;
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

/// A training request's parts, checked: the classes, the settings, every sample's features, and
/// the split.
struct Run {
    names: Vec<String>,
    config: TrainConfig,
    samples: FeatureSet,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
}

impl Run {
    fn new(
        session: &Session,
        features: &[f32],
        labels: &[u32],
        class_names: &str,
        settings: &str,
    ) -> Result<Run, JsError> {
        let names: Vec<String> = serde_json::from_str(class_names).map_err(fail)?;
        check_labels(&names).map_err(fail)?;
        let s: WebSettings = serde_json::from_str(settings).map_err(|e| fail(format!("bad settings: {e}")))?;
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
        check_every_class_has_samples(labels, &names).map_err(fail)?;
        let (train_idx, val_idx) = stratified_split(labels, names.len(), s.validation_share, s.seed).map_err(fail)?;
        let samples = FeatureSet { dim, features: features.to_vec(), labels: labels.to_vec() };
        Ok(Run { names, config, samples, train_idx, val_idx })
    }
}

/// Whether training stopped because it diverged (for the page's message).
#[wasm_bindgen]
pub fn describe_stop(stop_json: &str) -> String {
    serde_json::from_str::<Stop>(stop_json).map_or_else(|_| "unknown".into(), |stop| stop.describe())
}
