//! The scalar arithmetic every kernel shares, written as compares and selects so that it
//! vectorises on every target (in the portable loops of [`super::rows`] and lane by lane in
//! [`super::simd128`]). Imports nothing.

/// What follows a convolution's (folded) normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

/// `activation(x)`, written as compare-and-select so it vectorises in wasm too ([`relu6`]).
#[inline(always)]
pub fn activate(x: f32, activation: Activation) -> f32 {
    match activation {
        Activation::None => x,
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::Relu6 => relu6(x),
    }
}

/// `min(max(x, 0), 6)` written as comparisons and selects. These vectorise everywhere (to `maxps`/
/// `minps` on x86, `f32x4.pmax`/`pmin` in wasm); `f32::max`/`min`/`clamp` have NaN rules that wasm's
/// min/max instructions do not share, so in wasm they became scalar code and this op took ~30% of
/// the browser's forward pass. (A NaN input stays NaN.)
#[inline(always)]
pub fn relu6(x: f32) -> f32 {
    let x = if x < 0.0 { 0.0 } else { x };
    if x > 6.0 {
        6.0
    } else {
        x
    }
}

/// 1.5 · 2²³: added to an f32 of magnitude below 2²², it leaves that value rounded to an integer
/// in the low mantissa bits ([`round_to_i32`], and the SIMD copies of it).
pub const ROUNDING_MAGIC: f32 = 12_582_912.0;

/// Round to nearest (ties to even) for |x| ≤ 127, as float arithmetic that vectorises everywhere:
/// adding 1.5 · 2²³ leaves the rounded integer in the low mantissa bits (`f32::round` is a libm call
/// in wasm, and a saturating `as` cast needs compares around every conversion). Anything else — a
/// NaN from a NaN input — lands in [−127, 127] by the clamp on the bits.
#[inline(always)]
pub fn round_to_i32(x: f32) -> i32 {
    let bits = ((x + ROUNDING_MAGIC).to_bits() as i32).wrapping_sub(ROUNDING_MAGIC.to_bits() as i32);
    bits.clamp(-127, 127)
}
