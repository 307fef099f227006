//! What the AVX2 and AVX-512 kernels share: f16 scale conversion, horizontal sums, the
//! 32-element block driver ([`scaled_sum`]) and the block-wise multi-row driver
//! ([`rows_blockwise`]), both written for AVX2 + FMA + F16C and inlined into the AVX-512
//! kernels too; the Q4_0 multi-row tail and prepared activation layout of both ISAs'
//! GEMV kernels; what both ISAs' attention kernels need to know of a cache type
//! ([`attend_reads`], [`kv_blocks`], [`kv_scale_bits`]); and the SSE2 helpers every x86-64
//! CPU has ([`sum_i8`], [`read_all`], [`prefetch`], [`prefetch_l2`]).
//!
//! The Q4_0 multi-row kernels (`rows_q4_0_prepared` in avx2/gemv.rs, `rows_q4_0` in
//! avx512/gemv.rs): [`GEMV_ROWS`] weight rows against one activation row. The 4-bit values
//! are used as they are stored, 0..16, as the unsigned operand (no sign tricks per row):
//! Σ (q − 8)·y = Σ q·y − 8·Σ y, and the −8·Σ y of each activation block is prepared once
//! per activation row ([`write_q4_0_prepared`]) and starts every row's integer sum. Every
//! row's arithmetic is the same whichever rows share the call, so results do not depend
//! on how rows are grouped.

use std::arch::x86_64::*;

use half::f16;

use crate::contract::attend::{KvElem, KvKind};
use crate::contract::gemv::GEMV_ROWS;
use crate::format::blocks::{BlockQ4_0, BlockQ4_K, BlockQ5_K, BlockQ8_0, KVALUES_IQ4NL};

/// Q4_0 × Q8_0 for `GEMV_ROWS` rows, one block at a time, returned in row order: the last
/// (< 8) blocks of a row, after the kernels' groups of 8. Each block's low nibbles meet
/// its first 16 activations in lanes 0–3, its high nibbles the last 16 in lanes 4–7, all
/// with the block's scale.
///
/// `$dp(acc, u, s)`: acc + the sum of 4 adjacent u8 × i8 products in each i32 lane.
macro_rules! q4_0_rows_tail {
    ($rows:expr, $a:expr, $dp:expr) => {{
        let rows: [&[BlockQ4_0]; GEMV_ROWS] = $rows;
        let a: &[BlockQ8_0] = $a;
        let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
        let low = _mm256_set1_epi8(0x0F);
        let eights = _mm256_set1_epi8(8);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); GEMV_ROWS];
        for b in 0..n {
            let y = &a[b];
            // SAFETY: 32 readable bytes.
            let yv = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
            let c = _mm256_sub_epi32(zero, $dp(zero, eights, yv));
            for r in 0..GEMV_ROWS {
                let x = &rows[r][b];
                // SAFETY: 16 readable bytes.
                let t = unsafe { _mm_loadu_si128(x.qs.as_ptr().cast()) };
                let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low);
                let i = $dp(c, q, yv);
                let sc = _mm256_set1_ps(fp16_mul(x.d, y.d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), sc, acc[r]);
            }
        }
        std::array::from_fn(|r| hsum(acc[r]))
    }};
}
pub(crate) use q4_0_rows_tail;

/// Bytes per group of 8 blocks of [`write_q4_0_prepared`]'s layout with a `head`-byte
/// header: the header, then 8 × (16 + 16 values + 4 i32 corrections).
pub(crate) const fn q4_0_prepared_group(head: usize) -> usize {
    head + 8 * 48
}

/// Writes the prepared Q4_0 activation layout of the AVX2 and AVX-512 multi-row kernels
/// (`prep_q4_0` in each): per group of 8 blocks, `head` bytes holding the 8 scales d_y as
/// f32 (zeros after), then for each run of `per_vec` blocks (one vector's worth: 2 in 256
/// bits, 4 in 512) their first 16 values side by side, their last 16, and the i32
/// −8·Σ of the 8 values that meet each i32 lane of the two (the weights' offset of 8).
pub(crate) fn write_q4_0_prepared(a: &[BlockQ8_0], out: &mut [u8], head: usize, per_vec: usize) {
    let group = q4_0_prepared_group(head);
    for (blocks, o) in a.chunks_exact(8).zip(out.chunks_exact_mut(group)) {
        for (k, y) in blocks.iter().enumerate() {
            o[4 * k..4 * k + 4].copy_from_slice(&y.d.to_f32().to_ne_bytes());
        }
        o[32..head].fill(0);
        for (v, run) in blocks.chunks_exact(per_vec).enumerate() {
            let base = head + 48 * per_vec * v;
            for (j, y) in run.iter().enumerate() {
                for m in 0..16 {
                    o[base + 16 * j + m] = y.qs[m] as u8;
                    o[base + 16 * per_vec + 16 * j + m] = y.qs[16 + m] as u8;
                }
                for k in 0..4 {
                    let s: i32 = (4 * k..4 * k + 4)
                        .map(|m| y.qs[m] as i32 + y.qs[16 + m] as i32)
                        .sum();
                    let at = base + 32 * per_vec + 4 * (4 * j + k);
                    o[at..at + 4].copy_from_slice(&(-8 * s).to_ne_bytes());
                }
            }
        }
    }
}

/// f16 → f32 with the F16C instruction (no run-time feature check, unlike `half`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn fp16(x: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(x.to_bits() as i32)))
}

/// `a · b` for two f16 scales, converted together. The two halves are combined in a
/// general register first so the conversion starts from `vmovd` (which zeroes the rest
/// of the vector register); a direct 16-bit load becomes `vpinsrw` into whatever
/// register LLVM picks — often the accumulator — chaining every block to the last.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn fp16_mul(a: f16, b: f16) -> f32 {
    let bits = a.to_bits() as u32 | ((b.to_bits() as u32) << 16);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm_cvtss_f32(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The 32 nibbles of 16 bytes: low nibbles in bytes 0..16, high nibbles in 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; loadu has no alignment requirement.
    let t = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load32(p: &[i8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes, unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Eight f16 values → eight f32 (one `vcvtph2ps`); the halves are packed in general
/// registers first (`vmovq` / `vpinsrq` start fresh vector registers).
#[inline(always)]
pub(crate) fn f16x8(h: [f16; 8]) -> __m256 {
    let pack = |k: usize| {
        (h[k].to_bits() as u64)
            | (h[k + 1].to_bits() as u64) << 16
            | (h[k + 2].to_bits() as u64) << 32
            | (h[k + 3].to_bits() as u64) << 48
    };
    // SAFETY: only reached from avx2+f16c target-feature functions.
    unsafe { _mm256_cvtph_ps(_mm_set_epi64x(pack(4) as i64, pack(0) as i64)) }
}

/// The driver of the 32-element block kernels: per block, `block_dot` gives 8 int32
/// partial sums of x·y; they are scaled by d_x·d_y and summed. The scales of eight
/// blocks are converted together (f16x8) and read back by a broadcast from memory, so
/// each block costs a few SIMD operations beyond its integer dot; two accumulators keep
/// the FMA latency off the critical path.
#[inline(always)]
pub(crate) fn scaled_sum<W, A>(
    w: &[W],
    a: &[A],
    scales: impl Fn(&W, &A) -> (f16, f16),
    block_dot: impl Fn(&W, &A) -> __m256i,
) -> f32 {
    let n = w.len().min(a.len());
    // SAFETY (all intrinsics below): only called from avx2+fma+f16c functions.
    unsafe {
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut d = [0f32; 8];
        let mut i = 0;
        while i + 8 <= n {
            let (wx, ay) = (&w[i..i + 8], &a[i..i + 8]);
            let (mut hx, mut hy) = ([f16::ZERO; 8], [f16::ZERO; 8]);
            for k in 0..8 {
                (hx[k], hy[k]) = scales(&wx[k], &ay[k]);
            }
            let (sx, sy) = (f16x8(hx), f16x8(hy));
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_mul_ps(sx, sy));
            for k in (0..8).step_by(2) {
                let p0 = _mm256_cvtepi32_ps(block_dot(&wx[k], &ay[k]));
                acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k]), p0, acc0);
                let p1 = _mm256_cvtepi32_ps(block_dot(&wx[k + 1], &ay[k + 1]));
                acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k + 1]), p1, acc1);
            }
            i += 8;
        }
        for j in i..n {
            let (dx, dy) = scales(&w[j], &a[j]);
            let p = _mm256_cvtepi32_ps(block_dot(&w[j], &a[j]));
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16_mul(dx, dy)), p, acc0);
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }
}

/// The multi-row kernels' prefetch at block step `b` of rows `n` blocks long: step b's
/// share (`GEMV_ROWS` blocks' bytes, into L2) of the bytes after the last row, which the
/// next group of rows reads. A hint: never faults, whatever the address.
#[inline(always)]
pub(crate) fn prefetch_next_rows<W>(rows: &[&[W]; GEMV_ROWS], n: usize, b: usize) {
    let step_bytes = GEMV_ROWS * std::mem::size_of::<W>();
    let pf = rows[GEMV_ROWS - 1]
        .as_ptr()
        .wrapping_add(n)
        .cast::<i8>()
        .wrapping_add(b * step_bytes);
    let mut l = 0;
    while l < step_bytes {
        // SAFETY: a prefetch never faults (SSE, part of x86-64).
        unsafe { _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(l)) };
        l += 64;
    }
}

/// The multi-row driver for types without a dedicated kernel: the [`GEMV_ROWS`] rows advance
/// block by block together (`step` folds one weight block × activation block into a
/// row's state, `finish` makes its result), so each activation block is loaded once for
/// all of them while it is hot, and each step prefetches its share of the bytes after
/// the last row (the next group of rows). Every row's arithmetic is the
/// same in any group.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rows_blockwise<W, A, S: Copy>(
    rows: [&[W]; GEMV_ROWS],
    a: &[A],
    init: S,
    step: impl Fn(&mut S, &W, &A),
    finish: impl Fn(S) -> f32,
) -> [f32; GEMV_ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    let mut st = [init; GEMV_ROWS];
    for b in 0..n {
        prefetch_next_rows(&rows, n, b);
        // SAFETY: b < n, which is at most every row's and a's length.
        let y = unsafe { a.get_unchecked(b) };
        for (r, st) in st.iter_mut().enumerate() {
            // SAFETY: as above.
            step(st, unsafe { rows[r].get_unchecked(b) }, y);
        }
    }
    st.map(finish)
}

/// IQ4_NL's 16 levels in both 128-bit lanes, for `vpshufb` lookups by 4-bit index.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn iq4nl_table() -> __m256i {
    // SAFETY: KVALUES_IQ4NL is 16 readable bytes.
    let t = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    _mm256_set_m128i(t, t)
}

/// Reads every byte of `bytes` as fast as the memory allows (the bandwidth probe of
/// `phiq bench --roofline` and the benches): xor of its 16-byte words (SSE2, part of
/// x86-64, four independent accumulators), folded to 64 bits.
pub(crate) fn read_all(bytes: &[u8]) -> u64 {
    let mut acc = [0u64; 2];
    let chunks = bytes.chunks_exact(64);
    let rest = chunks.remainder();
    // SAFETY: each chunk is 64 readable bytes; unaligned 16-byte loads; SSE2 is
    // always present on x86-64.
    unsafe {
        let mut v = [_mm_setzero_si128(); 4];
        for c in chunks {
            for (k, v) in v.iter_mut().enumerate() {
                *v = _mm_xor_si128(*v, _mm_loadu_si128(c.as_ptr().add(16 * k).cast()));
            }
        }
        let x = _mm_xor_si128(_mm_xor_si128(v[0], v[1]), _mm_xor_si128(v[2], v[3]));
        _mm_storeu_si128(acc.as_mut_ptr().cast(), x);
    }
    rest.iter().fold(acc[0] ^ acc[1], |a, &b| a ^ b as u64)
}

/// Σ of signed bytes (`v.len()` a multiple of 16, |Σ| < 2^31): `psadbw` against zero on
/// `v + 128` (SSE2, part of x86-64), minus the 128 added to each byte.
#[inline(always)]
pub(crate) fn sum_i8(v: &[i8]) -> i32 {
    let mut total = 0i64;
    for c in v.chunks_exact(16) {
        // SAFETY: `c` is 16 readable bytes; SSE2 is always present on x86-64.
        total += unsafe {
            let x = _mm_xor_si128(_mm_loadu_si128(c.as_ptr().cast()), _mm_set1_epi8(-128));
            let s = _mm_sad_epu8(x, _mm_setzero_si128());
            _mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s))
        };
    }
    (total - 128 * (v.len() / 16 * 16) as i64) as i32
}

/// Asks for the bytes of `blocks` to be brought into L1, one request per 64-byte line.
#[inline(always)]
pub(crate) fn prefetch<B>(blocks: &[B]) {
    let bytes = std::mem::size_of_val(blocks);
    let p = blocks.as_ptr().cast::<i8>();
    for off in (0..bytes).step_by(64) {
        // SAFETY: prefetch is only a hint and never faults; the address is inside
        // `blocks` (SSE, which it needs, is part of x86-64).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
    }
}

/// Asks for the bytes `from..to` after `p` to be brought into L2, one request per 64
/// bytes from `from`: a hint, never a fault, whatever the address.
#[inline(always)]
pub(crate) fn prefetch_l2<T>(p: *const T, from: usize, to: usize) {
    let p = p.cast::<i8>();
    for off in (from..to).step_by(64) {
        // SAFETY: a prefetch never faults (SSE, part of x86-64).
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(off)) };
    }
}

/// Whether the AVX2 and AVX-512 attention kernels read this cache type: all but f32,
/// which keeps the portable loop (the exact setting the float references are compared
/// with).
pub(crate) fn attend_reads(kind: KvKind) -> bool {
    kind != KvKind::F32
}

/// Whether `T` is a block type, whose rows need a table of their blocks' scales
/// ([`kv_scale_bits`]).
pub(crate) const fn kv_blocks<T: KvElem>() -> bool {
    matches!(T::KIND, KvKind::Q8_0 | KvKind::Q4_0)
}

/// The f16 bits of the scales of `len` rows of a block type `T` (`nb` blocks each, rows
/// `stride` blocks apart from `rows`), row after row, into `raw[..len · nb]`; the
/// attention kernels convert them to f32 a vector at a time.
///
/// # Safety
/// `rows` has `len` rows of `nb` readable blocks at `stride` blocks; `T` is a block type
/// ([`kv_blocks`]); `raw` holds `len · nb` values.
#[inline(always)]
pub(crate) unsafe fn kv_scale_bits<T: KvElem>(
    rows: *const T,
    stride: usize,
    len: usize,
    nb: usize,
    raw: &mut [u16],
) {
    for j in 0..len {
        for b in 0..nb {
            // SAFETY: block b of row j, inside the rows by the contract; Q8_0 and Q4_0
            // blocks both start with their f16 `d` (repr(C)).
            raw[j * nb + b] = unsafe {
                match T::KIND {
                    KvKind::Q8_0 => (*rows.add(j * stride + b).cast::<BlockQ8_0>()).d,
                    _ => (*rows.add(j * stride + b).cast::<BlockQ4_0>()).d,
                }
            }
            .to_bits();
        }
    }
}

/// The 8 six-bit scales and 8 mins of a Q4_K / Q5_K block (the layout of `scale_min_k4`)
/// as bytes of two u64, with word operations (as the AVX2 Q4_K kernel): scales j < 4 are
/// the low 6 bits of bytes 0..4; j ≥ 4 take their low nibble from bytes 8..12 and their
/// top 2 bits from the tops of bytes 0..4; the mins likewise from bytes 4..8 and the high
/// nibbles of 8..12.
#[inline(always)]
pub(crate) fn k4_scales_mins(s: &[u8; 12]) -> (u64, u64) {
    let word = |k: usize| u32::from_le_bytes(std::array::from_fn(|i| s[4 * k + i]));
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const M6: u32 = 0x3f3f_3f3f;
    const M4: u32 = 0x0f0f_0f0f;
    const M2: u32 = 0x0303_0303;
    let sc = (w0 & M6) as u64 | (((w2 & M4) | (((w0 >> 6) & M2) << 4)) as u64) << 32;
    let mn = (w1 & M6) as u64 | ((((w2 >> 4) & M4) | (((w1 >> 6) & M2) << 4)) as u64) << 32;
    (sc, mn)
}

/// The parts of a Q4_K / Q5_K super-block that the multi-row K4 kernels read (one kernel
/// for both types).
pub(crate) trait K4Block {
    fn d(&self) -> f16;
    fn dmin(&self) -> f16;
    fn scales(&self) -> &[u8; 12];
    fn qs(&self) -> &[u8; 128];
    /// Q5_K's fifth bits (bit g of `qh[l]` for element l of group g).
    fn qh(&self) -> Option<&[u8; 32]>;
}

/// `K4Block` for a block type with the fields `d`, `dmin`, `scales`, `qs` and `$qh`.
macro_rules! k4_block {
    ($B:ty, |$x:ident| $qh:expr) => {
        impl K4Block for $B {
            #[inline(always)]
            fn d(&self) -> f16 {
                self.d
            }
            #[inline(always)]
            fn dmin(&self) -> f16 {
                self.dmin
            }
            #[inline(always)]
            fn scales(&self) -> &[u8; 12] {
                &self.scales
            }
            #[inline(always)]
            fn qs(&self) -> &[u8; 128] {
                &self.qs
            }
            #[inline(always)]
            fn qh(&self) -> Option<&[u8; 32]> {
                let $x = self;
                $qh
            }
        }
    };
}

k4_block!(BlockQ4_K, |_x| None);
k4_block!(BlockQ5_K, |x| Some(&x.qh));
