//! AVX-512 attention for one (token, KV head) pair over an f16 KV cache: the query heads
//! that share the KV head ([`crate::attention`]'s grouped-query layout) go through its
//! keys and values together, 64 positions at a time, with an online softmax.
//!
//! Per chunk of positions:
//! 1. **scores**: each K row is converted from f16 once (16 values per `vcvtph2ps`) and
//!    multiplied into one accumulator per query head (queries read from L1), then
//!    reduced to one score per head;
//! 2. **softmax**: the chunk's maximum per head, the running sum and output rescaled when
//!    it grows, `exp(s − m)` for 16 scores at a time ([`exp_ps`]);
//! 3. **values**: the output of up to four heads × 64 dimensions stays in 16 registers
//!    while the chunk's V rows stream past (each 64-value slice converted once for all
//!    those heads), then goes back to memory.
//!
//! So K and V are each read once per token for all the heads of a group, as in the
//! portable path, but without a function call, a horizontal sum and a libm `exp` per
//! (head, position), which made decoding at depth 4096 compute-bound (docs/performance.md).

use std::arch::x86_64::*;

use half::f16;

use super::ops::exp512 as exp_ps;
use crate::arch::x86::common::{kv_blocks, kv_scale_bits, prefetch_l2};
use crate::contract::attend::{AttendJob, KvElem, KvKind};
use crate::format::blocks::{BlockQ4_0, BlockQ8_0};

/// Positions per chunk: the scores of 8 heads × 64 positions (2 KiB) stay in L1, as do the
/// chunk's V rows (64 × 256 bytes for head_dim 128) while they are read once per
/// 64-dimension slice.
const CHUNK: usize = 64;

/// Positions ahead whose K and V rows each step prefetches into L2. Without it the
/// kernel alternated between waiting for a chunk's rows and computing on them (in cache
/// it needs ~0.52 ms per layer at depth 4096, the rows alone ~0.6 ms at the read
/// bandwidth, and it took 0.94); with the rows two chunks ahead 0.83 (medians of 6 ×
/// 40 calls alternating, `--example attn_depth`; 64 ahead 0.85, 192 ahead 0.87; into L1
/// instead, 1.0). The K rows are requested during the scores and the V rows during the
/// values, so the memory is kept busy in both phases: medians 0.91 and 0.78 against
/// 1.03 and 1.15 requesting both during the scores (two sets of 6 alternating runs).
const AHEAD: usize = 2 * CHUNK;

/// The whole job. The caller (`crate::select`'s `SelectKv::attend` wrapper) has checked its
/// shape with [`AttendJob::check`].
///
/// # Safety
/// The job passed `check`, and the CPU has AVX-512 F/BW/VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn attend<K: KvElem, V: KvElem>(job: AttendJob<'_, K, V>) {
    // SAFETY (each arm): forwarded from this function's contract; `check` bounds the
    // group to 1..=MAX_GROUP_HEADS.
    unsafe {
        match job.out.len() / job.head_dim {
            1 => group::<1, K, V>(job),
            2 => group::<2, K, V>(job),
            3 => group::<3, K, V>(job),
            4 => group::<4, K, V>(job),
            5 => group::<5, K, V>(job),
            6 => group::<6, K, V>(job),
            7 => group::<7, K, V>(job),
            _ => group::<8, K, V>(job),
        }
    }
}

pub(crate) use crate::arch::x86::common::attend_reads as reads;

/// 16 values of a cached row as f32: those at value offset `o` (a multiple of 16) of the
/// row starting at `row`. Q8_0 and Q4_0 are widened and scaled in registers by their
/// block's `d`, read as f32 from `d` (the chunk's table, [`scales`]: converting each
/// block's f16 `d` here cost a `vpinsrw` chained through one register from block to
/// block). The query stays f32, so the scores are no less exact than with f16 keys.
///
/// # Safety
/// `row` points into a cache of `T` with at least `o + 16` values from it, whole blocks;
/// `T` is not f32 ([`reads`]); for a block type, `d` points to the f32 value of the
/// block holding value `o`.
#[inline(always)]
unsafe fn load16<T: KvElem>(row: *const T, o: usize, d: *const f32) -> __m512 {
    // SAFETY: the function's contract; each arm reads 16 values' bytes of the row.
    unsafe {
        match T::KIND {
            KvKind::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(row.cast::<f16>().add(o).cast())),
            KvKind::Bf16 => {
                let h = _mm256_loadu_si256(row.cast::<u16>().add(o).cast());
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            }
            KvKind::Q8_0 => {
                let b = row.cast::<BlockQ8_0>().add(o / 32);
                let q = _mm_loadu_si128((*b).qs.as_ptr().add(o % 32).cast());
                let x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
                _mm512_mul_ps(x, _mm512_set1_ps(*d))
            }
            KvKind::Q4_0 => {
                let b = row.cast::<BlockQ4_0>().add(o / 32);
                let raw = _mm_loadu_si128((*b).qs.as_ptr().cast());
                let nib = if o.is_multiple_of(32) {
                    raw
                } else {
                    _mm_srli_epi16::<4>(raw)
                };
                let q = _mm_sub_epi8(_mm_and_si128(nib, _mm_set1_epi8(0x0f)), _mm_set1_epi8(8));
                let x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
                _mm512_mul_ps(x, _mm512_set1_ps(*d))
            }
            KvKind::F32 => _mm512_loadu_ps(row.cast::<f32>().add(o)),
        }
    }
}

/// The 32 values at `o` (a multiple of 32) of a row as two vectors, as [`load16`] reads
/// them, with one block address (and scale) for both.
///
/// # Safety
/// As [`load16`] for `o` and `o + 16`, `d` the scale of the block holding them.
#[inline(always)]
unsafe fn load32<T: KvElem>(row: *const T, o: usize, d: *const f32) -> [__m512; 2] {
    // SAFETY: the function's contract; each arm reads 32 values' bytes of the row.
    unsafe {
        match T::KIND {
            KvKind::Q8_0 => {
                let b = row.cast::<BlockQ8_0>().add(o / 32);
                let qs = (*b).qs.as_ptr();
                let dv = _mm512_set1_ps(*d);
                [qs, qs.add(16)].map(|p| {
                    let q = _mm_loadu_si128(p.cast());
                    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), dv)
                })
            }
            KvKind::Q4_0 => {
                let b = row.cast::<BlockQ4_0>().add(o / 32);
                let raw = _mm_loadu_si128((*b).qs.as_ptr().cast());
                let dv = _mm512_set1_ps(*d);
                [raw, _mm_srli_epi16::<4>(raw)].map(|nib| {
                    let q = _mm_sub_epi8(_mm_and_si128(nib, _mm_set1_epi8(0x0f)), _mm_set1_epi8(8));
                    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), dv)
                })
            }
            _ => [load16(row, o, d), load16(row, o + 16, d)],
        }
    }
}

/// The scales of `len` rows of a block type `T` (`nb` blocks each, rows `stride` blocks
/// apart from `rows`) as f32, row after row, into `out` (≥ `len · nb` rounded up to 16,
/// as is `raw`, the f16 bits' staging area): gathered as 16-bit loads, converted 16 at a
/// time.
///
/// # Safety
/// `rows` has `len` rows of `nb` readable blocks at `stride` blocks; `T` is a block type.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn scales<T: KvElem>(
    rows: *const T,
    stride: usize,
    len: usize,
    nb: usize,
    raw: &mut [u16],
    out: &mut [f32],
) {
    let n = len * nb;
    assert!(raw.len() >= n.next_multiple_of(16) && out.len() >= n.next_multiple_of(16));
    // SAFETY: forwarded from this function's contract; raw holds ≥ n values (asserted).
    unsafe { kv_scale_bits(rows, stride, len, nb, raw) };
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 ≤ n rounded up to 16 ≤ both lengths (asserted).
        unsafe {
            let h = _mm256_loadu_si256(raw.as_ptr().add(i).cast());
            _mm512_storeu_ps(out.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
        }
    }
}

/// `G` query heads sharing one KV head. Scores are kept key-major, `GP` (G rounded up to
/// 4 or 8) per position, so a position's scores of four heads are one 128-bit store.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn group<const G: usize, K: KvElem, V: KvElem>(job: AttendJob<'_, K, V>) {
    let AttendJob {
        q,
        k,
        v,
        stride,
        offset,
        keys,
        head_dim: hd,
        scale,
        ends,
        out,
    } = job;
    let gp = if G <= 4 { 4 } else { 8 };
    let nv = hd / 16;
    out.fill(0.0);
    let (qp, op) = (q.as_ptr(), out.as_mut_ptr());
    // SAFETY: `check` proved offset + (keys.end − 1) · stride + hd ≤ the values of k and
    // v, in whole blocks, so every row read below (offset + pos · stride .. + hd for pos
    // in `keys`, in each type's elements) is inside the caches; q and out hold G · hd
    // values.
    let (kp, vp) = unsafe {
        (
            k.as_ptr().add(offset / K::QK),
            v.as_ptr().add(offset / V::QK),
        )
    };
    let (kstride, vstride) = (stride / K::QK, stride / V::QK);
    let (krow_bytes, vrow_bytes) = (
        hd / K::QK * std::mem::size_of::<K>(),
        hd / V::QK * std::mem::size_of::<V>(),
    );
    // The scales of the chunk's K and V rows as f32 (block types): [position][block].
    let (knb, vnb) = (
        if kv_blocks::<K>() { hd / 32 } else { 0 },
        if kv_blocks::<V>() { hd / 32 } else { 0 },
    );
    let mut raw = vec![0u16; CHUNK * knb.max(vnb)];
    let mut dk = vec![0.0f32; CHUNK * knb];
    let mut dv = vec![0.0f32; CHUNK * vnb];
    let mut m = [f32::NEG_INFINITY; G];
    let mut l = [0.0f32; G];
    // Scores, then probabilities: [position][gp].
    let mut p = [0.0f32; CHUNK * 8];
    let vscale = _mm_set1_ps(scale);
    let mut start = keys.start;
    while start < keys.end {
        let len = CHUNK.min(keys.end - start);
        // SAFETY: rows start..start + len < keys.end, inside the caches (see above); the
        // tables hold CHUNK · nb ≥ len · nb values, a multiple of 16.
        unsafe {
            if knb > 0 {
                scales(
                    kp.add(start * kstride),
                    kstride,
                    len,
                    knb,
                    &mut raw,
                    &mut dk,
                );
            }
            if vnb > 0 {
                scales(
                    vp.add(start * vstride),
                    vstride,
                    len,
                    vnb,
                    &mut raw,
                    &mut dv,
                );
            }
        }
        let (dkp, dvp) = (dk.as_ptr(), dv.as_ptr());
        // 1. Scores. (With phiq's head-major cache the K and V rows of a head are two
        // contiguous streams; the hardware prefetchers follow them, but not far enough
        // ahead to overlap the reads with this arithmetic: see AHEAD.)
        // Two positions per step, so each query vector loaded feeds two multiply-adds
        // (the loads, not the arithmetic, limited one position per step); an odd last
        // position is paired with itself.
        for j in (0..len).step_by(2) {
            let j2 = (j + 1).min(len - 1);
            // The K rows of the positions AHEAD later, into L2 (one 64-byte line = 32
            // values per prefetch; a prefetch never faults, and these rows are inside
            // the cache anyway: < keys.end). The V rows are prefetched by `values`, so
            // the requests are spread over both phases.
            if start + AHEAD + j + 1 < keys.end {
                for r in [start + AHEAD + j, start + AHEAD + j + 1] {
                    prefetch_l2(kp.wrapping_add(r * kstride), 0, krow_bytes);
                }
            }
            for quad in 0..gp / 4 {
                // SAFETY: see above; start + j2 < keys.end; j2 · gp + 4 · quad + 4 ≤ len(p).
                unsafe {
                    let row = [
                        kp.add((start + j) * kstride),
                        kp.add((start + j2) * kstride),
                    ];
                    let mut acc = [[_mm512_setzero_ps(); 4]; 2];
                    // A block (32 values) at a time: one block address per row (and one
                    // scale) for two vectors. Then a last 16 if hd is an odd multiple of
                    // 16 (f16 and bf16 only: block types have whole blocks).
                    let mut step = |c: usize, kc: [[__m512; 2]; 2], n: usize| {
                        for t in 0..4 {
                            let h = 4 * quad + t;
                            if h < G {
                                for (i, _) in kc[0].iter().enumerate().take(n) {
                                    let qv = _mm512_loadu_ps(qp.add(h * hd + 16 * (c + i)));
                                    acc[0][t] = _mm512_fmadd_ps(kc[0][i], qv, acc[0][t]);
                                    acc[1][t] = _mm512_fmadd_ps(kc[1][i], qv, acc[1][t]);
                                }
                            }
                        }
                    };
                    for b in 0..nv / 2 {
                        let d = [j, j2].map(|jj| dkp.wrapping_add(jj * knb + b));
                        let kc = [load32(row[0], 32 * b, d[0]), load32(row[1], 32 * b, d[1])];
                        step(2 * b, kc, 2);
                    }
                    if nv % 2 == 1 {
                        let o = 16 * (nv - 1);
                        let z = _mm512_setzero_ps();
                        let kc = [[load16(row[0], o, dkp), z], [load16(row[1], o, dkp), z]];
                        step(nv - 1, kc, 1);
                    }
                    for (jj, acc) in [j, j2].into_iter().zip(acc) {
                        let s = _mm_mul_ps(sum4(acc), vscale);
                        _mm_storeu_ps(p.as_mut_ptr().add(jj * gp + 4 * quad), s);
                    }
                }
            }
        }
        // Rows of earlier tokens (side by side with later ones) end before the chunk
        // does: their scores there are −inf, so their probabilities are exactly 0 and
        // their sums and outputs are as if the chunk had stopped at their end.
        for (h, &e) in ends.iter().enumerate().take(G) {
            for j in e.max(start).min(start + len) - start..len {
                p[j * gp + h] = f32::NEG_INFINITY;
            }
        }
        // 2. Softmax: each head's new maximum, rescale, probabilities (0 past `len`).
        // A vector holds 16 / gp positions × gp heads; lane % gp is the head.
        let per = 16 / gp;
        let n_vec = len.div_ceil(per);
        let mask_of = |v: usize| lanes((len - v * per).min(per) * gp);
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        for vi in 0..n_vec {
            // SAFETY: vector vi of the chunk's scores, inside p.
            let s = unsafe { _mm512_loadu_ps(p.as_ptr().add(16 * vi)) };
            vmax = _mm512_mask_max_ps(vmax, mask_of(vi), vmax, s);
        }
        let mut lane = [0.0f32; 16];
        // SAFETY: 16 writable floats.
        unsafe { _mm512_storeu_ps(lane.as_mut_ptr(), vmax) };
        let mut rescale = [1.0f32; G];
        let mut mrow = [0.0f32; 16];
        for h in 0..G {
            let cmax = (0..per)
                .map(|k| lane[k * gp + h])
                .fold(f32::NEG_INFINITY, f32::max);
            if cmax > m[h] {
                // exp(−inf) = 0 on the first chunk: nothing accumulated yet.
                rescale[h] = crate::reference::ops::exp_flush(m[h] - cmax);
                l[h] *= rescale[h];
                m[h] = cmax;
            }
            for k in 0..per {
                mrow[k * gp + h] = m[h];
            }
        }
        // SAFETY: 16 readable floats.
        let mv = unsafe { _mm512_loadu_ps(mrow.as_ptr()) };
        let mut vsum = _mm512_setzero_ps();
        for vi in 0..n_vec {
            // SAFETY: vector vi of the chunk's scores, inside p.
            unsafe {
                let s = _mm512_loadu_ps(p.as_ptr().add(16 * vi));
                let e = _mm512_maskz_mov_ps(mask_of(vi), exp_ps(_mm512_sub_ps(s, mv)));
                vsum = _mm512_add_ps(vsum, e);
                _mm512_storeu_ps(p.as_mut_ptr().add(16 * vi), e);
            }
        }
        // SAFETY: 16 writable floats.
        unsafe { _mm512_storeu_ps(lane.as_mut_ptr(), vsum) };
        for h in 0..G {
            l[h] += (0..per).map(|k| lane[k * gp + h]).sum::<f32>();
        }
        // 3. Values: up to 4 heads × 4 vectors of dimensions in registers.
        let mut h0 = 0;
        while h0 < G {
            let h = (G - h0).min(4);
            let mut c = 0;
            while c < nv {
                let w = if nv - c >= 4 { 4 } else { 1 };
                // SAFETY: heads h0..h0 + h < G, vectors c..c + w ≤ nv, rows as above.
                unsafe {
                    let rows = vp.add(start * vstride);
                    let o = op.add(h0 * hd + 16 * c);
                    let pp = p.as_ptr().add(h0);
                    let sc = rescale.as_ptr().add(h0);
                    // V rows AHEAD later, for this call's dimensions (see step 1): the
                    // bytes of values 16·c .. 16·(c + w) of each.
                    let ahead = (start + AHEAD).min(keys.end);
                    let (b0, b1) = (16 * c * vrow_bytes / hd, 16 * (c + w) * vrow_bytes / hd);
                    let pf = (
                        vp.wrapping_add(ahead * vstride)
                            .cast::<u8>()
                            .wrapping_add(b0),
                        b1 - b0,
                        (keys.end - ahead).min(len),
                    );
                    let a = (
                        rows,
                        vstride,
                        16 * c,
                        len,
                        pp,
                        gp,
                        sc,
                        o,
                        hd,
                        pf,
                        (dvp, vnb),
                    );
                    match (h, w) {
                        (1, 4) => values::<1, 4, V>(a),
                        (2, 4) => values::<2, 4, V>(a),
                        (3, 4) => values::<3, 4, V>(a),
                        (4, 4) => values::<4, 4, V>(a),
                        (1, _) => values::<1, 1, V>(a),
                        (2, _) => values::<2, 1, V>(a),
                        (3, _) => values::<3, 1, V>(a),
                        _ => values::<4, 1, V>(a),
                    }
                }
                c += w;
            }
            h0 += h;
        }
        start += len;
    }
    for h in 0..G {
        let inv = _mm512_set1_ps(1.0 / l[h]);
        for c in 0..nv {
            // SAFETY: head h < G, vector c < nv: inside out.
            unsafe {
                let o = op.add(h * hd + 16 * c);
                _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), inv));
            }
        }
    }
}

/// The sums of four vectors' 16 lanes each, as one 128-bit vector: 14 instructions where
/// four separate reductions take 32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn sum4(a: [__m512; 4]) -> __m128 {
    // [a0 lanes 0-3 + 8-11, a0 4-7 + 12-15, a1 …, a1 …] as 128-bit blocks.
    let half = |x: __m512, y: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
        )
    };
    let (s01, s23) = (half(a[0], a[1]), half(a[2], a[3]));
    // [a0, a1, a2, a3] partial sums of 4 lanes each.
    let s = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(s01, s23),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(s01, s23),
    );
    let t = _mm512_add_ps(s, _mm512_permute_ps::<0b01_00_11_10>(s));
    let t = _mm512_add_ps(t, _mm512_permute_ps::<0b10_11_00_01>(t));
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, t))
}

/// The first `n` (≤ 16) lanes.
#[inline]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// `out[h][0..16·W] = out · rescale[h] + Σ_j p[j][h] · V[j][o..o + 16·W]` for `H`
/// heads: V rows `stride` elements apart, probability rows `gp` apart, `out` rows `hd`
/// apart; the `pf.1` bytes at `pf.0` of the first `pf.2` rows (same stride) are
/// prefetched; a block type's scales are `d.0[j · d.1 + block]`.
type ValuesArgs<V> = (
    *const V,
    usize,
    usize,
    usize,
    *const f32,
    usize,
    *const f32,
    *mut f32,
    usize,
    (*const u8, usize, usize),
    (*const f32, usize),
);

/// # Safety
/// `rows` has `len` readable rows at `stride` elements with values `o..o + 16·W`
/// (whole blocks, `V` not f32); `p` has `len` rows of H at `gp`; `rescale` H values;
/// `out` H rows of 16·W f32 at `hd`; for a block type, `d` the scales of the `len` rows'
/// blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn values<const H: usize, const W: usize, V: KvElem>(
    (rows, stride, o, len, p, gp, rescale, out, hd, (pf, pf_bytes, pf_rows), (d, nb)): ValuesArgs<
        V,
    >,
) {
    let row_bytes = stride * std::mem::size_of::<V>();
    // SAFETY: the function's contract.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); W]; H];
        for (h, a) in acc.iter_mut().enumerate() {
            let r = _mm512_set1_ps(*rescale.add(h));
            for (w, a) in a.iter_mut().enumerate() {
                *a = _mm512_mul_ps(_mm512_loadu_ps(out.add(h * hd + 16 * w)), r);
            }
        }
        for j in 0..len {
            if j < pf_rows {
                // A hint (never faults): the same values of a row AHEAD later.
                prefetch_l2(pf.wrapping_add(j * row_bytes), 0, pf_bytes);
            }
            let row = rows.add(j * stride);
            // Whole blocks two vectors at a time (W = 4: o is a multiple of 64).
            let dj = d.wrapping_add(j * nb + o / 32);
            let vj: [__m512; W] = if W == 4 {
                let ([a, b], [c, e]) =
                    (load32(row, o, dj), load32(row, o + 32, dj.wrapping_add(1)));
                std::array::from_fn(|w| [a, b, c, e][w])
            } else {
                std::array::from_fn(|w| {
                    load16(row, o + 16 * w, d.wrapping_add(j * nb + (o + 16 * w) / 32))
                })
            };
            for (h, a) in acc.iter_mut().enumerate() {
                let ph = _mm512_set1_ps(*p.add(j * gp + h));
                for (w, a) in a.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(ph, vj[w], *a);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            for (w, a) in a.iter().enumerate() {
                _mm512_storeu_ps(out.add(h * hd + 16 * w), *a);
            }
        }
    }
}
