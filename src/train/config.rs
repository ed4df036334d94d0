//! The settings of a fine-tuning run (stored in its checkpoints and its `.wick`).

use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::data::cifar10::SIDE;
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::train::optim::OptimizerKind;
use crate::train::schedule::Schedule;

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
    /// Epochs of linear warm-up before the cosine decay (cut to half the run when it does not fit).
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
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label smoothing must be in [0, 1)");
        }
        if self.crop_padding > SIDE as usize {
            return bad("crop padding must be at most 32 pixels");
        }
        Ok(())
    }

    /// The preprocessing that feeds an un-augmented image the way training saw it (the exported
    /// model's, for the browser and `wick predict`): upsampled to `img_size`, normalised as the
    /// pretrained network was (`normalization`'s mean and std).
    pub fn preprocess(&self, normalization: &Preprocess) -> Preprocess {
        Preprocess {
            resize_shorter: self.img_size,
            crop: self.img_size,
            mean: normalization.mean,
            std: normalization.std,
        }
    }

    /// The learning rate at each step of a run of `steps_per_epoch` steps an epoch.
    pub fn schedule(&self, steps_per_epoch: usize) -> Schedule {
        Schedule::warmup_cosine(self.learning_rate, self.warmup_epochs, self.epochs, steps_per_epoch)
    }
}
