//! AVX2 element-wise kernels: attention's `acc += p · v` over f16, bf16, Q8_0 and Q4_0 rows, and SwiGLU with a
//! vector `e^x` (see `avx512/ops.rs` for the method).

use std::arch::x86_64::*;

use half::{bf16, f16};

use crate::format::blocks::{BlockQ4_0, BlockQ8_0};

use crate::arch::x86::common::fp16;
use crate::quant::Quantize;

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn axpy_f16(acc: &mut [f32], p: f32, v: &[f16]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, within both slices.
        unsafe {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(pv, x, a));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] += p * fp16(v[j]);
    }
}

/// `acc += p · v` over a Q8_0 row (attention's values in a q8_0 cache): per block of 32,
/// `p · d` once and the 32 int8 values widened to f32 in four groups of 8, so the cache
/// is read as it is stored (no dequantized copy). `acc.len() == 32 · v.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn axpy_q8_0(acc: &mut [f32], p: f32, v: &[BlockQ8_0]) {
    assert_eq!(acc.len(), 32 * v.len());
    for (a, b) in acc.chunks_exact_mut(32).zip(v) {
        let pd = _mm256_set1_ps(p * fp16(b.d));
        for g in 0..4 {
            // SAFETY: g · 8 + 8 ≤ 32 bytes of `qs` and floats of `a`.
            unsafe {
                let q = _mm_loadl_epi64(b.qs.as_ptr().add(8 * g).cast());
                let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                let dst = a.as_mut_ptr().add(8 * g);
                _mm256_storeu_ps(dst, _mm256_fmadd_ps(pd, x, _mm256_loadu_ps(dst)));
            }
        }
    }
}

/// `acc += p · v` over a Q4_0 row: per block, the low nibbles are values 0..16 and the
/// high ones 16..32, each minus 8, times `p · d`. `acc.len() == 32 · v.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn axpy_q4_0(acc: &mut [f32], p: f32, v: &[BlockQ4_0]) {
    assert_eq!(acc.len(), 32 * v.len());
    for (a, b) in acc.chunks_exact_mut(32).zip(v) {
        let pd = _mm256_set1_ps(p * fp16(b.d));
        // SAFETY: `qs` is 16 bytes.
        let raw = unsafe { _mm_loadu_si128(b.qs.as_ptr().cast()) };
        let m = _mm_set1_epi8(0x0f);
        let eight = _mm_set1_epi8(8);
        let lo = _mm_sub_epi8(_mm_and_si128(raw, m), eight);
        let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16::<4>(raw), m), eight);
        for (g, q) in [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)]
            .into_iter()
            .enumerate()
        {
            let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            // SAFETY: g · 8 + 8 ≤ 32 floats of `a`.
            unsafe {
                let dst = a.as_mut_ptr().add(8 * g);
                _mm256_storeu_ps(dst, _mm256_fmadd_ps(pd, x, _mm256_loadu_ps(dst)));
            }
        }
    }
}

/// `acc += p · v` over a bf16 row: bf16 is the top half of an f32, so a widening shift
/// by 16 is the conversion.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn axpy_bf16(acc: &mut [f32], p: f32, v: &[bf16]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, within both slices.
        unsafe {
            let h = _mm_loadu_si128(v.as_ptr().add(i).cast());
            let x = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)));
            let dst = acc.as_mut_ptr().add(i);
            _mm256_storeu_ps(dst, _mm256_fmadd_ps(pv, x, _mm256_loadu_ps(dst)));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] += p * v[j].to_f32();
    }
}

/// [`exp512`](crate::arch::x86::avx512::ops::exp512) for 8 lanes. AVX2 has no `scalef`: 2^n is built in the exponent field, so
/// x is also clamped above at 88 (e^88 ≈ 1.7e38 < f32::MAX; silu needs no more) and
/// NaN lanes are put back at the end. Inputs below −87 give 0, as there.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp256(x: __m256) -> __m256 {
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    let xc = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // n ∈ [-126, 127]: 2^n is a normal float with biased exponent n + 127. (At n = 127,
    // p ≤ e^(ln2/2) keeps the product finite: e^88 < f32::MAX.)
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.0));
    let e = _mm256_andnot_ps(tiny, _mm256_mul_ps(p, pow2));
    _mm256_blendv_ps(e, x, nan)
}

/// [`swiglu_avx512`](crate::arch::x86::avx512::ops::swiglu_avx512) with 8 lanes; the tail (< 8) in scalar code, as the reference does it.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn swiglu_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(gate.len() == n && up.len() == n);
    let one = _mm256_set1_ps(1.0);
    let body = n - n % 8;
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 ≤ body ≤ n, the length of all three slices.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            let e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
            let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(s, u));
        }
    }
    for i in body..n {
        let g = gate[i];
        out[i] = g / (1.0 + (-g).exp()) * up[i];
    }
}

/// `A::quantize_row` compiled for AVX2 + F16C (see [`crate::select::quantize`]).
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn quantize_row<A: Quantize>(x: &[f32], y: &mut [A]) {
    A::quantize_row(x, y)
}
