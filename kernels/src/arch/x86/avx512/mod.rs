//! AVX-512 (F/BW/VL + VNNI, and BF16 where present) kernels, by role: [`dot`] one weight
//! row · one activation row, [`gemv`] several weight rows · one activation row ([`gemv_iq`] for the IQ1–IQ3 grids), [`gemm`]
//! the tile micro-kernels for batches, [`attend`] attention over an f16 KV cache, [`ops`]
//! SwiGLU. This file holds the helpers more than one of them uses. Each kernel is checked
//! against the scalar reference ([`crate::reference`]) by `kernels/tests/`.
//!
//! Int8 dot products use VNNI's `vpdpbusd` (unsigned × signed bytes, 4 products summed
//! into each int32 lane): |x| as the unsigned side with x's sign moved onto y.

use std::arch::x86_64::*;

use crate::arch::x86::common::fp16;
use crate::format::blocks::*;

pub(crate) mod attend;
pub(crate) mod dot;
pub(crate) mod gemm;
pub(crate) mod gemv;
pub(crate) mod gemv_iq;
pub(crate) mod ops;

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

/// `vpdpwssd` (acc + pairwise i16 products summed into i32 lanes) as one instruction.
/// Without a CPU-specific tuning LLVM splits a chained `_mm256/512_dpwssd_epi32` into
/// `vpmaddwd` + `vpaddd`: one more operation per 16 pairs, where Zen 4 runs the fused
/// form at `vpmaddwd`'s rate (`--example dot_min`: Q4_K rows 28.8 → 30.1 GB/s).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpwssd512(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut acc = acc;
    // SAFETY: a register-only avx512vnni instruction; this function's target features
    // (checked by `crate::select` before any caller is handed out) include it.
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

/// One Q6_K super-block × Q8_K into `acc` (8 f32 lanes): the body of [`dot_q6_k`](dot::dot_q6_k) and
/// [`rows_q6_k`](gemv::rows_q6_k).
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
