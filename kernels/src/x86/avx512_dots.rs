//! AVX-512 (F/BW/VL + VNNI) one-row dot products for the types whose AVX2 kernels need
//! `maddubs` + `madd` + `add` per 32 products, or byte shuffles to expand bit planes.
//! Each is checked against the scalar reference in `crate::dot` by `tests/kernels_dot.rs`
//! (every ISA the CPU has) and timed against the AVX2 kernel by `examples/dot_min.rs`.
//!
//! Zen 4 runs 512-bit integer operations as two 256-bit halves, so these stay on 256-bit
//! vectors and win by needing fewer instructions:
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

use half::f16;

use super::avx2::{f16x8, fp16, fp16_mul, hsum, rows_blockwise, scaled_sum};
use super::ROWS;
use crate::blocks::*;

/// The 32 nibbles of 16 bytes: low nibbles in bytes 0..16, high nibbles in 16..32
/// (element order for the 32-element blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; unaligned load.
    let t = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(t, 4), t),
        _mm256_set1_epi8(0x0F),
    )
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load32(p: &[i8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes, unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Signed × signed bytes into 8 i32 sums: |x| as the unsigned operand, x's sign moved onto y.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(
        _mm256_setzero_si256(),
        _mm256_abs_epi8(x),
        _mm256_sign_epi8(y, x),
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
pub(super) fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    scaled_sum_offset(
        w,
        a,
        |x| (x.d, x.m),
        // q in 0..16 is already the unsigned operand.
        |x, y| _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(&x.qs), load32(&y.qs)),
    )
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
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
pub(super) fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
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

/// IQ4_NL's 16 levels in both 128-bit lanes, for `pshufb` lookups.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq4nl_table() -> __m256i {
    // SAFETY: KVALUES_IQ4NL is 16 readable bytes.
    let t = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    _mm256_set_m128i(t, t)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_iq4_nl(w: &[BlockIQ4_NL], a: &[BlockQ8_0]) -> f32 {
    let table = iq4nl_table();
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| dot_i8x32(_mm256_shuffle_epi8(table, nibbles(&x.qs)), load32(&y.qs)),
    )
}

/// `vpdpwssd` (acc + pairwise i16 products summed into i32 lanes) as one instruction.
/// Without a CPU-specific tuning LLVM splits a chained `_mm256/512_dpwssd_epi32` into
/// `vpmaddwd` + `vpaddd`: one more operation per 16 pairs, where Zen 4 runs the fused
/// form at `vpmaddwd`'s rate (`--example dot_min`: Q4_K rows 28.8 → 30.1 GB/s).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpwssd512(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut acc = acc;
    // SAFETY: a register-only avx512vnni instruction; this function's target features
    // (checked by the dispatcher before any caller is handed out) include it.
    unsafe {
        std::arch::asm!(
            "vpdpwssd {acc}, {a}, {b}",
            acc = inout(zmm_reg) acc,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// [`dpwssd512`] on 256-bit vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpwssd256(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let mut acc = acc;
    // SAFETY: as `dpwssd512` (avx512vnni + avx512vl for the 256-bit form).
    unsafe {
        std::arch::asm!(
            "vpdpwssd {acc}, {a}, {b}",
            acc = inout(ymm_reg) acc,
            a = in(ymm_reg) a,
            b = in(ymm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `vpshufb` as one instruction: LLVM rewrites a byte shuffle that repeats one word per
/// 128-bit lane (the scale picks below) as `vpshuflw`/`vpshufhw` + `vpshufd`, two
/// shuffles where one does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn shufb256(v: __m256i, idx: __m256i) -> __m256i {
    let out: __m256i;
    // SAFETY: a register-only avx2 instruction, within this function's target features.
    unsafe {
        std::arch::asm!(
            "vpshufb {out}, {v}, {idx}",
            out = lateout(ymm_reg) out,
            v = in(ymm_reg) v,
            idx = in(ymm_reg) idx,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// Byte indices that repeat i16 word `k` over each 128-bit lane (for `vpshufb`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn word_index(k: i16) -> __m256i {
    _mm256_set1_epi16((2 * k) | ((2 * k + 1) << 8))
}

/// Word `k` of each 128-bit lane of `sc16`, spread over that lane: with the scales of
/// sub-blocks 2k and 2k+1 in the low and high lane (see [`scales_even_odd`]) this is the
/// i16 scale vector of the k-th 32-element group of a super-block of 16-element sub-blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pick_scale(sc16: __m256i, k: usize) -> __m256i {
    shufb256(sc16, word_index(k as i16))
}

/// 16 signed byte scales (natural order) as i16 with the even sub-blocks' in the low
/// 128-bit lane and the odd ones' in the high lane, for [`pick_scale`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn scales_even_odd(sc: __m128i) -> __m256i {
    let even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, even_odd))
}

/// Loads a Q8_K's 32 activations of group `g` (`qs[32g..32g+32]`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8k_group(y: &BlockQ8_K, g: usize) -> __m256i {
    assert!(g < 8);
    // SAFETY: 32g + 32 ≤ 256 bytes of qs; unaligned load.
    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(32 * g).cast()) }
}

/// The activations' 16 sub-block sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn bsums(y: &BlockQ8_K) -> __m256i {
    // SAFETY: bsums is 16 i16 = 32 readable bytes.
    unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) }
}

/// One Q6_K super-block × Q8_K into `acc` (8 f32 lanes): the body of [`dot_q6_k`] and
/// [`rows_q6_k`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn step_q6_k(acc: &mut __m256, x: &BlockQ6_K, y: &BlockQ8_K) {
    let low = _mm256_set1_epi8(0x0F);
    let bits45 = _mm256_set1_epi8(0x30);
    // SAFETY: scales is 16 bytes.
    let sc = unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) };
    let sc16 = scales_even_odd(sc);
    // Σ sc·(q − 32)·y = Σ sc·q·y − 32·Σ_j sc_j·bsums_j: start from the second term
    // (|32·sc| ≤ 4096 fits i16).
    let neg32 = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(sc), _mm256_set1_epi16(-32));
    // This step keeps the intrinsics that LLVM may split or rewrite (see `dpwssd256`):
    // with the one-instruction forms `rows_blockwise` no longer unrolls its four rows
    // and the 4-row kernel measured 32.1 → 29.2 GB/s (`--example dot_min`).
    let mut sum = _mm256_dpwssd_epi32(_mm256_setzero_si256(), bsums(y), neg32);
    for half in 0..2 {
        // SAFETY: ql[64h..64h+64] and qh[32h..32h+32] are in bounds.
        let (ql0, ql1, qh) = unsafe {
            (
                _mm256_loadu_si256(x.ql.as_ptr().add(64 * half).cast()),
                _mm256_loadu_si256(x.ql.as_ptr().add(64 * half + 32).cast()),
                _mm256_loadu_si256(x.qh.as_ptr().add(32 * half).cast()),
            )
        };
        // The four 32-element groups as unsigned 0..64: a nibble of ql, and bits
        // 2k, 2k+1 of qh moved to bits 4, 5 (16-bit shifts: the mask drops what
        // crosses from the neighbouring byte). Ternary logic 0xE4 = (C & A) | (!C & B)
        // with C = 0x0F: low nibble from A, the rest from B.
        let h = [
            _mm256_slli_epi16(qh, 4),
            _mm256_slli_epi16(qh, 2),
            qh,
            _mm256_srli_epi16(qh, 2),
        ];
        let l = [
            ql0,
            ql1,
            _mm256_srli_epi16(ql0, 4),
            _mm256_srli_epi16(ql1, 4),
        ];
        for k in 0..4 {
            let hk = _mm256_and_si256(h[k], bits45);
            let q = _mm256_ternarylogic_epi32::<0xE4>(l[k], hk, low);
            let p = _mm256_maddubs_epi16(q, q8k_group(y, 4 * half + k));
            let s = _mm256_shuffle_epi8(sc16, word_index((4 * half + k) as i16));
            sum = _mm256_dpwssd_epi32(sum, p, s);
        }
    }
    let d = fp16(x.d) * y.d;
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), *acc);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        step_q6_k(&mut acc, x, y);
    }
    hsum(acc)
}

/// [`ROWS`] Q6_K rows through [`rows_blockwise`] with [`step_q6_k`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn rows_q6_k(rows: [&[BlockQ6_K]; ROWS], a: &[BlockQ8_K]) -> [f32; ROWS] {
    rows_blockwise(
        rows,
        a,
        _mm256_setzero_ps(),
        |acc, x, y| step_q6_k(acc, x, y),
        |v| hsum(v),
    )
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
pub(super) fn dot_q3_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
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
pub(super) fn dot_q2_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
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

/// The 8 six-bit scales and 8 mins of a Q4_K / Q5_K block (the layout of `scale_min_k4`)
/// as bytes of two u64, with word operations (as the AVX2 Q4_K kernel): scales j < 4 are
/// the low 6 bits of bytes 0..4; j ≥ 4 take their low nibble from bytes 8..12 and their
/// top 2 bits from the tops of bytes 0..4; the mins likewise from bytes 4..8 and the high
/// nibbles of 8..12.
#[inline(always)]
fn k4_scales_mins(s: &[u8; 12]) -> (u64, u64) {
    let word = |k: usize| u32::from_le_bytes(std::array::from_fn(|i| s[4 * k + i]));
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const M6: u32 = 0x3f3f_3f3f;
    const M4: u32 = 0x0f0f_0f0f;
    const M2: u32 = 0x0303_0303;
    let sc = (w0 & M6) as u64 | (((w2 & M4) | (((w0 >> 6) & M2) << 4)) as u64) << 32;
    let mn = (w1 & M6) as u64 | ((((w2 >> 4) & M4) | (((w1 >> 6) & M2) << 4)) as u64) << 32;
    (sc, mn)
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
pub(super) fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let mut st = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (x, y) in w.iter().zip(a) {
        dot_k4::<false>(x.d, x.dmin, &x.scales, &x.qs, None, y, &mut st);
    }
    hsum(st.0) - hsum(st.1)
}

/// [`ROWS`] Q4_K or Q5_K rows × one Q8_K row on 512-bit vectors, with the activation side
/// prepared once per activation row for all rows of the matrix ([`prep_k4`]):
/// - 64 bytes of `qs` hold chunks c, c+1; their low nibbles are groups 2c | 2c+2 (one
///   per 256-bit half) and their high nibbles 2c+1 | 2c+3, so the activations are
///   rearranged once into the matching pairs of groups, and each row
///   needs two loads, three operations per 64 bytes to split nibbles, and per 64
///   elements one `vpmaddubsw` + one `vpdpwssd` with that half's scale;
/// - the scale vectors come from the 8 scales widened to i16 in every 128-bit lane, one
///   in-lane byte shuffle each (word 2c in the low half, 2c+2 in the high);
/// - the mins term Σ_j m_j·(bsums[2j] + bsums[2j+1]) uses the activation's pair sums,
///   as i16 (|pair| ≤ 2·16·128 < 2^15), with one `vpmaddwd` per row;
/// - Q5_K's fifth bits: the 32 bytes of `qh` in both halves, one `vptestmb` against the
///   half's group bit and one masked add of 16 per vector (values ≤ 31, so
///   |pair| ≤ 2·31·128 < 2^15).
///
/// Each row's arithmetic is the same whichever rows share the call. Each step
/// prefetches its share of the bytes after the last row, as [`rows_blockwise`]. In L1,
/// one core (`dot_min`): Q4_K 32.0 GB/s, Q5_K 27.2 (29.8 and 26.5 when the activations
/// were prepared in every call).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_k4<B: K4Block>(rows: [&[B]; ROWS], a: &[BlockQ8_K], prep: &[u8]) -> [f32; ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    assert!(
        prep.len() >= prep_k4_bytes(n),
        "prepared Q8_K activations: {} bytes for {n} super-blocks",
        prep.len()
    );
    let low = _mm512_set1_epi8(0x0F);
    // In-lane byte indices picking i16 word `lo` in 128-bit lanes 0-1 and `hi` in 2-3.
    let pick = |lo: i8, hi: i8| {
        let bytes: [i8; 64] =
            std::array::from_fn(|i| 2 * if i < 32 { lo } else { hi } + (i % 2) as i8);
        // SAFETY: 64 readable bytes.
        unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
    };
    let picks = [pick(0, 2), pick(1, 3), pick(4, 6), pick(5, 7)];
    // Q5_K's qh bit of each vector's two groups (g | g + 2), one per 256-bit half.
    let bit = |lo: u8, hi: u8| {
        _mm512_inserti64x4::<1>(
            _mm512_set1_epi8((1u8 << lo) as i8),
            _mm256_set1_epi8((1u8 << hi) as i8),
        )
    };
    let bits = [bit(0, 2), bit(1, 3), bit(4, 6), bit(5, 7)];
    let sixteen = _mm512_set1_epi8(16);
    // f32 lane 2r + 1 (row r's dmin·d_y) spread over 128-bit lane r.
    let min_idx = _mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7);
    let mut acc = [_mm512_setzero_ps(); ROWS];
    // Row r's mins term in 128-bit lane r.
    let mut acc_min = _mm512_setzero_ps();
    let ahead = rows[ROWS - 1].as_ptr().wrapping_add(n).cast::<i8>();
    let step_bytes = ROWS * std::mem::size_of::<B>();
    for b in 0..n {
        let pf = ahead.wrapping_add(b * step_bytes);
        for l in (0..step_bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(l));
        }
        // SAFETY: b < n ≤ every row's length, and `prep` holds ≥ n super-blocks' 320
        // bytes (checked above).
        let (ys, pairs, x, dy) = unsafe {
            let pp = prep.as_ptr().add(b * PREP_K4_BLOCK);
            let ld = |o: usize| _mm512_loadu_si512(pp.add(o).cast());
            let ys = [ld(0), ld(64), ld(128), ld(192)];
            let pairs = _mm_loadu_si128(pp.add(256).cast());
            let dy = f32::from_ne_bytes(*pp.add(272).cast::<[u8; 4]>());
            let x: [&B; ROWS] = [
                rows[0].get_unchecked(b),
                rows[1].get_unchecked(b),
                rows[2].get_unchecked(b),
                rows[3].get_unchecked(b),
            ];
            (ys, pairs, x, dy)
        };
        // The four rows' d and dmin (f16 pairs at the start of each block), converted
        // together: lane 2r = d_r·d_y, lane 2r + 1 = dmin_r·d_y.
        let dm =
            |r: usize| (x[r].d().to_bits() as u32 | (x[r].dmin().to_bits() as u32) << 16) as i32;
        let dmf = _mm512_castps256_ps512(_mm256_mul_ps(
            _mm256_cvtph_ps(_mm_setr_epi32(dm(0), dm(1), dm(2), dm(3))),
            _mm256_set1_ps(dy),
        ));
        // (Written out: `array::from_fn` here is not inlined into the loop.)
        let sm: [(u64, u64); ROWS] = [
            k4_scales_mins(x[0].scales()),
            k4_scales_mins(x[1].scales()),
            k4_scales_mins(x[2].scales()),
            k4_scales_mins(x[3].scales()),
        ];
        // Mins of all rows at once: row r's 8 mins widened in 128-bit lane r, times the
        // activation pair sums, 4 i32 per row.
        let mins = _mm512_cvtepu8_epi16(_mm256_setr_epi64x(
            sm[0].1 as i64,
            sm[1].1 as i64,
            sm[2].1 as i64,
            sm[3].1 as i64,
        ));
        let summs = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(pairs));
        acc_min = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(summs),
            _mm512_permutexvar_ps(min_idx, dmf),
            acc_min,
        );
        for r in 0..ROWS {
            let sc16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sm[r].0 as i64)));
            // SAFETY: qs is 128 bytes.
            let (q0, q1) = unsafe {
                (
                    _mm512_loadu_si512(x[r].qs().as_ptr().cast()),
                    _mm512_loadu_si512(x[r].qs().as_ptr().add(64).cast()),
                )
            };
            let mut nib = [
                _mm512_and_si512(q0, low),
                _mm512_and_si512(_mm512_srli_epi16::<4>(q0), low),
                _mm512_and_si512(q1, low),
                _mm512_and_si512(_mm512_srli_epi16::<4>(q1), low),
            ];
            if let Some(qh) = x[r].qh() {
                // Q5_K: the fifth bit of element l of group g is bit g of qh[l]; the
                // 32 bytes of qh in both halves, tested per half for that half's group.
                // SAFETY: qh is 32 bytes.
                let qh = _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(qh.as_ptr().cast()) });
                for k in 0..4 {
                    let m = _mm512_test_epi8_mask(qh, bits[k]);
                    nib[k] = _mm512_mask_add_epi8(nib[k], m, nib[k], sixteen);
                }
            }
            let mut sum = _mm512_setzero_si512();
            for k in 0..4 {
                let p = _mm512_maddubs_epi16(nib[k], ys[k]);
                sum = dpwssd512(sum, p, _mm512_shuffle_epi8(sc16, picks[k]));
            }
            let d = _mm512_permutexvar_ps(_mm512_set1_epi32(2 * r as i32), dmf);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc[r]);
        }
    }
    let mut m = [0f32; 16];
    // SAFETY: 64 writable bytes.
    unsafe { _mm512_storeu_ps(m.as_mut_ptr(), acc_min) };
    std::array::from_fn(|r| {
        let mins = (m[4 * r] + m[4 * r + 1]) + (m[4 * r + 2] + m[4 * r + 3]);
        _mm512_reduce_add_ps(acc[r]) - mins
    })
}

/// The parts of a Q4_K / Q5_K super-block that [`rows_k4`] reads.
trait K4Block {
    fn d(&self) -> f16;
    fn dmin(&self) -> f16;
    fn scales(&self) -> &[u8; 12];
    fn qs(&self) -> &[u8; 128];
    /// Q5_K's fifth bits (bit g of `qh[l]` for element l of group g).
    fn qh(&self) -> Option<&[u8; 32]>;
}

impl K4Block for BlockQ4_K {
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
    #[inline(always)]
    fn dmin(&self) -> f16 {
        self.dmin
    }
    #[inline(always)]
    fn scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        None
    }
}

impl K4Block for BlockQ5_K {
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
    #[inline(always)]
    fn dmin(&self) -> f16 {
        self.dmin
    }
    #[inline(always)]
    fn scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        Some(&self.qh)
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn rows_q4_k(rows: [&[BlockQ4_K]; ROWS], a: &[BlockQ8_K], prep: &[u8]) -> [f32; ROWS] {
    rows_k4(rows, a, prep)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn rows_q5_k(rows: [&[BlockQ5_K]; ROWS], a: &[BlockQ8_K], prep: &[u8]) -> [f32; ROWS] {
    rows_k4(rows, a, prep)
}

/// The first 256 bytes of a prepared Q8_K layout: the super-block's values as four 64-byte
/// vectors, byte m of vector k being `qs[index(k, m)]`.
#[inline]
fn rearrange_q8_k(qs: &[i8; 256], out: &mut [u8], index: impl Fn(usize, usize) -> usize) {
    for (k, v) in out[..256].chunks_exact_mut(64).enumerate() {
        for (m, b) in v.iter_mut().enumerate() {
            *b = qs[index(k, m)] as u8;
        }
    }
}

/// Bytes of [`rows_k4`]'s activation layout per super-block.
const PREP_K4_BLOCK: usize = 320;

/// Bytes of [`rows_k4`]'s layout for an activation row of `n` super-blocks.
pub(super) fn prep_k4_bytes(n: usize) -> usize {
    n * PREP_K4_BLOCK
}

/// Writes [`rows_k4`]'s layout: per Q8_K super-block, 320 bytes: the 256 values as the
/// four 64-byte vectors that meet a row's nibbles (vector 2h + o: values
/// 128h + 32o .. + 32, then 128h + 64 + 32o .. + 32), the 8 pair sums
/// bsums[2j] + bsums[2j + 1] as i16 (|·| ≤ 2·16·128 < 2^15), d as f32, zeros.
pub(super) fn prep_k4(a: &[BlockQ8_K], out: &mut [u8]) {
    debug_assert!(out.len() >= prep_k4_bytes(a.len()));
    for (y, o) in a.iter().zip(out.chunks_exact_mut(PREP_K4_BLOCK)) {
        rearrange_q8_k(&y.qs, o, |k, m| {
            128 * (k / 2) + 32 * (k % 2) + m % 32 + 64 * (m / 32)
        });
        for j in 0..8 {
            let pair = y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32;
            let pair = pair.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            o[256 + 2 * j..258 + 2 * j].copy_from_slice(&pair.to_ne_bytes());
        }
        o[272..276].copy_from_slice(&y.d.to_ne_bytes());
        o[276..].fill(0);
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
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

/// IQ4_XS's 8 six-bit scales minus 32 as i8 in the low 8 bytes: the low nibbles of
/// `scales_l` and the 2-bit fields of `scales_h` spread to one byte each with shifts and
/// masks (each step moves the upper half of every field group to its own slot).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq4_xs_scale_bytes(x: &BlockIQ4_XS) -> __m128i {
    let mut lo = u32::from_le_bytes(x.scales_l) as u64;
    lo = (lo | (lo << 16)) & 0x0000_FFFF_0000_FFFF;
    lo = (lo | (lo << 8)) & 0x00FF_00FF_00FF_00FF;
    lo = (lo | (lo << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    let mut hi = x.scales_h as u64;
    hi = (hi | (hi << 24)) & 0x0000_00FF_0000_00FF;
    hi = (hi | (hi << 12)) & 0x000F_000F_000F_000F;
    hi = (hi | (hi << 6)) & 0x0303_0303_0303_0303;
    _mm_sub_epi8(
        _mm_cvtsi64_si128((lo | (hi << 4)) as i64),
        _mm_set1_epi8(32),
    )
}

/// IQ4_XS × Q8_K for [`ROWS`] rows on 512-bit vectors. One 64-byte load of a row's
/// nibbles holds four 32-element sub-blocks, one per 128-bit lane (low nibbles: the
/// first 16 elements, high: the last 16), so the activations are rearranged once per
/// activation row for all the rows of the matrix into the matching lane order
/// ([`prep_iq4_xs`]). The 4-bit
/// indices look up IQ4_NL's levels plus 128 (`vpshufb`, unsigned 1..=241) and go
/// straight into `vpdpbusd` against the signed activations; each i32 element starts from
/// −128·Σy of its 8 activations (prepared with them), so it
/// ends at Σ level·y (|·| ≤ 8·127·128 < 2^17, exact in f32). Each element is then
/// converted and multiplied by its sub-block's scale · d · d_y (the row's 8 scales
/// converted together, spread over the lanes with `vpermps`).
///
/// In L1, one core (`--example dot_min -- IQ4_XS`): 33.0 GB/s (31.4 with the activations
/// prepared in every call), where the one-row kernel
/// (`vpsignb`/`vpabsb`/`vpmaddubsw` and a scale pick per 32 elements) runs at 15.8; the
/// scale applied in integers instead (`vpmulld` per vector, one conversion per
/// super-block) ran at 22.9. Each row's arithmetic is the same whichever rows share the
/// call.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn rows_iq4_xs(
    rows: [&[BlockIQ4_XS]; ROWS],
    a: &[BlockQ8_K],
    prep: &[u8],
) -> [f32; ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    assert!(
        prep.len() >= prep_iq4_xs_bytes(n),
        "prepared Q8_K activations: {} bytes for {n} super-blocks",
        prep.len()
    );
    let low = _mm512_set1_epi8(0x0F);
    // SAFETY: KVALUES_IQ4NL is 16 readable bytes.
    let levels = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    let table = _mm512_broadcast_i32x4(_mm_xor_si128(levels, _mm_set1_epi8(-128)));
    // Scale k of the 8 (as i32) over 128-bit lane k % 4 of vector k / 4.
    let sc_idx = [
        _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
    ];
    let mut acc = [_mm512_setzero_ps(); ROWS];
    let ahead = rows[ROWS - 1].as_ptr().wrapping_add(n).cast::<i8>();
    let step_bytes = ROWS * std::mem::size_of::<BlockIQ4_XS>();
    for b in 0..n {
        let pf = ahead.wrapping_add(b * step_bytes);
        for l in (0..step_bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(l));
        }
        // SAFETY: b < n ≤ every row's length, and `prep` holds ≥ n super-blocks' 448
        // bytes (checked above).
        let (ys, c, x, dy) = unsafe {
            let pp = prep.as_ptr().add(b * PREP_IQ4_XS_BLOCK);
            let ld = |o: usize| _mm512_loadu_si512(pp.add(o).cast());
            let ys = [ld(0), ld(64), ld(128), ld(192)];
            let c = [ld(256), ld(320)];
            let dy = f32::from_ne_bytes(*pp.add(384).cast::<[u8; 4]>());
            let x: [&BlockIQ4_XS; ROWS] = [
                rows[0].get_unchecked(b),
                rows[1].get_unchecked(b),
                rows[2].get_unchecked(b),
                rows[3].get_unchecked(b),
            ];
            (ys, c, x, dy)
        };
        let mut dd = [0f32; 4];
        let d16 = _mm_setr_epi16(
            x[0].d.to_bits() as i16,
            x[1].d.to_bits() as i16,
            x[2].d.to_bits() as i16,
            x[3].d.to_bits() as i16,
            0,
            0,
            0,
            0,
        );
        // SAFETY: 16 writable bytes.
        unsafe {
            _mm_storeu_ps(
                dd.as_mut_ptr(),
                _mm_mul_ps(_mm_cvtph_ps(d16), _mm_set1_ps(dy)),
            )
        };
        for r in 0..ROWS {
            let sc = _mm512_castps256_ps512(_mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(iq4_xs_scale_bytes(x[r]))),
                _mm256_set1_ps(dd[r]),
            ));
            // SAFETY: qs is 128 bytes.
            let q = unsafe {
                [
                    _mm512_loadu_si512(x[r].qs.as_ptr().cast()),
                    _mm512_loadu_si512(x[r].qs.as_ptr().add(64).cast()),
                ]
            };
            for h in 0..2 {
                let lo = _mm512_shuffle_epi8(table, _mm512_and_si512(q[h], low));
                let hi =
                    _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16::<4>(q[h]), low));
                let s = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(c[h], lo, ys[2 * h]),
                    hi,
                    ys[2 * h + 1],
                );
                let scale = _mm512_permutexvar_ps(sc_idx[h], sc);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r]);
            }
        }
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
}

/// Bytes of [`rows_iq4_xs`]'s activation layout per super-block.
const PREP_IQ4_XS_BLOCK: usize = 448;

/// Bytes of [`rows_iq4_xs`]'s layout for an activation row of `n` super-blocks.
pub(super) fn prep_iq4_xs_bytes(n: usize) -> usize {
    n * PREP_IQ4_XS_BLOCK
}

/// Writes [`rows_iq4_xs`]'s layout: per Q8_K super-block, 448 bytes: the 256 values as
/// the four 64-byte vectors that meet a row's nibbles (vector 2h + s holds, in 128-bit
/// lane j, values 128h + 32j + 16s .. + 16), then for each half h the 16 i32 −128·Σ of
/// the 8 values that meet each i32 element of vectors 2h and 2h + 1, d as f32, zeros.
pub(super) fn prep_iq4_xs(a: &[BlockQ8_K], out: &mut [u8]) {
    debug_assert!(out.len() >= prep_iq4_xs_bytes(a.len()));
    for (y, o) in a.iter().zip(out.chunks_exact_mut(PREP_IQ4_XS_BLOCK)) {
        rearrange_q8_k(&y.qs, o, |k, m| {
            128 * (k / 2) + 16 * (k % 2) + 32 * (m / 16) + m % 16
        });
        for h in 0..2 {
            for l in 0..16 {
                let at = |k: usize| 64 * (2 * h + k) + 4 * l;
                let s: i32 = (0..2)
                    .flat_map(|k| o[at(k)..at(k) + 4].iter())
                    .map(|&b| b as i8 as i32)
                    .sum();
                let c = 256 + 64 * h + 4 * l;
                o[c..c + 4].copy_from_slice(&(-128 * s).to_ne_bytes());
            }
        }
        o[384..388].copy_from_slice(&y.d.to_ne_bytes());
        o[388..].fill(0);
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_iq4_xs(w: &[BlockIQ4_XS], a: &[BlockQ8_K]) -> f32 {
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
