//! AVX-512 (F/BW/VL + VNNI, and BF16 where present) kernels. Each is checked against
//! the scalar reference by `tests/kernels_dot.rs`.
//!
//! Int8 dot products use VNNI's `vpdpbusd` (unsigned × signed bytes, 4 products summed
//! into each int32 lane): |x| as the unsigned side with x's sign moved onto y.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::avx2::{fp16, fp16_mul, hsum, rows_blockwise, scaled_sum};
use super::rows::q4_0_rows_tail;
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

/// [`super::rows::q4_0_rows_tail`] with `vpdpbusd`: the last (< 8) blocks of [`rows_q4_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows_q4_0_tail(rows: [&[BlockQ4_0]; ROWS], a: &[BlockQ8_0]) -> [f32; ROWS] {
    let dp = |acc: __m256i, u: __m256i, s: __m256i| _mm256_dpbusd_epi32(acc, u, s);
    q4_0_rows_tail!(rows, a, dp)
}

/// Weight rows per tile call: 8 int32 + 8 sub-block + 8 running float accumulators and
/// the activation vector fit the 32 zmm registers.
pub(super) const TILE_ROWS: usize = 8;

/// The tile micro-kernel (see [`crate::tile`]): [`TILE_ROWS`] decoded weight rows × 16
/// tokens per group. Activations are unsigned (`a + 128`), the weights' `corr` =
/// `-128·Σq` starts each sub-block's int32 sum, so `vpdpbusd` (u8 × i8, exact in int32)
/// yields `Σ q·a`. Per sub-block: convert and scale by `d·sc` (a broadcast from memory);
/// per block: add the mins term (`vpdpwssd` of the sub-block sums of a with the mins), then
/// multiply by the tokens' scales into the running sums, and add the offset term
/// (`m · s8`, Q4_1/Q5_1).
///
/// # Safety
/// The CPU must have the features enabled below, and `job` must pass
/// `job.check::<W>(TILE_ROWS)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile<W: crate::tile::TileScheme>(mut job: crate::tile::TileJob<'_>) {
    const R: usize = TILE_ROWS;
    let qk = W::QK;
    let nsub = qk / W::SUB;
    let dwords = W::SUB / 4;
    let bb = crate::tile::act_block_bytes(qk, W::SUB, W::MINS, W::OFFSET);
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
        let per_block = p.per_block.as_ptr();
        for g in 0..job.groups {
            let acts = job.acts.as_ptr().add(g * job.group_stride);
            let mut acc = load_group(&job, g);
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
                        let nd = _mm512_set1_ps(*per_block.add(b * R + r));
                        sub_f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(msum[r]), nd, sub_f[r]);
                    }
                }
                let dy = _mm512_loadu_ps(a.add(crate::tile::GROUP * qk).cast());
                for r in 0..R {
                    acc[r] = _mm512_fmadd_ps(sub_f[r], dy, acc[r]);
                }
                if W::OFFSET {
                    // + m · s8: the weights' offset times the tokens' stored scaled sums.
                    let sy = _mm512_loadu_ps(a.add(crate::tile::GROUP * (qk + 4)).cast());
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let m = _mm512_set1_ps(*per_block.add(b * R + r));
                        *acc = _mm512_fmadd_ps(m, sy, *acc);
                    }
                }
            }
            store_group(&acc, &mut job, g);
        }
    }
}

/// Group `g`'s sums (`acc[r]` lane t: row r, token t) to `y` (the last panel, transposed)
/// or back to `out`.
///
/// # Safety
/// `job` must pass its kernel's check.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn store_group(acc: &[__m512; TILE_ROWS], job: &mut crate::tile::TileJob<'_>, g: usize) {
    // SAFETY: the check bounds every row's 16 floats of group g in `out` and the rows ×
    // tokens written to `y`.
    unsafe {
        match job.y {
            Some(y) => {
                let t = y.t0 + crate::tile::GROUP * g;
                let tokens = y.n_tokens.saturating_sub(t).min(crate::tile::GROUP);
                if tokens > 0 {
                    let at = y.ptr.add(t * y.stride + y.col);
                    store_transposed(acc, at, y.stride, job.rows, tokens);
                }
            }
            None => {
                let out = job.out.as_mut_ptr().add(crate::tile::GROUP * g);
                for (r, acc) in acc.iter().enumerate().take(job.rows) {
                    _mm512_storeu_ps(out.add(r * job.out_stride), *acc);
                }
            }
        }
    }
}

/// The running sums of group `g` at the start of a panel: zero for the first, else the
/// values the previous panel left in `out`.
///
/// # Safety
/// `job` must pass its kernel's check.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn load_group(job: &crate::tile::TileJob<'_>, g: usize) -> [__m512; TILE_ROWS] {
    let mut acc = [_mm512_setzero_ps(); TILE_ROWS];
    if !job.first {
        // SAFETY: the check bounds every valid row's 16 floats of group g in `out`.
        let out = unsafe { job.out.as_ptr().add(crate::tile::GROUP * g) };
        for (r, acc) in acc.iter_mut().enumerate().take(job.rows) {
            // SAFETY: as above.
            *acc = unsafe { _mm512_loadu_ps(out.add(r * job.out_stride)) };
        }
    }
    acc
}

/// The F32 / F16 tile (see [`crate::tile`]): [`TILE_ROWS`] rows × 16 tokens per group, the
/// rows' f32 values in the panel as `[k][R]` (one 32-byte line per k), the activations as
/// `[k][16 tokens]`. Per element: one activation load and one FMA per row with the weight
/// broadcast from the panel (`vfmadd231ps zmm, zmm, dword [mem]{1to16}`), so each weight
/// is read once per 16 tokens. Eight independent accumulators cover the FMA latency.
///
/// # Safety
/// The CPU must have the features enabled below, and `job` must pass
/// `job.check_float(TILE_ROWS, 1, 4)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile_f32(mut job: crate::tile::TileJob<'_>) {
    const R: usize = TILE_ROWS;
    let n = job.w.n_blocks;
    // SAFETY: `check_float` bounds the activations (n · 64 bytes per group) and the
    // outputs; k < n ≤ FLOAT_PANEL words per row in the panel.
    unsafe {
        let wv = job.w.words.as_ptr().cast::<f32>();
        for g in 0..job.groups {
            let acts = job.acts.as_ptr().add(g * job.group_stride).cast::<f32>();
            let mut acc = load_group(&job, g);
            for k in 0..n {
                let av = _mm512_loadu_ps(acts.add(crate::tile::GROUP * k));
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(*wv.add(k * R + r)), av, *acc);
                }
            }
            store_group(&acc, &mut job, g);
        }
    }
}

/// The BF16 tile: as [`tile_f32`] with `vdpbf16ps`, which multiplies a pair of bf16 per
/// lane and adds both products to the f32 lane: the panel holds the rows' pairs
/// (`[k/2][R]`, broadcast per row), the activations the tokens' pairs. An odd last element
/// is widened to the pair (a, 0) against the panel's (w, 0).
///
/// # Safety
/// The CPU must have the features enabled below, and `job` must pass
/// `job.check_float(TILE_ROWS, 2, 2)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
pub(super) unsafe fn tile_bf16(mut job: crate::tile::TileJob<'_>) {
    const R: usize = TILE_ROWS;
    let n = job.w.n_blocks;
    let pairs = n / 2;
    let bh = |v: __m512i| -> __m512bh {
        // SAFETY: __m512bh is 32 bf16 in a 512-bit register, the same bits as __m512i.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    };
    // SAFETY: `check_float` bounds the activations (n · 32 bytes per group: the pairs' 64
    // bytes each, then the odd element's 32) and the outputs; the panel holds
    // ⌈n/2⌉ ≤ FLOAT_PANEL words per row.
    unsafe {
        let wv = job.w.words.as_ptr().cast::<i32>();
        for g in 0..job.groups {
            let acts = job.acts.as_ptr().add(g * job.group_stride);
            let mut acc = load_group(&job, g);
            for j in 0..pairs {
                let av = bh(_mm512_loadu_si512(acts.add(64 * j).cast()));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let w = bh(_mm512_set1_epi32(*wv.add(j * R + r)));
                    *acc = _mm512_dpbf16_ps(*acc, av, w);
                }
            }
            if n % 2 == 1 {
                let last = _mm256_loadu_si256(acts.add(64 * pairs).cast());
                let av = bh(_mm512_cvtepu16_epi32(last));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let w = bh(_mm512_set1_epi32(*wv.add(pairs * R + r)));
                    *acc = _mm512_dpbf16_ps(*acc, av, w);
                }
            }
            store_group(&acc, &mut job, g);
        }
    }
}

/// 8 rows × 8 words → 8 words × 8 rows (`out[j]` lane r = `v[r]` lane j): unpack and
/// shuffle within 128-bit lanes, then swap the lanes' halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(v: [__m256; 8]) -> [__m256; 8] {
    let lo = |a: usize| _mm256_unpacklo_ps(v[a], v[a + 1]);
    let hi = |a: usize| _mm256_unpackhi_ps(v[a], v[a + 1]);
    let t = [lo(0), hi(0), lo(2), hi(2), lo(4), hi(4), lo(6), hi(6)];
    // tt[c]: element c (lane 0) and c + 4 (lane 1) of rows 0..4; tt[4 + c]: rows 4..8.
    let tt = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    std::array::from_fn(|j| match j {
        0..4 => _mm256_permute2f128_ps::<0x20>(tt[j], tt[j + 4]),
        _ => _mm256_permute2f128_ps::<0x31>(tt[j - 4], tt[j]),
    })
}

/// Fills `p.words` (`[k][R]`, R = [`TILE_ROWS`]) with `n_words` words per row: `load(r, k)`
/// gives the 8 words of row r from word k, for k + 8 ≤ `simd_words` (rows past `rows` are
/// zero), `word(r, k)` one word, for the rest.
#[inline(always)]
fn pack_words(
    p: &mut crate::tile::PackedRows,
    rows: usize,
    (n_words, simd_words): (usize, usize),
    load: impl Fn(usize, usize) -> __m256,
    word: impl Fn(usize, usize) -> u32,
) {
    const R: usize = TILE_ROWS;
    assert!(rows <= R && n_words <= crate::tile::FLOAT_PANEL);
    let mut k = 0;
    // SAFETY (intrinsics): only inlined into AVX-512 target-feature functions.
    unsafe {
        while k + 8 <= simd_words.min(n_words) {
            let v = std::array::from_fn(|r| {
                if r < rows {
                    load(r, k)
                } else {
                    _mm256_setzero_ps()
                }
            });
            for (j, t) in transpose8(v).into_iter().enumerate() {
                let dst = &mut p.words[(k + j) * R..(k + j + 1) * R];
                _mm256_storeu_ps(dst.as_mut_ptr().cast(), t);
            }
            k += 8;
        }
    }
    for k in k..n_words {
        for r in 0..R {
            p.words[k * R + r] = if r < rows { word(r, k) } else { 0 };
        }
    }
}

/// The F32 panel: rows' values `b0..b0 + n` as they are.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn pack_f32(
    p: &mut crate::tile::PackedRows,
    rows: &[&[f32]],
    b0: usize,
    n: usize,
    tile_rows: usize,
) {
    assert!(tile_rows == TILE_ROWS && rows.iter().all(|r| r.len() >= b0 + n));
    p.n_blocks = n;
    pack_words(
        p,
        rows.len(),
        (n, n),
        // SAFETY: k + 8 ≤ n, and every row holds b0 + n values.
        |r, k| unsafe { _mm256_loadu_ps(rows[r].as_ptr().add(b0 + k)) },
        |r, k| rows[r][b0 + k].to_bits(),
    );
}

/// The F16 panel: rows' values `b0..b0 + n` converted to f32 (`vcvtph2ps`, exact).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn pack_f16(
    p: &mut crate::tile::PackedRows,
    rows: &[&[f16]],
    b0: usize,
    n: usize,
    tile_rows: usize,
) {
    assert!(tile_rows == TILE_ROWS && rows.iter().all(|r| r.len() >= b0 + n));
    p.n_blocks = n;
    pack_words(
        p,
        rows.len(),
        (n, n),
        // SAFETY: k + 8 ≤ n, and every row holds b0 + n values (8 f16 = 16 bytes).
        |r, k| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(rows[r].as_ptr().add(b0 + k).cast())) },
        |r, k| fp16(rows[r][b0 + k]).to_bits(),
    );
}

/// The BF16 panel: rows' values `b0..b0 + n` as pairs (element b0 + 2j in the low half of
/// word j), an odd last element paired with zero.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn pack_bf16(
    p: &mut crate::tile::PackedRows,
    rows: &[&[bf16]],
    b0: usize,
    n: usize,
    tile_rows: usize,
) {
    assert!(tile_rows == TILE_ROWS && rows.iter().all(|r| r.len() >= b0 + n));
    p.n_blocks = n;
    let bits = |r: usize, k: usize| {
        if k < n {
            rows[r][b0 + k].to_bits() as u32
        } else {
            0
        }
    };
    pack_words(
        p,
        rows.len(),
        (n.div_ceil(2), n / 2),
        // SAFETY: word k + 8 ≤ n / 2, so elements up to b0 + 2k + 16 ≤ b0 + n are read.
        |r, k| unsafe { _mm256_loadu_ps(rows[r].as_ptr().add(b0 + 2 * k).cast()) },
        |r, k| bits(r, 2 * k) | (bits(r, 2 * k + 1) << 16),
    );
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

/// Header bytes (the 8 scales, then zeros) of [`rows_q4_0`]'s layout per group of 8 blocks.
const PREP_Q4_0_HEAD: usize = 64;

/// Bytes of [`rows_q4_0`]'s activation layout per group of 8 blocks (448).
const PREP_Q4_0_GROUP: usize = super::rows::q4_0_prepared_group(PREP_Q4_0_HEAD);

/// Bytes of [`rows_q4_0`]'s layout for an activation row of `n` blocks (the
/// last `n % 8` blocks are read from the blocks themselves).
pub(super) fn prep_q4_0_bytes(n: usize) -> usize {
    n / 8 * PREP_Q4_0_GROUP
}

/// Writes [`rows_q4_0`]'s layout: per group of 8 activation blocks, 448 bytes:
/// the 8 scales d_y as f32 (then 32 zero bytes), and for each half (blocks 4p .. 4p + 4)
/// the four blocks' first 16 values (64 bytes, block j in 128-bit lane j), their last 16
/// (64 bytes), and the 16 i32 −8·Σ of the 8 values that meet each i32 lane of the two
/// (the weights' offset of 8), written by [`super::rows::write_q4_0_prepared`].
pub(super) fn prep_q4_0(a: &[BlockQ8_0], out: &mut [u8]) {
    debug_assert!(out.len() >= prep_q4_0_bytes(a.len()));
    super::rows::write_q4_0_prepared(a, out, PREP_Q4_0_HEAD, 4);
}

/// The Q4_0 arithmetic of [`super::rows`] on 512-bit vectors, on activations prepared
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
pub(super) fn rows_q4_0(rows: [&[BlockQ4_0]; ROWS], a: &[BlockQ8_0], prep: &[u8]) -> [f32; ROWS] {
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
    let mut acc = [_mm512_setzero_ps(); ROWS];
    let wp: [*const BlockQ4_0; ROWS] = std::array::from_fn(|r| rows[r].as_ptr());
    let ahead = wp[ROWS - 1].wrapping_add(n).cast::<i8>();
    const STEP_BYTES: usize = ROWS * 8 * std::mem::size_of::<BlockQ4_0>();
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
            for r in 0..ROWS {
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
    let mut out: [f32; ROWS] = std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]));
    // The last blocks (fewer than 8) through the 256-bit kernel's tail.
    if b < n {
        let tail = rows_q4_0_tail(std::array::from_fn(|r| &rows[r][b..n]), &a[b..n]);
        for r in 0..ROWS {
            out[r] += tail[r];
        }
    }
    out
}
