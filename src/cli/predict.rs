//! `wick predict`: ranked classes of images, with a trained `.wick` or the backbone's own classifier.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::RgbImage;
use serde::Serialize;

use crate::data::dataset::regular_file;
use crate::data::preprocess::{decode_image, decode_waves, decoded_bytes, DECODE_BUDGET};
use crate::error::InFile;
use crate::eval::class_map::{overlay, where_it_looks};
use crate::model::Classifier;
use crate::model::{Backbone, Prediction};
use crate::util::printable;

use super::flags::*;
use super::shared::*;

/// The flags of `wick predict`.
#[derive(clap::Args)]
pub struct PredictArgs {
    /// Image files (JPEG, PNG, WebP, GIF, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A `.wick` model from `wick train` (or exported from the web app).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// One JSON record per image (path and ranked classes) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw where the model looks for its top class (a class activation map over what the
    /// network saw) into DIR, as `<image name>.heatmap.png` (never replacing a file: a taken
    /// name gets `-2`, `-3`, …).
    #[arg(long, value_name = "DIR")]
    pub heatmap: Option<PathBuf>,
}

#[derive(Serialize)]
pub struct PredictRecord<'a> {
    pub path: String,
    pub classes: &'a [Prediction],
    /// With `--heatmap`: the picture of where the model looks for its top class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<String>,
}

/// Images that fail to load are reported (naming the file) and skipped; the rest are classified.
/// Images are decoded in waves within the decode budget ([`decode_waves`]), never all at once. A
/// heatmap that cannot be written is named and skipped: the other images still get their answers
/// and maps, and the exit status says something failed.
impl PredictArgs {
    pub fn run(self) -> Result<()> {
        predict(&self.images, self.model.as_deref(), &self.backbone, self.top, self.json, self.heatmap.as_deref())
    }
}

fn predict(
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
    let mut maps_failed = 0;
    for chunk in paths.chunks(16) {
        // Read (regular files only: a FIFO or a device would never end), then decode within the budget.
        let mut files = Vec::new();
        for path in chunk {
            match regular_file(path).map_err(anyhow::Error::from).and_then(|()| read(path)) {
                Ok(bytes) => files.push((path, bytes)),
                Err(e) => {
                    eprintln!("error: {}", printable(&format!("{e:#}")));
                    failed += 1;
                }
            }
        }
        let costs: Vec<u64> = files.iter().map(|(_, bytes)| decoded_bytes(bytes)).collect();
        for wave in decode_waves(&costs, DECODE_BUDGET) {
            let mut images = Vec::new();
            let mut names = Vec::new();
            for (path, bytes) in &files[wave] {
                match decode_image(bytes).in_file(path.display()) {
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
                    Some(dir) => match draw_heatmap(&backbone, classifier.as_ref(), image, classes[0].index, dir, name)
                    {
                        Ok(path) => Some(path),
                        Err(e) => {
                            eprintln!("error: {}: the heatmap: {}", printable(name), printable(&format!("{e:#}")));
                            maps_failed += 1;
                            None
                        }
                    },
                    None => None,
                };
                let classes = &classes[..top.min(classes.len())];
                let heatmap = heatmap.map(|p| p.display().to_string());
                if json {
                    println!("{}", serde_json::to_string(&PredictRecord { path: name.clone(), classes, heatmap })?);
                } else {
                    println!("{}", printable(name));
                    for p in classes {
                        println!("  {:>6.2}%  {:>4}  {}", 100.0 * p.probability, p.index, printable(&p.label));
                    }
                    if let Some(path) = heatmap {
                        println!("  where the model looks: {}", printable(&path));
                    }
                }
            }
        }
    }
    match (failed, maps_failed) {
        (0, 0) => Ok(()),
        (0, maps) => bail!("{maps} of {} heatmaps could not be written", paths.len()),
        (images, 0) => bail!("{images} of {} images could not be read", paths.len()),
        (images, maps) => {
            bail!("{images} of {} images could not be read, and {maps} heatmaps not written", paths.len())
        }
    }
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

/// Longest file name most file systems take, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// The image file's name without its folder and extension, with anything but letters, digits,
/// `-`, `_` and `.` replaced by `_` (a name from the command line only ever names a file in DIR),
/// cut so that the heatmap's name, with its suffix, fits a file name.
fn heatmap_stem(name: &str) -> String {
    let stem = Path::new(name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String = stem.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let mut clean = clean.trim_start_matches('.').to_string();
    // Room for the longest suffix `free_name` adds: `-9999.heatmap.png`.
    let room = MAX_NAME_BYTES - "-9999.heatmap.png".len();
    while clean.len() > room {
        clean.pop();
    }
    if clean.is_empty() {
        "image".to_string()
    } else {
        clean
    }
}

/// `DIR/<stem>.heatmap.png`, or with `-2`, `-3`, … before the extension when that is taken (by a
/// file, a folder, or a link, even one that points nowhere).
fn free_name(dir: &Path, stem: &str) -> Result<PathBuf> {
    for n in 1..10_000 {
        let name = if n == 1 { format!("{stem}.heatmap.png") } else { format!("{stem}-{n}.heatmap.png") };
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(path);
        }
    }
    bail!("{}: no free name for {stem}.heatmap.png", dir.display())
}
