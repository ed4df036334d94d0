//! The classification head on backbone features: a linear layer (the default), or one hidden ReLU
//! layer with dropout and then a linear layer. Fitting it is [`crate::train::head_fit`]; a `.wick` holds one ([`crate::model::Classifier`]).
//!
//! # Shapes
//! Features `(N, input_dim)` → logits and probabilities `(N, classes)`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::ops::softmax_last_dim;

use crate::data::feature_set::FeatureSet;
use crate::error::{invalid, Result};
use crate::eval::metrics::Metrics;
use crate::train::config::HeadSpec;
use crate::train::report::{EpochStats, Stop};
use crate::util::rng::Rng;

pub struct Head {
    pub spec: HeadSpec,
    hidden: Option<(Var, Var)>,
    output: (Var, Var),
}

impl Head {
    /// PyTorch's `nn.Linear` initialisation: weights and biases uniform in ±1/√fan_in.
    pub fn init(spec: HeadSpec, rng: &mut Rng, device: &Device) -> Result<Self> {
        let mut linear = |fan_in: usize, fan_out: usize| -> Result<(Var, Var)> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut uniform = |n| (0..n).map(|_| (2.0 * rng.uniform() - 1.0) * bound).collect::<Vec<f32>>();
            let weight = Tensor::from_vec(uniform(fan_in * fan_out), (fan_out, fan_in), device)?;
            let bias = Tensor::from_vec(uniform(fan_out), fan_out, device)?;
            Ok((Var::from_tensor(&weight)?, Var::from_tensor(&bias)?))
        };
        let hidden = spec.hidden.map(|units| linear(spec.input_dim, units)).transpose()?;
        let output = linear(spec.hidden.unwrap_or(spec.input_dim), spec.classes)?;
        Ok(Self { spec, hidden, output })
    }

    /// The weights by name: `hidden.weight`, `hidden.bias` (hidden-layer heads), `output.weight`, `output.bias`.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.named_vars().into_iter().map(|(name, var)| (name, var.as_tensor().clone())).collect()
    }

    /// The trainable variables, named as in [`Head::tensors`].
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut layers = Vec::new();
        if let Some(hidden) = &self.hidden {
            layers.push(("hidden", hidden));
        }
        layers.push(("output", &self.output));
        layers
            .into_iter()
            .flat_map(|(name, (w, b))| [(format!("{name}.weight"), w.clone()), (format!("{name}.bias"), b.clone())])
            .collect()
    }

    /// Rebuilds a head from [`Head::tensors`]' output, checking every shape against `spec`.
    pub fn from_tensors(spec: HeadSpec, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let get = |name: &str, shape: &[usize]| -> Result<Var> {
            let t = tensors.get(name).ok_or_else(|| invalid!("the head has no `{name}` weights"))?;
            if t.dims() != shape {
                return Err(invalid!("the head's `{name}` has shape {:?}, expected {shape:?}", t.dims()));
            }
            Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
        };
        let layer = |name: &str, fan_in: usize, fan_out: usize| -> Result<(Var, Var)> {
            Ok((get(&format!("{name}.weight"), &[fan_out, fan_in])?, get(&format!("{name}.bias"), &[fan_out])?))
        };
        let hidden = spec.hidden.map(|units| layer("hidden", spec.input_dim, units)).transpose()?;
        let output = layer("output", spec.hidden.unwrap_or(spec.input_dim), spec.classes)?;
        Ok(Self { spec, hidden, output })
    }

    /// The output layer's weight and bias (what the L-BFGS solver sets directly).
    pub(crate) fn output(&self) -> &(Var, Var) {
        &self.output
    }

    fn vars(&self) -> Vec<Var> {
        self.named_vars().into_iter().map(|(_, var)| var).collect()
    }

    /// Features (N, input_dim) → logits (N, classes). With `dropout`, zeroes hidden units at that rate
    /// (and scales the rest up), drawing the mask from the run's seeded generator.
    pub fn logits(&self, features: &Tensor, dropout: Option<(f32, &mut Rng)>) -> Result<Tensor> {
        let linear = |x: &Tensor, (w, b): &(Var, Var)| x.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor());
        let mut x = features.clone();
        if let Some(layer) = &self.hidden {
            x = linear(&x, layer)?.relu()?;
            if let Some((rate, rng)) = dropout.filter(|(rate, _)| *rate > 0.0) {
                let keep = 1.0 / (1.0 - rate);
                let mask: Vec<f32> =
                    (0..x.elem_count()).map(|_| if rng.uniform() < rate { 0.0 } else { keep }).collect();
                let mask = Tensor::from_vec(mask, x.dims(), x.device())?;
                x = (x * mask)?;
            }
        }
        Ok(linear(&x, &self.output)?)
    }

    pub fn probabilities(&self, features: &Tensor) -> Result<Tensor> {
        Ok(softmax_last_dim(&self.logits(features, None)?)?)
    }

    /// How well this head classifies `set` (its rows named by `names`) into `labels`: what `wick
    /// train`, `wick cifar10` and the web app report after training.
    pub fn evaluate(&self, set: &FeatureSet, labels: &[String], names: &[String], device: &Device) -> Result<Metrics> {
        let probabilities = self.probabilities(&set.tensor(device)?)?.to_vec2::<f32>()?;
        Ok(Metrics::compute(labels, &set.labels, &probabilities, names))
    }

    pub(crate) fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(self.vars().iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?)
    }

    pub(crate) fn restore(&self, snapshot: &[Tensor]) -> Result<()> {
        for (var, saved) in self.vars().iter().zip(snapshot) {
            var.set(saved)?;
        }
        Ok(())
    }
}

/// A trained head and how its training went: what fitting a head, training the last layers and
/// fine-tuning all hand to [`crate::model::classifier::Classifier`].
pub struct Trained {
    pub head: Head,
    pub history: Vec<EpochStats>,
    /// The epoch whose weights the head has: the lowest validation loss, or the last good epoch.
    pub best_epoch: usize,
    pub stop: Stop,
}
