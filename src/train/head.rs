//! The classification head trained on backbone features, and its training loop.
//!
//! The head is a linear layer (the default), or one hidden ReLU layer with dropout and then a linear
//! layer. The loss is softmax cross-entropy, class-balanced by default. Two solvers:
//! - **L-BFGS** (linear heads, the default): full-batch, L2-regularised logistic regression, solved
//!   along a path of regularisation strengths from strong to weak, each warm-started from the last;
//!   the strength with the lowest validation loss is kept. This is the well-tuned logistic regression
//!   of the linear-probe literature, with the tuning built in.
//! - **AdamW** (hidden-layer heads, and on request linear ones): label-smoothed loss on shuffled
//!   mini-batches, early stopping on the validation loss.
//!
//! Every random choice (weight init, shuffling, dropout) comes from one seeded [`Rng`], so a seed
//! gives bit-identical weights.

use std::collections::HashMap;
use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::ops::{log_softmax, softmax_last_dim};

use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::kernels::map_parallel;
use crate::train::config::{HeadSpec, Solver, TrainConfig};
use crate::train::lbfgs::{self, Limits};
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

/// Training one step at a time — an epoch of mini-batches, or one strength of the L-BFGS path — for
/// callers that must get control back in between (the web app's worker answers a Cancel button
/// there). [`train`] is the whole loop.
pub struct Trainer {
    config: TrainConfig,
    head: Head,
    solve: Solve,
    rng: Rng,
    class_weights: Vec<f32>,
    train_x: Tensor,
    train_labels: Vec<u32>,
    val: Option<(Tensor, Vec<u32>)>,
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
        let class_weights = class_weights(&train_set.labels, classes, config.class_balanced);
        let train_x = train_set.tensor(device)?;
        let solve = match config.solver {
            Solver::AdamW => Solve::MiniBatch {
                optimizer: Optimizer::new(OptimizerKind::AdamW, 0.0, config.weight_decay, head.named_vars())?,
                order: (0..train_set.len() as u32).collect(),
            },
            Solver::Lbfgs => Solve::Path {
                // Without validation images there is nothing to choose by: scikit-learn's default, C = 1.
                strengths: match val_set {
                    Some(_) => regularization_path(),
                    None => vec![1.0 / train_set.len() as f64],
                },
                objective: LinearObjective::new(&train_x, &train_set.labels, &class_weights)?,
            },
        };
        let snapshot = head.snapshot()?;
        Ok(Self {
            config: config.clone(),
            solve,
            rng,
            class_weights,
            train_x,
            train_labels: train_set.labels.clone(),
            val: val_set.map(|v| Ok::<_, crate::Error>((v.tensor(device)?, v.labels.clone()))).transpose()?,
            history: Vec::new(),
            best: (f32::INFINITY, 0, snapshot.clone()),
            last_good: (0, snapshot),
            stop: None,
            head,
        })
    }

    /// Runs the next step and returns its numbers, or `None` once training has stopped.
    pub fn next_epoch(&mut self) -> Result<Option<&EpochStats>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let epoch = self.history.len() + 1;
        let (smoothing, patience) = match &self.solve {
            Solve::MiniBatch { .. } => (self.config.label_smoothing, self.config.patience),
            Solve::Path { .. } => (0.0, PATH_PATIENCE),
        };
        let stats = match &mut self.solve {
            Solve::MiniBatch { .. } if epoch > self.config.epochs => None,
            Solve::MiniBatch { optimizer, order } => {
                let (config, device) = (&self.config, self.train_x.device().clone());
                self.rng.shuffle(order);
                let (mut loss_sum, mut correct) = (0f64, 0usize);
                let mut diverged = false;
                for batch in order.chunks(config.batch_size) {
                    let labels: Vec<u32> = batch.iter().map(|&i| self.train_labels[i as usize]).collect();
                    let x = self.train_x.index_select(&Tensor::new(batch, &device)?, 0)?;
                    let logits = self.head.logits(&x, Some((config.dropout, &mut self.rng)))?;
                    let loss = cross_entropy(&logits, &labels, &self.class_weights, smoothing)?;
                    let loss_value = loss.to_scalar::<f32>()?;
                    if !loss_value.is_finite() {
                        diverged = true;
                        break;
                    }
                    optimizer.step(&loss.backward()?, config.learning_rate)?;
                    loss_sum += loss_value as f64 * batch.len() as f64;
                    correct += count_correct(&logits, &labels)?;
                }
                if diverged {
                    self.stop = Some(Stop::Diverged { epoch });
                    return Ok(None);
                }
                let n = order.len() as f32;
                Some(EpochStats::train_only(epoch, loss_sum as f32 / n, correct as f32 / n, None))
            }
            Solve::Path { strengths, objective } => match strengths.get(epoch - 1) {
                None => None,
                Some(&strength) => {
                    let mut params = objective.params_of(&self.head)?;
                    lbfgs::minimize(&mut params, LBFGS_LIMITS, |p| objective.value_and_gradient(p, strength))?;
                    objective.set_params(&self.head, &params)?;
                    let logits = self.head.logits(&self.train_x, None)?;
                    let loss = cross_entropy(&logits, &self.train_labels, &self.class_weights, 0.0)?.to_scalar()?;
                    let accuracy = count_correct(&logits, &self.train_labels)? as f32 / self.train_labels.len() as f32;
                    Some(EpochStats::train_only(epoch, loss, accuracy, Some(strength)))
                }
            },
        };
        let Some(mut stats) = stats else {
            self.stop = Some(Stop::Completed);
            return Ok(None);
        };
        self.last_good = (epoch, self.head.snapshot()?);
        if let Some((val_x, val_labels)) = &self.val {
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
/// linear head on `set` (classes = largest label + 1), `epochs` AdamW epochs of `batch_size` (what
/// TF.js's peer runs), no early
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
    let config = TrainConfig {
        epochs,
        batch_size,
        patience: 0,
        label_smoothing: 0.0,
        solver: Solver::AdamW,
        ..TrainConfig::default()
    };
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

/// Row blocks `(first, count)` of `rows` rows, one per thread, where Candle would multiply on one
/// thread but the pool has more: the browser's multi-threaded build, whose Web Workers Candle cannot
/// see. Empty elsewhere (natively Candle's matmul splits its work itself) and for few rows.
fn row_blocks(rows: usize) -> Vec<(usize, usize)> {
    const MIN_ROWS: usize = 64;
    let threads = crate::kernels::available_threads();
    if !crate::kernels::parallel(threads) || candle_core::utils::get_num_threads() > 1 || rows < 2 * MIN_ROWS {
        return Vec::new();
    }
    let per_block = rows.div_ceil(threads).max(MIN_ROWS);
    (0..rows).step_by(per_block).map(|first| (first, per_block.min(rows - first))).collect()
}

/// The linear head's L-BFGS objective: the class-weighted mean cross-entropy of `softmax(X·Wᵀ + b)`
/// plus `λ/2 · ‖W‖²` (the bias is not penalised, as in scikit-learn), with its gradient in closed
/// form. The parameters are `W` row by row, then `b`.
#[derive(Clone)]
struct LinearObjective {
    x: Tensor,
    /// Row blocks `(first, count)` of `x` multiplied on threads of their own ([`row_blocks`]).
    blocks: Vec<(usize, usize)>,
    /// Each row's one-hot target times its weight `w_{y_i} / Σ_j w_{y_j}`.
    weighted_targets: Tensor,
    /// Each row's weight, as a column.
    row_weights: Tensor,
}

impl LinearObjective {
    fn new(x: &Tensor, labels: &[u32], class_weights: &[f32]) -> Result<Self> {
        let classes = class_weights.len();
        let total: f32 = labels.iter().map(|&l| class_weights[l as usize]).sum();
        let row_weights: Vec<f32> = labels.iter().map(|&l| class_weights[l as usize] / total).collect();
        let mut targets = vec![0f32; labels.len() * classes];
        for (i, &l) in labels.iter().enumerate() {
            targets[i * classes + l as usize] = row_weights[i];
        }
        let device = x.device();
        Ok(Self {
            x: x.clone(),
            blocks: row_blocks(labels.len()),
            weighted_targets: Tensor::from_vec(targets, (labels.len(), classes), device)?,
            row_weights: Tensor::from_vec(row_weights, (labels.len(), 1), device)?,
        })
    }

    fn params_of(&self, head: &Head) -> Result<Vec<f64>> {
        let (w, b) = &head.output;
        let mut params: Vec<f64> = w.as_tensor().flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        params.extend(b.as_tensor().to_vec1::<f32>()?.into_iter().map(f64::from));
        Ok(params)
    }

    fn set_params(&self, head: &Head, params: &[f64]) -> Result<()> {
        let (weight, bias) = self.tensors(params)?;
        head.output.0.set(&weight)?;
        head.output.1.set(&bias)?;
        Ok(())
    }

    fn tensors(&self, params: &[f64]) -> Result<(Tensor, Tensor)> {
        let (classes, dim) = (self.weighted_targets.dim(1)?, self.x.dim(1)?);
        let values: Vec<f32> = params.iter().map(|&v| v as f32).collect();
        let device = self.x.device();
        let weight = Tensor::from_slice(&values[..classes * dim], (classes, dim), device)?;
        let bias = Tensor::from_slice(&values[classes * dim..], classes, device)?;
        Ok((weight, bias))
    }

    /// `x · m`, a row block per thread where [`row_blocks`] made blocks.
    fn times(&self, m: &Tensor) -> Result<Tensor> {
        if self.blocks.is_empty() {
            return Ok(self.x.matmul(m)?);
        }
        let parts = map_parallel(&self.blocks, |&(first, count)| self.x.narrow(0, first, count)?.matmul(m));
        Ok(Tensor::cat(&parts.into_iter().collect::<candle_core::Result<Vec<_>>>()?, 0)?)
    }

    /// `gᵀ · x` (g: one row per row of x), summed over the row blocks where there are blocks.
    fn transposed_times(&self, g: &Tensor) -> Result<Tensor> {
        if self.blocks.is_empty() {
            return Ok(g.t()?.contiguous()?.matmul(&self.x)?);
        }
        let parts = map_parallel(&self.blocks, |&(first, count)| {
            g.narrow(0, first, count)?.t()?.contiguous()?.matmul(&self.x.narrow(0, first, count)?)
        });
        let mut parts = parts.into_iter();
        let first = parts.next().expect("blocks")?;
        Ok(parts.try_fold(first, |sum, part| sum + part?)?)
    }

    fn value_and_gradient(&self, params: &[f64], strength: f64) -> Result<(f64, Vec<f64>)> {
        let (weight, bias) = self.tensors(params)?;
        let logits = self.times(&weight.t()?)?.broadcast_add(&bias)?;
        let log_probs = log_softmax(&logits, D::Minus1)?;
        let loss = -(&self.weighted_targets * &log_probs)?.sum_all()?.to_scalar::<f32>()? as f64;
        // d loss / d logits = w_i · (p_i − onehot_i)
        let grad_logits = (log_probs.exp()?.broadcast_mul(&self.row_weights)? - &self.weighted_targets)?;
        let grad_weight = self.transposed_times(&grad_logits)?;
        let grad_bias = grad_logits.sum(0)?;
        let mut grad: Vec<f64> = grad_weight.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        grad.extend(grad_bias.to_vec1::<f32>()?.into_iter().map(f64::from));
        let weights = weight.dim(0)? * weight.dim(1)?;
        let mut penalty = 0.0;
        for (g, &w) in grad[..weights].iter_mut().zip(&params[..weights]) {
            *g += strength * w;
            penalty += w * w;
        }
        Ok((loss + 0.5 * strength * penalty, grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The objective over row blocks (as the browser's multi-threaded build computes it) equals the
    /// objective over the whole matrix.
    #[test]
    fn row_blocks_give_the_same_objective() {
        let (rows, dim, classes) = (150, 24, 3);
        let mut rng = Rng::new(5);
        let values: Vec<f32> = (0..rows * dim).map(|_| rng.uniform() * 2.0 - 1.0).collect();
        let x = Tensor::from_vec(values, (rows, dim), &Device::Cpu).unwrap();
        let labels: Vec<u32> = (0..rows as u32).map(|i| i % classes as u32).collect();
        let whole = LinearObjective::new(&x, &labels, &[1.0, 2.0, 0.5]).unwrap();
        let blocked = LinearObjective { blocks: vec![(0, 64), (64, 64), (128, 22)], ..whole.clone() };
        let params: Vec<f64> = (0..classes * dim + classes).map(|i| ((i * 7) % 11) as f64 / 20.0 - 0.25).collect();
        let (value, gradient) = whole.value_and_gradient(&params, 0.1).unwrap();
        let (value_b, gradient_b) = blocked.value_and_gradient(&params, 0.1).unwrap();
        assert!((value - value_b).abs() < 1e-6 * value.abs().max(1.0), "{value} vs {value_b}");
        for (a, b) in gradient.iter().zip(&gradient_b) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(row_blocks(10), Vec::new(), "few rows are not split");
    }
}
