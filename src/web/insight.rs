//! What the page shows about a project's data: the map of its samples and the label check.

use candle_core::Device;
use wasm_bindgen::prelude::*;

use super::fail;
use crate::data::feature_set::FeatureSet;
use crate::eval::check::find_suspects;

/// The data map: each sample's features (rows of `dim`) → its 2-D PCA coordinates, x then y.
#[wasm_bindgen]
pub fn project_map(features: &[f32], dim: usize) -> Result<Vec<f32>, JsError> {
    let points = crate::eval::projection::pca_2d(features, dim, &Device::Cpu).map_err(fail)?;
    Ok(points.into_iter().flatten().collect())
}

/// Suspects listed by [`check_project_labels`].
const CHECK_LISTED: usize = 50;

/// The label check ([`crate::eval::check`]) over every sample: JSON `{"suspects": [the 50 most
/// doubtful, each {row, given, suggested, given_probability, suggested_probability,
/// probably_mislabelled}], "predicted": [each row's out-of-fold class]}`.
#[wasm_bindgen]
pub fn check_project_labels(features: &[f32], labels: &[u32], classes: usize, seed: u64) -> Result<String, JsError> {
    let set = FeatureSet::from_rows(features.to_vec(), labels.to_vec()).map_err(fail)?;
    let report = find_suspects(&set, classes, seed, &Device::Cpu, |_, _| {}).map_err(fail)?;
    let listed: Vec<serde_json::Value> = report
        .suspects
        .iter()
        .take(CHECK_LISTED)
        .map(|s| {
            let mut v = serde_json::to_value(s).expect("serialises");
            v["probably_mislabelled"] = s.probably_mislabelled().into();
            v
        })
        .collect();
    Ok(serde_json::json!({ "suspects": listed, "predicted": report.predicted }).to_string())
}
