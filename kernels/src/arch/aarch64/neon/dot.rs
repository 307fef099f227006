//! NEON one-row dot products: one weight row · one activation row, per type.
//!
//! The 32-element types (Q8_0, Q4_0) keep two float accumulators across blocks, as ggml's
//! NEON kernels do. The K-quants sum each super-block's scaled integer products exactly
//! in int32 (`Σ_s sc_s · Σ q·q8`, at most 63·128·64·256 < 2^31) and then take the scalar
//! reference's float steps, so their results equal the reference bit for bit. Every other
//! quantized type takes [`dot_unpacked`]: the reference's own decode (`Unpack`, inlined
//! and vectorized here) with the products by `sdot`, also bit-identical to the reference.

use std::arch::aarch64::*;

use half::f16;

use super::{f16x4, fp16, load_i8, load_u8, sdot};
use crate::contract::dot::VecDot;
use crate::format::blocks::*;
use crate::format::unpack::{Activation, Unpack};

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4k + 4 <= n, within both slices.
            let (x, y) = unsafe {
                (
                    vld1q_f32(w.as_ptr().add(i + 4 * k)),
                    vld1q_f32(a.as_ptr().add(i + 4 * k)),
                )
            };
            *acc = vfmaq_f32(*acc, x, y);
        }
        i += 16;
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut sum = vaddvq_f32(v);
    for j in i..n {
        sum += w[j] * a[j];
    }
    sum
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4k + 4 <= n, within both slices (4 f16 = 8 bytes).
            let (x, y) = unsafe {
                (
                    f16x4(vld1_u16(w.as_ptr().add(i + 4 * k).cast())),
                    vld1q_f32(a.as_ptr().add(i + 4 * k)),
                )
            };
            *acc = vfmaq_f32(*acc, x, y);
        }
        i += 16;
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut sum = vaddvq_f32(v);
    for j in i..n {
        sum += fp16(w[j]) * a[j];
    }
    sum
}

/// The driver of the 32-element block kernels: `block_dot` gives 4 int32 partial sums
/// of a block's x·y; they are scaled by d_x·d_y into one of two float accumulators.
#[inline(always)]
fn blocks32<W, A>(
    w: &[W],
    a: &[A],
    scales: impl Fn(&W, &A) -> (f16, f16),
    block_dot: impl Fn(&W, &A) -> int32x4_t,
) -> f32 {
    // SAFETY (the conversions): only called from neon target-feature functions.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 2];
        let n = w.len().min(a.len());
        for i in 0..n {
            let (x, y) = (&w[i], &a[i]);
            let (dx, dy) = scales(x, y);
            let d = fp16(dx) * fp16(dy);
            let p = vcvtq_f32_s32(block_dot(x, y));
            acc[i & 1] = vfmaq_n_f32(acc[i & 1], p, d);
        }
        vaddvq_f32(vaddq_f32(acc[0], acc[1]))
    }
}

/// 4 int32 partial sums of a Q8_0 block · a Q8_0 block.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn block_q8_0(x: &BlockQ8_0, y: &BlockQ8_0) -> int32x4_t {
    // SAFETY: 32 bytes each, two 16-byte loads per block.
    let (x0, x1, y0, y1) = unsafe {
        (
            load_i8(x.qs.as_ptr()),
            load_i8(x.qs.as_ptr().add(16)),
            load_i8(y.qs.as_ptr()),
            load_i8(y.qs.as_ptr().add(16)),
        )
    };
    sdot(sdot(vdupq_n_s32(0), x0, y0), x1, y1)
}

/// 4 int32 partial sums of a Q4_0 block · a Q8_0 block.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn block_q4_0(x: &BlockQ4_0, y: &BlockQ8_0) -> int32x4_t {
    // SAFETY: 16 bytes of nibbles, 32 activation bytes.
    let (q, y0, y1) = unsafe {
        (
            load_u8(x.qs.as_ptr()),
            load_i8(y.qs.as_ptr()),
            load_i8(y.qs.as_ptr().add(16)),
        )
    };
    // Elements 0..16 in the low nibbles, 16..32 in the high ones; q − 8.
    let eight = vdupq_n_s8(8);
    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), eight);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
    sdot(sdot(vdupq_n_s32(0), lo, y0), hi, y1)
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    blocks32(w, a, |x, y| (x.d, y.d), |x, y| block_q8_0(x, y))
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    blocks32(w, a, |x, y| (x.d, y.d), |x, y| block_q4_0(x, y))
}

/// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K super-block (ggml's `scale_min_k4`).
#[inline(always)]
fn scales_mins_k4(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min_k4(j, s);
    }
    (sc, mn)
}

/// Σ_j mins_j · (bsums[2j] + bsums[2j+1]) (the K-quants' mins term).
#[inline(always)]
fn mins_term(mn: &[u8; 8], bsums: &[i16; 16]) -> i32 {
    (0..8)
        .map(|j| mn[j] as i32 * (bsums[2 * j] as i32 + bsums[2 * j + 1] as i32))
        .sum()
}

/// One Q4_K super-block · a Q8_K block, as the reference computes it.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn step_q4_k(x: &BlockQ4_K, y: &BlockQ8_K) -> f32 {
    let low = vdupq_n_u8(0x0F);
    let (sc, mn) = scales_mins_k4(&x.scales);
    let mut isum = vdupq_n_s32(0);
    for c in 0..4 {
        // SAFETY: qs[32c..32c + 32] and y.qs[64c..64c + 64] are in bounds.
        let (q0, q1, y0, y1, y2, y3) = unsafe {
            let yq = y.qs.as_ptr().add(64 * c);
            (
                load_u8(x.qs.as_ptr().add(32 * c)),
                load_u8(x.qs.as_ptr().add(32 * c + 16)),
                load_i8(yq),
                load_i8(yq.add(16)),
                load_i8(yq.add(32)),
                load_i8(yq.add(48)),
            )
        };
        // Sub-block 2c: the low nibbles; 2c + 1: the high ones.
        let lo0 = vreinterpretq_s8_u8(vandq_u8(q0, low));
        let lo1 = vreinterpretq_s8_u8(vandq_u8(q1, low));
        let hi0 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0));
        let hi1 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1));
        let p_lo = sdot(sdot(vdupq_n_s32(0), lo0, y0), lo1, y1);
        let p_hi = sdot(sdot(vdupq_n_s32(0), hi0, y2), hi1, y3);
        isum = vmlaq_n_s32(isum, p_lo, sc[2 * c] as i32);
        isum = vmlaq_n_s32(isum, p_hi, sc[2 * c + 1] as i32);
    }
    let isum = vaddvq_s32(isum);
    let summs = mins_term(&mn, &y.bsums);
    // The reference's float steps (`reference::dot::dot_quant`).
    let (d, e) = (fp16(x.d), -fp16(x.dmin));
    d * y.d * isum as f32 + e * y.d * summs as f32
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        sumf += step_q4_k(x, y);
    }
    sumf
}

/// One Q6_K super-block · a Q8_K block, as the reference computes it.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn step_q6_k(x: &BlockQ6_K, y: &BlockQ8_K) -> f32 {
    let low = vdupq_n_u8(0x0F);
    let three = vdupq_n_u8(3);
    let m32 = vdupq_n_s8(32);
    let mut isum = vdupq_n_s32(0);
    for half in 0..2 {
        for part in 0..2 {
            // Elements l = 16·part.. of each of the half's four 32-element groups.
            let l = 16 * part;
            // SAFETY: ql[64h + l..+16], ql[64h + 32 + l..+16], qh[32h + l..+16] are in
            // bounds.
            let (ql0, ql1, qh) = unsafe {
                (
                    load_u8(x.ql.as_ptr().add(64 * half + l)),
                    load_u8(x.ql.as_ptr().add(64 * half + 32 + l)),
                    load_u8(x.qh.as_ptr().add(32 * half + l)),
                )
            };
            let q = [
                vorrq_u8(vandq_u8(ql0, low), vshlq_n_u8::<4>(vandq_u8(qh, three))),
                vorrq_u8(
                    vandq_u8(ql1, low),
                    vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(qh), three)),
                ),
                vorrq_u8(
                    vshrq_n_u8::<4>(ql0),
                    vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(qh), three)),
                ),
                vorrq_u8(vshrq_n_u8::<4>(ql1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(qh))),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let at = 128 * half + 32 * k + l;
                // SAFETY: y.qs[at..at + 16] is in bounds (at + 16 <= 256).
                let yv = unsafe { load_i8(y.qs.as_ptr().add(at)) };
                let v = vsubq_s8(vreinterpretq_s8_u8(qk), m32);
                let p = sdot(vdupq_n_s32(0), v, yv);
                // Element `at` is in sub-block at / 16.
                isum = vmlaq_n_s32(isum, p, x.scales[at / 16] as i32);
            }
        }
    }
    fp16(x.d) * y.d * vaddvq_s32(isum) as f32
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        sumf += step_q6_k(x, y);
    }
    sumf
}

/// Any quantized type: each block decoded by the reference's `Unpack` into signed bytes,
/// the products of each sub-block by `sdot`, then the reference's integer and float steps
/// (`reference::dot::dot_quant`), so the result is the reference's bit for bit.
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn dot_unpacked<W>(w: &[W], a: &[W::Act]) -> f32
where
    W: VecDot<Act: Activation> + Unpack,
{
    let mut sumf = 0.0;
    let (mut q, mut sc, mut mins) = ([0i8; QK_K], [0i16; QK_K / 16], [0i16; QK_K / 16]);
    for (x, y) in w.iter().zip(a) {
        let (d, e) = x.unpack(&mut q, &mut sc, &mut mins);
        let (q8, d8, bsums) = y.parts();
        assert!(q8.len() >= W::QK);
        let (mut isum, mut summs) = (0i32, 0i32);
        for s in 0..W::QK / W::SUB {
            let mut v = vdupq_n_s32(0);
            for k in (s * W::SUB..(s + 1) * W::SUB).step_by(16) {
                // SAFETY: k + 16 <= QK <= both lengths (`q` is QK_K long).
                let (xq, yq) = unsafe { (load_i8(q.as_ptr().add(k)), load_i8(q8.as_ptr().add(k))) };
                v = sdot(v, xq, yq);
            }
            isum += sc[s] as i32 * vaddvq_s32(v);
            if W::MINS {
                let per = W::SUB / 16;
                let sum: i32 = bsums[s * per..(s + 1) * per]
                    .iter()
                    .map(|&v| v as i32)
                    .sum();
                summs += mins[s] as i32 * sum;
            }
        }
        let scaled = d * d8 * isum as f32;
        sumf += if W::MINS {
            scaled + e * d8 * summs as f32
        } else if W::OFFSET {
            scaled + e * y.scaled_sum()
        } else {
            scaled
        };
    }
    sumf
}
