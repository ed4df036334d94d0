//! Limited-memory BFGS (Nocedal & Wright, algorithm 7.4) with a backtracking Armijo line search:
//! the solver scikit-learn's `LogisticRegression` uses by default, for the linear head's smooth,
//! convex loss.

use std::collections::VecDeque;

use crate::error::Result;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
