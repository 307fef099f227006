//! AVX-512 one-row dot products: one weight row · one activation row, per type.
//!
//! Zen 4 runs 512-bit integer operations as two 256-bit halves, so the dots of the
//! quantized types stay on 256-bit vectors and win over AVX2 by needing fewer instructions:
//! - `vpdpbusd` (u8 × i8, four products summed into each i32 lane, plus the accumulator)
//!   replaces `maddubs` + `madd` + `add` where one scale covers a whole block;
//! - `vpdpwssd` (i16 × i16 pairs plus the accumulator) replaces `madd` + `add` where each
//!   32-element group has its own integer scale (the K-quants): `maddubs` forms the pair
//!   sums, `vpdpwssd` multiplies them by the scale and accumulates;
//! - mask registers take the weights' high bits directly (`qh` as a `__mmask32`,
//!   `vptestmb` on the K-quants' bit planes) with one masked add, instead of expanding
//!   bits to bytes with shuffles and compares;
//! - types whose stored values are offset (Q3_K: q − 4, Q6_K: q − 32) use the unsigned
//!   values and subtract `offset · Σ_j sc_j · bsums_j` once per super-block (one
//!   `vpdpwssd` on the activations' precomputed sums) instead of a second `maddubs` per
//!   32 elements.
//!
//! Integer ranges: `maddubs` of u ≤ 63 with |y| ≤ 128 gives |pair| ≤ 16128 < 2^15 (no
//! saturation); a super-block's Σ sc·q·y is at most 128·63·128·256 < 2^31.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::*;
use crate::arch::x86::common::{
    f16x8, fp16, fp16_mul, hsum, iq4nl_table, k4_scales_mins, load32, nibbles, scaled_sum,
};

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
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
pub(crate) fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
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
pub(crate) fn dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
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
pub(crate) fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
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
pub(crate) fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
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

/// The 5-bit values of a Q5 block, 0..32 in element order: bit j of `qh` is element j's
/// fifth bit, and the nibble vector is in element order, so `qh` is the byte mask itself.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q5_values(qs: &[u8; 16], qh: [u8; 4]) -> __m256i {
    let nib = nibbles(qs);
    _mm256_mask_add_epi8(nib, u32::from_le_bytes(qh), nib, _mm256_set1_epi8(16))
}

/// [`scaled_sum`] for the Q8_1 pairings: also Σ m_x · s_y (the weights' offset times the
/// activations' scaled sum), eight blocks' f16 pairs converted and multiplied together.
#[inline(always)]
fn scaled_sum_offset<W>(
    w: &[W],
    a: &[BlockQ8_1],
    parts: impl Fn(&W) -> (f16, f16),
    block_dot: impl Fn(&W, &BlockQ8_1) -> __m256i,
) -> f32 {
    let n = w.len().min(a.len());
    // SAFETY (all intrinsics below): only called from avx512 target-feature functions.
    unsafe {
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut acc_m = _mm256_setzero_ps();
        let mut d = [0f32; 8];
        let mut i = 0;
        while i + 8 <= n {
            let (wx, ay) = (&w[i..i + 8], &a[i..i + 8]);
            // Plain loops: `array::from_fn` here was left as an out-of-line call.
            let (mut hd, mut hm, mut hdy, mut hs) = (
                [f16::ZERO; 8],
                [f16::ZERO; 8],
                [f16::ZERO; 8],
                [f16::ZERO; 8],
            );
            for k in 0..8 {
                (hd[k], hm[k]) = parts(&wx[k]);
                (hdy[k], hs[k]) = (ay[k].d, ay[k].s);
            }
            let (dx, mx, dy, sy) = (f16x8(hd), f16x8(hm), f16x8(hdy), f16x8(hs));
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_mul_ps(dx, dy));
            acc_m = _mm256_fmadd_ps(mx, sy, acc_m);
            for k in (0..8).step_by(2) {
                let p0 = _mm256_cvtepi32_ps(block_dot(&wx[k], &ay[k]));
                acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k]), p0, acc0);
                let p1 = _mm256_cvtepi32_ps(block_dot(&wx[k + 1], &ay[k + 1]));
                acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k + 1]), p1, acc1);
            }
            i += 8;
        }
        let mut tail_m = 0.0f32;
        for j in i..n {
            let (dx, mx) = parts(&w[j]);
            let p = _mm256_cvtepi32_ps(block_dot(&w[j], &a[j]));
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16_mul(dx, a[j].d)), p, acc0);
            tail_m += fp16_mul(mx, a[j].s);
        }
        hsum(_mm256_add_ps(acc0, acc1)) + (hsum(acc_m) + tail_m)
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    scaled_sum_offset(
        w,
        a,
        |x| (x.d, x.m),
        // q in 0..16 is already the unsigned operand.
        |x, y| _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(&x.qs), load32(&y.qs)),
    )
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    scaled_sum_offset(
        w,
        a,
        |x| (x.d, x.m),
        |x, y| {
            let q = q5_values(&x.qs, x.qh);
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, load32(&y.qs))
        },
    )
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let sixteen = _mm256_set1_epi8(16);
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| {
            // q − 16 as int8 in one masked subtract: elements whose fifth bit is clear.
            let nib = nibbles(&x.qs);
            let clear = !u32::from_le_bytes(x.qh);
            let q = _mm256_mask_sub_epi8(nib, clear, nib, sixteen);
            dot_i8x32(q, load32(&y.qs))
        },
    )
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_iq4_nl(w: &[BlockIQ4_NL], a: &[BlockQ8_0]) -> f32 {
    let table = iq4nl_table();
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| dot_i8x32(_mm256_shuffle_epi8(table, nibbles(&x.qs)), load32(&y.qs)),
    )
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        step_q6_k(&mut acc, x, y);
    }
    hsum(acc)
}

/// Q3_K's 16 six-bit scales minus 32, natural order, as signed bytes: low nibbles from
/// bytes 0..8 (low then high nibbles), top two bits from bytes 8..12 — scale i takes bits
/// 2(i/4), 2(i/4)+1 of byte 8 + i%4, which a per-dword variable shift of that word
/// broadcast four times lines up in byte i.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q3_k_scales(s: &[u8; 12]) -> __m128i {
    let lo8 = u64::from_le_bytes(std::array::from_fn(|i| s[i]));
    let hi4 = u32::from_le_bytes(std::array::from_fn(|i| s[8 + i]));
    const M4: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    let lo = _mm_set_epi64x(((lo8 >> 4) & M4) as i64, (lo8 & M4) as i64);
    let hi = _mm_srlv_epi32(_mm_set1_epi32(hi4 as i32), _mm_setr_epi32(0, 2, 4, 6));
    let hi = _mm_and_si128(hi, _mm_set1_epi8(3));
    let v = _mm_or_si128(lo, _mm_slli_epi16(hi, 4));
    _mm_sub_epi8(v, _mm_set1_epi8(32))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q3_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    let three = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let sc = q3_k_scales(&x.scales);
        let sc16 = scales_even_odd(sc);
        // Values q − 4·!hbit = (q + 4·hbit) − 4: the unsigned q + 4·hbit, and
        // −4·Σ_j sc_j·bsums_j once per block.
        let neg4 = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(sc), _mm256_set1_epi16(-4));
        let mut sum = dpwssd256(_mm256_setzero_si256(), bsums(y), neg4);
        // SAFETY: hmask is 32 bytes.
        let hm = unsafe { _mm256_loadu_si256(x.hmask.as_ptr().cast()) };
        for half in 0..2 {
            // SAFETY: 32 bytes at qs[32h..], in bounds.
            let q3 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * half).cast()) };
            for k in 0..4 {
                let g = 4 * half + k;
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(q3, _mm_cvtsi32_si128(2 * k as i32)), three);
                let hbit = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((1u8 << g) as i8));
                let q = _mm256_mask_add_epi8(q, hbit, q, four);
                let p = _mm256_maddubs_epi16(q, q8k_group(y, g));
                sum = dpwssd256(sum, p, pick_scale(sc16, g));
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

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q2_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    let three = _mm256_set1_epi8(3);
    let low = _mm_set1_epi8(0x0F);
    let (mut acc, mut acc_min) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (x, y) in w.iter().zip(a) {
        // SAFETY: scales is 16 bytes.
        let s = unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) };
        // Low nibbles: the scales (0..16, even/odd lanes for pick_scale); high: the mins.
        let sc16 = scales_even_odd(_mm_and_si128(s, low));
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), low));
        let summs = _mm256_madd_epi16(mins, bsums(y));
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: 32 bytes at qs[32h..], in bounds.
            let q2 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * half).cast()) };
            for k in 0..4 {
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * k as i32)), three);
                let p = _mm256_maddubs_epi16(q, q8k_group(y, 4 * half + k));
                sum = dpwssd256(sum, p, pick_scale(sc16, 4 * half + k));
            }
        }
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(y.d * fp16(x.d)),
            _mm256_cvtepi32_ps(sum),
            acc,
        );
        acc_min = _mm256_fmadd_ps(
            _mm256_set1_ps(y.d * fp16(x.dmin)),
            _mm256_cvtepi32_ps(summs),
            acc_min,
        );
    }
    hsum(acc) - hsum(acc_min)
}

/// Q4_K (`HIGH` false) and Q5_K (`HIGH`: the fifth bit of element l of group g is bit g
/// of `qh[l]`) × Q8_K.
#[inline(always)]
fn dot_k4<const HIGH: bool>(
    d: f16,
    dmin: f16,
    scales: &[u8; 12],
    qs: &[u8; 128],
    qh: Option<&[u8; 32]>,
    y: &BlockQ8_K,
    st: &mut (__m256, __m256),
) {
    // SAFETY (all intrinsics): only inlined into avx512 target-feature functions; loads
    // are 32 bytes at qs[32c..] (c < 4), the 32 bytes of qh and of bsums.
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        let (sc, mn) = k4_scales_mins(scales);
        // Mins: Σ_j m_j · (bsums[2j] + bsums[2j+1]) with each min repeated for its pair.
        let mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(
            _mm_cvtsi64_si128(mn as i64),
            _mm_cvtsi64_si128(mn as i64),
        ));
        let summs = _mm256_madd_epi16(mn16, bsums(y));
        // Scale j as 16 equal i16: one byte shuffle of the 8 scales widened to words.
        let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        let scale = |j: i16| shufb256(sc16, word_index(j));
        let hm = qh.map(|h| _mm256_loadu_si256(h.as_ptr().cast()));
        let sixteen = _mm256_set1_epi8(16);
        let mut sum = _mm256_setzero_si256();
        for c in 0..4 {
            let q = _mm256_loadu_si256(qs.as_ptr().add(32 * c).cast());
            let mut lo = _mm256_and_si256(q, low);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            if HIGH {
                let hm = hm.unwrap_or(_mm256_setzero_si256());
                let b1 = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((1u8 << (2 * c)) as i8));
                let b2 = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((2u8 << (2 * c)) as i8));
                lo = _mm256_mask_add_epi8(lo, b1, lo, sixteen);
                hi = _mm256_mask_add_epi8(hi, b2, hi, sixteen);
            }
            let j = 2 * c as i16;
            let p1 = _mm256_maddubs_epi16(lo, q8k_group(y, 2 * c));
            let p2 = _mm256_maddubs_epi16(hi, q8k_group(y, 2 * c + 1));
            sum = dpwssd256(sum, p1, scale(j));
            sum = dpwssd256(sum, p2, scale(j + 1));
        }
        st.0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(d) * y.d), _mm256_cvtepi32_ps(sum), st.0);
        st.1 = _mm256_fmadd_ps(
            _mm256_set1_ps(fp16(dmin) * y.d),
            _mm256_cvtepi32_ps(summs),
            st.1,
        );
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let mut st = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (x, y) in w.iter().zip(a) {
        dot_k4::<false>(x.d, x.dmin, &x.scales, &x.qs, None, y, &mut st);
    }
    hsum(st.0) - hsum(st.1)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let mut st = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (x, y) in w.iter().zip(a) {
        dot_k4::<true>(x.d, x.dmin, &x.scales, &x.qs, Some(&x.qh), y, &mut st);
    }
    hsum(st.0) - hsum(st.1)
}

/// IQ4_XS's 8 six-bit scales minus 32 as i16, in both 128-bit lanes: the low nibbles of
/// `scales_l` and the 2-bit fields of `scales_h` spread to one byte each with shifts and
/// masks (each step moves the upper half of every field group to its own slot).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq4_xs_scales(x: &BlockIQ4_XS) -> __m256i {
    _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(iq4_xs_scale_bytes(x)))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_iq4_xs(w: &[BlockIQ4_XS], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let table = iq4nl_table();
    let low = _mm256_set1_epi8(0x0F);
    for (x, y) in w.iter().zip(a) {
        let sc16 = iq4_xs_scales(x);
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            // SAFETY: 16 bytes at qs[16ib..], in bounds.
            let t = unsafe { _mm_loadu_si128(x.qs.as_ptr().add(16 * ib).cast()) };
            let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low);
            let q = _mm256_shuffle_epi8(table, nib);
            // Sign trick: |q| ≤ 127 and |y| ≤ 127, so pairs stay below 2^15.
            let p = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(q8k_group(y, ib), q));
            let s = _mm256_shuffle_epi8(sc16, word_index(ib as i16));
            sum = _mm256_dpwssd_epi32(sum, p, s);
        }
        let d = fp16(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
    }
    hsum(acc)
}
