//! A network's first convolution in training (Candle tensors, NCHW): its input is the image, which
//! needs no gradient.
//!
//! Candle's convolution always computes the input's gradient too (a transposed convolution, loop by
//! loop), and its weight gradient as a convolution of the whole batch by the whole output gradient;
//! with the forward pass that was ~6% of a fine-tuning step (perf, Lite0 128², 2026-12-07). Here the
//! CPU builds each image's im2col rows (the inference path's: one per output pixel), the forward
//! pass is one product per image, and the backward pass only the weight's gradient, Σ over images
//! of ∂L/∂y · rows, from the rows built again. Other devices keep Candle's convolution.
//!
//! # Shapes
//! - `x`: (N, C, H, W), `weight`: (C_out, C, k, k) → (N, C_out, H_out, W_out) with TF 'SAME'
//!   padding (the odd extra pixel bottom/right).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::kernels::crew::for_each_chunk;
use crate::kernels::geometry::{same_padding, ConvGeometry};
use crate::kernels::matmul::{product, Strided};
use crate::kernels::nhwc::{self, filters_for_im2col, nchw_to_nhwc};
use crate::kernels::{available_threads, contiguous_f32, parallel};

/// The first convolution, 'SAME' padding, `stride`; no gradient reaches `x` (the image).
pub fn stem_conv(x: &Tensor, weight: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    // Native only: the page trains the last layers, never the first, and its threaded build's
    // first load has no room for code it would not run (6 MB, `tests/browser/first_load.test.mjs`).
    if cfg!(not(target_arch = "wasm32"))
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
    {
        return x.contiguous()?.apply_op2(&weight.contiguous()?, Stem { stride });
    }
    stem_conv_by_ops(x, weight, stride)
}

/// [`stem_conv`] from Candle's padding and convolution (any device, differentiable in both).
pub fn stem_conv_by_ops(x: &Tensor, weight: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let kernel = weight.dim(2)?;
    let pad = |len: usize| {
        let (out, before) = same_padding(len, kernel, stride);
        let total = ((out - 1) * stride + kernel).saturating_sub(len);
        (before, total - before)
    };
    let ((top, bottom), (left, right)) = (pad(h), pad(w));
    let x = x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
    x.conv2d(weight, 0, stride, 1, 1)
}

/// One image (C, H, W) as the inference path's im2col rows ([`nhwc::im2col`]): one row per output
/// pixel, its k·k·C values in (ky, kx, c) order.
fn im2col_rows(g: &ConvGeometry, image: &[f32]) -> Vec<f32> {
    let mut pixels = vec![0f32; image.len()];
    nchw_to_nhwc(image, g.channels, &mut pixels);
    let mut rows = vec![0f32; g.out_pixels() * g.channels * g.kernel * g.kernel];
    nhwc::im2col(g, &pixels, 0..g.out_pixels(), &mut rows);
    rows
}

fn geometry(xl: &Layout, wl: &Layout, stride: usize) -> candle_core::Result<(usize, usize, ConvGeometry)> {
    let (n, c, h, w) = xl.shape().dims4()?;
    let (c_out, c_w, k, k2) = wl.shape().dims4()?;
    if c_w != c || k != k2 || k == 0 || stride == 0 || h == 0 || w == 0 {
        candle_core::bail!("stem-conv: input {:?} and weight {:?} do not fit", xl.dims(), wl.dims())
    }
    Ok((n, c_out, ConvGeometry::same(h, w, c, k, stride)))
}

/// (N, C, H, W), (C_out, C, k, k) → (N, C_out, H_out, W_out).
struct Stem {
    stride: usize,
}

impl CustomOp2 for Stem {
    fn name(&self) -> &'static str {
        "stem-conv"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c_out, g) = geometry(xl, wl, self.stride)?;
        let (x, weight) =
            (contiguous_f32(xs, xl, "stem-conv", "input")?, contiguous_f32(ws, wl, "stem-conv", "weight")?);
        let (taps, pixels, image) = (g.channels * g.kernel * g.kernel, g.out_pixels(), g.channels * g.in_pixels());
        let filters = filters_for_im2col(weight, c_out, g.channels, g.kernel);
        let mut out = vec![0f32; n * c_out * pixels];
        let threads = parallel(available_threads());
        for_each_chunk(&mut out, c_out * pixels, threads, |i, out| {
            let rows = im2col_rows(&g, &x[i * image..][..image]);
            product(out, pixels, taps, Strided::rows(&filters, taps), Strided::rows(&rows, taps).transposed(), false);
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c_out, g.out_h, g.out_w))))
    }

    /// Only the weight's gradient: the input is the image.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_w = grad_out
            .contiguous()?
            .apply_op2_no_bwd(x, &StemGradWeight { stride: self.stride, kernel: weight.dim(2)? })?;
        Ok((None, Some(grad_w.reshape(weight.shape())?)))
    }
}

/// (∂L/∂y: (N, C_out, H_out, W_out), x: (N, C, H, W)) → ∂L/∂W: (C_out, C·k·k).
struct StemGradWeight {
    stride: usize,
    kernel: usize,
}

impl CustomOp2 for StemGradWeight {
    fn name(&self) -> &'static str {
        "stem-conv-grad-weight"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let (n_g, c_out, out_h, out_w) = gl.shape().dims4()?;
        let g = ConvGeometry::same(h, w, c, self.kernel, self.stride);
        if (n_g, out_h, out_w) != (n, g.out_h, g.out_w) {
            candle_core::bail!("stem-conv backward: gradient {:?} does not fit input {:?}", gl.dims(), xl.dims())
        }
        let (grad_y, x) =
            (contiguous_f32(gs, gl, "stem-conv", "gradient")?, contiguous_f32(xs, xl, "stem-conv", "input")?);
        let (kk, pixels) = (g.kernel * g.kernel, out_h * out_w);
        let taps = c * kk;
        // In im2col's (ky, kx, c) order first. ~C_out · C·k·k multiply-adds per output pixel (0.9 k
        // for Lite0's stem): one thread is enough.
        let mut grad = vec![0f32; c_out * taps];
        for i in 0..n {
            let rows = im2col_rows(&g, &x[i * c * h * w..][..c * h * w]);
            let grad_y = Strided::rows(&grad_y[i * c_out * pixels..][..c_out * pixels], pixels);
            product(&mut grad, taps, pixels, grad_y, Strided::rows(&rows, taps), i > 0);
        }
        let mut grad_w = vec![0f32; c_out * taps];
        for (o, row) in grad.chunks_exact(taps).enumerate() {
            for (t, tap) in row.chunks_exact(c).enumerate() {
                for (ch, &v) in tap.iter().enumerate() {
                    grad_w[(o * c + ch) * kk + t] = v;
                }
            }
        }
        Ok((CpuStorage::F32(grad_w), Shape::from((c_out, taps))))
    }
}

#[cfg(test)]
mod tests {
    // The CPU first convolution against Candle's padding and convolution differentiated by autograd:
    // outputs and the weight's gradient (the image gets none), at even and odd sizes.

    use super::{stem_conv, stem_conv_by_ops};
    use candle_core::{Device, Tensor, Var};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn matches_candle_convolution_with_weight_gradient() {
        let mut rng = StdRng::seed_from_u64(6);
        for (n, c, c_out, h, w, k, stride) in [(2, 3, 8, 10, 9, 3, 2), (3, 3, 4, 7, 7, 3, 2), (1, 2, 5, 6, 5, 5, 1)] {
            let random =
                |len: usize, rng: &mut StdRng| (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
            let x = Tensor::from_vec(random(n * c * h * w, &mut rng), (n, c, h, w), &Device::Cpu).unwrap();
            let weight = random(c_out * c * k * k, &mut rng);
            let run = |fused: bool| {
                let wv = Var::from_vec(weight.clone(), (c_out, c, k, k), &Device::Cpu).unwrap();
                let f = if fused { stem_conv } else { stem_conv_by_ops };
                let y = f(&x, wv.as_tensor(), stride).unwrap();
                let r = Tensor::from_vec(
                    (0..y.elem_count()).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(),
                    y.shape(),
                    &Device::Cpu,
                )
                .unwrap();
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (y.dims().to_vec(), flat(&y), flat(grads.get(wv.as_tensor()).unwrap()))
            };
            let (got, want) = (run(true), run(false));
            let what = format!("{n}×{c}×{h}×{w}, {k}×{k}/{stride}");
            assert_eq!(got.0, want.0, "{what}: output shape");
            for (part, (got, want)) in [("output", (&got.1, &want.1)), ("grad weight", (&got.2, &want.2))] {
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what} {part}[{i}]: {g} vs {w}");
                }
            }
        }
    }
}
