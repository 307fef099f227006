//! IQ3_XXS and IQ3_S: groups of 4 magnitudes on a grid of 256 or 512 points (8 levels),
//! ggml's `quantize_row_iq3_xxs_impl` (with `grid_size` 256) and `quantize_row_iq3_s_impl`
//! (block size 32).
//!
//! Each sub-block of 32 is fitted by `fit_sub_block` (levels 0..8, trial steps of 0.2);
//! its scale is then quantized to 4 bits against `d = max_scale / 31`, stored with a fudge
//! factor (×1.0125 for IQ3_XXS, ×1.033 for IQ3_S). IQ3_XXS keeps 7 sign bits per 8 weights
//! (the 8th making the count of negatives even), IQ3_S 8 explicit bits and a 9th index bit
//! per group in `qh`.

use super::grid;
use super::search::{fit_sub_block, Refit, Search};
use super::{
    c_max, element_weights, fp16, magnitudes_and_even_signs, magnitudes_and_signs, max_of,
    scale_index,
};
use crate::format::blocks::{BlockIQ3_S, BlockIQ3_XXS, QK_K};
use crate::quant::imatrix::sum_sq;

/// ggml's `kMaxQ` for the 3-bit grids: levels 0..8.
const KMAX: i32 = 8;
/// `GROUP_MAX_EPS_IQ3_XXS`.
const GROUP_MAX_EPS_IQ3_XXS: f32 = 1e-8;

/// IQ3_XXS (`quantize_row_iq3_xxs_impl(256, …)`), with importance weights `qw` or without.
pub fn quantize_iq3_xxs(x: &[f32], y: &mut [BlockIQ3_XXS], qw: Option<&[f32]>) {
    let grid = grid::iq3xxs();
    let search = Search {
        kmax: KMAX,
        steps: 15,
        step: 0.2,
        refit: Refit::OffGrid,
    };
    for (ibl, (xbl, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        out.d = fp16(0.0);
        // 64 grid indices, then per sub-block a u32 of 4 × 7 sign bits and the scale.
        let mut indices = [0u8; QK_K / 4];
        let mut scales_and_signs = [0u32; QK_K / 32];
        let mut scales = [0.0f32; QK_K / 32];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_sq(xbl) / QK_K as f32;
        for ib in 0..QK_K / 32 {
            let xb = &xbl[32 * ib..32 * (ib + 1)];
            let qw = qw.map(|qw| &qw[QK_K * ibl + 32 * ib..QK_K * ibl + 32 * (ib + 1)]);
            let mut weight = [0.0f32; 32];
            element_weights(xb, qw, sigma2, |v| v * v, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 32];
            let mut signs = [0u8; 4];
            for k in 0..4 {
                let g = 8 * k..8 * (k + 1);
                signs[k] =
                    magnitudes_and_even_signs(&xb[g.clone()], &weight[g.clone()], &mut xval[g]);
            }
            let max = max_of(&xval);
            let mut levels = [0i8; 32];
            if max < GROUP_MAX_EPS_IQ3_XXS {
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
            for k in 0..8 {
                indices[8 * ib + k] = grid.index_of(&levels[4 * k..4 * (k + 1)]) as u8;
            }
            scales_and_signs[ib] = signs[0] as u32
                | (signs[1] as u32) << 7
                | (signs[2] as u32) << 14
                | (signs[3] as u32) << 21;
            scales[ib] = scale;
            max_scale = c_max(max_scale, scale);
        }
        if max_scale == 0.0 {
            out.qs = [0; 3 * QK_K / 8];
            continue;
        }
        let d = max_scale / 31.0;
        out.d = fp16(d * 1.0125);
        let id = 1.0 / d;
        for ib in 0..QK_K / 32 {
            scales_and_signs[ib] |= (scale_index(id, scales[ib], 15) as u32) << 28;
        }
        out.qs[..QK_K / 4].copy_from_slice(&indices);
        for (ib, w) in scales_and_signs.iter().enumerate() {
            out.qs[QK_K / 4 + 4 * ib..QK_K / 4 + 4 * (ib + 1)].copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// IQ3_S (`quantize_row_iq3_s_impl(32, …)`), with importance weights `qw` or without.
pub fn quantize_iq3_s(x: &[f32], y: &mut [BlockIQ3_S], qw: Option<&[f32]>) {
    let grid = grid::iq3s();
    let search = Search {
        kmax: KMAX,
        steps: 9,
        step: 0.2,
        refit: Refit::AllIfAnyOffGrid,
    };
    for (ibl, (xbl, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        *out = BlockIQ3_S {
            d: fp16(0.0),
            qs: [0; QK_K / 4],
            qh: [0; QK_K / 32],
            signs: [0; QK_K / 8],
            scales: [0; QK_K / 64],
        };
        let mut scales = [0.0f32; QK_K / 32];
        let mut max_scale = 0.0f32;
        // Where the next sub-block's indices and signs go. ggml advances its `qs` and
        // `signs` pointers only past sub-blocks it writes, so an all-zero sub-block shifts
        // the later ones down (and leaves the last slots zero); `qh` is indexed by
        // sub-block. Kept, for identical files.
        let (mut qs_at, mut signs_at) = (0, 0);
        let sigma2 = 2.0 * sum_sq(xbl) / QK_K as f32;
        for ib in 0..QK_K / 32 {
            let xb = &xbl[32 * ib..32 * (ib + 1)];
            let qw = qw.map(|qw| &qw[QK_K * ibl + 32 * ib..QK_K * ibl + 32 * (ib + 1)]);
            let mut weight = [0.0f32; 32];
            element_weights(xb, qw, sigma2, |v| v * v, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 32];
            let mut signs = [0u8; 4];
            for k in 0..4 {
                signs[k] = magnitudes_and_signs(&xb[8 * k..8 * (k + 1)], &mut xval[8 * k..]).0;
            }
            let max = max_of(&xval);
            let mut levels = [0i8; 32];
            if max == 0.0 {
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
            for k in 0..8 {
                let g = grid.index_of(&levels[4 * k..4 * (k + 1)]);
                out.qs[qs_at + k] = g as u8;
                out.qh[ib] |= ((g >> 8) as u8) << k;
            }
            qs_at += 8;
            out.signs[signs_at..signs_at + 4].copy_from_slice(&signs);
            signs_at += 4;
            scales[ib] = scale;
            max_scale = c_max(max_scale, scale);
        }
        if max_scale == 0.0 {
            continue;
        }
        let d = max_scale / 31.0;
        out.d = fp16(d * 1.033);
        let id = 1.0 / d;
        for ib in (0..QK_K / 32).step_by(2) {
            let l1 = scale_index(id, scales[ib], 15) as u8;
            let l2 = scale_index(id, scales[ib + 1], 15) as u8;
            out.scales[ib / 2] = l1 | (l2 << 4);
        }
    }
}
