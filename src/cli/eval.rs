//! `wick eval`: a `.wick` scored on a folder of class folders.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::error::InFile;
use crate::eval::metrics::Metrics;
use crate::model::Classifier;

use super::flags::*;
use super::shared::*;

/// The flags of `wick eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// The `.wick` model to evaluate.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Serialize)]
pub struct EvalReport<'a> {
    pub model: String,
    pub skipped: &'a [Skipped],
    #[serde(flatten)]
    pub metrics: &'a Metrics,
}

impl EvalArgs {
    pub fn run(self) -> Result<()> {
        eval(&self.data, &self.model, &self.cache, &self.backbone, &self.output)
    }
}

fn eval(data: &Path, model: &Path, cache: &CacheArgs, backbone: &BackboneArgs, output: &OutputArgs) -> Result<()> {
    let backbone = backbone.load()?;
    let classifier = Classifier::from_bytes(&read(model)?, backbone.device()).in_file(model.display())?;
    let backbone = classifier.feature_extractor(&backbone).in_file(model.display())?;
    let samples = relabel(&scan(data)?, &classifier.meta.labels, &model.display().to_string())?;
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
