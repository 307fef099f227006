//! AVX2 multi-row kernels for matrix × vector: [`GEMV_ROWS`] weight rows · one activation row
//! (the block-wise driver, [`rows_blockwise`], for Q4_K and Q6_K; Q4_0 on activations
//! prepared once per row, see [`crate::arch::x86::common`]).

use std::arch::x86_64::*;

use super::dot::step_iq4_xs;
use super::{dot_i8x32, step_q6_k};
use crate::arch::x86::common::{
    fp16_mul, hsum, iq4nl_table, k4_scales_mins, load32, prefetch_next_rows, q4_0_prepared_group,
    q4_0_rows_tail, rows_blockwise, write_q4_0_prepared, K4Block,
};
use crate::contract::gemv::GEMV_ROWS;
use crate::format::blocks::*;

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_q8_0(rows: [&[BlockQ8_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    let step = |acc: &mut __m256, x: &BlockQ8_0, y: &BlockQ8_0| {
        let p = _mm256_cvtepi32_ps(dot_i8x32(load32(&x.qs), load32(&y.qs)));
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_mul(x.d, y.d)), p, *acc);
    };
    rows_blockwise(rows, a, _mm256_setzero_ps(), step, |v| hsum(v))
}

/// [`q4_0_rows_tail`] with `maddubs` + `madd` (products ≤ 15·128·2: no i16
/// saturation): the last (< 8) blocks of [`rows_q4_0_prepared`].
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q4_0_tail(rows: [&[BlockQ4_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    let ones = _mm256_set1_epi16(1);
    let dp = |acc: __m256i, u: __m256i, s: __m256i| {
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones))
    };
    q4_0_rows_tail!(rows, a, dp)
}

/// [`GEMV_ROWS`] Q4_K or Q5_K rows × one Q8_K row, the rows of a super-block together so
/// the work of the activation side and of the block headers is shared:
/// - the activations' pair sums bsums[2j] + bsums[2j + 1] (one `hadd`) meet two rows'
///   mins at once (rows 2h and 2h + 1 in the two 128-bit halves, one `madd`);
/// - the four rows' d and dmin are converted with one `vcvtph2ps` and scaled by the
///   activation's d together;
/// - per row and 64 elements: the nibbles split (and, shift, and), two `maddubs` of the
///   unsigned values (< 32, so no saturation: 2·31·128 < 2^15) by the activations and
///   two `madd` with the groups' scales (one in-lane byte shuffle each);
/// - Q5_K's fifth bit of group g is bit g of `qh`, moved to bit 4 with one 16-bit shift
///   (no bit crosses into the byte's bit 4 from its neighbour) and one and.
///
/// Each row's arithmetic is the same whichever rows share the call; each step
/// prefetches its share of the bytes after the last row, as [`rows_blockwise`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_k4<B: K4Block>(rows: [&[B]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    let low = _mm256_set1_epi8(0x0F);
    let bit4 = _mm256_set1_epi8(0x10);
    let mut acc = [_mm256_setzero_ps(); GEMV_ROWS];
    // Rows 2h and 2h + 1's mins terms in the halves of acc_min[h].
    let mut acc_min = [_mm256_setzero_ps(); 2];
    // Lanes 2r + 1 (row r's dmin·d_y) spread over the half of row r.
    let min_idx = [
        _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3),
        _mm256_setr_epi32(5, 5, 5, 5, 7, 7, 7, 7),
    ];
    for b in 0..n {
        prefetch_next_rows(&rows, n, b);
        // SAFETY: b < n, at most every row's and a's length.
        let (y, x): (&BlockQ8_K, [&B; GEMV_ROWS]) = unsafe {
            (
                a.get_unchecked(b),
                [
                    rows[0].get_unchecked(b),
                    rows[1].get_unchecked(b),
                    rows[2].get_unchecked(b),
                    rows[3].get_unchecked(b),
                ],
            )
        };
        // SAFETY: bsums is 16 i16 = 32 readable bytes.
        let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
        let pairs = _mm_hadd_epi16(
            _mm256_castsi256_si128(bs),
            _mm256_extracti128_si256::<1>(bs),
        );
        let pairs = _mm256_broadcastsi128_si256(pairs);
        // Lane 2r = d_r·d_y, lane 2r + 1 = dmin_r·d_y.
        let dm =
            |r: usize| (x[r].d().to_bits() as u32 | (x[r].dmin().to_bits() as u32) << 16) as i32;
        let dmf = _mm256_mul_ps(
            _mm256_cvtph_ps(_mm_setr_epi32(dm(0), dm(1), dm(2), dm(3))),
            _mm256_set1_ps(y.d),
        );
        let sm: [(u64, u64); GEMV_ROWS] = [
            k4_scales_mins(x[0].scales()),
            k4_scales_mins(x[1].scales()),
            k4_scales_mins(x[2].scales()),
            k4_scales_mins(x[3].scales()),
        ];
        for h in 0..2 {
            let mins =
                _mm256_cvtepu8_epi16(_mm_set_epi64x(sm[2 * h + 1].1 as i64, sm[2 * h].1 as i64));
            let summs = _mm256_madd_epi16(mins, pairs);
            acc_min[h] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(summs),
                _mm256_permutevar8x32_ps(dmf, min_idx[h]),
                acc_min[h],
            );
        }
        for r in 0..GEMV_ROWS {
            let sc16 =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sm[r].0 as i64)));
            let scale =
                |j: i16| _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((2 * j) | (2 * j + 1) << 8));
            // SAFETY: qh (Q5_K) is 32 bytes.
            let qh = x[r]
                .qh()
                .map(|qh| unsafe { _mm256_loadu_si256(qh.as_ptr().cast()) });
            let mut sum = _mm256_setzero_si256();
            for c in 0..4 {
                // SAFETY: 32 bytes at qs[32c..] and 64 at y.qs[64c..], within the arrays.
                let (q, y1, y2) = unsafe {
                    (
                        _mm256_loadu_si256(x[r].qs().as_ptr().add(32 * c).cast()),
                        _mm256_loadu_si256(y.qs.as_ptr().add(64 * c).cast()),
                        _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32).cast()),
                    )
                };
                let mut lo = _mm256_and_si256(q, low);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
                if let Some(qh) = qh {
                    // Bit g → bit 4: shift left by 4 − g (g ≤ 4) or right by g − 4.
                    let to4 = |g: i32| {
                        let v = match g <= 4 {
                            true => _mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - g)),
                            false => _mm256_srl_epi16(qh, _mm_cvtsi32_si128(g - 4)),
                        };
                        _mm256_and_si256(v, bit4)
                    };
                    lo = _mm256_or_si256(lo, to4(2 * c as i32));
                    hi = _mm256_or_si256(hi, to4(2 * c as i32 + 1));
                }
                let j = 2 * c as i16;
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y1), scale(j));
                let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y2), scale(j + 1));
                sum = _mm256_add_epi32(sum, _mm256_add_epi32(p1, p2));
            }
            let d = _mm256_permutevar8x32_ps(dmf, _mm256_set1_epi32(2 * r as i32));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), d, acc[r]);
        }
    }
    let mut m = [0f32; 16];
    // SAFETY: 2 × 32 writable bytes.
    unsafe {
        _mm256_storeu_ps(m.as_mut_ptr(), acc_min[0]);
        _mm256_storeu_ps(m.as_mut_ptr().add(8), acc_min[1]);
    }
    std::array::from_fn(|r| {
        let mins = (m[4 * r] + m[4 * r + 1]) + (m[4 * r + 2] + m[4 * r + 3]);
        hsum(acc[r]) - mins
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_q4_k(rows: [&[BlockQ4_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    rows_k4(rows, a)
}

/// Q5_K: as Q4_K ([`rows_k4`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_q5_k(rows: [&[BlockQ5_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    rows_k4(rows, a)
}

/// IQ4_XS: the rows' super-blocks side by side (the one-row dot's steps).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_iq4_xs(rows: [&[BlockIQ4_XS]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    let table = iq4nl_table();
    rows_blockwise(
        rows,
        a,
        _mm256_setzero_ps(),
        |acc, x, y| step_iq4_xs(acc, table, x, y),
        |v| hsum(v),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_q6_k(rows: [&[BlockQ6_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    rows_blockwise(
        rows,
        a,
        _mm256_setzero_ps(),
        |acc, x, y| step_q6_k(acc, x, y),
        |v| hsum(v),
    )
}

/// Header bytes (the 8 scales) of [`rows_q4_0_prepared`]'s layout per group of 8 blocks.
const PREP_Q4_0_HEAD: usize = 32;

/// Bytes of [`rows_q4_0_prepared`]'s activation layout per group of 8 blocks (416).
pub(crate) const PREP_Q4_0_GROUP: usize = q4_0_prepared_group(PREP_Q4_0_HEAD);

/// Bytes of [`rows_q4_0_prepared`]'s layout for an activation row of `n` blocks (the
/// last `n % 8` blocks are read from the blocks themselves).
pub(crate) fn prep_q4_0_bytes(n: usize) -> usize {
    n / 8 * PREP_Q4_0_GROUP
}

/// Writes [`rows_q4_0_prepared`]'s layout: per group of 8 activation blocks, 416 bytes:
/// the 8 scales d_y as f32, then for each pair of blocks (2p, 2p + 1) their first 16
/// values side by side (32 bytes, block 2p in the low half), their last 16 (32 bytes),
/// and the 8 i32 −8·Σ of the 8 values that meet each i32 lane of the two (the weights'
/// offset of 8), written by [`write_q4_0_prepared`].
pub(crate) fn prep_q4_0(a: &[BlockQ8_0], out: &mut [u8]) {
    debug_assert!(out.len() >= prep_q4_0_bytes(a.len()));
    write_q4_0_prepared(a, out, PREP_Q4_0_HEAD, 2);
}

/// Q4_0 × Q8_0 for [`GEMV_ROWS`] rows ([`crate::arch::x86::common`]) on activations prepared once per row
/// ([`prep_q4_0`]): the activation
/// side of a step (8 blocks) is 12 32-byte loads instead of 8 paired loads, 4 dot
/// products and the scales' gather for each group of rows; each block's integer sum and
/// scale are those the kernel formed when it prepared them per call. In L1, one core (`dot_min`): see kernels/README.md.
/// The body of [`rows_q4_0_prepared`] with `$dp(acc, u, s)` adding the products of 4
/// unsigned bytes `u` and 4 signed bytes `s` per int32 lane, and `$tail` for the last
/// blocks: the AVX-VNNI level ([`crate::arch::x86::avxvnni::gemv`]) expands it with
/// `vpdpbusd`.
macro_rules! q4_0_prepared_body {
    ($rows:expr, $a:expr, $prep:expr, $dp:expr, $tail:path) => {{
        let (rows, a, prep): (
            [&[$crate::format::blocks::BlockQ4_0]; $crate::contract::gemv::GEMV_ROWS],
            &[$crate::format::blocks::BlockQ8_0],
            &[u8],
        ) = ($rows, $a, $prep);
        let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
        assert!(
            prep.len() >= $crate::arch::x86::avx2::gemv::prep_q4_0_bytes(n),
            "prepared Q4_0 activations: {} bytes for {n} blocks",
            prep.len()
        );
        let dp = $dp;
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); $crate::contract::gemv::GEMV_ROWS];
        let wp: [*const $crate::format::blocks::BlockQ4_0; $crate::contract::gemv::GEMV_ROWS] =
            std::array::from_fn(|r| rows[r].as_ptr());
        let ahead = wp[$crate::contract::gemv::GEMV_ROWS - 1]
            .wrapping_add(n)
            .cast::<i8>();
        const STEP_BYTES: usize = $crate::contract::gemv::GEMV_ROWS
            * 8
            * std::mem::size_of::<$crate::format::blocks::BlockQ4_0>();
        let mut b = 0;
        while b + 8 <= n {
            for l in (0..STEP_BYTES).step_by(64) {
                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(b / 8 * STEP_BYTES + l));
            }
            // SAFETY (all reads below): b + 8 <= n, every row holds ≥ n blocks, and `prep`
            // holds ≥ n / 8 groups of 416 bytes (checked above).
            unsafe {
                let pp = prep
                    .as_ptr()
                    .add(b / 8 * $crate::arch::x86::avx2::gemv::PREP_Q4_0_GROUP);
                let dy = _mm256_loadu_ps(pp.cast());
                let s: [__m256; $crate::contract::gemv::GEMV_ROWS] = std::array::from_fn(|r| {
                    let x = wp[r].add(b);
                    _mm256_mul_ps(
                        $crate::arch::x86::common::f16x8(std::array::from_fn(|k| (*x.add(k)).d)),
                        dy,
                    )
                });
                for p in 0..4 {
                    let ld = |o: usize| _mm256_loadu_si256(pp.add(32 + 96 * p + o).cast());
                    let (ylo, yhi, c) = (ld(0), ld(32), ld(64));
                    let k = 2 * p as i32;
                    let idx = _mm256_setr_epi32(k, k, k, k, k + 1, k + 1, k + 1, k + 1);
                    for r in 0..$crate::contract::gemv::GEMV_ROWS {
                        let w0 = (*wp[r].add(b + 2 * p)).qs.as_ptr();
                        let w1 = (*wp[r].add(b + 2 * p + 1)).qs.as_ptr();
                        let v = _mm256_loadu2_m128i(w1.cast(), w0.cast());
                        let lo = _mm256_and_si256(v, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                        let i = dp(dp(c, lo, ylo), hi, yhi);
                        let sc = _mm256_permutevar8x32_ps(s[r], idx);
                        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), sc, acc[r]);
                    }
                }
            }
            b += 8;
        }
        let mut out: [f32; $crate::contract::gemv::GEMV_ROWS] =
            std::array::from_fn(|r| $crate::arch::x86::common::hsum(acc[r]));
        // The last blocks (fewer than 8), one at a time.
        if b < n {
            let tail = $tail(std::array::from_fn(|r| &rows[r][b..n]), &a[b..n]);
            for r in 0..$crate::contract::gemv::GEMV_ROWS {
                out[r] += tail[r];
            }
        }
        out
    }};
}
pub(crate) use q4_0_prepared_body;

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_q4_0_prepared(
    rows: [&[BlockQ4_0]; GEMV_ROWS],
    a: &[BlockQ8_0],
    prep: &[u8],
) -> [f32; GEMV_ROWS] {
    let ones = _mm256_set1_epi16(1);
    let dp = |acc: __m256i, u: __m256i, s: __m256i| {
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones))
    };
    q4_0_prepared_body!(rows, a, prep, dp, rows_q4_0_tail)
}
