//! The classification head trained on backbone features, and its training loop.
//!
//! The head is a linear layer (the default), or one hidden ReLU layer with dropout and then a linear
//! layer. Training is softmax cross-entropy (optionally label-smoothed and class-balanced) with AdamW
//! on shuffled mini-batches, with early stopping on the validation loss. Every random choice (weight
//! init, shuffling, dropout) comes from one seeded [`Rng`], so a seed gives bit-identical weights.

use std::collections::HashMap;
use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::ops::{log_softmax, softmax_last_dim};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::util::rng::Rng;

/// The head's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSpec {
    pub input_dim: usize,
    /// Units in the hidden layer; `None` for a linear head.
    pub hidden: Option<usize>,
    pub classes: usize,
}

/// Hyper-parameters of one training run (stored in the `.wick` classifier with the weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Units of the hidden layer; `None` trains a linear head.
    pub hidden: Option<usize>,
    /// Dropout before the output layer (hidden-layer heads only).
    pub dropout: f32,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Share of the target probability spread evenly over all classes.
    pub label_smoothing: f32,
    /// Stop after this many epochs without a lower validation loss (0: never stop early).
    pub patience: usize,
    /// Weigh each class's loss by `n / (classes · n_class)`, so rare classes count as much as common ones.
    pub class_balanced: bool,
    /// Add the features of each training image's mirror image to the training set.
    pub flip_augment: bool,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            hidden: None,
            dropout: 0.2,
            epochs: 100,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            label_smoothing: 0.1,
            patience: 10,
            class_balanced: true,
            flip_augment: false,
            seed: 0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(invalid!("bad training setting: {what}"));
        if self.epochs == 0 {
            return bad("epochs must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning rate must be a positive number");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight decay must be 0 or more");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label smoothing must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout must be in [0, 1)");
        }
        if self.hidden == Some(0) {
            return bad("a hidden layer needs at least 1 unit");
        }
        Ok(())
    }
}

/// Features (row-major, `len × dim`) with their class indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureSet {
    pub dim: usize,
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
}

impl FeatureSet {
    pub fn new(dim: usize) -> Self {
        Self { dim, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn push(&mut self, features: &[f32], label: u32) {
        assert_eq!(features.len(), self.dim, "feature length");
        self.features.extend_from_slice(features);
        self.labels.push(label);
    }

    pub fn tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.features, (self.len(), self.dim), device)?)
    }
}

pub struct Head {
    pub spec: HeadSpec,
    hidden: Option<(Var, Var)>,
    output: (Var, Var),
}

impl Head {
    /// PyTorch's `nn.Linear` initialisation: weights and biases uniform in ±1/√fan_in.
    pub fn init(spec: HeadSpec, rng: &mut Rng, device: &Device) -> Result<Self> {
        let mut linear = |fan_in: usize, fan_out: usize| -> Result<(Var, Var)> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut uniform = |n| (0..n).map(|_| (2.0 * rng.uniform() - 1.0) * bound).collect::<Vec<f32>>();
            let weight = Tensor::from_vec(uniform(fan_in * fan_out), (fan_out, fan_in), device)?;
            let bias = Tensor::from_vec(uniform(fan_out), fan_out, device)?;
            Ok((Var::from_tensor(&weight)?, Var::from_tensor(&bias)?))
        };
        let hidden = spec.hidden.map(|units| linear(spec.input_dim, units)).transpose()?;
        let output = linear(spec.hidden.unwrap_or(spec.input_dim), spec.classes)?;
        Ok(Self { spec, hidden, output })
    }

    /// The weights by name: `hidden.weight`, `hidden.bias` (hidden-layer heads), `output.weight`, `output.bias`.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.named_vars().into_iter().map(|(name, var)| (name, var.as_tensor().clone())).collect()
    }

    /// The trainable variables, named as in [`Head::tensors`].
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut layers = Vec::new();
        if let Some(hidden) = &self.hidden {
            layers.push(("hidden", hidden));
        }
        layers.push(("output", &self.output));
        layers
            .into_iter()
            .flat_map(|(name, (w, b))| [(format!("{name}.weight"), w.clone()), (format!("{name}.bias"), b.clone())])
            .collect()
    }

    /// Rebuilds a head from [`Head::tensors`]' output, checking every shape against `spec`.
    pub fn from_tensors(spec: HeadSpec, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let get = |name: &str, shape: &[usize]| -> Result<Var> {
            let t = tensors.get(name).ok_or_else(|| invalid!("the head has no `{name}` weights"))?;
            if t.dims() != shape {
                return Err(invalid!("the head's `{name}` has shape {:?}, expected {shape:?}", t.dims()));
            }
            Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
        };
        let layer = |name: &str, fan_in: usize, fan_out: usize| -> Result<(Var, Var)> {
            Ok((get(&format!("{name}.weight"), &[fan_out, fan_in])?, get(&format!("{name}.bias"), &[fan_out])?))
        };
        let hidden = spec.hidden.map(|units| layer("hidden", spec.input_dim, units)).transpose()?;
        let output = layer("output", spec.hidden.unwrap_or(spec.input_dim), spec.classes)?;
        Ok(Self { spec, hidden, output })
    }

    fn vars(&self) -> Vec<Var> {
        self.named_vars().into_iter().map(|(_, var)| var).collect()
    }

    /// Features (N, input_dim) → logits (N, classes). With `dropout`, zeroes hidden units at that rate
    /// (and scales the rest up), drawing the mask from the run's seeded generator.
    pub fn logits(&self, features: &Tensor, dropout: Option<(f32, &mut Rng)>) -> Result<Tensor> {
        let linear = |x: &Tensor, (w, b): &(Var, Var)| x.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor());
        let mut x = features.clone();
        if let Some(layer) = &self.hidden {
            x = linear(&x, layer)?.relu()?;
            if let Some((rate, rng)) = dropout.filter(|(rate, _)| *rate > 0.0) {
                let keep = 1.0 / (1.0 - rate);
                let mask: Vec<f32> =
                    (0..x.elem_count()).map(|_| if rng.uniform() < rate { 0.0 } else { keep }).collect();
                let mask = Tensor::from_vec(mask, x.dims(), x.device())?;
                x = (x * mask)?;
            }
        }
        Ok(linear(&x, &self.output)?)
    }

    pub fn probabilities(&self, features: &Tensor) -> Result<Tensor> {
        Ok(softmax_last_dim(&self.logits(features, None)?)?)
    }

    /// How well this head classifies `set` (its rows named by `names`) into `labels`: what `wick
    /// train`, `wick cifar10` and the web app report after training.
    pub fn evaluate(&self, set: &FeatureSet, labels: &[String], names: &[String], device: &Device) -> Result<Metrics> {
        let probabilities = self.probabilities(&set.tensor(device)?)?.to_vec2::<f32>()?;
        Ok(Metrics::compute(labels, &set.labels, &probabilities, names))
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(self.vars().iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?)
    }

    fn restore(&self, snapshot: &[Tensor]) -> Result<()> {
        for (var, saved) in self.vars().iter().zip(snapshot) {
            var.set(saved)?;
        }
        Ok(())
    }
}

/// One epoch's numbers, reported as training goes (for progress bars and live charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout, smoothing and class weights).
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
}

/// Why training ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stop {
    /// All epochs ran.
    Completed,
    /// The validation loss stopped improving.
    EarlyStopped,
    /// The caller asked to stop (a Cancel button).
    Cancelled,
    /// The loss became NaN or infinite in this epoch; the weights are those of the last good epoch.
    Diverged { epoch: usize },
}

impl Stop {
    /// Why training ended, in words (the CLI's report and the web app's status say the same).
    pub fn describe(&self) -> String {
        match self {
            Self::Completed => "all epochs ran".into(),
            Self::EarlyStopped => "stopped early: the validation loss stopped improving".into(),
            Self::Cancelled => "cancelled".into(),
            Self::Diverged { epoch } => {
                format!("stopped in epoch {epoch}: the loss became NaN or infinite (try a lower learning rate)")
            }
        }
    }
}

pub struct Trained {
    pub head: Head,
    pub history: Vec<EpochStats>,
    /// The epoch whose weights the head has: the lowest validation loss, or the last good epoch.
    pub best_epoch: usize,
    pub stop: Stop,
}

/// Trains a new head. `on_epoch` sees each epoch's numbers and may stop training with `Break`
/// (the head then keeps the best weights so far).
pub fn train(
    train_set: &FeatureSet,
    val_set: Option<&FeatureSet>,
    classes: usize,
    config: &TrainConfig,
    device: &Device,
    mut on_epoch: impl FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<Trained> {
    let mut trainer = Trainer::new(train_set, val_set, classes, config, device)?;
    while let Some(stats) = trainer.next_epoch()? {
        if on_epoch(stats).is_break() {
            trainer.cancel();
        }
    }
    trainer.finish()
}

/// Training one epoch at a time, for callers that must get control back between epochs (the web
/// app's worker answers a Cancel button there). [`train`] is the whole loop.
pub struct Trainer {
    config: TrainConfig,
    head: Head,
    optimizer: AdamW,
    rng: Rng,
    class_weights: Vec<f32>,
    train_x: Tensor,
    train_labels: Vec<u32>,
    val: Option<(Tensor, Vec<u32>)>,
    order: Vec<u32>,
    history: Vec<EpochStats>,
    /// (validation loss, epoch, weights) of the best epoch so far.
    best: (f32, usize, Vec<Tensor>),
    /// (epoch, weights) of the last epoch whose losses were all finite.
    last_good: (usize, Vec<Tensor>),
    stop: Option<Stop>,
}

impl Trainer {
    pub fn new(
        train_set: &FeatureSet,
        val_set: Option<&FeatureSet>,
        classes: usize,
        config: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        check_features("training", train_set, classes)?;
        let val_set = val_set.filter(|v| !v.is_empty());
        if let Some(v) = val_set {
            check_features("validation", v, classes)?;
        }
        let mut rng = Rng::new(config.seed);
        let spec = HeadSpec { input_dim: train_set.dim, hidden: config.hidden, classes };
        let head = Head::init(spec, &mut rng, device)?;
        let params = ParamsAdamW { lr: config.learning_rate, weight_decay: config.weight_decay, ..Default::default() };
        let optimizer = AdamW::new(head.vars(), params)?;
        let snapshot = head.snapshot()?;
        Ok(Self {
            config: config.clone(),
            optimizer,
            rng,
            class_weights: class_weights(&train_set.labels, classes, config.class_balanced),
            train_x: train_set.tensor(device)?,
            train_labels: train_set.labels.clone(),
            val: val_set.map(|v| Ok::<_, crate::Error>((v.tensor(device)?, v.labels.clone()))).transpose()?,
            order: (0..train_set.len() as u32).collect(),
            history: Vec::new(),
            best: (f32::INFINITY, 0, snapshot.clone()),
            last_good: (0, snapshot),
            stop: None,
            head,
        })
    }

    /// Runs the next epoch and returns its numbers, or `None` once training has stopped.
    pub fn next_epoch(&mut self) -> Result<Option<&EpochStats>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let epoch = self.history.len() + 1;
        if epoch > self.config.epochs {
            self.stop = Some(Stop::Completed);
            return Ok(None);
        }
        let (config, device) = (&self.config, self.train_x.device().clone());
        self.rng.shuffle(&mut self.order);
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for batch in self.order.chunks(config.batch_size) {
            let labels: Vec<u32> = batch.iter().map(|&i| self.train_labels[i as usize]).collect();
            let x = self.train_x.index_select(&Tensor::new(batch, &device)?, 0)?;
            let logits = self.head.logits(&x, Some((config.dropout, &mut self.rng)))?;
            let loss = cross_entropy(&logits, &labels, &self.class_weights, config.label_smoothing)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                self.stop = Some(Stop::Diverged { epoch });
                return Ok(None);
            }
            self.optimizer.backward_step(&loss)?;
            loss_sum += loss_value as f64 * batch.len() as f64;
            correct += count_correct(&logits, &labels)?;
        }
        self.last_good = (epoch, self.head.snapshot()?);

        let mut stats = EpochStats {
            epoch,
            train_loss: (loss_sum / self.order.len() as f64) as f32,
            train_accuracy: correct as f32 / self.order.len() as f32,
            val_loss: None,
            val_accuracy: None,
        };
        if let Some((val_x, val_labels)) = &self.val {
            let logits = self.head.logits(val_x, None)?;
            let val_loss: f32 =
                cross_entropy(&logits, val_labels, &self.class_weights, config.label_smoothing)?.to_scalar()?;
            stats.val_loss = Some(val_loss);
            stats.val_accuracy = Some(count_correct(&logits, val_labels)? as f32 / val_labels.len() as f32);
            if val_loss < self.best.0 {
                self.best = (val_loss, epoch, self.last_good.1.clone());
            }
            // Early stopping: no lower validation loss for `patience` epochs.
            if config.patience > 0 && epoch - self.best.1 >= config.patience {
                self.stop = Some(Stop::EarlyStopped);
            }
        }
        self.history.push(stats);
        Ok(self.history.last())
    }

    /// Stops after the current epoch (a Cancel button); the best weights so far are kept.
    pub fn cancel(&mut self) {
        self.stop.get_or_insert(Stop::Cancelled);
    }

    /// The head with the best epoch's weights: the lowest validation loss, or without validation
    /// data the last good epoch.
    pub fn finish(mut self) -> Result<Trained> {
        if self.last_good.0 == 0 {
            return Err(invalid!(
                "training diverged in the first epoch (the loss became NaN or infinite); try a lower learning rate"
            ));
        }
        let (best_epoch, weights) = if self.best.1 > 0 { (self.best.1, self.best.2) } else { self.last_good };
        self.head.restore(&weights)?;
        Ok(Trained {
            head: self.head,
            history: self.history,
            best_epoch,
            stop: self.stop.take().unwrap_or(Stop::Completed),
        })
    }
}

/// The head-training benchmark behind `wick bench --head-data` and the web build's `bench_head`: a
/// linear head on `set` (classes = largest label + 1), `epochs` epochs of `batch_size`, no early
/// stopping or label smoothing. Returns the fastest of `iters` runs after a warm-up, in milliseconds
/// by the clock `now_ms`, and the last epoch's training accuracy.
pub fn time_training(
    set: &FeatureSet,
    epochs: usize,
    batch_size: usize,
    iters: usize,
    now_ms: impl Fn() -> f64,
) -> Result<(f64, f32)> {
    let classes = set.labels.iter().max().map_or(1, |&l| l as usize + 1);
    let config = TrainConfig { epochs, batch_size, patience: 0, label_smoothing: 0.0, ..TrainConfig::default() };
    let run = || train(set, None, classes, &config, &Device::Cpu, |_| ControlFlow::Continue(()));
    run()?; // warm-up
    let (mut best, mut accuracy) = (f64::INFINITY, 0.0);
    for _ in 0..iters.max(1) {
        let start = now_ms();
        let trained = run()?;
        best = best.min(now_ms() - start);
        accuracy = trained.history.last().map_or(0.0, |h| h.train_accuracy);
    }
    Ok((best, accuracy))
}

fn check_features(which: &str, set: &FeatureSet, classes: usize) -> Result<()> {
    if set.is_empty() {
        return Err(invalid!("the {which} set is empty"));
    }
    if set.features.len() != set.len() * set.dim {
        return Err(invalid!(
            "the {which} set has {} values for {} rows of {}",
            set.features.len(),
            set.len(),
            set.dim
        ));
    }
    if let Some(&label) = set.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(invalid!("the {which} set has class index {label}, but there are only {classes} classes"));
    }
    if set.features.iter().any(|v| !v.is_finite()) {
        return Err(invalid!("the {which} features contain NaN or infinite values"));
    }
    Ok(())
}

/// `n / (classes · n_c)` per class (classes absent from `labels` get 0), or all ones.
pub fn class_weights(labels: &[u32], classes: usize, balanced: bool) -> Vec<f32> {
    if !balanced {
        return vec![1.0; classes];
    }
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts.iter().map(|&c| if c == 0 { 0.0 } else { labels.len() as f32 / (classes * c) as f32 }).collect()
}

/// Weighted, label-smoothed softmax cross-entropy, averaged like PyTorch's `CrossEntropyLoss(weight=…)`:
/// `Σ_i w_{y_i} · CE_i / Σ_i w_{y_i}`, with the target `(1 − ε)·onehot + ε/classes`.
pub fn cross_entropy(logits: &Tensor, labels: &[u32], class_weights: &[f32], smoothing: f32) -> Result<Tensor> {
    let classes = class_weights.len();
    let mut targets = vec![0f32; labels.len() * classes];
    let mut weight_sum = 0f32;
    for (row, &label) in targets.chunks_mut(classes).zip(labels) {
        let w = class_weights[label as usize];
        row.iter_mut().for_each(|t| *t = w * smoothing / classes as f32);
        row[label as usize] += w * (1.0 - smoothing);
        weight_sum += w;
    }
    let targets = Tensor::from_vec(targets, (labels.len(), classes), logits.device())?;
    let log_probs = log_softmax(logits, D::Minus1)?;
    Ok(((targets * log_probs)?.sum_all()? / (-weight_sum as f64))?)
}

pub fn count_correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count())
}
