//! NEON element-wise kernels: attention's `acc += p · v` over an f16 value row, and
//! SwiGLU with a vector `exp`.

use std::arch::aarch64::*;

use half::f16;

use super::{f16x4, fp16};

/// `acc += p · v` for an f16 row (`fcvtl` + `fmla`, 8 elements per step).
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn axpy_f16(acc: &mut [f32], p: f32, v: &[f16]) {
    let n = acc.len().min(v.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, within both slices.
        unsafe {
            let x = vld1q_u16(v.as_ptr().add(i).cast());
            let o = acc.as_mut_ptr().add(i);
            let lo = vfmaq_n_f32(vld1q_f32(o), f16x4(vget_low_u16(x)), p);
            let hi = vfmaq_n_f32(vld1q_f32(o.add(4)), f16x4(vget_high_u16(x)), p);
            vst1q_f32(o, lo);
            vst1q_f32(o.add(4), hi);
        }
        i += 8;
    }
    for j in i..n {
        acc[j] += p * fp16(v[j]);
    }
}

/// `e^x` in 4 lanes, the AVX2 kernel's algorithm (`crate::arch::x86::avx2::ops::exp256`):
/// n = round(x·log2 e), a degree-6 polynomial in r = x − n·ln 2 (ln 2 in two parts), and
/// 2^n built in the exponent field. x is clamped to [−87, 88] (e^88 < f32::MAX); inputs
/// below −87 give 0 (never a denormal), NaN gives NaN.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn exp128(x: float32x4_t) -> float32x4_t {
    let not_nan = vceqq_f32(x, x);
    let xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0)), vdupq_n_f32(88.0));
    let n = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(std::f32::consts::LOG2_E)));
    let r = vfmsq_f32(xc, n, vdupq_n_f32(0.693_359_4));
    let r = vfmsq_f32(r, n, vdupq_n_f32(-2.121_944_4e-4));
    let mut p = vdupq_n_f32(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    // n ∈ [−126, 127]: 2^n is a normal float with biased exponent n + 127.
    let pow2 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(
        vcvtq_s32_f32(n),
        vdupq_n_s32(127),
    )));
    let tiny = vcltq_f32(x, vdupq_n_f32(-87.0));
    let e = vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(p, pow2)), tiny);
    vbslq_f32(not_nan, vreinterpretq_f32_u32(e), x)
}

/// `out[i] = g / (1 + e^-g) · up[i]` with `g = gate[i]`, 4 lanes at a time; the tail (< 4)
/// in scalar code, as the reference does it.
#[target_feature(enable = "neon")]
pub(crate) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(gate.len() == n && up.len() == n);
    let one = vdupq_n_f32(1.0);
    let body = n - n % 4;
    for i in (0..body).step_by(4) {
        // SAFETY: i + 4 ≤ body ≤ n, the length of all three slices.
        unsafe {
            let g = vld1q_f32(gate.as_ptr().add(i));
            let u = vld1q_f32(up.as_ptr().add(i));
            let e = exp128(vnegq_f32(g));
            let s = vdivq_f32(g, vaddq_f32(one, e));
            vst1q_f32(out.as_mut_ptr().add(i), vmulq_f32(s, u));
        }
    }
    for i in body..n {
        let g = gate[i];
        out[i] = g / (1.0 + (-g).exp()) * up[i];
    }
}
