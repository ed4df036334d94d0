//! Inference kernels over NHWC activations (one image: rows of pixels, each a run of channels):
//! depthwise convolution with its bias and activation fused, im2col for dense convolutions, pooling.
//!
//! With channels innermost, the depthwise loop runs along contiguous channels (16 at a time in
//! registers, summed over every tap before one store) and a 1×1 convolution is one matrix product
//! of the whole image ([`crate::kernels::matmul`]).

use crate::kernels::crew::for_each_chunk;
use crate::kernels::geometry::ConvGeometry;
use crate::kernels::{activate, apply_activation, Activation};

/// Channels summed together in registers.
const CHUNK: usize = 16;

/// Depthwise convolution, `input` (in_h · in_w × C), `taps` (k · k × C: tap-major, channels
/// innermost), `bias` (C) → `out` (out_h · out_w × C) = activation(conv + bias).
pub fn depthwise(
    g: &ConvGeometry,
    input: &[f32],
    taps: &[f32],
    bias: &[f32],
    activation: Activation,
    out: &mut [f32],
    threads: usize,
) {
    let c = g.channels;
    assert_eq!(input.len(), g.in_h * g.in_w * c);
    assert_eq!(taps.len(), g.kernel * g.kernel * c);
    assert_eq!(bias.len(), c);
    assert_eq!(out.len(), g.out_pixels() * c);
    let split = crate::kernels::parallel(threads) && out.len() * g.kernel * g.kernel >= crate::kernels::PARALLEL_WORK;
    // Bands of rows, two per thread when split (the rows of one band share their inputs' cache).
    let band_rows = if split { g.out_h.div_ceil(2 * threads) } else { g.out_h }.max(1);
    let band = |index: usize, out: &mut [f32]| {
        let rows = index * band_rows..index * band_rows + out.len() / (g.out_w * c);
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::avx512() {
            // SAFETY: the CPU has AVX-512F (checked at run time).
            unsafe { depthwise_band_avx512(g, input, taps, bias, activation, rows, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            unsafe { depthwise_band_fma(g, input, taps, bias, activation, rows, out) };
            return;
        }
        depthwise_band::<false, false>(g, input, taps, bias, activation, rows, out);
    };
    for_each_chunk(out, band_rows * g.out_w * c, split, band);
}

/// Channels summed over a band of rows before the next ones: one output row's inputs for 64
/// channels (k rows of 64 · 4 bytes a pixel) stay in L1 while its pixels are summed, where a row's
/// inputs for all channels (Lite0's 14 × 14 × 672 layers: 5 × 14 × 2 688 bytes, 188 KB) came from
/// L2 at every tap.
const CHANNEL_BLOCK: usize = 64;

/// Rows `rows` of the output (`out`), [`CHANNEL_BLOCK`] channels at a time.
#[inline(always)]
fn depthwise_band<const FMA: bool, const WIDE_REGISTERS: bool>(
    g: &ConvGeometry,
    input: &[f32],
    taps: &[f32],
    bias: &[f32],
    activation: Activation,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let row_len = g.out_w * g.channels;
    for first in (0..g.channels).step_by(CHANNEL_BLOCK) {
        let channels = first..(first + CHANNEL_BLOCK).min(g.channels);
        for (oy, out) in rows.clone().zip(out.chunks_exact_mut(row_len)) {
            depthwise_row::<FMA, WIDE_REGISTERS>(g, input, taps, bias, activation, oy, channels.clone(), out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_band_fma(
    g: &ConvGeometry,
    input: &[f32],
    taps: &[f32],
    bias: &[f32],
    activation: Activation,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    depthwise_band::<true, false>(g, input, taps, bias, activation, rows, out)
}

/// With AVX-512's 32 registers of 16 lanes, twice the channels at once (eight chains of sums, as
/// AVX2's eight registers of 8): the AVX2 widths ran four chains of fused multiply-adds, each
/// waiting on the last, and the depthwise layers took 39% of a one-thread pass (perf, AMD EPYC
/// Zen 5, 2026-12-07).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn depthwise_band_avx512(
    g: &ConvGeometry,
    input: &[f32],
    taps: &[f32],
    bias: &[f32],
    activation: Activation,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    depthwise_band::<true, true>(g, input, taps, bias, activation, rows, out)
}

/// `a · b + c`, fused where the CPU can (`mul_add` without FMA would be a libm call).
#[inline(always)]
fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// The taps of one output pixel that fall inside the input: kernel rows `ky` and columns `kx`,
/// tap (ky, kx) reading the input at `origin + ky · row + kx · col` (`origin`: where tap (0, 0)
/// would read, which may lie before the input). Two nested ranges rather than a list of offsets:
/// a list was built for every pixel, and again for every block of channels.
#[derive(Clone)]
struct Window {
    ky: std::ops::Range<usize>,
    kx: std::ops::Range<usize>,
    origin: isize,
    row: usize,
    col: usize,
    /// Values from one kernel row to the next in the taps (k · C).
    tap_row: usize,
}

impl Window {
    #[inline(always)]
    fn of(g: &ConvGeometry, oy: usize, ox: usize) -> Self {
        let (k, c) = (g.kernel, g.channels);
        let inside = |start: usize, pad: usize, len: usize| {
            // Kernel positions p with 0 ≤ start + p − pad < len.
            pad.saturating_sub(start).min(k)..(len + pad).saturating_sub(start).min(k)
        };
        let (y, x) = (oy * g.stride, ox * g.stride);
        let origin =
            ((y as isize - g.pad_top as isize) * g.in_w as isize + x as isize - g.pad_left as isize) * c as isize;
        Self {
            ky: inside(y, g.pad_top, g.in_h),
            kx: inside(x, g.pad_left, g.in_w),
            origin,
            row: g.in_w * c,
            col: c,
            tap_row: k * c,
        }
    }

    /// The same taps moved on by `shift` input values.
    #[inline(always)]
    fn shifted(&self, shift: usize) -> Self {
        Self { origin: self.origin + shift as isize, ..self.clone() }
    }

    /// `f(offset into the taps, offset into the input)` for each tap inside.
    #[inline(always)]
    fn each(&self, mut f: impl FnMut(usize, usize)) {
        for ky in self.ky.clone() {
            let row = (self.origin + (ky * self.row) as isize) as usize;
            for kx in self.kx.clone() {
                f(ky * self.tap_row + kx * self.col, row + kx * self.col);
            }
        }
    }
}

/// Channels `channels` of output row `oy` (`out`: the whole row). `WIDE_REGISTERS`: the CPU has
/// 32 vector registers of 16 lanes (AVX-512).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_row<const FMA: bool, const WIDE_REGISTERS: bool>(
    g: &ConvGeometry,
    input: &[f32],
    taps: &[f32],
    bias: &[f32],
    activation: Activation,
    oy: usize,
    channels: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let c = g.channels;
    let end = channels.end;
    let k = g.kernel;
    // Output pixels whose every column tap is inside the image: neighbours among them share their
    // taps, so they are summed together and each weight is loaded once for all of them.
    let interior =
        g.pad_left.div_ceil(g.stride)..(g.in_w + g.pad_left + 1).saturating_sub(k).div_ceil(g.stride).min(g.out_w);
    // Four neighbours at once where two would leave too few chains of sums to hide the latency of
    // each multiply-add (Lite0's first depthwise layer: 32 channels, two zmm registers a pixel).
    let group = if WIDE_REGISTERS && channels.len() < 64 { 4 } else { 2 };
    let next = g.stride * c;
    let mut ox = 0;
    while ox < g.out_w {
        let window = Window::of(g, oy, ox);
        if PAIRS && interior.contains(&ox) && interior.contains(&(ox + group - 1)) {
            let pixels = &mut out[ox * c..(ox + group) * c];
            let mut first = channels.start;
            if group == 4 {
                while first + 32 <= end {
                    neighbours::<4, 32, FMA>(input, taps, bias, &window, next, first, activation, pixels);
                    first += 32;
                }
                while first + CHUNK / 2 <= end {
                    neighbours::<4, { CHUNK / 2 }, FMA>(input, taps, bias, &window, next, first, activation, pixels);
                    first += CHUNK / 2;
                }
            } else {
                while WIDE_REGISTERS && first + 64 <= end {
                    neighbours::<2, 64, FMA>(input, taps, bias, &window, next, first, activation, pixels);
                    first += 64;
                }
                while first + 32 <= end {
                    neighbours::<2, 32, FMA>(input, taps, bias, &window, next, first, activation, pixels);
                    first += 32;
                }
                while first + CHUNK / 2 <= end {
                    neighbours::<2, { CHUNK / 2 }, FMA>(input, taps, bias, &window, next, first, activation, pixels);
                    first += CHUNK / 2;
                }
            }
            for ch in first..end {
                for p in 0..group {
                    let mut acc = bias[ch];
                    window
                        .shifted(p * next)
                        .each(|tap, at| acc = multiply_add::<FMA>(input[at + ch], taps[tap + ch], acc));
                    pixels[p * c + ch] = activate(acc, activation);
                }
            }
            ox += group;
            continue;
        }
        let pixel = &mut out[ox * c..(ox + 1) * c];
        one_pixel::<FMA, WIDE_REGISTERS>(input, taps, bias, &window, activation, channels.clone(), pixel);
        ox += 1;
    }
}

/// Channels `channels` of one output pixel (`pixel`: all its channels) over the taps of `window`.
#[inline(always)]
fn one_pixel<const FMA: bool, const WIDE_REGISTERS: bool>(
    input: &[f32],
    taps: &[f32],
    bias: &[f32],
    window: &Window,
    activation: Activation,
    channels: std::ops::Range<usize>,
    pixel: &mut [f32],
) {
    let end = channels.end;
    let mut first = channels.start;
    while WIDE_REGISTERS && first + 2 * WIDE <= end {
        neighbours::<1, { 2 * WIDE }, FMA>(input, taps, bias, window, 0, first, activation, pixel);
        first += 2 * WIDE;
    }
    while first + WIDE <= end {
        neighbours::<1, WIDE, FMA>(input, taps, bias, window, 0, first, activation, pixel);
        first += WIDE;
    }
    while first + CHUNK <= end {
        neighbours::<1, CHUNK, FMA>(input, taps, bias, window, 0, first, activation, pixel);
        first += CHUNK;
    }
    for ch in first..end {
        let mut acc = bias[ch];
        window.each(|tap, at| acc = multiply_add::<FMA>(input[at + ch], taps[tap + ch], acc));
        pixel[ch] = acc;
    }
    apply_activation(&mut pixel[first..end], activation);
}

/// Channels `first..first + W` of `P` neighbouring output pixels (`pixels`: all of them, one after
/// the other), the first one's taps those of `window`, each next one's `next` values on in the
/// input. `W` lanes of independent sums per pixel: one chain per register hides the latency of
/// each multiply-add.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn neighbours<const P: usize, const W: usize, const FMA: bool>(
    input: &[f32],
    taps: &[f32],
    bias: &[f32],
    window: &Window,
    next: usize,
    first: usize,
    activation: Activation,
    pixels: &mut [f32],
) {
    let c = pixels.len() / P;
    let mut acc = [<[f32; W]>::try_from(&bias[first..first + W]).expect("W channels"); P];
    window.each(|tap, at| {
        let w: &[f32; W] = taps[tap + first..tap + first + W].try_into().expect("W channels");
        for (p, acc) in acc.iter_mut().enumerate() {
            let start = at + p * next + first;
            let x: &[f32; W] = input[start..start + W].try_into().expect("W channels");
            for i in 0..W {
                acc[i] = multiply_add::<FMA>(x[i], w[i], acc[i]);
            }
        }
    });
    for (p, acc) in acc.iter_mut().enumerate() {
        apply_activation(acc, activation);
        pixels[p * c + first..p * c + first + W].copy_from_slice(acc);
    }
}

/// Whether neighbouring pixels are summed together: natively yes (fewer loads per FMA); in wasm
/// no, where the pairs' extra live vectors spilled and the depthwise share of a forward pass went
/// from ~31% to ~45% (Chromium's profiler, 2026-12-02).
const PAIRS: bool = cfg!(not(target_arch = "wasm32"));

/// Channels summed at once where there are enough: 8 AVX2 registers natively, 8 simd128 ones in
/// wasm (whose engines have 16 vector registers on x86-64).
const WIDE: usize = if cfg!(target_arch = "wasm32") { 32 } else { 64 };

/// Rows `rows` of the im2col matrix of `input` (in_h · in_w × C): one row per output pixel, its
/// k · k · C values in (ky, kx, c) order, zeros where a tap falls outside the image.
///
/// Where a pixel's taps are all inside the row, each tap row is one run of k · C values in the
/// input, copied at once: the stem's rows were 9 copies of 3 values, and those calls (`memmove`)
/// and this loop took 8.5% of Lite0's pass (perf, one thread, AMD EPYC Zen 4, 2026-12-07).
pub fn im2col(g: &ConvGeometry, input: &[f32], rows: std::ops::Range<usize>, block: &mut [f32]) {
    let (c, k) = (g.channels, g.kernel);
    let run = k * c;
    for (pixel, row) in rows.zip(block.chunks_exact_mut(k * run)) {
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        let first = (ox * g.stride).checked_sub(g.pad_left).filter(|&x| x + k <= g.in_w);
        for (ky, dst) in row.chunks_exact_mut(run).enumerate() {
            match (g.input_row(oy, ky), first) {
                (None, _) => dst.fill(0.0),
                (Some(iy), Some(x)) => copy_short(&input[(iy * g.in_w + x) * c..][..run], dst),
                (Some(_), None) => {
                    for (kx, dst) in dst.chunks_exact_mut(c).enumerate() {
                        match g.input_pixel(oy, ox, ky, kx) {
                            Some(at) => copy_short(&input[at * c..(at + 1) * c], dst),
                            None => dst.fill(0.0),
                        }
                    }
                }
            }
        }
    }
}

/// `dst` = `src` for a few values, 8 at a time as fixed-size moves: `copy_from_slice` of a length
/// known only at run time is a call to `memmove`, which costs more than these copies.
#[inline(always)]
fn copy_short(src: &[f32], dst: &mut [f32]) {
    let mut to = dst.chunks_exact_mut(8);
    let mut from = src.chunks_exact(8);
    for (to, from) in (&mut to).zip(&mut from) {
        let eight: [f32; 8] = from.try_into().expect("8 values");
        to.copy_from_slice(&eight);
    }
    for (to, &from) in to.into_remainder().iter_mut().zip(from.remainder()) {
        *to = from;
    }
}

/// A dense (out, in, kh, kw) filter bank → (out, kh · kw · in) rows in [`im2col`]'s order.
pub fn filters_for_im2col(weight: &[f32], out: usize, channels: usize, kernel: usize) -> Vec<f32> {
    let mut rows = vec![0.0; weight.len()];
    for o in 0..out {
        for c in 0..channels {
            for t in 0..kernel * kernel {
                rows[(o * kernel * kernel + t) * channels + c] = weight[((o * channels) + c) * kernel * kernel + t];
            }
        }
    }
    rows
}

/// A depthwise (C, 1, k, k) filter bank → taps (k · k × C), as [`depthwise`] reads them.
pub fn taps_for_depthwise(weight: &[f32], channels: usize, kernel: usize) -> Vec<f32> {
    let mut taps = vec![0.0; weight.len()];
    for c in 0..channels {
        for t in 0..kernel * kernel {
            taps[t * channels + c] = weight[c * kernel * kernel + t];
        }
    }
    taps
}

/// One image (C, H, W) → (H · W × C).
pub fn nchw_to_nhwc(image: &[f32], channels: usize, out: &mut [f32]) {
    let plane = image.len() / channels;
    for (c, plane) in image.chunks_exact(plane).enumerate() {
        for (p, &v) in plane.iter().enumerate() {
            out[p * channels + c] = v;
        }
    }
}

/// (P × C) → (C × P), the inverse of [`nchw_to_nhwc`].
pub fn nhwc_to_nchw(input: &[f32], channels: usize, out: &mut [f32]) {
    let pixels = input.len() / channels;
    for (p, pixel) in input.chunks_exact(channels).enumerate() {
        for (c, &v) in pixel.iter().enumerate() {
            out[c * pixels + p] = v;
        }
    }
}

/// The mean of every channel over all pixels: (P × C) → C.
pub fn global_average_pool(input: &[f32], channels: usize, out: &mut [f32]) {
    out.fill(0.0);
    for pixel in input.chunks_exact(channels) {
        out.iter_mut().zip(pixel).for_each(|(o, &v)| *o += v);
    }
    let pixels = (input.len() / channels).max(1) as f32;
    out.iter_mut().for_each(|o| *o /= pixels);
}

/// Max pooling (ResNet's 3×3, stride 2, padding 1): padding never wins, as in PyTorch.
pub fn max_pool(g: &ConvGeometry, input: &[f32], out: &mut [f32]) {
    let c = g.channels;
    for (pixel, dst) in out.chunks_exact_mut(c).enumerate() {
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        dst.fill(f32::NEG_INFINITY);
        for ky in 0..g.kernel {
            for kx in 0..g.kernel {
                if let Some(at) = g.input_pixel(oy, ox, ky, kx) {
                    for (d, &v) in dst.iter_mut().zip(&input[at * c..(at + 1) * c]) {
                        *d = if v > *d { v } else { *d };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // The NHWC depthwise and dense convolutions against the graph's kernels.

    use candle_core::{Device, Tensor};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;
    use crate::kernels::geometry::ConvGeometry;
    use crate::kernels::int8::Inputs;
    use crate::kernels::matmul::{Epilogue, MatmulPrecision, Weights};
    use crate::kernels::Activation;

    fn random(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()
    }

    fn to_nhwc(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        super::nchw_to_nhwc(x, c, &mut out);
        assert_eq!(out.len(), c * h * w);
        out
    }

    /// The NHWC depthwise kernel gives what the graph's NCHW kernel gives, bias and ReLU6 included.
    #[test]
    fn nhwc_depthwise_matches_the_graph_kernel() {
        let mut rng = StdRng::seed_from_u64(3);
        // Blocks of 64 channels and a remainder (200), four neighbours at once (32), 7×7 taps,
        // bands of rows split over two threads (200 × 14 × 14 × 25 multiply-adds).
        for (c, h, w, k, stride) in [
            (16, 7, 7, 3, 1),
            (24, 9, 8, 5, 2),
            (37, 12, 13, 3, 2),
            (8, 1, 1, 5, 1),
            (96, 14, 14, 5, 1),
            (200, 14, 14, 5, 1),
            (32, 20, 21, 3, 1),
            (144, 15, 16, 3, 2),
            (40, 9, 9, 7, 1),
        ] {
            let x = random(&mut rng, c * h * w, 4.0);
            let weight = random(&mut rng, c * k * k, 1.0);
            let bias = random(&mut rng, c, 1.0);
            let xt = Tensor::from_slice(&x, (1, c, h, w), &Device::Cpu).unwrap();
            let wt = Tensor::from_slice(&weight, (c, 1, k, k), &Device::Cpu).unwrap();
            let bt = Tensor::from_slice(&bias, c, &Device::Cpu).unwrap();
            let graph = crate::kernels::depthwise::depthwise_conv2d(&xt, &wt, stride).unwrap();
            let graph = crate::kernels::bias_relu6::add_bias_relu6(&graph, &bt, true).unwrap();
            let (_, _, oh, ow) = graph.dims4().unwrap();
            let want = to_nhwc(&graph.flatten_all().unwrap().to_vec1::<f32>().unwrap(), c, oh, ow);

            let g = ConvGeometry::same(h, w, c, k, stride);
            assert_eq!((g.out_h, g.out_w), (oh, ow));
            let taps = taps_for_depthwise(&weight, c, k);
            for threads in [1, 2] {
                let mut out = vec![f32::NAN; oh * ow * c];
                depthwise(&g, &to_nhwc(&x, c, h, w), &taps, &bias, Activation::Relu6, &mut out, threads);
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() < 1e-4, "c{c} {h}×{w} k{k} s{stride} [{i}]: {a} vs {b}");
                }
            }
        }
    }

    /// A dense convolution as im2col + product equals Candle's `conv2d` (PyTorch's symmetric padding).
    #[test]
    fn im2col_convolution_matches_conv2d() {
        let mut rng = StdRng::seed_from_u64(4);
        // (3, 32, 13, 3, 2): a stem; (16, 4, 9, 3, 1): runs longer than 8 values.
        for (c_in, c_out, h, k, stride) in
            [(3, 8, 11, 7, 2), (5, 6, 9, 3, 1), (4, 7, 8, 3, 2), (6, 5, 7, 1, 2), (3, 32, 13, 3, 2), (16, 4, 9, 3, 1)]
        {
            let x = random(&mut rng, c_in * h * h, 2.0);
            let weight = random(&mut rng, c_out * c_in * k * k, 1.0);
            let xt = Tensor::from_slice(&x, (1, c_in, h, h), &Device::Cpu).unwrap();
            let wt = Tensor::from_slice(&weight, (c_out, c_in, k, k), &Device::Cpu).unwrap();
            let graph = xt.conv2d(&wt, k / 2, stride, 1, 1).unwrap();
            let (_, _, oh, ow) = graph.dims4().unwrap();
            let want = to_nhwc(&graph.flatten_all().unwrap().to_vec1::<f32>().unwrap(), c_out, oh, ow);

            let g = ConvGeometry::symmetric(h, h, c_in, k, stride, k / 2);
            assert_eq!((g.out_h, g.out_w), (oh, ow));
            let rows = filters_for_im2col(&weight, c_out, c_in, k);
            let weights = Weights::new(&rows, c_out, k * k * c_in, MatmulPrecision::F32, Inputs::Signed);
            let input = to_nhwc(&x, c_in, h, h);
            let mut out = vec![f32::NAN; oh * ow * c_out];
            let bias = vec![0.0; c_out];
            let epilogue = Epilogue { bias: &bias, residual: None, activation: Activation::None };
            weights.apply_rows(g.out_pixels(), |r, block| im2col(&g, &input, r, block), &mut out, epilogue, 1);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-4, "{c_in}→{c_out} {h}² k{k} s{stride} [{i}]: {a} vs {b}");
            }
        }
    }
}
