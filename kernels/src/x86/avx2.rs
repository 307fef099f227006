//! AVX2 + FMA + F16C kernels. Each is checked against the scalar reference in
//! `crate::dot` by the tests in `tests/kernels_dot.rs`.
//!
//! Integer dot products of 32 int8 pairs use ggml's trick: `maddubs` needs one unsigned
//! operand, so take |x| and move x's sign onto y (`sign_epi8`), then `madd` with ones
//! widens the 16 pair sums to 8 int32 lanes.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::rows::q4_0_rows_tail;
use super::ROWS;
use crate::blocks::*;

/// f16 → f32 with the F16C instruction (no run-time feature check, unlike `half`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn fp16(x: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(x.to_bits() as i32)))
}

/// `a · b` for two f16 scales, converted together. The two halves are combined in a
/// general register first so the conversion starts from `vmovd` (which zeroes the rest
/// of the vector register); a direct 16-bit load becomes `vpinsrw` into whatever
/// register LLVM picks — often the accumulator — chaining every block to the last.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn fp16_mul(a: f16, b: f16) -> f32 {
    let bits = a.to_bits() as u32 | ((b.to_bits() as u32) << 16);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm_cvtss_f32(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 32 signed × 32 signed int8 → 8 int32 partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    let p16 = _mm256_maddubs_epi16(ax, sy);
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// The 32 nibbles of 16 bytes: low nibbles in bytes 0..16, high nibbles in 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; loadu has no alignment requirement.
    let t = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32(p: &[i8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes, unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n, within both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(w.as_ptr().add(i + 8 * k)),
                    _mm256_loadu_ps(a.as_ptr().add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    for j in i..n {
        sum += w[j] * a[j];
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n, within both slices (8 f16 = 16 bytes).
            let (x, y) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i + 8 * k).cast())),
                    _mm256_loadu_ps(a.as_ptr().add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    for j in i..n {
        sum += fp16(w[j]) * a[j];
    }
    sum
}

/// 8 bf16 → 8 f32 (a bf16 is the top half of an f32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bf16x8(p: *const bf16) -> __m256 {
    // SAFETY: the caller passes a pointer to 8 readable bf16 values.
    let h = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n, within both slices.
            let (x, y) = unsafe {
                (
                    bf16x8(w.as_ptr().add(i + 8 * k)),
                    bf16x8(a.as_ptr().add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 16;
    }
    let mut sum = hsum(_mm256_add_ps(acc[0], acc[1]));
    for j in i..n {
        sum += w[j].to_f32() * a[j].to_f32();
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q8_0(rows: [&[BlockQ8_0]; ROWS], a: &[BlockQ8_0]) -> [f32; ROWS] {
    let step = |acc: &mut __m256, x: &BlockQ8_0, y: &BlockQ8_0| {
        let p = _mm256_cvtepi32_ps(dot_i8x32(load32(&x.qs), load32(&y.qs)));
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_mul(x.d, y.d)), p, *acc);
    };
    rows_blockwise(rows, a, _mm256_setzero_ps(), step, |v| hsum(v))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| dot_i8x32(load32(&x.qs), load32(&y.qs)),
    )
}

/// Eight f16 values → eight f32 (one `vcvtph2ps`); the halves are packed in general
/// registers first (`vmovq` / `vpinsrq` start fresh vector registers).
#[inline(always)]
pub(super) fn f16x8(h: [f16; 8]) -> __m256 {
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
pub(super) fn scaled_sum<W, A>(
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

/// [`super::rows::q4_0_rows_tail`] with `maddubs` + `madd` (products ≤ 15·128·2: no i16
/// saturation): the last (< 8) blocks of [`rows_q4_0_prepared`].
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q4_0_tail(rows: [&[BlockQ4_0]; ROWS], a: &[BlockQ8_0]) -> [f32; ROWS] {
    let ones = _mm256_set1_epi16(1);
    let dp = |acc: __m256i, u: __m256i, s: __m256i| {
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones))
    };
    q4_0_rows_tail!(rows, a, dp)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let eight = _mm256_set1_epi8(8);
    scaled_sum(
        w,
        a,
        |x, y| (x.d, y.d),
        |x, y| dot_i8x32(_mm256_sub_epi8(nibbles(&x.qs), eight), load32(&y.qs)),
    )
}

/// One Q4_K super-block into (`acc`: Σ d·scale·(q · q8) as 8 f32 lanes, `acc_min`:
/// Σ dmin·m·Σq8 of the sub-blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step_q4_k(st: &mut (__m256, f32), x: &BlockQ4_K, y: &BlockQ8_K) {
    let low = _mm256_set1_epi8(0x0F);
    // The 8 six-bit scales and 8 mins out of 12 bytes with word operations (the layout of
    // `scale_min_k4`): scales j < 4 are the low 6 bits of bytes 0..4; j ≥ 4 take their
    // low nibble from bytes 8..12 and their top 2 bits from the tops of bytes 0..4; the
    // mins likewise from bytes 4..8 and the high nibbles of 8..12.
    let word = |k: usize| u32::from_le_bytes(std::array::from_fn(|i| x.scales[4 * k + i]));
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const M6: u32 = 0x3f3f_3f3f;
    const M4: u32 = 0x0f0f_0f0f;
    const M2: u32 = 0x0303_0303;
    let sc = (w0 & M6) as u64 | (((w2 & M4) | (((w0 >> 6) & M2) << 4)) as u64) << 32;
    let mn = (w1 & M6) as u64 | ((((w2 >> 4) & M4) | (((w1 >> 6) & M2) << 4)) as u64) << 32;
    // Mins: Σ_j m_j · (bsums[2j] + bsums[2j+1]) in one multiply-add (|pair| ≤ 2·16·128).
    // SAFETY: bsums is 16 i16 = 32 readable bytes.
    let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
    let pairs = _mm_hadd_epi16(
        _mm256_castsi256_si128(bs),
        _mm256_extracti128_si256::<1>(bs),
    );
    let m = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64)), pairs);
    let m = _mm_add_epi32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
    let m = _mm_add_epi32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
    let summs = _mm_cvtsi128_si32(m);
    // Scale j as 16 equal i16: one byte shuffle of the 8 scales widened to words.
    let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
    let scale = |j: i16| _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((2 * j) | (2 * j + 1) << 8));
    let mut sum = _mm256_setzero_si256();
    for c in 0..4 {
        // SAFETY: 32 bytes at qs[32c..] and 64 at y.qs[64c..], within the arrays.
        let (q, y1, y2) = unsafe {
            (
                _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast()),
                _mm256_loadu_si256(y.qs.as_ptr().add(64 * c).cast()),
                _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32).cast()),
            )
        };
        let lo = _mm256_and_si256(q, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
        // q in 0..16 unsigned, y signed: maddubs cannot saturate (2·15·128 < 2^15).
        let j = 2 * c as i16;
        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y1), scale(j));
        let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y2), scale(j + 1));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(p1, p2));
    }
    let d = fp16(x.d) * y.d;
    st.0 = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), st.0);
    st.1 += fp16(x.dmin) * y.d * summs as f32;
}

/// Σ over a super-block's 8 sub-blocks of scale × (4-bit q · q8), as 8 int32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let mut st = (_mm256_setzero_ps(), 0.0f32);
    for (x, y) in w.iter().zip(a) {
        step_q4_k(&mut st, x, y);
    }
    hsum(st.0) - st.1
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q4_k(rows: [&[BlockQ4_K]; ROWS], a: &[BlockQ8_K]) -> [f32; ROWS] {
    let init = (_mm256_setzero_ps(), 0.0f32);
    rows_blockwise(
        rows,
        a,
        init,
        |st, x, y| step_q4_k(st, x, y),
        |st| hsum(st.0) - st.1,
    )
}

/// The multi-row driver for types without a dedicated kernel: the [`ROWS`] rows advance
/// block by block together (`step` folds one weight block × activation block into a
/// row's state, `finish` makes its result), so each activation block is loaded once for
/// all of them while it is hot, and each step prefetches its share of the bytes after
/// the last row (see `rows.rs`: the next group of rows). Every row's arithmetic is the
/// same in any group.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_blockwise<W, A, S: Copy>(
    rows: [&[W]; ROWS],
    a: &[A],
    init: S,
    step: impl Fn(&mut S, &W, &A),
    finish: impl Fn(S) -> f32,
) -> [f32; ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    let mut st = [init; ROWS];
    let ahead = rows[ROWS - 1].as_ptr().wrapping_add(n).cast::<i8>();
    let step_bytes = ROWS * std::mem::size_of::<W>();
    for b in 0..n {
        let pf = ahead.wrapping_add(b * step_bytes);
        let mut l = 0;
        while l < step_bytes {
            _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(l));
            l += 64;
        }
        // SAFETY: b < n, which is at most every row's and a's length.
        let y = unsafe { a.get_unchecked(b) };
        for (r, st) in st.iter_mut().enumerate() {
            // SAFETY: as above.
            step(st, unsafe { rows[r].get_unchecked(b) }, y);
        }
    }
    st.map(finish)
}

/// One Q6_K super-block into `acc` (Σ d·scale·((q − 32) · q8) as 8 f32 lanes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step_q6_k(acc: &mut __m256, x: &BlockQ6_K, y: &BlockQ8_K) {
    let low = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    {
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: ql[64h..64h+64], qh[32h..32h+32], y.qs[128h..128h+128] are in bounds.
            let (ql0, ql1, qh) = unsafe {
                (
                    _mm256_loadu_si256(x.ql.as_ptr().add(64 * half).cast()),
                    _mm256_loadu_si256(x.ql.as_ptr().add(64 * half + 32).cast()),
                    _mm256_loadu_si256(x.qh.as_ptr().add(32 * half).cast()),
                )
            };
            // The four 32-element groups of this half, as unsigned 0..64.
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, low),
                    _mm256_slli_epi16(_mm256_and_si256(qh, three), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, low),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), three), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), three), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), three), 4),
                ),
            ];
            for (k, &qk) in q.iter().enumerate() {
                // SAFETY: 32 bytes at y.qs[128h + 32k..], in bounds.
                let q8 =
                    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(128 * half + 32 * k).cast()) };
                // Σ (q - 32)·y = Σ q·y − 32·Σ y; both fit int16 per pair (2·63·128 < 2^15).
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(qk, q8), _mm256_maddubs_epi16(m32, q8));
                let s_lo = x.scales[8 * half + 2 * k] as i16;
                let s_hi = x.scales[8 * half + 2 * k + 1] as i16;
                let scales = _mm256_set_m128i(_mm_set1_epi16(s_hi), _mm_set1_epi16(s_lo));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, scales));
            }
        }
        let d = fp16(x.d) * y.d;
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), *acc);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        step_q6_k(&mut acc, x, y);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q6_k(rows: [&[BlockQ6_K]; ROWS], a: &[BlockQ8_K]) -> [f32; ROWS] {
    rows_blockwise(
        rows,
        a,
        _mm256_setzero_ps(),
        |acc, x, y| step_q6_k(acc, x, y),
        |v| hsum(v),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn axpy_f16(acc: &mut [f32], p: f32, v: &[f16]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, within both slices.
        unsafe {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(pv, x, a));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] += p * fp16(v[j]);
    }
}

/// Expands 32 bits into 32 bytes: 0xFF where the bit is set (ggml `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes_from_bits_32(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    // Each byte ORed with all bits but its own: all ones iff its own bit was set.
    let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
}

/// 32 unsigned bytes × 32 signed bytes → 8 int32 sums (no sign trick needed).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8i8x32(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        let p = dot_u8i8x32(nibbles(&x.qs), load32(&y.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        acc_m += fp16(x.m) * fp16(y.s);
    }
    hsum(acc) + acc_m
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        // q - 16 as int8: a clear 5th bit leaves 0xF0 in the high nibble (= nibble - 16).
        let hi = _mm256_andnot_si256(
            bytes_from_bits_32(u32::from_le_bytes(x.qh)),
            _mm256_set1_epi8(0xF0u8 as i8),
        );
        let q = _mm256_or_si256(nibbles(&x.qs), hi);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8x32(q, load32(&y.qs))), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        let hi = _mm256_and_si256(
            bytes_from_bits_32(u32::from_le_bytes(x.qh)),
            _mm256_set1_epi8(0x10),
        );
        let q = _mm256_or_si256(nibbles(&x.qs), hi);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8i8x32(q, load32(&y.qs))), acc);
        acc_m += fp16(x.m) * fp16(y.s);
    }
    hsum(acc) + acc_m
}

/// IQ4_NL's 16 levels in both 128-bit lanes, for `pshufb` lookups.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4nl_table() -> __m256i {
    // SAFETY: KVALUES_IQ4NL is 16 readable bytes.
    let t = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    _mm256_set_m128i(t, t)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_iq4_nl(w: &[BlockIQ4_NL], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let table = iq4nl_table();
    for (x, y) in w.iter().zip(a) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        let q = _mm256_shuffle_epi8(table, nibbles(&x.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8x32(q, load32(&y.qs))), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_iq4_xs(w: &[BlockIQ4_XS], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let table = iq4nl_table();
    for (x, y) in w.iter().zip(a) {
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            // SAFETY: 16 bytes at qs[16ib..] and 32 at y.qs[32ib..], in bounds.
            let (t, q8) = unsafe {
                (
                    _mm_loadu_si128(x.qs.as_ptr().add(16 * ib).cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib).cast()),
                )
            };
            let nib = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(t, 4), t),
                _mm256_set1_epi8(0x0F),
            );
            let q = _mm256_shuffle_epi8(table, nib);
            let p = dot_i8x32(q, q8);
            sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(p, _mm256_set1_epi32(x.scale(ib))));
        }
        let d = fp16(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = 0.0f32;
    let low = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    for (x, y) in w.iter().zip(a) {
        // SAFETY: qh is 32 bytes.
        let qh = unsafe { _mm256_loadu_si256(x.qh.as_ptr().cast()) };
        let mut sum = _mm256_setzero_si256();
        let mut summs = 0i32;
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, &x.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &x.scales);
            // SAFETY: in bounds as in dot_q4_k.
            let (q, y1, y2) = unsafe {
                (
                    _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * c).cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32).cast()),
                )
            };
            // Bit s of each qh byte → bit 4 of the value (16-bit shifts are safe here:
            // only bit 0 of each byte survives the mask before moving up).
            let h1 = _mm256_slli_epi16(
                _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32)), one),
                4,
            );
            let h2 = _mm256_slli_epi16(
                _mm256_and_si256(
                    _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32 + 1)),
                    one,
                ),
                4,
            );
            let lo = _mm256_or_si256(_mm256_and_si256(q, low), h1);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), h2);
            // q < 32 unsigned: 2·31·128 < 2^15, no saturation.
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y1), _mm256_set1_epi16(sc1 as i16));
            let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y2), _mm256_set1_epi16(sc2 as i16));
            sum = _mm256_add_epi32(sum, _mm256_add_epi32(p1, p2));
            summs += m1 as i32 * (y.bsums[4 * c] as i32 + y.bsums[4 * c + 1] as i32);
            summs += m2 as i32 * (y.bsums[4 * c + 2] as i32 + y.bsums[4 * c + 3] as i32);
        }
        let d = fp16(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
        acc_min += fp16(x.dmin) * y.d * summs as f32;
    }
    hsum(acc) - acc_min
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q2_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = 0.0f32;
    let three = _mm256_set1_epi8(3);
    for (x, y) in w.iter().zip(a) {
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: 32 bytes at qs[32h..], in bounds.
            let q2 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * half).cast()) };
            for k in 0..4 {
                // SAFETY: 32 bytes at y.qs[128h + 32k..], in bounds.
                let q8 =
                    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(128 * half + 32 * k).cast()) };
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * k as i32)), three);
                let is = 8 * half + 2 * k;
                let scales = _mm256_set_m128i(
                    _mm_set1_epi16((x.scales[is + 1] & 0x0F) as i16),
                    _mm_set1_epi16((x.scales[is] & 0x0F) as i16),
                );
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(q, q8), scales));
            }
        }
        let summs: i32 = (0..16)
            .map(|j| y.bsums[j] as i32 * (x.scales[j] >> 4) as i32)
            .sum();
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(y.d * fp16(x.d)),
            _mm256_cvtepi32_ps(sum),
            acc,
        );
        acc_min += y.d * fp16(x.dmin) * summs as f32;
    }
    hsum(acc) - acc_min
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q3_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let three = _mm256_set1_epi8(3);
    let one = _mm256_set1_epi8(1);
    for (x, y) in w.iter().zip(a) {
        let scales = x.unpack_scales();
        // SAFETY: hmask is 32 bytes.
        let hm = unsafe { _mm256_loadu_si256(x.hmask.as_ptr().cast()) };
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: 32 bytes at qs[32h..], in bounds.
            let q3 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * half).cast()) };
            for k in 0..4 {
                // SAFETY: 32 bytes at y.qs[128h + 32k..], in bounds.
                let q8 =
                    unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(128 * half + 32 * k).cast()) };
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(q3, _mm_cvtsi32_si128(2 * k as i32)), three);
                // 4 where the high bit (bit 4h + k of hmask) is clear.
                let bit = _mm256_and_si256(
                    _mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * half + k) as i32)),
                    one,
                );
                let sub = _mm256_slli_epi16(_mm256_xor_si256(bit, one), 2);
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(q, q8), _mm256_maddubs_epi16(sub, q8));
                let is = 8 * half + 2 * k;
                let sc = _mm256_set_m128i(
                    _mm_set1_epi16(scales[is + 1] as i16),
                    _mm_set1_epi16(scales[is] as i16),
                );
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, sc));
            }
        }
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(fp16(x.d) * y.d),
            _mm256_cvtepi32_ps(sum),
            acc,
        );
    }
    hsum(acc)
}

/// Weight rows per tile call (16 ymm registers: 4 int32 + 4 float accumulators,
/// the activations, the broadcast weights and temporaries).
pub(super) const TILE_ROWS: usize = 4;

/// The tile micro-kernel (see [`crate::tile`]) without VNNI: [`TILE_ROWS`] decoded weight
/// rows × 8 tokens (each 16-token group in two halves). Per weight dword broadcast,
/// `maddubs` forms pair sums of 8 tokens and `madd` with ones widens them to int32:
/// - `UNSIGNED` (types with |q| ≤ 64, activations `a + 128` as for VNNI, sums starting
///   from `corr`): `maddubs(a + 128, q)`, at most 2·255·64 < 2^15, no saturation;
/// - else (activations signed): `maddubs(|q|, sign(a, q))`, at most 2·128·127 < 2^15.
///
/// Per sub-block: convert, multiply by the tokens' scales and add with `d·sc`; the mins
/// term likewise with `madd` of the sub-block sums (int16) by the mins.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, `job` must pass `job.check::<W>(TILE_ROWS)`, and
/// with `UNSIGNED` the activations must be `a + 128` and `W::MAX_ABS ≤ 64`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile<W: crate::tile::TileScheme, const UNSIGNED: bool>(
    job: crate::tile::TileJob<'_>,
) {
    const R: usize = TILE_ROWS;
    let qk = W::QK;
    let nsub = qk / W::SUB;
    let dwords = W::SUB / 4;
    let bb = crate::tile::act_block_bytes(qk, W::SUB, W::MINS, W::OFFSET);
    let p = job.w;
    let ones = _mm256_set1_epi16(1);
    // SAFETY (every pointer below): as in the AVX-512 kernel — `check` bounds the
    // activation and output accesses; panel indices stay inside the `PackedRows` arrays.
    unsafe {
        let q = p.q.as_ptr();
        let dsc = p.dsc.as_ptr();
        let corr = p.corr.as_ptr();
        let mins = p.mins.as_ptr().cast::<i32>();
        let per_block = p.per_block.as_ptr();
        for g in 0..job.groups {
            for half in 0..2 {
                // Lanes 8·half..8·half + 8 of the group: 32 bytes into each 64-byte row.
                let acts = job.acts.as_ptr().add(g * job.group_stride + 32 * half);
                let out = job.out.as_mut_ptr().add(crate::tile::GROUP * g + 8 * half);
                let mut acc = [_mm256_setzero_ps(); R];
                if !job.first {
                    for (r, acc) in acc.iter_mut().enumerate().take(job.rows) {
                        *acc = _mm256_loadu_ps(out.add(r * job.out_stride));
                    }
                }
                for b in 0..p.n_blocks {
                    let a = acts.add(b * bb);
                    let wq = q.add(b * R * qk);
                    let dy = _mm256_loadu_ps(a.add(crate::tile::GROUP * qk).cast());
                    for s in 0..nsub {
                        let at = (b * nsub + s) * R;
                        let mut sum = [_mm256_setzero_si256(); R];
                        if UNSIGNED {
                            for (r, sum) in sum.iter_mut().enumerate() {
                                *sum = _mm256_set1_epi32(*corr.add(at + r));
                            }
                        }
                        for j in s * dwords..(s + 1) * dwords {
                            let av = _mm256_loadu_si256(a.add(64 * j).cast());
                            for (r, sum) in sum.iter_mut().enumerate() {
                                let wv = (wq.add(r * qk + 4 * j) as *const i32).read_unaligned();
                                let wv = _mm256_set1_epi32(wv);
                                let pairs = if UNSIGNED {
                                    _mm256_maddubs_epi16(av, wv)
                                } else {
                                    _mm256_maddubs_epi16(
                                        _mm256_sign_epi8(wv, wv),
                                        _mm256_sign_epi8(av, wv),
                                    )
                                };
                                *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(pairs, ones));
                            }
                        }
                        for r in 0..R {
                            let f = _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r]), dy);
                            let d = _mm256_set1_ps(*dsc.add(at + r));
                            acc[r] = _mm256_fmadd_ps(f, d, acc[r]);
                        }
                    }
                    if W::MINS {
                        let sums = a.add(crate::tile::GROUP * (qk + 4));
                        let m = mins.add(b * R * nsub / 2);
                        let mut msum = [_mm256_setzero_si256(); R];
                        for j in 0..nsub / 2 {
                            let sv = _mm256_loadu_si256(sums.add(64 * j).cast());
                            for (r, msum) in msum.iter_mut().enumerate() {
                                let mv =
                                    _mm256_set1_epi32(m.add(r * nsub / 2 + j).read_unaligned());
                                *msum = _mm256_add_epi32(*msum, _mm256_madd_epi16(sv, mv));
                            }
                        }
                        for r in 0..R {
                            let f = _mm256_mul_ps(_mm256_cvtepi32_ps(msum[r]), dy);
                            let nd = _mm256_set1_ps(*per_block.add(b * R + r));
                            acc[r] = _mm256_fmadd_ps(f, nd, acc[r]);
                        }
                    }
                    if W::OFFSET {
                        // + m · s8 (Q4_1/Q5_1): the offset times the tokens' scaled sums.
                        let sy = _mm256_loadu_ps(a.add(crate::tile::GROUP * (qk + 4)).cast());
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let m = _mm256_set1_ps(*per_block.add(b * R + r));
                            *acc = _mm256_fmadd_ps(m, sy, *acc);
                        }
                    }
                }
                match job.y {
                    Some(y) => {
                        // Rows × 8 tokens through a small buffer into y[t][col + r].
                        let t = y.t0 + crate::tile::GROUP * g + 8 * half;
                        let tokens = y.n_tokens.saturating_sub(t).min(8);
                        let mut buf = [[0f32; 8]; R];
                        for (b, acc) in buf.iter_mut().zip(&acc) {
                            _mm256_storeu_ps(b.as_mut_ptr(), *acc);
                        }
                        for k in 0..tokens {
                            let at = y.ptr.add((t + k) * y.stride + y.col);
                            for (r, b) in buf.iter().enumerate().take(job.rows) {
                                *at.add(r) = b[k];
                            }
                        }
                    }
                    None => {
                        for (r, acc) in acc.iter().enumerate().take(job.rows) {
                            _mm256_storeu_ps(out.add(r * job.out_stride), *acc);
                        }
                    }
                }
            }
        }
    }
}

/// Header bytes (the 8 scales) of [`rows_q4_0_prepared`]'s layout per group of 8 blocks.
const PREP_Q4_0_HEAD: usize = 32;

/// Bytes of [`rows_q4_0_prepared`]'s activation layout per group of 8 blocks (416).
const PREP_Q4_0_GROUP: usize = super::rows::q4_0_prepared_group(PREP_Q4_0_HEAD);

/// Bytes of [`rows_q4_0_prepared`]'s layout for an activation row of `n` blocks (the
/// last `n % 8` blocks are read from the blocks themselves).
pub(super) fn prep_q4_0_bytes(n: usize) -> usize {
    n / 8 * PREP_Q4_0_GROUP
}

/// Writes [`rows_q4_0_prepared`]'s layout: per group of 8 activation blocks, 416 bytes:
/// the 8 scales d_y as f32, then for each pair of blocks (2p, 2p + 1) their first 16
/// values side by side (32 bytes, block 2p in the low half), their last 16 (32 bytes),
/// and the 8 i32 −8·Σ of the 8 values that meet each i32 lane of the two (the weights'
/// offset of 8), written by [`super::rows::write_q4_0_prepared`].
pub(super) fn prep_q4_0(a: &[BlockQ8_0], out: &mut [u8]) {
    debug_assert!(out.len() >= prep_q4_0_bytes(a.len()));
    super::rows::write_q4_0_prepared(a, out, PREP_Q4_0_HEAD, 2);
}

/// Q4_0 × Q8_0 for [`ROWS`] rows ([`super::rows`]) on activations prepared once per row
/// ([`prep_q4_0`]): the activation
/// side of a step (8 blocks) is 12 32-byte loads instead of 8 paired loads, 4 dot
/// products and the scales' gather for each group of rows; each block's integer sum and
/// scale are those the kernel formed when it prepared them per call. In L1, one core (`dot_min`): see kernels/README.md.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q4_0_prepared(
    rows: [&[BlockQ4_0]; ROWS],
    a: &[BlockQ8_0],
    prep: &[u8],
) -> [f32; ROWS] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    assert!(
        prep.len() >= prep_q4_0_bytes(n),
        "prepared Q4_0 activations: {} bytes for {n} blocks",
        prep.len()
    );
    let ones = _mm256_set1_epi16(1);
    let dp = |acc: __m256i, u: __m256i, s: __m256i| {
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones))
    };
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); ROWS];
    let wp: [*const BlockQ4_0; ROWS] = std::array::from_fn(|r| rows[r].as_ptr());
    let ahead = wp[ROWS - 1].wrapping_add(n).cast::<i8>();
    const STEP_BYTES: usize = ROWS * 8 * std::mem::size_of::<BlockQ4_0>();
    let mut b = 0;
    while b + 8 <= n {
        for l in (0..STEP_BYTES).step_by(64) {
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(b / 8 * STEP_BYTES + l));
        }
        // SAFETY (all reads below): b + 8 <= n, every row holds ≥ n blocks, and `prep`
        // holds ≥ n / 8 groups of 416 bytes (checked above).
        unsafe {
            let pp = prep.as_ptr().add(b / 8 * PREP_Q4_0_GROUP);
            let dy = _mm256_loadu_ps(pp.cast());
            let s: [__m256; ROWS] = std::array::from_fn(|r| {
                let x = wp[r].add(b);
                _mm256_mul_ps(f16x8(std::array::from_fn(|k| (*x.add(k)).d)), dy)
            });
            for p in 0..4 {
                let ld = |o: usize| _mm256_loadu_si256(pp.add(32 + 96 * p + o).cast());
                let (ylo, yhi, c) = (ld(0), ld(32), ld(64));
                let k = 2 * p as i32;
                let idx = _mm256_setr_epi32(k, k, k, k, k + 1, k + 1, k + 1, k + 1);
                for r in 0..ROWS {
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
    let mut out: [f32; ROWS] = std::array::from_fn(|r| hsum(acc[r]));
    // The last blocks (fewer than 8), one at a time.
    if b < n {
        let tail = rows_q4_0_tail(std::array::from_fn(|r| &rows[r][b..n]), &a[b..n]);
        for r in 0..ROWS {
            out[r] += tail[r];
        }
    }
    out
}
