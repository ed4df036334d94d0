//! `wick train`: a head on a folder of class folders, written as a `.wick`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use wick::data::dataset::{check_labels, scan_folder, stratified_split};
use wick::eval::metrics::Metrics;
use wick::formats::classifier::Classifier;
use wick::train::head::{EpochStats, FeatureSet, Stop, TrainConfig};

use super::flags::*;
use super::shared::*;

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
    pub seconds: f64,
}

#[allow(clippy::too_many_arguments)]
pub fn train(
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

    let val_counts = counts(&val_data.set, 1);
    let fitted =
        train_head(&train_data.set, val_data.set, val_data.names, labels.clone(), config, backbone.device(), quiet)?;
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
    let title = format!("wick train {} ({} images)", data.display(), train_data.set.len());
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
            None => println!("\n{steps} epochs ({why}); kept the weights of epoch {}\n", classifier.meta.best_epoch),
        }
        match &validation {
            Some(m) => println!("validation: {}", m.table()),
            None => println!("no validation images (every class has a single image): no metrics"),
        }
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
