//! Float weights by name, and the one transformation every loader shares: folding each BatchNorm
//! into the convolution before it.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use crate::backbone::layers::ConvBn;
use crate::backbone::NetworkConfig;
use crate::checkpoint::StateDict;
use crate::error::{invalid, Result};

/// Named row-major f32 tensors, sorted by name (so anything written from them is reproducible).
#[derive(Debug, Clone, Default)]
pub struct FloatWeights(pub BTreeMap<String, (Vec<usize>, Vec<f32>)>);

/// Largest weight magnitude a backbone may hold: EfficientNet-Lite0's largest folded weight is 21
/// (its biases 46); a weight of 10⁴ is already far outside any trained network, and sums of such
/// weights overflow f32 within a few layers.
pub const MAX_WEIGHT: f32 = 1e4;
/// Largest bias magnitude a backbone may hold (a folded BatchNorm shift).
pub const MAX_BIAS: f32 = 1e6;

impl FloatWeights {
    /// Every value finite, weights (two or more dimensions) within ±[`MAX_WEIGHT`], biases within
    /// ±[`MAX_BIAS`]: what every loader checks after folding, and what the backbone file's writer
    /// and reader check (the one validation both use), naming the first tensor that is not.
    pub fn check(&self) -> Result<()> {
        for (name, (shape, values)) in &self.0 {
            let (limit, what) = if shape.len() >= 2 { (MAX_WEIGHT, "weight") } else { (MAX_BIAS, "bias") };
            if let Some(v) = values.iter().find(|v| !v.is_finite() || v.abs() > limit) {
                return Err(if v.is_finite() {
                    invalid!("`{name}` holds the {what} {v}, beyond ±{limit} (weights out of range)")
                } else {
                    invalid!("`{name}` holds a NaN or infinite value (after folding the BatchNorm into it, if any)")
                });
            }
        }
        Ok(())
    }

    pub fn var_builder(&self, device: &Device) -> Result<VarBuilder<'static>> {
        let tensors = self
            .0
            .iter()
            .map(|(name, (shape, data))| Ok((name.clone(), Tensor::from_slice(data, shape.as_slice(), device)?)))
            .collect::<Result<std::collections::HashMap<_, _>>>()?;
        Ok(VarBuilder::from_tensors(tensors, candle_core::DType::F32, device))
    }
}

/// `conv(x) · γ/√(σ²+ε) + (β − μ·γ/√(σ²+ε))`: the scale goes into each output channel's filter, the
/// shift becomes the conv's bias. The classifier (`_fc`, `fc`) is copied as is.
pub fn fold_batch_norms(state: &StateDict, cfg: &NetworkConfig) -> Result<FloatWeights> {
    fold_named(|name| state.f32_contiguous(name), cfg)
}

/// [`fold_batch_norms`] over any source of checkpoint-named tensors (a checkpoint, or the variables
/// of a fine-tuning run).
pub fn fold_named(
    tensor: impl Fn(&str) -> Result<(Vec<usize>, Vec<f32>)>,
    cfg: &NetworkConfig,
) -> Result<FloatWeights> {
    let mut out = BTreeMap::new();
    for ConvBn { conv, bn, shape: expected } in cfg.conv_bn_pairs() {
        let (shape, mut weight) = tensor(&format!("{conv}.weight"))?;
        if shape != expected {
            return Err(invalid!("`{conv}.weight` has shape {shape:?}, expected {expected:?}"));
        }
        let get = |p: &str| -> Result<Vec<f32>> {
            let (s, v) = tensor(&format!("{bn}.{p}"))?;
            if s != [shape[0]] {
                return Err(invalid!("`{bn}.{p}` has shape {s:?}, expected [{}]", shape[0]));
            }
            Ok(v)
        };
        let (gamma, beta, mean, var) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
        let per_channel = weight.len() / shape[0];
        let mut bias = Vec::with_capacity(shape[0]);
        for c in 0..shape[0] {
            let scale = gamma[c] as f64 / (var[c] as f64 + cfg.batch_norm_eps()).sqrt();
            for w in &mut weight[c * per_channel..(c + 1) * per_channel] {
                *w = (*w as f64 * scale) as f32;
            }
            bias.push((beta[c] as f64 - mean[c] as f64 * scale) as f32);
        }
        out.insert(format!("{conv}.weight"), (shape.clone(), weight));
        out.insert(format!("{conv}.bias"), (vec![shape[0]], bias));
    }
    let classifier = [("weight", vec![cfg.num_classes(), cfg.feature_dim()]), ("bias", vec![cfg.num_classes()])];
    for (p, expected) in classifier {
        let name = format!("{}.{p}", cfg.classifier());
        let (shape, values) = tensor(&name)?;
        if shape != expected {
            return Err(invalid!("`{name}` has shape {shape:?}, expected {expected:?}"));
        }
        out.insert(name, (shape, values));
    }
    Ok(FloatWeights(out))
}
