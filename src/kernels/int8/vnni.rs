//! [`super::Kernel::Vnni`]: x86-64 with AVX-512 VNNI (`vpdpbusd`), six rows × one or two panels a tile,
//! finished in the registers the sums are in; and the rows' quantization, 16 lanes at a time.

use std::arch::x86_64::*;

use super::PANEL;
use crate::kernels::Activation;

/// Six rows × one or two panels: `tile[r][p·16 + c]` = Σ over `groups` groups of 4 of
/// `a[r][4g + j]` (unsigned) · `b[p][g][c][j]` (signed).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn tile<const PANELS: usize>(
    a: &[u8],
    a_stride: usize,
    b: &[i8],
    panel_len: usize,
    groups: usize,
    tile: &mut [[i32; 2 * PANEL]; 6],
) {
    let acc = sums::<PANELS>(a, a_stride, b, panel_len, groups);
    for (out, acc) in tile.iter_mut().zip(&acc) {
        for (p, acc) in acc.iter().enumerate() {
            _mm512_storeu_si512(out.as_mut_ptr().add(p * PANEL).cast(), *acc);
        }
    }
}

/// The sums of [`tile`], in registers.
#[inline(always)]
unsafe fn sums<const PANELS: usize>(
    a: &[u8],
    a_stride: usize,
    b: &[i8],
    panel_len: usize,
    groups: usize,
) -> [[__m512i; PANELS]; 6] {
    debug_assert!(a.len() >= 5 * a_stride + 4 * groups && b.len() >= (PANELS - 1) * panel_len + 64 * groups);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm512_setzero_si512(); PANELS]; 6];
    for g in 0..groups {
        let mut w = [_mm512_setzero_si512(); PANELS];
        for (p, w) in w.iter_mut().enumerate() {
            *w = _mm512_loadu_si512(b.add(p * panel_len + g * 64).cast());
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_epi32(a.add(r * a_stride + g * 4).cast::<i32>().read_unaligned());
            for p in 0..PANELS {
                acc[p] = _mm512_dpbusd_epi32(acc[p], x, w[p]);
            }
        }
    }
    acc
}

/// What a tile's sums become: `rows` rows × `cols` columns of
/// activation((sum + offset[c]) · (row_scale[r] · scale[c]) + bias[c] + residual[r][c]),
/// rows `stride` values apart in the output and the residual.
pub struct Finish<'a> {
    pub rows: usize,
    pub cols: usize,
    pub offsets: &'a [i32],
    pub scales: &'a [f32],
    pub bias: &'a [f32],
    pub row_scales: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub activation: Activation,
    pub stride: usize,
}

/// [`tile`]'s sums finished in registers into `out` as `finish` says: the arithmetic of
/// [`crate::kernels::rows::finish_row`] in the same order (a product, then the bias, then the
/// residual; no fused multiply-add), so the same bits. Inlined into a caller compiled for
/// AVX-512 F, BW and VNNI.
#[inline(always)]
pub unsafe fn tile_finished<const PANELS: usize>(
    a: &[u8],
    a_stride: usize,
    b: &[i8],
    panel_len: usize,
    groups: usize,
    finish: &Finish,
    out: &mut [f32],
) {
    let Finish { rows, cols, offsets, scales, bias, row_scales, residual, activation, stride } = *finish;
    assert!(rows <= 6 && cols <= PANELS * PANEL && offsets.len() == cols && scales.len() == cols);
    assert!(bias.len() == cols && row_scales.len() == rows);
    let last = (rows.max(1) - 1) * stride + cols;
    assert!(out.len() >= last && residual.is_none_or(|r| r.len() >= last));
    let acc = sums::<PANELS>(a, a_stride, b, panel_len, groups);
    let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
    let mut columns = [(0 as __mmask16, _mm512_setzero_si512(), zero, zero); PANELS];
    for (p, column) in columns.iter_mut().enumerate() {
        let mask = lanes(cols.saturating_sub(p * PANEL));
        let at = p * PANEL;
        *column = (
            mask,
            _mm512_maskz_loadu_epi32(mask, offsets.as_ptr().wrapping_add(at)),
            _mm512_maskz_loadu_ps(mask, scales.as_ptr().wrapping_add(at)),
            _mm512_maskz_loadu_ps(mask, bias.as_ptr().wrapping_add(at)),
        );
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        let row_scale = _mm512_set1_ps(row_scales[r]);
        for (p, &(mask, offset, scale, bias)) in columns.iter().enumerate() {
            let at = r * stride + p * PANEL;
            let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(acc[p], offset));
            let mut v = _mm512_add_ps(_mm512_mul_ps(sum, _mm512_mul_ps(row_scale, scale)), bias);
            if let Some(residual) = residual {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, residual.as_ptr().wrapping_add(at)));
            }
            // `activate`'s compares as max/min: each returns its second operand where either
            // is NaN or both are zeros, as the scalar selects keep x.
            v = match activation {
                Activation::None => v,
                Activation::Relu => _mm512_max_ps(zero, v),
                Activation::Relu6 => _mm512_min_ps(six, _mm512_max_ps(zero, v)),
            };
            _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(at), mask, v);
        }
    }
}

/// `input` (rows of `k`) → [`quantize_row`] into `out` (rows of `stride` bytes), each row's
/// scale pushed onto `scales`. One call for all the rows, so that each row's short chain of
/// work (a reduction, two divisions) overlaps the next one's: a call per row, its constants
/// set up again each time, took 18% of a pass (perf, AMD EPYC Zen 5, 2026-12-07).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn quantize_rows(input: &[f32], k: usize, out: &mut [u8], stride: usize, scales: &mut Vec<f32>) {
    for (row, out) in input.chunks_exact(k).zip(out.chunks_exact_mut(stride)) {
        scales.push(quantize_row(row, out));
    }
}

/// The first `count` of 16 lanes.
#[inline(always)]
fn lanes(count: usize) -> __mmask16 {
    if count >= 16 {
        0xffff
    } else {
        ((1u32 << count) - 1) as __mmask16
    }
}

/// `row` → `out[i]` = round(row[i] / scale) + 128 (as [`crate::kernels::scalar::round_to_i32`]
/// rounds, clamped to ±127) and the row's scale, max|row| / 127 (1 where that is 0 or not
/// finite; NaNs are passed over): [`super::Quantized::quantize_rows`]' arithmetic 16 lanes at a
/// time.
#[inline(always)]
unsafe fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
    assert!(out.len() >= row.len());
    let k = row.len();
    let mut max = _mm512_setzero_ps();
    let mut i = 0;
    while i < k {
        let x = _mm512_maskz_loadu_ps(lanes(k - i), row.as_ptr().add(i));
        // max(|x|, m) returns m where |x| is NaN (its second operand), as `max_abs` passes over NaNs.
        max = _mm512_max_ps(_mm512_abs_ps(x), max);
        i += PANEL;
    }
    let max = _mm512_reduce_max_ps(max);
    let scale = super::scale_for_max(max);
    let inverse = _mm512_set1_ps(1.0 / scale);
    const MAGIC: f32 = crate::kernels::scalar::ROUNDING_MAGIC;
    let (magic, magic_bits) = (_mm512_set1_ps(MAGIC), _mm512_set1_epi32(MAGIC.to_bits() as i32));
    let (low, high, offset) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127), _mm512_set1_epi32(128));
    let mut i = 0;
    while i < k {
        let mask = lanes(k - i);
        let x = _mm512_maskz_loadu_ps(mask, row.as_ptr().add(i));
        let bits = _mm512_castps_si512(_mm512_add_ps(_mm512_mul_ps(x, inverse), magic));
        let q = _mm512_min_epi32(_mm512_max_epi32(_mm512_sub_epi32(bits, magic_bits), low), high);
        // Narrowed in a register, then stored: `vpmovdb` straight to memory is microcoded on
        // AMD's Zen 4 and 5.
        let bytes = _mm512_cvtepi32_epi8(_mm512_add_epi32(q, offset));
        _mm_mask_storeu_epi8(out.as_mut_ptr().add(i).cast(), mask, bytes);
        i += PANEL;
    }
    scale
}
