//! The row loops of the inference kernels — activations over a buffer, a row's int8 sums finished
//! into floats, a row's largest magnitude, a row quantized — and the one place the target is
//! chosen: in wasm32 the simd128 versions ([`super::simd128`]), elsewhere the portable loops below,
//! which the compiler vectorises for the CPU at hand. Both give the same bits.

#[cfg(target_arch = "wasm32")]
pub use super::simd128::{apply_activation, finish_row, max_abs, quantize_row};

#[cfg(not(target_arch = "wasm32"))]
pub use portable::*;

#[cfg(not(target_arch = "wasm32"))]
mod portable {
    use crate::kernels::scalar::{activate, relu6, round_to_i32, Activation};

    /// [`activate`] in place over a buffer.
    #[inline(always)]
    pub fn apply_activation(values: &mut [f32], activation: Activation) {
        match activation {
            Activation::None => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = activate(*v, Activation::Relu)),
            Activation::Relu6 => values.iter_mut().for_each(|v| *v = relu6(*v)),
        }
    }

    /// `out[c] = activation(sums[c] · (row_scale · scales[c]) + bias[c] (+ residual[c]))`, the
    /// activation applied before the one store (a second pass would read the row back).
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
        let columns = out.iter_mut().zip(sums).zip(scales).zip(bias);
        match residual {
            Some(residual) => {
                for ((((o, &sum), &scale), &b), &x) in columns.zip(residual) {
                    *o = activate(sum as f32 * (row_scale * scale) + b + x, activation);
                }
            }
            None => {
                for (((o, &sum), &scale), &b) in columns {
                    *o = activate(sum as f32 * (row_scale * scale) + b, activation);
                }
            }
        }
    }

    /// max |x| (0 for none; NaNs are passed over). Kept in 16 lanes so it vectorises (a single running
    /// maximum is a serial chain of compares).
    #[inline(always)]
    pub fn max_abs(values: &[f32]) -> f32 {
        let mut lanes = [0f32; 16];
        let chunks = values.chunks_exact(16);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (m, &v) in lanes.iter_mut().zip(chunk) {
                let a = v.abs();
                *m = if a > *m { a } else { *m };
            }
        }
        for (m, &v) in lanes.iter_mut().zip(rest) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
        lanes.iter().fold(0f32, |m, &v| if v > m { v } else { m })
    }

    /// `out[i] = round(row[i] · inverse)`, clamped to ±127.
    #[inline(always)]
    pub fn quantize_row(row: &[f32], inverse: f32, out: &mut [i16]) {
        for (o, &x) in out.iter_mut().zip(row) {
            *o = round_to_i32(x * inverse) as i16;
        }
    }
}
