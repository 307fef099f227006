//! AVX2 one-row dot products: one weight row · one activation row, per type.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{dot_i8x32, step_q4_k, step_q6_k};
use crate::arch::x86::common::{fp16, fp16_mul, hsum, iq4nl_table, load32, nibbles, scaled_sum};
use crate::format::blocks::*;

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n, within both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(w.as_ptr().add(i + 8 * k)),
                    _mm256_loadu_ps(a.as_ptr().add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    for j in i..n {
        sum += w[j] * a[j];
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n, within both slices (8 f16 = 16 bytes).
            let (x, y) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i + 8 * k).cast())),
                    _mm256_loadu_ps(a.as_ptr().add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    for j in i..n {
        sum += fp16(w[j]) * a[j];
    }
    sum
}

/// 8 bf16 → 8 f32 (a bf16 is the top half of an f32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bf16x8(p: *const bf16) -> __m256 {
    // SAFETY: the caller passes a pointer to 8 readable bf16 values.
    let h = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n, within both slices.
            let (x, y) = unsafe {
                (
                    bf16x8(w.as_ptr().add(i + 8 * k)),
                    bf16x8(a.as_ptr().add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 16;
    }
    let mut sum = hsum(_mm256_add_ps(acc[0], acc[1]));
    for j in i..n {
        sum += w[j].to_f32() * a[j].to_f32();
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| dot_i8x32(load32(&x.qs), load32(&y.qs)),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let eight = _mm256_set1_epi8(8);
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| dot_i8x32(_mm256_sub_epi8(nibbles(&x.qs), eight), load32(&y.qs)),
    )
}

/// Σ over a super-block's 8 sub-blocks of scale × (4-bit q · q8), as 8 int32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let mut st = (_mm256_setzero_ps(), 0.0f32);
    for (x, y) in w.iter().zip(a) {
        step_q4_k(&mut st, x, y);
    }
    hsum(st.0) - st.1
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        step_q6_k(&mut acc, x, y);
    }
    hsum(acc)
}

/// Expands 32 bits into 32 bytes: 0xFF where the bit is set (ggml `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes_from_bits_32(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    // Each byte ORed with all bits but its own: all ones iff its own bit was set.
    let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
}

/// 32 unsigned bytes × 32 signed bytes → 8 int32 sums (no sign trick needed).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8i8x32(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        let p = dot_u8i8x32(nibbles(&x.qs), load32(&y.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        acc_m += fp16(x.m) * fp16(y.s);
    }
    hsum(acc) + acc_m
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        // q - 16 as int8: a clear 5th bit leaves 0xF0 in the high nibble (= nibble - 16).
        let hi = _mm256_andnot_si256(
            bytes_from_bits_32(u32::from_le_bytes(x.qh)),
            _mm256_set1_epi8(0xF0u8 as i8),
        );
        let q = _mm256_or_si256(nibbles(&x.qs), hi);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8x32(q, load32(&y.qs))), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        let hi = _mm256_and_si256(
            bytes_from_bits_32(u32::from_le_bytes(x.qh)),
            _mm256_set1_epi8(0x10),
        );
        let q = _mm256_or_si256(nibbles(&x.qs), hi);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8i8x32(q, load32(&y.qs))), acc);
        acc_m += fp16(x.m) * fp16(y.s);
    }
    hsum(acc) + acc_m
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_iq4_nl(w: &[BlockIQ4_NL], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let table = iq4nl_table();
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        let q = _mm256_shuffle_epi8(table, nibbles(&x.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8x32(q, load32(&y.qs))), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_iq4_xs(w: &[BlockIQ4_XS], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let table = iq4nl_table();
    for (x, y) in w.iter().zip(a) {
        step_iq4_xs(&mut acc, table, x, y);
    }
    hsum(acc)
}

/// The body of an IQ4_XS super-block step (see [`step_iq4_xs`]) with `$dot(q, q8)`: 32
/// signed × 32 signed bytes into 8 int32 partial sums (AVX-VNNI passes its `vpdpbusd`).
macro_rules! iq4_xs_step {
    ($acc:expr, $table:expr, $x:expr, $y:expr, $dot:expr) => {{
        let (acc, x, y): (&mut __m256, &BlockIQ4_XS, &BlockQ8_K) = ($acc, $x, $y);
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            // SAFETY: 16 bytes at qs[16ib..] and 32 at y.qs[32ib..], in bounds.
            let (t, q8) = unsafe {
                (
                    _mm_loadu_si128(x.qs.as_ptr().add(16 * ib).cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib).cast()),
                )
            };
            let nib = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(t, 4), t),
                _mm256_set1_epi8(0x0F),
            );
            let q = _mm256_shuffle_epi8($table, nib);
            let p = $dot(q, q8);
            sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(p, _mm256_set1_epi32(x.scale(ib))));
        }
        let d = $crate::arch::x86::common::fp16(x.d) * y.d;
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), *acc);
    }};
}
pub(crate) use iq4_xs_step;

/// One IQ4_XS super-block into `acc` (Σ d·scale·(q · q8) as 8 f32 lanes); `table` is
/// [`iq4nl_table`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn step_iq4_xs(acc: &mut __m256, table: __m256i, x: &BlockIQ4_XS, y: &BlockQ8_K) {
    iq4_xs_step!(acc, table, x, y, dot_i8x32)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let mut st = (_mm256_setzero_ps(), 0.0f32);
    for (x, y) in w.iter().zip(a) {
        step_q5_k(&mut st, x, y);
    }
    hsum(st.0) - st.1
}

/// One Q5_K super-block into (`st.0`: Σ d·scale·(q · q8) as 8 f32 lanes, `st.1`:
/// Σ dmin·m·Σq8 of the sub-blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn step_q5_k(st: &mut (__m256, f32), x: &BlockQ5_K, y: &BlockQ8_K) {
    let low = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    // SAFETY: qh is 32 bytes.
    let qh = unsafe { _mm256_loadu_si256(x.qh.as_ptr().cast()) };
    let mut sum = _mm256_setzero_si256();
    let mut summs = 0i32;
    for c in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * c, &x.scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, &x.scales);
        // SAFETY: in bounds as in dot_q4_k.
        let (q, y1, y2) = unsafe {
            (
                _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast()),
                _mm256_loadu_si256(y.qs.as_ptr().add(64 * c).cast()),
                _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32).cast()),
            )
        };
        // Bit s of each qh byte → bit 4 of the value (16-bit shifts are safe here:
        // only bit 0 of each byte survives the mask before moving up).
        let h1 = _mm256_slli_epi16(
            _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32)), one),
            4,
        );
        let h2 = _mm256_slli_epi16(
            _mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32 + 1)),
                one,
            ),
            4,
        );
        let lo = _mm256_or_si256(_mm256_and_si256(q, low), h1);
        let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), h2);
        // q < 32 unsigned: 2·31·128 < 2^15, no saturation.
        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y1), _mm256_set1_epi16(sc1 as i16));
        let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y2), _mm256_set1_epi16(sc2 as i16));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(p1, p2));
        summs += m1 as i32 * (y.bsums[4 * c] as i32 + y.bsums[4 * c + 1] as i32);
        summs += m2 as i32 * (y.bsums[4 * c + 2] as i32 + y.bsums[4 * c + 3] as i32);
    }
    let d = fp16(x.d) * y.d;
    st.0 = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), st.0);
    st.1 += fp16(x.dmin) * y.d * summs as f32;
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q2_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = 0.0f32;
    let three = _mm256_set1_epi8(3);
    for (x, y) in w.iter().zip(a) {
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: 32 bytes at qs[32h..], in bounds.
            let q2 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * half).cast()) };
            for k in 0..4 {
                // SAFETY: 32 bytes at y.qs[128h + 32k..], in bounds.
                let q8 =
                    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(128 * half + 32 * k).cast()) };
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * k as i32)), three);
                let is = 8 * half + 2 * k;
                let scales = _mm256_set_m128i(
                    _mm_set1_epi16((x.scales[is + 1] & 0x0F) as i16),
                    _mm_set1_epi16((x.scales[is] & 0x0F) as i16),
                );
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(q, q8), scales));
            }
        }
        let summs: i32 = (0..16)
            .map(|j| y.bsums[j] as i32 * (x.scales[j] >> 4) as i32)
            .sum();
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(y.d * fp16(x.d)),
            _mm256_cvtepi32_ps(sum),
            acc,
        );
        acc_min += y.d * fp16(x.dmin) * summs as f32;
    }
    hsum(acc) - acc_min
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q3_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let three = _mm256_set1_epi8(3);
    let one = _mm256_set1_epi8(1);
    for (x, y) in w.iter().zip(a) {
        let scales = x.unpack_scales();
        // SAFETY: hmask is 32 bytes.
        let hm = unsafe { _mm256_loadu_si256(x.hmask.as_ptr().cast()) };
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: 32 bytes at qs[32h..], in bounds.
            let q3 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * half).cast()) };
            for k in 0..4 {
                // SAFETY: 32 bytes at y.qs[128h + 32k..], in bounds.
                let q8 =
                    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(128 * half + 32 * k).cast()) };
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(q3, _mm_cvtsi32_si128(2 * k as i32)), three);
                // 4 where the high bit (bit 4h + k of hmask) is clear.
                let bit = _mm256_and_si256(
                    _mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * half + k) as i32)),
                    one,
                );
                let sub = _mm256_slli_epi16(_mm256_xor_si256(bit, one), 2);
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(q, q8), _mm256_maddubs_epi16(sub, q8));
                let is = 8 * half + 2 * k;
                let sc = _mm256_set_m128i(
                    _mm_set1_epi16(scales[is + 1] as i16),
                    _mm_set1_epi16(scales[is] as i16),
                );
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, sc));
            }
        }
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(fp16(x.d) * y.d),
            _mm256_cvtepi32_ps(sum),
            acc,
        );
    }
    hsum(acc)
}
