//! `wick convert`: a PyTorch checkpoint → the int8 backbone file.

use std::path::Path;

use anyhow::Result;

use wick::error::InFile;
use wick::model::convert_checkpoint;

use super::shared::*;

pub fn convert(pth: &Path, out: &Path) -> Result<()> {
    let bytes = convert_checkpoint(&read(pth)?).in_file(pth.display())?;
    write_atomically(out, &bytes)?;
    eprintln!("wrote {} ({:.2} MB)", out.display(), bytes.len() as f64 / 1e6);
    Ok(())
}
