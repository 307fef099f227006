//! AVX2 attention for one (token, KV head) pair, or a few consecutive tokens' query heads
//! of one KV head ([`AttendJob`]), over an f16, bf16, Q8_0 or Q4_0 KV cache: the
//! 8-lane twin of `avx512/attend.rs` (read that file's doc for the method). The query
//! heads go through the keys and values together, 64 positions at a time, with an online
//! softmax; K and V are each read once per job, converted in registers (no dequantized
//! copy of the cache), and the query stays f32.
//!
//! What differs with 16 ymm registers instead of 32 zmm:
//! - **scores**: two positions × four heads (8 accumulators) take 16 values of each K
//!   row per step (2 vectors per row, 4 in all), each query vector loaded feeding two
//!   multiply-adds; three `hadd`s reduce four heads' accumulators to four scores;
//! - **softmax**: a vector holds 2 positions × 4 heads (or 1 × 8); the lanes past the
//!   chunk's last position are −inf instead of masked out;
//! - **values**: four heads × 16 dimensions (8 accumulators) per pass over the chunk's V
//!   rows, each 16-value slice of a row converted once for the four heads.
//!
//! The portable loop this replaces at the AVX2 level called a dot product, a horizontal
//! sum and a libm `exp` per (head, position), and an `axpy` per (head, position): decode
//! attention at depth 4096 took 4.3 ms per layer (Phi-4 shapes, f16 cache, 2 threads,
//! `--example attn_depth`), 172 ms of every token.

use std::arch::x86_64::*;

use half::f16;

use super::ops::exp256;
use crate::arch::x86::common::{kv_blocks, kv_scale_bits, prefetch_l2};
use crate::contract::attend::{AttendJob, KvElem, KvKind};
use crate::format::blocks::{BlockQ4_0, BlockQ8_0};

/// Positions per chunk: the scores of 8 heads × 64 positions (2 KiB) stay in L1, as do the
/// chunk's V rows while they are read once per 16-value slice.
const CHUNK: usize = 64;

/// Positions ahead whose K and V rows are prefetched into L2 (as in `avx512/attend.rs`,
/// where the distance was measured): K rows during the scores, V rows during the values.
const AHEAD: usize = 2 * CHUNK;

/// The whole job. The caller (`crate::select`'s `SelectKv::attend` wrapper) has checked
/// its shape with [`AttendJob::check`].
///
/// # Safety
/// The job passed `check`, and the CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
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

/// The 16 values at value offset `o` (a multiple of 16) of the cached row starting at
/// `row`, as two vectors of f32. Q8_0 and Q4_0 are widened and scaled in registers by
/// their block's `d`, read as f32 from `d` (the chunk's table, [`scales`]).
///
/// # Safety
/// `row` points into a cache of `T` with at least `o + 16` values from it, whole blocks;
/// `T` is not f32 ([`reads`]); for a block type, `d` points to the f32 value of the block
/// holding value `o`.
#[inline(always)]
unsafe fn load16<T: KvElem>(row: *const T, o: usize, d: *const f32) -> [__m256; 2] {
    // SAFETY: the function's contract; each arm reads 16 values' bytes of the row.
    unsafe {
        match T::KIND {
            KvKind::F16 => {
                let p = row.cast::<f16>().add(o);
                [p, p.add(8)].map(|p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast())))
            }
            KvKind::Bf16 => {
                let p = row.cast::<u16>().add(o);
                [p, p.add(8)].map(|p| {
                    let h = _mm_loadu_si128(p.cast());
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                })
            }
            KvKind::Q8_0 => {
                let b = row.cast::<BlockQ8_0>().add(o / 32);
                let q = _mm_loadu_si128((*b).qs.as_ptr().add(o % 32).cast());
                let dv = _mm256_set1_ps(*d);
                [q, _mm_srli_si128::<8>(q)]
                    .map(|q| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), dv))
            }
            KvKind::Q4_0 => {
                let b = row.cast::<BlockQ4_0>().add(o / 32);
                let raw = _mm_loadu_si128((*b).qs.as_ptr().cast());
                // Values 0..16 of a block are the low nibbles, 16..32 the high ones.
                let nib = if o.is_multiple_of(32) {
                    raw
                } else {
                    _mm_srli_epi16::<4>(raw)
                };
                let q = _mm_sub_epi8(_mm_and_si128(nib, _mm_set1_epi8(0x0f)), _mm_set1_epi8(8));
                let dv = _mm256_set1_ps(*d);
                [q, _mm_srli_si128::<8>(q)]
                    .map(|q| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), dv))
            }
            KvKind::F32 => {
                let p = row.cast::<f32>().add(o);
                [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
            }
        }
    }
}

/// The scales of `len` rows of a block type `T` (`nb` blocks each, rows `stride` blocks
/// apart from `rows`) as f32, row after row, into `out` (≥ `len · nb` rounded up to 8, as
/// is `raw`, the f16 bits' staging area): gathered as 16-bit loads, converted 8 at a time.
///
/// # Safety
/// `rows` has `len` rows of `nb` readable blocks at `stride` blocks; `T` is a block type.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales<T: KvElem>(
    rows: *const T,
    stride: usize,
    len: usize,
    nb: usize,
    raw: &mut [u16],
    out: &mut [f32],
) {
    let n = len * nb;
    assert!(raw.len() >= n.next_multiple_of(8) && out.len() >= n.next_multiple_of(8));
    // SAFETY: forwarded from this function's contract; raw holds ≥ n values (asserted).
    unsafe { kv_scale_bits(rows, stride, len, nb, raw) };
    for i in (0..n).step_by(8) {
        // SAFETY: i + 8 ≤ n rounded up to 8 ≤ both lengths (asserted).
        unsafe {
            let h = _mm_loadu_si128(raw.as_ptr().add(i).cast());
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
    }
}

/// `G` query heads sharing one KV head. Scores are kept key-major, `GP` (G rounded up to
/// 4 or 8) per position, so a position's scores of four heads are one 128-bit store.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
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
    let mut raw = vec![0u16; (CHUNK * knb.max(vnb)).next_multiple_of(8)];
    let mut dk = vec![0.0f32; (CHUNK * knb).next_multiple_of(8)];
    let mut dv = vec![0.0f32; (CHUNK * vnb).next_multiple_of(8)];
    let mut m = [f32::NEG_INFINITY; G];
    let mut l = [0.0f32; G];
    // Scores, then probabilities: [position][gp]. (An odd chunk's last vector, padded to
    // an even number of positions, stays inside: CHUNK is even.)
    const { assert!(CHUNK.is_multiple_of(2)) };
    let mut p = [0.0f32; CHUNK * 8];
    let vscale = _mm_set1_ps(scale);
    let mut start = keys.start;
    while start < keys.end {
        let len = CHUNK.min(keys.end - start);
        // SAFETY: rows start..start + len (≤ keys.end), inside the caches (see above); the
        // tables hold CHUNK · nb ≥ len · nb values, rounded up to a multiple of 8.
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
        // 1. Scores, two positions per step (an odd last position is paired with itself).
        for j in (0..len).step_by(2) {
            let j2 = (j + 1).min(len - 1);
            // The K rows of the positions AHEAD later, into L2 (hints: they never fault).
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
                    let mut acc = [[_mm256_setzero_ps(); 4]; 2];
                    for c in 0..nv {
                        let d = [j, j2].map(|jj| dkp.wrapping_add(jj * knb + c / 2));
                        let kc = [load16(row[0], 16 * c, d[0]), load16(row[1], 16 * c, d[1])];
                        for t in 0..4 {
                            let h = 4 * quad + t;
                            if h < G {
                                for i in 0..2 {
                                    let qv = _mm256_loadu_ps(qp.add(h * hd + 16 * c + 8 * i));
                                    acc[0][t] = _mm256_fmadd_ps(kc[0][i], qv, acc[0][t]);
                                    acc[1][t] = _mm256_fmadd_ps(kc[1][i], qv, acc[1][t]);
                                }
                            }
                        }
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
        // 2. Softmax: each head's new maximum, rescale, probabilities. A vector holds
        // 8 / gp positions × gp heads (lane % gp is the head); the lanes of a position
        // past `len` (an odd chunk with gp = 4) are −inf: probability 0.
        let per = 8 / gp;
        let padded = len.next_multiple_of(per);
        p[len * gp..padded * gp].fill(f32::NEG_INFINITY);
        let n_vec = padded / per;
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        for vi in 0..n_vec {
            // SAFETY: vector vi of the chunk's scores, inside p (padded ≤ CHUNK).
            let s = unsafe { _mm256_loadu_ps(p.as_ptr().add(8 * vi)) };
            vmax = _mm256_max_ps(vmax, s);
        }
        let mut lane = [0.0f32; 8];
        // SAFETY: 8 writable floats.
        unsafe { _mm256_storeu_ps(lane.as_mut_ptr(), vmax) };
        let mut rescale = [1.0f32; G];
        let mut mrow = [0.0f32; 8];
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
        // SAFETY: 8 readable floats.
        let mv = unsafe { _mm256_loadu_ps(mrow.as_ptr()) };
        let mut vsum = _mm256_setzero_ps();
        for vi in 0..n_vec {
            // SAFETY: vector vi of the chunk's scores, inside p.
            unsafe {
                let s = _mm256_loadu_ps(p.as_ptr().add(8 * vi));
                // −inf − m is −inf, whose exp256 is exactly 0.
                let e = exp256(_mm256_sub_ps(s, mv));
                vsum = _mm256_add_ps(vsum, e);
                _mm256_storeu_ps(p.as_mut_ptr().add(8 * vi), e);
            }
        }
        // SAFETY: 8 writable floats.
        unsafe { _mm256_storeu_ps(lane.as_mut_ptr(), vsum) };
        for h in 0..G {
            l[h] += (0..per).map(|k| lane[k * gp + h]).sum::<f32>();
        }
        // 3. Values: up to 4 heads × 16 dimensions in registers per pass.
        let ahead = (start + AHEAD).min(keys.end);
        let pf_rows = (keys.end - ahead).min(len);
        let mut h0 = 0;
        while h0 < G {
            let h = (G - h0).min(4);
            for c in 0..nv {
                // V rows AHEAD later: during the first heads' passes, the cache lines
                // that start in this pass's bytes (the last pass also the row's last
                // line), so each line is requested once, spread over the passes.
                let (b0, b1) = (16 * c * vrow_bytes / hd, 16 * (c + 1) * vrow_bytes / hd);
                let pf = if h0 == 0 {
                    (
                        b0.next_multiple_of(64),
                        if c + 1 == nv { b1 + 63 } else { b1 },
                    )
                } else {
                    (0, 0)
                };
                let a = ValuesArgs {
                    // SAFETY: row `start`, inside the cache (see above).
                    rows: unsafe { vp.add(start * vstride) },
                    stride: vstride,
                    o: 16 * c,
                    len,
                    // SAFETY: head h0 < G ≤ gp of position 0, inside p.
                    p: unsafe { p.as_ptr().add(h0) },
                    gp,
                    // SAFETY: h0 < G.
                    rescale: unsafe { rescale.as_ptr().add(h0) },
                    // SAFETY: head h0 < G, values 16·c < hd: inside out.
                    out: unsafe { op.add(h0 * hd + 16 * c) },
                    hd,
                    pf: (vp.wrapping_add(ahead * vstride), pf.0, pf.1, pf_rows),
                    d: (dvp, vnb),
                };
                // SAFETY: heads h0..h0 + h ≤ G, values 16·c..16·c + 16 ≤ hd of rows
                // start..start + len (≤ keys.end), as `values` requires.
                unsafe {
                    match h {
                        1 => values::<1, V>(a),
                        2 => values::<2, V>(a),
                        3 => values::<3, V>(a),
                        _ => values::<4, V>(a),
                    }
                }
            }
            h0 += h;
        }
        start += len;
    }
    for h in 0..G {
        let inv = _mm256_set1_ps(1.0 / l[h]);
        for c in 0..hd / 8 {
            // SAFETY: head h < G, vector c < hd / 8: inside out.
            unsafe {
                let o = op.add(h * hd + 8 * c);
                _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_loadu_ps(o), inv));
            }
        }
    }
}

/// The sums of four vectors' 8 lanes each, as one 128-bit vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum4(a: [__m256; 4]) -> __m128 {
    // [a0 01, a0 23, a1 01, a1 23 | a0 45, a0 67, a1 45, a1 67]
    let s01 = _mm256_hadd_ps(a[0], a[1]);
    let s23 = _mm256_hadd_ps(a[2], a[3]);
    // [a0 0-3, a1 0-3, a2 0-3, a3 0-3 | the same of lanes 4-7]
    let s = _mm256_hadd_ps(s01, s23);
    _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s))
}

/// One pass of the values: `out[h][0..16] = out · rescale[h] + Σ_j p[j][h] · V[j][o..o +
/// 16]` for `H` heads.
struct ValuesArgs<V> {
    /// The chunk's first V row; `len` rows `stride` elements apart.
    rows: *const V,
    stride: usize,
    /// The pass's first value (a multiple of 16).
    o: usize,
    len: usize,
    /// The first head's probability of position 0; positions `gp` apart.
    p: *const f32,
    gp: usize,
    rescale: *const f32,
    /// The first head's output at value `o`; heads `hd` apart.
    out: *mut f32,
    hd: usize,
    /// Prefetch (a hint): bytes `.1` to `.2` of the first `.3` rows (at `stride`) from `.0`.
    pf: (*const V, usize, usize, usize),
    /// A block type's scales: `d.0[j · d.1 + block]`.
    d: (*const f32, usize),
}

/// # Safety
/// `rows` has `len` readable rows at `stride` elements with values `o..o + 16` (whole
/// blocks, `V` not f32); `p` has `len` rows of H at `gp`; `rescale` H values; `out` H
/// rows of 16 f32 at `hd`; for a block type, `d` the scales of the `len` rows' blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn values<const H: usize, V: KvElem>(a: ValuesArgs<V>) {
    let ValuesArgs {
        rows,
        stride,
        o,
        len,
        p,
        gp,
        rescale,
        out,
        hd,
        pf,
        d: (d, nb),
    } = a;
    // SAFETY: the function's contract.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; H];
        for (h, a) in acc.iter_mut().enumerate() {
            let r = _mm256_set1_ps(*rescale.add(h));
            for (w, a) in a.iter_mut().enumerate() {
                *a = _mm256_mul_ps(_mm256_loadu_ps(out.add(h * hd + 8 * w)), r);
            }
        }
        for j in 0..len {
            if j < pf.3 {
                prefetch_l2(pf.0.wrapping_add(j * stride), pf.1, pf.2);
            }
            let vj = load16(rows.add(j * stride), o, d.wrapping_add(j * nb + o / 32));
            for (h, a) in acc.iter_mut().enumerate() {
                let ph = _mm256_set1_ps(*p.add(j * gp + h));
                a[0] = _mm256_fmadd_ps(ph, vj[0], a[0]);
                a[1] = _mm256_fmadd_ps(ph, vj[1], a[1]);
            }
        }
        for (h, a) in acc.iter().enumerate() {
            for (w, a) in a.iter().enumerate() {
                _mm256_storeu_ps(out.add(h * hd + 8 * w), *a);
            }
        }
    }
}
