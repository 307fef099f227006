//! Weight quantizers that take an importance matrix (per-column weights `qw`, one per
//! element of a row, from `llama-imatrix`): ggml's `quantize_row_*_impl` paths, bit for bit,
//! as `llama-quantize --imatrix` writes them.
//!
//! # Where the algorithms come from
//! `ggml/src/ggml-quants.c` of the llama.cpp that llama-cpp-python 0.3.36 vendors. With
//! `quant_weights != NULL`, `ggml_quantize_chunk` calls, per row:
//!
//! | type  | ggml function              | element weight                 | sub-block fit, then super-block fit |
//! |-------|----------------------------|--------------------------------|-------------------------------------|
//! | Q2_K  | `quantize_row_q2_K_impl`   | `qw·sqrt(Σx²/256 + x²)`        | `make_qkx3_quants(16, 3, -0.9, 0.05, 36)`, `make_qp_quants(16, 15)` for scales and mins |
//! | Q3_K  | `quantize_row_q3_K_impl`   | `qw·sqrt(2Σx²/256 + x²)`       | `make_qx_quants(16, 4)`, `make_qx_quants(16, 32)` |
//! | Q4_K  | `quantize_row_q4_K_impl`   | `qw·sqrt(2Σx²/256 + x²)`       | `make_qkx3_quants(32, 15, …)`, `make_qp_quants(8, 63)` |
//! | Q5_K  | `quantize_row_q5_K_impl`   | `qw·sqrt(2Σx²/256 + x²)`       | `make_qkx3_quants(32, 31, …)`, `make_qp_quants(8, 63)` |
//! | Q6_K  | `quantize_row_q6_K_impl`   | `qw` itself                    | `make_qx_quants(16, 32)`, then as without weights |
//! | Q4_0  | `quantize_row_q4_0_impl`   | `qw·sqrt(Σx²/n_row + x²)`      | `make_qx_quants(32, 8)` |
//! | Q4_1  | `quantize_row_q4_1_impl`   | same                           | `make_qkx3_quants(32, 15, …)` |
//! | Q5_0  | `quantize_row_q5_0_impl`   | same                           | `make_qx_quants(32, 16)` |
//! | Q5_1  | `quantize_row_q5_1_impl`   | same                           | `make_qkx3_quants(32, 31, …)` |
//! | IQ4_NL, IQ4_XS | `quantize_iq4_nl`, `quantize_iq4_xs` | `qw·sqrt(2Σx²/n + x²)` (see [`super::k`]) | |
//!
//! The σ² term (Σx² over the super-block, or over the whole row for the legacy types) keeps
//! a weight from vanishing where the activations were never seen. `make_qkx3_quants` with
//! weights is `fit_scale_min` (the same search; only its `max <= min` guard differs from
//! `make_qkx2_quants`'s `max == min`, and after `min` is clamped to ≤ 0 both hold exactly
//! when max == min). Q8_0, F16, BF16 and F32 ignore the weights, as ggml does.
//!
//! Float semantics as in [`super::k`]: f32 throughout, C's evaluation order, no
//! fused multiply-add, `nearest_int`, truncating `int -> uint8_t` stores.

use half::f16;

use super::k::{check_len, fit_scale_min, fit_symmetric, nearest_int, pack_2bit, GROUP_MAX_EPS};
use crate::format::blocks::{
    scale_min_k4, Block, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0,
    BlockQ5_1, BlockQ5_K, BlockQ6_K, QK_K,
};

/// ggml's `make_qp_quants`: fits non-negative `x` (sub-block scales or mins) as
/// `scale · l`, l in 0..=nmax, minimising `Σ qw·err²`. Tries 8 grids around `nmax / max`,
/// then improves one level at a time (up to 5 passes) on the weighted least-squares fit.
/// Levels are stored as C's `uint8_t L[]` (a negative level wraps, as C's store does).
/// Returns the least-squares scale `Σwxl / Σwl²`.
pub(crate) fn make_qp_quants(x: &[f32], nmax: i32, levels: &mut [u8], qw: &[f32]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    for &v in x {
        // C's MAX(max, x[i]): `max > v ? max : v`.
        max = if max > v { max } else { v };
    }
    if max < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..n {
        levels[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * levels[i] as f32;
        best_mse += qw[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).min(nmax);
        levels[i] = l as u8;
        // C: `w*x[i]*l` and `w*l*l` with the int l (not the stored byte).
        let w = qw[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _pass in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = qw[i];
            let li = levels[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != levels[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        levels[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Σx² of `x` in order (C's `float` accumulation).
pub(crate) fn sum_sq(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// `weight[l] = qw[l] · sqrt(sigma2 + x[l]²)` (the form every `_impl` but Q6_K uses).
fn importance(x: &[f32], qw: &[f32], sigma2: f32, weight: &mut [f32]) {
    for l in 0..x.len() {
        weight[l] = qw[l] * (sigma2 + x[l] * x[l]).sqrt();
    }
}

pub(crate) fn check_weights(x: &[f32], qw: &[f32]) {
    assert_eq!(
        qw.len(),
        x.len(),
        "importance weights: {} for a row of {}",
        qw.len(),
        x.len()
    );
}

/// Q2_K with importance weights (`quantize_row_q2_K_impl`).
pub fn quantize_row_q2_k_imatrix(x: &[f32], y: &mut [BlockQ2_K], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    for (i, (xs, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let qw = &qw[QK_K * i..QK_K * (i + 1)];
        let sigma2 = sum_sq(xs) / QK_K as f32;
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut mins = [0.0f32; QK_K / 16];
        let mut sw = [0.0f32; QK_K / 16];
        for j in 0..QK_K / 16 {
            let xb = &xs[16 * j..16 * j + 16];
            let mut weight = [0.0f32; 16];
            importance(xb, &qw[16 * j..16 * j + 16], sigma2, &mut weight);
            for &w in &weight {
                sw[j] += w;
            }
            let lb = &mut levels[16 * j..16 * j + 16];
            (scales[j], mins[j]) = fit_scale_min(xb, &weight, 3, lb, -0.9, 0.05, 36, false);
        }
        let mut ls = [0u8; QK_K / 16];
        let mut lm = [0u8; QK_K / 16];
        let dm = make_qp_quants(&scales, 15, &mut ls, &sw);
        let mm = make_qp_quants(&mins, 15, &mut lm, &sw);
        let (d, dmin) = (f16::from_f32(dm), f16::from_f32(mm));
        let (dm, mm) = (d.to_f32(), dmin.to_f32());
        let mut sc = [0u8; QK_K / 16];
        for j in 0..QK_K / 16 {
            sc[j] = ls[j] | (lm[j] << 4);
        }
        for j in 0..QK_K / 16 {
            let dl = dm * (sc[j] & 0x0F) as f32;
            if dl == 0.0 {
                continue;
            }
            let ml = mm * (sc[j] >> 4) as f32;
            for ii in 0..16 {
                levels[16 * j + ii] = nearest_int((xs[16 * j + ii] + ml) / dl).clamp(0, 3) as u8;
            }
        }
        let mut qs = [0u8; QK_K / 4];
        pack_2bit(&levels, &mut qs);
        *out = BlockQ2_K {
            scales: sc,
            qs,
            d,
            dmin,
        };
    }
}

/// Q3_K with importance weights (`quantize_row_q3_K_impl`): note that it fits each
/// sub-block with `make_qx_quants`, not the `make_q3_quants` of the reference path, and
/// the 16 scales with a weighted `make_qx_quants(nmax 32)` instead of a plain max.
pub fn quantize_row_q3_k_imatrix(x: &[f32], y: &mut [BlockQ3_K], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    for (i, (xs, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let qw = &qw[QK_K * i..QK_K * (i + 1)];
        let sigma2 = 2.0 * sum_sq(xs) / QK_K as f32;
        let mut levels = [0i8; QK_K]; // level + 4
        let mut scales = [0.0f32; QK_K / 16];
        let mut sw = [0.0f32; QK_K / 16];
        for j in 0..QK_K / 16 {
            let xb = &xs[16 * j..16 * j + 16];
            let mut weight = [0.0f32; 16];
            importance(xb, &qw[16 * j..16 * j + 16], sigma2, &mut weight);
            let mut sumw = 0.0f32;
            for &w in &weight {
                sumw += w;
            }
            sw[j] = sumw;
            scales[j] = fit_symmetric(xb, 4, &mut levels[16 * j..16 * j + 16], Some(&weight));
        }
        let mut block = BlockQ3_K {
            hmask: [0; QK_K / 8],
            qs: [0; QK_K / 4],
            scales: [0; 12],
            d: f16::ZERO,
        };
        let mut ls = [0i8; QK_K / 16]; // l + 32, in 0..64 (0 for an all-zero set)
        let d_block = fit_symmetric(&scales, 32, &mut ls, Some(&sw));
        for j in 0..QK_K / 16 {
            let l = ls[j] as i32;
            if j < 8 {
                block.scales[j] = (l & 0x0F) as u8;
            } else {
                block.scales[j - 8] |= ((l & 0x0F) << 4) as u8;
            }
            block.scales[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
        }
        block.d = f16::from_f32(d_block);
        super::k::finish_q3_k(&mut block, xs, &mut levels);
        *out = block;
    }
}

/// Sub-block fits shared by Q4_K and Q5_K with weights: returns the packed 6-bit scales
/// and mins and the f16 `d`, `dmin`, and fills `levels` re-quantized against them.
/// `clamp_63` is Q5_K's `MIN(63, ls)`, which Q4_K's code does not have.
fn fit_k4_imatrix(
    xs: &[f32],
    qw: &[f32],
    nmax: i32,
    clamp_63: bool,
    levels: &mut [u8; QK_K],
) -> ([u8; 12], f16, f16) {
    let sigma2 = 2.0 * sum_sq(xs) / QK_K as f32;
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut sw = [0.0f32; 8];
    for j in 0..QK_K / 32 {
        let xb = &xs[32 * j..32 * j + 32];
        let mut weight = [0.0f32; 32];
        importance(xb, &qw[32 * j..32 * j + 32], sigma2, &mut weight);
        let mut sumw = 0.0f32;
        for &w in &weight {
            sumw += w;
        }
        sw[j] = sumw;
        let lb = &mut levels[32 * j..32 * j + 32];
        (scales[j], mins[j]) = fit_scale_min(xb, &weight, nmax, lb, -0.9, 0.05, 36, false);
    }
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants(&scales, 63, &mut ls, &sw);
    let m_block = make_qp_quants(&mins, 63, &mut lm, &sw);
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let (mut l_s, mut l_m) = (ls[j], lm[j]);
        if clamp_63 {
            l_s = l_s.min(63);
            l_m = l_m.min(63);
        }
        if j < 4 {
            packed[j] = l_s;
            packed[j + 4] = l_m;
        } else {
            // C's uint8_t stores truncate the shifted ints.
            packed[j + 4] = (l_s & 0x0F) | ((l_m & 0x0F) << 4);
            packed[j - 4] |= (((l_s >> 4) as u32) << 6) as u8;
            packed[j] |= (((l_m >> 4) as u32) << 6) as u8;
        }
    }
    let (d, dmin) = (f16::from_f32(d_block), f16::from_f32(m_block));
    let (d_f, dmin_f) = (d.to_f32(), dmin.to_f32());
    for j in 0..QK_K / 32 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dl = d_f * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin_f * m as f32;
        for ii in 0..32 {
            levels[32 * j + ii] = nearest_int((xs[32 * j + ii] + ml) / dl).clamp(0, nmax) as u8;
        }
    }
    (packed, d, dmin)
}

/// Q4_K with importance weights (`quantize_row_q4_K_impl`).
pub fn quantize_row_q4_k_imatrix(x: &[f32], y: &mut [BlockQ4_K], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    for (i, (xs, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let mut levels = [0u8; QK_K];
        let (scales, d, dmin) =
            fit_k4_imatrix(xs, &qw[QK_K * i..QK_K * (i + 1)], 15, false, &mut levels);
        *out = super::k::pack_q4_k(&levels, scales, d, dmin);
    }
}

/// Q5_K with importance weights (`quantize_row_q5_K_impl`).
pub fn quantize_row_q5_k_imatrix(x: &[f32], y: &mut [BlockQ5_K], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    for (i, (xs, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let mut levels = [0u8; QK_K];
        let (scales, d, dmin) =
            fit_k4_imatrix(xs, &qw[QK_K * i..QK_K * (i + 1)], 31, true, &mut levels);
        *out = super::k::pack_q5_k(&levels, scales, d, dmin);
    }
}

/// Q6_K with importance weights (`quantize_row_q6_K_impl`): each sub-block's fit weighs
/// its elements by `qw` directly (ggml's σ² variant is commented out there); the rest is
/// the reference path.
pub fn quantize_row_q6_k_imatrix(x: &[f32], y: &mut [BlockQ6_K], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    for (i, (xs, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let qw = &qw[QK_K * i..QK_K * (i + 1)];
        super::k::quantize_block_q6_k(xs, out, |ib, xb, lv| {
            fit_symmetric(xb, 32, lv, Some(&qw[16 * ib..16 * ib + 16]))
        });
    }
}

/// Q4_0 with importance weights (`quantize_row_q4_0_impl`): σ² is over the whole row.
pub fn quantize_row_q4_0_imatrix(x: &[f32], y: &mut [BlockQ4_0], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    let sigma2 = sum_sq(x) / x.len() as f32;
    for (ib, (xb, out)) in x.chunks_exact(32).zip(y.iter_mut()).enumerate() {
        let mut weight = [0.0f32; 32];
        importance(xb, &qw[32 * ib..32 * ib + 32], sigma2, &mut weight);
        let mut l = [0i8; 32];
        let d = fit_symmetric(xb, 8, &mut l, Some(&weight));
        out.d = f16::from_f32(d);
        for j in 0..16 {
            out.qs[j] = (l[j] as u8) | ((l[j + 16] as u8) << 4);
        }
    }
}

/// Q5_0 with importance weights (`quantize_row_q5_0_impl`).
pub fn quantize_row_q5_0_imatrix(x: &[f32], y: &mut [BlockQ5_0], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    let sigma2 = sum_sq(x) / x.len() as f32;
    for (ib, (xb, out)) in x.chunks_exact(32).zip(y.iter_mut()).enumerate() {
        let mut weight = [0.0f32; 32];
        importance(xb, &qw[32 * ib..32 * ib + 32], sigma2, &mut weight);
        let mut l = [0i8; 32];
        let d = fit_symmetric(xb, 16, &mut l, Some(&weight));
        out.d = f16::from_f32(d);
        let mut qh = 0u32;
        for j in 0..16 {
            let (q0, q1) = (l[j] as u8, l[j + 16] as u8);
            out.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + 16);
        }
        out.qh = qh.to_le_bytes();
    }
}

/// Q4_1 with importance weights (`quantize_row_q4_1_impl`): `m` is the fitted min.
pub fn quantize_row_q4_1_imatrix(x: &[f32], y: &mut [BlockQ4_1], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    let sigma2 = sum_sq(x) / x.len() as f32;
    for (ib, (xb, out)) in x.chunks_exact(32).zip(y.iter_mut()).enumerate() {
        let mut weight = [0.0f32; 32];
        importance(xb, &qw[32 * ib..32 * ib + 32], sigma2, &mut weight);
        let mut l = [0u8; 32];
        let (d, the_min) = fit_scale_min(xb, &weight, 15, &mut l, -0.9, 0.05, 36, false);
        out.d = f16::from_f32(d);
        out.m = f16::from_f32(-the_min);
        for j in 0..16 {
            out.qs[j] = l[j] | (l[j + 16] << 4);
        }
    }
}

/// Q5_1 with importance weights (`quantize_row_q5_1_impl`).
pub fn quantize_row_q5_1_imatrix(x: &[f32], y: &mut [BlockQ5_1], qw: &[f32]) {
    check_len(x, y);
    check_weights(x, qw);
    let sigma2 = sum_sq(x) / x.len() as f32;
    for (ib, (xb, out)) in x.chunks_exact(32).zip(y.iter_mut()).enumerate() {
        let mut weight = [0.0f32; 32];
        importance(xb, &qw[32 * ib..32 * ib + 32], sigma2, &mut weight);
        let mut l = [0u8; 32];
        let (d, the_min) = fit_scale_min(xb, &weight, 31, &mut l, -0.9, 0.05, 36, false);
        out.d = f16::from_f32(d);
        out.m = f16::from_f32(-the_min);
        let mut qh = 0u32;
        for j in 0..16 {
            let (q0, q1) = (l[j], l[j + 16]);
            out.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + 16);
        }
        out.qh = qh.to_le_bytes();
    }
}

/// A block type whose quantizer can take importance weights.
pub trait QuantizeImatrix: Block {
    /// Quantizes one row `x` with per-column weights `qw` (`qw.len() == x.len()`).
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]);
}

macro_rules! imatrix_via {
    ($($B:ty => $f:path),*) => {$(
        impl QuantizeImatrix for $B {
            fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
                $f(x, y, qw)
            }
        }
    )*};
}
imatrix_via!(
    BlockQ2_K => quantize_row_q2_k_imatrix,
    BlockQ3_K => quantize_row_q3_k_imatrix,
    BlockQ4_K => quantize_row_q4_k_imatrix,
    BlockQ5_K => quantize_row_q5_k_imatrix,
    BlockQ6_K => quantize_row_q6_k_imatrix,
    BlockQ4_0 => quantize_row_q4_0_imatrix,
    BlockQ4_1 => quantize_row_q4_1_imatrix,
    BlockQ5_0 => quantize_row_q5_0_imatrix,
    BlockQ5_1 => quantize_row_q5_1_imatrix
);

impl QuantizeImatrix for crate::format::blocks::BlockIQ4_NL {
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        check_weights(x, qw);
        super::k::quantize_iq4_nl(x, y, Some(qw))
    }
}

impl QuantizeImatrix for crate::format::blocks::BlockIQ4_XS {
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        check_weights(x, qw);
        super::k::quantize_iq4_xs(x, y, Some(qw))
    }
}

/// Q8_0, F16, BF16 and F32 ignore the weights (ggml's `quantize_q8_0` says "not used").
macro_rules! imatrix_ignored {
    ($($B:ty),*) => {$(
        impl QuantizeImatrix for $B {
            fn quantize_row_imatrix(x: &[f32], y: &mut [Self], _qw: &[f32]) {
                <$B as super::Quantize>::quantize_row(x, y)
            }
        }
    )*};
}
imatrix_ignored!(crate::format::blocks::BlockQ8_0, f32, half::f16, half::bf16);
