//! The 1×1 convolution of training (Candle tensors, NCHW), as one op with a hand-written backward.
//!
//! From tensor ops, a batch's 1×1 convolution is a chain — the batch moved beside the pixels, a
//! copy, the product, the batch moved back, a copy — and Candle's backward pass gives every link a
//! gradient of the full map's size, accumulated into zeros: the chain's copies and additions took
//! about as long as its products. Here the CPU runs the forward pass as one product per image (or,
//! where the maps are small, one product over the whole batch gathered beside the pixels), and the
//! backward pass as the two products of the gradient. Other devices keep the tensor ops.
//!
//! The forward product can be the inference path's int8 one ([`MatmulPrecision::Int8`]: each
//! pixel's inputs quantized with their own scale, the weight per output channel, as
//! [`Weights`] multiplies), so that the trained layers compute in training what the exported
//! model will compute (the usual straight-through rule: the backward pass is the f32 one, with the
//! f32 weight and input). In the browser, whose f32 product has no fused multiply-add, the int8
//! one took the forward pass through Lite0's head convolution from 1.33–1.64 to 0.77–0.78 ms per
//! image, and through its last block and the head convolution from 4.0–4.9 to 1.9–2.1 (batches of
//! 32, one thread, relaxed SIMD, Chromium 156, AMD EPYC Zen 5, 2026-12-07, alternating builds).
//!
//! # Shapes
//! - `x`: (N, C_in, H, W), `weight`: (C_out, C_in) → (N, C_out, H, W).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::kernels::crew::for_each_chunk;
use crate::kernels::int8::Inputs;
use crate::kernels::matmul::{product, Epilogue, MatmulPrecision, Strided, Weights, INT8_MIN_INPUTS};
use crate::kernels::nhwc::{nchw_to_nhwc, nhwc_to_nchw};
use crate::kernels::{available_threads, contiguous_f32, parallel, Activation};

/// A 1×1 convolution, `x`: (N, C_in, H, W), `weight`: (C_out, C_in) → (N, C_out, H, W), its
/// forward product in `forward`'s precision on the CPU (int8 from [`INT8_MIN_INPUTS`] inputs), f32
/// elsewhere; the gradients are f32's.
pub fn pointwise_conv(x: &Tensor, weight: &Tensor, forward: MatmulPrecision) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && weight.dtype() == DType::F32 {
        let int8 = forward == MatmulPrecision::Int8 && weight.dim(1)? >= INT8_MIN_INPUTS;
        return x.contiguous()?.apply_op2(&weight.contiguous()?, Pointwise { int8 });
    }
    pointwise_conv_by_ops(x, weight)
}

/// [`pointwise_conv`] from device-generic tensor ops, differentiable by autograd.
pub fn pointwise_conv_by_ops(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let c_out = weight.dim(0)?;
    // One image is a plain 2-D product. For a batch, Candle's broadcast product copies the weight
    // once per image (and its gradient is summed from as many copies): where the feature maps are
    // small (late layers, CIFAR-sized inputs) it is far cheaper to move the batch next to the
    // pixels, (C, N·H·W), and multiply once.
    if n == 1 {
        weight.matmul(&x.reshape((c, h * w))?)?.reshape((1, c_out, h, w))
    } else if h * w * (c + c_out) < c * c_out {
        let columns = x.transpose(0, 1)?.reshape((c, n * h * w))?;
        weight.matmul(&columns)?.reshape((c_out, n, h, w))?.transpose(0, 1)?.contiguous()
    } else {
        weight.broadcast_matmul(&x.reshape((n, c, h * w))?)?.reshape((n, c_out, h, w))
    }
}

/// Pixels per image below which a layer's products run over the whole batch at once (gathered
/// into (C, N·H·W)) rather than image by image: a product of a few columns spends more on packing
/// its weight than on multiplying (Lite0's last blocks have 2×2 maps at a 64² input).
const BATCHED_BELOW: usize = 64;

/// `out` (m × n) = `lhs` (m × k) · `rhs` (k × n), its rows shared out over the threads.
fn split_product(out: &mut [f32], n: usize, k: usize, lhs: Strided, rhs: Strided) {
    let threads = available_threads();
    let m = out.len() / n.max(1);
    let rows = if parallel(threads) { m.div_ceil(threads).next_multiple_of(16) } else { m };
    for_each_chunk(out, rows.max(1) * n, parallel(threads), |block, out| {
        product(out, n, k, lhs.rows_after(block * rows), rhs, false)
    });
}

/// (N, C, P) → (C, N·P).
fn gather(x: &[f32], images: usize, channels: usize, pixels: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, image) in x.chunks_exact(channels * pixels).enumerate() {
        for (c, plane) in image.chunks_exact(pixels).enumerate() {
            out[(c * images + i) * pixels..][..pixels].copy_from_slice(plane);
        }
    }
    out
}

/// (C, N·P) → (N, C, P).
fn scatter(x: &[f32], images: usize, channels: usize, pixels: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, image) in out.chunks_exact_mut(channels * pixels).enumerate() {
        for (c, plane) in image.chunks_exact_mut(pixels).enumerate() {
            plane.copy_from_slice(&x[(c * images + i) * pixels..][..pixels]);
        }
    }
    out
}

/// `out` (N, rows, P) = `lhs` (rows × k) · `x` (N, k, P), image by image, or over the gathered
/// batch when the maps are small.
fn per_image(lhs: Strided, x: &[f32], images: usize, rows: usize, k: usize, pixels: usize) -> Vec<f32> {
    if pixels < BATCHED_BELOW {
        let columns = gather(x, images, k, pixels);
        let mut gathered = vec![0f32; rows * images * pixels];
        split_product(&mut gathered, images * pixels, k, lhs, Strided::rows(&columns, images * pixels));
        return scatter(&gathered, images, rows, pixels);
    }
    let mut out = vec![0f32; images * rows * pixels];
    let threads = available_threads();
    for_each_chunk(&mut out, rows * pixels, parallel(threads), |i, out| {
        product(out, pixels, k, lhs, Strided::rows(&x[i * k * pixels..][..k * pixels], pixels), false)
    });
    out
}

/// `x` (N, C_in, P) through `weight` (C_out, C_in) → (N, C_out, P), multiplied in int8 as the
/// inference path multiplies a 1×1 convolution: the images' pixels become rows of channels.
fn forward_int8(weight: &[f32], x: &[f32], images: usize, c_in: usize, c_out: usize, pixels: usize) -> Vec<f32> {
    if images * c_in * c_out * pixels == 0 {
        return vec![0f32; images * c_out * pixels]; // nothing to multiply (or only zeros: no inputs)
    }
    let mut rows = vec![0f32; x.len()];
    for (image, out) in x.chunks_exact(c_in * pixels).zip(rows.chunks_exact_mut(c_in * pixels)) {
        nchw_to_nhwc(image, c_in, out);
    }
    // The kernel for inputs that are never negative (after a ReLU6) where none is.
    let inputs = if rows.iter().all(|&v| v >= 0.0) { Inputs::NonNegative } else { Inputs::Signed };
    let weights = Weights::new(weight, c_out, c_in, MatmulPrecision::Int8, inputs);
    let bias = vec![0f32; c_out];
    let mut products = vec![0f32; images * pixels * c_out];
    let epilogue = Epilogue { bias: &bias, residual: None, activation: Activation::None };
    weights.apply(&rows, &mut products, epilogue, available_threads());
    let mut out = rows;
    out.resize(products.len(), 0.0);
    for (image, out) in products.chunks_exact(c_out * pixels).zip(out.chunks_exact_mut(c_out * pixels)) {
        nhwc_to_nchw(image, c_out, out);
    }
    out
}

/// (N, C_in, H, W), (C_out, C_in) → (N, C_out, H, W); `int8`: the forward product in int8.
struct Pointwise {
    int8: bool,
}

impl CustomOp2 for Pointwise {
    fn name(&self) -> &'static str {
        "pointwise-conv"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let (c_out, c_in) = wl.shape().dims2()?;
        if c_in != c {
            candle_core::bail!("pointwise-conv: input has {c} channels, weight expects {c_in}")
        }
        let (x, weight) =
            (contiguous_f32(xs, xl, "pointwise-conv", "input")?, contiguous_f32(ws, wl, "pointwise-conv", "weight")?);
        let out = if self.int8 {
            forward_int8(weight, x, n, c, c_out, h * w)
        } else {
            per_image(Strided::rows(weight, c), x, n, c_out, c, h * w)
        };
        Ok((CpuStorage::F32(out), Shape::from((n, c_out, h, w))))
    }

    /// ∂L/∂x = Wᵀ · ∂L/∂y per image; ∂L/∂W = Σ over images of ∂L/∂y · xᵀ.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_out = grad_out.contiguous()?;
        // No gradient for an input outside the graph: the first trained layer's frozen activations
        // (*Layers to train*), whose gradient was a third of that layer's multiply-adds, then
        // added into a tensor of zeros by the autograd and dropped.
        let grad_x = if x.track_op() { Some(grad_out.apply_op2_no_bwd(weight, &PointwiseGradInput)?) } else { None };
        let grad_w = grad_out.apply_op2_no_bwd(x, &PointwiseGradWeight)?;
        Ok((grad_x, Some(grad_w)))
    }
}

/// (∂L/∂y: (N, C_out, H, W), W: (C_out, C_in)) → ∂L/∂x: (N, C_in, H, W).
struct PointwiseGradInput;

impl CustomOp2 for PointwiseGradInput {
    fn name(&self) -> &'static str {
        "pointwise-conv-grad-input"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c_out, h, w) = gl.shape().dims4()?;
        let (c_out_w, c_in) = wl.shape().dims2()?;
        if c_out_w != c_out {
            candle_core::bail!("pointwise-conv backward: gradient has {c_out} channels, weight {c_out_w}")
        }
        let (grad_y, weight) = (
            contiguous_f32(gs, gl, "pointwise-conv", "gradient")?,
            contiguous_f32(ws, wl, "pointwise-conv", "weight")?,
        );
        let out = per_image(Strided::rows(weight, c_in).transposed(), grad_y, n, c_in, c_out, h * w);
        Ok((CpuStorage::F32(out), Shape::from((n, c_in, h, w))))
    }
}

/// (∂L/∂y: (N, C_out, H, W), x: (N, C_in, H, W)) → ∂L/∂W: (C_out, C_in).
struct PointwiseGradWeight;

impl CustomOp2 for PointwiseGradWeight {
    fn name(&self) -> &'static str {
        "pointwise-conv-grad-weight"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c_out, h, w) = gl.shape().dims4()?;
        let (n_x, c_in, h_x, w_x) = xl.shape().dims4()?;
        if (n_x, h_x, w_x) != (n, h, w) {
            candle_core::bail!("pointwise-conv backward: gradient {:?} and input {:?} differ", gl.dims(), xl.dims())
        }
        let (grad_y, x) =
            (contiguous_f32(gs, gl, "pointwise-conv", "gradient")?, contiguous_f32(xs, xl, "pointwise-conv", "input")?);
        let pixels = h * w;
        let mut grad_w = vec![0f32; c_out * c_in];
        if pixels < BATCHED_BELOW {
            // One product with the batch's pixels as its inner dimension.
            let (g, x) = (gather(grad_y, n, c_out, pixels), gather(x, n, c_in, pixels));
            let columns = Strided::rows(&x, n * pixels).transposed();
            split_product(&mut grad_w, c_in, n * pixels, Strided::rows(&g, n * pixels), columns);
        } else {
            // Each thread sums its rows of ∂L/∂W over the images.
            let threads = available_threads();
            let rows = if parallel(threads) { c_out.div_ceil(threads) } else { c_out };
            for_each_chunk(&mut grad_w, rows.max(1) * c_in, parallel(threads), |block, out| {
                for i in 0..n {
                    let g = Strided::rows(&grad_y[i * c_out * pixels..][..c_out * pixels], pixels);
                    let x = Strided::rows(&x[i * c_in * pixels..][..c_in * pixels], pixels).transposed();
                    product(out, c_in, pixels, g.rows_after(block * rows), x, i > 0);
                }
            });
        }
        Ok((CpuStorage::F32(grad_w), Shape::from((c_out, c_in))))
    }
}

#[cfg(test)]
mod tests {
    // The fused CPU 1×1 convolution against the same function from tensor ops differentiated by
    // autograd: outputs and both gradients, at maps above and below the batched threshold.

    use super::{pointwise_conv, pointwise_conv_by_ops};
    use crate::kernels::int8::Inputs;
    use crate::kernels::matmul::{Epilogue, MatmulPrecision, Weights};
    use crate::kernels::nhwc::{nchw_to_nhwc, nhwc_to_nchw};
    use crate::kernels::Activation;
    use candle_core::{Device, Tensor, Var};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(len: usize, low: f32, rng: &mut StdRng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(low..1.0)).collect()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Output, ∂x and ∂W of `Σ r ⊙ conv(x, W)`, with the forward product in `forward`.
    fn run(x: &[f32], weight: &[f32], r: &Tensor, forward: MatmulPrecision) -> [Vec<f32>; 3] {
        let (n, c_out, h, w) = r.dims4().unwrap();
        let c_in = weight.len() / c_out;
        let xv = Var::from_vec(x.to_vec(), (n, c_in, h, w), &Device::Cpu).unwrap();
        let wv = Var::from_vec(weight.to_vec(), (c_out, c_in), &Device::Cpu).unwrap();
        let y = pointwise_conv(xv.as_tensor(), wv.as_tensor(), forward).unwrap();
        let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        [flat(&y), flat(grads.get(xv.as_tensor()).unwrap()), flat(grads.get(wv.as_tensor()).unwrap())]
    }

    #[test]
    fn the_int8_forward_of_nothing_is_nothing() {
        assert_eq!(super::forward_int8(&[0.5; 24 * 4], &[], 0, 24, 4, 49), Vec::<f32>::new());
        assert_eq!(super::forward_int8(&[], &[1.0; 24 * 49], 1, 24, 0, 49), Vec::<f32>::new());
    }

    #[test]
    fn the_int8_forward_is_the_inference_product_with_the_f32_gradients() {
        let mut rng = StdRng::seed_from_u64(9);
        // Maps above and below the batched threshold; signed inputs and ReLU6 outputs; fewer
        // inputs than int8 takes (f32 then, bit for bit).
        for (n, c_in, c_out, h, w, low) in
            [(3, 24, 40, 7, 7, -1.0), (2, 32, 16, 9, 8, 0.0), (4, 16, 20, 2, 2, -1.0), (2, 15, 8, 3, 3, -1.0)]
        {
            let (x, weight) = (random(n * c_in * h * w, low, &mut rng), random(c_out * c_in, -1.0, &mut rng));
            let r =
                Tensor::from_vec(random(n * c_out * h * w, -1.0, &mut rng), (n, c_out, h, w), &Device::Cpu).unwrap();
            let [y8, gx8, gw8] = run(&x, &weight, &r, MatmulPrecision::Int8);
            let [y32, gx32, gw32] = run(&x, &weight, &r, MatmulPrecision::F32);
            let shape = format!("{n}×{c_in}→{c_out} {h}×{w}");
            assert_eq!((gx8, gw8), (gx32, gw32), "{shape}: the gradients are f32's");
            if c_in < 16 {
                assert_eq!(y8, y32, "{shape}: f32 below 16 inputs");
                continue;
            }
            // The inference path's product of the same pixels, as rows of channels.
            let inputs = if low < 0.0 { Inputs::Signed } else { Inputs::NonNegative };
            let weights = Weights::new(&weight, c_out, c_in, MatmulPrecision::Int8, inputs);
            let mut rows = vec![0f32; x.len()];
            let mut products = vec![0f32; n * h * w * c_out];
            for i in 0..n {
                let (a, b) = (i * c_in * h * w, (i + 1) * c_in * h * w);
                nchw_to_nhwc(&x[a..b], c_in, &mut rows[a..b]);
            }
            let bias = vec![0f32; c_out];
            let epilogue = Epilogue { bias: &bias, residual: None, activation: Activation::None };
            weights.apply(&rows, &mut products, epilogue, 1);
            let mut want = vec![0f32; products.len()];
            for (image, out) in products.chunks_exact(c_out * h * w).zip(want.chunks_exact_mut(c_out * h * w)) {
                nhwc_to_nchw(image, c_out, out);
            }
            assert_eq!(y8, want, "{shape}: the inference path's int8 product");
            // And close to f32's: within 1% of the largest output.
            let largest = y32.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in y8.iter().zip(&y32).enumerate() {
                assert!((a - b).abs() <= 0.01 * largest, "{shape} [{i}]: int8 {a} vs f32 {b}");
            }
        }
    }

    #[test]
    fn matches_tensor_ops_with_gradients() {
        let mut rng = StdRng::seed_from_u64(5);
        for (n, c_in, c_out, h, w) in [(3, 5, 7, 9, 8), (4, 6, 20, 2, 2), (1, 3, 2, 1, 1), (2, 17, 33, 4, 5)] {
            let (x, weight) = (random(n * c_in * h * w, -1.0, &mut rng), random(c_out * c_in, -1.0, &mut rng));
            let r =
                Tensor::from_vec(random(n * c_out * h * w, -1.0, &mut rng), (n, c_out, h, w), &Device::Cpu).unwrap();
            let got = run(&x, &weight, &r, MatmulPrecision::F32);
            let want = {
                let xv = Var::from_vec(x.clone(), (n, c_in, h, w), &Device::Cpu).unwrap();
                let wv = Var::from_vec(weight.clone(), (c_out, c_in), &Device::Cpu).unwrap();
                let y = pointwise_conv_by_ops(xv.as_tensor(), wv.as_tensor()).unwrap();
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                [flat(&y), flat(grads.get(xv.as_tensor()).unwrap()), flat(grads.get(wv.as_tensor()).unwrap())]
            };
            // An input outside the graph (frozen activations) gets no gradient, and the weight's is
            // the same.
            let frozen = Tensor::from_vec(x.clone(), (n, c_in, h, w), &Device::Cpu).unwrap();
            let wv = Var::from_vec(weight.clone(), (c_out, c_in), &Device::Cpu).unwrap();
            let y = pointwise_conv(&frozen, wv.as_tensor(), MatmulPrecision::F32).unwrap();
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(grads.get(&frozen).is_none(), "a gradient for the frozen input");
            let grad_w = flat(grads.get(wv.as_tensor()).unwrap());
            assert_eq!(grad_w, got[2], "{n}×{c_in}→{c_out} {h}×{w}: weight gradient with a frozen input");
            for (what, (got, want)) in ["output", "grad x", "grad weight"].iter().zip(got.iter().zip(&want)) {
                assert_eq!(got.len(), want.len(), "{what} {n}×{c_in}→{c_out} {h}×{w}: length");
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{what} {n}×{c_in}→{c_out} {h}×{w} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}
