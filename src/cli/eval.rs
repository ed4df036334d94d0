//! `wick eval`: a `.wick` scored on a folder of class folders.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use wick::error::InFile;
use wick::eval::metrics::Metrics;
use wick::model::Classifier;

use super::flags::*;
use super::shared::*;

#[derive(Serialize)]
pub struct EvalReport<'a> {
    pub model: String,
    pub skipped: &'a [Skipped],
    #[serde(flatten)]
    pub metrics: &'a Metrics,
}

pub fn eval(data: &Path, model: &Path, cache: &CacheArgs, backbone: &BackboneArgs, output: &OutputArgs) -> Result<()> {
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
