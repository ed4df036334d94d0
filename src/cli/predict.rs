//! `wick predict`: ranked classes of images, with a trained `.wick` or the backbone's own classifier.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::RgbImage;
use serde::Serialize;

use wick::backbone::{Backbone, Prediction};
use wick::data::preprocess::decode_image;
use wick::error::InFile;
use wick::eval::class_map::{overlay, where_it_looks};
use wick::formats::classifier::Classifier;

use super::flags::*;
use super::shared::*;

#[derive(Serialize)]
pub struct PredictRecord<'a> {
    pub path: String,
    pub classes: &'a [Prediction],
    /// With `--heatmap`: the picture of where the model looks for its top class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<String>,
}

/// Images that fail to load are reported (naming the file) and skipped; the rest are classified.
pub fn predict(
    paths: &[PathBuf],
    model: Option<&Path>,
    args: &BackboneArgs,
    top: usize,
    json: bool,
    heatmap_dir: Option<&Path>,
) -> Result<()> {
    if let Some(dir) = heatmap_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the heatmap folder {}", dir.display()))?;
    }
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
        let ranked: Vec<Vec<Prediction>> = match &classifier {
            Some(c) => {
                let features = backbone.features(&backbone.input_tensor(&images)?)?;
                c.probabilities(&features)?.iter().map(|p| c.ranked(p, top.max(1))).collect()
            }
            None => backbone.top_k(&images, top.max(1))?,
        };
        for ((name, image), classes) in names.iter().zip(&images).zip(ranked) {
            let heatmap = match heatmap_dir {
                Some(dir) => Some(draw_heatmap(&backbone, classifier.as_ref(), image, classes[0].index, dir, name)?),
                None => None,
            };
            let classes = &classes[..top.min(classes.len())];
            let heatmap = heatmap.map(|p| p.display().to_string());
            if json {
                println!("{}", serde_json::to_string(&PredictRecord { path: name.clone(), classes, heatmap })?);
            } else {
                println!("{name}");
                for p in classes {
                    println!("  {:>6.2}%  {:>4}  {}", 100.0 * p.probability, p.index, p.label);
                }
                if let Some(path) = heatmap {
                    println!("  where the model looks: {path}");
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be read", paths.len());
    }
    Ok(())
}

/// Draws where the model (the `.wick` head, or the backbone's own classifier) looks for `class` in
/// `image` into `dir`, named after the image file; returns the path written.
fn draw_heatmap(
    backbone: &Backbone,
    classifier: Option<&Classifier>,
    image: &RgbImage,
    class: usize,
    dir: &Path,
    name: &str,
) -> Result<PathBuf> {
    let (maps, _) = where_it_looks(backbone, classifier.map(|c| &c.head), image)?;
    let drawn = overlay(&backbone.meta.preprocess.view(image), &maps.of(class), (maps.h, maps.w));
    let path = free_name(dir, &heatmap_stem(name))?;
    let mut png = Vec::new();
    drawn.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    // `create_new`: a file that appeared since the name was chosen is not replaced either.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, &png).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The image file's name without its folder and extension, with anything but letters, digits,
/// `-`, `_` and `.` replaced by `_` (a name from the command line only ever names a file in DIR).
fn heatmap_stem(name: &str) -> String {
    let stem = Path::new(name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String = stem.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() {
        "image".to_string()
    } else {
        clean
    }
}

/// `DIR/<stem>.heatmap.png`, or with `-2`, `-3`, … before the extension when that is taken.
fn free_name(dir: &Path, stem: &str) -> Result<PathBuf> {
    for n in 1..10_000 {
        let name = if n == 1 { format!("{stem}.heatmap.png") } else { format!("{stem}-{n}.heatmap.png") };
        let path = dir.join(name);
        if !path.exists() {
            return Ok(path);
        }
    }
    bail!("{}: no free name for {stem}.heatmap.png", dir.display())
}
