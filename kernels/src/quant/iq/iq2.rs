//! IQ2_XXS, IQ2_XS and IQ2_S: groups of 8 magnitudes on a grid of 256, 512 or 1024 points
//! (levels 8, 25, 43 ≈ 1, 3, 5 in units of the scale), ggml's
//! `quantize_row_iq2_xxs_impl`, `quantize_row_iq2_xs_impl` and `quantize_row_iq2_s_impl`.
//!
//! All three fit each sub-block (32 weights for IQ2_XXS, 16 for the others) with
//! `fit_sub_block`, then quantize the sub-block scales to 4 bits against one f16 scale
//! `d = max_scale / 31` per 256 weights. They differ in how they start (IQ2_XXS from
//! `make_qp_quants` with 4 levels, its sweep relative to that fit's maximum) and in the
//! signs (7 bits per group for IQ2_XXS and IQ2_XS, 8 explicit bits for IQ2_S).

use super::grid;
use super::search::{fit_sub_block, Refit, Search};
use super::{
    c_max, element_weights, fp16, magnitudes_and_even_signs, magnitudes_and_signs, max_of,
    scale_index,
};
use crate::format::blocks::{BlockIQ2_S, BlockIQ2_XS, BlockIQ2_XXS, QK_K};
use crate::quant::imatrix::{make_qp_quants, sum_sq};
use crate::quant::k::GROUP_MAX_EPS;

/// ggml's `kMaxQ` for the 2-bit grids: levels 0, 1, 2.
const KMAX: i32 = 3;
/// `GROUP_MAX_EPS_IQ2_S`.
const GROUP_MAX_EPS_IQ2_S: f32 = 1e-8;

/// IQ2_XXS (`quantize_row_iq2_xxs_impl`); `qw` one weight per element of `x`.
pub fn quantize_iq2_xxs(x: &[f32], y: &mut [BlockIQ2_XXS], qw: &[f32]) {
    let grid = grid::iq2xxs();
    let search = Search {
        kmax: KMAX,
        steps: 6,
        step: 0.1,
        refit: Refit::Always,
    };
    for (ibl, (xbl, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let qwb = &qw[QK_K * ibl..QK_K * (ibl + 1)];
        out.d = fp16(0.0);
        // Per sub-block of 32: 4 grid indices (bytes), then 4 × 7 sign bits and the scale.
        let mut q2 = [0u32; 2 * (QK_K / 32)];
        let mut scales = [0.0f32; QK_K / 32];
        let mut max_scale = 0.0f32;
        let sigma2 = sum_sq(xbl) / QK_K as f32;
        for ib in 0..QK_K / 32 {
            let xb = &xbl[32 * ib..32 * (ib + 1)];
            let mut weight = [0.0f32; 32];
            element_weights(
                xb,
                Some(&qwb[32 * ib..32 * (ib + 1)]),
                sigma2,
                |_| 0.0,
                &mut weight,
            );
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 32];
            let mut signs = [0u8; 4];
            for k in 0..4 {
                let g = 8 * k..8 * (k + 1);
                signs[k] =
                    magnitudes_and_even_signs(&xb[g.clone()], &weight[g.clone()], &mut xval[g]);
            }
            let max = max_of(&xval);
            if max < GROUP_MAX_EPS {
                scales[ib] = 0.0;
                continue;
            }
            let mut first = [0u8; 32];
            let scale = make_qp_quants(&xval, KMAX + 1, &mut first, &weight);
            let eff_max = scale * KMAX as f32;
            if eff_max <= 0.0 {
                scales[ib] = 0.0;
                continue;
            }
            // (C views the uint8_t levels as int8_t)
            let mut levels = first.map(|l| l as i8);
            let mut scale = fit_sub_block(
                grid,
                &search,
                &xval,
                &weight,
                &waux,
                eff_max,
                scale,
                &mut levels,
            );
            if scale < 0.0 {
                // "should never happen": a negative scale with the signs flipped instead.
                scale = -scale;
                for s in &mut signs {
                    *s = !*s & 127;
                }
            }
            for k in 0..4 {
                let g = grid.index_of(&levels[8 * k..8 * (k + 1)]);
                q2[2 * ib] |= (g as u32) << (8 * k);
                q2[2 * ib + 1] |= (signs[k] as u32) << (7 * k);
            }
            scales[ib] = scale;
            max_scale = c_max(max_scale, scale);
        }
        if max_scale == 0.0 {
            out.qs = [0; QK_K / 8];
            continue;
        }
        let d = max_scale / 31.0;
        out.d = fp16(d);
        let id = 1.0 / d;
        for ib in 0..QK_K / 32 {
            q2[2 * ib + 1] |= (scale_index(id, scales[ib], 15) as u32) << 28;
        }
        // The u32 words in memory order (little-endian), as u16 halves.
        for (j, w) in q2.iter().enumerate() {
            out.qs[2 * j] = *w as u16;
            out.qs[2 * j + 1] = (*w >> 16) as u16;
        }
    }
}

/// IQ2_XS (`quantize_row_iq2_xs_impl`); `qw` one weight per element of `x`.
pub fn quantize_iq2_xs(x: &[f32], y: &mut [BlockIQ2_XS], qw: &[f32]) {
    let grid = grid::iq2xs();
    let search = Search {
        kmax: KMAX,
        steps: 9,
        step: 0.1,
        refit: Refit::OffGrid,
    };
    for (ibl, (xbl, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let qwb = &qw[QK_K * ibl..QK_K * (ibl + 1)];
        out.d = fp16(0.0);
        out.scales = [0; QK_K / 32];
        // Per group of 8: a 9-bit grid index and 7 sign bits.
        let mut q2 = [0u16; 2 * (QK_K / 16)];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let sigma2 = sum_sq(xbl) / QK_K as f32;
        for ib in 0..QK_K / 16 {
            let xb = &xbl[16 * ib..16 * (ib + 1)];
            let mut weight = [0.0f32; 16];
            element_weights(
                xb,
                Some(&qwb[16 * ib..16 * (ib + 1)]),
                sigma2,
                |_| 0.0,
                &mut weight,
            );
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 16];
            let mut signs = [0u8; 2];
            for k in 0..2 {
                let g = 8 * k..8 * (k + 1);
                signs[k] =
                    magnitudes_and_even_signs(&xb[g.clone()], &weight[g.clone()], &mut xval[g]);
            }
            let max = max_of(&xval);
            let mut levels = [0i8; 16];
            if max < GROUP_MAX_EPS {
                scales[ib] = 0.0;
                continue;
            }
            let start = max / (2 * KMAX - 1) as f32;
            let mut scale = fit_sub_block(
                grid,
                &search,
                &xval,
                &weight,
                &waux,
                max,
                start,
                &mut levels,
            );
            if scale < 0.0 {
                scale = -scale;
                for s in &mut signs {
                    *s = !*s & 127;
                }
            }
            for k in 0..2 {
                let g = grid.index_of(&levels[8 * k..8 * (k + 1)]);
                q2[2 * ib + k] = g | ((signs[k] as u16) << 9);
            }
            scales[ib] = scale;
            max_scale = c_max(max_scale, scale);
        }
        if max_scale == 0.0 {
            out.qs = [0; QK_K / 8];
            continue;
        }
        let d = max_scale / 31.0;
        out.d = fp16(d);
        let id = 1.0 / d;
        for ib in 0..QK_K / 16 {
            let l = scale_index(id, scales[ib], 15) as u8;
            if ib % 2 == 0 {
                out.scales[ib / 2] = l;
            } else {
                out.scales[ib / 2] |= l << 4;
            }
        }
        out.qs = q2;
    }
}

/// IQ2_S (`quantize_row_iq2_s_impl`), with importance weights `qw` or without.
pub fn quantize_iq2_s(x: &[f32], y: &mut [BlockIQ2_S], qw: Option<&[f32]>) {
    let grid = grid::iq2s();
    let search = Search {
        kmax: KMAX,
        steps: 9,
        step: 0.1,
        refit: Refit::OffGrid,
    };
    for (ibl, (xbl, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        *out = BlockIQ2_S {
            d: fp16(0.0),
            qs: [0; QK_K / 8],
            signs: [0; QK_K / 8],
            qh: [0; QK_K / 32],
            scales: [0; QK_K / 32],
        };
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_sq(xbl) / QK_K as f32;
        for ib in 0..QK_K / 16 {
            let xb = &xbl[16 * ib..16 * (ib + 1)];
            let qw = qw.map(|qw| &qw[QK_K * ibl + 16 * ib..QK_K * ibl + 16 * (ib + 1)]);
            let mut weight = [0.0f32; 16];
            element_weights(xb, qw, sigma2, |v| 0.25 * sigma2 + v * v, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 16];
            let mut signs = [0u8; 2];
            for k in 0..2 {
                signs[k] = magnitudes_and_signs(&xb[8 * k..8 * (k + 1)], &mut xval[8 * k..]).0;
            }
            let max = max_of(&xval);
            let mut levels = [0i8; 16];
            if max < GROUP_MAX_EPS_IQ2_S {
                scales[ib] = 0.0;
                continue;
            }
            let start = max / (2 * KMAX - 1) as f32;
            let mut scale = fit_sub_block(
                grid,
                &search,
                &xval,
                &weight,
                &waux,
                max,
                start,
                &mut levels,
            );
            if scale < 0.0 {
                scale = -scale;
                for s in &mut signs {
                    *s = !*s;
                }
            }
            for k in 0..2 {
                let g = grid.index_of(&levels[8 * k..8 * (k + 1)]);
                let i8 = 2 * ib + k;
                out.qs[i8] = g as u8;
                out.qh[i8 / 4] |= ((g >> 8) as u8) << (2 * (i8 % 4));
                out.signs[i8] = signs[k];
            }
            scales[ib] = scale;
            max_scale = c_max(max_scale, scale);
        }
        if max_scale == 0.0 {
            continue;
        }
        let d = max_scale / 31.0;
        out.d = fp16(d * 0.9875);
        let id = 1.0 / d;
        for ib in 0..QK_K / 16 {
            let l = scale_index(id, scales[ib], 15) as u8;
            if ib % 2 == 0 {
                out.scales[ib / 2] = l;
            } else {
                out.scales[ib / 2] |= l << 4;
            }
        }
    }
}
