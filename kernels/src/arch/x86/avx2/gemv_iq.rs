//! AVX2 kernels for the IQ1–IQ3 types against Q8_K activations: `R` weight rows · one
//! activation row, one 32-weight sub-block per step (as `avx512/gemv_iq.rs`, whose doc has
//! the scheme), used with one row: the dot products.
//!
//! Per step and row: the grid magnitudes come from one gather (`vpgatherdd`, 8 × 4 bytes,
//! IQ3; `vpgatherdq`, 4 × 8 bytes, IQ2 and IQ1); the 32 sign bits become a byte mask
//! (ggml's shuffle–and–compare) that negates the activations (`(y ^ m) − m`, exact for the
//! Q8_K range [−127, 127]); `vpmaddubsw` multiplies magnitudes (≤ 43) by activations into
//! 16 pair sums (≤ 2·43·128, no saturation) and `vpmaddwd` with the step's scales as i16
//! widens them to 8 i32 lanes already scaled. IQ1's values `8·g + δ` become unsigned
//! `8·g + δ + 9` (one `vpshufb`, one add) and `9 · Σ scale · Σ y` is taken off per block.

use std::arch::x86_64::*;

use crate::arch::x86::common::{fp16, hsum};
use crate::format::blocks::*;
use crate::format::iq_grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
};

/// 0xFF in byte `i` where bit `i` of `bits` is set (ggml's sign expansion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sign_mask(bits: u32) -> __m256i {
    // Byte i takes byte i / 8 of `bits`, then keeps its bit i % 8.
    let spread = _mm256_setr_epi64x(
        0,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let b = _mm256_and_si256(
        _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread),
        bit,
    );
    _mm256_cmpeq_epi8(b, bit)
}

/// One step: Σ over 32 weights of `g · y` (y negated where `neg` is set), the 16 pair sums
/// times `sc` (i16 per pair) added as 8 i32 lanes to `sum`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step32(sum: __m256i, g: __m256i, neg: u32, y: __m256i, sc: __m256i) -> __m256i {
    let m = sign_mask(neg);
    let ys = _mm256_sub_epi8(_mm256_xor_si256(y, m), m);
    _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(g, ys), sc))
}

/// The 32 bits of four 7-bit sign fields (bits 0, 7, 14, 21 of `w`), each completed by
/// parity through ggml's `ksigns_iq2xs`.
#[inline(always)]
fn ksigns4(w: u32) -> u32 {
    (0..4).fold(0, |m, l| {
        m | (KSIGNS_IQ2XS[(w >> (7 * l) & 0x7F) as usize] as u32) << (8 * l)
    })
}

/// Scales per 16 weights: `a` for the first 16 of the step, `b` for the second.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales_2x16(a: i32, b: i32) -> __m256i {
    _mm256_setr_m128i(_mm_set1_epi16(a as i16), _mm_set1_epi16(b as i16))
}

/// The driver: per block the row's `block(x, y)` = (8 i32 lanes of the block's integer
/// sum, `d_x · type factor`); `d_y · factor · sum` accumulates in f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_iq<B, const R: usize>(
    rows: [&[B]; R],
    a: &[BlockQ8_K],
    block: impl Fn(&B, &BlockQ8_K) -> (__m256i, f32),
) -> [f32; R] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..n {
        if b + 4 < n {
            for r in &rows {
                let p = r.as_ptr().wrapping_add(b + 4).cast::<i8>();
                for l in (0..std::mem::size_of::<B>()).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(l));
                }
            }
        }
        // SAFETY: b < n ≤ a.len().
        let y = unsafe { a.get_unchecked(b) };
        for r in 0..R {
            // SAFETY: b < n ≤ rows[r].len().
            let x = unsafe { rows[r].get_unchecked(b) };
            let (sum, f) = block(x, y);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(f * y.d), _mm256_cvtepi32_ps(sum), acc[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]))
}

/// The 32 activations of sub-block `ib`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8k32(y: &BlockQ8_K, ib: usize) -> __m256i {
    // SAFETY: 32 bytes at qs[32ib..], ib < 8, in bounds of the 256.
    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib).cast()) }
}

/// Declares the one-row dot `$dot` of `$B` from the generic `$generic::<R>`. (Four rows
/// at once, `$generic::<4>`, ran ~10 % slower per row than four dots here (`dot_min`,
/// 2026-12-06: sixteen ymm registers are too few for four rows' accumulators beside the
/// constants), so matrix × vector takes one dot per row on AVX2.)
macro_rules! entry_points {
    ($B:ty, $generic:ident, $dot:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) fn $dot(w: &[$B], a: &[BlockQ8_K]) -> f32 {
            $generic::<1>([w], a)[0]
        }
    };
}

entry_points!(BlockIQ3_S, iq3_s, dot_iq3_s);
entry_points!(BlockIQ3_XXS, iq3_xxs, dot_iq3_xxs);
entry_points!(BlockIQ2_S, iq2_s, dot_iq2_s);
entry_points!(BlockIQ2_XS, iq2_xs, dot_iq2_xs);
entry_points!(BlockIQ2_XXS, iq2_xxs, dot_iq2_xxs);
entry_points!(BlockIQ1_S, iq1_s, dot_iq1_s);
entry_points!(BlockIQ1_M, iq1_m, dot_iq1_m);

/// IQ3_S: 9-bit indices (a `qs` byte, bit 8 from `qh`), sign bytes, `d · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_s<const R: usize>(rows: [&[BlockIQ3_S]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let grid = IQ3S_GRID.as_ptr().cast::<i32>();
    // Lane j: bit j of qh[ib], moved to bit 8.
    let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let to8 = _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1);
    rows_iq(rows, a, |x, y| {
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            let lo = _mm256_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(
                x.qs[8 * ib..8 * ib + 8].try_into().unwrap(),
            )));
            let h = _mm256_and_si256(_mm256_set1_epi32(x.qh[ib] as i32), bit);
            let idx = _mm256_or_si256(lo, _mm256_sllv_epi32(h, to8));
            // SAFETY: every index is < 512, the grid's length; 4-byte entries.
            let g = unsafe { _mm256_i32gather_epi32::<4>(grid, idx) };
            let neg = u32::from_le_bytes(x.signs[4 * ib..4 * ib + 4].try_into().unwrap());
            let sc = 2 * ((x.scales[ib / 2] >> (4 * (ib % 2))) & 0xF) as i16 + 1;
            sum = step32(sum, g, neg, q8k32(y, ib), _mm256_set1_epi16(sc));
        }
        (sum, fp16(x.d))
    })
}

/// IQ3_XXS: 8-bit indices, scale-and-sign words: `(d / 4) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_xxs<const R: usize>(rows: [&[BlockIQ3_XXS]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let grid = IQ3XXS_GRID.as_ptr().cast::<i32>();
    rows_iq(rows, a, |x, y| {
        let (idx, aux) = x.qs.split_at(64);
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            let lo = _mm256_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(
                idx[8 * ib..8 * ib + 8].try_into().unwrap(),
            )));
            // SAFETY: indices are bytes (< 256, the grid's length); 4-byte entries.
            let g = unsafe { _mm256_i32gather_epi32::<4>(grid, lo) };
            let w = u32::from_le_bytes(aux[4 * ib..4 * ib + 4].try_into().unwrap());
            let sc = 2 * (w >> 28) as i16 + 1;
            sum = step32(sum, g, ksigns4(w), q8k32(y, ib), _mm256_set1_epi16(sc));
        }
        (sum, fp16(x.d) * 0.25)
    })
}

/// IQ2_S: 10-bit indices (a `qs` byte, 2 bits from `qh`), sign bytes, a scale per 16:
/// `(d / 8) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_s<const R: usize>(rows: [&[BlockIQ2_S]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let grid = IQ2S_GRID.as_ptr().cast::<i64>();
    let shifts = _mm_setr_epi32(8, 6, 4, 2);
    rows_iq(rows, a, |x, y| {
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            let lo = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(i32::from_le_bytes(
                x.qs[4 * ib..4 * ib + 4].try_into().unwrap(),
            )));
            // Lane j: bits 2j, 2j + 1 of qh[ib] moved to bits 8–9.
            let hi = _mm_and_si128(
                _mm_sllv_epi32(_mm_set1_epi32(x.qh[ib] as i32), shifts),
                _mm_set1_epi32(0x300),
            );
            // SAFETY: every index is < 1024, the grid's length; 8-byte entries.
            let g = unsafe { _mm256_i32gather_epi64::<8>(grid, _mm_or_si128(lo, hi)) };
            let neg = u32::from_le_bytes(x.signs[4 * ib..4 * ib + 4].try_into().unwrap());
            let b = x.scales[ib] as i32;
            let sc = scales_2x16(2 * (b & 0xF) + 1, 2 * (b >> 4) + 1);
            sum = step32(sum, g, neg, q8k32(y, ib), sc);
        }
        (sum, fp16(x.d) * 0.125)
    })
}

/// IQ2_XS: words of a 9-bit index and a 7-bit sign field, a scale per 16:
/// `(d / 8) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xs<const R: usize>(rows: [&[BlockIQ2_XS]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let grid = IQ2XS_GRID.as_ptr().cast::<i64>();
    rows_iq(rows, a, |x, y| {
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            let q = &x.qs[4 * ib..4 * ib + 4];
            let words =
                q[0] as u64 | (q[1] as u64) << 16 | (q[2] as u64) << 32 | (q[3] as u64) << 48;
            let idx = _mm_and_si128(
                _mm_cvtepu16_epi32(_mm_cvtsi64_si128(words as i64)),
                _mm_set1_epi32(511),
            );
            // SAFETY: every index is < 512, the grid's length; 8-byte entries.
            let g = unsafe { _mm256_i32gather_epi64::<8>(grid, idx) };
            let neg = (0..4).fold(0u32, |m, l| {
                m | (KSIGNS_IQ2XS[(q[l] >> 9) as usize] as u32) << (8 * l)
            });
            let b = x.scales[ib] as i32;
            let sc = scales_2x16(2 * (b & 0xF) + 1, 2 * (b >> 4) + 1);
            sum = step32(sum, g, neg, q8k32(y, ib), sc);
        }
        (sum, fp16(x.d) * 0.125)
    })
}

/// IQ2_XXS: per 32 weights four 8-bit indices and a scale-and-sign word:
/// `(d / 8) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xxs<const R: usize>(rows: [&[BlockIQ2_XXS]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let grid = IQ2XXS_GRID.as_ptr().cast::<i64>();
    rows_iq(rows, a, |x, y| {
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            let q0 = x.qs[4 * ib] as u32 | (x.qs[4 * ib + 1] as u32) << 16;
            let w = x.qs[4 * ib + 2] as u32 | (x.qs[4 * ib + 3] as u32) << 16;
            let idx = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(q0 as i32));
            // SAFETY: indices are bytes (< 256, the grid's length); 8-byte entries.
            let g = unsafe { _mm256_i32gather_epi64::<8>(grid, idx) };
            let sc = 2 * (w >> 28) as i16 + 1;
            sum = step32(sum, g, ksigns4(w), q8k32(y, ib), _mm256_set1_epi16(sc));
        }
        (sum, fp16(x.d) * 0.125)
    })
}

/// `vpshufb` table: grid value g ∈ {−1, 0, 1} (bytes 0xFF, 0, 1) → `8·(g + 1)` (0xFF has
/// bit 7 set, which `vpshufb` maps to 0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_table() -> __m256i {
    _mm256_setr_epi8(
        8, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    )
}

/// One IQ1 step: the 4 grid points at `idx` as `8·g + δ + 9`, `plus` holding `δ + 1`
/// (0 or 2) in every byte of each point's 8, times the activations, scaled by `sc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_step(sum: __m256i, idx: __m128i, plus: __m256i, y: __m256i, sc: __m256i) -> __m256i {
    // SAFETY: callers' indices are < 2048, the grid's length; 8-byte entries.
    let g = unsafe { _mm256_i32gather_epi64::<8>(IQ1S_GRID.as_ptr().cast::<i64>(), idx) };
    let u = _mm256_add_epi8(_mm256_shuffle_epi8(iq1_table(), g), plus);
    _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), sc))
}

/// IQ1_S: per 32 weights a `qh` word (four 3-bit high index bits, a 3-bit scale, the sign
/// of δ) and four `qs` bytes: `(d / 8) · (2s + 1) · (8g + δ)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_s<const R: usize>(rows: [&[BlockIQ1_S]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let shifts = _mm_setr_epi32(8, 5, 2, 0);
    let shr3 = _mm_setr_epi32(0, 0, 0, 1);
    rows_iq(rows, a, |x, y| {
        let mut sum = _mm256_setzero_si256();
        let mut offset = 0i32;
        for ib in 0..8 {
            let h = x.qh[ib];
            let lo = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(i32::from_le_bytes(
                x.qs[4 * ib..4 * ib + 4].try_into().unwrap(),
            )));
            // Lane l: bits 3l..3l+3 of h moved to bits 8–10 (lane 3: right by 1).
            let hv = _mm_set1_epi32(h as i32);
            let hi = _mm_and_si128(
                _mm_srlv_epi32(_mm_sllv_epi32(hv, shifts), shr3),
                _mm_set1_epi32(0x700),
            );
            let sc = 2 * (h >> 12 & 7) as i16 + 1;
            let plus = _mm256_set1_epi8(if h & 0x8000 != 0 { 0 } else { 2 });
            sum = iq1_step(
                sum,
                _mm_or_si128(lo, hi),
                plus,
                q8k32(y, ib),
                _mm256_set1_epi16(sc),
            );
            offset += sc as i32 * (y.bsums[2 * ib] as i32 + y.bsums[2 * ib + 1] as i32);
        }
        let sum = _mm256_sub_epi32(sum, _mm256_castsi128_si256(_mm_cvtsi32_si128(9 * offset)));
        (sum, fp16(x.d) * 0.125)
    })
}

/// IQ1_M: per 8 weights a `qs` byte and a `qh` nibble (3 high index bits, the sign of δ),
/// a 3-bit scale per 16 (four per `scales` word; the top nibbles hold `d`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_m<const R: usize>(rows: [&[BlockIQ1_M]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let shifts = _mm_setr_epi32(8, 4, 0, 0);
    let shr = _mm_setr_epi32(0, 0, 0, 4);
    // Byte 8p of each 64-bit lane repeated over the lane.
    let rep = _mm256_setr_epi64x(0, 0x0808_0808_0808_0808, 0, 0x0808_0808_0808_0808);
    rows_iq(rows, a, |x, y| {
        let mut sum = _mm256_setzero_si256();
        let mut offset = 0i32;
        for ib in 0..8 {
            let h = u16::from_le_bytes([x.qh[2 * ib], x.qh[2 * ib + 1]]) as u32;
            let lo = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(i32::from_le_bytes(
                x.qs[4 * ib..4 * ib + 4].try_into().unwrap(),
            )));
            // Lane l: nibble l of h, bits 0–2 moved to bits 8–10.
            let hv = _mm_set1_epi32(h as i32);
            let hi = _mm_and_si128(
                _mm_srlv_epi32(_mm_sllv_epi32(hv, shifts), shr),
                _mm_set1_epi32(0x700),
            );
            // δ + 1 per group of 8: 2 where bit 3 of its nibble is clear.
            let d4 = (0..4).fold(0u32, |m, l| m | (((!h >> (4 * l + 3)) & 1) * 2) << (8 * l));
            let plus = _mm256_shuffle_epi8(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(d4 as i32)), rep);
            let word = x.scales[ib / 2] as u32;
            let s = |k: u32| 2 * (word >> (3 * k) & 7) as i32 + 1;
            let (s0, s1) = (s(2 * (ib as u32 % 2)), s(2 * (ib as u32 % 2) + 1));
            let sc = scales_2x16(s0, s1);
            sum = iq1_step(sum, _mm_or_si128(lo, hi), plus, q8k32(y, ib), sc);
            offset += s0 * y.bsums[2 * ib] as i32 + s1 * y.bsums[2 * ib + 1] as i32;
        }
        let sum = _mm256_sub_epi32(sum, _mm256_castsi128_si256(_mm_cvtsi32_si128(9 * offset)));
        (sum, fp16(x.d()) * 0.125)
    })
}
