//! IQ1_S and IQ1_M: groups of 8 values in {−1, 0, 1} + δ (δ = ±1/8 per sub-block or per
//! group) on a 2048-point grid, ggml's `quantize_row_iq1_s_impl` and
//! `quantize_row_iq1_m_impl`.
//!
//! With three levels per value the best split of a sub-block is found exactly: sort the
//! values, and for every pair of boundaries `i1 ≤ i2` (values below `i1` → −1, up to `i2`
//! → 0, the rest → +1) score the weighted least-squares fit from prefix sums, for both
//! signs of δ (IQ1_M: for each half of the sub-block independently). Groups that are not
//! grid points then move to their best neighbour at that scale, and the scale is re-fitted.
//! IQ1_S stores a 3-bit scale per 32 weights against `d = max_scale / 15` (×1.125); IQ1_M
//! a 3-bit scale per 16 and a block scale re-fitted over all of its weights (×1.1125).

use super::grid::{self, Lookup, SearchGrid};
use super::{c_max, element_weights, fp16, scale_index};
use crate::format::blocks::{BlockIQ1_M, BlockIQ1_S, QK_K};
use crate::quant::imatrix::sum_sq;

/// `IQ1S_DELTA`, `IQ1M_DELTA`.
const DELTA: f32 = 0.125;
/// The three values with δ = +1/8 (`x_p`) and −1/8 (`x_m`).
const X_P: [f32; 3] = [-1.0 + DELTA, DELTA, 1.0 + DELTA];
const X_M: [f32; 3] = [-1.0 - DELTA, -DELTA, 1.0 - DELTA];
/// `GROUP_MAX_EPS_IQ1_S`, `GROUP_MAX_EPS_IQ1_M`.
const GROUP_MAX_EPS_IQ1_S: f32 = 1e-12;
const GROUP_MAX_EPS_IQ1_M: f32 = 1e-7;

/// The indices of `xb` in ascending order of value, equal values in index order: what
/// ggml's `qsort` of (value, index) pairs with `iq1_sort_helper` gives under glibc, whose
/// `qsort` is a stable merge sort for arrays this small. An insertion sort: as stable, and
/// no panic on NaN.
fn sorted_indices<const N: usize>(xb: &[f32]) -> [usize; N] {
    let mut idx: [usize; N] = std::array::from_fn(|i| i);
    for i in 1..N {
        let mut j = i;
        while j > 0 && xb[idx[j - 1]] > xb[idx[j]] {
            idx.swap(j - 1, j);
            j -= 1;
        }
    }
    idx
}

/// `max |x|` by `MAX` from the first (`max = fabsf(xb[0]); max = MAX(max, fabsf(xb[i]))`).
fn abs_max(xb: &[f32]) -> f32 {
    xb[1..].iter().fold(xb[0].abs(), |m, v| c_max(m, v.abs()))
}

/// Levels 0, 1, 2 (for −1, 0, +1) from the sorted split `i1 ≤ i2`.
fn split_levels<const N: usize>(idx: &[usize; N], i1: usize, i2: usize, levels: &mut [i8; N]) {
    for (j, &i) in idx.iter().enumerate() {
        levels[i] = if j < i1 {
            0
        } else if j < i2 {
            1
        } else {
            2
        };
    }
}

/// The neighbour in `near` closest to `xb` as `scale · xx[l]` (weighted squared distance,
/// the first of equals), written to `levels`: ggml's `iq1_find_best_neighbour2`. Where no
/// distance is below `f32::MAX` (non-finite inputs) ggml scans the whole grid reading out
/// of bounds and then aborts; we take the first neighbour.
fn best_neighbour(
    grid: &SearchGrid<8>,
    near: &[u16],
    xb: &[f32],
    weight: &[f32],
    scale: f32,
    xx: &[f32; 3],
    levels: &mut [i8],
) -> u16 {
    let mut best_score = f32::MAX;
    let mut best = near[0];
    for &g in near {
        let mut d2 = 0.0f32;
        for (i, &l) in grid.point(g).iter().enumerate() {
            let q = xx[l as usize];
            let w = weight[i];
            let diff = scale * q - xb[i];
            d2 += w * diff * diff;
        }
        if d2 < best_score {
            best_score = d2;
            best = g;
        }
    }
    for (l, &p) in levels.iter_mut().zip(grid.point(best)) {
        *l = p as i8;
    }
    best
}

/// The grid indices of a sub-block's groups of 8 (`xx_of(k)` the values of group k), each
/// moved to its best neighbour if it is not a grid point. Returns whether all were on the
/// grid.
fn grid_indices(
    grid: &SearchGrid<8>,
    xb: &[f32],
    weight: &[f32],
    scale: f32,
    xx_of: impl Fn(usize) -> &'static [f32; 3],
    levels: &mut [i8],
    index: &mut [u16],
) -> bool {
    let mut all_on_grid = true;
    for k in 0..index.len() {
        let g = 8 * k..8 * (k + 1);
        index[k] = match grid.lookup(grid.pattern(&levels[g.clone()])) {
            Lookup::Point(p) => p,
            Lookup::Near(near) => {
                all_on_grid = false;
                let (x, w) = (&xb[g.clone()], &weight[g.clone()]);
                best_neighbour(grid, near, x, w, scale, xx_of(k), &mut levels[g])
            }
            // (levels 0..=2 always form a pattern inside the map)
            Lookup::Outside => 0,
        };
    }
    all_on_grid
}

/// The least-squares scale of the chosen grid points, if positive (ggml refits only when
/// some group moved to a neighbour).
fn refit_scale(
    grid: &SearchGrid<8>,
    xb: &[f32],
    weight: &[f32],
    xx_of: impl Fn(usize) -> &'static [f32; 3],
    index: &[u16],
    scale: f32,
) -> f32 {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for (k, &g) in index.iter().enumerate() {
        let xx = xx_of(k);
        for (j, &l) in grid.point(g).iter().enumerate() {
            let w = weight[8 * k + j];
            let q = xx[l as usize];
            sumqx += w * q * xb[8 * k + j];
            sumq2 += w * q * q;
        }
    }
    if sumqx > 0.0 && sumq2 > 0.0 {
        sumqx / sumq2
    } else {
        scale
    }
}

/// IQ1_S (`quantize_row_iq1_s_impl`); `qw` one weight per element of `x`.
pub fn quantize_iq1_s(x: &[f32], y: &mut [BlockIQ1_S], qw: &[f32]) {
    const BS: usize = 32;
    let grid = grid::iq1s();
    for (ibl, (xbl, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        out.d = fp16(0.0);
        out.qs = [0; QK_K / 8];
        out.qh = [0; QK_K / 32];
        let mut scales = [0.0f32; QK_K / BS];
        // δ's sign per sub-block: +1 for x_p, −1 for x_m.
        let mut shifts = [0i8; QK_K / BS];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_sq(xbl) / QK_K as f32;
        for ib in 0..QK_K / BS {
            let xb = &xbl[BS * ib..BS * (ib + 1)];
            let qw = &qw[QK_K * ibl + BS * ib..QK_K * ibl + BS * (ib + 1)];
            let mut weight = [0.0f32; BS];
            element_weights(xb, Some(qw), sigma2, |_| 0.0, &mut weight);
            let max = abs_max(xb);
            if max < GROUP_MAX_EPS_IQ1_S {
                scales[ib] = 0.0;
                shifts[ib] = 1;
                continue;
            }
            let idx = sorted_indices::<BS>(xb);
            // Prefix sums of w·x and w over the sorted values.
            let mut sumx = [0.0f32; BS + 1];
            let mut sumw = [0.0f32; BS + 1];
            for j in 0..BS {
                let i = idx[j];
                sumx[j + 1] = sumx[j] + weight[i] * xb[i];
                sumw[j + 1] = sumw[j] + weight[i];
            }
            let mut best_score = -f32::MAX;
            let mut scale = max;
            let mut best: Option<(usize, usize, i8)> = None;
            for i1 in 0..=BS {
                for i2 in i1..=BS {
                    for (xx, shift) in [(&X_P, 1i8), (&X_M, -1)] {
                        let sumqx = (sumx[i1] - sumx[0]) * xx[0]
                            + (sumx[i2] - sumx[i1]) * xx[1]
                            + (sumx[BS] - sumx[i2]) * xx[2];
                        let sumq2 = (sumw[i1] - sumw[0]) * xx[0] * xx[0]
                            + (sumw[i2] - sumw[i1]) * xx[1] * xx[1]
                            + (sumw[BS] - sumw[i2]) * xx[2] * xx[2];
                        if sumq2 > 0.0 && sumqx * sumqx > best_score * sumq2 {
                            scale = sumqx / sumq2;
                            best_score = scale * sumqx;
                            best = Some((i1, i2, shift));
                        }
                    }
                }
            }
            let Some((i1, i2, mut shift)) = best else {
                scales[ib] = 0.0;
                shifts[ib] = 1;
                continue;
            };
            let mut levels = [0i8; BS];
            split_levels(&idx, i1, i2, &mut levels);
            if scale < 0.0 {
                for l in &mut levels {
                    *l = 2 - *l;
                }
                scale = -scale;
                shift = -shift;
            }
            let xx: &'static [f32; 3] = if shift == 1 { &X_P } else { &X_M };
            let mut index = [0u16; BS / 8];
            let on_grid = grid_indices(grid, xb, &weight, scale, |_| xx, &mut levels, &mut index);
            if !on_grid {
                scale = refit_scale(grid, xb, &weight, |_| xx, &index, scale);
            }
            let mut h = 0u16;
            for k in 0..BS / 8 {
                out.qs[(BS / 8) * ib + k] = index[k] as u8;
                h |= (index[k] >> 8) << (3 * k);
            }
            out.qh[ib] = h;
            scales[ib] = scale;
            shifts[ib] = shift;
            max_scale = c_max(max_scale, scale);
        }
        if max_scale == 0.0 {
            continue;
        }
        let d = max_scale / 15.0;
        out.d = fp16(d * 1.125);
        let id = 1.0 / d;
        for ib in 0..QK_K / BS {
            let mut l = scale_index(id, scales[ib], 7);
            if shifts[ib] == -1 {
                l |= 8;
            }
            out.qh[ib] |= (l as u16) << 12;
        }
    }
}

/// IQ1_M (`quantize_row_iq1_m_impl`), with importance weights `qw` or without.
pub fn quantize_iq1_m(x: &[f32], y: &mut [BlockIQ1_M], qw: Option<&[f32]>) {
    const BS: usize = 16;
    // The δ sign bits in `qh` for a sub-block's shift k (group 0 minus: 0x08, group 1: 0x80).
    const MASKS: [u8; 4] = [0x00, 0x80, 0x08, 0x88];
    // Shift k: 0 (+, +), 1 (+, −), 2 (−, +), 3 (−, −) for the sub-block's two groups.
    fn xx_of(shift: usize, k: usize) -> &'static [f32; 3] {
        let plus = if k == 0 {
            shift < 2
        } else {
            shift.is_multiple_of(2)
        };
        if plus {
            &X_P
        } else {
            &X_M
        }
    }
    let grid = grid::iq1s();
    let weights_of = |xb: &[f32], ibl: usize, ib: usize, sigma2: f32, weight: &mut [f32; BS]| {
        let qw = qw.map(|qw| &qw[QK_K * ibl + BS * ib..QK_K * ibl + BS * (ib + 1)]);
        element_weights(xb, qw, sigma2, |v| v * v, weight);
    };
    for (ibl, (xbl, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        out.qs = [0; QK_K / 8];
        out.qh = [0; QK_K / 16];
        out.scales = [0; QK_K / 64];
        let mut scales = [0.0f32; QK_K / BS];
        let mut shifts = [0usize; QK_K / BS];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_sq(xbl) / QK_K as f32;
        for ib in 0..QK_K / BS {
            let xb = &xbl[BS * ib..BS * (ib + 1)];
            let mut weight = [0.0f32; BS];
            weights_of(xb, ibl, ib, sigma2, &mut weight);
            let max = abs_max(xb);
            if max < GROUP_MAX_EPS_IQ1_M {
                scales[ib] = 0.0;
                shifts[ib] = 0;
                continue;
            }
            let idx = sorted_indices::<BS>(xb);
            // Prefix sums of w·x and w over the sorted values, per half of the sub-block
            // (each half has its own δ sign).
            let mut px = [[0.0f32; BS + 1]; 2];
            let mut pw = [[0.0f32; BS + 1]; 2];
            for j in 0..BS {
                let i = idx[j];
                let h = if i < BS / 2 { 0 } else { 1 };
                px[h][j + 1] = px[h][j] + weight[i] * xb[i];
                px[1 - h][j + 1] = px[1 - h][j];
                pw[h][j + 1] = pw[h][j] + weight[i];
                pw[1 - h][j + 1] = pw[1 - h][j];
            }
            let txs = [px[0][BS], px[1][BS]];
            let tws = [pw[0][BS], pw[1][BS]];
            let (p2, m2) = (X_P[2], X_M[2]);
            let cp1 = X_P[0] * X_P[0] - X_P[1] * X_P[1];
            let cp2 = X_P[1] * X_P[1] - X_P[2] * X_P[2];
            let cm1 = X_M[0] * X_M[0] - X_M[1] * X_M[1];
            let cm2 = X_M[1] * X_M[1] - X_M[2] * X_M[2];
            let mut best_score = -f32::MAX;
            let mut scale = max;
            let mut best: Option<(usize, usize, usize)> = None;
            for i1 in 0..=BS {
                for i2 in i1..=BS {
                    let (mut qx_p, mut qx_m, mut q2_p, mut q2_m) =
                        ([0.0f32; 2], [0.0f32; 2], [0.0f32; 2], [0.0f32; 2]);
                    for h in 0..2 {
                        let sx = px[h][i1] + px[h][i2];
                        qx_p[h] = txs[h] * p2 - sx;
                        qx_m[h] = txs[h] * m2 - sx;
                        q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                        q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
                    }
                    let sumqx = [
                        qx_p[0] + qx_p[1],
                        qx_p[0] + qx_m[1],
                        qx_m[0] + qx_p[1],
                        qx_m[0] + qx_m[1],
                    ];
                    let sumq2 = [
                        q2_p[0] + q2_p[1],
                        q2_p[0] + q2_m[1],
                        q2_m[0] + q2_p[1],
                        q2_m[0] + q2_m[1],
                    ];
                    for k in 0..4 {
                        if sumq2[k] > 0.0 && sumqx[k] * sumqx[k] > best_score * sumq2[k] {
                            scale = sumqx[k] / sumq2[k];
                            best_score = scale * sumqx[k];
                            best = Some((i1, i2, k));
                        }
                    }
                }
            }
            let Some((i1, i2, mut shift)) = best else {
                scales[ib] = 0.0;
                shifts[ib] = 0;
                continue;
            };
            let mut levels = [0i8; BS];
            split_levels(&idx, i1, i2, &mut levels);
            if scale < 0.0 {
                for l in &mut levels {
                    *l = 2 - *l;
                }
                scale = -scale;
                shift = 3 - shift; // both signs flip: 0 ↔ 3, 1 ↔ 2
            }
            let mut index = [0u16; BS / 8];
            let xx = move |k| xx_of(shift, k);
            let on_grid = grid_indices(grid, xb, &weight, scale, xx, &mut levels, &mut index);
            if !on_grid {
                scale = refit_scale(grid, xb, &weight, xx, &index, scale);
            }
            out.qs[2 * ib] = index[0] as u8;
            out.qs[2 * ib + 1] = index[1] as u8;
            out.qh[ib] = (index[0] >> 8) as u8 | ((index[1] >> 8) << 4) as u8;
            scales[ib] = scale;
            shifts[ib] = shift;
            max_scale = c_max(max_scale, scale);
        }
        if max_scale == 0.0 {
            continue;
        }
        let mut d = max_scale / 15.0;
        let id = 1.0 / d;
        // The block scale: least squares over every weight as finally encoded.
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for ib in 0..QK_K / BS {
            let l = scale_index(id, scales[ib], 7);
            out.scales[ib / 4] |= (l as u16) << (3 * (ib % 4));
            out.qh[ib] |= MASKS[shifts[ib]];
            let xb = &xbl[BS * ib..BS * (ib + 1)];
            let mut weight = [0.0f32; BS];
            weights_of(xb, ibl, ib, sigma2, &mut weight);
            for k in 0..2 {
                let xx = xx_of(shifts[ib], k);
                let g = out.qs[2 * ib + k] as u16 | (((out.qh[ib] as u16) << (8 - 4 * k)) & 0x700);
                for (j, &lv) in grid.point(g).iter().enumerate() {
                    let w = weight[8 * k + j];
                    let q = xx[lv as usize] * (2 * l + 1) as f32;
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
        }
        if sumq2 > 0.0 {
            d = sumqx / sumq2;
        }
        // The f16 block scale's 16 bits go to the top nibbles of the 4 scale words.
        let s = fp16(d * 1.1125).to_bits();
        out.scales[0] |= (s & 0x000f) << 12;
        out.scales[1] |= (s & 0x00f0) << 8;
        out.scales[2] |= (s & 0x0f00) << 4;
        out.scales[3] |= s & 0xf000;
    }
}
