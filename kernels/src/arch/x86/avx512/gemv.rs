//! AVX-512 multi-row kernels for matrix × vector: [`GEMV_ROWS`] weight rows · one
//! activation row. Q4_0, Q4_K, Q5_K and IQ4_XS read a layout of the activations prepared
//! once per row (`prep_*`, see [`crate::contract::gemv::PreparedGemv`]) and share its
//! rearrangement, offset correction and scales between all groups of rows; Q8_0 and Q6_K
//! walk their rows together block by block.

use std::arch::x86_64::*;

use super::*;
use crate::arch::x86::common::{
    fp16_mul, hsum, k4_scales_mins, prefetch_next_rows, q4_0_prepared_group, q4_0_rows_tail,
    rows_blockwise, write_q4_0_prepared, K4Block,
};
use crate::contract::gemv::GEMV_ROWS;

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn rows_q8_0(rows: [&[BlockQ8_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    let step = |acc: &mut __m256, x: &BlockQ8_0, y: &BlockQ8_0| {
        // SAFETY: 32 readable bytes each; unaligned loads.
        let (qx, qy) = unsafe {
            (
                _mm256_loadu_si256(x.qs.as_ptr().cast()),
                _mm256_loadu_si256(y.qs.as_ptr().cast()),
            )
        };
        let p = _mm256_cvtepi32_ps(dot_i8x32(qx, qy));
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_mul(x.d, y.d)), p, *acc);
    };
    rows_blockwise(rows, a, _mm256_setzero_ps(), step, |v| hsum(v))
}

/// [`q4_0_rows_tail`] with `vpdpbusd`: the last (< 8) blocks of [`rows_q4_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows_q4_0_tail(rows: [&[BlockQ4_0]; GEMV_ROWS], a: &[BlockQ8_0]) -> [f32; GEMV_ROWS] {
    let dp = |acc: __m256i, u: __m256i, s: __m256i| _mm256_dpbusd_epi32(acc, u, s);
    q4_0_rows_tail!(rows, a, dp)
}

/// Header bytes (the 8 scales, then zeros) of [`rows_q4_0`]'s layout per group of 8 blocks.
const PREP_Q4_0_HEAD: usize = 64;

/// Bytes of [`rows_q4_0`]'s activation layout per group of 8 blocks (448).
const PREP_Q4_0_GROUP: usize = q4_0_prepared_group(PREP_Q4_0_HEAD);

/// Bytes of [`rows_q4_0`]'s layout for an activation row of `n` blocks (the
/// last `n % 8` blocks are read from the blocks themselves).
pub(crate) fn prep_q4_0_bytes(n: usize) -> usize {
    n / 8 * PREP_Q4_0_GROUP
}

/// Writes [`rows_q4_0`]'s layout: per group of 8 activation blocks, 448 bytes:
/// the 8 scales d_y as f32 (then 32 zero bytes), and for each half (blocks 4p .. 4p + 4)
/// the four blocks' first 16 values (64 bytes, block j in 128-bit lane j), their last 16
/// (64 bytes), and the 16 i32 −8·Σ of the 8 values that meet each i32 lane of the two
/// (the weights' offset of 8), written by [`write_q4_0_prepared`].
pub(crate) fn prep_q4_0(a: &[BlockQ8_0], out: &mut [u8]) {
    debug_assert!(out.len() >= prep_q4_0_bytes(a.len()));
    write_q4_0_prepared(a, out, PREP_Q4_0_HEAD, 4);
}

/// The Q4_0 arithmetic of [`crate::arch::x86::common`] on 512-bit vectors, on activations prepared
/// once per row ([`prep_q4_0`]): steps of 8 blocks, each in two halves of four blocks per
/// vector. Each row's four 16-byte nibble fields of a half (18-byte stride,
/// word-aligned) come from two overlapping 64-byte loads and one two-source word permute
/// (`vpermt2w`), 3 instructions where 256-bit vectors take 4 per two blocks, and its 8
/// scales from the first loads of the two halves (one more `vpermt2w`). The activation
/// side of a step is six 64-byte loads and one 32-byte load, where preparing it per call
/// took 16 16-byte loads, 12 inserts, 4 `vpdpbusd` and the scales' gather for each group
/// of rows. In L1, one core (`--example dot_min -- Q4_0`, 4 rows):
/// 37.5 GB/s, 32.7 when prepared per call. Zen 4 runs 512-bit operations as two halves,
/// so the wide vectors save instructions, not execution cycles; variants measured slower
/// in L1: four 16-byte loads + inserts, `vpermt2b` (same as `vpermt2w`); a GFNI affine
/// for the high nibbles (one instruction for shift + mask) was code placement, not a
/// gain. The last `n % 8` blocks go through the 256-bit tail.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn rows_q4_0(
    rows: [&[BlockQ4_0]; GEMV_ROWS],
    a: &[BlockQ8_0],
    prep: &[u8],
) -> [f32; GEMV_ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    assert!(
        prep.len() >= prep_q4_0_bytes(n),
        "prepared Q4_0 activations: {} bytes for {n} blocks",
        prep.len()
    );
    let low = _mm512_set1_epi8(0x0F);
    // Word k of 4 nibble fields: block j's qs are the 16-bit words 9j + 1 ..= 9j + 8 of a
    // 72-byte run, taken from A = run[0..64] (word < 32) or B = run[8..72] (word w is
    // B's word w − 4, index 32 + w − 4).
    let qidx: [u16; 32] = std::array::from_fn(|k| {
        let w = 9 * (k / 8) + 1 + k % 8;
        if w < 32 {
            w as u16
        } else {
            (32 + w - 4) as u16
        }
    });
    // SAFETY: 64 readable bytes.
    let qidx = unsafe { _mm512_loadu_si512(qidx.as_ptr().cast()) };
    // The 8 scales: word 9j of the first run's first load (blocks 0-3) and of the
    // second run's (blocks 4-7).
    let wd_idx = _mm512_castsi128_si512(_mm_setr_epi16(0, 9, 18, 27, 32, 41, 50, 59));
    let sidx = [0, 4].map(|k| {
        _mm512_setr_epi32(
            k,
            k,
            k,
            k,
            k + 1,
            k + 1,
            k + 1,
            k + 1,
            k + 2,
            k + 2,
            k + 2,
            k + 2,
            k + 3,
            k + 3,
            k + 3,
            k + 3,
        )
    });
    let mut acc = [_mm512_setzero_ps(); GEMV_ROWS];
    let wp: [*const BlockQ4_0; GEMV_ROWS] = std::array::from_fn(|r| rows[r].as_ptr());
    let ahead = wp[GEMV_ROWS - 1].wrapping_add(n).cast::<i8>();
    const STEP_BYTES: usize = GEMV_ROWS * 8 * std::mem::size_of::<BlockQ4_0>();
    let mut b = 0;
    while b + 8 <= n {
        for l in (0..STEP_BYTES).step_by(64) {
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(b / 8 * STEP_BYTES + l));
        }
        // SAFETY (all reads below): b + 8 <= n, every row holds ≥ n blocks, and `prep`
        // holds ≥ n / 8 groups of 448 bytes (checked above).
        unsafe {
            let pp = prep.as_ptr().add(b / 8 * PREP_Q4_0_GROUP);
            let dy = _mm256_loadu_ps(pp.cast());
            let ld = |o: usize| _mm512_loadu_si512(pp.add(o).cast());
            let ys = [0, 1].map(|p| (ld(64 + 192 * p), ld(128 + 192 * p), ld(192 + 192 * p)));
            for r in 0..GEMV_ROWS {
                let run = [wp[r].add(b).cast::<u8>(), wp[r].add(b + 4).cast::<u8>()];
                let va = run.map(|q| _mm512_loadu_si512(q.cast()));
                let vb = run.map(|q| _mm512_loadu_si512(q.add(8).cast()));
                let d16 = _mm512_permutex2var_epi16(va[0], wd_idx, va[1]);
                let s = _mm512_castps256_ps512(_mm256_mul_ps(
                    _mm256_cvtph_ps(_mm512_castsi512_si128(d16)),
                    dy,
                ));
                for p in 0..2 {
                    let (ylo, yhi, c) = ys[p];
                    let v = _mm512_permutex2var_epi16(va[p], qidx, vb[p]);
                    let lo = _mm512_and_si512(v, low);
                    let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                    let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c, lo, ylo), hi, yhi);
                    let sc = _mm512_permutexvar_ps(sidx[p], s);
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), sc, acc[r]);
                }
            }
        }
        b += 8;
    }
    let mut out: [f32; GEMV_ROWS] = std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]));
    // The last blocks (fewer than 8) through the 256-bit kernel's tail.
    if b < n {
        let tail = rows_q4_0_tail(std::array::from_fn(|r| &rows[r][b..n]), &a[b..n]);
        for r in 0..GEMV_ROWS {
            out[r] += tail[r];
        }
    }
    out
}

/// [`GEMV_ROWS`] Q6_K rows through [`rows_blockwise`] with [`step_q6_k`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn rows_q6_k(rows: [&[BlockQ6_K]; GEMV_ROWS], a: &[BlockQ8_K]) -> [f32; GEMV_ROWS] {
    rows_blockwise(
        rows,
        a,
        _mm256_setzero_ps(),
        |acc, x, y| step_q6_k(acc, x, y),
        |v| hsum(v),
    )
}

/// [`GEMV_ROWS`] Q4_K or Q5_K rows × one Q8_K row on 512-bit vectors, with the activation side
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
fn rows_k4<B: K4Block>(rows: [&[B]; GEMV_ROWS], a: &[BlockQ8_K], prep: &[u8]) -> [f32; GEMV_ROWS] {
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
    let mut acc = [_mm512_setzero_ps(); GEMV_ROWS];
    // Row r's mins term in 128-bit lane r.
    let mut acc_min = _mm512_setzero_ps();
    for b in 0..n {
        prefetch_next_rows(&rows, n, b);
        // SAFETY: b < n ≤ every row's length, and `prep` holds ≥ n super-blocks' 320
        // bytes (checked above).
        let (ys, pairs, x, dy) = unsafe {
            let pp = prep.as_ptr().add(b * PREP_K4_BLOCK);
            let ld = |o: usize| _mm512_loadu_si512(pp.add(o).cast());
            let ys = [ld(0), ld(64), ld(128), ld(192)];
            let pairs = _mm_loadu_si128(pp.add(256).cast());
            let dy = f32::from_ne_bytes(*pp.add(272).cast::<[u8; 4]>());
            let x: [&B; GEMV_ROWS] = [
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
        let sm: [(u64, u64); GEMV_ROWS] = [
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
        for r in 0..GEMV_ROWS {
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

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn rows_q4_k(
    rows: [&[BlockQ4_K]; GEMV_ROWS],
    a: &[BlockQ8_K],
    prep: &[u8],
) -> [f32; GEMV_ROWS] {
    rows_k4(rows, a, prep)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn rows_q5_k(
    rows: [&[BlockQ5_K]; GEMV_ROWS],
    a: &[BlockQ8_K],
    prep: &[u8],
) -> [f32; GEMV_ROWS] {
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
pub(crate) fn prep_k4_bytes(n: usize) -> usize {
    n * PREP_K4_BLOCK
}

/// Writes [`rows_k4`]'s layout: per Q8_K super-block, 320 bytes: the 256 values as the
/// four 64-byte vectors that meet a row's nibbles (vector 2h + o: values
/// 128h + 32o .. + 32, then 128h + 64 + 32o .. + 32), the 8 pair sums
/// bsums[2j] + bsums[2j + 1] as i16 (|·| ≤ 2·16·128 < 2^15), d as f32, zeros.
pub(crate) fn prep_k4(a: &[BlockQ8_K], out: &mut [u8]) {
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

/// IQ4_XS × Q8_K for [`GEMV_ROWS`] rows on 512-bit vectors. One 64-byte load of a row's
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
pub(crate) fn rows_iq4_xs(
    rows: [&[BlockIQ4_XS]; GEMV_ROWS],
    a: &[BlockQ8_K],
    prep: &[u8],
) -> [f32; GEMV_ROWS] {
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
    let mut acc = [_mm512_setzero_ps(); GEMV_ROWS];
    for b in 0..n {
        prefetch_next_rows(&rows, n, b);
        // SAFETY: b < n ≤ every row's length, and `prep` holds ≥ n super-blocks' 448
        // bytes (checked above).
        let (ys, c, x, dy) = unsafe {
            let pp = prep.as_ptr().add(b * PREP_IQ4_XS_BLOCK);
            let ld = |o: usize| _mm512_loadu_si512(pp.add(o).cast());
            let ys = [ld(0), ld(64), ld(128), ld(192)];
            let c = [ld(256), ld(320)];
            let dy = f32::from_ne_bytes(*pp.add(384).cast::<[u8; 4]>());
            let x: [&BlockIQ4_XS; GEMV_ROWS] = [
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
        for r in 0..GEMV_ROWS {
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
pub(crate) fn prep_iq4_xs_bytes(n: usize) -> usize {
    n * PREP_IQ4_XS_BLOCK
}

/// Writes [`rows_iq4_xs`]'s layout: per Q8_K super-block, 448 bytes: the 256 values as
/// the four 64-byte vectors that meet a row's nibbles (vector 2h + s holds, in 128-bit
/// lane j, values 128h + 32j + 16s .. + 16), then for each half h the 16 i32 −128·Σ of
/// the 8 values that meet each i32 element of vectors 2h and 2h + 1, d as f32, zeros.
pub(crate) fn prep_iq4_xs(a: &[BlockQ8_K], out: &mut [u8]) {
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
