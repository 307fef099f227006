//! NEON multi-row kernels: [`GEMV_ROWS`] weight rows · one activation row, walked block by
//! block together so each activation block is loaded once for all of them while it is in
//! L1, and the rows' weights stream side by side.

use std::arch::aarch64::*;

use super::dot::{block_q4_0, block_q8_0, step_q4_k, step_q6_k};
use super::fp16;
use crate::contract::gemv::GEMV_ROWS;
use crate::format::blocks::*;

/// The 32-element block types: per row, the block's 4 int32 sums scaled by d_x·d_y into
/// that row's float accumulator.
#[inline(always)]
fn rows32<W>(
    rows: [&[W]; GEMV_ROWS],
    a: &[BlockQ8_0],
    d: impl Fn(&W) -> half::f16,
    block: impl Fn(&W, &BlockQ8_0) -> int32x4_t,
) -> [f32; GEMV_ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    // SAFETY (the intrinsics): only called from neon target-feature functions.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); GEMV_ROWS];
        for (b, y) in a[..n].iter().enumerate() {
            let dy = fp16(y.d);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = &rows[r][b];
                *acc = vfmaq_n_f32(*acc, vcvtq_f32_s32(block(x, y)), fp16(d(x)) * dy);
            }
        }
        acc.map(|v| vaddvq_f32(v))
    }
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn rows_q8_0(rows: [&[BlockQ8_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    rows32(rows, a, |x| x.d, |x, y| block_q8_0(x, y))
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn rows_q4_0(rows: [&[BlockQ4_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    rows32(rows, a, |x| x.d, |x, y| block_q4_0(x, y))
}

/// The super-block types: each row's sum exactly as its one-row dot (and the reference).
#[inline(always)]
fn rows256<W>(
    rows: [&[W]; GEMV_ROWS],
    a: &[BlockQ8_K],
    step: impl Fn(&W, &BlockQ8_K) -> f32,
) -> [f32; GEMV_ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    let mut sum = [0f32; GEMV_ROWS];
    for (b, y) in a[..n].iter().enumerate() {
        for (r, sum) in sum.iter_mut().enumerate() {
            *sum += step(&rows[r][b], y);
        }
    }
    sum
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn rows_q4_k(rows: [&[BlockQ4_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    rows256(rows, a, |x, y| step_q4_k(x, y))
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn rows_q6_k(rows: [&[BlockQ6_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    rows256(rows, a, |x, y| step_q6_k(x, y))
}
