//! The page's exports (the `export` feature's build only: `scripts/build-web-feature.sh export` makes it, and
//! the page loads it when an export is asked for, so that the first load does not carry it).

use candle_core::Device;
use wasm_bindgen::prelude::*;

use super::fail;
use crate::export::onnx::{to_onnx, OnnxWeights};
use crate::export::tfjs::to_tfjs;
use crate::export::web::{to_web, RUNTIME_FILES};
use crate::export::Exported;
use crate::model::{Backbone, Classifier};

/// A model — `wick` (a `.wick`) on `backbone_file`, or without it the backbone alone — in `format`:
/// `onnx`, `onnx-int8`, `tfjs` (a `.zip` of the TF.js folder with Teachable Machine's metadata) or
/// `web` (a `.zip` of the drop-in classifier's folder, with the runtime's built files, `runtime`, in
/// `RUNTIME_FILES`' order, which the page fetches from its own `runtime/`; empty for the other
/// formats). The same bytes `wick export` writes.
#[wasm_bindgen]
pub fn export_model(
    backbone_file: &[u8],
    wick: Option<Vec<u8>>,
    format: &str,
    unix_seconds: f64,
    runtime: Vec<js_sys::Uint8Array>,
) -> Result<Vec<u8>, JsError> {
    let base = Backbone::from_backbone_file(backbone_file, &Device::Cpu).map_err(fail)?;
    let classifier =
        wick.as_deref().map(|bytes| Classifier::from_bytes(bytes, &Device::Cpu)).transpose().map_err(fail)?;
    let model = Exported::new(base, classifier).map_err(fail)?;
    match format {
        "onnx" => to_onnx(&model, OnnxWeights::F32).map_err(fail),
        "onnx-int8" => to_onnx(&model, OnnxWeights::Int8).map_err(fail),
        "tfjs" => {
            let files = to_tfjs(&model, unix_seconds.max(0.0) as u64).map_err(fail)?;
            zip_stored("model", &files.files()).map_err(fail)
        }
        "web" => {
            if runtime.len() != RUNTIME_FILES.len() {
                let names = RUNTIME_FILES.join(", ");
                return Err(JsError::new(&format!(
                    "the web format needs the runtime's files ({names}), not {}",
                    runtime.len()
                )));
            }
            let runtime: Vec<Vec<u8>> = runtime.iter().map(js_sys::Uint8Array::to_vec).collect();
            let runtime = std::array::from_fn(|i| runtime[i].as_slice());
            let files = to_web(&model, backbone_file, wick.as_deref(), runtime).map_err(fail)?;
            let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            zip_stored("wick-classifier", &named).map_err(fail)
        }
        other => Err(JsError::new(&format!("no export format `{other}`: onnx, onnx-int8, tfjs or web"))),
    }
}

/// The files in a `.zip` of their own folder, uncompressed (the weights do not compress).
fn zip_stored(folder: &str, files: &[(&str, &[u8])]) -> zip::result::ZipResult<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(false);
    for (name, bytes) in files {
        zip.start_file(format!("{folder}/{name}"), options)?;
        std::io::Write::write_all(&mut zip, bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}
