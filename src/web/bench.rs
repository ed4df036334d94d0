//! The page's benchmarks, run by `benches/` in a browser: the backbone's forward and the head's fit.

use candle_core::{Device, Tensor};
use wasm_bindgen::prelude::*;

use super::{fail, now_ms};
use crate::data::feature_set::FeatureSet;
use crate::infer::MatmulPrecision;
use crate::model::Backbone;
use crate::train::head_fit::time_head_fit;

/// Backbone forward time in this tab, multiplying in `precision` (`int8` or `f32`):
/// `{"batch": B, "ms_per_image": …}` (for `benches/`).
#[wasm_bindgen]
pub fn bench_backbone(backbone_file: &[u8], batch: usize, iters: usize, precision: &str) -> Result<String, JsError> {
    let precision = MatmulPrecision::parse(precision).map_err(fail)?;
    let backbone =
        Backbone::from_backbone_file(backbone_file, &Device::Cpu).map(|b| b.with_precision(precision)).map_err(fail)?;
    let crop = backbone.meta.preprocess.crop as usize;
    let input = Tensor::randn(0f32, 1f32, (batch, 3, crop, crop), &Device::Cpu).map_err(fail)?;
    let run = || backbone.features(&input).and_then(|f| Ok(f.to_vec2::<f32>()?)).map_err(fail);
    run()?; // warm-up
    let start = now_ms();
    for _ in 0..iters {
        run()?;
    }
    let ms = (now_ms() - start) / (iters * batch) as f64;
    Ok(format!(r#"{{"batch":{batch},"ms_per_image":{ms}}}"#))
}

/// Head training time in this tab on the given features (row-major, `labels.len()` rows): a linear
/// head, `epochs` epochs of mini-batches of `batch_size`, best of `iters` runs after a warm-up.
/// Returns `{"ms": …, "train_accuracy": …}` (for `benches/`).
#[wasm_bindgen]
pub fn bench_head(
    features: &[f32],
    labels: &[u8],
    epochs: usize,
    batch_size: usize,
    iters: usize,
) -> Result<String, JsError> {
    let set = FeatureSet::from_rows(features.to_vec(), labels.iter().map(|&l| l as u32).collect()).map_err(fail)?;
    let (best, accuracy) = time_head_fit(&set, epochs, batch_size, iters, now_ms).map_err(fail)?;
    Ok(format!(r#"{{"ms":{best},"train_accuracy":{accuracy}}}"#))
}
