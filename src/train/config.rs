//! The settings of training runs, as files record them: the head's ([`TrainConfig`], [`HeadSpec`],
//! [`Solver`]; stored in the `.wick`) and a fine-tuning run's ([`FinetuneConfig`]; stored in its
//! checkpoints and its `.wick`).

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
pub enum ComputeDtype {
    #[default]
    F32,
    /// Mixed precision, like PyTorch's bf16 autocast: CUDA only (Candle's CPU matmul has no bf16).
    Bf16,
}

impl ComputeDtype {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }
}

impl std::str::FromStr for ComputeDtype {
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
    pub precision: ComputeDtype,
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
            precision: ComputeDtype::F32,
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

/// How the head's weights are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Full-batch L-BFGS along the regularisation path (linear heads only).
    Lbfgs,
    /// AdamW on shuffled mini-batches, for `epochs` epochs or until early stopping.
    AdamW,
}

impl Solver {
    /// The default for a head's shape: L-BFGS for a linear head, AdamW with a hidden layer.
    pub fn for_head(hidden: Option<usize>) -> Self {
        if hidden.is_some() {
            Self::AdamW
        } else {
            Self::Lbfgs
        }
    }

    /// What `.wick` files written before the solver was recorded were trained with.
    fn recorded_before() -> Self {
        Self::AdamW
    }
}

impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "lbfgs" => Ok(Self::Lbfgs),
            "adamw" => Ok(Self::AdamW),
            other => Err(format!("`{other}`: expected lbfgs or adamw")),
        }
    }
}

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
    /// L-BFGS ignores `epochs`, `batch_size`, `learning_rate`, `weight_decay`, `label_smoothing`
    /// and `patience`: its regularisation is chosen on the validation images instead.
    #[serde(default = "Solver::recorded_before")]
    pub solver: Solver,
    /// How many parts at the end of the backbone train with the head (0: the head only; see
    /// [`crate::backbone::NetworkConfig::first_trained_block`]).
    #[serde(default)]
    pub train_layers: usize,
    /// With `train_layers`, the most epochs the layers train after the head is fitted.
    #[serde(default = "default_layer_epochs")]
    pub layer_epochs: usize,
}

fn default_layer_epochs() -> usize {
    10
}

/// The most epochs the backbone's last layers may train for.
pub const MAX_LAYER_EPOCHS: usize = 1000;

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
            solver: Solver::Lbfgs,
            train_layers: 0,
            layer_epochs: default_layer_epochs(),
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
        if self.train_layers > crate::backbone::MAX_TRAIN_LAYERS {
            return bad(&format!(
                "the layers to train must be 0 (the head only) to {}",
                crate::backbone::MAX_TRAIN_LAYERS
            ));
        }
        if self.layer_epochs > MAX_LAYER_EPOCHS {
            return bad(&format!("layer epochs must be at most {MAX_LAYER_EPOCHS}"));
        }
        if self.hidden.is_some() && self.solver == Solver::Lbfgs {
            return bad("the L-BFGS solver trains linear heads only; a hidden layer trains with AdamW");
        }
        Ok(())
    }
}
