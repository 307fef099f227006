//! AVX-512 (F/BW/VL + VNNI, and BF16 where present) kernels. Each is checked against
//! the scalar reference by `tests/kernels_dot.rs`.
//!
//! Int8 dot products use VNNI's `vpdpbusd` (unsigned × signed bytes, 4 products summed
//! into each int32 lane): |x| as the unsigned side with x's sign moved onto y.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::avx2::{f16x8, fp16, fp16_mul, hsum, rows_blockwise, scaled_sum};
use super::rows::q4_0_rows;
use super::ROWS;
use crate::blocks::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
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
pub(super) fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
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
pub(super) fn dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
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
pub(super) fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
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
pub(super) fn rows_q8_0(rows: [&[BlockQ8_0]; ROWS], a: &[BlockQ8_0]) -> [f32; ROWS] {
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

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
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

/// [`super::rows::q4_0_rows`] with `vpdpbusd` on 256-bit vectors: the last (< 8) blocks
/// of [`rows_q4_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows_q4_0_ymm(rows: [&[BlockQ4_0]; ROWS], a: &[BlockQ8_0]) -> [f32; ROWS] {
    let dp = |acc: __m256i, u: __m256i, s: __m256i| _mm256_dpbusd_epi32(acc, u, s);
    // The 8 scales of 8 consecutive 18-byte blocks are the 16-bit words 0, 9, 18, … 63 of
    // their first 128 bytes: two loads and one two-source word permute, instead of eight
    // scalar loads merged in general registers.
    let idx = _mm512_castsi128_si512(_mm_setr_epi16(0, 9, 18, 27, 36, 45, 54, 63));
    let wd = |p: *const BlockQ4_0| {
        // SAFETY: the macro passes pointers to 8 readable blocks = 144 bytes ≥ 128.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(p.cast()),
                _mm512_loadu_si512(p.cast::<u8>().add(64).cast()),
            )
        };
        let d = _mm512_permutex2var_epi16(lo, idx, hi);
        _mm256_cvtph_ps(_mm512_castsi512_si128(d))
    };
    q4_0_rows!(rows, a, dp, wd)
}

/// Weight rows per tile call: 8 int32 + 8 sub-block + 8 running float accumulators and
/// the activation vector fit the 32 zmm registers.
pub(super) const TILE_ROWS: usize = 8;

/// The tile micro-kernel (see [`crate::tile`]): [`TILE_ROWS`] decoded weight rows × 16
/// tokens per group. Activations are unsigned (`a + 128`), the weights' `corr` =
/// `-128·Σq` starts each sub-block's int32 sum, so `vpdpbusd` (u8 × i8, exact in int32)
/// yields `Σ q·a`. Per sub-block: convert and scale by `d·sc` (a broadcast from memory);
/// per block: add the mins term (`vpdpwssd` of the sub-block sums of a with the mins), then
/// multiply by the tokens' scales into the running sums.
///
/// # Safety
/// The CPU must have the features enabled below, and `job` must pass
/// `job.check::<W>(TILE_ROWS)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile<W: crate::tile::TileScheme>(job: crate::tile::TileJob<'_>) {
    const R: usize = TILE_ROWS;
    let qk = W::QK;
    let nsub = qk / W::SUB;
    let dwords = W::SUB / 4;
    let bb = crate::tile::act_block_bytes(qk, W::SUB, W::MINS);
    let p = job.w;
    let n_blocks = p.n_blocks;
    // SAFETY (every pointer below): `check` guarantees that each group's `n_blocks`
    // activation blocks lie inside `job.acts` and each valid row's 16 floats per group
    // inside `job.out`; the panel indices are bounded by `n_blocks · QK ≤ PANEL` and
    // R ≤ MAX_TILE_ROWS, the sizes of the `PackedRows` arrays.
    unsafe {
        let q = p.q.as_ptr();
        let dsc = p.dsc.as_ptr();
        let corr = p.corr.as_ptr();
        let mins = p.mins.as_ptr().cast::<i32>();
        let neg_dmin = p.neg_dmin.as_ptr();
        for g in 0..job.groups {
            let acts = job.acts.as_ptr().add(g * job.group_stride);
            let out = job.out.as_mut_ptr().add(crate::tile::GROUP * g);
            let mut acc = [_mm512_setzero_ps(); R];
            if !job.first {
                for (r, acc) in acc.iter_mut().enumerate().take(job.rows) {
                    *acc = _mm512_loadu_ps(out.add(r * job.out_stride));
                }
            }
            for b in 0..n_blocks {
                let a = acts.add(b * bb);
                let wq = q.add(b * R * qk);
                let mut sub_f = [_mm512_setzero_ps(); R];
                for s in 0..nsub {
                    let at = (b * nsub + s) * R;
                    let mut sum = [_mm512_setzero_si512(); R];
                    for (r, sum) in sum.iter_mut().enumerate() {
                        *sum = _mm512_set1_epi32(*corr.add(at + r));
                    }
                    for j in s * dwords..(s + 1) * dwords {
                        let av = _mm512_loadu_si512(a.add(64 * j).cast());
                        for (r, sum) in sum.iter_mut().enumerate() {
                            let wv = (wq.add(r * qk + 4 * j) as *const i32).read_unaligned();
                            *sum = _mm512_dpbusd_epi32(*sum, av, _mm512_set1_epi32(wv));
                        }
                    }
                    for r in 0..R {
                        let f = _mm512_cvtepi32_ps(sum[r]);
                        let d = _mm512_set1_ps(*dsc.add(at + r));
                        sub_f[r] = if s == 0 {
                            _mm512_mul_ps(f, d)
                        } else {
                            _mm512_fmadd_ps(f, d, sub_f[r])
                        };
                    }
                }
                if W::MINS {
                    let sums = a.add(crate::tile::GROUP * (qk + 4));
                    let m = mins.add(b * R * nsub / 2);
                    let mut msum = [_mm512_setzero_si512(); R];
                    for j in 0..nsub / 2 {
                        let sv = _mm512_loadu_si512(sums.add(64 * j).cast());
                        for (r, msum) in msum.iter_mut().enumerate() {
                            let mv = m.add(r * nsub / 2 + j).read_unaligned();
                            *msum = _mm512_dpwssd_epi32(*msum, sv, _mm512_set1_epi32(mv));
                        }
                    }
                    for r in 0..R {
                        let nd = _mm512_set1_ps(*neg_dmin.add(b * R + r));
                        sub_f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(msum[r]), nd, sub_f[r]);
                    }
                }
                let dy = _mm512_loadu_ps(a.add(crate::tile::GROUP * qk).cast());
                for r in 0..R {
                    acc[r] = _mm512_fmadd_ps(sub_f[r], dy, acc[r]);
                }
            }
            match job.y {
                Some(y) => {
                    let t = y.t0 + crate::tile::GROUP * g;
                    let tokens = y.n_tokens.saturating_sub(t).min(crate::tile::GROUP);
                    if tokens > 0 {
                        let at = y.ptr.add(t * y.stride + y.col);
                        store_transposed(&acc, at, y.stride, job.rows, tokens);
                    }
                }
                None => {
                    for (r, acc) in acc.iter().enumerate().take(job.rows) {
                        _mm512_storeu_ps(out.add(r * job.out_stride), *acc);
                    }
                }
            }
        }
    }
}

/// Writes `acc[r]` lane `t` (row r, token t) to `y[t · stride + r]` for `r < rows` and
/// `t < tokens`: an 8 × 16 transpose in registers (the classic unpack / shuffle steps within
/// 128-bit lanes, then one two-source permute per pair of tokens), then 8-float masked stores.
///
/// # Safety
/// `y` must be valid for those writes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn store_transposed(
    acc: &[__m512; TILE_ROWS],
    y: *mut f32,
    stride: usize,
    rows: usize,
    tokens: usize,
) {
    // Per 128-bit lane L (tokens 4L..4L+4): t01 = [r0[0] r1[0] r0[1] r1[1]], …
    let lo = |a: usize| _mm512_unpacklo_ps(acc[a], acc[a + 1]);
    let hi = |a: usize| _mm512_unpackhi_ps(acc[a], acc[a + 1]);
    let (l01, h01, l23, h23) = (lo(0), hi(0), lo(2), hi(2));
    let (l45, h45, l67, h67) = (lo(4), hi(4), lo(6), hi(6));
    // quad[c]: token 4L + c of rows 0..4 in lane L; quad[4 + c]: rows 4..8.
    let quad = [
        _mm512_shuffle_ps::<0x44>(l01, l23),
        _mm512_shuffle_ps::<0xEE>(l01, l23),
        _mm512_shuffle_ps::<0x44>(h01, h23),
        _mm512_shuffle_ps::<0xEE>(h01, h23),
        _mm512_shuffle_ps::<0x44>(l45, l67),
        _mm512_shuffle_ps::<0xEE>(l45, l67),
        _mm512_shuffle_ps::<0x44>(h45, h67),
        _mm512_shuffle_ps::<0xEE>(h45, h67),
    ];
    // [token c (rows 0..8) | token 8 + c] from lanes 0 and 2; lanes 1 and 3 give 4 + c, 12 + c.
    let even = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    let odd = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    let mask: __mmask8 = ((1u32 << rows) - 1) as u8;
    let put = |t: usize, v: __m256| {
        if t < tokens {
            // SAFETY: t < tokens and at most `rows` floats: inside the caller's promise.
            unsafe { _mm256_mask_storeu_ps(y.add(t * stride), mask, v) };
        }
    };
    for c in 0..4 {
        for (v, t) in [
            (_mm512_permutex2var_ps(quad[c], even, quad[4 + c]), c),
            (_mm512_permutex2var_ps(quad[c], odd, quad[4 + c]), 4 + c),
        ] {
            put(t, _mm512_castps512_ps256(v));
            let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
            put(t + 8, _mm256_castpd_ps(high));
        }
    }
}

/// [`super::rows::q4_0_rows`]'s arithmetic on 512-bit vectors: four blocks per row per
/// step. Each row's four 16-byte nibble fields (18-byte stride, word-aligned) come from
/// two overlapping 64-byte loads and one two-source word permute (`vpermt2w`), 3
/// instructions where 256-bit vectors take 4 per two blocks. Zen 4 runs 512-bit
/// operations as two halves, so this saves instructions, not execution cycles: 32.5 vs
/// 30 GB/s per core in L1 (`--example dot_min`, 4 rows), and in-L1 variants measured
/// slower: four 16-byte loads + inserts (28.3), `vpermt2b` (same as `vpermt2w`); a GFNI
/// affine for the high nibbles (one instruction for shift + mask) measured 32.4-34.0
/// with identical inner loops in two builds, i.e. code placement, not a gain.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn rows_q4_0(rows: [&[BlockQ4_0]; ROWS], a: &[BlockQ8_0]) -> [f32; ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    let low = _mm512_set1_epi8(0x0F);
    let eights = _mm512_set1_epi8(8);
    let zero = _mm512_setzero_si512();
    // Byte k of 4 nibble fields: block j's qs at 18j + 2 .. 18j + 18 of a 72-byte run,
    // taken from A = run[0..64] (index < 64) or B = run[8..72] (index 64 + o − 8).
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
    let wd_idx = _mm512_castsi128_si512(_mm_setr_epi16(0, 9, 18, 27, 36, 45, 54, 63));
    let wd = |p: *const BlockQ4_0| {
        // SAFETY: callers pass pointers to 8 readable blocks = 144 bytes ≥ 128.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(p.cast()),
                _mm512_loadu_si512(p.cast::<u8>().add(64).cast()),
            )
        };
        _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(
            lo, wd_idx, hi,
        )))
    };
    let mut acc = [_mm512_setzero_ps(); ROWS];
    let ap = a.as_ptr();
    let wp: [*const BlockQ4_0; ROWS] = std::array::from_fn(|r| rows[r].as_ptr());
    let ahead = wp[ROWS - 1].wrapping_add(n).cast::<i8>();
    const STEP_BYTES: usize = ROWS * 8 * std::mem::size_of::<BlockQ4_0>();
    let mut b = 0;
    while b + 8 <= n {
        for l in (0..STEP_BYTES).step_by(64) {
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(b / 8 * STEP_BYTES + l));
        }
        // SAFETY (all reads below): b + 8 <= n, and every row and `a` hold ≥ n blocks.
        unsafe {
            let dy = f16x8(std::array::from_fn(|k| (*ap.add(b + k)).d));
            let s: [__m512; ROWS] = std::array::from_fn(|r| {
                _mm512_castps256_ps512(_mm256_mul_ps(wd(wp[r].add(b)), dy))
            });
            for p in 0..2 {
                let y: [*const i8; 4] =
                    std::array::from_fn(|j| (*ap.add(b + 4 * p + j)).qs.as_ptr());
                let ylo = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu2_m128i(y[1].cast(), y[0].cast())),
                    _mm256_loadu2_m128i(y[3].cast(), y[2].cast()),
                );
                let yhi = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu2_m128i(
                        y[1].add(16).cast(),
                        y[0].add(16).cast(),
                    )),
                    _mm256_loadu2_m128i(y[3].add(16).cast(), y[2].add(16).cast()),
                );
                let c = _mm512_sub_epi32(
                    zero,
                    _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, eights, ylo), eights, yhi),
                );
                let k = 4 * p as i32;
                let sidx = _mm512_setr_epi32(
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
                );
                for r in 0..ROWS {
                    let run = wp[r].add(b + 4 * p).cast::<u8>();
                    let va = _mm512_loadu_si512(run.cast());
                    let vb = _mm512_loadu_si512(run.add(8).cast());
                    let v = _mm512_permutex2var_epi16(va, qidx, vb);
                    let lo = _mm512_and_si512(v, low);
                    let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                    let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c, lo, ylo), hi, yhi);
                    let sc = _mm512_permutexvar_ps(sidx, s[r]);
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), sc, acc[r]);
                }
            }
        }
        b += 8;
    }
    let mut out: [f32; ROWS] = std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]));
    // The last blocks (fewer than 8) through the 256-bit kernel's tail.
    if b < n {
        let tail = rows_q4_0_ymm(std::array::from_fn(|r| &rows[r][b..n]), &a[b..n]);
        for r in 0..ROWS {
            out[r] += tail[r];
        }
    }
    out
}
