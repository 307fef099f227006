//! AVX-VNNI multi-row kernels for matrix × vector: the AVX2 ones
//! ([`crate::arch::x86::avx2::gemv`]) with `vpdpbusd` for their integer products.

use std::arch::x86_64::*;

use crate::arch::x86::avx2::dot::iq4_xs_step;
use crate::arch::x86::avx2::gemv::q4_0_prepared_body;
use crate::arch::x86::common::{
    fp16_mul, hsum, iq4nl_table, load32, q4_0_rows_tail, rows_blockwise,
};
use crate::contract::gemv::GEMV_ROWS;
use crate::format::blocks::*;

/// 32 signed × 32 signed int8 → 8 int32 partial sums: |x| (unsigned) · (y with x's sign).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(
        _mm256_setzero_si256(),
        _mm256_sign_epi8(x, x),
        _mm256_sign_epi8(y, x),
    )
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) fn rows_q8_0(rows: [&[BlockQ8_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    let step = |acc: &mut __m256, x: &BlockQ8_0, y: &BlockQ8_0| {
        let p = _mm256_cvtepi32_ps(dot_i8x32(load32(&x.qs), load32(&y.qs)));
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_mul(x.d, y.d)), p, *acc);
    };
    rows_blockwise(rows, a, _mm256_setzero_ps(), step, |v| hsum(v))
}

/// The last (< 8) blocks of [`rows_q4_0_prepared`], one at a time.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn rows_q4_0_tail(rows: [&[BlockQ4_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    let dp = |acc: __m256i, u: __m256i, s: __m256i| _mm256_dpbusd_avx_epi32(acc, u, s);
    q4_0_rows_tail!(rows, a, dp)
}

/// Q4_0 × Q8_0 for [`GEMV_ROWS`] rows on activations prepared once per row by
/// [`crate::arch::x86::avx2::gemv::prep_q4_0`] (the same layout as AVX2's).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) fn rows_q4_0_prepared(
    rows: [&[BlockQ4_0]; GEMV_ROWS],
    a: &[BlockQ8_0],
    prep: &[u8],
) -> [f32; GEMV_ROWS] {
    let dp = |acc: __m256i, u: __m256i, s: __m256i| _mm256_dpbusd_avx_epi32(acc, u, s);
    q4_0_prepared_body!(rows, a, prep, dp, rows_q4_0_tail)
}

/// IQ4_XS: the rows' super-blocks side by side, AVX2's step with `vpdpbusd`.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) fn rows_iq4_xs(rows: [&[BlockIQ4_XS]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    let table = iq4nl_table();
    let step = |acc: &mut __m256, x: &BlockIQ4_XS, y: &BlockQ8_K| {
        iq4_xs_step!(acc, table, x, y, dot_i8x32)
    };
    rows_blockwise(rows, a, _mm256_setzero_ps(), step, |v| hsum(v))
}
