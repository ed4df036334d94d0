//! Fine-tuning the whole pretrained network on CIFAR-10, the way a PyTorch/timm script does it:
//!
//! 32×32 image → random crop (zero padding) + mirror → upsampled to `img_size` → the backbone (any
//! family: EfficientNet-Lite or ResNet) with its BatchNorms in training mode → linear head → label-smoothed cross-entropy → SGD with
//! Nesterov momentum (or AdamW), weight decay on the convolution and head weights only, linear
//! warm-up then cosine decay, stepped every batch.
//!
//! Every random choice of an epoch comes from a generator seeded by (seed, epoch), and the
//! [`Finetuner::checkpoint`] holds every weight, running statistic and optimizer buffer, so a run
//! resumed from a checkpoint ends with exactly the weights of one that was never interrupted.

use std::collections::BTreeMap;

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::backbone::fold::{fold_named, FloatWeights};
use crate::backbone::{Network, NetworkConfig};
use crate::data::cifar10::{Cifar10, PIXELS, SIDE};
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::formats::backbone_file::QUANTIZATION;
use crate::formats::backbone_file::{BackboneMeta, Source};
use crate::formats::f32_values;
use crate::formats::finetune_checkpoint::{CheckpointMeta, CHECKPOINT};
use crate::kernels::on_pool;
use crate::model::head::{Head, Trained};
use crate::model::Pretrained;
use crate::train::config::HeadSpec;
use crate::train::config::{ComputeDtype, FinetuneConfig};
use crate::train::loss::{count_correct, cross_entropy};
use crate::train::optim::Optimizer;
use crate::train::report::{EpochStats, Stop};
use crate::util::rng::Rng;

/// The 32×32 crop at (`dy`, `dx`) of the image padded by `pad` zero pixels, mirrored or not,
/// normalised by `normalization`'s mean and std exactly as [`Preprocess::apply`] does it (a zero
/// pixel becomes −mean/std, as PyTorch's `RandomCrop(padding=…)` before `Normalize`).
fn crop_and_flip(
    planes: &[u8],
    normalization: &Preprocess,
    (pad, dy, dx): (usize, usize, usize),
    mirror: bool,
    out: &mut Vec<f32>,
) {
    let side = SIDE as usize;
    for (ch, plane) in planes.chunks_exact(side * side).enumerate() {
        let scale = 1.0 / (255.0 * normalization.std[ch]);
        let shift = -normalization.mean[ch] / normalization.std[ch];
        for y in 0..side {
            for x in 0..side {
                let sx = if mirror { side - 1 - x } else { x };
                let (py, px) = ((y + dy).wrapping_sub(pad), (sx + dx).wrapping_sub(pad));
                let v = if py < side && px < side { plane[py * side + px] } else { 0 };
                out.push(v as f32 * scale + shift);
            }
        }
    }
}

/// Images `indices` of `set` → the network's input (N, 3, img, img) on `device`, normalised as the
/// pretrained network expects (`normalization`'s mean and std). With `rng`, each image is randomly
/// cropped and mirrored first. The bilinear upsampling (half-pixel centres) is what
/// [`Preprocess::apply`] does to a 32×32 image, so evaluation here matches `wick predict`.
pub fn input_batch(
    set: &Cifar10,
    indices: &[usize],
    config: &FinetuneConfig,
    normalization: &Preprocess,
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
        crop_and_flip(set.planes(i), normalization, (pad, dy, dx), mirror, &mut pixels);
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
    crate::util::hex(&hash.finalize()[..16])
}

/// A fine-tuning run, one epoch at a time.
pub struct Finetuner {
    pub config: FinetuneConfig,
    pub classes: Vec<String>,
    pub history: Vec<EpochStats>,
    model: NetworkConfig,
    /// The pretrained network's input normalisation (mean and std), which training keeps.
    normalization: Preprocess,
    /// The pretrained variant's name (`efficientnet-lite1`, …), for the exported backbone file.
    architecture: String,
    varmap: VarMap,
    network: Network,
    head: Head,
    optimizer: Optimizer,
    source_sha256: String,
    data_fingerprint: String,
    device: Device,
}

impl Finetuner {
    /// A new run from the pretrained checkpoint's (unfolded) weights and a fresh head.
    pub fn new(
        pretrained: &Pretrained,
        classes: Vec<String>,
        train: &Cifar10,
        config: FinetuneConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let run = Self::build(classes, pretrained, fingerprint(train), config, device)?;
        for (name, var) in sorted_vars(&run.varmap) {
            let (shape, values) = pretrained.state.f32_contiguous(&name)?;
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
        pretrained: &Pretrained,
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
        if meta.source_sha256 != pretrained.source.sha256 {
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
        let mut run = Self::build(meta.classes.clone(), pretrained, meta.data_fingerprint.clone(), config, device)?;
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
        pretrained: &Pretrained,
        data_fingerprint: String,
        config: FinetuneConfig,
        device: &Device,
    ) -> Result<Self> {
        if config.precision == ComputeDtype::Bf16 && !device.is_cuda() {
            return Err(invalid!(
                "bf16 mixed precision needs a CUDA device (Candle's CPU matrix product has no bf16): \
                 use --precision f32 on the CPU"
            ));
        }
        let model = pretrained.config.clone();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let network = Network::unfolded(&model, config.precision.dtype(), vb)?;
        let spec = HeadSpec { input_dim: model.feature_dim(), hidden: None, classes: classes.len() };
        let head = Head::init(spec, &mut Rng::new(config.seed), device)?;
        let mut named: Vec<(String, Var)> = sorted_vars(&varmap)
            .into_iter()
            .filter(|(name, _)| !is_running_statistic(name))
            .map(|(name, var)| (format!("model.{name}"), var))
            .collect();
        named.extend(head.named_vars().into_iter().map(|(name, var)| (format!("head.{name}"), var)));
        let optimizer = Optimizer::new(config.optimizer, config.momentum, config.weight_decay, named)?;
        Ok(Self {
            config,
            classes,
            history: Vec::new(),
            model,
            varmap,
            network,
            head,
            optimizer,
            source_sha256: pretrained.source.sha256.clone(),
            architecture: pretrained.architecture.clone(),
            normalization: pretrained.preprocess.clone(),
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
        let schedule = self.config.schedule(steps);
        let mut rng = epoch_rng(self.config.seed, epoch);
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        let weights = vec![1.0; self.classes.len()];
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for (step, batch) in order.chunks_exact(self.config.batch_size).enumerate() {
            let x = input_batch(train, batch, &self.config, &self.normalization, Some(&mut rng), &self.device)?;
            let labels: Vec<u32> = batch.iter().map(|&i| train.labels[i] as u32).collect();
            let lr = schedule.learning_rate(self.optimizer.steps);
            let (logits, loss_value) = on_pool(|| self.step(&x, &labels, &weights, lr))?;
            if !loss_value.is_finite() {
                return Err(invalid!(
                    "the training loss became {loss_value} in epoch {epoch}, batch {}: lower --lr",
                    step + 1
                ));
            }
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
            regularization: None,
        };
        self.history.push(stats.clone());
        Ok(stats)
    }

    /// One optimizer step on the batch `x`: its logits and loss. A non-finite loss takes no step.
    fn step(&mut self, x: &Tensor, labels: &[u32], weights: &[f32], lr: f64) -> Result<(Tensor, f32)> {
        let logits = self.head.logits(&self.network.forward_t(x, true)?, None)?;
        let loss = cross_entropy(&logits, labels, weights, self.config.label_smoothing)?;
        let loss_value = loss.to_scalar::<f32>()?;
        if loss_value.is_finite() {
            self.optimizer.step(&loss.backward()?, lr)?;
        }
        Ok((logits, loss_value))
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
            let x = input_batch(set, batch, &self.config, &self.normalization, None, &self.device)?;
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
    /// backbone file alone classifies into `classes`. Quantize it with [`crate::formats::backbone_file::write`].
    pub fn export(&self) -> Result<(BackboneMeta, FloatWeights)> {
        let vars: BTreeMap<String, Var> = self.variables().into_iter().collect();
        let classifier = self.model.classifier();
        let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let name = name.replacen(&format!("{classifier}."), "head.output.", 1);
            let var = vars.get(&name).ok_or_else(|| invalid!("fine-tuned network has no `{name}`"))?;
            Ok((var.dims().to_vec(), var.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        };
        let config = self.model.with_classes(self.classes.len());
        let weights = fold_named(tensor, &config)?;
        let meta = BackboneMeta {
            architecture: self.architecture.clone(),
            config,
            preprocess: self.config.preprocess(&self.normalization),
            labels: self.classes.clone(),
            source: Source {
                package: format!("fine-tuned by wick {} (cifar10 --mode finetune)", env!("CARGO_PKG_VERSION")),
                file: "the ImageNet checkpoint with this sha256".into(),
                sha256: self.source_sha256.clone(),
                license: format!("Apache-2.0 (derived from the {} ImageNet checkpoint)", self.architecture),
            },
            quantization: QUANTIZATION.into(),
        };
        Ok((meta, weights))
    }

    /// The trained head (the `.wick` classifier's weights).
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The run as the `.wick` classifier records it: every epoch ran, and the last one's weights are kept.
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
