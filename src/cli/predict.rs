//! `wick predict`: ranked classes of images, with a trained `.wick` or the backbone's own classifier.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use wick::backbone::Prediction;
use wick::data::preprocess::decode_image;
use wick::error::InFile;
use wick::formats::classifier::Classifier;

use super::flags::*;
use super::shared::*;

#[derive(Serialize)]
pub struct PredictRecord<'a> {
    pub path: String,
    pub classes: &'a [Prediction],
}

/// Images that fail to load are reported (naming the file) and skipped; the rest are classified.
pub fn predict(paths: &[PathBuf], model: Option<&Path>, args: &BackboneArgs, top: usize, json: bool) -> Result<()> {
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
