//! AVX-512 (F/BW/VL + VNNI, and BF16 where present) kernels. Each is checked against
//! the scalar reference by `tests/kernels_dot.rs`.
//!
//! Int8 dot products use VNNI's `vpdpbusd` (unsigned × signed bytes, 4 products summed
//! into each int32 lane): |x| as the unsigned side with x's sign moved onto y.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::avx2::{fp16, scaled_sum};
use crate::blocks::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16k + 16 <= n, within both slices.
            let (x, y) = unsafe {
                (
                    _mm512_loadu_ps(w.as_ptr().add(i + 16 * k)),
                    _mm512_loadu_ps(a.as_ptr().add(i + 16 * k)),
                )
            };
            *acc = _mm512_fmadd_ps(x, y, *acc);
        }
        i += 64;
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut sum = _mm512_reduce_add_ps(v);
    for j in i..n {
        sum += w[j] * a[j];
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16k + 16 <= n, within both slices (16 f16 = 32 bytes).
            let (x, y) = unsafe {
                (
                    _mm512_cvtph_ps(_mm256_loadu_si256(w.as_ptr().add(i + 16 * k).cast())),
                    _mm512_loadu_ps(a.as_ptr().add(i + 16 * k)),
                )
            };
            *acc = _mm512_fmadd_ps(x, y, *acc);
        }
        i += 64;
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut sum = _mm512_reduce_add_ps(v);
    for j in i..n {
        sum += fp16(w[j]) * a[j];
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    while i + 64 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 32k + 32 <= n, within both slices; __m512bh is 32 bf16 in
            // a 512-bit register, the same bits as the loaded __m512i.
            let (x, y): (__m512bh, __m512bh) = unsafe {
                (
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        w.as_ptr().add(i + 32 * k).cast(),
                    )),
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        a.as_ptr().add(i + 32 * k).cast(),
                    )),
                )
            };
            *acc = _mm512_dpbf16_ps(*acc, x, y);
        }
        i += 64;
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
    for j in i..n {
        sum += w[j].to_f32() * a[j].to_f32();
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| {
            // SAFETY: 32 readable bytes each; unaligned loads.
            let (qx, qy) = unsafe {
                (
                    _mm256_loadu_si256(x.qs.as_ptr().cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().cast()),
                )
            };
            dot_i8x32(qx, qy)
        },
    )
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let low = _mm256_set1_epi8(0x0F);
    let eight = _mm256_set1_epi8(8);
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| {
            // SAFETY: 16 and 32 readable bytes; unaligned loads.
            let (t, qy) = unsafe {
                (
                    _mm_loadu_si128(x.qs.as_ptr().cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().cast()),
                )
            };
            let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low);
            dot_i8x32(_mm256_sub_epi8(q, eight), qy)
        },
    )
}
