//! AVX-512 kernels for the IQ1–IQ3 types against Q8_K activations: `R` weight rows · one
//! activation row, 64 weights per step; one row is the dot product ([`dot_iq3_s`] …),
//! [`GEMV_ROWS`] rows the matrix × vector kernel ([`rows_iq3_s`] …), which loads each
//! activation block once for all its rows.
//!
//! Every type stores a group of 4 or 8 weights as an index into a grid of magnitudes,
//! plus signs (IQ2, IQ3) or a shift (IQ1), and one small odd scale `2·s + 1` per 16 or 32
//! weights. Per step of 64 weights and row:
//! 1. the grid indices are widened to i32 lanes and the magnitudes fetched with one
//!    `vpgatherdd` (16 × 4 bytes, IQ3) or `vpgatherdq` (8 × 8 bytes, IQ2 and IQ1);
//! 2. IQ2/IQ3: the signs, a 64-bit mask, negate the activations where a weight is negative
//!    (`vpsubb` under the mask: ggml's `sign_epi8`, exact for the Q8_K range [−127, 127]
//!    that activation quantization produces, ours and ggml's). IQ1: the values
//!    `8·g + δ` (g ∈ {−1, 0, 1}, δ = ±1) become unsigned `8·g + δ + 9` (one `vpshufb` and
//!    one masked add), and `9 · Σ scale · Σ y` from the activations' block sums is taken
//!    off once per block;
//! 3. `vpdpbusd` (magnitude × signed activation, 4 products per i32 lane) gives 16 sums of
//!    4 products, each |Σ| ≤ 4·43·128 so it fits an i16; `vpdpwssd` then multiplies each by
//!    its sub-block's scale (a lane's low i16; the high one meets a zero) and accumulates,
//!    so the block's integer sum needs no `vpmulld`;
//! 4. per block, the row's float accumulator takes `d_x · d_y · (type's factor) · Σ`.
//!
//! The grid lookups bound the speed: one gathered element per 4 or 8 weights, at
//! ~0.15 ns each on the Xeon of 2026-12-06, so an IQ3 block's 64 lookups take ~10 ns of
//! a core and these kernels are compute-bound on two cores where the K-quants are
//! bandwidth-bound.

use std::arch::x86_64::*;

use super::dpwssd512;
use crate::arch::x86::common::fp16;
use crate::contract::gemv::GEMV_ROWS;
use crate::format::blocks::*;
use crate::format::iq_grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
};

/// `vpermd` indices for step `k` with scales per 32 weights (`sc` lane `s` = sub-block
/// `s`): sub-block `2k` over lanes 0–7, `2k + 1` over 8–15.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pick32(k: i32) -> __m512i {
    let (a, b) = (2 * k, 2 * k + 1);
    _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
}

/// As [`pick32`] with scales per 16 weights: sub-block `4k + j / 4` for lane `j`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pick16(k: i32) -> __m512i {
    let s = |j: i32| 4 * k + j;
    _mm512_setr_epi32(
        s(0),
        s(0),
        s(0),
        s(0),
        s(1),
        s(1),
        s(1),
        s(1),
        s(2),
        s(2),
        s(2),
        s(2),
        s(3),
        s(3),
        s(3),
        s(3),
    )
}

/// One step's products: `g` (unsigned magnitudes) · `y` (activations, negated where `neg`
/// has a bit) as 16 i32 sums of 4, scaled by `sc` lane-wise into `sum`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn step64(sum: __m512i, g: __m512i, neg: u64, y: __m512i, sc: __m512i) -> __m512i {
    let ys = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), g, ys);
    dpwssd512(sum, p, sc)
}

/// Odd scales `2·n + 1` of 4-bit fields: `v` lanes shifted right by `shift`, low nibble.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn odd_nibbles(v: __m512i, shift: __m512i) -> __m512i {
    let n = _mm512_and_si512(_mm512_srlv_epi32(v, shift), _mm512_set1_epi32(0xF));
    _mm512_add_epi32(_mm512_add_epi32(n, n), _mm512_set1_epi32(1))
}

/// 16 odd scales from 8 bytes of two 4-bit scales each (IQ2_XS, IQ2_S: sub-block `2i`
/// in the low nibble of byte `i`), as i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn scales16_nibbles(b: &[u8; 8]) -> __m512i {
    let v = _mm512_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(*b)));
    // Lane j reads byte j / 2 (lanes ≥ 8 read the broadcast copy) and its nibble j % 2.
    let spread = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let shift = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    odd_nibbles(_mm512_permutexvar_epi32(spread, v), shift)
}

/// Bytes holding 7-bit sign fields, completed with their parity as bit 7 (ggml's
/// `ksigns_iq2xs`: an even number of negative weights in each group of 8).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn with_parity(fields: __m256i) -> __m256i {
    // Parity of low nibble ^ parity of high nibble, each looked up as 0x80 or 0.
    let par: [i8; 16] = std::array::from_fn(|i| {
        if (i as u32).count_ones() % 2 == 1 {
            -128
        } else {
            0
        }
    });
    // SAFETY: 16 readable bytes.
    let par = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(par.as_ptr().cast()) });
    let low = _mm256_set1_epi8(0x0F);
    let p = _mm256_xor_si256(
        _mm256_shuffle_epi8(par, _mm256_and_si256(fields, low)),
        _mm256_shuffle_epi8(par, _mm256_and_si256(_mm256_srli_epi16::<4>(fields), low)),
    );
    _mm256_or_si256(fields, p)
}

/// The 32 sign bytes (one per 8 weights, in weight order) of 8 IQ3_XXS / IQ2_XXS
/// scale-and-sign words: each word's four 7-bit fields (bits 0, 7, 14, 21) moved to one
/// byte each (field l shifted left by l), then [`with_parity`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn xxs_signs(aux: __m256i) -> [u64; 4] {
    let f = |v: __m256i, m: i32| _mm256_and_si256(v, _mm256_set1_epi32(m));
    let fields = _mm256_or_si256(
        _mm256_or_si256(f(aux, 0x7F), f(_mm256_slli_epi32::<1>(aux), 0x7F00)),
        _mm256_or_si256(
            f(_mm256_slli_epi32::<2>(aux), 0x7F_0000),
            f(_mm256_slli_epi32::<3>(aux), 0x7F00_0000),
        ),
    );
    // SAFETY: 32 bytes either way, every bit pattern valid.
    unsafe { std::mem::transmute::<__m256i, [u64; 4]>(with_parity(fields)) }
}

/// The 8 odd scales `2·(w >> 28) + 1` of IQ3_XXS / IQ2_XXS scale-and-sign words, as i32
/// lanes 0–7: `(w >> 27) | 1` (bit 27 replaced by the 1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn xxs_scales(aux: __m256i) -> __m512i {
    _mm512_castsi256_si512(_mm256_or_si256(
        _mm256_srli_epi32::<27>(aux),
        _mm256_set1_epi32(1),
    ))
}

/// The four 64-value vectors of a Q8_K block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8k_quarters(y: &BlockQ8_K) -> [__m512i; 4] {
    // SAFETY: qs holds 256 bytes: four 64-byte loads.
    unsafe {
        let p = y.qs.as_ptr();
        [0, 64, 128, 192].map(|o| _mm512_loadu_si512(p.add(o).cast()))
    }
}

/// The driver: for each block, the activations' four vectors once, then per row
/// `block(x, y, ys)` = (integer sum of the block, the float factor `d_x · type factor`);
/// `d_y · factor · sum` accumulates in f32. Prefetches 4 blocks ahead in every row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows_iq<B, const R: usize>(
    rows: [&[B]; R],
    a: &[BlockQ8_K],
    block: impl Fn(&B, &BlockQ8_K, &[__m512i; 4]) -> (__m512i, f32),
) -> [f32; R] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    let mut acc = [_mm512_setzero_ps(); R];
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
        let ys = q8k_quarters(y);
        for r in 0..R {
            // SAFETY: b < n ≤ rows[r].len().
            let x = unsafe { rows[r].get_unchecked(b) };
            let (sum, f) = block(x, y, &ys);
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(f * y.d), _mm512_cvtepi32_ps(sum), acc[r]);
        }
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
}

/// Declares the one-row dot `$dot` and the [`GEMV_ROWS`]-row kernel `$rows` of `$B` from
/// the generic `$generic::<R>`.
macro_rules! entry_points {
    ($B:ty, $generic:ident, $dot:ident, $rows:ident) => {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(crate) fn $dot(w: &[$B], a: &[BlockQ8_K]) -> f32 {
            $generic::<1>([w], a)[0]
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(crate) fn $rows(rows: [&[$B]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
            $generic::<GEMV_ROWS>(rows, a)
        }
    };
}

entry_points!(BlockIQ3_S, iq3_s, dot_iq3_s, rows_iq3_s);
entry_points!(BlockIQ3_XXS, iq3_xxs, dot_iq3_xxs, rows_iq3_xxs);
entry_points!(BlockIQ2_S, iq2_s, dot_iq2_s, rows_iq2_s);
entry_points!(BlockIQ2_XS, iq2_xs, dot_iq2_xs, rows_iq2_xs);
entry_points!(BlockIQ2_XXS, iq2_xxs, dot_iq2_xxs, rows_iq2_xxs);
entry_points!(BlockIQ1_S, iq1_s, dot_iq1_s, rows_iq1_s);
entry_points!(BlockIQ1_M, iq1_m, dot_iq1_m, rows_iq1_m);

/// Step `k`'s 64 magnitudes of an IQ3_S block (16 grid points of 4): 9-bit indices, a
/// `qs` byte and the 9th bit from `qh`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq3_s_grid(x: &BlockIQ3_S, k: usize) -> __m512i {
    // SAFETY: 16 bytes at qs[16k..] (k < 4, qs holds 64).
    let lo = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(x.qs[16 * k..][..16].as_ptr().cast()) });
    // Bit 8 of lane j: bit j of this step's 16 qh bits, as a mask.
    let h = u16::from_le_bytes([x.qh[2 * k], x.qh[2 * k + 1]]);
    let idx = _mm512_mask_or_epi32(lo, h, lo, _mm512_set1_epi32(0x100));
    // SAFETY: every index is < 512, the grid's length; 4-byte entries.
    unsafe { _mm512_i32gather_epi32::<4>(idx, IQ3S_GRID.as_ptr().cast::<i32>()) }
}

/// Step `k`'s 64 magnitudes of an IQ3_XXS block: byte indices `qs[16k..16k + 16]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq3_xxs_grid(x: &BlockIQ3_XXS, k: usize) -> __m512i {
    // SAFETY: 16 bytes at qs[16k..] (k < 4, inside the 64 index bytes).
    let lo = unsafe { _mm_loadu_si128(x.qs[16 * k..][..16].as_ptr().cast()) };
    // SAFETY: indices are bytes (< 256, the grid's length); 4-byte entries.
    unsafe { _mm512_i32gather_epi32::<4>(_mm512_cvtepu8_epi32(lo), IQ3XXS_GRID.as_ptr().cast()) }
}

/// Step `k`'s 64 magnitudes of an IQ2_S block (8 grid points of 8): 10-bit indices, a
/// `qs` byte and 2 high bits from `qh`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq2_s_grid(x: &BlockIQ2_S, k: usize) -> __m512i {
    // Lane j's 2 high bits are bits 2j, 2j + 1 of this step's 16 qh bits: rotated left by
    // 8 − 2j (mod 32) they land on bits 8–9.
    let rot = _mm256_setr_epi32(8, 6, 4, 2, 0, 30, 28, 26);
    let lo = _mm256_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(
        x.qs[8 * k..8 * k + 8].try_into().unwrap(),
    )));
    let h = u16::from_le_bytes([x.qh[2 * k], x.qh[2 * k + 1]]) as i32;
    // idx = lo | (rotl(h, 8 − 2j) & 0x300)   (ternary: A | (B & C))
    let idx = _mm256_ternarylogic_epi32::<0xF8>(
        lo,
        _mm256_rolv_epi32(_mm256_set1_epi32(h), rot),
        _mm256_set1_epi32(0x300),
    );
    // SAFETY: every index is < 1024, the grid's length; 8-byte entries.
    unsafe { _mm512_i32gather_epi64::<8>(idx, IQ2S_GRID.as_ptr().cast()) }
}

/// Step `k`'s 64 explicit sign bits (IQ3_S, IQ2_S: one byte per 8 weights).
#[inline]
fn signs64(signs: &[u8; QK_K / 8], k: usize) -> u64 {
    u64::from_le_bytes(signs[8 * k..8 * k + 8].try_into().unwrap())
}

/// The 256 signed values of a block, `g(k)` the magnitudes and `neg(k)` the signs of step
/// `k`, into `q[..256]` for the tile kernels' panels.
///
/// # Panics
/// If `q` holds fewer than 256 values.
#[inline(always)]
fn store_signed(q: &mut [i8], g: impl Fn(usize) -> __m512i, neg: impl Fn(usize) -> u64) {
    let q = &mut q[..QK_K];
    for k in 0..4 {
        // SAFETY (intrinsics): only inlined into the AVX-512 unpackers below. The store:
        // q holds 256 bytes (sliced above), 64 at 64k, k < 4.
        unsafe {
            let m = g(k);
            let v = _mm512_mask_sub_epi8(m, neg(k), _mm512_setzero_si512(), m);
            _mm512_storeu_si512(q.as_mut_ptr().add(64 * k).cast(), v);
        }
    }
}

/// [`crate::format::unpack::Unpack::unpack`] of an IQ3_S block (`q[..256]`, `sc[..8]`,
/// `(d, 0)`: the same values), with [`iq3_s`]'s gathers, for the tile kernels' panels.
///
/// # Panics
/// If `q` holds fewer than 256 values or `sc` fewer than 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn unpack_iq3_s(x: &BlockIQ3_S, q: &mut [i8], sc: &mut [i16]) -> (f32, f32) {
    store_signed(q, |k| iq3_s_grid(x, k), |k| signs64(&x.signs, k));
    for (ib, s) in sc[..QK_K / 32].iter_mut().enumerate() {
        *s = (2 * (x.scales[ib / 2] >> (4 * (ib % 2)) & 0xF) + 1) as i16;
    }
    (fp16(x.d), 0.0)
}

/// [`unpack_iq3_s`] for IQ3_XXS (`sc[..8]`; `d / 4`), with [`iq3_xxs`]'s gathers.
///
/// # Panics
/// If `q` holds fewer than 256 values or `sc` fewer than 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn unpack_iq3_xxs(x: &BlockIQ3_XXS, q: &mut [i8], sc: &mut [i16]) -> (f32, f32) {
    // SAFETY: the 8 scale-and-sign words are qs[64..96].
    let aux = unsafe { _mm256_loadu_si256(x.qs[64..96].as_ptr().cast()) };
    let neg = xxs_signs(aux);
    store_signed(q, |k| iq3_xxs_grid(x, k), |k| neg[k]);
    for (ib, s) in sc[..QK_K / 32].iter_mut().enumerate() {
        let w = u32::from_le_bytes(x.qs[64 + 4 * ib..68 + 4 * ib].try_into().unwrap());
        *s = (2 * (w >> 28) + 1) as i16;
    }
    (fp16(x.d) * 0.25, 0.0)
}

/// [`unpack_iq3_s`] for IQ2_S (`sc[..16]`; `d / 8`), with [`iq2_s`]'s gathers.
///
/// # Panics
/// If `q` holds fewer than 256 values or `sc` fewer than 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn unpack_iq2_s(x: &BlockIQ2_S, q: &mut [i8], sc: &mut [i16]) -> (f32, f32) {
    store_signed(q, |k| iq2_s_grid(x, k), |k| signs64(&x.signs, k));
    for (i, &b) in x.scales.iter().enumerate() {
        sc[2 * i] = (2 * (b & 0xF) + 1) as i16;
        sc[2 * i + 1] = (2 * (b >> 4) + 1) as i16;
    }
    (fp16(x.d) * 0.125, 0.0)
}

/// IQ3_S: 9-bit indices into the 512-entry grid (a `qs` byte, the 9th bit from `qh`),
/// explicit sign bytes, a 4-bit scale per 32 weights: `d · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq3_s<const R: usize>(rows: [&[BlockIQ3_S]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let shift = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
    let picks = [0, 1, 2, 3].map(|k| pick32(k));
    rows_iq(rows, a, |x, _, ys| {
        let sc8 = odd_nibbles(
            _mm512_set1_epi32(u32::from_le_bytes(x.scales) as i32),
            shift,
        );
        let mut sum = _mm512_setzero_si512();
        for k in 0..4 {
            let sc = _mm512_permutexvar_epi32(picks[k], sc8);
            sum = step64(sum, iq3_s_grid(x, k), signs64(&x.signs, k), ys[k], sc);
        }
        (sum, fp16(x.d))
    })
}

/// IQ3_XXS: 8-bit indices into the 256-entry grid (`qs[..64]`), then 8 scale-and-sign
/// words: four 7-bit sign fields completed by parity, a 4-bit scale per 32 weights:
/// `d · (0.5 + s) · 0.5 = (d / 4) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq3_xxs<const R: usize>(rows: [&[BlockIQ3_XXS]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let picks = [0, 1, 2, 3].map(|k| pick32(k));
    rows_iq(rows, a, |x, _, ys| {
        // SAFETY: the 8 scale-and-sign words are qs[64..96].
        let aux = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(64).cast()) };
        let (neg, sc8) = (xxs_signs(aux), xxs_scales(aux));
        let mut sum = _mm512_setzero_si512();
        for k in 0..4 {
            let sc = _mm512_permutexvar_epi32(picks[k], sc8);
            sum = step64(sum, iq3_xxs_grid(x, k), neg[k], ys[k], sc);
        }
        (sum, fp16(x.d) * 0.25)
    })
}

/// IQ2_S: 10-bit indices into the 1024-entry grid of 8 magnitudes (a `qs` byte, 2 high
/// bits from `qh`), explicit sign bytes, a 4-bit scale per 16 weights:
/// `d · (0.5 + s) · 0.25 = (d / 8) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq2_s<const R: usize>(rows: [&[BlockIQ2_S]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let picks = [0, 1, 2, 3].map(|k| pick16(k));
    rows_iq(rows, a, |x, _, ys| {
        let sc16 = scales16_nibbles(&x.scales);
        let mut sum = _mm512_setzero_si512();
        for k in 0..4 {
            let sc = _mm512_permutexvar_epi32(picks[k], sc16);
            sum = step64(sum, iq2_s_grid(x, k), signs64(&x.signs, k), ys[k], sc);
        }
        (sum, fp16(x.d) * 0.125)
    })
}

/// IQ2_XS: 16-bit words of a 9-bit index into the 512-entry grid and a 7-bit sign field
/// (completed by parity), a 4-bit scale per 16 weights: `(d / 8) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq2_xs<const R: usize>(rows: [&[BlockIQ2_XS]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let grid = IQ2XS_GRID.as_ptr().cast::<i64>();
    let picks = [0, 1, 2, 3].map(|k| pick16(k));
    let mask9 = _mm256_set1_epi32(511);
    rows_iq(rows, a, |x, _, ys| {
        let sc16 = scales16_nibbles(&x.scales);
        // SAFETY: qs is 32 u16 = 64 bytes.
        let q = unsafe { _mm512_loadu_si512(x.qs.as_ptr().cast()) };
        let fields = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<9>(q));
        // SAFETY: 32 bytes either way, every bit pattern valid.
        let neg = unsafe { std::mem::transmute::<__m256i, [u64; 4]>(with_parity(fields)) };
        let mut sum = _mm512_setzero_si512();
        for k in 0..4 {
            // SAFETY: 8 u16 at qs[8k..] (k < 4).
            let w = unsafe { _mm_loadu_si128(x.qs.as_ptr().add(8 * k).cast()) };
            let idx = _mm256_and_si256(_mm256_cvtepu16_epi32(w), mask9);
            // SAFETY: every index is < 512, the grid's length; 8-byte entries.
            let g = unsafe { _mm512_i32gather_epi64::<8>(idx, grid) };
            sum = step64(
                sum,
                g,
                neg[k],
                ys[k],
                _mm512_permutexvar_epi32(picks[k], sc16),
            );
        }
        (sum, fp16(x.d) * 0.125)
    })
}

/// IQ2_XXS: per 32 weights two 32-bit words, four 8-bit indices into the 256-entry grid
/// and a scale-and-sign word as IQ3_XXS's: `d · (0.5 + s) · 0.25 = (d / 8) · (1 + 2s)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq2_xxs<const R: usize>(rows: [&[BlockIQ2_XXS]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let grid = IQ2XXS_GRID.as_ptr().cast::<i64>();
    let picks = [0, 1, 2, 3].map(|k| pick32(k));
    rows_iq(rows, a, |x, _, ys| {
        // SAFETY: qs is 32 u16 = 64 bytes: index words at even, sign words at odd dwords.
        let q = unsafe { _mm512_loadu_si512(x.qs.as_ptr().cast()) };
        let aux = _mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(q));
        let (neg, sc8) = (xxs_signs(aux), xxs_scales(aux));
        // SAFETY: 32 bytes either way: the 32 indices in order, 8 per step.
        let idx8 = unsafe { std::mem::transmute::<__m256i, [i64; 4]>(_mm512_cvtepi64_epi32(q)) };
        let mut sum = _mm512_setzero_si512();
        for k in 0..4 {
            let idx = _mm256_cvtepu8_epi32(_mm_set1_epi64x(idx8[k]));
            // SAFETY: indices are bytes (< 256, the grid's length); 8-byte entries.
            let g = unsafe { _mm512_i32gather_epi64::<8>(idx, grid) };
            sum = step64(
                sum,
                g,
                neg[k],
                ys[k],
                _mm512_permutexvar_epi32(picks[k], sc8),
            );
        }
        (sum, fp16(x.d) * 0.125)
    })
}

/// `vpshufb` table turning a grid value g ∈ {−1, 0, 1} (bytes 0xFF, 0, 1) into
/// `8·(g + 1)`: 0xFF has bit 7 set, which `vpshufb` maps to 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq1_table() -> __m512i {
    _mm512_broadcast_i32x4(_mm_setr_epi8(
        8, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ))
}

/// One IQ1 step: the 8 grid points at `idx` as `8·g + δ + 9` (δ = +1 on the groups of
/// `plus`, −1 elsewhere), times the activations, scaled by `sc`, into `sum`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq1_step(sum: __m512i, idx: __m256i, plus: __mmask8, y: __m512i, sc: __m512i) -> __m512i {
    // SAFETY: callers' indices are < 2048, the grid's length; 8-byte entries.
    let g = unsafe { _mm512_i32gather_epi64::<8>(idx, IQ1S_GRID.as_ptr().cast::<i64>()) };
    let u = _mm512_shuffle_epi8(iq1_table(), g);
    // +2 on every byte of the δ = +1 groups (bytes ≤ 16: no carry between them).
    let u = _mm512_mask_add_epi64(u, plus, u, _mm512_set1_epi64(0x0202_0202_0202_0202));
    dpwssd512(sum, _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, y), sc)
}

/// `9 · Σ_s sc_s · Y_s`, the offset [`iq1_step`]'s `+ 9` added: `sc16` the scales as i16
/// per 16 activations, `y.bsums` the sums of those 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq1_offset(sc16: __m256i, y: &BlockQ8_K) -> __m512i {
    // SAFETY: bsums is 16 i16 = 32 bytes.
    let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
    let s = _mm256_madd_epi16(bs, sc16);
    _mm512_castsi256_si512(_mm256_add_epi32(_mm256_slli_epi32::<3>(s), s))
}

/// IQ1_S: per 32 weights a `qh` word (four 3-bit high index bits, a 3-bit scale, the sign
/// of δ) and four `qs` bytes: 11-bit indices into the 2048-entry grid of {−1, 0, 1};
/// weight = `d · (2s + 1) · (g + δ/8)` = `(d / 8) · (2s + 1) · (8g + δ)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq1_s<const R: usize>(rows: [&[BlockIQ1_S]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let picks = [0, 1, 2, 3].map(|k| pick32(k));
    // Lane j's 3 high bits: bits 3(j % 4) of word j / 4 of the step's two qh words,
    // rotated onto bits 8–10; its δ sign: bit 15 of that word.
    let rot = _mm256_setr_epi32(8, 5, 2, 31, 24, 21, 18, 15);
    let bits = _mm256_set1_epi32(0x700);
    let dsign = _mm256_setr_epi32(
        0x8000,
        0x8000,
        0x8000,
        0x8000,
        0x8000_0000u32 as i32,
        0x8000_0000u32 as i32,
        0x8000_0000u32 as i32,
        0x8000_0000u32 as i32,
    );
    rows_iq(rows, a, |x, y, ys| {
        // SAFETY: qh is 8 u16 = 16 bytes.
        let qh = _mm256_cvtepu16_epi32(unsafe { _mm_loadu_si128(x.qh.as_ptr().cast()) });
        let sc8 = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi32::<11>(qh), _mm256_set1_epi32(0xE)),
            _mm256_set1_epi32(1),
        );
        // The scales as i16 per 16 activations: each 32-weight scale twice.
        let sc16 = _mm256_or_si256(sc8, _mm256_slli_epi32::<16>(sc8));
        let mut sum = _mm512_sub_epi32(_mm512_setzero_si512(), iq1_offset(sc16, y));
        let sc8 = _mm512_castsi256_si512(sc8);
        for k in 0..4 {
            let lo = _mm256_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(
                x.qs[8 * k..8 * k + 8].try_into().unwrap(),
            )));
            let h = _mm256_set1_epi32((x.qh[2 * k] as u32 | (x.qh[2 * k + 1] as u32) << 16) as i32);
            let idx = _mm256_ternarylogic_epi32::<0xF8>(lo, _mm256_rolv_epi32(h, rot), bits);
            let plus = _mm256_testn_epi32_mask(h, dsign);
            sum = iq1_step(
                sum,
                idx,
                plus,
                ys[k],
                _mm512_permutexvar_epi32(picks[k], sc8),
            );
        }
        (sum, fp16(x.d) * 0.125)
    })
}

/// IQ1_M: per 8 weights a `qs` byte and a `qh` nibble (3 high index bits, the sign of δ),
/// a 3-bit scale per 16 weights (four per `scales` word, whose top nibbles hold `d`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq1_m<const R: usize>(rows: [&[BlockIQ1_M]; R], a: &[BlockQ8_K]) -> [f32; R] {
    let picks = [0, 1, 2, 3].map(|k| pick16(k));
    // Lane j's nibble: bits 4j of the step's 4 qh bytes, rotated onto bits 8–11.
    let rot = _mm256_setr_epi32(8, 4, 0, 28, 24, 20, 16, 12);
    let bits = _mm256_set1_epi32(0x700);
    let dsign = _mm256_setr_epi32(
        0x8,
        0x80,
        0x800,
        0x8000,
        0x8_0000,
        0x80_0000,
        0x800_0000,
        0x8000_0000u32 as i32,
    );
    // Scale s: word s / 4, bits 3(s % 4).
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let shift = _mm512_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9);
    rows_iq(rows, a, |x, y, ys| {
        let words = _mm512_castsi128_si512(_mm_cvtepu16_epi32(_mm_set1_epi64x(
            (x.scales[0] as u64
                | (x.scales[1] as u64) << 16
                | (x.scales[2] as u64) << 32
                | (x.scales[3] as u64) << 48) as i64,
        )));
        let s3 = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_permutexvar_epi32(spread, words), shift),
            _mm512_set1_epi32(7),
        );
        let sc16 = _mm512_add_epi32(_mm512_add_epi32(s3, s3), _mm512_set1_epi32(1));
        let mut sum = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            iq1_offset(_mm512_cvtepi32_epi16(sc16), y),
        );
        for k in 0..4 {
            let lo = _mm256_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(
                x.qs[8 * k..8 * k + 8].try_into().unwrap(),
            )));
            let h = _mm256_set1_epi32(
                u32::from_le_bytes(x.qh[4 * k..4 * k + 4].try_into().unwrap()) as i32,
            );
            let idx = _mm256_ternarylogic_epi32::<0xF8>(lo, _mm256_rolv_epi32(h, rot), bits);
            let plus = _mm256_testn_epi32_mask(h, dsign);
            sum = iq1_step(
                sum,
                idx,
                plus,
                ys[k],
                _mm512_permutexvar_epi32(picks[k], sc16),
            );
        }
        (sum, fp16(x.d()) * 0.125)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::unpack::Unpack;

    /// `simd` against [`Unpack::unpack`] on random blocks of `B` (a finite `d` first).
    fn check<B: Unpack>(simd: impl Fn(&B, &mut [i8], &mut [i16]) -> (f32, f32), nsub: usize) {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut words = vec![0u16; std::mem::size_of::<B>() / 2];
        for i in 0..300 {
            for w in words.iter_mut() {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                *w = (seed >> 48) as u16;
            }
            words[0] = half::f16::from_f32(0.01 * (i as f32 - 150.0)).to_bits();
            // SAFETY: u16s as their bytes (alignment 2, every bit pattern valid).
            let bytes =
                unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), 2 * words.len()) };
            let x = &view_blocks::<B>(bytes).unwrap()[0];
            let (mut q, mut sc, mut mins) = ([0i8; QK_K], [0i16; 16], [0i16; 16]);
            let want = x.unpack(&mut q, &mut sc, &mut mins);
            let (mut q2, mut sc2) = ([0i8; QK_K], [0i16; 16]);
            let got = simd(x, &mut q2, &mut sc2);
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (want.0.to_bits(), want.1.to_bits())
            );
            assert_eq!(q2, q, "{} block {i}", B::TYPE);
            assert_eq!(sc2[..nsub], sc[..nsub], "{} block {i}", B::TYPE);
        }
    }

    #[test]
    fn panel_unpacking_equals_the_reference_unpacking() {
        use std::arch::is_x86_feature_detected as has;
        let all = has!("avx2") && has!("fma") && has!("f16c") && has!("avx512f");
        if !(all && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni")) {
            eprintln!("skipped: this CPU lacks AVX-512 VNNI");
            return;
        }
        // SAFETY (each call): the features were detected above.
        check::<BlockIQ3_S>(|x, q, sc| unsafe { unpack_iq3_s(x, q, sc) }, 8);
        check::<BlockIQ3_XXS>(|x, q, sc| unsafe { unpack_iq3_xxs(x, q, sc) }, 8);
        check::<BlockIQ2_S>(|x, q, sc| unsafe { unpack_iq2_s(x, q, sc) }, 16);
    }
}
