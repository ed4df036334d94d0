//! Depthwise 2-D convolution with TensorFlow 'SAME' padding, forward and backward.
//!
//! Candle's `conv2d(groups = C)` runs one convolution per channel, which makes EfficientNet's
//! depthwise layers (up to 1152 channels of 7×7 maps) dominate the forward pass. Here each channel
//! plane is one direct loop whose inner dimension is a contiguous output row, so the compiler
//! vectorises it (SSE/AVX natively, simd128 in wasm).
//!
//! On the CPU the three kernels (output, input gradient, weight gradient) are custom ops; on other
//! devices the same convolution is spelt with tensor ops (pad, slice, multiply-add), which autograd
//! differentiates on its own, recomputing them in the backward pass rather than keeping them
//! (`crate::kernels::recompute`).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use crate::kernels::crew::for_each_chunk;
use crate::kernels::dispatch;
use crate::kernels::geometry::ConvGeometry;
use crate::kernels::nhwc::{self, nchw_to_nhwc, nhwc_to_nchw, taps_for_depthwise};
use crate::kernels::recompute::recompute_in_backward;
use crate::kernels::{available_threads, contiguous_f32, parallel, Activation};

/// `x`: (N, C, H, W), `weight`: (C, 1, K, K) → (N, C, ceil(H/s), ceil(W/s)).
pub fn depthwise_conv2d(x: &Tensor, weight: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (wc, one, k, k2) = weight.dims4()?;
    if wc != c || one != 1 || k != k2 || stride == 0 {
        candle_core::bail!(
            "depthwise_conv2d: input {:?} does not fit weight {:?} (stride {stride})",
            x.dims(),
            weight.dims()
        )
    }
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        let weight = weight.reshape((c, k, k))?;
        x.contiguous()?.apply_op2(&weight.contiguous()?, DepthwiseForward { stride })
    } else {
        depthwise_by_shifts_checkpointed(x, weight, stride)
    }
}

/// [`depthwise_by_shifts`] without its autograd graph ([`recompute_in_backward`]): kept by
/// autograd, its 2·k² output-sized buffers per layer lived until the backward pass (the first 3×3
/// layer at 224², batch 128: 18 × 205 MB ≈ 3.7 GB, and there are 16 such layers).
pub fn depthwise_by_shifts_checkpointed(x: &Tensor, weight: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    recompute_in_backward(x, weight, move |x, weight| depthwise_by_shifts(x, weight, stride))
}

/// The same convolution from device-generic tensor ops: one shifted, strided slice of the padded
/// input per kernel tap, scaled by that tap's per-channel weight. Differentiable by autograd.
pub fn depthwise_by_shifts(x: &Tensor, weight: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let k = weight.dim(2)?;
    let g = ConvGeometry::same(h, w, c, k, stride);
    // Pad so every tap can take `out * stride` rows/columns starting at its offset.
    let rows = (g.out_h * stride + k - 1).max(h + g.pad_top);
    let cols = (g.out_w * stride + k - 1).max(w + g.pad_left);
    let padded =
        x.pad_with_zeros(2, g.pad_top, rows - h - g.pad_top)?.pad_with_zeros(3, g.pad_left, cols - w - g.pad_left)?;
    let mut out: Option<Tensor> = None;
    for ky in 0..k {
        for kx in 0..k {
            let tap = padded.narrow(2, ky, g.out_h * stride)?.narrow(3, kx, g.out_w * stride)?;
            let tap = if stride > 1 {
                tap.reshape((n, c, g.out_h, stride, g.out_w, stride))?
                    .narrow(3, 0, 1)?
                    .narrow(5, 0, 1)?
                    .reshape((n, c, g.out_h, g.out_w))?
            } else {
                tap
            };
            let w_tap = weight.narrow(2, ky, 1)?.narrow(3, kx, 1)?.reshape((1, c, 1, 1))?;
            let term = tap.broadcast_mul(&w_tap)?;
            out = Some(match out {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
    }
    Ok(out.expect("kernel has at least one tap"))
}

/// out[n, c] = Σ_taps w[c, ky, kx] · x[n, c, shifted by the tap]
struct DepthwiseForward {
    stride: usize,
}

impl CustomOp2 for DepthwiseForward {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let k = wl.shape().dims3()?.1;
        let g = ConvGeometry::same(h, w, c, k, self.stride);
        let (x, weight) = (
            contiguous_f32(xs, xl, "depthwise_conv2d", "input")?,
            contiguous_f32(ws, wl, "depthwise_conv2d", "weight")?,
        );
        if narrow(&g) {
            let out = channels_innermost(&g, x, &taps_for_depthwise(weight, c, k), n);
            return Ok((CpuStorage::F32(out), Shape::from((n, c, g.out_h, g.out_w))));
        }
        let mut out = vec![0f32; n * c * g.out_pixels()];
        for_each_chunk(&mut out, g.out_pixels(), parallel(available_threads()), |plane, out| {
            let x = &x[plane * g.in_pixels()..][..g.in_pixels()];
            let taps = &weight[(plane % c) * k * k..][..k * k];
            with_scratch(|scratch| dispatch!(forward_plane(&g, x, taps, out, &mut scratch.0)));
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, g.out_h, g.out_w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_out = grad_out.contiguous()?;
        let (_, _, h, w) = x.dims4()?;
        // No gradient for an input outside the graph (see the 1×1 op's backward).
        let grad_x = if x.track_op() {
            Some(grad_out.apply_op2_no_bwd(weight, &DepthwiseGradInput { stride: self.stride, in_h: h, in_w: w })?)
        } else {
            None
        };
        let grad_w =
            grad_out.apply_op2_no_bwd(x, &DepthwiseGradWeight { stride: self.stride, kernel: weight.dim(1)? })?;
        Ok((grad_x, Some(grad_w)))
    }
}

/// Whether a layer's maps are narrow enough to run channel-innermost: a plane's rows then fill
/// less than one AVX2 register (8 lanes), and the plane-by-plane kernels ran them lane by lane —
/// the late blocks' 4×4, 2×2 and 1×1 maps at CIFAR sizes, 7×7 at 224². Channel-innermost, every
/// tap is a multiply-add over 16 channels at a time (the inference path's kernel).
fn narrow(g: &ConvGeometry) -> bool {
    g.out_w < 8
}

/// `x` (N, C, H, W) through the depthwise filter `taps` (k·k × C, as [`nhwc::depthwise`] reads
/// them) of `g`, image by image channel-innermost: each image is moved to (H·W × C), convolved
/// there, and moved back.
fn channels_innermost(g: &ConvGeometry, x: &[f32], taps: &[f32], n: usize) -> Vec<f32> {
    let c = g.channels;
    let zero = vec![0f32; c];
    let mut out = vec![0f32; n * c * g.out_pixels()];
    for_each_chunk(&mut out, c * g.out_pixels(), parallel(available_threads()), |i, out| {
        let (mut image, mut result) = (vec![0f32; c * g.in_pixels()], vec![0f32; out.len()]);
        nchw_to_nhwc(&x[i * c * g.in_pixels()..][..c * g.in_pixels()], c, &mut image);
        nhwc::depthwise(g, &image, taps, &zero, Activation::None, &mut result, 1);
        nhwc_to_nchw(&result, c, out);
    });
    out
}

/// ∂L/∂w (C, k, k) = Σ over images and output pixels of ∂L/∂y · the input under each tap,
/// channel-innermost: each thread sums its share of the images into its own (k·k × C), and those
/// are added at the end.
fn grad_weight_channels_innermost(g: &ConvGeometry, grad_out: &[f32], x: &[f32], n: usize) -> Vec<f32> {
    let (c, k) = (g.channels, g.kernel);
    let threads = available_threads();
    let parts = if parallel(threads) { threads.min(n).max(1) } else { 1 };
    let mut sums = vec![0f32; parts * k * k * c];
    for_each_chunk(&mut sums, k * k * c, parts > 1, |part, sums| {
        let (mut image, mut grad) = (vec![0f32; c * g.in_pixels()], vec![0f32; c * g.out_pixels()]);
        for i in (part..n).step_by(parts) {
            nchw_to_nhwc(&x[i * c * g.in_pixels()..][..c * g.in_pixels()], c, &mut image);
            nchw_to_nhwc(&grad_out[i * c * g.out_pixels()..][..c * g.out_pixels()], c, &mut grad);
            dispatch!(add_tap_products(g, &image, &grad, sums));
        }
    });
    let (total, rest) = sums.split_at_mut(k * k * c);
    for part in rest.chunks_exact(k * k * c) {
        total.iter_mut().zip(part).for_each(|(t, &p)| *t += p);
    }
    let mut grad_w = vec![0f32; c * k * k];
    for (tap, row) in total.chunks_exact(c).enumerate() {
        for (ch, &v) in row.iter().enumerate() {
            grad_w[ch * k * k + tap] = v;
        }
    }
    grad_w
}

/// `sums[tap][c] += grad[p][c] · image[p's input under tap][c]` for one image (H·W × C each).
#[inline(always)]
fn add_tap_products(g: &ConvGeometry, image: &[f32], grad: &[f32], sums: &mut [f32]) {
    let (c, k) = (g.channels, g.kernel);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let grad = &grad[(oy * g.out_w + ox) * c..][..c];
            for ky in 0..k {
                for kx in 0..k {
                    if let Some(at) = g.input_pixel(oy, ox, ky, kx) {
                        let sums = &mut sums[(ky * k + kx) * c..][..c];
                        for ((s, &gv), &xv) in sums.iter_mut().zip(grad).zip(&image[at * c..][..c]) {
                            *s += gv * xv;
                        }
                    }
                }
            }
        }
    }
}

/// Output columns computed together in registers: wide runs for wide rows (more independent sums
/// in flight), narrow ones for rows of 8–31 pixels, such as the 14-pixel rows at 224² (less work thrown
/// away; narrower maps run channel-innermost, [`narrow`]).
const WIDE: usize = 16;
const NARROW: usize = 8;

/// One channel plane. The input is first copied, zero-padded, into `stride` column phases (phase `p`
/// holds padded columns `p, p + stride, …`), so that every tap reads a contiguous run and no bounds
/// are checked in the inner loop; then each run of `LANES` output columns sums all `k²` taps in
/// registers and is stored once (a row's last run may be partial: it still computes all lanes). (Looping tap by tap over whole rows instead cost ~45% of the
/// forward pass: the late stages have 7–14-pixel rows and hundreds of channels, so per-row overhead
/// dominated.)
#[inline(always)]
fn forward_plane(g: &ConvGeometry, x: &[f32], taps: &[f32], out: &mut [f32], phases: &mut Vec<f32>) {
    if g.out_w >= 2 * WIDE {
        forward_plane_with::<WIDE>(g, x, taps, out, phases)
    } else {
        forward_plane_with::<NARROW>(g, x, taps, out, phases)
    }
}

#[inline(always)]
fn forward_plane_with<const LANES: usize>(
    g: &ConvGeometry,
    x: &[f32],
    taps: &[f32],
    out: &mut [f32],
    phases: &mut Vec<f32>,
) {
    let (k, s) = (g.kernel, g.stride);
    let padded_h = (g.out_h - 1) * s + k;
    let phase_w = g.out_w - 1 + k.div_ceil(s);
    let phase_plane = padded_h * phase_w;
    phases.clear();
    // LANES spare values at the end: the last run of a row may read past it (those sums are not stored).
    phases.resize(s * phase_plane + LANES, 0.0);
    for iy in 0..g.in_h.min(padded_h - g.pad_top) {
        let in_row = &x[iy * g.in_w..][..g.in_w];
        let py = iy + g.pad_top;
        for phase in 0..s {
            // Padded column `col * s + phase` is input column `col * s + phase - pad_left`: copy the
            // columns that fall inside the input (the rest stay zero).
            let first = g.pad_left.saturating_sub(phase).div_ceil(s);
            let start = first * s + phase - g.pad_left;
            if start >= g.in_w || first >= phase_w {
                continue;
            }
            let count = ((g.in_w - 1 - start) / s + 1).min(phase_w - first);
            let dst = &mut phases[phase * phase_plane + py * phase_w + first..][..count];
            if s == 1 {
                dst.copy_from_slice(&in_row[start..start + count]);
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = in_row[start + j * s];
                }
            }
        }
    }
    // Where each tap's run starts, relative to the output row's first padded row.
    let offsets: Vec<(f32, usize)> =
        (0..k * k).map(|t| (taps[t], (t % k % s) * phase_plane + (t / k) * phase_w + t % k / s)).collect();
    for oy in 0..g.out_h {
        let out_row = &mut out[oy * g.out_w..][..g.out_w];
        let rows = &phases[oy * s * phase_w..];
        for ox in (0..g.out_w).step_by(LANES) {
            let mut acc = [0f32; LANES];
            for &(w, offset) in &offsets {
                let src: &[f32; LANES] = rows[offset + ox..][..LANES].try_into().unwrap();
                for l in 0..LANES {
                    acc[l] += w * src[l];
                }
            }
            let n = LANES.min(g.out_w - ox);
            out_row[ox..ox + n].copy_from_slice(&acc[..n]);
        }
    }
}

/// grad_x[n, c] = Σ_taps w[c, tap] · grad_out[n, c] scattered back to the tap's input positions.
struct DepthwiseGradInput {
    stride: usize,
    in_h: usize,
    in_w: usize,
}

impl CustomOp2 for DepthwiseGradInput {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, _, _) = gl.shape().dims4()?;
        let k = wl.shape().dims3()?.1;
        let g = ConvGeometry::same(self.in_h, self.in_w, c, k, self.stride);
        let (grad_out, weight) = (
            contiguous_f32(gs, gl, "depthwise_conv2d", "gradient")?,
            contiguous_f32(ws, wl, "depthwise_conv2d", "weight")?,
        );
        if narrow(&g) && g.stride == 1 {
            // Stride 1: the input's gradient is the convolution of the output's gradient with the
            // flipped filter, padded by what the forward pass's padding leaves of the kernel.
            let (k, c) = (g.kernel, g.channels);
            let flipped = ConvGeometry {
                in_h: g.out_h,
                in_w: g.out_w,
                pad_top: k - 1 - g.pad_top,
                pad_left: k - 1 - g.pad_left,
                out_h: g.in_h,
                out_w: g.in_w,
                ..g
            };
            let reversed: Vec<f32> = weight.chunks_exact(k * k).flat_map(|f| f.iter().rev().copied()).collect();
            let grad_x = channels_innermost(&flipped, grad_out, &taps_for_depthwise(&reversed, c, k), n);
            return Ok((CpuStorage::F32(grad_x), Shape::from((n, c, self.in_h, self.in_w))));
        }
        let mut grad_x = vec![0f32; n * c * g.in_pixels()];
        for_each_chunk(&mut grad_x, g.in_pixels(), parallel(available_threads()), |plane, grad_x| {
            let grad_out = &grad_out[plane * g.out_pixels()..][..g.out_pixels()];
            let taps = &weight[(plane % c) * k * k..][..k * k];
            with_scratch(|scratch| dispatch!(grad_input(&g, grad_out, taps, grad_x, scratch)));
        });
        Ok((CpuStorage::F32(grad_x), Shape::from((n, c, self.in_h, self.in_w))))
    }
}

/// grad_w[c, tap] = Σ_n Σ_out grad_out[n, c, out] · x[n, c, out shifted by the tap]
struct DepthwiseGradWeight {
    stride: usize,
    kernel: usize,
}

impl CustomOp2 for DepthwiseGradWeight {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let k = self.kernel;
        let g = ConvGeometry::same(h, w, c, k, self.stride);
        let (grad_out, x) = (
            contiguous_f32(gs, gl, "depthwise_conv2d", "gradient")?,
            contiguous_f32(xs, xl, "depthwise_conv2d", "input")?,
        );
        if narrow(&g) {
            return Ok((CpuStorage::F32(grad_weight_channels_innermost(&g, grad_out, x, n)), Shape::from((c, k, k))));
        }
        let mut grad_w = vec![0f32; c * k * k];
        for_each_chunk(&mut grad_w, k * k, parallel(available_threads()), |ch, taps| {
            with_scratch(|scratch| {
                for b in 0..n {
                    let plane = b * c + ch;
                    let x = &x[plane * g.in_pixels()..][..g.in_pixels()];
                    let grad_out = &grad_out[plane * g.out_pixels()..][..g.out_pixels()];
                    dispatch!(grad_weight(&g, grad_out, x, taps, scratch));
                }
            })
        });
        Ok((CpuStorage::F32(grad_w), Shape::from((c, k, k))))
    }
}

/// The input plane's size with every tap of every output pixel inside it: (out − 1) · stride + k
/// rows and columns (the padding before, what 'SAME' adds after, and for a stride-2 filter of an
/// odd size nothing it never reads).
#[inline(always)]
fn padded_size(g: &ConvGeometry) -> (usize, usize) {
    ((g.out_h - 1) * g.stride + g.kernel, (g.out_w - 1) * g.stride + g.kernel)
}

/// `plane` (h × w) into `padded` (`size`, zeros around it), its first row and column at (`top`,
/// `left`); rows or columns past the end of `size` are left out (no tap reads them).
#[inline(always)]
fn pad_plane(plane: &[f32], w: usize, size: (usize, usize), (top, left): (usize, usize), padded: &mut Vec<f32>) {
    padded.clear();
    padded.resize(size.0 * size.1, 0.0);
    for (row, values) in plane.chunks_exact(w).enumerate().take(size.0.saturating_sub(top)) {
        let width = w.min(size.1 - left);
        padded[(top + row) * size.1 + left..][..width].copy_from_slice(&values[..width]);
    }
}

/// One plane's input gradient ([`grad_input_stride_1`], [`grad_input_strided`]).
#[inline(always)]
fn grad_input(g: &ConvGeometry, grad_out: &[f32], taps: &[f32], grad_x: &mut [f32], scratch: &mut Scratch) {
    if g.stride == 1 {
        grad_input_stride_1(g, grad_out, taps, grad_x, scratch)
    } else {
        grad_input_strided(g, grad_out, taps, grad_x, &mut scratch.0)
    }
}

/// One plane's contribution to its channel's weight gradient ([`grad_weight_stride_1`],
/// [`grad_weight_strided`]).
#[inline(always)]
fn grad_weight(g: &ConvGeometry, grad_out: &[f32], x: &[f32], taps: &mut [f32], scratch: &mut Scratch) {
    if g.stride == 1 {
        grad_weight_stride_1(g, grad_out, x, taps, scratch)
    } else {
        grad_weight_strided(g, grad_out, x, taps, &mut scratch.0)
    }
}

/// Two reused planes for the kernels.
#[derive(Default)]
struct Scratch(Vec<f32>, Vec<f32>);

thread_local! {
    /// Each thread's [`Scratch`], kept between planes and ops: a fresh one per plane would be an
    /// allocation per plane, tens of thousands per op where the maps are 1×1 (a 32² input).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(f)
}

/// One plane's input gradient for stride 1: grad_x[iy][ix] = Σ grad_out[iy + pad − ky][ix + pad −
/// kx] · w[ky][kx], read from the zero-padded gradient as a correlation with the flipped filter.
/// Rows are kept at the padded width, so that each tap is one contiguous multiply-add over the
/// whole plane (the columns past the image are dropped at the end): the late blocks' 7-pixel rows
/// made the scattering loop before it, which checked each tap's columns per row, with the weight
/// gradient's ~30% of a training step through Lite0's last blocks (perf, 2026-12-07).
#[inline(always)]
fn grad_input_stride_1(g: &ConvGeometry, grad_out: &[f32], taps: &[f32], grad_x: &mut [f32], scratch: &mut Scratch) {
    let k = g.kernel;
    // k − 1 extra rows: the last taps read past the last row's end (into columns that are dropped).
    let size = (g.out_h + 2 * (k - 1), g.out_w + k - 1);
    let Scratch(padded, sums) = scratch;
    pad_plane(grad_out, g.out_w, size, (k - 1 - g.pad_top, k - 1 - g.pad_left), padded);
    let len = g.in_h * size.1;
    sums.clear();
    sums.resize(len, 0.0);
    for ky in 0..k {
        for kx in 0..k {
            let tap = taps[(k - 1 - ky) * k + (k - 1 - kx)];
            let from = &padded[ky * size.1 + kx..][..len];
            for (sum, &go) in sums.iter_mut().zip(from) {
                *sum += tap * go;
            }
        }
    }
    for (row, sums) in grad_x.chunks_exact_mut(g.in_w).zip(sums.chunks_exact(size.1)) {
        row.copy_from_slice(&sums[..g.in_w]);
    }
}

/// One plane's contribution to its channel's weight gradient for stride 1: taps[ky][kx] += the dot
/// product of the gradient and the zero-padded input shifted by the tap, both at the padded width
/// (the gradient's extra columns zero), one contiguous product per tap.
#[inline(always)]
fn grad_weight_stride_1(g: &ConvGeometry, grad_out: &[f32], x: &[f32], taps: &mut [f32], scratch: &mut Scratch) {
    let k = g.kernel;
    let width = g.out_w + k - 1;
    let Scratch(padded, spread) = scratch;
    pad_plane(x, g.in_w, (g.in_h + 2 * (k - 1), width), (g.pad_top, g.pad_left), padded);
    pad_plane(grad_out, g.out_w, (g.out_h, width), (0, 0), spread);
    for ky in 0..k {
        for kx in 0..k {
            let shifted = &padded[ky * width + kx..][..spread.len()];
            // Eight running sums, so that the loop vectorises (one is a serial chain of adds).
            let mut lanes = [0f32; 8];
            let whole = spread.len() / 8 * 8;
            for (a, b) in spread[..whole].chunks_exact(8).zip(shifted[..whole].chunks_exact(8)) {
                for i in 0..8 {
                    lanes[i] += a[i] * b[i];
                }
            }
            let tail: f32 = spread[whole..].iter().zip(&shifted[whole..]).map(|(a, b)| a * b).sum();
            taps[ky * k + kx] += lanes.iter().sum::<f32>() + tail;
        }
    }
}

/// One plane's input gradient for a larger stride: each output pixel's gradient times each tap,
/// added into a zero-padded plane (no bounds to check), then its inside copied out.
#[inline(always)]
fn grad_input_strided(g: &ConvGeometry, grad_out: &[f32], taps: &[f32], grad_x: &mut [f32], padded: &mut Vec<f32>) {
    let (k, s) = (g.kernel, g.stride);
    let size = padded_size(g);
    let size = (size.0.max(g.pad_top + g.in_h), size.1.max(g.pad_left + g.in_w));
    padded.clear();
    padded.resize(size.0 * size.1, 0.0);
    for (oy, go_row) in grad_out.chunks_exact(g.out_w).enumerate() {
        for ky in 0..k {
            let row = &mut padded[(oy * s + ky) * size.1..][..size.1];
            for kx in 0..k {
                let tap = taps[ky * k + kx];
                for (j, &go) in go_row.iter().enumerate() {
                    row[j * s + kx] += tap * go;
                }
            }
        }
    }
    for (iy, row) in grad_x.chunks_exact_mut(g.in_w).enumerate() {
        row.copy_from_slice(&padded[(g.pad_top + iy) * size.1 + g.pad_left..][..g.in_w]);
    }
}

/// One plane's contribution to its channel's weight gradient for a larger stride: taps[ky][kx] += Σ grad_out[oy][ox] ·
/// x[oy · s + ky − pad][ox · s + kx − pad], from the zero-padded input, a row's taps summed
/// together in registers.
#[inline(always)]
fn grad_weight_strided(g: &ConvGeometry, grad_out: &[f32], x: &[f32], taps: &mut [f32], padded: &mut Vec<f32>) {
    let (k, s) = (g.kernel, g.stride);
    let size = padded_size(g);
    pad_plane(x, g.in_w, size, (g.pad_top, g.pad_left), padded);
    for (oy, go_row) in grad_out.chunks_exact(g.out_w).enumerate() {
        for ky in 0..k {
            let row = &padded[(oy * s + ky) * size.1..][..size.1];
            let taps = &mut taps[ky * k..][..k];
            // Stride 1 has its own kernel ([`grad_weight_stride_1`]).
            match (k, s) {
                (3, 2) => tap_row::<3, 2>(go_row, row, taps),
                (5, 2) => tap_row::<5, 2>(go_row, row, taps),
                _ => {
                    for (kx, tap) in taps.iter_mut().enumerate() {
                        *tap += go_row.iter().enumerate().map(|(j, &go)| go * row[j * s + kx]).sum::<f32>();
                    }
                }
            }
        }
    }
}

/// `taps[kx] += Σⱼ go[j] · row[j · S + kx]` for a row of `K` taps, each in its own register.
#[inline(always)]
fn tap_row<const K: usize, const S: usize>(go: &[f32], row: &[f32], taps: &mut [f32]) {
    let row = &row[..(go.len() - 1) * S + K];
    let mut acc = [0f32; K];
    for (j, &go) in go.iter().enumerate() {
        for kx in 0..K {
            acc[kx] += go * row[j * S + kx];
        }
    }
    taps.iter_mut().zip(acc).for_each(|(t, a)| *t += a);
}

#[cfg(test)]
mod tests {
    // The depthwise convolution (CPU kernels and the tensor-op path used on other devices) against a naive loop, values and gradients.

    use crate::kernels::depthwise::{depthwise_by_shifts, depthwise_by_shifts_checkpointed, depthwise_conv2d};
    use crate::kernels::geometry::same_padding;
    use candle_core::{Device, Tensor, Var};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Direct definition: out[n,c,oy,ox] = Σ w[c,ky,kx] · x[n,c,oy·s+ky−pt, ox·s+kx−pl] (zero outside).
    fn naive(x: &[f64], w: &[f64], (n, c, h, wd): (usize, usize, usize, usize), k: usize, s: usize) -> Vec<f64> {
        let (oh, pt) = same_padding(h, k, s);
        let (ow, pl) = same_padding(wd, k, s);
        let mut out = vec![0.0; n * c * oh * ow];
        for b in 0..n {
            for ch in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - pt as isize;
                                let ix = (ox * s + kx) as isize - pl as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += w[(ch * k + ky) * k + kx]
                                        * x[((b * c + ch) * h + iy as usize) * wd + ix as usize];
                                }
                            }
                        }
                        out[((b * c + ch) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    /// Gradients of `Σ out · r` for a fixed random `r`, by the chain rule on the naive definition:
    /// d/dx and d/dw are accumulated tap by tap.
    fn naive_grads(
        x: &[f64],
        w: &[f64],
        r: &[f64],
        dims: (usize, usize, usize, usize),
        k: usize,
        s: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let (n, c, h, wd) = dims;
        let (oh, pt) = same_padding(h, k, s);
        let (ow, pl) = same_padding(wd, k, s);
        let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        for b in 0..n {
            for ch in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let go = r[((b * c + ch) * oh + oy) * ow + ox];
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - pt as isize;
                                let ix = (ox * s + kx) as isize - pl as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    let xi = ((b * c + ch) * h + iy as usize) * wd + ix as usize;
                                    let wi = (ch * k + ky) * k + kx;
                                    gx[xi] += go * w[wi];
                                    gw[wi] += go * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
        (gx, gw)
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
        }
    }

    /// The device under test: the CPU, or with `WICK_TEST_DEVICE=cuda` (a `--features cuda` build on a GPU
    /// machine; `scripts/gpu-check.sh` runs it) the first GPU, where `depthwise_conv2d` takes the
    /// tensor-op path.
    fn test_device() -> Device {
        match std::env::var("WICK_TEST_DEVICE").as_deref() {
            Ok("cuda") => Device::new_cuda(0).expect("WICK_TEST_DEVICE=cuda, but no CUDA device"),
            Ok("cpu") | Err(_) => Device::Cpu,
            Ok(other) => panic!("WICK_TEST_DEVICE={other}: expected cpu or cuda"),
        }
    }

    #[test]
    fn values_and_gradients_match_the_naive_loop() {
        let mut rng = StdRng::seed_from_u64(7);
        let dev = test_device();
        eprintln!("depthwise against the naive loop on {dev:?}");
        // Maps under 8 columns wide run channel-innermost, others plane by plane; 21 channels fill
        // a 16-channel run and leave a tail.
        for &(h, w, c) in
            &[(7, 7, 3), (8, 8, 3), (9, 6, 3), (12, 13, 3), (1, 1, 3), (2, 3, 3), (4, 4, 21), (7, 5, 21), (16, 9, 21)]
        {
            for k in [3, 5] {
                for s in [1, 2] {
                    let dims = (2, c, h, w);
                    let x: Vec<f32> = (0..2 * c * h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let wt: Vec<f32> = (0..c * k * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let (oh, _) = same_padding(h, k, s);
                    let (ow, _) = same_padding(w, k, s);
                    let r: Vec<f32> = (0..2 * c * oh * ow).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
                    let want = naive(&f64s(&x), &f64s(&wt), dims, k, s);
                    let (want_gx, want_gw) = naive_grads(&f64s(&x), &f64s(&wt), &f64s(&r), dims, k, s);

                    for (path, conv) in [
                        ("cpu kernel", depthwise_conv2d as fn(&Tensor, &Tensor, usize) -> candle_core::Result<Tensor>),
                        ("tensor ops", depthwise_by_shifts),
                        ("tensor ops, checkpointed", depthwise_by_shifts_checkpointed),
                    ] {
                        let what = format!("{path} {c}x{h}x{w} k{k} s{s}");
                        let xv = Var::from_vec(x.clone(), (2, c, h, w), &dev).unwrap();
                        let wv = Var::from_vec(wt.clone(), (c, 1, k, k), &dev).unwrap();
                        let out = conv(xv.as_tensor(), wv.as_tensor(), s).unwrap();
                        assert_eq!(out.dims(), &[2, c, oh, ow], "{what}: shape");
                        assert_close(
                            &format!("{what} out"),
                            &out.flatten_all().unwrap().to_vec1().unwrap(),
                            &want,
                            1e-5,
                        );

                        let rt = Tensor::from_vec(r.clone(), (2, c, oh, ow), &dev).unwrap();
                        let grads = (out * rt).unwrap().sum_all().unwrap().backward().unwrap();
                        let gx = grads.get(xv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                        let gw = grads.get(wv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                        assert_close(&format!("{what} grad x"), &gx, &want_gx, 1e-5);
                        assert_close(&format!("{what} grad w"), &gw, &want_gw, 1e-5);

                        // An input outside the graph (frozen activations): no gradient for it, the
                        // same one for the weight.
                        let frozen = Tensor::from_vec(x.clone(), (2, c, h, w), &dev).unwrap();
                        let out = conv(&frozen, wv.as_tensor(), s).unwrap();
                        let rt = Tensor::from_vec(r.clone(), (2, c, oh, ow), &dev).unwrap();
                        let grads = (out * rt).unwrap().sum_all().unwrap().backward().unwrap();
                        assert!(grads.get(&frozen).is_none(), "{what}: a gradient for the frozen input");
                        let gw = grads.get(wv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                        assert_close(&format!("{what} grad w, frozen input"), &gw, &want_gw, 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn same_padding_puts_the_extra_pixel_after() {
        assert_eq!(same_padding(224, 3, 2), (112, 0)); // total 1: none before, one after
        assert_eq!(same_padding(56, 5, 2), (28, 1)); // total 3: one before, two after
        assert_eq!(same_padding(14, 5, 1), (14, 2));
        assert_eq!(same_padding(7, 3, 1), (7, 1));
    }

    #[test]
    fn mismatched_weight_is_an_error() {
        let x = Tensor::zeros((1, 4, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((3, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = depthwise_conv2d(&x, &w, 1).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
    }
}
