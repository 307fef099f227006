//! AVX2 + FMA + F16C kernels (every x86-64 laptop of the last decade), by role: [`dot`]
//! one weight row · one activation row, [`gemv`] several weight rows · one activation
//! row ([`gemv_iq`] both for the IQ1–IQ3 grids), [`gemm`] the tile micro-kernel for
//! batches, [`attend`] attention over a KV cache, [`ops`] attention's `axpy` and SwiGLU.
//! This file holds the helpers more than one of them uses. Each kernel is checked against
//! the scalar reference ([`crate::reference`]) by `kernels/tests/`.
//!
//! Integer dot products of 32 int8 pairs use ggml's trick: `maddubs` needs one unsigned
//! operand, so take |x| and move x's sign onto y (`sign_epi8`), then `madd` with ones
//! widens the 16 pair sums to 8 int32 lanes.

use std::arch::x86_64::*;

use super::common::{fp16, k4_scales_mins};
use crate::format::blocks::*;

pub(crate) mod attend;
pub(crate) mod dot;
pub(crate) mod gemm;
pub(crate) mod gemv;
pub(crate) mod gemv_iq;
pub(crate) mod ops;

/// 32 signed × 32 signed int8 → 8 int32 partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    let p16 = _mm256_maddubs_epi16(ax, sy);
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// One Q4_K super-block into (`acc`: Σ d·scale·(q · q8) as 8 f32 lanes, `acc_min`:
/// Σ dmin·m·Σq8 of the sub-blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step_q4_k(st: &mut (__m256, f32), x: &BlockQ4_K, y: &BlockQ8_K) {
    let low = _mm256_set1_epi8(0x0F);
    let (sc, mn) = k4_scales_mins(&x.scales);
    // Mins: Σ_j m_j · (bsums[2j] + bsums[2j+1]) in one multiply-add (|pair| ≤ 2·16·128).
    // SAFETY: bsums is 16 i16 = 32 readable bytes.
    let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
    let pairs = _mm_hadd_epi16(
        _mm256_castsi256_si128(bs),
        _mm256_extracti128_si256::<1>(bs),
    );
    let m = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64)), pairs);
    let m = _mm_add_epi32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
    let m = _mm_add_epi32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
    let summs = _mm_cvtsi128_si32(m);
    // Scale j as 16 equal i16: one byte shuffle of the 8 scales widened to words.
    let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
    let scale = |j: i16| _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((2 * j) | (2 * j + 1) << 8));
    let mut sum = _mm256_setzero_si256();
    for c in 0..4 {
        // SAFETY: 32 bytes at qs[32c..] and 64 at y.qs[64c..], within the arrays.
        let (q, y1, y2) = unsafe {
            (
                _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast()),
                _mm256_loadu_si256(y.qs.as_ptr().add(64 * c).cast()),
                _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32).cast()),
            )
        };
        let lo = _mm256_and_si256(q, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
        // q in 0..16 unsigned, y signed: maddubs cannot saturate (2·15·128 < 2^15).
        let j = 2 * c as i16;
        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y1), scale(j));
        let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y2), scale(j + 1));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(p1, p2));
    }
    let d = fp16(x.d) * y.d;
    st.0 = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), st.0);
    st.1 += fp16(x.dmin) * y.d * summs as f32;
}

/// One Q6_K super-block into `acc` (Σ d·scale·((q − 32) · q8) as 8 f32 lanes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step_q6_k(acc: &mut __m256, x: &BlockQ6_K, y: &BlockQ8_K) {
    let low = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    {
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: ql[64h..64h+64], qh[32h..32h+32], y.qs[128h..128h+128] are in bounds.
            let (ql0, ql1, qh) = unsafe {
                (
                    _mm256_loadu_si256(x.ql.as_ptr().add(64 * half).cast()),
                    _mm256_loadu_si256(x.ql.as_ptr().add(64 * half + 32).cast()),
                    _mm256_loadu_si256(x.qh.as_ptr().add(32 * half).cast()),
                )
            };
            // The four 32-element groups of this half, as unsigned 0..64.
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, low),
                    _mm256_slli_epi16(_mm256_and_si256(qh, three), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, low),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), three), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), three), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), three), 4),
                ),
            ];
            for (k, &qk) in q.iter().enumerate() {
                // SAFETY: 32 bytes at y.qs[128h + 32k..], in bounds.
                let q8 =
                    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(128 * half + 32 * k).cast()) };
                // Σ (q - 32)·y = Σ q·y − 32·Σ y; both fit int16 per pair (2·63·128 < 2^15).
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(qk, q8), _mm256_maddubs_epi16(m32, q8));
                let s_lo = x.scales[8 * half + 2 * k] as i16;
                let s_hi = x.scales[8 * half + 2 * k + 1] as i16;
                let scales = _mm256_set_m128i(_mm_set1_epi16(s_hi), _mm_set1_epi16(s_lo));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, scales));
            }
        }
        let d = fp16(x.d) * y.d;
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), *acc);
    }
}
