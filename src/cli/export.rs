//! `wick export`: a model (or the backbone alone) in another tool's format.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::error::InFile;
use crate::export::onnx::{to_onnx, OnnxWeights};
use crate::export::tfjs::to_tfjs;
use crate::export::Exported;
use crate::model::Classifier;

use super::flags::*;
use super::shared::*;

/// The formats `wick export` writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ExportFormat {
    /// One ONNX graph (opset 13) from pixels to class probabilities: onnxruntime (Python, C++,
    /// Node, the browser's onnxruntime-web), onnx2tf for TFLite.
    Onnx,
    /// A folder: a TensorFlow.js layers model (model.json, weights.bin) with Teachable Machine's
    /// metadata.json: tf.loadLayersModel, @teachablemachine/image, ml5.
    Tfjs,
}

/// The flags of `wick export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The `.wick` model to export; without it, the backbone alone with its own classes.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Where to write the export: a file (onnx) or a folder (tfjs).
    #[arg(long)]
    pub out: PathBuf,
    /// onnx: weights in int8 with a scale per output channel (a file about a quarter the size;
    /// answers within a few hundredths of the f32 file's).
    #[arg(long)]
    pub quantize: bool,
    /// Replace what is at --out (a folder only when it holds nothing but an earlier export).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub backbone: BackboneArgs,
}

impl ExportArgs {
    pub fn run(self) -> Result<()> {
        let mut inputs = self.backbone.inputs();
        if let Some(model) = &self.model {
            inputs.push(("--model", model));
        }
        match self.format {
            ExportFormat::Onnx => {
                check_outputs(&[("--out", &self.out, Output::Foreign { force: self.force })], &inputs)?
            }
            ExportFormat::Tfjs => {
                if self.quantize {
                    bail!("--quantize is for --format onnx (the TF.js folder keeps float32 weights)");
                }
                check_folder(&self.out, self.force)?
            }
        }
        let base = self.backbone.load()?;
        let model = match &self.model {
            Some(path) => {
                let classifier = Classifier::from_bytes(&read(path)?, base.device()).in_file(path.display())?;
                Exported::new(base, Some(classifier)).in_file(path.display())?
            }
            None => Exported::new(base, None)?,
        };
        match self.format {
            ExportFormat::Onnx => {
                let weights = if self.quantize { OnnxWeights::Int8 } else { OnnxWeights::F32 };
                let bytes = to_onnx(&model, weights)?;
                write_atomically(&self.out, &bytes)?;
                eprintln!("wrote {} ({:.2} MB)", self.out.display(), bytes.len() as f64 / 1e6);
            }
            ExportFormat::Tfjs => {
                let files = to_tfjs(&model, unix_now())?;
                write_folder(&self.out, &files.files())?;
                let bytes: usize = files.files().iter().map(|(_, b)| b.len()).sum();
                eprintln!(
                    "wrote {} (model.json, weights.bin, metadata.json: {:.2} MB)",
                    self.out.display(),
                    bytes as f64 / 1e6
                );
            }
        }
        Ok(())
    }
}

/// The files a folder export writes: all a folder may hold for `--force` to replace it.
const FOLDER_FILES: [&str; 3] = ["model.json", "weights.bin", "metadata.json"];

/// A folder export goes where nothing is, or, with `force`, where an earlier one is and nothing else.
fn check_folder(out: &Path, force: bool) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(out) else { return Ok(()) };
    if !meta.is_dir() {
        bail!(
            "--out: {} exists and is not a folder; it is not replaced (move it, or choose another path)",
            out.display()
        );
    }
    if !force {
        bail!("--out: {} exists; it is not replaced without --force", out.display());
    }
    let entries = std::fs::read_dir(out).with_context(|| format!("{}: cannot read the folder", out.display()))?;
    for entry in entries {
        let name = entry?.file_name();
        if !FOLDER_FILES.iter().any(|f| name == *f) {
            bail!(
                "--out: {} holds {}, which is not part of an export: it is not replaced, even with --force",
                out.display(),
                crate::util::printable(&name.to_string_lossy())
            );
        }
    }
    Ok(())
}

/// Writes the files into a fresh folder beside `out`, then puts it in `out`'s place: a crash leaves
/// the old export or the new one, never half of one.
fn write_folder(out: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("{}: cannot create the folder", tmp.display()))?;
    for (name, bytes) in files {
        write_atomically(&tmp.join(name), bytes)?;
    }
    if out.exists() {
        let mut old = out.as_os_str().to_owned();
        old.push(format!(".old{}", std::process::id()));
        let old = PathBuf::from(old);
        std::fs::rename(out, &old)
            .with_context(|| format!("{}: cannot move the earlier export aside", out.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))?;
        for name in FOLDER_FILES {
            let _ = std::fs::remove_file(old.join(name));
        }
        std::fs::remove_dir(&old).with_context(|| format!("{}: cannot remove the earlier export", old.display()))?;
    } else {
        std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))?;
    }
    Ok(())
}
