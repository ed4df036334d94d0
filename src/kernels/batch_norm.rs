//! BatchNorm for training, fused with the ReLU6 that follows it in EfficientNet-Lite.
//!
//! Over (N, C, …): `y = relu6?((x − μ_c) / √(σ²_c + ε) · γ_c + β_c)`, with the batch's mean and
//! (biased) variance per channel in training, or given statistics (the running averages) in
//! evaluation. Candle's own BatchNorm spells this as a transpose, a copy and a dozen element-wise
//! passes forward and again backward, and ReLU6 as a `clamp`; on the CPU these took over a third of
//! a fine-tuning step. Here the CPU does one pass for the statistics and one for the output, and the
//! backward pass is two passes with the closed-form gradient. Other devices and dtypes get the same
//! function from tensor ops (the CPU kernels are tested against them), recomputed in the backward
//! pass rather than kept (`crate::kernels::recompute`).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use crate::kernels::bias_relu6::{add_bias_relu6, channel_shape};
use crate::kernels::crew::for_each_chunk;
use crate::kernels::recompute::recompute_in_backward;
use crate::kernels::scalar::relu6 as relu6_of;
use crate::kernels::{available_threads, contiguous_f32, dispatch, parallel};

/// Training mode: normalises with this batch's statistics. Returns the output and the batch's
/// per-channel mean and biased variance (for the running averages).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu6: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    if is_cpu_f32(x) {
        let x = x.contiguous()?;
        let stats = x.apply_op1_no_bwd(&ChannelStats)?; // (2, C): mean, variance
        let y = apply(&x, gamma, beta, &stats, eps, relu6)?;
        return Ok((y, stats.get(0)?, stats.get(1)?));
    }
    batch_norm_train_checkpointed(x, gamma, beta, eps, relu6)
}

/// [`batch_norm_train_by_ops`] without its autograd graph ([`recompute_in_backward`]): the
/// statistics come from a graph-free pass, the output's graph is rebuilt in the backward pass.
pub fn batch_norm_train_checkpointed(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu6: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let detached = x.detach();
    let mean = channel_mean(&detached)?;
    let var = channel_mean(&detached.broadcast_sub(&mean)?.sqr()?)?;
    let affine = Tensor::stack(&[gamma, beta], 0)?;
    let y = recompute_in_backward(x, &affine, move |x, affine| {
        Ok(batch_norm_train_by_ops(x, &affine.get(0)?, &affine.get(1)?, eps, relu6)?.0)
    })?;
    Ok((y, mean.flatten_all()?, var.flatten_all()?))
}

/// [`batch_norm_train`] from device-generic tensor ops, differentiable by autograd.
pub fn batch_norm_train_by_ops(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu6: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let mean = channel_mean(x)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = channel_mean(&centred.sqr()?)?;
    let y = affine_relu6(&centred.broadcast_div(&(var.clone() + eps)?.sqrt()?)?, gamma, beta, relu6)?;
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

/// Evaluation mode: normalises with the given statistics (the running averages).
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    relu6: bool,
) -> candle_core::Result<Tensor> {
    if is_cpu_f32(x) {
        let stats = Tensor::stack(&[mean.detach(), var.detach()], 0)?;
        return apply(&x.contiguous()?, gamma, beta, &stats, eps, relu6);
    }
    batch_norm_eval_by_ops(x, gamma, beta, mean, var, eps, relu6)
}

/// [`batch_norm_eval`] from device-generic tensor ops.
pub fn batch_norm_eval_by_ops(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    relu6: bool,
) -> candle_core::Result<Tensor> {
    let shape = channel_shape(x)?;
    let normalised =
        x.broadcast_sub(&mean.reshape(shape.as_slice())?)?.broadcast_div(&(var + eps)?.sqrt()?.reshape(shape)?)?;
    affine_relu6(&normalised, gamma, beta, relu6)
}

fn is_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

fn apply(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &Tensor,
    eps: f64,
    relu6: bool,
) -> candle_core::Result<Tensor> {
    // γ and β travel as one (2, C) tensor so that one op carries both gradients.
    let affine = Tensor::stack(&[gamma, beta], 0)?;
    x.apply_op3(&affine, stats, BatchNormRelu6 { eps, relu6 })
}

fn channel_mean(x: &Tensor) -> candle_core::Result<Tensor> {
    let mut m = x.mean_keepdim(0)?;
    for axis in 2..x.rank() {
        m = m.mean_keepdim(axis)?;
    }
    Ok(m)
}

/// `x · γ`, then [`add_bias_relu6`] with β.
fn affine_relu6(x: &Tensor, gamma: &Tensor, beta: &Tensor, relu6: bool) -> candle_core::Result<Tensor> {
    add_bias_relu6(&x.broadcast_mul(&gamma.reshape(channel_shape(x)?)?)?, beta, relu6)
}

/// Channel-major view of a contiguous (N, C, P…) buffer: `(channels, planes per channel, plane size)`.
fn geometry(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let dims = l.shape().dims();
    if dims.len() < 2 {
        candle_core::bail!("batch-norm: input {dims:?} has no channel axis")
    }
    Ok((dims[1], dims[0], dims[2..].iter().product()))
}

/// The planes of channel `c`: `x[n, c, …]` for every `n`.
fn planes(x: &[f32], c: usize, channels: usize, plane: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks_exact(plane).skip(c).step_by(channels)
}

/// Per channel, the mean and the biased variance (two passes, accumulated in f64) → (2, C).
struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "batch-norm-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "batch-norm", "input")?;
        let (channels, _, plane) = geometry(l)?;
        let count = (x.len() / channels) as f64;
        // [mean, variance] per channel, f32 like every buffer split over the threads (one copy of
        // the parallel loop per element type counts against the threaded web build's first load).
        let mut stats = vec![0f32; 2 * channels];
        for_each_chunk(&mut stats, 2, parallel(available_threads()), |c, stat| {
            let sum: f64 = planes(x, c, channels, plane).map(|p| dispatch!(lane_sum(p, |v| v))).sum();
            let mean = (sum / count) as f32;
            let squares: f64 =
                planes(x, c, channels, plane).map(|p| dispatch!(lane_sum(p, |v| (v - mean).powi(2)))).sum();
            stat.copy_from_slice(&[mean, (squares / count) as f32]);
        });
        let (mean, var): (Vec<f32>, Vec<f32>) = stats.chunks_exact(2).map(|s| (s[0], s[1])).unzip();
        Ok((CpuStorage::F32([mean, var].concat()), Shape::from((2, channels))))
    }
}

/// Lanes a sum keeps apart: sixteen f32 partial sums (two AVX2 registers) let the loop vectorize,
/// where one f64 running sum ran one value at a time: the one-thread fine-tuning step ran
/// 1.35–1.89× faster for it (Lite0 32²–128², batch 16, AMD EPYC, 2026-12-07). A plane is at most
/// 112² values (224² input), 784 per lane; planes are then summed in f64.
const LANES: usize = 16;

/// Σ term(v) over `values`, in [`LANES`] f32 partial sums.
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f32) -> f64 {
    let chunks = values.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| term(v) as f64).sum();
    let mut lanes = [0f32; LANES];
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += term(v);
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

/// (Σ term(x, g).0, Σ term(x, g).1) over two planes, in [`LANES`] f32 partial sums each.
#[inline(always)]
fn lane_sums2(x: &[f32], g: &[f32], term: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (xs, gs) = (x.chunks_exact(LANES), g.chunks_exact(LANES));
    let mut tail = (0f64, 0f64);
    for (&x, &g) in xs.remainder().iter().zip(gs.remainder()) {
        let (a, b) = term(x, g);
        tail = (tail.0 + a as f64, tail.1 + b as f64);
    }
    let (mut first, mut second) = ([0f32; LANES], [0f32; LANES]);
    for (x, g) in xs.zip(gs) {
        for l in 0..LANES {
            let (a, b) = term(x[l], g[l]);
            first[l] += a;
            second[l] += b;
        }
    }
    let total = |lanes: [f32; LANES]| lanes.iter().map(|&l| l as f64).sum::<f64>();
    (total(first) + tail.0, total(second) + tail.1)
}

/// `x`, (2, C) [γ; β], (2, C) [μ; σ²] → y.
struct BatchNormRelu6 {
    eps: f64,
    relu6: bool,
}

impl BatchNormRelu6 {
    /// Per channel: (scale γ/√(σ²+ε), shift β − μ·scale).
    fn scale_shift(&self, affine: &[f32], stats: &[f32], channels: usize) -> (Vec<f32>, Vec<f32>) {
        (0..channels)
            .map(|c| {
                let scale = affine[c] / (stats[channels + c] as f64 + self.eps).sqrt() as f32;
                (scale, affine[channels + c] - stats[c] * scale)
            })
            .unzip()
    }
}

impl CustomOp3 for BatchNormRelu6 {
    fn name(&self) -> &'static str {
        "batch-norm-relu6"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a_s: &CpuStorage,
        al: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, affine, stats) = (
            contiguous_f32(xs, xl, "batch-norm", "input")?,
            contiguous_f32(a_s, al, "batch-norm", "γ, β")?,
            contiguous_f32(ss, sl, "batch-norm", "statistics")?,
        );
        let (channels, _, plane) = geometry(xl)?;
        if affine.len() != 2 * channels || stats.len() != 2 * channels {
            candle_core::bail!(
                "batch-norm: {channels} channels, but {} affine and {} statistics values",
                affine.len(),
                stats.len()
            )
        }
        let (scale, shift) = self.scale_shift(affine, stats, channels);
        let mut out = vec![0f32; x.len()];
        let relu6 = self.relu6;
        for_each_chunk(&mut out, plane, parallel(available_threads()), |i, out| {
            let (x, a, b) = (&x[i * plane..][..plane], scale[i % channels], shift[i % channels]);
            if relu6 {
                dispatch!(affine_plane(x, out, |v| relu6_of(v * a + b)))
            } else {
                dispatch!(affine_plane(x, out, |v| v * a + b))
            }
        });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    /// With g = ∂L/∂y masked where ReLU6 is flat, x̂ = (x − μ)/√(σ²+ε) and M values per channel:
    /// ∂L/∂β = Σ g, ∂L/∂γ = Σ g·x̂, ∂L/∂x = γ/√(σ²+ε) · (g − ∂L/∂β / M − x̂ · ∂L/∂γ / M): the
    /// statistics' own dependence on x included, so they need no gradient of their own.
    fn bwd(
        &self,
        x: &Tensor,
        affine: &Tensor,
        stats: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let channels = x.dim(1)?;
        let (affine, stats) = (affine.flatten_all()?.to_vec1()?, stats.flatten_all()?.to_vec1()?);
        let (scale, shift) = self.scale_shift(&affine, &stats, channels);
        let backward = BatchNormRelu6Backward {
            gamma: affine[..channels].to_vec(),
            mean: stats[..channels].to_vec(),
            var: stats[channels..].to_vec(),
            scale,
            shift,
            eps: self.eps,
            relu6: self.relu6,
        };
        let packed = x.apply_op2_no_bwd(&grad_out.contiguous()?, &backward)?;
        let n = x.elem_count();
        let grad_x = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let grad_affine = packed.narrow(0, n, 2 * channels)?.reshape((2, channels))?;
        Ok((Some(grad_x), Some(grad_affine), None))
    }
}

/// (x, ∂L/∂y) → [∂L/∂x (flattened), ∂L/∂γ (C), ∂L/∂β (C)] in one buffer. Where ReLU6 clipped is
/// found again from x with the forward pass's own scale and shift (the same arithmetic, so the same
/// bits), rather than read from the output: one plane fewer to stream, twice.
struct BatchNormRelu6Backward {
    gamma: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    eps: f64,
    relu6: bool,
}

impl CustomOp2 for BatchNormRelu6Backward {
    fn name(&self) -> &'static str {
        "batch-norm-relu6-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, grad_y) =
            (contiguous_f32(xs, xl, "batch-norm", "input")?, contiguous_f32(gs, gl, "batch-norm", "gradient")?);
        let (channels, _, plane) = geometry(xl)?;
        if grad_y.len() != x.len() || self.scale.len() != channels {
            candle_core::bail!(
                "batch-norm backward: {} gradient values and {} scales for {} inputs of {channels} channels",
                grad_y.len(),
                self.scale.len(),
                x.len()
            )
        }
        let count = (x.len() / channels) as f64;
        let inv_std: Vec<f64> = self.var.iter().map(|&v| 1.0 / (v as f64 + self.eps).sqrt()).collect();
        let relu6 = self.relu6;
        // ReLU6 passes the gradient only where its output is strictly inside (0, 6).
        let masked = move |g: f32, x: f32, (a, b): (f32, f32)| {
            let y = x * a + b;
            if !relu6 || (y > 0.0 && y < 6.0) {
                g
            } else {
                0.0
            }
        };

        let threads = parallel(available_threads());
        // Per channel: [Σ g·x̂, Σ g, and each over M], the sums taken in f64 (see ChannelStats).
        let mut sums = vec![0f32; 4 * channels];
        for_each_chunk(&mut sums, 4, threads, |c, sum| {
            let (mean, affine) = (self.mean[c], (self.scale[c], self.shift[c]));
            // Σ g·(x − μ) rather than Σ g·x − μ·Σ g: no cancellation when μ is large.
            let (sum_g, sum_g_centred) = planes(x, c, channels, plane)
                .zip(planes(grad_y, c, channels, plane))
                .map(|(x, g)| {
                    dispatch!(lane_sums2(x, g, |x, g| {
                        let g = masked(g, x, affine);
                        (g, g * (x - mean))
                    }))
                })
                .fold((0f64, 0f64), |(a, b), (c, d)| (a + c, b + d));
            let sum_g_xhat = sum_g_centred * inv_std[c];
            sum.copy_from_slice(&[
                sum_g_xhat as f32,
                sum_g as f32,
                (sum_g / count) as f32,
                (sum_g_xhat / count) as f32,
            ]);
        });

        let mut out = vec![0f32; x.len() + 2 * channels];
        let (grad_x, grad_affine) = out.split_at_mut(x.len());
        for_each_chunk(grad_x, plane, threads, |i, grad_x| {
            let c = i % channels;
            let (mean_g, mean_g_xhat) = (sums[4 * c + 2], sums[4 * c + 3]);
            let (mean, inv_std) = (self.mean[c], inv_std[c] as f32);
            let (k, affine) = (self.gamma[c] * inv_std, (self.scale[c], self.shift[c]));
            let (x, grad_y) = (&x[i * plane..][..plane], &grad_y[i * plane..][..plane]);
            dispatch!(grad_plane(x, grad_y, grad_x, |x, g| k
                * (masked(g, x, affine) - mean_g - (x - mean) * inv_std * mean_g_xhat)));
        });
        for (c, sum) in sums.chunks_exact(4).enumerate() {
            grad_affine[c] = sum[0];
            grad_affine[channels + c] = sum[1];
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * channels)))
    }
}

/// `out[i] = f(x[i])` over one plane (inlined into the AVX2 copy by [`dispatch!`]).
#[inline(always)]
fn affine_plane(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v));
}

/// `grad_x[i] = f(x[i], g[i])` over one plane.
#[inline(always)]
fn grad_plane(x: &[f32], g: &[f32], grad_x: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    for (gx, (&x, &g)) in grad_x.iter_mut().zip(x.iter().zip(g)) {
        *gx = f(x, g);
    }
}

#[cfg(test)]
mod tests {
    // The fused CPU BatchNorm(+ReLU6), and the checkpointed tensor-op version other devices take, against the same function from plain tensor ops differentiated by autograd: outputs, batch statistics and gradients.

    use crate::kernels::batch_norm::{
        batch_norm_eval, batch_norm_eval_by_ops, batch_norm_train, batch_norm_train_by_ops,
        batch_norm_train_checkpointed,
    };
    use candle_core::{Device, Tensor, Var};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(rng: &mut StdRng, shape: &[usize], scale: f32, shift: f32) -> Vec<f32> {
        (0..shape.iter().product()).map(|_| rng.random_range(-1.0..1.0) * scale + shift).collect()
    }

    fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
        let (got, want) = (
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
        }
    }

    #[test]
    fn fused_training_mode_matches_tensor_ops_with_gradients() {
        let mut rng = StdRng::seed_from_u64(3);
        for (shape, relu6) in
            [(vec![4, 3, 5, 5], true), (vec![2, 6, 3, 4], false), (vec![8, 5, 1, 1], true), (vec![3, 4, 7], true)]
        {
            let c = shape[1];
            // Values around 2 ± 3 so that ReLU6 clips at both ends.
            let x = random(&mut rng, &shape, 3.0, 2.0);
            let (gamma, beta) = (random(&mut rng, &[c], 1.0, 1.0), random(&mut rng, &[c], 2.0, 0.0));
            let r = Tensor::from_vec(random(&mut rng, &shape, 1.0, 0.0), shape.as_slice(), &Device::Cpu).unwrap();
            let run = |path: &str| {
                let xv = Var::from_vec(x.clone(), shape.as_slice(), &Device::Cpu).unwrap();
                let gv = Var::from_vec(gamma.clone(), c, &Device::Cpu).unwrap();
                let bv = Var::from_vec(beta.clone(), c, &Device::Cpu).unwrap();
                let f = match path {
                    "fused" => batch_norm_train,
                    "checkpointed" => batch_norm_train_checkpointed,
                    _ => batch_norm_train_by_ops,
                };
                let (y, mean, var) = f(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), 1e-3, relu6).unwrap();
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let grad = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
                (y, mean, var, grad(&xv), grad(&gv), grad(&bv))
            };
            let ops = run("tensor ops");
            for path in ["fused", "checkpointed"] {
                let got = run(path);
                let what = format!("{path} {shape:?} relu6 {relu6}");
                assert_close(&format!("{what} output"), &got.0, &ops.0, 1e-5);
                assert_close(&format!("{what} mean"), &got.1, &ops.1, 1e-5);
                assert_close(&format!("{what} variance"), &got.2, &ops.2, 1e-5);
                assert_close(&format!("{what} grad x"), &got.3, &ops.3, 1e-4);
                assert_close(&format!("{what} grad gamma"), &got.4, &ops.4, 1e-4);
                assert_close(&format!("{what} grad beta"), &got.5, &ops.5, 1e-4);
            }
        }
    }

    #[test]
    fn fused_evaluation_mode_matches_tensor_ops() {
        let mut rng = StdRng::seed_from_u64(4);
        let shape = [2, 3, 4, 4];
        let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &Device::Cpu).unwrap();
        let x = t(random(&mut rng, &shape, 3.0, 2.0), &shape);
        let (gamma, beta) = (t(random(&mut rng, &[3], 1.0, 1.0), &[3]), t(random(&mut rng, &[3], 1.0, 0.0), &[3]));
        let (mean, var) = (t(random(&mut rng, &[3], 1.0, 0.0), &[3]), t(random(&mut rng, &[3], 0.5, 1.0), &[3]));
        for relu6 in [true, false] {
            let fused = batch_norm_eval(&x, &gamma, &beta, &mean, &var, 1e-3, relu6).unwrap();
            let ops = batch_norm_eval_by_ops(&x, &gamma, &beta, &mean, &var, 1e-3, relu6).unwrap();
            assert_close(&format!("eval relu6 {relu6}"), &fused, &ops, 1e-5);
        }
    }
}
