//! Weight quantizers for the K-quants (Q2_K … Q6_K) and the 4-bit non-linear formats
//! (IQ4_NL, IQ4_XS): f32 rows in, blocks out, bit for bit as `llama-quantize` writes
//! them when it is given no importance matrix.
//!
//! # Where the algorithms come from
//! llama.cpp's `ggml/src/ggml-quants.c` (read at ggml-org/llama.cpp 01243c58 and
//! ggml-org/ggml 5136ed06, which agree on everything used here). Without an importance
//! matrix, `ggml_quantize_chunk` calls:
//!
//! | type   | ggml function            | sub-block fit (ggml helper and its arguments)                  |
//! |--------|--------------------------|----------------------------------------------------------------|
//! | Q2_K   | `quantize_row_q2_K_ref`  | `make_qkx2_quants(16, 3, w = abs(x), rmin -0.5, rdelta 0.1, nstep 15, use_mad)` |
//! | Q3_K   | `quantize_row_q3_K_ref`  | `make_q3_quants(16, 4, do_rmse)`                               |
//! | Q4_K   | `quantize_row_q4_K_ref`  | `make_qkx2_quants(32, 15, w = rms + abs(x), -1, 0.1, 20, squared error)` |
//! | Q5_K   | `quantize_row_q5_K_ref`  | `make_qkx2_quants(32, 31, w = rms + abs(x), -0.5, 0.1, 15, squared error)` |
//! | Q6_K   | `quantize_row_q6_K_ref`  | `make_qx_quants(16, 32, rmse_type 1, no weights)`              |
//! | IQ4_NL | `quantize_iq4_nl`        | `quantize_row_iq4_nl_impl(32, 32, ntry 7, no weights)`         |
//! | IQ4_XS | `quantize_iq4_xs`        | `quantize_row_iq4_nl_impl(256, 32, ntry 7, no weights)`        |
//!
//! Here they are `fit_scale_min`, `fit_symmetric_refined`, `fit_symmetric` and
//! `iq4_block_scale`.
//!
//! Every K-quant works in two stages: first each sub-block gets its own best f32 scale
//! (and, for the asymmetric types, min); then those are quantized against one f16
//! super-block scale, and finally every weight is re-quantized against the scale it
//! will actually be decoded with.
//!
//! Note on IQ4_NL: `llama-quantize` goes through `quantize_iq4_nl` (7 trial scales each
//! side), not through `quantize_row_iq4_nl_ref`, which in current ggml is a faster
//! variant with no search (`ntry = -1`) used for activations. We follow the former.
//!
//! # Exact float semantics
//! Bit-exactness needs the C code's arithmetic, operation by operation:
//! - everything is `f32` (C's `float`, evaluated without excess precision on x86-64);
//!   integers enter a float expression converted to `f32` where C converts them, and
//!   products such as `w*l*l` keep C's left-to-right grouping `(w*l)*l`;
//! - no fused multiply-add: ggml-quants.c lives in ggml-base, which CMake compiles for
//!   the baseline ISA (no FMA) on x86-64, and Rust never contracts `a*b + c`. A build
//!   whose C compiler does contract (aarch64 or `-march=native` with GCC's default
//!   `-ffp-contract=fast`, or clang's default `on`) picks a different scale in a few
//!   percent of blocks, so its files differ from x86-64 llama.cpp's and from ours;
//! - rounding to an integer is ggml's `nearest_int` bit trick, and
//!   float-to-f16 is round-to-nearest-even (`half::f16::from_f32`, like
//!   `GGML_FP32_TO_FP16`);
//! - comparisons keep C's strictness (`>` vs `>=`), which decides ties between equal
//!   candidates, and C's truncating `int -> uint8_t/int8_t` conversions are `as u8/i8`.
//!
//! The output was compared byte for byte with those C functions compiled by GCC for
//! x86-64 (-O0 and -O3) on rows of up to a million values of many shapes (Gaussian, bf16- and
//! f16-rounded, heavy-tailed, sparse, outliers, integer grids full of ties, constant,
//! tiny, subnormal and overflowing values): identical. The `matches_ggml_golden` test
//! pins hashes of that C output for a smaller input.

use half::f16;

use crate::format::blocks::{
    scale_min_k4, Block, BlockIQ4_NL, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K,
    BlockQ6_K, KVALUES_IQ4NL, QK_K,
};

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is "all zero".
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

pub(crate) fn check_len<B: Block>(x: &[f32], y: &[B]) {
    assert_eq!(
        x.len(),
        y.len() * B::QK,
        "quantize {}: {} values for {} blocks",
        B::TYPE,
        x.len(),
        y.len()
    );
}

/// ggml's `nearest_int`: `fval` rounded to the nearest integer, ties to even.
///
/// Adding 1.5·2^23 moves any |fval| < 2^22 into [2^23, 2^24), where consecutive f32 are
/// exactly 1 apart, so the addition itself rounds (to nearest, ties to even; 1.5·2^23 is
/// even, so parity is preserved). The low 23 mantissa bits then hold `round(fval) + 2^22`.
/// ggml only `assert`s the range, which release builds (llama-quantize) compile out, so
/// for larger or non-finite inputs we reproduce the same wrapped bits rather than
/// saturating like `f32::round_ties_even() as i32` would.
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let biased = fval + 12_582_912.0;
    (biased.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// The element of largest magnitude, as `(|x|, x)`; the first one wins a tie
/// (ggml's `if (ax > amax)` scan, starting from 0; NaNs never win).
///
/// Two passes that vectorize: the maximum magnitude over 16 independent lanes (max is
/// exact, so the order does not matter), then the first element of that magnitude — the
/// one the scan ends on.
#[inline(always)]
pub(crate) fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            // `ax > m ? ax : m`: vmaxps, and a NaN never replaces m.
            let ax = v.abs();
            *m = if ax > *m { ax } else { *m };
        }
    }
    let mut amax = 0.0f32;
    for &m in &lanes {
        amax = if m > amax { m } else { amax };
    }
    for v in rest {
        let ax = v.abs();
        amax = if ax > amax { ax } else { amax };
    }
    if amax == 0.0 {
        return (0.0, 0.0);
    }
    // The chunk holding it by a branch-free test per 16, then the element.
    let hit = |v: &f32| v.abs() == amax;
    let max = x
        .chunks(16)
        .find(|c| c.iter().fold(false, |h, v| h | hit(v)))
        .and_then(|c| c.iter().copied().find(hit))
        .unwrap_or(0.0);
    (amax, max)
}

/// `1/v`, or 0 for v == 0 (C's `v ? 1/v : 0`; -0 counts as zero, NaN does not).
#[inline]
pub(crate) fn inverse_or_zero(v: f32) -> f32 {
    if v != 0.0 {
        1.0 / v
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------
// Scale searches for one sub-block.
// ---------------------------------------------------------------------------------

/// Fits `x ≈ scale * l - the_min` with l in 0..=nmax, minimising the weighted error
/// `Σ w·|err|` (`use_mad`) or `Σ w·err²`: ggml's `make_qkx2_quants`.
///
/// Start from the plain min/max grid (with the min clamped to ≤ 0, so the offset only
/// ever lowers values), then try `nstep + 1` grids whose inverse scale is
/// `(nmax + rmin + rdelta·is) / (max - min)`. For each trial's levels solve the weighted
/// least-squares line `x ≈ scale·l + min` in closed form (2×2 normal equations, `D` its
/// determinant; a positive min is replaced by a fit through the origin) and keep it if
/// its error is strictly lower. Writes the levels to `levels`; returns
/// `(scale, the_min)` with `the_min = -min ≥ 0`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_scale_min(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    levels: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut trial = [0u8; 32]; // ggml's Laux: levels of the trial grid
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels[..n].fill(0);
        return (0.0, -min);
    }
    let error_of = |diff: f32| if use_mad { diff.abs() } else { diff * diff };

    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * levels[i] as f32 + min - x[i];
        best_error += weights[i] * error_of(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            trial[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * trial[i] as f32 + this_min - x[i];
                cur_error += weights[i] * error_of(diff);
            }
            if cur_error < best_error {
                levels[..n].copy_from_slice(&trial[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Fits `x ≈ scale * l` with l in -nmax..nmax (stored as `l + nmax`), maximising the
/// weighted fit `(Σ w·x·l)² / Σ w·l²`: ggml's `make_qx_quants` with `rmse_type = 1`;
/// w = x², or `importance` (ggml's `qw`) when given.
///
/// The first grid maps the signed extreme to -nmax (so the largest magnitude lands on
/// the side with the extra level); 18 more grids stretch that by ±0.1·is levels. For a
/// fixed set of levels the best scale is `Σwxl / Σwl²`, and the fit is compared through
/// `(Σwxl)² / Σwl²` without dividing. Returns the scale (0 for an all-zero group, whose
/// levels are then 0, not `nmax`, exactly as ggml leaves them).
pub(crate) fn fit_symmetric(
    x: &[f32],
    nmax: i32,
    levels: &mut [i8],
    importance: Option<&[f32]>,
) -> f32 {
    let n = x.len();
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let quantize_at = |iscale: f32, i: usize| nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
    // ggml's `qw ? qw[i] : x[i]*x[i]` (rmse_type 1).
    let weight = |i: usize| importance.map_or(x[i] * x[i], |w| w[i]);

    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = quantize_at(iscale, i);
        levels[i] = (l + nmax) as i8;
        let (w, l) = (weight(i), l as f32);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let (w, l) = (weight(i), quantize_at(iscale, i) as f32);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                levels[i] = (quantize_at(iscale, i) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Like [`fit_symmetric`]'s first grid, then improved one level at a time: ggml's
/// `make_q3_quants` with `do_rmse`, used by Q3_K.
///
/// With weights w = x², the fit of levels l is `(Σwxl)² / Σwl²`. Each pass visits every
/// element, removes it from the sums, picks the level that best fits the remaining
/// scale (`x · Σ'wl² / Σ'wxl`, rounded) and keeps the change only if the whole fit
/// improves. Up to 5 passes, stopping early when a pass changes nothing. Levels are
/// stored as `l + nmax`; returns the least-squares scale `Σwxl / Σwl²`.
fn fit_symmetric_refined(x: &[f32], nmax: i32, levels: &mut [i8]) -> f32 {
    let n = x.len();
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        levels[i] = l as i8;
        let (w, l) = (x[i] * x[i], l as f32);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for _pass in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let old = levels[i] as f32;
            let mut slx = sumlx - w * x[i] * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != levels[i] as i32 {
                    let new = new_l as f32;
                    slx += w * x[i] * new;
                    sl2 += w * new * new;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        levels[i] = new_l as i8;
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
    for l in levels[..n].iter_mut() {
        *l += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------
// Bit packing shared by Q2_K and Q3_K: 2-bit levels, four per byte.
// ---------------------------------------------------------------------------------

/// Packs 256 two-bit levels as Q2_K/Q3_K store them: per half of 128, byte l holds
/// elements l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6.
pub(crate) fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for half in 0..2 {
        let (lv, q) = (&levels[128 * half..], &mut qs[32 * half..]);
        for l in 0..32 {
            q[l] = lv[l] | (lv[l + 32] << 2) | (lv[l + 64] << 4) | (lv[l + 96] << 6);
        }
    }
}

// ---------------------------------------------------------------------------------
// Q2_K
// ---------------------------------------------------------------------------------

/// Quantizes `x` to Q2_K (`quantize_row_q2_K_ref`).
///
/// Per 16-element sub-block: an asymmetric 2-bit fit (levels 0..=3) weighted by |x|,
/// minimising the absolute error. The sub-block scales and mins are then each quantized
/// to 4 bits against their maximum (`d = max/15`, `dmin = max_min/15`), and each weight
/// re-quantized with the decoded `d·sc` and `dmin·m`.
pub fn quantize_row_q2_k(x: &[f32], y: &mut [BlockQ2_K]) {
    check_len(x, y);
    const Q4SCALE: f32 = 15.0;
    for (xs, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut mins = [0.0f32; QK_K / 16];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..QK_K / 16 {
            let xb = &xs[16 * j..16 * j + 16];
            let mut weights = [0.0f32; 16];
            for l in 0..16 {
                weights[l] = xb[l].abs();
            }
            let lb = &mut levels[16 * j..16 * j + 16];
            (scales[j], mins[j]) = fit_scale_min(xb, &weights, 3, lb, -0.5, 0.1, 15, true);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }

        // Low nibble: scale, high nibble: min. C stores the int result of nearest_int
        // into a uint8_t (truncating), then ORs the shifted min in.
        let mut sc = [0u8; QK_K / 16];
        let d = if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..QK_K / 16 {
                sc[j] = nearest_int(iscale * scales[j]) as u8;
            }
            f16::from_f32(max_scale / Q4SCALE)
        } else {
            f16::ZERO
        };
        let dmin = if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..QK_K / 16 {
                sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            f16::from_f32(max_min / Q4SCALE)
        } else {
            f16::ZERO
        };

        // Re-quantize against the decoded scales; a zero scale keeps the fit's levels.
        let (d_f, dmin_f) = (d.to_f32(), dmin.to_f32());
        for j in 0..QK_K / 16 {
            let dl = d_f * (sc[j] & 0x0F) as f32;
            if dl == 0.0 {
                continue;
            }
            let ml = dmin_f * (sc[j] >> 4) as f32;
            for ii in 0..16 {
                let l = nearest_int((xs[16 * j + ii] + ml) / dl).clamp(0, 3);
                levels[16 * j + ii] = l as u8;
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

// ---------------------------------------------------------------------------------
// Q3_K
// ---------------------------------------------------------------------------------

/// Quantizes `x` to Q3_K (`quantize_row_q3_K_ref`).
///
/// Per 16-element sub-block: a symmetric 3-bit fit (levels -4..=3, refined one level at
/// a time). The signed scales are quantized to 6 bits against the one of largest
/// magnitude (`d = -max_scale/32`, stored as sc + 32), then every weight re-quantized
/// with `d·(sc - 32)`: its low 2 bits go to `qs`, and bit 2 (set for levels ≥ 0) to
/// `hmask` (bit k of byte l for element 32k + l).
pub fn quantize_row_q3_k(x: &[f32], y: &mut [BlockQ3_K]) {
    check_len(x, y);
    for (xs, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0i8; QK_K]; // level + 4, in 0..8
        let mut scales = [0.0f32; QK_K / 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..QK_K / 16 {
            scales[j] =
                fit_symmetric_refined(&xs[16 * j..16 * j + 16], 4, &mut levels[16 * j..][..16]);
            let scale = scales[j].abs();
            if scale > amax {
                amax = scale;
                max_scale = scales[j];
            }
        }

        // 6-bit scales: low nibbles in bytes 0..8 (sub-blocks 8..16 in the high
        // nibbles), top 2 bits in bytes 8..12 (byte 8 + j%4, bits 2*(j/4)).
        let mut block = BlockQ3_K {
            hmask: [0; QK_K / 8],
            qs: [0; QK_K / 4],
            scales: [0; 12],
            d: f16::ZERO,
        };
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..QK_K / 16 {
                // C: `int8_t l = nearest_int(...)` (truncating), clamp, + 32.
                let l = ((nearest_int(iscale * scales[j]) as i8 as i32).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    block.scales[j] = l & 0x0F;
                } else {
                    block.scales[j - 8] |= (l & 0x0F) << 4;
                }
                block.scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
            }
            block.d = f16::from_f32(1.0 / iscale);
        }

        finish_q3_k(&mut block, xs, &mut levels);
        *out = block;
    }
}

/// The end of a Q3_K block once its scales and `d` are set (with or without importance
/// weights): re-quantize with the decoded scales (a zero scale keeps the fit's levels,
/// `levels` holding level + 4), then bit 2 of each level into `hmask`, bits 0..2 into `qs`.
pub(crate) fn finish_q3_k(block: &mut BlockQ3_K, xs: &[f32], levels: &mut [i8; QK_K]) {
    let d_all = block.d.to_f32();
    let sc = block.unpack_scales();
    for j in 0..QK_K / 16 {
        let dl = d_all * sc[j] as f32;
        if dl == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(xs[16 * j + ii] / dl).clamp(-4, 3);
            levels[16 * j + ii] = (l + 4) as i8;
        }
    }
    let mut low = [0u8; QK_K];
    for j in 0..QK_K {
        let mut l = levels[j];
        if l > 3 {
            block.hmask[j % 32] |= 1 << (j / 32);
            l -= 4;
        }
        low[j] = l as u8;
    }
    pack_2bit(&low, &mut block.qs);
}

// ---------------------------------------------------------------------------------
// Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins.
// ---------------------------------------------------------------------------------

/// Sub-block fits shared by Q4_K and Q5_K: for each 32-element sub-block, an asymmetric
/// fit with levels 0..=nmax, weighted by `rms(sub-block) + |x|`, squared error.
/// Returns the per-sub-block scales and mins and fills `levels`.
fn fit_sub_blocks_32(
    xs: &[f32],
    nmax: i32,
    (rmin, rdelta, nstep): (f32, f32, i32),
    levels: &mut [u8; QK_K],
) -> ([f32; 8], [f32; 8]) {
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for j in 0..QK_K / 32 {
        let xb = &xs[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for l in 0..32 {
            sum_x2 += xb[l] * xb[l];
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut weights = [0.0f32; 32];
        for l in 0..32 {
            weights[l] = av_x + xb[l].abs();
        }
        let lb = &mut levels[32 * j..32 * j + 32];
        (scales[j], mins[j]) = fit_scale_min(xb, &weights, nmax, lb, rmin, rdelta, nstep, false);
    }
    (scales, mins)
}

/// Quantizes the sub-block scales and mins to 6 bits each against their maxima and
/// packs them as Q4_K/Q5_K store them (see [`scale_min_k4`]); returns
/// `(scales bytes, d, dmin)`.
fn pack_scales_mins_k4(scales: &[f32; 8], mins: &[f32; 8]) -> ([u8; 12], f16, f16) {
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        // C stores nearest_int's int into a uint8_t (truncating), then takes MIN(63, .).
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    (
        packed,
        f16::from_f32(max_scale / 63.0),
        f16::from_f32(max_min / 63.0),
    )
}

/// Re-quantizes every weight against the decoded 6-bit scale and min of its sub-block
/// (levels 0..=nmax); a sub-block whose decoded scale is zero keeps its fitted levels.
fn requantize_k4(
    xs: &[f32],
    packed: &[u8; 12],
    d: f16,
    dmin: f16,
    nmax: i32,
    levels: &mut [u8; QK_K],
) {
    let (d_f, dmin_f) = (d.to_f32(), dmin.to_f32());
    for j in 0..QK_K / 32 {
        let (sc, m) = scale_min_k4(j, packed);
        let dl = d_f * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin_f * m as f32;
        for ii in 0..32 {
            let l = nearest_int((xs[32 * j + ii] + ml) / dl).clamp(0, nmax);
            levels[32 * j + ii] = l as u8;
        }
    }
}

/// Quantizes `x` to Q4_K (`quantize_row_q4_K_ref`): per 32-element sub-block an
/// asymmetric 4-bit fit (21 trial grids from -1 level by 0.1), then 6-bit scales and
/// mins against `d = max_scale/63`, `dmin = max_min/63`, then re-quantization.
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4_K]) {
    check_len(x, y);
    for (xs, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0u8; QK_K];
        let (scales, mins) = fit_sub_blocks_32(xs, 15, (-1.0, 0.1, 20), &mut levels);
        let (packed, d, dmin) = pack_scales_mins_k4(&scales, &mins);
        requantize_k4(xs, &packed, d, dmin, 15, &mut levels);

        *out = pack_q4_k(&levels, packed, d, dmin);
    }
}

/// Quantizes `x` to Q5_K (`quantize_row_q5_K_ref`): as Q4_K with levels 0..=31 and
/// 16 trial grids from -0.5 level by 0.1 (ggml's parameters differ from Q4_K's here).
/// Bit 4 of the level of element 32s + l goes to bit s of `qh[l]`.
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5_K]) {
    check_len(x, y);
    for (xs, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0u8; QK_K];
        let (scales, mins) = fit_sub_blocks_32(xs, 31, (-0.5, 0.1, 15), &mut levels);
        let (packed, d, dmin) = pack_scales_mins_k4(&scales, &mins);
        requantize_k4(xs, &packed, d, dmin, 31, &mut levels);

        *out = pack_q5_k(&levels, packed, d, dmin);
    }
}

/// A Q4_K block from its levels (0..=15) and packed scales: chunk c of 32 bytes holds
/// sub-block 2c in the low nibbles, 2c + 1 in the high.
pub(crate) fn pack_q4_k(levels: &[u8; QK_K], scales: [u8; 12], d: f16, dmin: f16) -> BlockQ4_K {
    let mut qs = [0u8; QK_K / 2];
    for c in 0..4 {
        for l in 0..32 {
            qs[32 * c + l] = levels[64 * c + l] | (levels[64 * c + 32 + l] << 4);
        }
    }
    BlockQ4_K {
        d,
        dmin,
        scales,
        qs,
    }
}

/// A Q5_K block from its levels (0..=31) and packed scales: the low 4 bits as in Q4_K,
/// bit 4 of the level of element 32s + l in bit s of `qh[l]`.
pub(crate) fn pack_q5_k(levels: &[u8; QK_K], scales: [u8; 12], d: f16, dmin: f16) -> BlockQ5_K {
    let mut qs = [0u8; QK_K / 2];
    let mut qh = [0u8; QK_K / 8];
    for c in 0..4 {
        let (bit_lo, bit_hi) = (1u8 << (2 * c), 2u8 << (2 * c));
        for l in 0..32 {
            let mut l1 = levels[64 * c + l];
            if l1 > 15 {
                l1 -= 16;
                qh[l] |= bit_lo;
            }
            let mut l2 = levels[64 * c + 32 + l];
            if l2 > 15 {
                l2 -= 16;
                qh[l] |= bit_hi;
            }
            qs[32 * c + l] = l1 | (l2 << 4);
        }
    }
    BlockQ5_K {
        d,
        dmin,
        scales,
        qh,
        qs,
    }
}

// ---------------------------------------------------------------------------------
// Q6_K
// ---------------------------------------------------------------------------------

/// Quantizes `x` to Q6_K (`quantize_row_q6_K_ref`).
///
/// Per 16-element sub-block: a symmetric 6-bit fit (levels -32..=31). The signed scales
/// are quantized to int8 against the one of largest magnitude (`d = -max_scale/128`),
/// then every weight re-quantized with `d·sc`. A super-block whose scales are all
/// (nearly) zero is written as all-zero bytes.
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6_K]) {
    check_len(x, y);
    for (xs, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        quantize_block_q6_k(xs, out, |_, xb, levels| fit_symmetric(xb, 32, levels, None));
    }
}

/// One Q6_K super-block; `fit(ib, sub_block, levels)` fits sub-block `ib` of 16 (the
/// reference path and the importance-weighted one differ only there).
pub(crate) fn quantize_block_q6_k(
    xs: &[f32],
    out: &mut BlockQ6_K,
    fit: impl Fn(usize, &[f32], &mut [i8]) -> f32,
) {
    let mut levels = [0i8; QK_K]; // level + 32, in 0..64
    let mut scales = [0.0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ib in 0..QK_K / 16 {
        scales[ib] = fit(ib, &xs[16 * ib..16 * ib + 16], &mut levels[16 * ib..][..16]);
        let abs_scale = scales[ib].abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scales[ib];
        }
    }

    if max_abs_scale < GROUP_MAX_EPS {
        *out = BlockQ6_K {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: [0; QK_K / 16],
            d: f16::ZERO,
        };
        return;
    }

    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    let mut sc = [0i8; QK_K / 16];
    for ib in 0..QK_K / 16 {
        // C: MIN(127, nearest_int(...)) stored into an int8_t.
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
    }

    // Re-quantize with the decoded scales; a zero scale keeps the fit's levels.
    let d_f = d.to_f32();
    for j in 0..QK_K / 16 {
        let dl = d_f * sc[j] as f32;
        if dl == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(xs[16 * j + ii] / dl).clamp(-32, 31);
            levels[16 * j + ii] = (l + 32) as i8;
        }
    }

    // Per half of 128: element 32k + l puts its low nibble in ql[l + 32·(k&1)]
    // (low nibble for k < 2, high for k ≥ 2) and its top 2 bits in qh[l] at 2k.
    let mut ql = [0u8; QK_K / 2];
    let mut qh = [0u8; QK_K / 4];
    for half in 0..2 {
        let lv = &levels[128 * half..128 * half + 128];
        let (ql, qh) = (&mut ql[64 * half..], &mut qh[32 * half..]);
        for l in 0..32 {
            let q = [
                lv[l] as u8,
                lv[l + 32] as u8,
                lv[l + 64] as u8,
                lv[l + 96] as u8,
            ];
            ql[l] = (q[0] & 0x0F) | ((q[2] & 0x0F) << 4);
            ql[l + 32] = (q[1] & 0x0F) | ((q[3] & 0x0F) << 4);
            qh[l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
    *out = BlockQ6_K {
        ql,
        qh,
        scales: sc,
        d,
    };
}

// ---------------------------------------------------------------------------------
// IQ4_NL and IQ4_XS: 16 non-linear levels.
// ---------------------------------------------------------------------------------

/// Index of the IQ4_NL level nearest to `x` (ggml's `best_index_int8`): the largest i
/// whose midpoint with its lower neighbour, `(v[i-1] + v[i]) / 2`, is ≤ x, found by a
/// 4-step binary search. Comparing `2x` with the integer sum `v[i-1] + v[i]` is exact
/// (doubling an f32 is exact), and an exact tie goes to the upper level.
///
/// Older ggml searched for the bracketing pair and compared `x - v[i-1] < v[i] - x`;
/// for these 16 levels both subtractions are exact near every midpoint, so the two
/// agree for every non-NaN x (checked once over all 2^32 bit patterns; the unit test
/// keeps dense sweeps around the midpoints).
#[inline]
pub(crate) fn best_index_iq4nl(x: f32) -> u8 {
    let v = &KVALUES_IQ4NL;
    let x2 = x + x;
    let mut idx = 0usize;
    let mut step = 8;
    while step > 0 {
        let j = idx + step;
        if x2 >= (v[j - 1] as i32 + v[j] as i32) as f32 {
            idx = j;
        }
        step >>= 1;
    }
    idx as u8
}

/// Trial scales on each side of the first guess: ggml's `ntry` as `quantize_iq4_nl` and
/// `quantize_iq4_xs` pass it.
const IQ4_NTRY: i32 = 7;

/// Best scale for one block of 32 with the IQ4_NL levels (the per-block search of
/// `quantize_row_iq4_nl_impl`, `ntry = 7`).
///
/// Weights are x², or `importance` (ggml's `weight`) when an importance matrix is given. The first guess is `d = max / 127` (ggml: `-max / values[0]`); then
/// 15 inverse scales `(itry - 127) / max`, itry in -7..=7, put the element of largest
/// magnitude near the -127 end of the table, the longer side, so the best d may come out
/// negative. For fixed levels q the best scale is `Σwqx / Σwq²`, and fits are compared
/// by `(Σwqx)² / Σwq²`. Returns 0 for an all-zero block.
pub(crate) fn iq4_block_scale(xb: &[f32], importance: Option<&[f32]>) -> f32 {
    let (amax, max) = signed_absmax(xb);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = KVALUES_IQ4NL[0] as f32;
    // Σ w·q·x and Σ w·q² for the levels nearest to id·x.
    let fit = |id: f32| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for (j, &x) in xb.iter().enumerate() {
            let q = KVALUES_IQ4NL[best_index_iq4nl(id * x) as usize] as f32;
            let w = importance.map_or(x * x, |w| w[j]);
            sumqx += w * q * x;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let first = -max / v0;
    let (sumqx, sumq2) = fit(1.0 / first);
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -IQ4_NTRY..=IQ4_NTRY {
        let id = (itry + KVALUES_IQ4NL[0] as i32) as f32 / max;
        let (sumqx, sumq2) = fit(id);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Packs 32 four-bit indices: byte j holds element j (low nibble) and j + 16 (high).
pub(crate) fn pack_iq4(levels: &[u8], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = levels[j] | (levels[j + 16] << 4);
    }
}

/// Quantizes `x` to IQ4_NL as `llama-quantize` does (`quantize_iq4_nl`, no importance
/// matrix): per block of 32, a least-squares scale search over 15 trial grids, `d`
/// stored as f16, and each weight mapped to the nearest level of `KVALUES_IQ4NL · d`
/// using the unrounded f32 scale. An all-zero block becomes `d = 0` with every index 8 (the level
/// nearest to 0).
pub fn quantize_row_iq4_nl(x: &[f32], y: &mut [BlockIQ4_NL]) {
    quantize_iq4_nl(x, y, None);
}

/// IQ4_NL with optional per-column importance weights (`qw.len() == x.len()`): ggml's
/// `quantize_iq4_nl`. With them, element j of a block weighs `qw[j]·sqrt(σ² + x[j]²)`,
/// σ² = 2·Σx²/32 over the block (ggml's `sigma2`); without, `x[j]²`.
pub(crate) fn quantize_iq4_nl(x: &[f32], y: &mut [BlockIQ4_NL], qw: Option<&[f32]>) {
    check_len(x, y);
    for (ibl, (xb, out)) in x.chunks_exact(32).zip(y.iter_mut()).enumerate() {
        let mut weight = [0.0f32; 32];
        let importance = qw.map(|qw| {
            iq4_weights(
                xb,
                &qw[32 * ibl..32 * ibl + 32],
                iq4_sigma2(xb),
                &mut weight,
            );
            &weight[..]
        });
        let d = iq4_block_scale(xb, importance);
        let id = inverse_or_zero(d);
        let mut levels = [0u8; 32];
        for j in 0..32 {
            levels[j] = best_index_iq4nl(id * xb[j]);
        }
        let mut qs = [0u8; 16];
        pack_iq4(&levels, &mut qs);
        *out = BlockIQ4_NL {
            d: f16::from_f32(d),
            qs,
        };
    }
}

/// ggml's IQ4 importance: `weight[j] = qw[j] · sqrt(σ² + x[j]²)` for one block of 32,
/// with σ² = 2·Σx²/n over the n values of the (super-)block it belongs to
/// ([`iq4_sigma2`]).
fn iq4_weights(xb: &[f32], qw: &[f32], sigma2: f32, weight: &mut [f32; 32]) {
    for j in 0..32 {
        weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
}

/// ggml's `sigma2` for IQ4: Σx² in order, times `2/n` (a power of two for n = 32 or 256,
/// so the product is exact, as is C's `sigma2 *= 2.f/super_block_size`).
fn iq4_sigma2(xs: &[f32]) -> f32 {
    let mut sigma2 = 0.0f32;
    for &v in xs {
        sigma2 += v * v;
    }
    sigma2 * (2.0 / xs.len() as f32)
}

/// Quantizes `x` to IQ4_XS as `llama-quantize` does (`quantize_iq4_xs`, no importance
/// matrix): per 32-element sub-block the IQ4_NL scale search, then the signed scales
/// are quantized to 6 bits against the one of largest magnitude (`d = -max_scale/32`,
/// stored as l + 32: low 4 bits in `scales_l` nibbles, top 2 in `scales_h`), and each
/// weight mapped to the nearest level of `KVALUES_IQ4NL · d·l` (f32 `d`, not the f16).
pub fn quantize_row_iq4_xs(x: &[f32], y: &mut [BlockIQ4_XS]) {
    quantize_iq4_xs(x, y, None);
}

/// IQ4_XS with optional per-column importance weights (`qw.len() == x.len()`): ggml's
/// `quantize_iq4_xs`; the weights as in [`quantize_iq4_nl`], σ² over the super-block of 256.
pub(crate) fn quantize_iq4_xs(x: &[f32], y: &mut [BlockIQ4_XS], qw: Option<&[f32]>) {
    check_len(x, y);
    for (ibl, (xs, out)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let mut scales = [0.0f32; QK_K / 32];
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        // Only used with an importance matrix.
        let sigma2 = if qw.is_some() { iq4_sigma2(xs) } else { 0.0 };
        for ib in 0..QK_K / 32 {
            let xb = &xs[32 * ib..32 * ib + 32];
            let mut weight = [0.0f32; 32];
            let importance = qw.map(|qw| {
                let qw = &qw[QK_K * ibl + 32 * ib..QK_K * ibl + 32 * ib + 32];
                iq4_weights(xb, qw, sigma2, &mut weight);
                &weight[..]
            });
            scales[ib] = iq4_block_scale(xb, importance);
            let abs_d = scales[ib].abs();
            if abs_d > amax_scale {
                amax_scale = abs_d;
                max_scale = scales[ib];
            }
        }

        // For an all-zero super-block max_scale is +0, so d is -0 (f16 0x8000), as in C.
        let d = -max_scale / 32.0;
        let id = inverse_or_zero(d);
        let mut block = BlockIQ4_XS {
            d: f16::from_f32(d),
            scales_h: 0,
            scales_l: [0; QK_K / 64],
            qs: [0; QK_K / 2],
        };
        for ib in 0..QK_K / 32 {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = inverse_or_zero(dl);
            let xb = &xs[32 * ib..32 * ib + 32];
            let mut levels = [0u8; 32];
            for j in 0..32 {
                levels[j] = best_index_iq4nl(idl * xb[j]);
            }
            pack_iq4(&levels, &mut block.qs[16 * ib..16 * ib + 16]);

            let l = (l + 32) as u8;
            block.scales_l[ib / 2] |= (l & 0x0F) << (4 * (ib % 2));
            block.scales_h |= ((l >> 4) as u16) << (2 * ib);
        }
        *out = block;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::unpack::{dequantize_row, Dequantize};

    /// ggml's `generate_data` (tests/test-quantize-fns.cpp): `0.1 + 2*cosf(i + offset)`,
    /// with C's types: `i + offset` and the product in float, the sum in double.
    fn ggml_test_data(offset: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (0.1f64 + (2.0f32 * (i as f32 + offset).cos()) as f64) as f32)
            .collect()
    }

    /// Seeded "normal-ish" noise: xorshift64* and the Irwin–Hall sum of 12 uniforms
    /// (mean 0, variance 1), with no transcendental functions so it is the same everywhere.
    fn normalish(seed: u64, n: usize, sigma: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut uniform = move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..n)
            .map(|_| ((0..12).map(|_| uniform()).sum::<f32>() - 6.0) * sigma)
            .collect()
    }

    /// ggml's `array_rmse`: note it is `sqrt(Σ diff²) / n`, i.e. the RMSE divided by √n.
    fn ggml_total_error(a: &[f32], b: &[f32]) -> f32 {
        let sum: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| {
                let d = x as f64 - y as f64;
                d * d
            })
            .sum();
        (sum.sqrt() as f32) / a.len() as f32
    }

    fn rmse(a: &[f32], b: &[f32]) -> f64 {
        let sum: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum();
        (sum / a.len() as f64).sqrt()
    }

    fn rms(a: &[f32]) -> f64 {
        (a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
    }

    /// A quantized row as (block bytes, dequantized values).
    type Quantized = (Vec<u8>, Vec<f32>);

    /// One quantizer under test, with its block type hidden behind byte/f32 closures.
    struct Case {
        name: &'static str,
        qk: usize,
        /// ggml's MAX_QUANTIZATION_TOTAL_ERROR* for this type (test-quantize-fns.cpp).
        ggml_threshold: f32,
        /// Quantizes `x`, returning the block bytes and the dequantized values.
        run: fn(&[f32]) -> Quantized,
    }

    fn run_with<B: Dequantize>(quantize: fn(&[f32], &mut [B]), x: &[f32], initial: B) -> Quantized {
        let mut blocks = vec![initial; x.len() / B::QK];
        quantize(x, &mut blocks);
        let mut out = vec![f32::NAN; x.len()];
        dequantize_row(&blocks, &mut out);
        (crate::format::blocks::block_bytes(&blocks).to_vec(), out)
    }

    // ggml's thresholds (tests/test-quantize-fns.cpp): Q2_K has the 2-bit one, Q3_K the
    // 3-bit one, every other type here the default.
    const MAX_QUANTIZATION_TOTAL_ERROR: f32 = 0.002;
    const MAX_QUANTIZATION_TOTAL_ERROR_2BITS: f32 = 0.0075;
    const MAX_QUANTIZATION_TOTAL_ERROR_3BITS: f32 = 0.0040;

    fn cases() -> Vec<Case> {
        // Blocks filled with a recognisable non-zero pattern, so a field the quantizer
        // forgot to write would show.
        fn junk<B: Block>() -> B {
            let bytes = vec![0xA5u8; std::mem::size_of::<B>() + 16];
            let off = bytes.as_ptr().align_offset(std::mem::align_of::<B>());
            crate::format::blocks::view_blocks::<B>(&bytes[off..off + std::mem::size_of::<B>()])
                .unwrap()[0]
        }
        vec![
            Case {
                name: "Q2_K",
                qk: QK_K,
                ggml_threshold: MAX_QUANTIZATION_TOTAL_ERROR_2BITS,
                run: |x| run_with(quantize_row_q2_k, x, junk()),
            },
            Case {
                name: "Q3_K",
                qk: QK_K,
                ggml_threshold: MAX_QUANTIZATION_TOTAL_ERROR_3BITS,
                run: |x| run_with(quantize_row_q3_k, x, junk()),
            },
            Case {
                name: "Q4_K",
                qk: QK_K,
                ggml_threshold: MAX_QUANTIZATION_TOTAL_ERROR,
                run: |x| run_with(quantize_row_q4_k, x, junk()),
            },
            Case {
                name: "Q5_K",
                qk: QK_K,
                ggml_threshold: MAX_QUANTIZATION_TOTAL_ERROR,
                run: |x| run_with(quantize_row_q5_k, x, junk()),
            },
            Case {
                name: "Q6_K",
                qk: QK_K,
                ggml_threshold: MAX_QUANTIZATION_TOTAL_ERROR,
                run: |x| run_with(quantize_row_q6_k, x, junk()),
            },
            Case {
                name: "IQ4_NL",
                qk: 32,
                ggml_threshold: MAX_QUANTIZATION_TOTAL_ERROR,
                run: |x| run_with(quantize_row_iq4_nl, x, junk()),
            },
            Case {
                name: "IQ4_XS",
                qk: QK_K,
                ggml_threshold: MAX_QUANTIZATION_TOTAL_ERROR,
                run: |x| run_with(quantize_row_iq4_xs, x, junk()),
            },
        ]
    }

    /// The golden input: 24 super-blocks of noise, one of small noise, one zero block with
    /// one spike, one of quarter-steps full of exact ties, one half constant, half zero.
    fn golden_input() -> Vec<f32> {
        let mut x = normalish(11, 24 * QK_K, 1.0);
        x.extend(normalish(12, QK_K, 0.01));
        let mut spike = vec![0.0f32; QK_K];
        spike[5] = 3.0;
        x.extend(spike);
        x.extend((0..QK_K).map(|i| ((i * 7919) % 17) as f32 * 0.25 - 2.0));
        x.extend((0..QK_K).map(|i| if i < 128 { -0.75 } else { 0.0 }));
        x
    }

    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// Bit-exactness with ggml. The hashes are of the bytes written for
    /// [`golden_input`] by ggml's own reference functions (`quantize_row_q*_K_ref`,
    /// `quantize_iq4_nl`, `quantize_iq4_xs` from ggml-quants.c, with ggml's fp16
    /// conversion), compiled by GCC 12 for x86-64 without FMA, as llama.cpp builds
    /// ggml-base. A change in any rounding, tie or comparison shows up here.
    #[test]
    fn matches_ggml_golden() {
        let expected = [
            ("Q2_K", 0xb177_4858_ff1a_8b7b, 2352),
            ("Q3_K", 0xa4ed_942c_6802_9ac1, 3080),
            ("Q4_K", 0xfeed_71e5_f728_ba1f, 4032),
            ("Q5_K", 0x8ede_51a4_6062_53ae, 4928),
            ("Q6_K", 0xa00c_8b8b_4ec1_d594, 5880),
            ("IQ4_NL", 0xf902_0e14_cb98_567d, 4032),
            ("IQ4_XS", 0x4967_7b43_96a1_531e, 3808),
        ];
        let x = golden_input();
        for case in cases() {
            let (name, hash, len) = expected.iter().find(|e| e.0 == case.name).copied().unwrap();
            let (bytes, _) = (case.run)(&x);
            assert_eq!(bytes.len(), len, "{name}");
            assert_eq!(fnv1a(&bytes), hash, "{name}: bytes differ from ggml's");
        }
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [
            (0.0, 0),
            (-0.0, 0),
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (0.49999997, 0),
            (3.7, 4),
            (-3.7, -4),
            (4194303.0, 4194303),
            (-4194303.0, -4194303),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "nearest_int({x})");
        }
        for v in normalish(1, 10_000, 1000.0) {
            assert_eq!(
                nearest_int(v),
                v.round_ties_even() as i32,
                "nearest_int({v})"
            );
        }
    }

    #[test]
    fn best_index_is_nearest_level_with_ties_up() {
        let v = KVALUES_IQ4NL;
        // ggml's older search (before the branch-free one), kept here as a cross-check.
        let old = |x: f32| -> u8 {
            if x <= v[0] as f32 {
                return 0;
            }
            if x >= v[15] as f32 {
                return 15;
            }
            let (mut ml, mut mu) = (0usize, 15usize);
            while mu - ml > 1 {
                let mav = (ml + mu) / 2;
                if x < v[mav] as f32 {
                    mu = mav;
                } else {
                    ml = mav;
                }
            }
            if x - (v[mu - 1] as f32) < v[mu] as f32 - x {
                (mu - 1) as u8
            } else {
                mu as u8
            }
        };
        let mut xs = normalish(7, 20_000, 60.0);
        // 200 floats either side of every midpoint, and the midpoints themselves.
        for i in 1..16 {
            let mid = (v[i - 1] as f32 + v[i] as f32) / 2.0;
            let mut up = mid;
            let mut down = mid;
            xs.push(mid);
            for _ in 0..200 {
                up = f32::from_bits(if up > 0.0 {
                    up.to_bits() + 1
                } else {
                    up.to_bits() - 1
                });
                down = f32::from_bits(if down > 0.0 {
                    down.to_bits() - 1
                } else {
                    down.to_bits() + 1
                });
                xs.push(up);
                xs.push(down);
            }
            // Exact tie: the upper level.
            assert_eq!(best_index_iq4nl(mid) as usize, i, "tie at {mid}");
        }
        xs.extend([-1e30, -200.0, -127.0, 113.0, 200.0, 1e30, 0.0, -0.0]);
        for x in xs {
            let got = best_index_iq4nl(x);
            assert_eq!(got, old(x), "x = {x}");
            let err = (v[got as usize] as f32 - x).abs();
            assert!(v.iter().all(|&l| (l as f32 - x).abs() >= err), "x = {x}");
        }
    }

    /// ggml's own check (test-quantize-fns.cpp, `total_quantization_error`): the cosine
    /// pattern over 32·128 = 4096 values, quantize → dequantize, `sqrt(Σ diff²)/n` below
    /// the published threshold of each type.
    #[test]
    fn ggml_total_error_within_published_thresholds() {
        let x = ggml_test_data(0.0, 32 * 128);
        for case in cases() {
            let (_, y) = (case.run)(&x);
            let err = ggml_total_error(&x, &y);
            assert!(
                err < case.ggml_threshold,
                "{}: error {err} >= ggml's {}",
                case.name,
                case.ggml_threshold
            );
        }
    }

    /// Other lengths (1, 2, 7 blocks), offsets and a seeded noise signal. ggml's
    /// threshold is for n = 4096, where its `sqrt(Σ diff²)/n` is RMSE/64; restated as a
    /// per-element RMSE relative to the test signal's RMS (≈ √2.01 for 0.1 + 2cos) it
    /// gives each type a relative bound, which we apply to every row here. Noise has a
    /// larger peak-to-RMS ratio than a cosine (so coarser grids for the same RMS), hence
    /// twice the bound for it.
    #[test]
    fn rmse_small_on_other_lengths_and_signals() {
        let cos_rms = (0.01f64 + 2.0).sqrt();
        for case in cases() {
            let rel_bound = case.ggml_threshold as f64 * 64.0 / cos_rms;
            for nblocks in [1usize, 2, 7] {
                let n = nblocks * case.qk;
                let signals = [
                    (ggml_test_data(0.0, n), 1.0),
                    (ggml_test_data(1.5, n), 1.0),
                    (normalish(nblocks as u64, n, 1.0), 2.0),
                    (normalish(100 + nblocks as u64, n, 0.02), 2.0),
                ];
                for (k, (x, allowance)) in signals.iter().enumerate() {
                    let (_, y) = (case.run)(x);
                    assert!(y.iter().all(|v| v.is_finite()), "{}: non-finite", case.name);
                    let rel = rmse(x, &y) / rms(x);
                    assert!(
                        rel < rel_bound * allowance,
                        "{} n={n} signal {k}: relative RMSE {rel:.4} >= {:.4}",
                        case.name,
                        rel_bound * allowance
                    );
                }
            }
        }
    }

    /// More bits, less error, on the same data: a cheap check that no type is quietly
    /// worse than it should be.
    #[test]
    fn error_falls_with_bits() {
        let x = normalish(42, 16 * QK_K, 1.0);
        let err = |name: &str| {
            let case = cases().into_iter().find(|c| c.name == name).unwrap();
            rmse(&x, &(case.run)(&x).1)
        };
        let chain = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"].map(err);
        for w in chain.windows(2) {
            assert!(w[1] < w[0] * 0.75, "errors by bits: {chain:?}");
        }
        // IQ4_XS (4.25 bpw) and IQ4_NL (4.5 bpw) land between Q3_K and Q5_K.
        for name in ["IQ4_NL", "IQ4_XS"] {
            let e = err(name);
            assert!(e < chain[1] && e > chain[3], "{name}: {e} vs {chain:?}");
        }
    }

    #[test]
    fn all_zero_rows_give_zero_values_and_ggml_bytes() {
        for case in cases() {
            let x = vec![0.0f32; 2 * case.qk];
            let (bytes, y) = (case.run)(&x);
            assert!(y.iter().all(|&v| v == 0.0), "{}: {y:?}", case.name);
            // The exact bytes ggml writes for a zero block.
            let block_len = bytes.len() / 2;
            let expected: Vec<u8> = match case.name {
                // d = 0 and every index 8, KVALUES_IQ4NL's level nearest to 0.
                "IQ4_NL" => [vec![0, 0], vec![0x88; 16]].concat(),
                // d = -0 (f16 0x8000), every scale l = 0 stored as 32 (scales_h bits
                // 0b10 per sub-block), every index 8.
                "IQ4_XS" => [vec![0x00, 0x80, 0xAA, 0xAA], vec![0; 4], vec![0x88; 128]].concat(),
                _ => vec![0; block_len],
            };
            assert_eq!(&bytes[..block_len], &expected[..], "{}", case.name);
            assert_eq!(&bytes[block_len..], &expected[..], "{}", case.name);
        }
    }

    /// A single huge value: everything stays finite, the outlier itself survives, and
    /// super-blocks without it quantize exactly as they would alone.
    #[test]
    fn one_large_outlier() {
        for case in cases() {
            let n = 4 * QK_K;
            let mut x = normalish(9, n, 0.05);
            let at = QK_K + 77;
            x[at] = 40.0;
            let (bytes, y) = (case.run)(&x);
            assert!(y.iter().all(|v| v.is_finite()), "{}", case.name);
            let rel = ((y[at] - x[at]) / x[at]).abs();
            assert!(rel < 0.1, "{}: outlier {} -> {}", case.name, x[at], y[at]);
            // Blocks are independent: the first super-block does not see the outlier.
            let (alone, y_alone) = (case.run)(&x[..QK_K]);
            assert_eq!(&bytes[..alone.len()], &alone[..], "{}", case.name);
            assert_eq!(&y[..QK_K], &y_alone[..], "{}", case.name);
        }
    }

    /// Same input, same bytes, and each block depends on its own values only (no state
    /// carried between blocks or calls).
    #[test]
    fn deterministic_and_block_local() {
        for case in cases() {
            let x = [
                ggml_test_data(0.0, 3 * case.qk),
                normalish(3, 3 * case.qk, 0.3),
                vec![0.0; case.qk],
            ]
            .concat();
            let (a, _) = (case.run)(&x);
            let (b, _) = (case.run)(&x);
            assert_eq!(a, b, "{}", case.name);
            let per_block = a.len() / (x.len() / case.qk);
            for (k, chunk) in x.chunks(case.qk).enumerate().rev() {
                let (alone, _) = (case.run)(chunk);
                assert_eq!(
                    &a[k * per_block..(k + 1) * per_block],
                    &alone[..],
                    "{} block {k}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn constant_and_one_sided_rows() {
        for case in cases() {
            let n = case.qk;
            for x in [
                vec![0.5f32; n],
                vec![-3.0f32; n],
                normalish(5, n, 1.0).iter().map(|v| v.abs() + 1.0).collect(),
            ] {
                let (_, y) = (case.run)(&x);
                assert!(y.iter().all(|v| v.is_finite()), "{}", case.name);
                let rel = rmse(&x, &y) / rms(&x);
                assert!(
                    rel < 0.2,
                    "{}: relative RMSE {rel} on {:?}",
                    case.name,
                    &x[..4]
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "values for")]
    fn wrong_length_panics() {
        let mut y = [BlockQ4_K {
            d: f16::ZERO,
            dmin: f16::ZERO,
            scales: [0; 12],
            qs: [0; 128],
        }];
        quantize_row_q4_k(&[0.0; 255], &mut y);
    }
}
