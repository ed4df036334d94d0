//! `wick cifar10`: the probe (a head on cached features) or fine-tuning of the whole network.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressStyle;
use serde::Serialize;

use crate::data::cifar10::{self, Cifar10, TEST_FILE};
use crate::data::dataset::stratified_split;
use crate::data::feature_set::FeatureSet;
use crate::data::preprocess::Preprocess;
use crate::error::InFile;
use crate::eval::metrics::{argmax, Metrics};
use crate::formats::backbone_file;
use crate::model::features::{extract_images, image_key, ImageKey, View};
use crate::model::Classifier;
use crate::model::{Backbone, Pretrained};
use crate::train::config::FinetuneConfig;
use crate::train::config::TrainConfig;
use crate::train::finetune::Finetuner;
use crate::train::head_fit::HeadData;
use crate::train::optim::OptimizerKind;
use crate::train::report::{EpochStats, Stop};

use super::flags::*;
use super::shared::*;

/// The flags of `wick cifar10`.
#[derive(clap::Args)]
pub struct Cifar10Args {
    /// The `cifar-10-batches-bin` folder (data_batch_1.bin … data_batch_5.bin, test_batch.bin), or
    /// a copy as 32×32 images in class folders, `train/<class>/*` (and `test/<class>/*`; without
    /// it the last fifth of each class's files, sorted by name, is the test set).
    #[arg(long)]
    pub data: PathBuf,
    /// Fetch the official archive (≈170 MB, MD5-checked) and unpack it into --data, unless the
    /// files are already there. WICK_CIFAR10_URL names a mirror.
    #[arg(long)]
    pub download: bool,
    /// probe: the backbone stays frozen and its (cached) features train a head; finetune: the
    /// whole network trains.
    #[arg(long, value_enum, default_value = "probe")]
    pub mode: Cifar10Mode,
    /// CIFAR's 32×32 images are upsampled to this size before the backbone [default: probe 128
    /// (the measured trade-off of accuracy and time, see BENCHMARKS.md), finetune 64].
    #[arg(long)]
    pub img_size: Option<u32>,
    /// Use only the first N training and N test images (a quick run).
    #[arg(long)]
    pub limit: Option<usize>,
    /// probe: share of the training images held out for early stopping (the test set is never used for that).
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f32,
    /// Where to write the trained model.
    #[arg(long)]
    pub out: PathBuf,
    /// probe: also write the features of the training, validation and test images to
    /// DIR/{train,val,test}/features.f32 (rows of little-endian f32) and labels.u8, to try other
    /// heads on them (`benches/head_fit.py` fits scikit-learn's).
    #[arg(long, value_name = "DIR")]
    pub save_features: Option<PathBuf>,
    #[command(flatten)]
    pub hyper: HyperArgs,
    #[command(flatten)]
    pub finetune: FinetuneArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Cifar10Mode {
    /// Frozen backbone, trained head (a linear probe by default; `--hidden N` for an MLP).
    Probe,
    /// The whole network trains, from the ImageNet checkpoint (`--pth`), with BatchNorm in training mode.
    Finetune,
}

#[derive(Serialize)]
pub struct Cifar10Report<'a> {
    pub mode: &'static str,
    pub model: String,
    /// The per-epoch (probe: per-step) curves and the test set's confusion matrix, as SVG.
    pub plot: String,
    /// finetune: the fine-tuned backbone file the model runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backbone: Option<String>,
    pub img_size: u32,
    pub train_images: usize,
    /// probe: the training images held out for early stopping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_images: Option<usize>,
    pub test_images: usize,
    /// probe: accuracy on the held-out training images the head was tuned on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_accuracy: Option<f32>,
    /// probe: feature vectors the backbone computed (the rest came from the cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features_computed: Option<usize>,
    /// probe: the rate of that computing (decoding, preprocessing, the backbone), images per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extraction_images_per_second: Option<f64>,
    /// probe: the backbone's arithmetic (int8 or f32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<&'static str>,
    #[serde(flatten)]
    pub end: RunEnd<'a>,
}

/// How either mode's run ended: its steps' numbers, the step it kept, why it stopped, the test
/// set's metrics and the time it took.
#[derive(Serialize)]
pub struct RunEnd<'a> {
    pub history: &'a [EpochStats],
    pub best_epoch: usize,
    pub stop: &'a Stop,
    pub test: &'a Metrics,
    pub seconds: f64,
}

impl<'a> RunEnd<'a> {
    fn of(classifier: &'a Classifier, test: &'a Metrics, start: Instant) -> Self {
        let meta = &classifier.meta;
        Self {
            history: &meta.history,
            best_epoch: meta.best_epoch,
            stop: &meta.stop,
            test,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

/// `wick cifar10 --img-size` by mode: the probe's from its measured accuracy/time trade-off on the
/// CIFAR-10 JPEG copy (BENCHMARKS.md "Accuracy levers": with stage pooling, 128 px is the smallest
/// input past 80% on 10,000 training images — 80.24%, against 79.17% at 96 px for 0.5× the time),
/// fine-tuning's from what a CPU can train (BENCHMARKS.md).
const PROBE_IMG_SIZE: u32 = 128;
const FINETUNE_IMG_SIZE: u32 = 64;

impl Cifar10Args {
    pub fn run(self) -> Result<()> {
        check_cifar10_options(self.mode, &self.hyper, &self.finetune, &self.backbone)?;
        let out = &self.out;
        match self.mode {
            Cifar10Mode::Probe => {
                let config = self.hyper.config()?;
                check_outputs(
                    &[("--out", out, MODEL), ("the plot", &plot_path(out), Output::Plot)],
                    &self.backbone.inputs(),
                )?;
                let (train, test) = load_cifar10(&self.data, self.download, self.limit, self.output.quiet)?;
                self.probe(&train, &test, &config)
            }
            Cifar10Mode::Finetune => {
                if self.save_features.is_some() {
                    bail!("--mode finetune does not use --save-features (the features change as the network trains)");
                }
                let (checkpoint, backbone_out) = self.finetune.paths(out);
                let checkpoint_kind = match self.finetune.resume {
                    true => Output::ReadFirst,
                    false => Output::Wick(crate::formats::finetune_checkpoint::FORMAT),
                };
                check_outputs(
                    &[
                        ("--out", out, MODEL),
                        ("--backbone-out", &backbone_out, BACKBONE),
                        ("--checkpoint", &checkpoint, checkpoint_kind),
                        ("the plot", &plot_path(out), Output::Plot),
                    ],
                    &self.backbone.inputs(),
                )?;
                let (train, test) = load_cifar10(&self.data, self.download, self.limit, self.output.quiet)?;
                let precision = self.backbone.training_precision()?;
                let img_size = self.img_size.unwrap_or(FINETUNE_IMG_SIZE);
                let config = self.hyper.finetune_config(img_size, &self.finetune, precision);
                self.finetune(&train, &test, config)
            }
        }
    }

    /// Linear probe: CIFAR-10 → backbone features (cached) → head, measured on the test set.
    fn probe(&self, train: &Cifar10, test: &Cifar10, config: &TrainConfig) -> Result<()> {
        let Self { val_split, cache, backbone, output, .. } = self;
        let (img_size, val_split) = (self.img_size.unwrap_or(PROBE_IMG_SIZE), *val_split);
        let start = Instant::now();
        validate_head_training(config, val_split)?;
        if !(32..=512).contains(&img_size) {
            bail!("--img-size must be between 32 and 512");
        }
        let preprocess = Preprocess { resize_shorter: img_size, crop: img_size, mean: [0.5; 3], std: [0.5; 3] };
        let backbone = backbone.load()?.with_preprocess(preprocess)?.with_pooling(self.hyper.pooling(0)?);
        let mut cache = cache.open(&backbone);
        let cached_before = cache.cache.len();
        let mut features = |set: &Cifar10, view: View, what: &str| -> Result<Vec<Vec<f32>>> {
            let keys: Vec<ImageKey> = (0..set.len()).map(|i| image_key(set.planes(i))).collect();
            let bar = progress_bar(set.len(), what, output.quiet);
            let rows = extract_images(
                &backbone,
                &mut cache,
                &keys,
                |i| set.image(i),
                view,
                |done| bar.set_position(done as u64),
            )?;
            bar.finish_and_clear();
            Ok(rows)
        };
        let extraction_start = Instant::now();
        let train_rows = features(train, View::AsIs, "train")?;
        let mirrored_rows = if config.flip_augment { Some(features(train, View::Mirrored, "mirrored")?) } else { None };
        let test_rows = features(test, View::AsIs, "test")?;
        let features_computed = cache.cache.len() - cached_before;
        let extraction_rate = features_computed as f64 / extraction_start.elapsed().as_secs_f64();

        let labels: Vec<u32> = train.labels.iter().map(|&l| l as u32).collect();
        let class_names: Vec<String> = cifar10::CLASSES.iter().map(|c| c.to_string()).collect();
        let (train_idx, val_idx) = stratified_split(&labels, class_names.len(), val_split, config.seed)?;
        let dim = backbone.feature_dim();
        let (mut train_set, mut val_set, mut test_set) =
            (FeatureSet::new(dim), FeatureSet::new(dim), FeatureSet::new(dim));
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

        if let Some(dir) = &self.save_features {
            for (name, set) in [("train", &train_set), ("val", &val_set), ("test", &test_set)] {
                let dir = dir.join(name);
                std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create it", dir.display()))?;
                let values: Vec<u8> = set.features.iter().flat_map(|v| v.to_le_bytes()).collect();
                write_atomically(&dir.join("features.f32"), &values)?;
                write_atomically(&dir.join("labels.u8"), &set.labels.iter().map(|&l| l as u8).collect::<Vec<_>>())?;
            }
        }
        let out = &self.out;
        let val_names: Vec<String> = val_idx.iter().map(|i| format!("train[{i}]")).collect();
        let fitted = train_head(
            HeadData { train: train_set, val: val_set, val_names, labels: class_names.clone() },
            config,
            backbone.device(),
            output.quiet,
        )?;
        let names: Vec<String> = (0..test_set.len()).map(|i| format!("{TEST_FILE}[{i}]")).collect();
        let mut metrics = fitted.trained.head.evaluate(&test_set, &class_names, &names, backbone.device())?;
        metrics.misclassified.truncate(20); // the most confident mistakes
        let validation_accuracy = fitted.validation.as_ref().map(|v| v.accuracy);

        let classifier = Classifier::from_training(
            fitted.trained,
            class_names,
            &backbone,
            config.clone(),
            Some(&metrics),
            unix_now(),
        );
        write_atomically(out, &classifier.to_bytes()?)?;
        let title = format!("wick cifar10 --mode probe --img-size {img_size}: {} training images", fitted.train_rows);
        let plot =
            write_plot(out, &title, &classifier.meta.history, Some(&metrics), &classifier.meta.labels, "test set")?;
        if output.json {
            let report = Cifar10Report {
                mode: "probe",
                model: out.display().to_string(),
                plot: plot.display().to_string(),
                img_size,
                train_images: train_idx.len(),
                backbone: None,
                validation_images: Some(val_idx.len()),
                validation_accuracy,
                test_images: test_set.len(),
                features_computed: Some(features_computed),
                extraction_images_per_second: (features_computed > 0).then_some(extraction_rate),
                precision: Some(backbone.precision().name()),
                end: RunEnd::of(&classifier, &metrics, start),
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else if !output.quiet {
            for h in &classifier.meta.history {
                let step = match h.regularization {
                    Some(strength) => format!("L2 {strength:<8.1e}"),
                    None => format!("epoch {:>3}", h.epoch),
                };
                let val = h.val_accuracy.map_or(String::new(), |a| format!("  validation accuracy {:.2}%", 100.0 * a));
                println!("{step}  train loss {:.4}{val}", h.train_loss);
            }
            if features_computed > 0 {
                println!(
                    "features: {features_computed} computed ({}), {extraction_rate:.0} images/s",
                    backbone.precision().name()
                );
            }
            println!("kept step {}; test set: {}", classifier.meta.best_epoch, metrics.table());
            let seconds = start.elapsed().as_secs_f64();
            println!("wrote {} (curves and confusion matrix: {}) in {seconds:.1} s", out.display(), plot.display());
        }
        Ok(())
    }
}

/// Options of the other mode are refused rather than ignored; fine-tuning's checkpoint is looked for
/// before any data is downloaded.
fn check_cifar10_options(
    mode: Cifar10Mode,
    hyper: &HyperArgs,
    finetune: &FinetuneArgs,
    backbone: &BackboneArgs,
) -> Result<()> {
    pub fn used(flags: &[(&'static str, bool)]) -> Vec<&'static str> {
        flags.iter().filter(|(_, set)| *set).map(|(flag, _)| *flag).collect()
    }
    let (wrong, mode_name) = match mode {
        Cifar10Mode::Probe => (
            used(&[
                ("--optimizer", finetune.optimizer != OptimizerKind::Sgd),
                ("--no-flip", finetune.no_flip),
                ("--checkpoint", finetune.checkpoint.is_some()),
                ("--resume", finetune.resume),
                ("--backbone-out", finetune.backbone_out.is_some()),
            ]),
            "probe",
        ),
        Cifar10Mode::Finetune => {
            backbone.imagenet_checkpoint()?;
            (
                used(&[
                    ("--hidden", hyper.hidden.is_some()),
                    ("--solver", hyper.solver.is_some()),
                    ("--dropout", hyper.dropout.is_some()),
                    ("--patience", hyper.patience.is_some()),
                    ("--flip (fine-tuning always mirrors; --no-flip turns it off)", hyper.flip),
                    ("--no-class-balance", hyper.no_class_balance),
                    ("--pooling (the whole network trains on the last map's pool)", hyper.pooling.is_some()),
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

impl Cifar10Args {
    /// Fine-tuning: the whole network trains on CIFAR-10's training set, is measured on its test
    /// set after every epoch, and is checkpointed after every epoch. Writes the fine-tuned backbone
    /// (the int8 backbone file) and the `.wick` for it.
    fn finetune(&self, train: &Cifar10, test: &Cifar10, config: FinetuneConfig) -> Result<()> {
        let Self { out, finetune: args, backbone, output, .. } = self;
        let start = Instant::now();
        config.validate()?;
        if backbone.backbone.is_some() {
            bail!(
                "fine-tuning starts from the PyTorch checkpoint (--pth): a Wick backbone file has its BatchNorms \
             folded into the convolutions, and fine-tuning trains them"
            );
        }
        let pth = backbone.imagenet_checkpoint()?;
        let device = parse_device(&backbone.device)?;
        let (checkpoint, backbone_out) = args.paths(out);
        let pretrained = Pretrained::from_checkpoint(&read(&pth)?).in_file(pth.display())?;
        let class_names: Vec<String> = cifar10::CLASSES.iter().map(|c| c.to_string()).collect();
        let mut run = if args.resume {
            let bytes = std::fs::read(&checkpoint)
                .with_context(|| format!("{}: no checkpoint to resume from", checkpoint.display()))?;
            let run = Finetuner::resume(&bytes, &pretrained, &class_names, train, config.clone(), &device)
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
            Finetuner::new(&pretrained, class_names.clone(), train, config.clone(), &device).in_file(pth.display())?
        };

        let images_per_epoch = run.steps_per_epoch(train) * config.batch_size;
        let schedule = config.schedule(run.steps_per_epoch(train));
        if let (Some(asked), false) = (schedule.clamped_from, output.quiet) {
            eprintln!(
                "note: a warm-up of {} epoch(s) ({asked} steps) leaves no steps to decay over in {} epoch(s); \
             warming up over the first half of the run ({} of {} steps) instead",
                config.warmup_epochs, config.epochs, schedule.warmup_steps, schedule.total_steps
            );
        }
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
        let backbone_bytes = backbone_file::write(&weights, &meta)?;
        let exported = Backbone::from_backbone_file(&backbone_bytes, &device)?;
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
        let title =
            format!("wick cifar10 --mode finetune --img-size {}: {train_images} training images", config.img_size);
        let plot =
            write_plot(out, &title, &classifier.meta.history, Some(&metrics), &classifier.meta.labels, "test set")?;
        if output.json {
            let report = Cifar10Report {
                mode: "finetune",
                model: out.display().to_string(),
                plot: plot.display().to_string(),
                img_size: config.img_size,
                train_images,
                backbone: Some(backbone_out.display().to_string()),
                validation_images: None,
                validation_accuracy: None,
                test_images: test.len(),
                features_computed: None,
                extraction_images_per_second: None,
                precision: None,
                end: RunEnd::of(&classifier, &metrics, start),
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else if !output.quiet {
            println!("test set, int8 backbone: {}", metrics.table());
            println!(
                "wrote {}, its backbone {} and its curves and confusion matrix {} in {:.1} s",
                out.display(),
                backbone_out.display(),
                plot.display(),
                start.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}

/// Mean negative log-likelihood and accuracy of `probabilities` against `labels`.
pub fn loss_and_accuracy(probabilities: &[Vec<f32>], labels: &[u8]) -> (f32, f32) {
    let mut loss = 0f64;
    let mut correct = 0;
    for (p, &label) in probabilities.iter().zip(labels) {
        loss -= (p[label as usize].max(1e-12) as f64).ln();
        correct += usize::from(argmax(p) == label as usize);
    }
    let n = labels.len().max(1) as f64;
    ((loss / n) as f32, (correct as f64 / n) as f32)
}
