//! Integer matrix products for [`crate::kernels::matmul`]: int8 weights (symmetric, one scale per
//! output channel) times int8 activations (symmetric, one scale per row), summed in i32.
//!
//! The weights are packed once, in 16-column panels laid out for the kernel this machine runs:
//! - [`Kernel::Vnni`] (x86-64 with AVX-512 VNNI, detected at run time): `vpdpbusd` multiplies 4
//!   unsigned × 4 signed bytes into each of 16 i32 lanes. The activations go in as `q + 128`
//!   (unsigned), and `128 · Σₖ w` is taken off each column afterwards.
//! - [`Kernel::Relaxed`] and [`Kernel::RelaxedSplit`] (the web app's relaxed-SIMD builds): wasm's
//!   `i32x4.relaxed_dot_i8x16_i7x16_add_s` multiplies 4 signed × 4 7-bit bytes into each of 4 i32
//!   lanes and adds (one `vpdpbusd` where the CPU has VNNI, `pmaddubsw` + `pmaddwd` where not). Its
//!   7-bit operand is exact only from 0 to 127, so the activations go there: as they are where they
//!   cannot be negative (after a ReLU: `Relaxed`), else as q + 127 cut into two 7-bit halves, each
//!   multiplied by the same weights, with `127 · Σₖ w` taken off each column (`RelaxedSplit`: K
//!   doubled). Nothing is rounded to 7 bits, so the sums are exactly the other kernels' (7-bit
//!   weights would have cost feature cosine 0.990 against f32, 7-bit activations 0.996: measured
//!   on the default backbone and the test photos, 2026-12-07).
//! - [`Kernel::Pairs`] (everything else): i16 pairs, the shape of wasm's `i32x4.dot_i16x8` (and of
//!   x86's `pmaddwd`): in wasm simd128, 8 multiply-adds per instruction against f32's 4 (and f32
//!   needs a separate add).
//!
//! No product can overflow: |q| ≤ 127 and 255 · 127 · K < 2³¹ for any K below 66 000 (checked;
//! `RelaxedSplit`'s 127 · 127 · 2K is smaller).

use crate::kernels::rows::{finish_row, max_abs, quantize_row};
#[cfg(any(test, target_feature = "relaxed-simd"))]
use crate::kernels::scalar::round_to_i32;
use crate::kernels::Activation;

mod pairs;
#[cfg(any(test, target_feature = "relaxed-simd"))]
mod relaxed;
#[cfg(target_arch = "x86_64")]
mod vnni;

/// Which integer kernel multiplies, chosen once per weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Vnni,
    /// Only where it runs fast (the relaxed-SIMD wasm builds) or is tested (natively, as plain loops).
    #[cfg(any(test, target_feature = "relaxed-simd"))]
    Relaxed,
    #[cfg(any(test, target_feature = "relaxed-simd"))]
    RelaxedSplit,
    Pairs,
}

/// What the activations a matrix multiplies can be: never negative after a ReLU, which the relaxed
/// kernel multiplies as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    Signed,
    NonNegative,
}

#[cfg(test)]
thread_local! {
    /// The kernel the matrices quantized on this thread use, and how many took it (tests:
    /// [`with_kernel`]).
    static CHOSEN: std::cell::Cell<Option<(Kernel, usize)>> = const { std::cell::Cell::new(None) };
}

/// `f` with every matrix quantized on this thread by [`Int8Matrix::quantize`] using `kernel` (for
/// [`Kernel::Relaxed`], [`Kernel::RelaxedSplit`] where the inputs may be negative), and how many
/// matrices were: tests run a whole network on a kernel this machine would not choose.
#[cfg(test)]
pub fn with_kernel<R>(kernel: Kernel, f: impl FnOnce() -> R) -> (R, usize) {
    let before = CHOSEN.replace(Some((kernel, 0)));
    let result = f();
    let (_, count) = CHOSEN.replace(before).expect("set above");
    (result, count)
}

impl Kernel {
    /// The fastest kernel this machine has for `inputs`.
    #[cfg_attr(not(any(test, target_feature = "relaxed-simd")), allow(unused_variables))]
    pub fn detect_for(inputs: Inputs) -> Self {
        #[cfg(test)]
        if let Some((kernel, count)) = CHOSEN.get() {
            CHOSEN.set(Some((kernel, count + 1)));
            return match (kernel, inputs) {
                (Self::Relaxed, Inputs::Signed) => Self::RelaxedSplit,
                _ => kernel,
            };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        return match inputs {
            Inputs::NonNegative => Self::Relaxed,
            Inputs::Signed => Self::RelaxedSplit,
        };
        #[allow(unreachable_code)]
        Self::detect()
    }

    /// The fastest kernel this machine has for inputs of any sign, outside the relaxed builds.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                return Self::Vnni;
            }
        }
        Self::Pairs
    }

    /// Its name in a report: `vnni`, `relaxed`, `relaxed split`, `pairs`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vnni => "vnni",
            #[cfg(any(test, target_feature = "relaxed-simd"))]
            Self::Relaxed => "relaxed",
            #[cfg(any(test, target_feature = "relaxed-simd"))]
            Self::RelaxedSplit => "relaxed split",
            Self::Pairs => "pairs",
        }
    }

    /// Rows one call of the kernel computes (the quantized input is padded to a multiple).
    fn rows(self) -> usize {
        match self {
            Self::Vnni => 6,
            _ => 4,
        }
    }

    /// Input channels per packed group (K is padded to a multiple).
    fn depth(self) -> usize {
        match self {
            Self::Pairs => 2,
            _ => 4,
        }
    }

    /// Whether each input is multiplied in two halves ([`Kernel::RelaxedSplit`]): K doubled.
    fn halves(self) -> usize {
        match self {
            #[cfg(any(test, target_feature = "relaxed-simd"))]
            Self::RelaxedSplit => 2,
            _ => 1,
        }
    }
}

/// Output channels per packed panel.
pub const PANEL: usize = 16;
/// The largest K whose sums cannot overflow i32 (255 · 127 · K < 2³¹).
pub const MAX_DEPTH: usize = 66_000;

/// A K × N weight matrix (N output channels of K inputs), int8 with one scale per output channel.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    n: usize,
    k: usize,
    kernel: Kernel,
    scales: Vec<f32>,
    /// −128 · Σₖ q[n][k] for [`Kernel::Vnni`] (its inputs are q + 128), −127 · Σₖ q[n][k] for
    /// [`Kernel::RelaxedSplit`] (its inputs' halves sum to q + 127), 0 for the others.
    column_offsets: Vec<i32>,
    /// [`Kernel::Vnni`] and [`Kernel::Relaxed`]: [panel][k / 4][16 columns][4] as i8;
    /// [`Kernel::RelaxedSplit`]: the same with each panel's groups twice over (one per half of the
    /// inputs); [`Kernel::Pairs`]: [panel][k / 2][16][2] as i16.
    #[cfg_attr(not(any(test, target_arch = "x86_64", target_feature = "relaxed-simd")), allow(dead_code))]
    packed_i8: Vec<i8>,
    packed_i16: Vec<i16>,
}

impl Int8Matrix {
    /// `weight[n][k]` (N × K row-major), quantized for this machine's kernel for `inputs`.
    pub fn quantize(weight: &[f32], n: usize, k: usize, inputs: Inputs) -> Self {
        Self::quantize_for(weight, n, k, Kernel::detect_for(inputs))
    }

    /// As [`Int8Matrix::quantize`], for a given kernel (tests run each kernel this machine has).
    pub fn quantize_for(weight: &[f32], n: usize, k: usize, kernel: Kernel) -> Self {
        assert!(k <= MAX_DEPTH, "K = {k} could overflow the i32 sums");
        let kernel = if kernel == Kernel::Vnni && Kernel::detect() != Kernel::Vnni { Kernel::Pairs } else { kernel };
        let (q, scales) = quantize_per_output_channel(weight, n);
        let offset = match kernel {
            Kernel::Vnni => -128,
            #[cfg(any(test, target_feature = "relaxed-simd"))]
            Kernel::RelaxedSplit => -RELAXED_SPLIT_OFFSET,
            _ => 0,
        };
        let column_offsets = q.chunks_exact(k).map(|row| offset * row.iter().map(|&v| v as i32).sum::<i32>()).collect();
        let panels = n.div_ceil(PANEL);
        let depth = kernel.depth();
        let half_groups = k.div_ceil(depth);
        // Panel by panel, group by group of `depth` inputs, each column's `depth` weights (zero
        // past the last column or input); `RelaxedSplit` repeats each panel's groups for its
        // second half of the inputs.
        let mut packed = vec![0i8; panels * half_groups * kernel.halves() * PANEL * depth];
        let half = half_groups * PANEL * depth;
        for (panel, out) in packed.chunks_exact_mut(half * kernel.halves()).enumerate() {
            for c in 0..PANEL.min(n - panel * PANEL) {
                let column = &q[(panel * PANEL + c) * k..][..k];
                for (group, weights) in column.chunks(depth).enumerate() {
                    out[(group * PANEL + c) * depth..][..weights.len()].copy_from_slice(weights);
                }
            }
            let (first, second) = out.split_at_mut(half);
            if !second.is_empty() {
                second.copy_from_slice(first);
            }
        }
        let (packed_i8, packed_i16) = match kernel {
            Kernel::Pairs => (Vec::new(), packed.into_iter().map(i16::from).collect()),
            _ => (packed, Vec::new()),
        };
        Self { n, k, kernel, scales, column_offsets, packed_i8, packed_i16 }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// `quantized` (its rows × K) times this matrix → `sums` (rows × N, row-major), the exact
    /// integer dot products of the quantized values, whichever kernel ran (the unsigned inputs of
    /// [`Kernel::Vnni`] are corrected here). The tests' whole product: the inference path takes
    /// the sums block by block, into its epilogue.
    #[cfg(test)]
    pub fn multiply(&self, quantized: &Quantized, sums: &mut [i32]) {
        struct Collect<'a> {
            sums: &'a mut [i32],
            n: usize,
        }
        impl Sums for Collect<'_> {
            fn take(&mut self, row: usize, first: usize, values: &[i32]) {
                let at = row * self.n + first;
                self.sums[at..at + values.len()].copy_from_slice(values)
            }
        }
        assert_eq!(sums.len(), quantized.rows * self.n);
        self.multiply_with(quantized, &mut Collect { sums, n: self.n });
    }

    /// As [`Int8Matrix::multiply`], handing each row's sums to `each` up to 32 columns at a time,
    /// while they are in registers (no buffer of sums is written and read back).
    #[inline(always)]
    pub fn multiply_with(&self, quantized: &Quantized, each: &mut impl Sums) {
        assert!(quantized.kernel == Some(self.kernel), "input quantized for another kernel");
        assert_eq!(quantized.k, self.k, "input has {} channels, weights {}", quantized.k, self.k);
        let n = self.n;
        let rows_per_tile = self.kernel.rows();
        let groups = self.k.div_ceil(self.kernel.depth()) * self.kernel.halves();
        let panels = n.div_ceil(PANEL);
        let panel_len = groups * PANEL * self.kernel.depth();
        let mut tile = [[0i32; 2 * PANEL]; 6];
        for row0 in (0..quantized.rows).step_by(rows_per_tile) {
            let rows = rows_per_tile.min(quantized.rows - row0);
            let mut panel = 0;
            while panel < panels {
                let two = panel + 1 < panels;
                match self.kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Vnni => {
                        let a = &quantized.unsigned[row0 * quantized.stride..];
                        let b = &self.packed_i8[panel * panel_len..];
                        // SAFETY: `Vnni` is only chosen where the CPU has these features; `a`
                        // holds 6 padded rows of `stride` = 4 · groups bytes from `row0` (the
                        // input is padded to whole tiles) and `b` one or two panels of
                        // `panel_len` bytes.
                        unsafe {
                            if two {
                                vnni::tile::<2>(a, quantized.stride, b, panel_len, groups, &mut tile)
                            } else {
                                vnni::tile::<1>(a, quantized.stride, b, panel_len, groups, &mut tile)
                            }
                        }
                    }
                    #[cfg(any(test, target_feature = "relaxed-simd"))]
                    Kernel::Relaxed | Kernel::RelaxedSplit => {
                        let a = &quantized.unsigned[row0 * quantized.stride..];
                        let b = &self.packed_i8[panel * panel_len..];
                        relaxed::tile(a, quantized.stride, b, panel_len, groups, two, &mut tile);
                    }
                    _ => {
                        let a = &quantized.signed[row0 * quantized.stride..];
                        let b = &self.packed_i16[panel * panel_len..];
                        pairs::tile(a, quantized.stride, b, panel_len, groups, two, &mut tile);
                    }
                }
                let first = panel * PANEL;
                let cols = (if two { 2 * PANEL } else { PANEL }).min(n - first);
                let offsets = &self.column_offsets[first..first + cols];
                for (r, tile) in tile.iter_mut().enumerate().take(rows) {
                    let values = &mut tile[..cols];
                    for (value, &offset) in values.iter_mut().zip(offsets) {
                        *value += offset;
                    }
                    each.take(row0 + r, first, values);
                }
                panel += if two { 2 } else { 1 };
            }
        }
    }

    /// `quantized` (its rows × K) times this matrix → `out` (rows × N) = activation(sum ·
    /// row_scale · scale[c] + bias[c] + residual[c]). With [`Kernel::Vnni`] each tile of sums is
    /// finished in the registers it was summed in ([`vnni::tile_finished`]); the other kernels hand
    /// each row's sums to [`finish_row`]. The same bits either way.
    pub fn multiply_finish(
        &self,
        quantized: &Quantized,
        bias: &[f32],
        residual: Option<&[f32]>,
        activation: Activation,
        out: &mut [f32],
    ) {
        // The sizes are checked by the caller (`matmul::Weights::apply`) and again by the slicing.
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Vnni {
            // SAFETY: `Vnni` is only chosen where the CPU has AVX-512 F, BW and VNNI.
            return unsafe { self.multiply_finish_vnni(quantized, bias, residual, activation, out) };
        }
        struct Finish<'a> {
            matrix: &'a Int8Matrix,
            scales: &'a [f32],
            bias: &'a [f32],
            residual: Option<&'a [f32]>,
            activation: Activation,
            out: &'a mut [f32],
        }
        impl Sums for Finish<'_> {
            #[inline(always)]
            fn take(&mut self, r: usize, first: usize, sums: &[i32]) {
                let n = self.matrix.n;
                let columns = r * n + first..r * n + first + sums.len();
                let residual = self.residual.map(|res| &res[columns.clone()]);
                let (bias, scales) =
                    (&self.bias[first..first + sums.len()], &self.matrix.scales[first..first + sums.len()]);
                finish_row(sums, self.scales[r], scales, bias, residual, self.activation, &mut self.out[columns]);
            }
        }
        self.multiply_with(
            quantized,
            &mut Finish { matrix: self, scales: &quantized.scales, bias, residual, activation, out },
        );
    }

    /// [`Int8Matrix::multiply_finish`] for [`Kernel::Vnni`]: six rows × two panels at a time,
    /// summed and finished in registers. Before this, each row's sums went through memory to the
    /// row loop one row at a time, and in Lite0's first layers (16–24 output channels, 3 136–12 544
    /// rows) that per-row work cost more than the products (perf, AMD EPYC Zen 5, 2026-12-07).
    /// Compiled whole for AVX-512 so that the tile kernel inlines into the loop (one call per
    /// tile, each loading its constants again, took 8% of a pass). Safety: the CPU has AVX-512 F, BW
    /// and VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn multiply_finish_vnni(
        &self,
        quantized: &Quantized,
        bias: &[f32],
        residual: Option<&[f32]>,
        activation: Activation,
        out: &mut [f32],
    ) {
        assert!(quantized.kernel == Some(Kernel::Vnni), "input quantized for another kernel");
        assert_eq!(quantized.k, self.k, "input has {} channels, weights {}", quantized.k, self.k);
        let n = self.n;
        let groups = self.k.div_ceil(4);
        let panels = n.div_ceil(PANEL);
        let panel_len = groups * PANEL * 4;
        assert!(quantized.unsigned.len() >= quantized.rows.div_ceil(6) * 6 * quantized.stride);
        assert!(quantized.stride >= 4 * groups && self.packed_i8.len() == panels * panel_len);
        for row0 in (0..quantized.rows).step_by(6) {
            let rows = 6.min(quantized.rows - row0);
            let mut panel = 0;
            while panel < panels {
                let two = panel + 1 < panels;
                let first = panel * PANEL;
                let cols = (if two { 2 * PANEL } else { PANEL }).min(n - first);
                let finish = vnni::Finish {
                    rows,
                    cols,
                    offsets: &self.column_offsets[first..first + cols],
                    scales: &self.scales[first..first + cols],
                    bias: &bias[first..first + cols],
                    row_scales: &quantized.scales[row0..row0 + rows],
                    residual: residual.map(|r| &r[row0 * n + first..]),
                    activation,
                    stride: n,
                };
                let a = &quantized.unsigned[row0 * quantized.stride..];
                let b = &self.packed_i8[panel * panel_len..];
                let out = &mut out[row0 * n + first..];
                // SAFETY: this function runs with the CPU features the kernel needs; `a` holds 6
                // padded rows of `stride` ≥ 4 · groups bytes from `row0` (the input is padded to
                // whole tiles, asserted above) and `b` one or two panels of `panel_len` bytes; `out`
                // and the residual hold `rows` rows of `n` from column `first`, whose `cols` are
                // read and written (the slices' lengths are checked in `tile_finished`).
                unsafe {
                    if two {
                        vnni::tile_finished::<2>(a, quantized.stride, b, panel_len, groups, &finish, out)
                    } else {
                        vnni::tile_finished::<1>(a, quantized.stride, b, panel_len, groups, &finish, out)
                    }
                }
                panel += if two { 2 } else { 1 };
            }
        }
    }
}

/// Where [`Int8Matrix::multiply_with`] hands its sums. A trait rather than a closure: an
/// `#[inline(always)]` method is inlined into the caller's AVX2 build, where a closure was compiled
/// on its own for baseline x86-64 (a quarter of the forward pass, measured).
pub trait Sums {
    /// Row `row`'s exact sums from column `first` on.
    fn take(&mut self, row: usize, first: usize, sums: &[i32]);
}

/// A weight tensor of `channels` output channels (rows) → int8 values and one scale per channel:
/// each row over max|row| / 127, rounded half away from zero. The backbone file stores its weights
/// this way, so quantizing the file's dequantized values again gives back exactly its integers.
pub fn quantize_per_output_channel(data: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per_channel = data.len() / channels;
    let mut q = Vec::with_capacity(data.len());
    let mut scales = Vec::with_capacity(channels);
    for row in data.chunks(per_channel) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(row.iter().map(|v| round_half_away((v / scale).clamp(-127.0, 127.0))));
        scales.push(scale);
    }
    (q, scales)
}

/// `x.round() as i8` (half away from zero) for |x| ≤ 127 or NaN, without `f32::round`:
/// a libm call in wasm, which made quantizing the weights of the trained layers' forward pass cost
/// more than the int8 products it fed at a batch of 4 (Chromium, 2026-12-07). Rounds ties to even
/// ([`crate::kernels::scalar::ROUNDING_MAGIC`]), then moves a tie away from zero.
#[inline(always)]
fn round_half_away(x: f32) -> i8 {
    use crate::kernels::scalar::ROUNDING_MAGIC;
    let even = (x + ROUNDING_MAGIC) - ROUNDING_MAGIC;
    (if (x - even).abs() == 0.5 { x + 0.5f32.copysign(x) } else { even }) as i8
}

/// What [`Kernel::RelaxedSplit`] adds to each quantized input (−127..=127) to make it 0..=254: two
/// halves of 0..=127 each.
#[cfg(any(test, target_feature = "relaxed-simd"))]
const RELAXED_SPLIT_OFFSET: i32 = 127;

/// max |x| / 127, or 1 for an all-zero row (whose values then all quantize to 0).
#[inline(always)]
fn symmetric_scale(values: &[f32]) -> f32 {
    scale_for_max(max_abs(values))
}

/// The scale of a row whose largest magnitude is `max`: max / 127, or 1 where that is 0 or not
/// finite.
#[inline(always)]
fn scale_for_max(max: f32) -> f32 {
    if max > 0.0 && max.is_finite() {
        max / 127.0
    } else {
        1.0
    }
}

/// Rows of activations quantized for one kernel, with each row's scale.
#[derive(Debug, Default)]
pub struct Quantized {
    kernel: Option<Kernel>,
    k: usize,
    rows: usize,
    /// Elements per padded row.
    stride: usize,
    pub scales: Vec<f32>,
    /// [`Kernel::Vnni`]: q + 128; [`Kernel::Relaxed`]: q (0..=127); [`Kernel::RelaxedSplit`]: q + 127
    /// in two halves of 0..=127, the first `stride / 2` bytes of a row and the rest.
    unsigned: Vec<u8>,
    /// [`Kernel::Pairs`]: q.
    signed: Vec<i16>,
}

impl Quantized {
    /// `input` (rows × `k`) → int8 rows for `kernel`, one scale per row; the buffers are reused.
    #[inline(always)]
    pub fn quantize_rows(&mut self, input: &[f32], k: usize, kernel: Kernel) {
        let rows = input.len() / k;
        let padded_rows = rows.div_ceil(kernel.rows()) * kernel.rows();
        let half = k.div_ceil(kernel.depth()) * kernel.depth();
        let stride = half * kernel.halves();
        self.kernel = Some(kernel);
        self.k = k;
        self.rows = rows;
        self.stride = stride;
        self.scales.clear();
        match kernel {
            Kernel::Pairs => {
                self.signed.clear();
                self.signed.resize(padded_rows * stride, 0);
            }
            _ => {
                self.unsigned.clear();
                self.unsigned.resize(padded_rows * stride, if kernel == Kernel::Vnni { 128 } else { 0 });
            }
        }
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Vnni {
            // SAFETY: `Vnni` is only chosen where the CPU has AVX-512 F, BW and VL.
            unsafe { vnni::quantize_rows(input, k, &mut self.unsigned, stride, &mut self.scales) };
            return;
        }
        for (r, row) in input.chunks_exact(k).enumerate() {
            let scale = symmetric_scale(row);
            let inverse = 1.0 / scale;
            self.scales.push(scale);
            match kernel {
                Kernel::Vnni => unreachable!("quantized above"),
                #[cfg(any(test, target_feature = "relaxed-simd"))]
                Kernel::Relaxed => {
                    // Clamped at 0 so that the instruction stays exact whatever comes in.
                    for (o, &x) in self.unsigned[r * stride..r * stride + k].iter_mut().zip(row) {
                        *o = round_to_i32(x * inverse).max(0) as u8;
                    }
                }
                #[cfg(any(test, target_feature = "relaxed-simd"))]
                Kernel::RelaxedSplit => {
                    let (low, high) = self.unsigned[r * stride..(r + 1) * stride].split_at_mut(half);
                    for ((low, high), &x) in low.iter_mut().zip(high.iter_mut()).zip(row) {
                        let shifted = round_to_i32(x * inverse) + RELAXED_SPLIT_OFFSET;
                        let first = shifted.min(127);
                        (*low, *high) = (first as u8, (shifted - first) as u8);
                    }
                }
                Kernel::Pairs => quantize_row(row, inverse, &mut self.signed[r * stride..r * stride + k]),
            }
        }
    }
}

/// Columns the four-row kernels compute in one pass: two 4-lane vectors in wasm.
const HALF: usize = PANEL / 2;

/// Four rows × one or two panels of a kernel that takes `depth` inputs per group, half a panel
/// (columns `first..first + 8`) at a time by `half_panel`: `tile[r][p·16 + c]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn four_rows<A, B>(
    a: &[A],
    a_stride: usize,
    b: &[B],
    panel_len: usize,
    groups: usize,
    depth: usize,
    two: bool,
    tile: &mut [[i32; 2 * PANEL]; 6],
    half_panel: impl Fn(&[&[A]; 4], &[B], usize) -> [[i32; HALF]; 4],
) {
    let rows: [&[A]; 4] = std::array::from_fn(|r| &a[r * a_stride..r * a_stride + depth * groups]);
    for p in 0..(1 + two as usize) {
        let b = &b[p * panel_len..p * panel_len + groups * depth * PANEL];
        for half in 0..2 {
            let sums = half_panel(&rows, b, half * HALF);
            for (out, sums) in tile.iter_mut().zip(&sums) {
                out[p * PANEL + half * HALF..p * PANEL + (half + 1) * HALF].copy_from_slice(sums);
            }
        }
    }
}

/// Four rows' accumulators (two vectors of 4 each) as integers.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn stored(acc: &[[std::arch::wasm32::v128; 2]; 4]) -> [[i32; HALF]; 4] {
    let mut out = [[0i32; HALF]; 4];
    for (out, acc) in out.iter_mut().zip(acc) {
        // SAFETY: `out` holds 8 i32: two vectors of 4.
        unsafe {
            std::arch::wasm32::v128_store(out.as_mut_ptr().cast(), acc[0]);
            std::arch::wasm32::v128_store(out.as_mut_ptr().add(4).cast(), acc[1]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::round_half_away;

    /// As `f32::round` on every quarter and tie in ±127.5 and their neighbours; NaN to 0.
    #[test]
    fn rounds_half_away_from_zero_as_f32_round_does() {
        let mut values: Vec<f32> = (-510..=510).map(|i| i as f32 * 0.25).collect();
        let neighbours: Vec<f32> = values
            .iter()
            .flat_map(|&v| [f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().max(1) - 1)])
            .collect();
        values.extend(neighbours);
        values.extend([0.49999997, -0.49999997, 126.5, -126.5, 1e-30, -0.0]);
        for v in values {
            assert_eq!(round_half_away(v), v.round() as i8, "{v}");
        }
        assert_eq!(round_half_away(f32::NAN), 0);
    }
}
