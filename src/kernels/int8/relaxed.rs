//! [`super::Kernel::Relaxed`] and [`super::Kernel::RelaxedSplit`]: wasm's
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` in the relaxed-SIMD builds (natively, plain loops the tests run).

use super::{HALF, PANEL};

/// Four rows × one or two panels: `tile[r][p·16 + c]` = Σ over `groups` groups of 4 of
/// `b[p][g][c][j]` (signed) · `a[r][4g + j]` (0..=127).
pub fn tile(
    a: &[u8],
    a_stride: usize,
    b: &[i8],
    panel_len: usize,
    groups: usize,
    two: bool,
    tile: &mut [[i32; 2 * PANEL]; 6],
) {
    super::four_rows(a, a_stride, b, panel_len, groups, 4, two, tile, half_panel)
}

/// What the instruction computes, as plain loops: natively only the tests run this kernel.
#[cfg(not(target_arch = "wasm32"))]
fn half_panel(rows: &[&[u8]; 4], b: &[i8], first: usize) -> [[i32; HALF]; 4] {
    let mut acc = [[0i32; HALF]; 4];
    for (g, w) in b.chunks_exact(4 * PANEL).enumerate() {
        let w = &w[4 * first..4 * (first + HALF)];
        for (acc, row) in acc.iter_mut().zip(rows) {
            let x = &row[4 * g..4 * g + 4];
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc += (0..4).map(|j| w[4 * c + j] as i32 * x[j] as i32).sum::<i32>();
            }
        }
    }
    acc
}

/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` does 4 columns × 4 inputs per instruction, the add
/// included; each row's 4 inputs are one 32-bit load, splat.
#[cfg(target_arch = "wasm32")]
fn half_panel(rows: &[&[u8]; 4], b: &[i8], first: usize) -> [[i32; HALF]; 4] {
    use std::arch::wasm32::*;
    let groups = b.len() / (4 * PANEL);
    assert!(rows.iter().all(|r| r.len() >= 4 * groups) && first + HALF <= PANEL);
    let mut acc = [[i32x4_splat(0); 2]; 4];
    let rows = rows.map(|r| r.as_ptr());
    for g in 0..groups {
        // SAFETY: group `g` holds 4·16 bytes from 4·16·g, of which 32 from 4·first (first ≤ 8),
        // and every row holds 4 · groups values (asserted above).
        unsafe {
            let w = b.as_ptr().add(4 * PANEL * g + 4 * first);
            let w = [v128_load(w.cast()), v128_load(w.add(16).cast())];
            for (acc, row) in acc.iter_mut().zip(&rows) {
                let x = v128_load32_splat(row.add(4 * g).cast());
                acc[0] = i32x4_relaxed_dot_i8x16_i7x16_add(w[0], x, acc[0]);
                acc[1] = i32x4_relaxed_dot_i8x16_i7x16_add(w[1], x, acc[1]);
            }
        }
    }
    super::stored(&acc)
}
