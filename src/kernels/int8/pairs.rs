//! [`super::Kernel::Pairs`]: i16 pairs, the shape of wasm's `i32x4.dot_i16x8` and x86's `pmaddwd`,
//! everywhere the other kernels are not.

use super::{HALF, PANEL};

/// Four rows × one or two panels: `tile[r][p·16 + c]` = Σ over `groups` pairs of
/// `a[r][2g + j]` · `b[p][g][c][j]`.
pub fn tile(
    a: &[i16],
    a_stride: usize,
    b: &[i16],
    panel_len: usize,
    groups: usize,
    two: bool,
    tile: &mut [[i32; 2 * PANEL]; 6],
) {
    super::four_rows(a, a_stride, b, panel_len, groups, 2, two, tile, half_panel)
}

#[cfg(not(target_arch = "wasm32"))]
fn half_panel(rows: &[&[i16]; 4], b: &[i16], first: usize) -> [[i32; HALF]; 4] {
    let mut acc = [[0i32; HALF]; 4];
    for (g, w) in b.chunks_exact(2 * PANEL).enumerate() {
        let w = &w[2 * first..2 * (first + HALF)];
        for (acc, row) in acc.iter_mut().zip(rows) {
            let (x0, x1) = (row[2 * g] as i32, row[2 * g + 1] as i32);
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc += x0 * w[2 * c] as i32 + x1 * w[2 * c + 1] as i32;
            }
        }
    }
    acc
}

/// simd128: `i32x4.dot_i16x8` does 4 columns × 2 inputs per instruction; each row's pair of
/// inputs is one 32-bit load, splat.
#[cfg(target_arch = "wasm32")]
fn half_panel(rows: &[&[i16]; 4], b: &[i16], first: usize) -> [[i32; HALF]; 4] {
    use std::arch::wasm32::*;
    let groups = b.len() / (2 * PANEL);
    assert!(rows.iter().all(|r| r.len() >= 2 * groups) && first + HALF <= PANEL);
    let mut acc = [[i32x4_splat(0); 2]; 4];
    let rows = rows.map(|r| r.as_ptr());
    for g in 0..groups {
        // SAFETY: group `g` holds 2·16 i16 from 2·16·g, of which 16 from 2·first (first ≤ 8),
        // and every row holds 2 · groups values (asserted above).
        unsafe {
            let w = b.as_ptr().add(2 * PANEL * g + 2 * first);
            let w = [v128_load(w.cast()), v128_load(w.add(8).cast())];
            for (acc, row) in acc.iter_mut().zip(&rows) {
                let x = v128_load32_splat(row.add(2 * g).cast());
                acc[0] = i32x4_add(acc[0], i32x4_dot_i16x8(x, w[0]));
                acc[1] = i32x4_add(acc[1], i32x4_dot_i16x8(x, w[1]));
            }
        }
    }
    super::stored(&acc)
}
