//! The optimizers, written out (rather than candle-nn's) so that their state can be checkpointed
//! and restored exactly, and so that weight decay follows one rule for every network.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum (PyTorch's `SGD(nesterov=True)`): weight decay joins the gradient.
    Sgd,
    /// AdamW (β = 0.9, 0.999, ε = 1e-8): weight decay is decoupled from the gradient.
    AdamW,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sgd" => Ok(Self::Sgd),
            "adamw" => Ok(Self::AdamW),
            other => Err(format!("`{other}`: expected sgd (Nesterov momentum) or adamw")),
        }
    }
}

pub struct Param {
    pub name: String,
    pub var: Var,
    decay: bool,
    /// SGD: [momentum buffer]; AdamW: [first moment, second moment].
    pub state: Vec<Tensor>,
}

pub struct Optimizer {
    kind: OptimizerKind,
    /// SGD's momentum (AdamW's β are fixed).
    momentum: f64,
    weight_decay: f64,
    pub params: Vec<Param>,
    /// Steps taken (AdamW's bias correction and the learning-rate schedule count them).
    pub steps: usize,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, momentum: f64, weight_decay: f64, named: Vec<(String, Var)>) -> Result<Self> {
        let buffers = match kind {
            OptimizerKind::Sgd => 1,
            OptimizerKind::AdamW => 2,
        };
        let params = named
            .into_iter()
            .map(|(name, var)| {
                let state = (0..buffers).map(|_| var.zeros_like()).collect::<candle_core::Result<_>>()?;
                // Weight decay by rank, as nanoGPT does it: matrices and filters (rank ≥ 2) decay;
                // BatchNorm's scale and shift and every bias (rank 1) do not — whatever a family
                // names its layers.
                let decay = var.rank() >= 2;
                Ok(Param { name, var, decay, state })
            })
            .collect::<Result<_>>()?;
        Ok(Self { kind, momentum, weight_decay, params, steps: 0 })
    }

    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        for p in &mut self.params {
            let Some(grad) = grads.get(p.var.as_tensor()) else { continue };
            // Gradients of Candle's own convolutions come out attached to the step's graph; a
            // momentum buffer built from one would keep every step's activations alive.
            let grad = &grad.detach();
            let weight = p.var.as_tensor().detach();
            let decay = if p.decay { self.weight_decay } else { 0.0 };
            let updated = match self.kind {
                OptimizerKind::Sgd => {
                    let grad = (grad + (&weight * decay)?)?;
                    let buffer = ((&p.state[0] * self.momentum)? + &grad)?;
                    let nesterov = (&grad + (&buffer * self.momentum)?)?;
                    p.state[0] = buffer;
                    (weight - (nesterov * lr)?)?
                }
                OptimizerKind::AdamW => {
                    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8);
                    let m = ((&p.state[0] * beta1)? + (grad * (1.0 - beta1))?)?;
                    let v = ((&p.state[1] * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
                    let m_hat = (&m / (1.0 - beta1.powi(self.steps as i32)))?;
                    let v_hat = (&v / (1.0 - beta2.powi(self.steps as i32)))?;
                    p.state = vec![m, v];
                    ((weight * (1.0 - lr * decay))? - ((m_hat / (v_hat.sqrt()? + eps)?)? * lr)?)?
                }
            };
            p.var.set(&updated)?;
        }
        Ok(())
    }
}
