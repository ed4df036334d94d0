//! What several commands share: reading and writing files safely, progress bars, features of
//! image folders, head training and its report.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::data::dataset::{check_validation_share, scan_folder, LabelledFolder, Sample};
use crate::data::feature_set::FeatureSet;
use crate::eval::metrics::Metrics;
use crate::model::features::{extract_files, CacheFile};
use crate::model::Backbone;
use crate::train::config::{Solver, TrainConfig};
use crate::train::head_fit::{regularization_path, FittedHead, HeadData, HeadFit};
use crate::train::plot::{training_svg, PLOT_MARK};
use crate::train::report::{EpochStats, Stop};
use crate::util::printable;

/// [`scan_folder`], naming what it left unread (entries of class folders that are not regular files).
pub fn scan(dir: &Path) -> Result<LabelledFolder> {
    let folder = scan_folder(dir)?;
    for (path, why) in &folder.skipped {
        eprintln!("warning: skipped {}: {why}", printable(&path.display().to_string()));
    }
    Ok(folder)
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// What a command writes at a path: a Wick file of a format, or the training plot. A file already
/// there is replaced only when it is Wick's own earlier output of that kind (a regular file, that
/// is: `/dev/null` and pipes are written in place).
#[derive(Clone, Copy)]
pub enum Output {
    /// A Wick file of this `format` (`formats::…::FORMAT`).
    Wick(&'static str),
    Plot,
    /// A file the command reads first and refuses unless it is of its kind (`--resume`'s
    /// checkpoint): its reader says what is wrong with it, before anything is written.
    ReadFirst,
    /// Another tool's format (`wick export`): replaced only when `--force` says so.
    Foreign {
        force: bool,
    },
}

impl Output {
    fn owns(self, bytes: &[u8]) -> bool {
        match self {
            Output::Wick(format) => crate::formats::format_of(bytes).is_some_and(|f| f == format),
            Output::Plot => bytes.windows(PLOT_MARK.len()).take(4096).any(|w| w == PLOT_MARK.as_bytes()),
            Output::ReadFirst => true,
            Output::Foreign { force } => force,
        }
    }
}

/// What `--out` and `--backbone-out` hold when Wick wrote them (replaced then, and only then).
pub const MODEL: Output = Output::Wick(crate::formats::classifier::FORMAT);
pub const BACKBONE: Output = Output::Wick(crate::formats::backbone_file::FORMAT);

/// Refuses, before any work starts, output files that are the same file as another output or as
/// an input (a backbone, a checkpoint): one would silently overwrite the other; and an existing
/// file at an output's path that is not Wick's own earlier output of that kind: a user's file —
/// a photo of the training data, say — is never replaced.
pub fn check_outputs(outputs: &[(&str, &Path, Output)], inputs: &[(&str, &Path)]) -> Result<()> {
    let resolved: Vec<(&str, PathBuf)> = outputs
        .iter()
        .map(|&(flag, path, _)| (flag, path))
        .chain(inputs.iter().copied())
        .map(|(flag, path)| (flag, same_file_key(path)))
        .collect();
    for (i, (flag, path)) in resolved.iter().enumerate().take(outputs.len()) {
        if let Some((other, _)) = resolved.iter().enumerate().find(|(j, (_, p))| *j != i && p == path).map(|(_, o)| o) {
            bail!(
                "{flag} and {other} name the same file ({}): one would overwrite the other; give them different paths",
                outputs[i].1.display()
            );
        }
    }
    for &(flag, path, kind) in outputs {
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let existing = std::fs::read(path).with_context(|| format!("{}: cannot read what is there", path.display()))?;
        if !kind.owns(&existing) {
            bail!(
                "{flag}: {} exists and is not {}; it is not replaced (move it, or choose another path)",
                path.display(),
                match kind {
                    Output::Plot => "a plot Wick wrote",
                    Output::Foreign { .. } => "to be replaced without --force",
                    _ => "a file of the kind Wick writes there",
                }
            );
        }
    }
    Ok(())
}

/// A path that two names of one file share: the canonical path where the file (or else its folder)
/// exists, the path as given otherwise.
pub fn same_file_key(path: &Path) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (parent.canonicalize(), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
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

pub fn progress_bar(len: usize, what: &str, quiet: bool) -> ProgressBar {
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

#[derive(Serialize)]
pub struct Skipped {
    pub path: String,
    pub error: String,
}

/// Features of labelled samples; unreadable images are left out and listed.
pub struct Extracted {
    pub set: FeatureSet,
    pub names: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Feature vectors the backbone had to compute (the rest came from the cache).
    pub computed: usize,
}

/// Computes (or finds in the cache) the features of `samples`; `mirrored` adds each image's mirror
/// image as another sample of its class.
pub fn extract(
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

/// [`HeadFit::run`] with a progress bar (epochs, or the strengths of the L-BFGS path).
pub fn train_head(data: HeadData, config: &TrainConfig, device: &Device, quiet: bool) -> Result<FittedHead> {
    let bar = match config.solver {
        Solver::Lbfgs => progress_bar(regularization_path().len(), "L2 path", quiet),
        Solver::AdamW => progress_bar(config.epochs, "epochs", quiet),
    };
    let fitted = HeadFit::new(data, config, device)?.run(|stats: &EpochStats| {
        bar.set_position(stats.epoch as u64);
        bar.set_message(match (stats.val_loss, stats.val_accuracy) {
            (Some(loss), Some(acc)) => format!("val loss {loss:.4} acc {:.1}%", 100.0 * acc),
            _ => format!("train loss {:.4}", stats.train_loss),
        });
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    if let Stop::Diverged { epoch } = fitted.trained.stop {
        eprintln!(
            "warning: training stopped in epoch {epoch}: the loss became NaN or infinite (try a lower --lr); \
             keeping the weights of epoch {}",
            fitted.trained.best_epoch
        );
    }
    Ok(fitted)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn report_skipped(skipped: &[Skipped]) {
    if !skipped.is_empty() {
        eprintln!("warning: skipped {} unreadable file(s):", skipped.len());
        for s in skipped {
            eprintln!("  {}", s.error);
        }
    }
}

/// The class indices of `folder`'s samples, renumbered to `labels` (a class `labels` lacks is an error).
pub fn relabel(folder: &LabelledFolder, labels: &[String], model_name: &str) -> Result<Vec<Sample>> {
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

/// The head-training settings and the validation share, as `wick train` and `wick cifar10 --mode probe` take them.
pub fn validate_head_training(config: &TrainConfig, val_split: f32) -> Result<()> {
    config.validate()?;
    check_validation_share(val_split).context("--val-split")
}

/// Where the picture of a run goes: next to the model, `model.wick` → `model.svg`; where a file
/// that is not Wick's plot is there, `model-2.svg`, `model-3.svg`, … (said when written).
pub fn plot_path(out: &Path) -> PathBuf {
    let first =
        if out.with_extension("svg") == out { out.with_extension("plot.svg") } else { out.with_extension("svg") };
    let stem = first.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    for n in 1..1000 {
        let path = if n == 1 { first.clone() } else { first.with_file_name(format!("{stem}-{n}.svg")) };
        let ours = || std::fs::read(&path).is_ok_and(|bytes| Output::Plot.owns(&bytes));
        if std::fs::symlink_metadata(&path).is_err() || ours() {
            return path;
        }
    }
    first
}

/// Writes the run's loss/accuracy curves and confusion matrix next to the model ([`plot_path`]);
/// returns the path.
pub fn write_plot(
    out: &Path,
    title: &str,
    history: &[EpochStats],
    metrics: Option<&Metrics>,
    labels: &[String],
    measured_on: &str,
) -> Result<PathBuf> {
    let path = plot_path(out);
    let usual = out.with_extension("svg");
    if path != usual && path != out.with_extension("plot.svg") {
        eprintln!(
            "note: {} is not a plot Wick wrote, so it is left as it is; the plot goes to {}",
            usual.display(),
            path.display()
        );
    }
    write_atomically(&path, training_svg(title, history, metrics, labels, measured_on).as_bytes())?;
    Ok(path)
}
