//! `wick train`: a head on a folder of class folders, written as a `.wick`; with `--train-layers N`
//! the backbone's last layers train with it, written as a backbone file beside the `.wick`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::data::augment::{self, AUGMENTED_VIEWS};
use crate::data::dataset::{check_labels, stratified_split, Sample};
use crate::data::feature_set::FeatureSet;
use crate::data::preprocess::{decode_image, decode_waves, decoded_bytes, DECODE_BUDGET};
use crate::error::InFile;
use crate::eval::check::find_suspects;
use crate::eval::metrics::Metrics;
use crate::model::features::{compute, View};
use crate::model::Backbone;
use crate::model::Classifier;
use crate::train::config::TrainConfig;
use crate::train::head_fit::HeadData;
use crate::train::layers::{Activations, LayerFit, SampleRows};
use crate::train::report::{EpochStats, Stop};

use super::flags::*;
use super::shared::*;

/// The flags of `wick train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// The labelled images: one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the trained model.
    #[arg(long)]
    pub out: PathBuf,
    /// Validation images in the same layout; without it, `--val-split` of each class is held out.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Share of each class held out for validation (when there is no `--val`).
    #[arg(long, default_value_t = 0.15)]
    pub val_split: f32,
    #[command(flatten)]
    pub hyper: HyperArgs,
    #[command(flatten)]
    pub layers: LayerArgs,
    /// Also check the labels: every image's class probabilities from heads trained without it
    /// (5 folds), and the images whose given class they doubt most, listed for a look.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Serialize)]
pub struct TrainReport<'a> {
    pub model: String,
    /// The loss/accuracy curves and the confusion matrix, as SVG.
    pub plot: String,
    pub labels: &'a [String],
    pub train_images: BTreeMap<&'a str, usize>,
    pub validation_images: BTreeMap<&'a str, usize>,
    pub skipped: &'a [Skipped],
    pub features_computed: usize,
    pub history: &'a [EpochStats],
    pub best_epoch: usize,
    pub stop: &'a Stop,
    pub validation: Option<&'a Metrics>,
    /// With `--check`: the images whose labels are most in doubt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<&'a [CheckedImage]>,
    pub seconds: f64,
}

/// An image of the label check's list (`--check`).
#[derive(Serialize)]
pub struct CheckedImage {
    pub path: String,
    pub given: String,
    pub suggested: String,
    pub given_probability: f32,
    pub suggested_probability: f32,
    pub probably_mislabelled: bool,
}

/// Images the check lists: the most doubtful first.
const CHECK_LISTED: usize = 20;

/// `--check`: every readable image, training and validation (each part's plain features, named by
/// its names), through the label check, the [`CHECK_LISTED`] most doubtful kept.
fn check_images(
    (train, train_names): (&FeatureSet, &[String]),
    (val, val_names): (&FeatureSet, &[String]),
    labels: &[String],
    seed: u64,
    quiet: bool,
) -> Result<Vec<CheckedImage>> {
    let mut set = train.clone();
    set.features.extend_from_slice(&val.features);
    set.labels.extend_from_slice(&val.labels);
    let names = [train_names, val_names].concat();
    let bar = progress_bar(crate::eval::check::CHECK_FOLDS, "checking labels", quiet);
    let report =
        find_suspects(&set, labels.len(), seed, &candle_core::Device::Cpu, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    Ok(report
        .suspects
        .into_iter()
        .take(CHECK_LISTED)
        .map(|s| CheckedImage {
            path: names[s.row].clone(),
            given: labels[s.given as usize].clone(),
            suggested: labels[s.suggested as usize].clone(),
            given_probability: s.given_probability,
            suggested_probability: s.suggested_probability,
            probably_mislabelled: s.probably_mislabelled(),
        })
        .collect())
}

/// The check's list as a table.
/// The validation metrics (or why there are none) and, with `--check`, the doubted labels.
fn print_validation_and_check(validation: Option<&Metrics>, checked: Option<&[CheckedImage]>) {
    match validation {
        Some(m) => println!("validation: {m}", m = m.table()),
        None => println!("no validation images (every class has a single image): no metrics"),
    }
    if let Some(checked) = checked {
        print_check(checked);
    }
}

fn print_check(checked: &[CheckedImage]) {
    println!("\nlabels to check (each image judged by heads trained without it; most doubtful first):");
    println!("{:>7} {:>7}  {:<16} {:<16} path", "given", "other", "labelled", "more likely");
    for c in checked {
        let mark = if c.probably_mislabelled { "" } else { "  (hard, label likely right)" };
        println!(
            "{:>6.1}% {:>6.1}%  {:<16} {:<16} {}{mark}",
            100.0 * c.given_probability,
            100.0 * c.suggested_probability,
            c.given,
            c.suggested,
            c.path
        );
    }
}

/// Plain rows of `set`: every `per_image`-th row (the first of each image's rows).
fn plain_rows(set: &FeatureSet, per_image: usize) -> FeatureSet {
    let mut plain = FeatureSet::new(set.dim);
    for (row, features) in set.features.chunks_exact(set.dim).enumerate().step_by(per_image) {
        plain.push(features, set.labels[row]);
    }
    plain
}

impl TrainArgs {
    pub fn run(self) -> Result<()> {
        self.layers.check(&self.hyper)?;
        self.hyper.pooling(self.layers.train_layers)?;
        let config = self.hyper.config()?;
        let layer_epochs = self.layers.layer_epochs.unwrap_or(config.layer_epochs);
        let config = TrainConfig { train_layers: self.layers.train_layers, layer_epochs, ..config };
        let out = &self.out;
        if config.train_layers == 0 {
            check_outputs(
                &[("--out", out, MODEL), ("the plot", &plot_path(out), Output::Plot)],
                &self.backbone.inputs(),
            )?;
            return self.train_head(&config);
        }
        let backbone_out = self.layers.backbone_path(out);
        check_outputs(
            &[
                ("--out", out, MODEL),
                ("--backbone-out", &backbone_out, BACKBONE),
                ("the plot", &plot_path(out), Output::Plot),
            ],
            &self.backbone.inputs(),
        )?;
        self.train_layers(&config, &backbone_out)
    }

    /// The head alone, on the backbone's (cached) features.
    fn train_head(&self, config: &TrainConfig) -> Result<()> {
        let Self { data, out, val, val_split, check, cache, backbone, output, .. } = self;
        let (val, val_split, check) = (val.as_deref(), *val_split, *check);
        let start = Instant::now();
        validate_head_training(config, val_split)?;
        let (labels, train_samples, val_samples) = &split(data, val, val_split, config.seed)?;

        let backbone = backbone.load()?.with_pooling(self.hyper.pooling(0)?);
        let mut cache = cache.open(&backbone);
        let quiet = output.quiet;
        let train_data = extract(&backbone, &mut cache, train_samples, config.flip_augment, "train", quiet)?;
        let val_data = extract(&backbone, &mut cache, val_samples, false, "val", quiet)?;
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

        let val_counts = counts(&val_data.set, 1);
        let checked = if check {
            let plain = plain_rows(&train_data.set, if config.flip_augment { 2 } else { 1 });
            let (train, val) = ((&plain, &train_data.names[..]), (&val_data.set, &val_data.names[..]));
            Some(check_images(train, val, labels, config.seed, quiet)?)
        } else {
            None
        };
        let fitted = train_head(
            HeadData { train: train_data.set, val: val_data.set, val_names: val_data.names, labels: labels.clone() },
            config,
            backbone.device(),
            quiet,
        )?;
        let validation = fitted.validation;
        let classifier = Classifier::from_training(
            fitted.trained,
            labels.clone(),
            &backbone,
            config.clone(),
            validation.as_ref(),
            unix_now(),
        );
        write_atomically(out, &classifier.to_bytes()?)?;
        let title = format!("wick train {} ({} images)", data.display(), fitted.train_rows);
        let plot = write_plot(out, &title, &classifier.meta.history, validation.as_ref(), labels, "validation images")?;

        if output.json {
            let report = TrainReport {
                model: out.display().to_string(),
                plot: plot.display().to_string(),
                labels,
                train_images: train_counts,
                validation_images: val_counts,
                skipped: &skipped,
                features_computed,
                history: &classifier.meta.history,
                best_epoch: classifier.meta.best_epoch,
                stop: &classifier.meta.stop,
                validation: validation.as_ref(),
                check: checked.as_deref(),
                seconds: start.elapsed().as_secs_f64(),
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else if !quiet {
            println!("{:<24} {:>6} {:>6}", "class", "train", "val");
            for label in labels {
                println!("{label:<24} {:>6} {:>6}", train_counts[label.as_str()], val_counts[label.as_str()]);
            }
            let steps = classifier.meta.history.len();
            let why = classifier.meta.stop.describe();
            match classifier.meta.history.get(classifier.meta.best_epoch - 1).and_then(|h| h.regularization) {
                Some(strength) => println!("\nL-BFGS over {steps} L2 strengths ({why}); kept L2 {strength:.1e}\n"),
                None => {
                    println!("\n{steps} epochs ({why}); kept the weights of epoch {}\n", classifier.meta.best_epoch)
                }
            }
            print_validation_and_check(validation.as_ref(), checked.as_deref());
            println!(
                "wrote {} (and its curves and confusion matrix, {}) in {:.1} s; the backbone computed \
             {features_computed} feature vectors{}",
                out.display(),
                plot.display(),
                start.elapsed().as_secs_f64(),
                cache.path().map_or(String::new(), |p| format!(", the rest came from {}", p.display()))
            );
        }
        Ok(())
    }

    /// `wick train --train-layers N`: the activations at the cut are computed once per image view (the
    /// plain one, and with `augment` three more for training images), then the last layers train with
    /// the head ([`LayerFit`]). Writes the backbone file (`backbone_out`) and the `.wick` that runs on it.
    fn train_layers(&self, config: &TrainConfig, backbone_out: &Path) -> Result<()> {
        let Self { data, out, val, val_split, check, backbone, output, .. } = self;
        let (val, val_split, check, augment) = (val.as_deref(), *val_split, *check, !self.layers.no_augment);
        let start = Instant::now();
        validate_head_training(config, val_split)?;
        let (labels, train_samples, val_samples) = split(data, val, val_split, config.seed)?;
        let backbone = backbone.load()?;
        let first = backbone.meta.config.first_trained_block(config.train_layers)?;
        let quiet = output.quiet;
        let views = if augment { AUGMENTED_VIEWS } else { 1 };
        let (train, train_skipped) =
            activations_of(&backbone, &train_samples, first, views, config.seed, "train", quiet)?;
        let (val, val_skipped) = activations_of(&backbone, &val_samples, first, 1, config.seed, "val", quiet)?;
        let mut skipped = train_skipped;
        skipped.extend(val_skipped);
        report_skipped(&skipped);
        let counts = |set: &[u32]| -> BTreeMap<&str, usize> {
            let mut counts: BTreeMap<&str, usize> = labels.iter().map(|l| (l.as_str(), 0)).collect();
            for &l in set {
                *counts.get_mut(labels[l as usize].as_str()).unwrap() += 1;
            }
            counts
        };
        let train_counts = counts(&train.features.labels);
        if let Some((label, _)) = train_counts.iter().find(|(_, &n)| n == 0) {
            bail!("{}: class `{label}` has no readable training images", data.join(label).display());
        }
        let val_counts = counts(&val.features.labels);
        let checked = if check {
            let parts = ((&train.features, &train.names[..]), (&val.features, &val.names[..]));
            Some(check_images(parts.0, parts.1, &labels, config.seed, quiet)?)
        } else {
            None
        };
        let every = |rows: &SampleRows| (0..rows.names.len()).collect::<Vec<_>>();
        let (train, _) = {
            let all = every(&train);
            train.split(&all, &[])
        };
        let (_, val) = {
            let all = every(&val);
            val.split(&[], &all)
        };
        let activation_bytes = train.activations.row_bytes();
        let mut run = LayerFit::new(&backbone, config.train_layers, train, val, labels.clone(), config)?;
        let bar = progress_bar(config.layer_epochs, "steps", quiet);
        while let Some(stats) = run.next_epoch()? {
            bar.set_position(stats.epoch as u64);
            if let (Some(loss), Some(accuracy)) = (stats.val_loss, stats.val_accuracy) {
                bar.set_message(format!("val loss {loss:.3}, accuracy {:.1}%", 100.0 * accuracy));
            }
        }
        bar.finish_and_clear();
        let fitted = run.finish(unix_now())?;
        write_atomically(backbone_out, &fitted.backbone_file)?;
        let classifier = fitted.classifier;
        write_atomically(out, &classifier.to_bytes()?)?;
        let validation = fitted.validation;
        let title = format!(
            "wick train --train-layers {} {} ({} images)",
            config.train_layers,
            data.display(),
            fitted.train_images
        );
        let plot =
            write_plot(out, &title, &classifier.meta.history, validation.as_ref(), &labels, "validation images")?;
        if output.json {
            let report = serde_json::json!({
                "model": out.display().to_string(),
                "backbone": backbone_out.display().to_string(),
                "plot": plot.display().to_string(),
                "labels": labels,
                "train_layers": config.train_layers,
                "first_trained_block": first,
                "views_per_training_image": views,
                "activation_bytes_per_view": activation_bytes,
                "train_images": train_counts,
                "validation_images": val_counts,
                "skipped": skipped,
                "history": classifier.meta.history,
                "best_epoch": classifier.meta.best_epoch,
                "stop": classifier.meta.stop,
                "validation": validation,
                "check": checked,
                "seconds": start.elapsed().as_secs_f64(),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else if !quiet {
            println!("{:<24} {:>6} {:>6}", "class", "train", "val");
            for label in &labels {
                println!("{label:<24} {:>6} {:>6}", train_counts[label.as_str()], val_counts[label.as_str()]);
            }
            let (history, head_steps) = (&classifier.meta.history, fitted.head_steps);
            println!(
                "\nthe head, then the backbone from block {first} on ({} epochs; {}); kept step {} of {}{}\n",
                history.len() - head_steps,
                classifier.meta.stop.describe(),
                classifier.meta.best_epoch,
                history.len(),
                if classifier.meta.best_epoch <= head_steps { " (the head alone did best)" } else { "" }
            );
            print_validation_and_check(validation.as_ref(), checked.as_deref());
            println!(
            "wrote {} and its backbone {} (and the curves, {}) in {:.1} s; {views} view(s) per training image, {} KB of activations each",
            out.display(),
            backbone_out.display(),
            plot.display(),
            start.elapsed().as_secs_f64(),
            activation_bytes / 1000
        );
        }
        Ok(())
    }
}

/// The classes of `data` and its training and validation images: `val`'s, or `val_split` of each
/// class held out.
fn split(
    data: &Path,
    val: Option<&Path>,
    val_split: f32,
    seed: u64,
) -> Result<(Vec<String>, Vec<Sample>, Vec<Sample>)> {
    let folder = scan(data)?;
    check_labels(&folder.labels).with_context(|| format!("{}", data.display()))?;
    let labels = folder.labels.clone();
    let (train, val) = match val {
        Some(dir) => (folder.samples.clone(), relabel(&scan(dir)?, &labels, &data.display().to_string())?),
        None => {
            let sample_labels: Vec<u32> = folder.samples.iter().map(|s| s.label).collect();
            let (train, val) = stratified_split(&sample_labels, labels.len(), val_split, seed)?;
            let pick = |idx: Vec<usize>| idx.into_iter().map(|i| folder.samples[i].clone()).collect::<Vec<_>>();
            (pick(train), pick(val))
        }
    };
    Ok((labels, train, val))
}

/// Images per batch through the frozen part of the backbone.
const ACTIVATION_BATCH: usize = 16;

/// Each readable sample's activations at block `first`, in `views` views (drawn from `seed` and
/// the sample's place in the list); unreadable files are skipped and named.
fn activations_of(
    backbone: &Backbone,
    samples: &[Sample],
    first: usize,
    views: usize,
    seed: u64,
    what: &str,
    quiet: bool,
) -> Result<(SampleRows, Vec<Skipped>)> {
    let bar = progress_bar(samples.len(), what, quiet);
    let mut activations: Option<Activations> = None;
    let mut features = FeatureSet::new(backbone.feature_dim());
    let mut names = Vec::new();
    let mut skipped = Vec::new();
    let resize_shorter = backbone.meta.preprocess.resize_shorter;
    for (chunk_index, chunk) in samples.chunks(ACTIVATION_BATCH).enumerate() {
        let mut files = Vec::new();
        for (i, sample) in chunk.iter().enumerate() {
            match read(&sample.path) {
                Ok(bytes) => files.push((i, sample, bytes)),
                Err(e) => skipped.push(Skipped { path: sample.path.display().to_string(), error: format!("{e:#}") }),
            }
        }
        // Decoded in waves within the decode budget: each image's plain features come from the
        // whole image (as head-only training computes them: its first step), its views from a copy
        // no larger than the backbone reads (as the page's kept copies), so the chunk's views of
        // 64-megapixel photos never sit in memory at full size.
        let costs: Vec<u64> = files.iter().map(|(_, _, bytes)| decoded_bytes(bytes)).collect();
        let mut images = Vec::new();
        for wave in decode_waves(&costs, DECODE_BUDGET) {
            let (mut plain, mut labels) = (Vec::new(), Vec::new());
            for (i, sample, bytes) in &files[wave] {
                match decode_image(bytes).in_file(sample.path.display()) {
                    Ok(image) => {
                        let image_seed =
                            seed ^ ((chunk_index * ACTIVATION_BATCH + i) as u64).wrapping_mul(0xd6e8_feb8_6659_fd93);
                        let copy = augment::bounded_copy(&image, resize_shorter);
                        let copy = copy.as_ref().unwrap_or(&image);
                        images.extend((0..views).map(|v| augment::view(copy, v, image_seed)));
                        plain.push(image);
                        labels.push(sample.label);
                        names.push(sample.path.display().to_string());
                    }
                    Err(e) => {
                        skipped.push(Skipped { path: sample.path.display().to_string(), error: format!("{e:#}") })
                    }
                }
            }
            if !plain.is_empty() {
                for (row, label) in compute(backbone, &plain, View::AsIs)?.iter().zip(labels) {
                    features.push(row, label);
                }
            }
        }
        if !images.is_empty() {
            let batch = backbone.activations(&backbone.input_tensor(&images)?, first)?;
            let (_, c, h, w) = batch.dims4()?;
            activations.get_or_insert_with(|| Activations::new([c, h, w])).push(&batch)?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let activations = activations.unwrap_or_else(|| Activations::new([1, 1, 1]));
    let rows_per_sample = vec![views; names.len()];
    Ok((SampleRows::new(activations, rows_per_sample, features, names)?, skipped))
}
