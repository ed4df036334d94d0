//! `wick export`: a model (or the backbone alone) in another tool's format.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::InFile;
use crate::export::onnx::to_onnx;
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
}

/// The flags of `wick export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The `.wick` model to export; without it, the backbone alone with its own classes.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Where to write the export.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace what is at --out.
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
        check_outputs(&[("--out", &self.out, Output::Foreign { force: self.force })], &inputs)?;
        let base = self.backbone.load()?;
        let bytes = match &self.model {
            Some(path) => {
                let classifier = Classifier::from_bytes(&read(path)?, base.device()).in_file(path.display())?;
                let backbone = classifier.feature_extractor(&base).in_file(path.display())?;
                self.write(&Exported::model(&classifier, &backbone))?
            }
            None => self.write(&Exported::backbone(&base))?,
        };
        write_atomically(&self.out, &bytes)?;
        eprintln!("wrote {} ({:.2} MB)", self.out.display(), bytes.len() as f64 / 1e6);
        Ok(())
    }

    fn write(&self, model: &Exported) -> Result<Vec<u8>> {
        Ok(match self.format {
            ExportFormat::Onnx => to_onnx(model)?,
        })
    }
}
