//! The AVX-512 tile micro-kernels for batches (see [`crate::contract::gemm`]): the
//! integer one on `vpdpbusd`, F32/F16 weights on FMA, BF16 on `vdpbf16ps`, and the float
//! panels' packing.

use std::any::TypeId;
use std::arch::x86_64::*;

use super::gemv_iq::{unpack_iq2_s, unpack_iq3_s, unpack_iq3_xxs};
use crate::format::blocks::{BlockIQ2_S, BlockIQ3_S, BlockIQ3_XXS};

use crate::arch::x86::common::{fp16, sum_i8};
use crate::contract::gemm::{
    act_block_bytes, GemmJob, GemmWeight, PackedPanel, FLOAT_PANEL, TOKEN_GROUP,
};

use half::{bf16, f16};

/// Weight rows per float tile call: 8 accumulators of 16 tokens and the activation
/// vector.
pub(crate) const TILE_ROWS: usize = 8;

/// Weight rows per integer tile call. Each weight broadcast meets three token groups
/// ([`GROUPS`]): `vpdpbusd` fed from registers runs faster here than with an embedded
/// broadcast (`{1to16}` from memory), and every load costs (7 loads per 12 `vpdpbusd` at
/// 4 × 3, against 8 at 6 × 2 and 9 per 8 at 8 × 1); 4 rows × 3 groups × (int32 sum + float
/// sum) = 24 zmm leave room for the three activation vectors and the broadcast. Measured
/// (gemm_min TILES_ONLY=1, alternating): 4 × 3 is 1-5 % faster than 6 × 2, which is
/// 3-12 % faster than 8 × 1.
pub(crate) const INT_TILE_ROWS: usize = 4;

/// Token groups per integer tile step.
const GROUPS: usize = 3;

/// The integer tile micro-kernel (see [`crate::contract::gemm`]): [`INT_TILE_ROWS`] decoded
/// weight rows × 16 tokens per group, [`GROUPS`] groups at a time. Activations are unsigned
/// (`a + 128`), the weights' `corr` = `-128·Σq` starts each sub-block's int32 sum, so
/// `vpdpbusd` (u8 × i8, exact in int32) yields `Σ q·a`.
///
/// One sub-block per block (Q4_0, Q8_0, …): convert, scale by `d` (a broadcast) times the
/// tokens' scales, add to the running sums (in registers), and add the offset term
/// (`m · s8`, Q4_1/Q5_1). Several (K-quants, IQ types): per sub-block convert and
/// accumulate with `d·sc` into the block's float sums (in registers); per block add the
/// mins term (`vpdpwssd` of the sub-block sums of a with the mins), then multiply by the
/// tokens' scales into the running sums, which live in memory (one load and store per 256
/// weights) to keep 24 registers for the block's work.
///
/// # Safety
/// The CPU must have the features enabled below, and `job` must pass
/// `job.check::<W>(INT_TILE_ROWS)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn tile<W: GemmWeight>(mut job: GemmJob<'_>) {
    let mut g = 0;
    while g + GROUPS <= job.groups {
        // SAFETY: as this function's (groups g..g + GROUPS ≤ job.groups).
        unsafe { tile_groups::<W, GROUPS>(&mut job, g) };
        g += GROUPS;
    }
    // The rest (fewer than GROUPS): two, then one.
    if g + 2 <= job.groups {
        // SAFETY: as this function's (groups g, g + 1 < job.groups).
        unsafe { tile_groups::<W, 2>(&mut job, g) };
        g += 2;
    }
    if g < job.groups {
        // SAFETY: as this function's (group g < job.groups).
        unsafe { tile_groups::<W, 1>(&mut job, g) };
    }
}

/// [`tile`] for groups `g0..g0 + G`.
///
/// # Safety
/// As [`tile`]'s, and `g0 + G ≤ job.groups`.
#[inline(always)]
unsafe fn tile_groups<W: GemmWeight, const G: usize>(job: &mut GemmJob<'_>, g0: usize) {
    const R: usize = INT_TILE_ROWS;
    let qk = W::QK;
    let nsub = qk / W::SUB;
    let dwords = W::SUB / 4;
    let bb = act_block_bytes(qk, W::SUB, W::MINS, W::OFFSET);
    let p = job.w;
    let n_blocks = p.n_blocks;
    // SAFETY (every pointer below): `check` guarantees that each group's `n_blocks`
    // activation blocks lie inside `job.acts` and each valid row's 16 floats per group
    // inside `job.out`; the panel indices are bounded by `n_blocks · QK ≤ PANEL` and
    // R ≤ MAX_TILE_ROWS, the sizes of the `PackedPanel` arrays.
    unsafe {
        let q = p.q.as_ptr();
        let dsc = p.dsc.as_ptr();
        let corr = p.corr.as_ptr();
        let mins = p.mins.as_ptr().cast::<i32>();
        let per_block = p.per_block.as_ptr();
        let acts: [*const u8; G] =
            std::array::from_fn(|i| job.acts.as_ptr().add((g0 + i) * job.group_stride));
        let loaded: [[__m512; TILE_ROWS]; G] = std::array::from_fn(|i| load_group(job, g0 + i));
        let mut acc: [[__m512; G]; R] =
            std::array::from_fn(|r| std::array::from_fn(|i| loaded[i][r]));
        // The int32 sums of one sub-block, started at the correction.
        let sub_block = |b: usize, s: usize| -> [[__m512i; G]; R] {
            let at = (b * nsub + s) * R;
            let wq = q.add(b * R * qk);
            let mut sum: [[__m512i; G]; R] =
                std::array::from_fn(|r| [_mm512_set1_epi32(*corr.add(at + r)); G]);
            for j in s * dwords..(s + 1) * dwords {
                let av: [__m512i; G] = std::array::from_fn(|i| {
                    _mm512_loadu_si512(acts[i].add(b * bb + 64 * j).cast())
                });
                for (r, sum) in sum.iter_mut().enumerate() {
                    let wv =
                        _mm512_set1_epi32((wq.add(r * qk + 4 * j) as *const i32).read_unaligned());
                    for (sum, av) in sum.iter_mut().zip(av) {
                        *sum = _mm512_dpbusd_epi32(*sum, av, wv);
                    }
                }
            }
            sum
        };
        let dy = |b: usize| -> [__m512; G] {
            std::array::from_fn(|i| _mm512_loadu_ps(acts[i].add(b * bb + TOKEN_GROUP * qk).cast()))
        };
        if nsub == 1 {
            for b in 0..n_blocks {
                let sum = sub_block(b, 0);
                let dy = dy(b);
                for r in 0..R {
                    let d = _mm512_set1_ps(*dsc.add(b * R + r));
                    for i in 0..G {
                        let scale = _mm512_mul_ps(d, dy[i]);
                        acc[r][i] =
                            _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][i]), scale, acc[r][i]);
                    }
                }
                if W::OFFSET {
                    // + m · s8: the weights' offset times the tokens' stored scaled sums.
                    let sy: [__m512; G] = std::array::from_fn(|i| {
                        _mm512_loadu_ps(acts[i].add(b * bb + TOKEN_GROUP * (qk + 4)).cast())
                    });
                    for r in 0..R {
                        let m = _mm512_set1_ps(*per_block.add(b * R + r));
                        for i in 0..G {
                            acc[r][i] = _mm512_fmadd_ps(m, sy[i], acc[r][i]);
                        }
                    }
                }
            }
        } else {
            // The running sums in memory: `black_box` keeps the compiler from promoting
            // them to registers (and spilling the block's sums instead).
            let mut mem = acc;
            let accp = std::hint::black_box(mem.as_mut_ptr());
            for b in 0..n_blocks {
                let mut sub_f = [[_mm512_setzero_ps(); G]; R];
                for s in 0..nsub {
                    let sum = sub_block(b, s);
                    let at = (b * nsub + s) * R;
                    for r in 0..R {
                        let d = _mm512_set1_ps(*dsc.add(at + r));
                        for i in 0..G {
                            sub_f[r][i] =
                                _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][i]), d, sub_f[r][i]);
                        }
                    }
                }
                if W::MINS {
                    let a: [*const u8; G] =
                        std::array::from_fn(|i| acts[i].add(b * bb + TOKEN_GROUP * (qk + 4)));
                    let m = mins.add(b * R * nsub / 2);
                    let mut msum = [[_mm512_setzero_si512(); G]; R];
                    for j in 0..nsub / 2 {
                        let sv: [__m512i; G] =
                            std::array::from_fn(|i| _mm512_loadu_si512(a[i].add(64 * j).cast()));
                        for (r, msum) in msum.iter_mut().enumerate() {
                            let mv = _mm512_set1_epi32(m.add(r * nsub / 2 + j).read_unaligned());
                            for (msum, sv) in msum.iter_mut().zip(sv) {
                                *msum = _mm512_dpwssd_epi32(*msum, sv, mv);
                            }
                        }
                    }
                    for r in 0..R {
                        let nd = _mm512_set1_ps(*per_block.add(b * R + r));
                        for i in 0..G {
                            sub_f[r][i] =
                                _mm512_fmadd_ps(_mm512_cvtepi32_ps(msum[r][i]), nd, sub_f[r][i]);
                        }
                    }
                }
                let dy = dy(b);
                for r in 0..R {
                    let row = accp.add(r);
                    for i in 0..G {
                        (*row)[i] = _mm512_fmadd_ps(sub_f[r][i], dy[i], (*row)[i]);
                    }
                }
            }
            acc = accp.cast::<[[__m512; G]; R]>().read();
        }
        for i in 0..G {
            let mut out = [_mm512_setzero_ps(); TILE_ROWS];
            for r in 0..R {
                out[r] = acc[r][i];
            }
            store_group(&out, job, g0 + i);
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
unsafe fn store_group(acc: &[__m512; TILE_ROWS], job: &mut GemmJob<'_>, g: usize) {
    // SAFETY: the check bounds every row's 16 floats of group g in `out` and the rows ×
    // tokens written to `y`.
    unsafe {
        match job.y {
            Some(y) => {
                let t = y.t0 + TOKEN_GROUP * g;
                let tokens = y.n_tokens.saturating_sub(t).min(TOKEN_GROUP);
                if tokens > 0 {
                    let at = y.ptr.add(t * y.stride + y.col);
                    store_transposed(acc, at, y.stride, job.rows, tokens);
                }
            }
            None => {
                let out = job.out.as_mut_ptr().add(TOKEN_GROUP * g);
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
unsafe fn load_group(job: &GemmJob<'_>, g: usize) -> [__m512; TILE_ROWS] {
    let mut acc = [_mm512_setzero_ps(); TILE_ROWS];
    if !job.first {
        // SAFETY: the check bounds every valid row's 16 floats of group g in `out`.
        let out = unsafe { job.out.as_ptr().add(TOKEN_GROUP * g) };
        for (r, acc) in acc.iter_mut().enumerate().take(job.rows) {
            // SAFETY: as above.
            *acc = unsafe { _mm512_loadu_ps(out.add(r * job.out_stride)) };
        }
    }
    acc
}

/// The F32 / F16 tile (see [`crate::contract::gemm`]): [`TILE_ROWS`] rows × 16 tokens per group, the
/// rows' f32 values in the panel as `[k][R]` (one 32-byte line per k), the activations as
/// `[k][16 tokens]`. Per element: one activation load and one FMA per row with the weight
/// broadcast from the panel (`vfmadd231ps zmm, zmm, dword [mem]{1to16}`), so each weight
/// is read once per 16 tokens. Eight independent accumulators cover the FMA latency.
///
/// # Safety
/// The CPU must have the features enabled below, and `job` must pass
/// `job.check_float(TILE_ROWS, 1, 4)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn tile_f32(mut job: GemmJob<'_>) {
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
                let av = _mm512_loadu_ps(acts.add(TOKEN_GROUP * k));
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
pub(crate) unsafe fn tile_bf16(mut job: GemmJob<'_>) {
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
    p: &mut PackedPanel,
    rows: usize,
    (n_words, simd_words): (usize, usize),
    load: impl Fn(usize, usize) -> __m256,
    word: impl Fn(usize, usize) -> u32,
) {
    const R: usize = TILE_ROWS;
    assert!(rows <= R && n_words <= FLOAT_PANEL);
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
pub(crate) fn pack_f32(
    p: &mut PackedPanel,
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
pub(crate) fn pack_f16(
    p: &mut PackedPanel,
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
pub(crate) fn pack_bf16(
    p: &mut PackedPanel,
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

/// [`PackedPanel::pack`] compiled for AVX-512 (vectorized for this kernel's ISA).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn pack<W: GemmWeight>(
    p: &mut PackedPanel,
    rows: &[&[W]],
    b0: usize,
    n_blocks: usize,
    tile_rows: usize,
) {
    // The IQ3_M/IQ3_XXS/IQ2_M mixes' main types decode with gathers, as their dot
    // products do, instead of the generic lookup per 8 weights (gemm_min TILES_ONLY=1
    // attn_qkv 512 tokens: IQ3_S 710 -> 750 GOP/s).
    macro_rules! gathered {
        ($B:ty, $unpack:ident) => {
            if TypeId::of::<W>() == TypeId::of::<$B>() {
                let unpack = |w: &W, q: &mut [i8], sc: &mut [i16], _: &mut [i16]| {
                    // SAFETY: W is $B (the same TypeId), so the reference is one to it.
                    let x = unsafe { &*(w as *const W).cast::<$B>() };
                    // The closure has this function's target features, $unpack's.
                    $unpack(x, q, sc)
                };
                return p.pack_with(rows, (b0, n_blocks), tile_rows, sum_i8, unpack);
            }
        };
    }
    gathered!(BlockIQ3_S, unpack_iq3_s);
    gathered!(BlockIQ3_XXS, unpack_iq3_xxs);
    gathered!(BlockIQ2_S, unpack_iq2_s);
    p.pack(rows, (b0, n_blocks), tile_rows, sum_i8)
}
