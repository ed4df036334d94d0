//! Limited-memory BFGS (Nocedal & Wright, algorithm 7.4) with a backtracking Armijo line search:
//! the solver scikit-learn's `LogisticRegression` uses by default, for the linear head's smooth,
//! convex loss, and that loss ([`LinearObjective`]) with its gradient in closed form.

use std::collections::VecDeque;

use candle_core::{Tensor, D};
use candle_nn::ops::log_softmax;

use crate::error::Result;
use crate::kernels::map_parallel;
use crate::model::head::Head;

/// Correction pairs kept (scikit-learn's and SciPy's default is 10).
const MEMORY: usize = 10;

/// When to stop: after `max_iterations`, or once the largest gradient entry is below `tolerance`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_iterations: usize,
    pub tolerance: f64,
}

/// Minimises `objective` from `x` (updated in place); `objective` returns the value and gradient at a
/// point. Returns the final value. Stops early when a line search finds no decrease (the minimum,
/// up to rounding).
pub fn minimize(
    x: &mut [f64],
    limits: Limits,
    mut objective: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>)>,
) -> Result<f64> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let (mut value, mut grad) = objective(x)?;
    let mut pairs: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(MEMORY);
    for _ in 0..limits.max_iterations {
        if grad.iter().fold(0f64, |m, g| m.max(g.abs())) < limits.tolerance {
            break;
        }
        // Two-loop recursion: direction = −H·grad, with H scaled by the newest pair's curvature.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let alpha = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= alpha * yi);
            alphas.push(alpha);
        }
        let gamma = pairs.back().map_or(1.0 / dot(&grad, &grad).sqrt().max(1e-12), |(s, y, _)| dot(s, y) / dot(y, y));
        q.iter_mut().for_each(|qi| *qi *= gamma);
        for ((s, y, rho), alpha) in pairs.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (alpha - beta) * si);
        }
        let direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&grad, &direction);
        if slope >= 0.0 {
            pairs.clear(); // not a descent direction (rounding): restart from steepest descent
            continue;
        }
        // Backtracking line search on the Armijo condition.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let candidate: Vec<f64> = x.iter().zip(&direction).map(|(xi, di)| xi + step * di).collect();
            let (v, g) = objective(&candidate)?;
            if v.is_finite() && v <= value + 1e-4 * step * slope {
                accepted = Some((candidate, v, g));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_value, next_grad)) = accepted else { break };
        let s: Vec<f64> = next.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let curvature = dot(&s, &y);
        if curvature > 1e-10 {
            if pairs.len() == MEMORY {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / curvature));
        }
        x.copy_from_slice(&next);
        let decrease = value - next_value;
        (value, grad) = (next_value, next_grad);
        if decrease <= 1e-12 * value.abs().max(1.0) {
            break;
        }
    }
    Ok(value)
}

/// Row blocks `(first, count)` of `rows` rows, one per thread, where Candle would multiply on one
/// thread but the pool has more: the browser's multi-threaded build, whose Web Workers Candle cannot
/// see. Empty elsewhere (natively Candle's matmul splits its work itself) and for few rows.
fn row_blocks(rows: usize) -> Vec<(usize, usize)> {
    const MIN_ROWS: usize = 64;
    let threads = crate::kernels::available_threads();
    if !crate::kernels::parallel(threads) || candle_core::utils::get_num_threads() > 1 || rows < 2 * MIN_ROWS {
        return Vec::new();
    }
    let per_block = rows.div_ceil(threads).max(MIN_ROWS);
    (0..rows).step_by(per_block).map(|first| (first, per_block.min(rows - first))).collect()
}

/// The linear head's L-BFGS objective: the class-weighted mean cross-entropy of `softmax(X·Wᵀ + b)`
/// plus `λ/2 · ‖W‖²` (the bias is not penalised, as in scikit-learn), with its gradient in closed
/// form. The parameters are `W` row by row, then `b`.
#[derive(Clone)]
pub(crate) struct LinearObjective {
    x: Tensor,
    /// Row blocks `(first, count)` of `x` multiplied on threads of their own ([`row_blocks`]).
    blocks: Vec<(usize, usize)>,
    /// Each row's one-hot target times its weight `w_{y_i} / Σ_j w_{y_j}`.
    weighted_targets: Tensor,
    /// Each row's weight, as a column.
    row_weights: Tensor,
}

impl LinearObjective {
    pub(crate) fn new(x: &Tensor, labels: &[u32], class_weights: &[f32]) -> Result<Self> {
        let classes = class_weights.len();
        let total: f32 = labels.iter().map(|&l| class_weights[l as usize]).sum();
        let row_weights: Vec<f32> = labels.iter().map(|&l| class_weights[l as usize] / total).collect();
        let mut targets = vec![0f32; labels.len() * classes];
        for (i, &l) in labels.iter().enumerate() {
            targets[i * classes + l as usize] = row_weights[i];
        }
        let device = x.device();
        Ok(Self {
            x: x.clone(),
            blocks: row_blocks(labels.len()),
            weighted_targets: Tensor::from_vec(targets, (labels.len(), classes), device)?,
            row_weights: Tensor::from_vec(row_weights, (labels.len(), 1), device)?,
        })
    }

    pub(crate) fn params_of(&self, head: &Head) -> Result<Vec<f64>> {
        let (w, b) = head.output();
        let mut params: Vec<f64> = w.as_tensor().flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        params.extend(b.as_tensor().to_vec1::<f32>()?.into_iter().map(f64::from));
        Ok(params)
    }

    pub(crate) fn set_params(&self, head: &Head, params: &[f64]) -> Result<()> {
        let (weight, bias) = self.tensors(params)?;
        head.output().0.set(&weight)?;
        head.output().1.set(&bias)?;
        Ok(())
    }

    fn tensors(&self, params: &[f64]) -> Result<(Tensor, Tensor)> {
        let (classes, dim) = (self.weighted_targets.dim(1)?, self.x.dim(1)?);
        let values: Vec<f32> = params.iter().map(|&v| v as f32).collect();
        let device = self.x.device();
        let weight = Tensor::from_slice(&values[..classes * dim], (classes, dim), device)?;
        let bias = Tensor::from_slice(&values[classes * dim..], classes, device)?;
        Ok((weight, bias))
    }

    /// `x · m`, a row block per thread where [`row_blocks`] made blocks.
    fn times(&self, m: &Tensor) -> Result<Tensor> {
        if self.blocks.is_empty() {
            return Ok(self.x.matmul(m)?);
        }
        let parts = map_parallel(&self.blocks, |&(first, count)| self.x.narrow(0, first, count)?.matmul(m));
        Ok(Tensor::cat(&parts.into_iter().collect::<candle_core::Result<Vec<_>>>()?, 0)?)
    }

    /// `gᵀ · x` (g: one row per row of x), summed over the row blocks where there are blocks.
    fn transposed_times(&self, g: &Tensor) -> Result<Tensor> {
        if self.blocks.is_empty() {
            return Ok(g.t()?.contiguous()?.matmul(&self.x)?);
        }
        let parts = map_parallel(&self.blocks, |&(first, count)| {
            g.narrow(0, first, count)?.t()?.contiguous()?.matmul(&self.x.narrow(0, first, count)?)
        });
        let mut parts = parts.into_iter();
        let first = parts.next().expect("blocks")?;
        Ok(parts.try_fold(first, |sum, part| sum + part?)?)
    }

    pub(crate) fn value_and_gradient(&self, params: &[f64], strength: f64) -> Result<(f64, Vec<f64>)> {
        let (weight, bias) = self.tensors(params)?;
        let logits = self.times(&weight.t()?)?.broadcast_add(&bias)?;
        let log_probs = log_softmax(&logits, D::Minus1)?;
        let loss = -(&self.weighted_targets * &log_probs)?.sum_all()?.to_scalar::<f32>()? as f64;
        // d loss / d logits = w_i · (p_i − onehot_i)
        let grad_logits = (log_probs.exp()?.broadcast_mul(&self.row_weights)? - &self.weighted_targets)?;
        let grad_weight = self.transposed_times(&grad_logits)?;
        let grad_bias = grad_logits.sum(0)?;
        let mut grad: Vec<f64> = grad_weight.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        grad.extend(grad_bias.to_vec1::<f32>()?.into_iter().map(f64::from));
        let weights = weight.dim(0)? * weight.dim(1)?;
        let mut penalty = 0.0;
        for (g, &w) in grad[..weights].iter_mut().zip(&params[..weights]) {
            *g += strength * w;
            penalty += w * w;
        }
        Ok((loss + 0.5 * strength * penalty, grad))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::util::rng::Rng;

    #[test]
    fn finds_the_minimum_of_the_rosenbrock_function() {
        let mut x = [-1.2, 1.0];
        let limits = Limits { max_iterations: 500, tolerance: 1e-8 };
        let value = minimize(&mut x, limits, |p| {
            let (a, b) = (p[0], p[1]);
            let value = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let grad = vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)];
            Ok((value, grad))
        })
        .unwrap();
        assert!(value < 1e-10, "value {value}");
        assert!((x[0] - 1.0).abs() < 1e-4 && (x[1] - 1.0).abs() < 1e-4, "{x:?}");
    }

    /// The objective over row blocks (as the browser's multi-threaded build computes it) equals the
    /// objective over the whole matrix.
    #[test]
    fn row_blocks_give_the_same_objective() {
        let (rows, dim, classes) = (150, 24, 3);
        let mut rng = Rng::new(5);
        let values: Vec<f32> = (0..rows * dim).map(|_| rng.uniform() * 2.0 - 1.0).collect();
        let x = Tensor::from_vec(values, (rows, dim), &Device::Cpu).unwrap();
        let labels: Vec<u32> = (0..rows as u32).map(|i| i % classes as u32).collect();
        let whole = LinearObjective::new(&x, &labels, &[1.0, 2.0, 0.5]).unwrap();
        let blocked = LinearObjective { blocks: vec![(0, 64), (64, 64), (128, 22)], ..whole.clone() };
        let params: Vec<f64> = (0..classes * dim + classes).map(|i| ((i * 7) % 11) as f64 / 20.0 - 0.25).collect();
        let (value, gradient) = whole.value_and_gradient(&params, 0.1).unwrap();
        let (value_b, gradient_b) = blocked.value_and_gradient(&params, 0.1).unwrap();
        assert!((value - value_b).abs() < 1e-6 * value.abs().max(1.0), "{value} vs {value_b}");
        for (a, b) in gradient.iter().zip(&gradient_b) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(row_blocks(10), Vec::new(), "few rows are not split");
    }
}
