//! Quantizers for the IQ1–IQ3 formats (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S):
//! f32 rows and importance weights in, blocks out, bit for bit as `llama-quantize --imatrix`
//! writes them.
//!
//! # Where the algorithms come from
//! `ggml/src/ggml-quants.c` of the llama.cpp that llama-cpp-python 0.3.36 vendors (the
//! sources `tools/build_llamacpp.sh` builds llama-quantize from; its IQ1_M split search is
//! newer than some mainline versions'). `ggml_quantize_chunk` calls, per row:
//!
//! | type    | ggml function                | element weight                 | without weights        | here |
//! |---------|------------------------------|--------------------------------|------------------------|------|
//! | IQ2_XXS | `quantize_row_iq2_xxs_impl`  | `qw·sqrt(Σx²/256 + x²)`        | aborts (needs weights) | [`iq2`] |
//! | IQ2_XS  | `quantize_row_iq2_xs_impl`   | `qw·sqrt(Σx²/256 + x²)`        | aborts                 | [`iq2`] |
//! | IQ2_S   | `quantize_row_iq2_s_impl`    | `qw·sqrt(2Σx²/256 + x²)`       | `0.25·2Σx²/256 + x²`   | [`iq2`] |
//! | IQ3_XXS | `quantize_row_iq3_xxs_impl`  | `qw·sqrt(2Σx²/256 + x²)`       | `x²`                   | [`iq3`] |
//! | IQ3_S   | `quantize_row_iq3_s_impl`    | `qw·sqrt(2Σx²/256 + x²)`       | `x²`                   | [`iq3`] |
//! | IQ1_S   | `quantize_row_iq1_s_impl`    | `qw·sqrt(2Σx²/256 + x²)`       | aborts                 | [`iq1`] |
//! | IQ1_M   | `quantize_row_iq1_m_impl`    | `qw·sqrt(2Σx²/256 + x²)`       | `x²`                   | [`iq1`] |
//!
//! (Σx² over the 256-weight super-block.) The grids' lookup maps and neighbour lists
//! (`iq2xs_init_impl`, `iq3xs_init_impl`) are `grid`'s, built once on first use; the
//! IQ2/IQ3 sub-block search they share is `search`'s.
//!
//! The types without a weight-less path implement only
//! [`QuantizeImatrix`]; the others also
//! [`Quantize`] (llama-quantize uses it for `token_embd.weight`, which
//! an importance matrix has no entry for).
//!
//! # Exact float semantics
//! As in [`super::k`]: f32 throughout in C's order of operations, no fused multiply-add,
//! ggml's `nearest_int`, C's strict comparisons (they pick among equal scores), and
//! `MAX(a, b)` as `a > b ? a : b`. The IQ1 types sort each sub-block's values with
//! `qsort`, which in glibc is a stable merge sort for arrays this small: equal values keep
//! their index order, as in [`iq1`]'s stable sort.
//!
//! Where ggml aborts or reads out of bounds (a neighbour search where every distance is
//! infinite or NaN, a search result off the grid: only non-finite inputs get there), we
//! write the nearest grid point instead and never panic.

use half::f16;

use super::imatrix::{check_weights, QuantizeImatrix};
use super::k::{check_len, nearest_int};
use super::Quantize;
use crate::format::blocks::{
    BlockIQ1_M, BlockIQ1_S, BlockIQ2_S, BlockIQ2_XS, BlockIQ2_XXS, BlockIQ3_S, BlockIQ3_XXS,
};

pub(crate) mod grid;
pub mod iq1;
pub mod iq2;
pub mod iq3;
mod search;

/// ggml's `MAX(a, b)`: `a > b ? a : b`.
#[inline]
fn c_max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// The largest of `xval` by `MAX` from the first (ggml's `max = xval[0]; max = MAX(max, …)`).
fn max_of(xval: &[f32]) -> f32 {
    xval[1..].iter().fold(xval[0], |m, &v| c_max(m, v))
}

/// `weight[i] = qw[i] · sqrt(sigma2 + x[i]²)`, or `unweighted(x[i])` without an importance
/// matrix.
fn element_weights(
    xb: &[f32],
    qw: Option<&[f32]>,
    sigma2: f32,
    unweighted: impl Fn(f32) -> f32,
    weight: &mut [f32],
) {
    match qw {
        Some(qw) => {
            for i in 0..xb.len() {
                weight[i] = qw[i] * (sigma2 + xb[i] * xb[i]).sqrt();
            }
        }
        None => {
            for i in 0..xb.len() {
                weight[i] = unweighted(xb[i]);
            }
        }
    }
}

/// The magnitudes of a group of 8 (`xval`) and its 8 sign bits (bit i set: `xb[i] < 0`).
/// `x >= 0 ? x : -x` as C writes it (so -0 stays -0).
fn magnitudes_and_signs(xb: &[f32], xval: &mut [f32]) -> (u8, u32) {
    let (mut s, mut nflip) = (0u8, 0u32);
    for i in 0..8 {
        if xb[i] >= 0.0 {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            nflip += 1;
            s |= 1 << i;
        }
    }
    (s, nflip)
}

/// As [`magnitudes_and_signs`], for the formats that store 7 sign bits per 8 weights (the
/// 8th makes the count of negatives even: IQ2_XXS, IQ2_XS, IQ3_XXS). With an odd count,
/// the element of least `weight·x²` gets the wrong sign: its magnitude is negated in
/// `xval`, so the fit sees the value it will decode to. Returns the 7 stored bits.
fn magnitudes_and_even_signs(xb: &[f32], weight: &[f32], xval: &mut [f32]) -> u8 {
    let (mut s, nflip) = magnitudes_and_signs(xb, xval);
    if nflip % 2 == 1 {
        let mut imin = 0;
        let mut min = weight[0] * xb[0] * xb[0];
        for i in 1..8 {
            let ax = weight[i] * xb[i] * xb[i];
            if ax < min {
                min = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= 1 << imin;
    }
    s & 127
}

/// A sub-block scale as its stored integer: `nearest_int((id·scale − 1) / 2)` clamped to
/// `0..=max` (the decoder multiplies by `2l + 1`).
fn scale_index(id: f32, scale: f32, max: i32) -> i32 {
    nearest_int(0.5 * (id * scale - 1.0)).min(max).max(0)
}

/// IQ2_XXS, IQ2_XS and IQ1_S: ggml needs importance weights for them.
macro_rules! imatrix_only {
    ($($B:ty => $f:path),*) => {$(
        impl QuantizeImatrix for $B {
            fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
                check_len(x, y);
                check_weights(x, qw);
                $f(x, y, qw)
            }
        }
    )*};
}
imatrix_only!(
    BlockIQ2_XXS => iq2::quantize_iq2_xxs,
    BlockIQ2_XS => iq2::quantize_iq2_xs,
    BlockIQ1_S => iq1::quantize_iq1_s
);

/// IQ2_S, IQ3_XXS, IQ3_S and IQ1_M: with or without importance weights.
macro_rules! weights_optional {
    ($($B:ty => $f:path),*) => {$(
        impl QuantizeImatrix for $B {
            fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
                check_len(x, y);
                check_weights(x, qw);
                $f(x, y, Some(qw))
            }
        }
        impl Quantize for $B {
            fn quantize_row(x: &[f32], y: &mut [Self]) {
                check_len(x, y);
                $f(x, y, None)
            }
        }
    )*};
}
weights_optional!(
    BlockIQ2_S => iq2::quantize_iq2_s,
    BlockIQ3_XXS => iq3::quantize_iq3_xxs,
    BlockIQ3_S => iq3::quantize_iq3_s,
    BlockIQ1_M => iq1::quantize_iq1_m
);

/// An f16 from f32 as `GGML_FP32_TO_FP16`.
#[inline]
fn fp16(v: f32) -> f16 {
    f16::from_f32(v)
}

#[cfg(test)]
mod tests;
