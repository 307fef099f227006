//! AVX2 multi-row kernels for matrix × vector: [`GEMV_ROWS`] weight rows · one activation row
//! (the block-wise driver, [`rows_blockwise`], for Q4_K and Q6_K; Q4_0 on activations
//! prepared once per row, see [`crate::arch::x86::common`]).

use std::arch::x86_64::*;

use super::dot::{step_iq4_xs, step_q5_k};
use super::{dot_i8x32, step_q4_k, step_q6_k};
use crate::arch::x86::common::{
    fp16_mul, hsum, iq4nl_table, load32, q4_0_prepared_group, q4_0_rows_tail, rows_blockwise,
    write_q4_0_prepared,
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

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_q4_k(rows: [&[BlockQ4_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    let init = (_mm256_setzero_ps(), 0.0f32);
    rows_blockwise(
        rows,
        a,
        init,
        |st, x, y| step_q4_k(st, x, y),
        |st| hsum(st.0) - st.1,
    )
}

/// Q5_K: the rows' super-blocks side by side (the one-row dot's steps).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_q5_k(rows: [&[BlockQ5_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    let init = (_mm256_setzero_ps(), 0.0f32);
    rows_blockwise(
        rows,
        a,
        init,
        |st, x, y| step_q5_k(st, x, y),
        |st| hsum(st.0) - st.1,
    )
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
