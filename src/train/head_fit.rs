//! Fitting a head to a project's features and measuring it on the held-out images: the one API
//! behind `wick train`, `wick cifar10 --mode probe`, the label check's folds, the first step of
//! training the last layers and the page's Train button.
//!
//! Two solvers:
//! - **L-BFGS** (linear heads, the default): full-batch, L2-regularised logistic regression, solved
//!   along a path of regularisation strengths from strong to weak, each warm-started from the last;
//!   the strength with the lowest validation loss is kept. This is the well-tuned logistic regression
//!   of the linear-probe literature, with the tuning built in.
//! - **AdamW** (hidden-layer heads, and on request linear ones): label-smoothed loss on shuffled
//!   mini-batches, early stopping on the validation loss.
//!
//! Every random choice (weight init, shuffling, dropout) comes from one seeded [`Rng`], so a seed
//! gives bit-identical weights.

use std::ops::ControlFlow;

use candle_core::{Device, Tensor};

use crate::data::feature_set::FeatureSet;
use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::model::head::{Head, Trained};
use crate::train::config::{HeadSpec, Solver, TrainConfig};
use crate::train::lbfgs::{self, Limits, LinearObjective};
use crate::train::loss::{class_weights, count_correct, cross_entropy};
use crate::train::optim::{Optimizer, OptimizerKind};
use crate::train::report::{EpochStats, Stop};
use crate::util::rng::Rng;

/// The L2 strengths (on the mean loss) the L-BFGS solver tries, strongest first, half a decade apart:
/// from 1 (the weights all but zero) to 1e-7 (all but unregularised at 45,000 samples).
/// scikit-learn's `C` is `1 / (λ · n)`.
pub fn regularization_path() -> Vec<f64> {
    (0..=14).map(|k| 10f64.powf(-(k as f64) / 2.0)).collect()
}

/// Path steps without a lower validation loss before the path stops (a decade of strengths).
const PATH_PATIENCE: usize = 2;
/// Per strength: L-BFGS iterations, and the largest gradient entry (of the mean loss) that counts as
/// converged: scikit-learn's defaults (`max_iter=100`, `tol=1e-4`).
const LBFGS_LIMITS: Limits = Limits { max_iterations: 100, tolerance: 1e-4 };

/// What a head is fitted to: the training rows, the held-out rows (may be empty) with their names
/// (file paths, or the page's sample indices: the metrics list misclassified images by them), and
/// the class names the rows' class indices point into.
#[derive(Debug, Clone, Default)]
pub struct HeadData {
    pub train: FeatureSet,
    pub val: FeatureSet,
    pub val_names: Vec<String>,
    pub labels: Vec<String>,
}

impl HeadData {
    /// Training rows alone (nothing held out).
    pub fn train_only(train: FeatureSet, labels: Vec<String>) -> Self {
        let val = FeatureSet::new(train.dim);
        Self { train, val, val_names: Vec::new(), labels }
    }
}

/// A fitted head and how it did on the held-out images.
pub struct FittedHead {
    pub trained: Trained,
    /// `None` without held-out images.
    pub validation: Option<Metrics>,
    /// Rows the head trained on (with mirrored views, two per image).
    pub train_rows: usize,
}

/// A fit, run whole ([`HeadFit::run`]) or one step at a time ([`HeadFit::next_epoch`]: an epoch of
/// mini-batches, or one strength of the L-BFGS path) by callers that must get control back in
/// between — the page's worker answers a Cancel button there.
pub struct HeadFit {
    config: TrainConfig,
    head: Head,
    solve: Solve,
    rng: Rng,
    class_weights: Vec<f32>,
    train_x: Tensor,
    /// The data, for the labels and for measuring the head at the end.
    data: HeadData,
    val_x: Option<Tensor>,
    device: Device,
    history: Vec<EpochStats>,
    /// (validation loss, epoch, weights) of the best epoch so far.
    best: (f32, usize, Vec<Tensor>),
    /// (epoch, weights) of the last epoch whose losses were all finite.
    last_good: (usize, Vec<Tensor>),
    stop: Option<Stop>,
}

enum Solve {
    MiniBatch { optimizer: Optimizer, order: Vec<u32> },
    Path { strengths: Vec<f64>, objective: LinearObjective },
}

impl HeadFit {
    pub fn new(data: HeadData, config: &TrainConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let classes = data.labels.len();
        check_features("training", &data.train, classes)?;
        let has_val = !data.val.is_empty();
        if has_val {
            check_features("validation", &data.val, classes)?;
        }
        if data.val_names.len() != data.val.len() {
            return Err(invalid!("{} names for {} validation rows", data.val_names.len(), data.val.len()));
        }
        let mut rng = Rng::new(config.seed);
        let spec = HeadSpec { input_dim: data.train.dim, hidden: config.hidden, classes };
        let head = Head::init(spec, &mut rng, device)?;
        let class_weights = class_weights(&data.train.labels, classes, config.class_balanced);
        let train_x = data.train.tensor(device)?;
        let solve = match config.solver {
            Solver::AdamW => Solve::MiniBatch {
                optimizer: Optimizer::new(OptimizerKind::AdamW, 0.0, config.weight_decay, head.named_vars())?,
                order: (0..data.train.len() as u32).collect(),
            },
            Solver::Lbfgs => Solve::Path {
                // Without validation images there is nothing to choose by: scikit-learn's default, C = 1.
                strengths: if has_val { regularization_path() } else { vec![1.0 / data.train.len() as f64] },
                objective: LinearObjective::new(&train_x, &data.train.labels, &class_weights)?,
            },
        };
        let snapshot = head.snapshot()?;
        Ok(Self {
            config: config.clone(),
            solve,
            rng,
            class_weights,
            train_x,
            val_x: if has_val { Some(data.val.tensor(device)?) } else { None },
            data,
            device: device.clone(),
            history: Vec::new(),
            best: (f32::INFINITY, 0, snapshot.clone()),
            last_good: (0, snapshot),
            stop: None,
            head,
        })
    }

    /// The whole fit; `on_epoch` sees each step's numbers and may stop it with `Break` (the head
    /// then keeps the best weights so far).
    pub fn run(mut self, mut on_epoch: impl FnMut(&EpochStats) -> ControlFlow<()>) -> Result<FittedHead> {
        while let Some(stats) = self.next_epoch()? {
            if on_epoch(stats).is_break() {
                self.cancel();
            }
        }
        self.finish()
    }

    /// Runs the next step and returns its numbers, or `None` once the fit has stopped.
    pub fn next_epoch(&mut self) -> Result<Option<&EpochStats>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let epoch = self.history.len() + 1;
        let stats = match self.solve {
            Solve::MiniBatch { .. } => self.adamw_epoch(epoch)?,
            Solve::Path { .. } => self.path_step(epoch)?,
        };
        let Some(mut stats) = stats else {
            self.stop.get_or_insert(Stop::Completed);
            return Ok(None);
        };
        self.last_good = (epoch, self.head.snapshot()?);
        if let Some(val_x) = &self.val_x {
            let (smoothing, patience) = match self.solve {
                Solve::MiniBatch { .. } => (self.config.label_smoothing, self.config.patience),
                Solve::Path { .. } => (0.0, PATH_PATIENCE),
            };
            let val_labels = &self.data.val.labels;
            let logits = self.head.logits(val_x, None)?;
            let val_loss: f32 = cross_entropy(&logits, val_labels, &self.class_weights, smoothing)?.to_scalar()?;
            stats.val_loss = Some(val_loss);
            stats.val_accuracy = Some(count_correct(&logits, val_labels)? as f32 / val_labels.len() as f32);
            if val_loss < self.best.0 {
                self.best = (val_loss, epoch, self.last_good.1.clone());
            }
            // Early stopping: no lower validation loss for `patience` epochs (path steps).
            if patience > 0 && epoch - self.best.1 >= patience {
                self.stop = Some(Stop::EarlyStopped);
            }
        }
        self.history.push(stats);
        Ok(self.history.last())
    }

    /// One epoch of shuffled mini-batches; `None` past the last epoch, or when the loss diverged.
    fn adamw_epoch(&mut self, epoch: usize) -> Result<Option<EpochStats>> {
        let Solve::MiniBatch { optimizer, order } = &mut self.solve else { unreachable!("an AdamW fit") };
        let config = &self.config;
        if epoch > config.epochs {
            return Ok(None);
        }
        let (labels, device) = (&self.data.train.labels, self.train_x.device());
        self.rng.shuffle(order);
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for batch in order.chunks(config.batch_size) {
            let batch_labels: Vec<u32> = batch.iter().map(|&i| labels[i as usize]).collect();
            let x = self.train_x.index_select(&Tensor::new(batch, device)?, 0)?;
            let logits = self.head.logits(&x, Some((config.dropout, &mut self.rng)))?;
            let loss = cross_entropy(&logits, &batch_labels, &self.class_weights, config.label_smoothing)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                self.stop = Some(Stop::Diverged { epoch });
                return Ok(None);
            }
            optimizer.step(&loss.backward()?, config.learning_rate)?;
            loss_sum += loss_value as f64 * batch.len() as f64;
            correct += count_correct(&logits, &batch_labels)?;
        }
        let n = order.len() as f32;
        Ok(Some(EpochStats::train_only(epoch, loss_sum as f32 / n, correct as f32 / n, None)))
    }

    /// The next strength of the L-BFGS path, warm-started from the last; `None` past the last one.
    fn path_step(&mut self, epoch: usize) -> Result<Option<EpochStats>> {
        let Solve::Path { strengths, objective } = &self.solve else { unreachable!("an L-BFGS fit") };
        let Some(&strength) = strengths.get(epoch - 1) else { return Ok(None) };
        let mut params = objective.params_of(&self.head)?;
        lbfgs::minimize(&mut params, LBFGS_LIMITS, |p| objective.value_and_gradient(p, strength))?;
        objective.set_params(&self.head, &params)?;
        let labels = &self.data.train.labels;
        let logits = self.head.logits(&self.train_x, None)?;
        let loss = cross_entropy(&logits, labels, &self.class_weights, 0.0)?.to_scalar()?;
        let accuracy = count_correct(&logits, labels)? as f32 / labels.len() as f32;
        Ok(Some(EpochStats::train_only(epoch, loss, accuracy, Some(strength))))
    }

    /// Stops after the current step (a Cancel button); the best weights so far are kept.
    pub fn cancel(&mut self) {
        self.stop.get_or_insert(Stop::Cancelled);
    }

    /// The head with the best step's weights — the lowest validation loss, or without validation
    /// rows the last good step — measured on the validation rows.
    pub fn finish(mut self) -> Result<FittedHead> {
        if self.last_good.0 == 0 {
            return Err(invalid!(
                "training diverged in the first epoch (the loss became NaN or infinite); try a lower learning rate"
            ));
        }
        let (best_epoch, weights) = if self.best.1 > 0 { (self.best.1, self.best.2) } else { self.last_good };
        self.head.restore(&weights)?;
        let HeadData { train, val, val_names, labels } = &self.data;
        let validation =
            if val.is_empty() { None } else { Some(self.head.evaluate(val, labels, val_names, &self.device)?) };
        let trained = Trained {
            head: self.head,
            history: self.history,
            best_epoch,
            stop: self.stop.take().unwrap_or(Stop::Completed),
        };
        Ok(FittedHead { trained, validation, train_rows: train.len() })
    }
}

/// The head-fitting benchmark behind `wick bench --head-data` and the web build's `bench_head`: a
/// linear head on `set` (classes = largest label + 1), `epochs` AdamW epochs of `batch_size` (what
/// TF.js's peer runs), no early stopping or label smoothing. Returns the fastest of `iters` runs
/// after a warm-up, in milliseconds by the clock `now_ms`, and the last epoch's training accuracy.
pub fn time_head_fit(
    set: &FeatureSet,
    epochs: usize,
    batch_size: usize,
    iters: usize,
    now_ms: impl Fn() -> f64,
) -> Result<(f64, f32)> {
    let classes = set.labels.iter().max().map_or(1, |&l| l as usize + 1);
    let labels = (0..classes).map(|c| c.to_string()).collect();
    let config = TrainConfig {
        epochs,
        batch_size,
        patience: 0,
        label_smoothing: 0.0,
        solver: Solver::AdamW,
        ..TrainConfig::default()
    };
    let data = HeadData::train_only(set.clone(), labels);
    let run = || HeadFit::new(data.clone(), &config, &Device::Cpu)?.run(|_| ControlFlow::Continue(()));
    run()?; // warm-up
    let (mut best, mut accuracy) = (f64::INFINITY, 0.0);
    for _ in 0..iters.max(1) {
        let start = now_ms();
        let fitted = run()?;
        best = best.min(now_ms() - start);
        accuracy = fitted.trained.history.last().map_or(0.0, |h| h.train_accuracy);
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
