//! `wick export`: a model (or the backbone alone) in another tool's format.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::error::InFile;
use crate::export::onnx::{to_onnx, OnnxWeights};
use crate::export::tfjs::{to_tfjs, TfjsFiles};
use crate::export::web::{to_web, RUNTIME_FILES};
use crate::export::{web, Exported};
use crate::model::{Backbone, Classifier};

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
    /// A folder for any web page: the model with Wick's runtime (wasm and the ES module wick.js:
    /// load, classify, features, off the page's thread), wick.d.ts, package.json and a demo index.html.
    Web,
}

/// Where `wick export --format web` finds the runtime without --runtime: the build's own (Trunk writes
/// it with the page: `trunk build --release`, or `make dist`).
const BUILT_RUNTIME: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/runtime");

/// The flags of `wick export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The `.wick` model to export; without it, the backbone alone with its own classes.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Where to write the export: a file (onnx) or a folder (tfjs, web).
    #[arg(long)]
    pub out: PathBuf,
    /// web: the folder of the built runtime (wick_runtime.js, wick_runtime_bg.wasm and their
    /// relaxed-SIMD twins wick_runtime_relaxed*) [default: this checkout's dist/runtime, which
    /// `make dist` writes].
    #[arg(long)]
    pub runtime: Option<PathBuf>,
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
        if self.quantize && !matches!(self.format, ExportFormat::Onnx) {
            bail!("--quantize is for --format onnx (the other formats keep the backbone's own weights)");
        }
        if self.runtime.is_some() && !matches!(self.format, ExportFormat::Web) {
            bail!("--runtime is for --format web");
        }
        match self.format {
            ExportFormat::Onnx => {
                check_outputs(&[("--out", &self.out, Output::Foreign { force: self.force })], &inputs)?
            }
            ExportFormat::Tfjs => check_folder(&self.out, self.force, &TfjsFiles::NAMES)?,
            ExportFormat::Web => check_folder(&self.out, self.force, &web::FILES)?,
        }
        let wick = self.model.as_ref().map(|path| read(path)).transpose()?;
        // The web export ships a backbone file, which --pth's checkpoint is converted to first (and
        // the model is built from that file, so that what is checked is what is shipped).
        let backbone_file = match self.format {
            ExportFormat::Web => Some(self.backbone.file()?),
            _ => None,
        };
        let base = match &backbone_file {
            Some(bytes) => Backbone::from_backbone_file(bytes, &parse_device(&self.backbone.device)?)?,
            None => self.backbone.load()?,
        };
        let model = match (&self.model, &wick) {
            (Some(path), Some(bytes)) => {
                let classifier = Classifier::from_bytes(bytes, base.device()).in_file(path.display())?;
                Exported::new(base, Some(classifier)).in_file(path.display())?
            }
            _ => Exported::new(base, None)?,
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
                write_folder(&self.out, &files.files(), &TfjsFiles::NAMES)?;
                let bytes: usize = files.files().iter().map(|(_, b)| b.len()).sum();
                eprintln!(
                    "wrote {} (model.json, weights.bin, metadata.json: {:.2} MB)",
                    self.out.display(),
                    bytes as f64 / 1e6
                );
            }
            ExportFormat::Web => {
                let folder = self.runtime.clone().unwrap_or_else(|| PathBuf::from(BUILT_RUNTIME));
                let runtime = RUNTIME_FILES
                    .iter()
                    .map(|name| read_runtime(&folder, name, self.runtime.is_none()))
                    .collect::<Result<Vec<_>>>()?;
                let runtime = std::array::from_fn(|i| runtime[i].as_slice());
                let backbone_file = backbone_file.expect("read for the web format");
                let files = to_web(&model, &backbone_file, wick.as_deref(), runtime)
                    .with_context(|| format!("the runtime in {}", folder.display()))?;
                let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
                write_folder(&self.out, &named, &web::FILES)?;
                let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
                eprintln!(
                    "wrote {} ({} files, {:.2} MB): serve it and open index.html, or import wick.js",
                    self.out.display(),
                    files.len(),
                    bytes as f64 / 1e6
                );
            }
        }
        Ok(())
    }
}

/// One of the runtime's built files, or an error saying how to build it.
fn read_runtime(folder: &Path, name: &str, default: bool) -> Result<Vec<u8>> {
    let path = folder.join(name);
    if !path.is_file() {
        let how = if default {
            "build it with `make dist` (or `trunk build --release`), or pass --runtime with the folder of a built runtime"
        } else {
            "--runtime takes the folder that scripts/build-web-feature.sh runtime writes (dist/runtime after `make dist`)"
        };
        bail!("--format web needs Wick's web runtime, and {} is missing: {how}", path.display());
    }
    read(&path)
}

/// A folder export goes where nothing is, or, with `force`, where an earlier one is and nothing else
/// (`names`: the files an export of its format may hold).
fn check_folder(out: &Path, force: bool, names: &[&str]) -> Result<()> {
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
        if !names.iter().any(|f| name == *f) {
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
/// the old export or the new one, never half of one. The earlier export's `names` are removed.
fn write_folder(out: &Path, files: &[(&str, &[u8])], names: &[&str]) -> Result<()> {
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
        for name in names {
            let _ = std::fs::remove_file(old.join(name));
        }
        std::fs::remove_dir(&old).with_context(|| format!("{}: cannot remove the earlier export", old.display()))?;
    } else {
        std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))?;
    }
    Ok(())
}
