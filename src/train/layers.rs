//! Training the last layers of the backbone with the head ("layers to train" in the page, `wick
//! train --train-layers N`), on activations computed once.
//!
//! The frozen part of the network runs once per image view, and its output — the activation at the
//! cut, the input of the first trained block — is kept (f16, [`Activations`]). Every epoch then runs
//! forward and backward through the trained part only.
//!
//! BatchNorm in the trained layers stays frozen: its running statistics and scale are folded into
//! each convolution's weight and bias (the backbone file's form), and those weights and biases
//! train. With a few dozen images per class, batch statistics would be noise. Frozen statistics are
//! the usual choice for small data, and the page only has the folded weights anyway.
//!
//! The run, step by step:
//! 1. The head alone, fitted on the plain views' features exactly as head-only training fits it
//!    (linear probing first: the layers start from a head that already fits, so the first
//!    gradients don't scramble the pretrained weights).
//! 2. Up to `layer_epochs` epochs of AdamW over the trained layers and the head, at a hundredth and a
//!    tenth of the learning rate (discriminative learning rates: the pretrained layers move least),
//!    each training image in one random cached view per epoch.
//!
//! The best step by validation accuracy, then loss, is kept. Step 1 is a candidate, so the result is
//! never worse on the validation images than head-only training with the same split and seed.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use half::f16;
use half::vec::{HalfBitsVecExt, HalfFloatVecExt};

use crate::backbone::{Network, Pooling};
use crate::data::feature_set::FeatureSet;
use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::formats::backbone_file::QUANTIZATION;
use crate::formats::backbone_file::{self, BackboneMeta, Source};
use crate::kernels::on_pool;
use crate::model::head::{Head, Trained};
use crate::model::Backbone;
use crate::model::Classifier;
use crate::train::config::{Solver, TrainConfig};
use crate::train::head_fit::{HeadData, HeadFit};
use crate::train::loss::{class_weights, count_correct, cross_entropy};
use crate::train::optim::{Optimizer, OptimizerKind};
use crate::train::report::{EpochStats, Stop};
use crate::util::rng::Rng;

/// The layers' epochs without a lower validation loss before they stop training.
const LAYER_PATIENCE: usize = 3;
/// Once the head is fitted, the trained layers learn at this share of the learning rate (1e-5 at
/// the default 1e-3) and the head at [`HEAD_LEARNING_RATE_SHARE`]: on 5 CIFAR-10 classes × 32
/// photos (JPEG copy), shares of 0.1 and 1 raised the validation loss from the first epoch (0.58 →
/// 0.86), 0.01 and 0.1 lowered it (0.58 → 0.57).
const LAYER_LEARNING_RATE_SHARE: f64 = 0.01;
const HEAD_LEARNING_RATE_SHARE: f64 = 0.1;
/// Rows per forward pass when only measuring (features for the head fit, validation).
const EVAL_BATCH: usize = 32;

/// Activations at the cut, one row (C × H × W) per image view, kept as f16: half the memory of
/// f32, and the trained layers see them converted back.
#[derive(Debug, Clone)]
pub struct Activations {
    pub shape: [usize; 3],
    values: Vec<f16>,
}

impl Activations {
    pub fn new(shape: [usize; 3]) -> Self {
        Self { shape, values: Vec::new() }
    }

    /// Rows stored as f16 bits (the page's cache), checked against `shape`; taken over, not copied.
    pub fn from_bits(shape: [usize; 3], bits: Vec<u16>) -> Result<Self> {
        let per_row = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(0);
        if per_row == 0 || !bits.len().is_multiple_of(per_row) {
            return Err(invalid!("activations of {} values are not rows of {shape:?}", bits.len()));
        }
        Ok(Self { shape, values: bits.reinterpret_into() })
    }

    pub fn into_bits(self) -> Vec<u16> {
        self.values.reinterpret_into()
    }

    /// Values in one row.
    pub fn row_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes one row takes.
    pub fn row_bytes(&self) -> usize {
        2 * self.row_len()
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.row_len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Appends the rows of `batch` (N, C, H, W).
    pub fn push(&mut self, batch: &Tensor) -> Result<()> {
        let (_, c, h, w) = batch.dims4()?;
        if [c, h, w] != self.shape {
            return Err(invalid!("activations of shape {:?}, expected {:?}", [c, h, w], self.shape));
        }
        let values = batch.to_dtype(DType::F16)?.flatten_all()?.to_vec1::<f16>()?;
        self.values.extend(values);
        Ok(())
    }

    /// Rows `rows`, in that order, as a set of their own.
    pub fn select(&self, rows: &[usize]) -> Activations {
        let n = self.row_len();
        let values = rows.iter().flat_map(|&r| self.values[r * n..(r + 1) * n].iter().copied()).collect();
        Self { shape: self.shape, values }
    }

    /// Rows `rows` as one f32 batch (N, C, H, W).
    pub fn batch(&self, rows: &[usize], device: &Device) -> Result<Tensor> {
        let n = self.row_len();
        let mut values = Vec::with_capacity(rows.len() * n);
        for &r in rows {
            values.extend(self.values[r * n..(r + 1) * n].iter().map(|v| v.to_f32()));
        }
        let [c, h, w] = self.shape;
        Ok(Tensor::from_vec(values, (rows.len(), c, h, w), device)?)
    }
}

/// Training images: their activations, which rows are whose views (the first the plain one), their
/// labels, and their plain view's features as head-only training has them (the head's first fit).
pub struct TrainImages {
    pub activations: Activations,
    pub views: Vec<Vec<usize>>,
    pub features: FeatureSet,
}

/// Validation images: one plain view each, their features, and names for the list of
/// misclassified ones.
pub struct ValImages {
    pub activations: Activations,
    pub features: FeatureSet,
    pub names: Vec<String>,
}

/// Samples' activation rows at the cut, sample after sample — `rows_per_sample[i]` rows for sample
/// `i`, the first its plain view — with each sample's plain-view features and name: what a shell
/// gathers (the page from its stored rows, the CLI from the image files), split here into the
/// training and the validation images.
pub struct SampleRows {
    pub activations: Activations,
    pub rows_per_sample: Vec<usize>,
    pub features: FeatureSet,
    pub names: Vec<String>,
}

impl SampleRows {
    /// Checks that the counts cover the rows and that every sample has a row, features and a name.
    pub fn new(
        activations: Activations,
        rows_per_sample: Vec<usize>,
        features: FeatureSet,
        names: Vec<String>,
    ) -> Result<Self> {
        let samples = rows_per_sample.len();
        if features.len() != samples || names.len() != samples {
            return Err(invalid!(
                "{samples} samples' rows, but {} rows of features and {} names",
                features.len(),
                names.len()
            ));
        }
        if rows_per_sample.contains(&0) {
            return Err(invalid!("every sample needs at least one activation row"));
        }
        let total: usize = rows_per_sample.iter().sum();
        if total != activations.len() {
            return Err(invalid!("{} activation rows, but the samples list {total}", activations.len()));
        }
        Ok(Self { activations, rows_per_sample, features, names })
    }

    /// The samples `train` with every view and the samples `val` with their plain view. Taking every
    /// sample of one side in order moves the rows instead of copying them (the CLI's case).
    pub fn split(self, train: &[usize], val: &[usize]) -> (TrainImages, ValImages) {
        let samples = self.rows_per_sample.len();
        let all_in_order = |idx: &[usize]| idx.len() == samples && idx.iter().enumerate().all(|(i, &s)| i == s);
        let mut starts = Vec::with_capacity(samples);
        let mut next = 0;
        for &r in &self.rows_per_sample {
            starts.push(next);
            next += r;
        }
        let (mut train_rows, mut views) = (Vec::new(), Vec::new());
        for &i in train {
            let first = train_rows.len();
            train_rows.extend(starts[i]..starts[i] + self.rows_per_sample[i]);
            views.push((first..train_rows.len()).collect());
        }
        let plain: Vec<usize> = val.iter().map(|&i| starts[i]).collect();
        let shape = self.activations.shape;
        let empty = || Activations::new(shape);
        let (train_activations, val_activations) = match (train, val) {
            (t, []) if all_in_order(t) => (self.activations, empty()),
            ([], v) if all_in_order(v) && self.rows_per_sample.iter().all(|&r| r == 1) => (empty(), self.activations),
            _ => (self.activations.select(&train_rows), self.activations.select(&plain)),
        };
        let names = val.iter().map(|&i| self.names[i].clone()).collect();
        (
            TrainImages { activations: train_activations, views, features: self.features.subset(train) },
            ValImages { activations: val_activations, features: self.features.subset(val), names },
        )
    }
}

/// The trained part's weights and the head, taken at a step.
struct Snapshot {
    layers: Vec<Tensor>,
    head: Vec<Tensor>,
}

/// A run one step at a time (a step of the head fit, then an epoch of the layers), for the page's
/// worker, which answers Cancel between steps.
pub struct LayerFit {
    backbone: Backbone,
    network: Network,
    /// How many parts train, and the block they start at.
    depth: usize,
    first: usize,
    layers: Vec<(String, Var)>,
    train: TrainImages,
    val: ValImages,
    labels: Vec<String>,
    config: TrainConfig,
    phase: Phase,
    history: Vec<EpochStats>,
    /// (validation accuracy, validation loss, step, weights) of the best step so far.
    best: Option<(f32, f32, usize, Snapshot)>,
    /// The head fit's metrics on the validation images (the result's when its step is kept).
    head_validation: Option<Metrics>,
    stop: Option<Stop>,
    rng: Rng,
    class_weights: Vec<f32>,
}

enum Phase {
    Head(Box<HeadFit>),
    /// `epoch` counts the layers' epochs; `started` is the step they started after; `lowest_loss`
    /// is the lowest validation loss since, and the step it came at (early stopping's clock).
    Layers {
        head: Head,
        optimizers: Box<Optimizers>,
        epoch: usize,
        started: usize,
        lowest_loss: (f32, usize),
    },
    Done,
}

/// A finished run: the new backbone file, the `.wick` trained on it, and the validation metrics.
pub struct FittedTail {
    pub backbone_file: Vec<u8>,
    pub classifier: Classifier,
    pub validation: Option<Metrics>,
    pub train_images: usize,
    /// The history's first steps, the head fit's (the layers' epochs follow).
    pub head_steps: usize,
}

impl LayerFit {
    /// `depth` parts of `backbone` train (see [`NetworkConfig::first_trained_block`]) on `train`,
    /// whose activations the backbone made at that cut ([`Backbone::activations`]).
    pub fn new(
        backbone: &Backbone,
        depth: usize,
        train: TrainImages,
        val: ValImages,
        labels: Vec<String>,
        config: &TrainConfig,
    ) -> Result<Self> {
        config.validate()?;
        if backbone.pooling() != Pooling::Last {
            return Err(invalid!(
                "the backbone's last layers train on the last map's pool (pooling `last`), not pooling `{}`",
                backbone.pooling().name()
            ));
        }
        let device = backbone.device().clone();
        let network_config = &backbone.meta.config;
        let first = network_config.first_trained_block(depth)?;
        let (train_labels, val_labels) = (&train.features.labels, &val.features.labels);
        if train.views.len() != train_labels.len() || val_labels.len() != val.names.len() {
            return Err(invalid!("one feature row per training image and one name per validation image"));
        }
        if val_labels.len() != val.activations.len()
            || train.views.iter().flatten().any(|&r| r >= train.activations.len())
        {
            return Err(invalid!("the activations do not hold a row for every view"));
        }
        if train.views.iter().any(Vec::is_empty) {
            return Err(invalid!("every training image needs at least its plain view"));
        }
        let crop = backbone.meta.preprocess.crop as usize;
        let expected = network_config.activation_shape((crop, crop), first);
        for (which, rows) in [("training", &train.activations), ("validation", &val.activations)] {
            if !rows.is_empty() && rows.shape != expected {
                return Err(invalid!(
                    "{which} activations of shape {:?}, but block {first} of this backbone takes {expected:?}",
                    rows.shape
                ));
            }
        }
        if let Some(&bad) = train_labels.iter().chain(val_labels).find(|&&l| l as usize >= labels.len()) {
            return Err(invalid!("label {bad} is not one of the {} classes", labels.len()));
        }
        let (network, layers) = trainable_network(backbone, first, &device)?;
        // Step 1 is head-only training itself: the same features, settings, split and seed.
        let head_config = TrainConfig { flip_augment: false, ..config.clone() };
        let data = HeadData {
            train: train.features.clone(),
            val: val.features.clone(),
            val_names: val.names.clone(),
            labels: labels.clone(),
        };
        let fit = HeadFit::new(data, &head_config, &device)?;
        Ok(Self {
            backbone: backbone.clone(),
            network,
            depth,
            first,
            layers,
            class_weights: class_weights(train_labels, labels.len(), config.class_balanced),
            rng: Rng::new(config.seed),
            train,
            val,
            labels,
            config: config.clone(),
            phase: Phase::Head(Box::new(fit)),
            history: Vec::new(),
            best: None,
            head_validation: None,
            stop: None,
        })
    }

    /// Pooled features of `rows`, through the trained part as it is now (no gradient).
    fn features(&self, activations: &Activations, rows: &[usize]) -> Result<Vec<f32>> {
        trained_features(&self.network, self.first, activations, rows, self.backbone.device())
    }

    /// Runs the next step: its numbers, or `None` once the run has stopped.
    pub fn next_epoch(&mut self) -> Result<Option<&EpochStats>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        if let Phase::Head(fit) = &mut self.phase {
            if let Some(stats) = fit.next_epoch()? {
                self.history.push(stats.clone());
                return Ok(self.history.last());
            }
            self.start_layers()?;
            if self.config.layer_epochs == 0 {
                self.stop = Some(Stop::Completed);
                return Ok(None);
            }
        }
        let stats = self.layer_epoch()?;
        Ok(stats.map(|_| self.history.last().expect("just pushed")))
    }

    /// The head fit is done: its best step is the first candidate, and the layers start training.
    fn start_layers(&mut self) -> Result<()> {
        let Phase::Head(fit) = std::mem::replace(&mut self.phase, Phase::Done) else { unreachable!() };
        let fitted = fit.finish()?;
        self.head_validation = fitted.validation;
        let head = fitted.trained.head;
        // The head fit's own history stands; its kept step is the one to beat.
        let kept = &self.history[fitted.trained.best_epoch - 1];
        let (accuracy, loss) = (kept.val_accuracy.unwrap_or(0.0), kept.val_loss.unwrap_or(f32::INFINITY));
        self.best = Some((accuracy, loss, fitted.trained.best_epoch, self.snapshot(&head)?));
        let optimizers = Optimizers::new(self.layers.clone(), &head, self.config.weight_decay)?;
        self.phase = Phase::Layers {
            head,
            optimizers: Box::new(optimizers),
            epoch: 0,
            started: self.history.len(),
            lowest_loss: (loss, self.history.len()),
        };
        Ok(())
    }

    fn layer_epoch(&mut self) -> Result<Option<()>> {
        let Phase::Layers { head, optimizers, epoch, .. } = &mut self.phase else {
            return Ok(None);
        };
        if *epoch >= self.config.layer_epochs {
            self.stop = Some(Stop::Completed);
            return Ok(None);
        }
        *epoch += 1;
        let device = self.backbone.device().clone();
        let config = &self.config;
        let step = LayerStep {
            network: &self.network,
            first: self.first,
            head,
            class_weights: &self.class_weights,
            // The loss the head was fitted with: L-BFGS's is unsmoothed.
            smoothing: if config.solver == Solver::Lbfgs { 0.0 } else { config.label_smoothing },
            dropout: config.dropout,
            learning_rate: config.learning_rate,
        };
        let mut order: Vec<usize> = (0..self.train.views.len()).collect();
        self.rng.shuffle(&mut order);
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for batch in order.chunks(config.batch_size) {
            let rows: Vec<usize> = batch
                .iter()
                .map(|&i| {
                    let views = &self.train.views[i];
                    views[self.rng.below(views.len())]
                })
                .collect();
            let labels: Vec<u32> = batch.iter().map(|&i| self.train.features.labels[i]).collect();
            let (logits, loss_value) =
                step.run(&self.train.activations, &rows, &labels, &device, &mut self.rng, optimizers)?;
            if !loss_value.is_finite() {
                self.stop = Some(Stop::Diverged { epoch: self.history.len() + 1 });
                return Ok(None);
            }
            loss_sum += loss_value as f64 * batch.len() as f64;
            correct += count_correct(&logits, &labels)?;
        }
        let n = order.len() as f32;
        let mut stats = EpochStats::train_only(self.history.len() + 1, loss_sum as f32 / n, correct as f32 / n, None);
        let Phase::Layers { head, lowest_loss, .. } = &self.phase else { unreachable!("training the layers") };
        let mut lowest_loss = *lowest_loss;
        if !self.val.names.is_empty() {
            let (loss, accuracy) = self.validation_loss(head)?;
            stats.val_loss = Some(loss);
            stats.val_accuracy = Some(accuracy);
            let step = stats.epoch;
            let better = match &self.best {
                Some((best_accuracy, best_loss, ..)) => {
                    accuracy > *best_accuracy || (accuracy == *best_accuracy && loss < *best_loss)
                }
                None => true,
            };
            if better {
                self.best = Some((accuracy, loss, step, self.snapshot(head)?));
            }
            // Early stopping: no lower validation loss for LAYER_PATIENCE of the layers' epochs
            // (accuracy on a few dozen images moves in steps; the loss tells whether they still learn).
            if loss < lowest_loss.0 {
                lowest_loss = (loss, step);
            }
            if step - lowest_loss.1 >= LAYER_PATIENCE {
                self.stop = Some(Stop::EarlyStopped);
            }
        } else {
            let step = stats.epoch;
            self.best = Some((0.0, 0.0, step, self.snapshot(head)?));
        }
        if let Phase::Layers { lowest_loss: kept, .. } = &mut self.phase {
            *kept = lowest_loss;
        }
        self.history.push(stats);
        Ok(Some(()))
    }

    fn validation_loss(&self, head: &Head) -> Result<(f32, f32)> {
        let rows: Vec<usize> = (0..self.val.names.len()).collect();
        let features = self.features(&self.val.activations, &rows)?;
        let x = Tensor::from_vec(features, (rows.len(), self.backbone.feature_dim()), self.backbone.device())?;
        let logits = head.logits(&x, None)?;
        // Unsmoothed, as the head fit's steps measure it, so that the two phases' steps compare.
        let labels = &self.val.features.labels;
        let loss = cross_entropy(&logits, labels, &self.class_weights, 0.0)?;
        let accuracy = count_correct(&logits, labels)? as f32 / rows.len() as f32;
        Ok((loss.to_scalar::<f32>()?, accuracy))
    }

    fn snapshot(&self, head: &Head) -> Result<Snapshot> {
        let copy = |vars: Vec<Var>| -> Result<Vec<Tensor>> {
            Ok(vars.iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?)
        };
        Ok(Snapshot {
            layers: copy(self.layers.iter().map(|(_, v)| v.clone()).collect())?,
            head: copy(head.named_vars().into_iter().map(|(_, v)| v).collect())?,
        })
    }

    /// Stops after the current step; the best weights so far are kept.
    pub fn cancel(&mut self) {
        self.stop.get_or_insert(Stop::Cancelled);
    }

    /// The best step's weights as a backbone file and a `.wick` trained on it (`unix_seconds`: when).
    pub fn finish(mut self, unix_seconds: u64) -> Result<FittedTail> {
        if matches!(self.phase, Phase::Head(_)) {
            // Cancelled, or stopped, before the layers trained: the head fit's best is the result.
            self.start_layers()?;
        }
        let (head, head_steps) = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Layers { head, started, .. } => (head, started),
            Phase::Head(_) | Phase::Done => unreachable!("the layers started"),
        };
        let (_, _, best_step, snapshot) = self.best.take().ok_or_else(|| invalid!("nothing was trained"))?;
        for ((_, var), saved) in self.layers.iter().zip(&snapshot.layers) {
            var.set(saved)?;
        }
        for ((_, var), saved) in head.named_vars().iter().zip(&snapshot.head) {
            var.set(saved)?;
        }
        let validation = if self.val.names.is_empty() {
            None
        } else if best_step <= head_steps {
            self.head_validation.take()
        } else {
            let rows: Vec<usize> = (0..self.val.names.len()).collect();
            let features = self.features(&self.val.activations, &rows)?;
            let x = Tensor::from_vec(features, (rows.len(), self.backbone.feature_dim()), self.backbone.device())?;
            let probabilities = head.probabilities(&x)?.to_vec2::<f32>()?;
            Some(Metrics::compute(&self.labels, &self.val.features.labels, &probabilities, &self.val.names))
        };
        let backbone_file = self.export(&head)?;
        let exported = Backbone::from_backbone_file(&backbone_file, self.backbone.device())?;
        let trained = Trained {
            head,
            history: std::mem::take(&mut self.history),
            best_epoch: best_step,
            stop: self.stop.take().unwrap_or(Stop::Completed),
        };
        let mut config = self.config.clone();
        config.train_layers = self.depth;
        let classifier = Classifier::from_training(
            trained,
            self.labels.clone(),
            &exported,
            config,
            validation.as_ref(),
            unix_seconds,
        );
        Ok(FittedTail { backbone_file, classifier, validation, train_images: self.train.views.len(), head_steps })
    }

    /// The backbone with the trained layers' weights, as a (quantized) backbone file; a linear head
    /// also becomes the file's own classifier, so the file alone classifies into the classes.
    fn export(&self, head: &Head) -> Result<Vec<u8>> {
        let mut weights = self.backbone.weights().clone();
        let as_entry = |var: &Var| -> Result<(Vec<usize>, Vec<f32>)> {
            Ok((var.dims().to_vec(), var.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        };
        for (name, var) in &self.layers {
            weights.0.insert(name.clone(), as_entry(var)?);
        }
        let mut meta: BackboneMeta = self.backbone.meta.clone();
        if head.spec.hidden.is_none() {
            let classifier = meta.config.classifier();
            let vars: HashMap<String, Var> = head.named_vars().into_iter().collect();
            for part in ["weight", "bias"] {
                weights.0.insert(format!("{classifier}.{part}"), as_entry(&vars[&format!("output.{part}")])?);
            }
            meta.config = meta.config.with_classes(self.labels.len());
            meta.labels = self.labels.clone();
        }
        meta.source = Source {
            package: format!(
                "fine-tuned by wick {} (its last {} part(s) trained, from block {})",
                env!("CARGO_PKG_VERSION"),
                self.depth,
                self.first
            ),
            file: "the backbone file with this sha256".into(),
            sha256: self.backbone.sha256.clone(),
            license: format!(
                "{} (derived from {})",
                self.backbone.meta.source.license, self.backbone.meta.source.package
            ),
        };
        meta.quantization = QUANTIZATION.into();
        backbone_file::write(&weights, &meta)
    }
}

/// The folded network with every weight a variable, its 1×1 convolutions' forward products as
/// `backbone`'s inference multiplies (int8 unless set to f32), and the variables trained from block
/// `first` on (only they get gradients: the graph starts at that block's input).
fn trainable_network(backbone: &Backbone, first: usize, device: &Device) -> Result<(Network, Vec<(String, Var)>)> {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("variable map lock");
        for (name, (shape, values)) in &backbone.weights().0 {
            let tensor = Tensor::from_slice(values, shape.as_slice(), device)?;
            data.insert(name.clone(), Var::from_tensor(&tensor)?);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let network = Network::folded(&backbone.meta.config, backbone.precision(), vb)?;
    let all = varmap.data().lock().expect("variable map lock");
    let mut trained = Vec::new();
    for conv in backbone.meta.config.trained_convs(first) {
        for part in ["weight", "bias"] {
            let name = format!("{conv}.{part}");
            let var = all.get(&name).ok_or_else(|| invalid!("the backbone has no `{name}`"))?;
            trained.push((name, var.clone()));
        }
    }
    Ok((network, trained))
}

/// The pooled features of `rows` of `activations` through `network` from block `first` on,
/// [`EVAL_BATCH`] rows at a time, without a gradient: what each layer epoch's validation runs and
/// what [`layer_cost`] times for it.
fn trained_features(
    network: &Network,
    first: usize,
    activations: &Activations,
    rows: &[usize],
    device: &Device,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for batch in rows.chunks(EVAL_BATCH) {
        let x = activations.batch(batch, device)?;
        let features = network.last_layers(&x, first, false)?.detach();
        out.extend(features.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// The trained layers' and the head's AdamW, which each layer step updates.
struct Optimizers {
    layers: Optimizer,
    head: Optimizer,
}

impl Optimizers {
    fn new(layers: Vec<(String, Var)>, head: &Head, weight_decay: f64) -> Result<Self> {
        Ok(Self {
            layers: Optimizer::new(OptimizerKind::AdamW, 0.0, weight_decay, layers)?,
            head: Optimizer::new(OptimizerKind::AdamW, 0.0, weight_decay, head.named_vars())?,
        })
    }
}

/// One training step of the layers' epochs, as configured: what [`LayerFit`] runs on each batch and
/// [`layer_cost`] times.
struct LayerStep<'a> {
    network: &'a Network,
    first: usize,
    head: &'a Head,
    class_weights: &'a [f32],
    smoothing: f32,
    dropout: f32,
    learning_rate: f64,
}

impl LayerStep<'_> {
    /// The batch of `rows` of `activations` (`labels`) through the trained part and the head (its
    /// dropout drawn from `rng`), the loss, and — where the loss is finite — the backward pass and
    /// both updates, on a pool thread: the logits and the loss.
    fn run(
        &self,
        activations: &Activations,
        rows: &[usize],
        labels: &[u32],
        device: &Device,
        rng: &mut Rng,
        optimizers: &mut Optimizers,
    ) -> Result<(Tensor, f32)> {
        let x = activations.batch(rows, device)?;
        on_pool(|| {
            let features = self.network.last_layers(&x, self.first, false)?;
            let logits = self.head.logits(&features, Some((self.dropout, rng)))?;
            let loss = cross_entropy(&logits, labels, self.class_weights, self.smoothing)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if loss_value.is_finite() {
                let grads = loss.backward()?;
                optimizers.layers.step(&grads, self.learning_rate * LAYER_LEARNING_RATE_SHARE)?;
                optimizers.head.step(&grads, self.learning_rate * HEAD_LEARNING_RATE_SHARE)?;
            }
            Ok((logits, loss_value))
        })
    }
}

/// What training the last `depth` parts costs on this device, measured on random images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerCost {
    /// The frozen part, per image view (computed once, then cached).
    pub prepare_ms_per_view: f64,
    /// A layer epoch's training step (the kept rows gathered, forward and backward through the
    /// trained part and a linear head, both AdamW updates), per image.
    pub step_ms_per_image: f64,
    /// The trained part's forward pass alone, per image: each epoch's validation images.
    pub forward_ms_per_image: f64,
    /// One cached view's activation (f16).
    pub bytes_per_view: usize,
    pub first_trained_block: usize,
}

/// Times [`LayerCost`]'s parts: `batch` random images through the frozen part, then training steps
/// and forward passes of `batch` through the rest ([`median_ms`]), by the clock `now_ms`. Measure at
/// the batch size training will use: the int8 forward pass quantizes each trained weight once per
/// batch, which a batch of 4 spends more on than on its products.
pub fn layer_cost(backbone: &Backbone, depth: usize, batch: usize, now_ms: impl Fn() -> f64) -> Result<LayerCost> {
    if batch == 0 {
        return Err(invalid!("measuring a training step needs a batch of at least 1 image"));
    }
    let device = backbone.device();
    let first = backbone.meta.config.first_trained_block(depth)?;
    let crop = backbone.meta.preprocess.crop as usize;
    let images = Tensor::randn(0f32, 1f32, (batch, 3, crop, crop), device)?;
    backbone.activations(&images.narrow(0, 0, 1)?, first)?; // builds the inference path
    let start = now_ms();
    let x = backbone.activations(&images, first)?;
    let prepare_ms_per_view = (now_ms() - start) / batch as f64;
    // The step a layer epoch runs, on a copy of the network: the kept (f16) rows gathered, forward,
    // backward and both optimizers' updates (leaving those out measured 24% under the tab's depth-2
    // epochs on 2026-12-08).
    let mut kept = Activations::new(x.dims()[1..].try_into().map_err(|_| invalid!("activations are C × H × W"))?);
    kept.push(&x)?;
    let rows: Vec<usize> = (0..batch).collect();
    let (network, layers) = trainable_network(backbone, first, device)?;
    let spec = crate::train::config::HeadSpec { input_dim: backbone.feature_dim(), hidden: None, classes: 2 };
    let mut rng = Rng::new(0);
    let head = Head::init(spec, &mut rng, device)?;
    let config = TrainConfig::default();
    let mut optimizers = Optimizers::new(layers, &head, config.weight_decay)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 2).collect();
    let step = LayerStep {
        network: &network,
        first,
        head: &head,
        class_weights: &[1.0, 1.0],
        smoothing: 0.0,
        dropout: config.dropout,
        learning_rate: config.learning_rate,
    };
    let step_ms = median_ms(&now_ms, || step.run(&kept, &rows, &labels, device, &mut rng, &mut optimizers).map(drop))?;
    let forward_ms = median_ms(&now_ms, || trained_features(&network, first, &kept, &rows, device).map(drop))?;
    Ok(LayerCost {
        prepare_ms_per_view,
        step_ms_per_image: step_ms / batch as f64,
        forward_ms_per_image: forward_ms / batch as f64,
        bytes_per_view: kept.row_bytes(),
        first_trained_block: first,
    })
}

/// The median time of `run` by the clock `now_ms`, after one untimed run (the first builds what
/// later ones reuse): at least 3 timed runs, more up to 9 while they have taken under 300 ms in all.
/// The median, because the page measures while the browser may still be saving the last run: two
/// timed steps' mean put a depth-1 estimate 29% over the epochs that followed (2026-12-08, tab).
fn median_ms(now_ms: impl Fn() -> f64, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    const RUNS: usize = 3;
    const MORE_RUNS: usize = 9;
    const MORE_WHILE_UNDER_MS: f64 = 300.0;
    run()?;
    let mut times: Vec<f64> = Vec::with_capacity(MORE_RUNS); // kept sorted
    while times.len() < RUNS || (times.len() < MORE_RUNS && times.iter().sum::<f64>() < MORE_WHILE_UNDER_MS) {
        let start = now_ms();
        run()?;
        let ms = now_ms() - start;
        // Inserted in order rather than sorted: a sort of f64s added 1.0 KB (gzipped) to the page's wasm.
        times.insert(times.partition_point(|&t| t < ms), ms);
    }
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `median_ms` on a clock that each run moves on by the next of `durations`: the median and
    /// how many runs it made (the untimed first one included).
    fn timed(durations: &[f64]) -> (f64, usize) {
        let clock = std::cell::Cell::new(0.0);
        let runs = std::cell::Cell::new(0);
        let median = median_ms(
            || clock.get(),
            || {
                clock.set(clock.get() + durations[runs.get()]);
                runs.set(runs.get() + 1);
                Ok(())
            },
        )
        .unwrap();
        (median, runs.get())
    }

    #[test]
    fn the_median_time_leaves_out_the_first_run_and_a_stall() {
        // A slow first run and one stalled run: neither is the answer; three runs took 300 ms.
        assert_eq!(timed(&[1000.0, 10.0, 500.0, 12.0, 99.0]), (12.0, 4));
        // Quick runs: up to 9 timed while they have taken under 300 ms in all.
        assert_eq!(timed(&[5.0; 12]), (5.0, 10));
        assert_eq!(timed(&[0.0, 100.0, 100.0, 90.0, 20.0, 99.0]), (100.0, 5));
        // A failing run's error comes back.
        assert!(median_ms(|| 0.0, || Err(invalid!("no"))).is_err());
    }

    /// Three samples of 3, 1 and 2 rows; each row's values are its index.
    fn samples() -> SampleRows {
        let mut activations = Activations::new([1, 1, 2]);
        let rows: Vec<f32> = (0..6).flat_map(|r| [r as f32, r as f32]).collect();
        activations.push(&Tensor::from_vec(rows, (6, 1, 1, 2), &Device::Cpu).unwrap()).unwrap();
        let features = FeatureSet::from_rows(vec![0.0, 1.0, 2.0], vec![0, 1, 0]).unwrap();
        SampleRows::new(activations, vec![3, 1, 2], features, vec!["a".into(), "b".into(), "c".into()]).unwrap()
    }

    fn firsts(a: &Activations) -> Vec<f32> {
        let batch = a.batch(&(0..a.len()).collect::<Vec<_>>(), &Device::Cpu).unwrap();
        batch.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().step_by(2).collect()
    }

    #[test]
    fn training_samples_bring_every_view_and_validation_samples_their_plain_one() {
        let (train, val) = samples().split(&[0, 2], &[1]);
        assert_eq!(firsts(&train.activations), [0.0, 1.0, 2.0, 4.0, 5.0]);
        assert_eq!(train.views, [vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(train.features.labels, [0, 0]);
        assert_eq!(firsts(&val.activations), [3.0]);
        assert_eq!((val.names, val.features.labels), (vec!["b".to_string()], vec![1]));
        let (train, val) = samples().split(&[0, 1, 2], &[]);
        assert_eq!((train.activations.len(), val.activations.len()), (6, 0));
    }

    #[test]
    fn counts_that_do_not_cover_the_rows_are_refused() {
        let SampleRows { activations, features, names, .. } = samples();
        for (counts, why) in
            [(vec![3, 1, 1], "the samples list 5"), (vec![3, 0, 3], "at least one"), (vec![6], "3 rows")]
        {
            let err = SampleRows::new(activations.select(&[0, 1, 2, 3, 4, 5]), counts, features.clone(), names.clone())
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
