//! `x + bias[channel]`, optionally followed by ReLU6 (`min(max(·, 0), 6)`), in one pass over memory.
//!
//! Every BN-folded convolution ends this way. Candle spells it as a broadcast add and a `clamp` (two
//! more broadcast ops against scalars); the `clamp` alone took ~25% of the CPU forward pass.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::scalar::relu6;

/// `x`: (N, C, …), `bias`: (C).
pub fn add_bias_relu6(x: &Tensor, bias: &Tensor, relu6: bool) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op2(&bias.contiguous()?, BiasRelu6 { relu6 });
    }
    let y = x.broadcast_add(&bias.reshape(channel_shape(x)?)?)?;
    if relu6 {
        y.clamp(0f32, 6f32)
    } else {
        Ok(y)
    }
}

/// (1, C, 1, …): broadcasts a per-channel vector over `x` (N, C, …).
pub(crate) fn channel_shape(x: &Tensor) -> candle_core::Result<Vec<usize>> {
    let mut shape = vec![1; x.rank()];
    shape[1] = x.dim(1)?;
    Ok(shape)
}

struct BiasRelu6 {
    relu6: bool,
}

impl CustomOp2 for BiasRelu6 {
    fn name(&self) -> &'static str {
        "bias-relu6"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((x0, x1)), Some((b0, b1))) = (xl.contiguous_offsets(), bl.contiguous_offsets()) else {
            candle_core::bail!("bias-relu6: inputs must be contiguous")
        };
        let (x, bias) = (&xs.as_slice::<f32>()?[x0..x1], &bs.as_slice::<f32>()?[b0..b1]);
        let dims = xl.shape().dims();
        if dims.len() < 2 || dims[1] != bias.len() {
            candle_core::bail!("bias-relu6: input {dims:?} does not fit {} biases", bias.len())
        }
        // An empty plane makes an empty tensor (and `chunks` needs a length of at least 1).
        let plane: usize = dims[2..].iter().product::<usize>().max(1);
        let mut out = Vec::with_capacity(x.len());
        for (i, chunk) in x.chunks(plane).enumerate() {
            let b = bias[i % bias.len()];
            if self.relu6 {
                out.extend(chunk.iter().map(|&v| relu6(v + b)));
            } else {
                out.extend(chunk.iter().map(|v| v + b));
            }
        }
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    /// ReLU6 passes the gradient where its output is strictly inside (0, 6); the bias gradient sums
    /// over every axis but the channel. Each one pass over memory: as Candle ops (two compares, two
    /// casts, two products, then a sum over the batch axis whose strided loop divides per element)
    /// they took ~15% of a training step through Lite0's last blocks (perf, 2026-12-07).
    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_out = grad_out.contiguous()?;
        let grad_x = if self.relu6 { grad_out.apply_op2_no_bwd(&out.contiguous()?, &Relu6Gradient)? } else { grad_out };
        // Each image's channels summed along their contiguous planes, then over the batch (Candle's
        // sum over the batch axis first runs a strided loop that divides per element).
        let (n, c) = (grad_x.dim(0)?, grad_x.dim(1)?);
        let grad_bias = grad_x.reshape((n, c, ()))?.sum(2)?.sum(0)?;
        Ok((Some(grad_x), Some(grad_bias)))
    }
}

/// The gradient (N, C, …) through ReLU6, given its output: passed where the output is strictly
/// inside (0, 6), zero elsewhere.
struct Relu6Gradient;

impl CustomOp2 for Relu6Gradient {
    fn name(&self) -> &'static str {
        "relu6-gradient"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        os: &CpuStorage,
        ol: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((g0, g1)), Some((o0, o1))) = (gl.contiguous_offsets(), ol.contiguous_offsets()) else {
            candle_core::bail!("relu6-gradient: inputs must be contiguous")
        };
        let (grad, out) = (&gs.as_slice::<f32>()?[g0..g1], &os.as_slice::<f32>()?[o0..o1]);
        let passed = grad.iter().zip(out).map(|(&g, &o)| if o > 0.0 && o < 6.0 { g } else { 0.0 }).collect();
        Ok((CpuStorage::F32(passed), gl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    // The fused bias + ReLU6 op against the same computation spelt with Candle's broadcast ops.

    use crate::kernels::bias_relu6::add_bias_relu6;
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn values_and_gradients_match_broadcast_ops() {
        let dev = Device::Cpu;
        // Values spread over (-9, 9) so that both ReLU6 bounds are crossed.
        let x = Var::from_tensor(&(Tensor::randn(0f32, 4f32, (2, 5, 3, 4), &dev).unwrap())).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 2f32, 5, &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1f32, (2, 5, 3, 4), &dev).unwrap();
        for relu6 in [true, false] {
            let fused = add_bias_relu6(x.as_tensor(), b.as_tensor(), relu6).unwrap();
            let plain = x.as_tensor().broadcast_add(&b.as_tensor().reshape((1, 5, 1, 1)).unwrap()).unwrap();
            let plain = if relu6 { plain.clamp(0f32, 6f32).unwrap() } else { plain };
            let diff = (&fused - &plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-6, "relu6={relu6}: values differ by {diff}");
            if relu6 {
                let clipped = fused.eq(0f32).unwrap().sum_all().unwrap().to_scalar::<u8>().unwrap();
                assert!(clipped > 0, "test data never hits the lower bound");
            }

            let g_fused = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g_plain = (plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("bias", &b)] {
                let (a, e) = (g_fused.get(v.as_tensor()).unwrap(), g_plain.get(v.as_tensor()).unwrap());
                let diff = (a - e).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff < 1e-5, "relu6={relu6}: grad {name} differs by {diff}");
            }
        }
    }
}
