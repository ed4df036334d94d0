//! wasm simd128 builds of the small loops around the inference kernels: activation, max |x|,
//! quantizing a row, finishing int8 sums. LLVM vectorises their portable forms well for x86-64, but
//! for wasm it kept 16 lanes as scalars and moved them in and out of vectors each step (`extract_lane`
//! / `replace_lane` in the profile's hot functions). Each computes exactly what the portable form
//! does, operation for operation, so the two targets give the same bits.

use std::arch::wasm32::*;

use crate::kernels::scalar::{activate, round_to_i32, Activation};

/// [`crate::kernels::apply_activation`]. `pmax`/`pmin` are compare-and-select (`a < b ? b : a`),
/// which is what [`activate`] computes, NaN included.
#[inline(always)]
pub fn apply_activation(values: &mut [f32], activation: Activation) {
    if activation == Activation::None {
        return;
    }
    let mut chunks = values.chunks_exact_mut(4);
    for chunk in &mut chunks {
        // SAFETY: a chunk is 4 f32, one v128.
        unsafe {
            let v = activate4(v128_load(chunk.as_ptr().cast()), activation);
            v128_store(chunk.as_mut_ptr().cast(), v);
        }
    }
    for v in chunks.into_remainder() {
        *v = activate(*v, activation);
    }
}

#[inline(always)]
fn activate4(v: v128, activation: Activation) -> v128 {
    match activation {
        Activation::None => v,
        Activation::Relu => f32x4_pmax(v, f32x4_splat(0.0)),
        Activation::Relu6 => f32x4_pmin(f32x4_pmax(v, f32x4_splat(0.0)), f32x4_splat(6.0)),
    }
}

/// max |x| over `values` (0 for none; NaNs are passed over, as the portable form does).
#[inline(always)]
pub fn max_abs(values: &[f32]) -> f32 {
    let mut lanes = [f32x4_splat(0.0); 4];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (i, m) in lanes.iter_mut().enumerate() {
            // SAFETY: a chunk is 16 f32, four v128.
            let v = unsafe { v128_load(chunk.as_ptr().add(4 * i).cast()) };
            *m = f32x4_pmax(*m, f32x4_abs(v));
        }
    }
    let mut max = 0f32;
    for m in lanes {
        for lane in [
            f32x4_extract_lane::<0>(m),
            f32x4_extract_lane::<1>(m),
            f32x4_extract_lane::<2>(m),
            f32x4_extract_lane::<3>(m),
        ] {
            max = if lane > max { lane } else { max };
        }
    }
    for &v in chunks.remainder() {
        let a = v.abs();
        max = if a > max { a } else { max };
    }
    max
}

/// `out[i] = round(row[i] · inverse)` clamped to ±127, by the same float rounding as
/// `int8::round_to_i32`.
#[inline(always)]
pub fn quantize_row(row: &[f32], inverse: f32, out: &mut [i16]) {
    const MAGIC: f32 = crate::kernels::scalar::ROUNDING_MAGIC;
    let (magic, magic_bits, inverse4) = (f32x4_splat(MAGIC), i32x4_splat(MAGIC.to_bits() as i32), f32x4_splat(inverse));
    let (low, high) = (i32x4_splat(-127), i32x4_splat(127));
    let round = |v: v128| {
        let bits = i32x4_sub(f32x4_add(f32x4_mul(v, inverse4), magic), magic_bits);
        i32x4_min(i32x4_max(bits, low), high)
    };
    let mut done = 0;
    for (chunk, out) in row.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
        // SAFETY: 8 f32 in (two v128), 8 i16 out (one v128).
        unsafe {
            let (a, b) = (v128_load(chunk.as_ptr().cast()), v128_load(chunk.as_ptr().add(4).cast()));
            v128_store(out.as_mut_ptr().cast(), i16x8_narrow_i32x4(round(a), round(b)));
        }
        done += 8;
    }
    for (o, &x) in out[done..row.len()].iter_mut().zip(&row[done..]) {
        *o = round_to_i32(x * inverse) as i16;
    }
}

/// `out[c] = activation(sums[c] · (row_scale · scales[c]) + bias[c] (+ residual[c]))`.
#[inline(always)]
pub fn finish_row(
    sums: &[i32],
    row_scale: f32,
    scales: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    activation: Activation,
    out: &mut [f32],
) {
    let n = out.len();
    assert!(sums.len() == n && scales.len() == n && bias.len() == n && residual.is_none_or(|r| r.len() == n));
    let row_scale4 = f32x4_splat(row_scale);
    let mut c = 0;
    while c + 4 <= n {
        // SAFETY: columns c..c + 4 are inside every slice (asserted above).
        unsafe {
            let sum = f32x4_convert_i32x4(v128_load(sums.as_ptr().add(c).cast()));
            let scale = f32x4_mul(row_scale4, v128_load(scales.as_ptr().add(c).cast()));
            let mut v = f32x4_add(f32x4_mul(sum, scale), v128_load(bias.as_ptr().add(c).cast()));
            if let Some(residual) = residual {
                v = f32x4_add(v, v128_load(residual.as_ptr().add(c).cast()));
            }
            v128_store(out.as_mut_ptr().add(c).cast(), activate4(v, activation));
        }
        c += 4;
    }
    for c in c..n {
        let v = sums[c] as f32 * (row_scale * scales[c]) + bias[c];
        out[c] = activate(residual.map_or(v, |r| v + r[c]), activation);
    }
}
