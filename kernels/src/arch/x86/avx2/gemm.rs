//! The AVX2 tile micro-kernel for batches (see [`crate::contract::gemm`]).

use std::arch::x86_64::*;

use crate::arch::x86::common::sum_i8;
use crate::contract::gemm::{GemmJob, GemmWeight, PackedPanel};

/// Weight rows per tile call (16 ymm registers: 4 int32 + 4 float accumulators,
/// the activations, the broadcast weights and temporaries).
pub(crate) const TILE_ROWS: usize = 4;

/// The tile micro-kernel's body for weight type `$W` and `$R` rows (see [`tile`]): `$dp(sum, a, w, wa)` adds
/// the products of 4 activation bytes `a` and 4 weight bytes `w` per int32 lane to `sum`
/// (`wa`: the weights' absolute values from the panel's `qabs` when `$abs`, else `w`);
/// `$unsigned`: the activations are `a + 128` and each sum starts from the row's `corr`;
/// `$chunk` ≥ the dwords of a sub-block: instead of `$dp`, the int16 pair sums
/// `$pairs(a, w)` of the sub-block add in int16 before one widening `madd` (the caller
/// guarantees that `$chunk` of them cannot overflow int16).
/// The AVX-VNNI level ([`crate::arch::x86::avxvnni::gemm`]) expands it with `vpdpbusd`.
macro_rules! tile_body {
    ($W:ty, $R:expr, $unsigned:expr, $chunk:expr, $abs:expr, $job:expr, $dp:expr, $pairs:expr) => {{
        const R: usize = $R;
        let qk = <$W>::QK;
        let nsub = qk / <$W>::SUB;
        let dwords = <$W>::SUB / 4;
        let bb = $crate::contract::gemm::act_block_bytes(qk, <$W>::SUB, <$W>::MINS, <$W>::OFFSET);
        let job: $crate::contract::gemm::GemmJob<'_> = $job;
        let p = job.w;
        // SAFETY (every pointer below): as in the AVX-512 kernel — `check` bounds the
        // activation and output accesses; panel indices stay inside the `PackedPanel` arrays.
        unsafe {
            let q = p.q.as_ptr();
            let qabs = p.qabs.as_ptr();
            let dsc = p.dsc.as_ptr();
            let corr = p.corr.as_ptr();
            let mins = p.mins.as_ptr().cast::<i32>();
            let per_block = p.per_block.as_ptr();
            for g in 0..job.groups {
                for half in 0..2 {
                    // Lanes 8·half..8·half + 8 of the group: 32 bytes into each 64-byte row.
                    let acts = job.acts.as_ptr().add(g * job.group_stride + 32 * half);
                    let out = job
                        .out
                        .as_mut_ptr()
                        .add($crate::contract::gemm::TOKEN_GROUP * g + 8 * half);
                    let mut acc = [_mm256_setzero_ps(); R];
                    if !job.first {
                        for (r, acc) in acc.iter_mut().enumerate().take(job.rows) {
                            *acc = _mm256_loadu_ps(out.add(r * job.out_stride));
                        }
                    }
                    for b in 0..p.n_blocks {
                        let a = acts.add(b * bb);
                        let wq = q.add(b * R * qk);
                        let dy =
                            _mm256_loadu_ps(a.add($crate::contract::gemm::TOKEN_GROUP * qk).cast());
                        for s in 0..nsub {
                            let at = (b * nsub + s) * R;
                            let mut sum = [_mm256_setzero_si256(); R];
                            if $chunk >= dwords {
                                // Unsigned products of small weights: the pair sums of the
                                // whole sub-block add in int16 without overflow (the
                                // caller's bound), widened to int32 once.
                                let mut p16 = [_mm256_setzero_si256(); R];
                                for j in s * dwords..(s + 1) * dwords {
                                    let av = _mm256_loadu_si256(a.add(64 * j).cast());
                                    for (r, p16) in p16.iter_mut().enumerate() {
                                        let wv =
                                            (wq.add(r * qk + 4 * j) as *const i32).read_unaligned();
                                        let wv = _mm256_set1_epi32(wv);
                                        let pairs = $pairs(av, wv, wv);
                                        *p16 = _mm256_add_epi16(*p16, pairs);
                                    }
                                }
                                let ones = _mm256_set1_epi16(1);
                                for (r, (sum, p16)) in sum.iter_mut().zip(p16).enumerate() {
                                    *sum = _mm256_madd_epi16(p16, ones);
                                    if $unsigned {
                                        let c = _mm256_set1_epi32(*corr.add(at + r));
                                        *sum = _mm256_add_epi32(*sum, c);
                                    }
                                }
                            } else {
                                if $unsigned {
                                    for (r, sum) in sum.iter_mut().enumerate() {
                                        *sum = _mm256_set1_epi32(*corr.add(at + r));
                                    }
                                }
                                for j in s * dwords..(s + 1) * dwords {
                                    let av = _mm256_loadu_si256(a.add(64 * j).cast());
                                    for (r, sum) in sum.iter_mut().enumerate() {
                                        let at = r * qk + 4 * j;
                                        let wv = _mm256_set1_epi32(
                                            (wq.add(at) as *const i32).read_unaligned(),
                                        );
                                        let wa = match $abs {
                                            true => _mm256_set1_epi32(
                                                (qabs.add(b * R * qk + at) as *const i32)
                                                    .read_unaligned(),
                                            ),
                                            false => wv,
                                        };
                                        *sum = $dp(*sum, av, wv, wa);
                                    }
                                }
                            }
                            for r in 0..R {
                                let f = _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r]), dy);
                                let d = _mm256_set1_ps(*dsc.add(at + r));
                                acc[r] = _mm256_fmadd_ps(f, d, acc[r]);
                            }
                        }
                        if <$W>::MINS {
                            let sums = a.add($crate::contract::gemm::TOKEN_GROUP * (qk + 4));
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
                        if <$W>::OFFSET {
                            // + m · s8 (Q4_1/Q5_1): the offset times the tokens' scaled sums.
                            let sy = _mm256_loadu_ps(
                                a.add($crate::contract::gemm::TOKEN_GROUP * (qk + 4)).cast(),
                            );
                            for (r, acc) in acc.iter_mut().enumerate() {
                                let m = _mm256_set1_ps(*per_block.add(b * R + r));
                                *acc = _mm256_fmadd_ps(m, sy, *acc);
                            }
                        }
                    }
                    match job.y {
                        Some(y) => {
                            // Rows × 8 tokens through a small buffer into y[t][col + r].
                            let t = y.t0 + $crate::contract::gemm::TOKEN_GROUP * g + 8 * half;
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
    }};
}
pub(crate) use tile_body;

/// How the AVX2 tile multiplies bytes (`maddubs` takes one unsigned operand).
pub(crate) mod mode {
    /// Activations and weights signed: `maddubs(|q|, sign(a, q))`.
    pub(crate) const SIGNED: u8 = 0;
    /// Activations `a + 128` (unsigned), sums starting from the rows' `corr`: |q| ≤ 64.
    pub(crate) const UNSIGNED_ACTS: u8 = 1;
    /// Weights ≥ 0 ([`crate::format::unpack::Unpack::NONNEG`]), activations signed.
    pub(crate) const UNSIGNED_WEIGHTS: u8 = 2;
}

/// The tile micro-kernel (see [`crate::contract::gemm`]) without VNNI: [`TILE_ROWS`] decoded weight
/// rows × 8 tokens (each 16-token group in two halves). Per weight dword broadcast,
/// `maddubs` forms pair sums of 8 tokens and `madd` with ones widens them to int32, by
/// `MODE` (see [`mode`]):
/// - `UNSIGNED_ACTS` (|q| ≤ 64, activations `a + 128` as for VNNI, sums starting from
///   `corr`): `maddubs(a + 128, q)`, at most 2·255·64 < 2^15 per pair sum;
/// - `UNSIGNED_WEIGHTS` (q ≥ 0, activations signed): `maddubs(q, a)`, at most
///   2·128·MAX_ABS;
/// - `SIGNED`: `maddubs(|q|, sign(a, q))`, at most 2·128·128 = 2^15 only for q = −128
///   and a = −128, which the activations never are (|a| ≤ 127); |q| comes from the
///   panel's `qabs` (written by [`pack`]).
///
/// When ⌊32767 / largest pair sum⌋ dwords cover a sub-block (Q4_0, Q4_1, Q2_K, Q3_K,
/// Q4_K), the sub-block's pair sums add in int16 and one `madd` widens them.
/// Per sub-block: convert, multiply by the tokens' scales and add with `d·sc`; the mins
/// term likewise with `madd` of the sub-block sums (int16) by the mins.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, `job` must pass `job.check::<W>(TILE_ROWS)`;
/// with `UNSIGNED_ACTS` the activations must be `a + 128` and `W::MAX_ABS ≤ 64`, with
/// `UNSIGNED_WEIGHTS` the activations signed and `W::NONNEG`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tile<W: GemmWeight, const MODE: u8>(job: GemmJob<'_>) {
    let ones = _mm256_set1_epi16(1);
    let pairs = |av: __m256i, wv: __m256i, wa: __m256i| match MODE {
        mode::UNSIGNED_ACTS => _mm256_maddubs_epi16(av, wv),
        mode::UNSIGNED_WEIGHTS => _mm256_maddubs_epi16(wv, av),
        _ => _mm256_maddubs_epi16(wa, _mm256_sign_epi8(av, wv)),
    };
    let dp = |sum: __m256i, av: __m256i, wv: __m256i, wa: __m256i| {
        _mm256_add_epi32(sum, _mm256_madd_epi16(pairs(av, wv, wa), ones))
    };
    // The largest pair sum, and how many of them add in int16 without overflow (used when
    // they cover a sub-block).
    let max_abs = W::MAX_ABS as usize;
    let chunk = match MODE {
        mode::UNSIGNED_ACTS => 32767 / (2 * 255 * max_abs),
        mode::UNSIGNED_WEIGHTS => 32767 / (2 * 128 * max_abs),
        _ => 1,
    };
    let unsigned_acts = MODE == mode::UNSIGNED_ACTS;
    // The body's unsafe block relies on this function's contract.
    let signed = MODE == mode::SIGNED;
    tile_body!(W, TILE_ROWS, unsigned_acts, chunk, signed, job, dp, pairs)
}

/// [`PackedPanel::pack`] compiled for AVX2 (vectorized for this kernel's ISA), and for
/// the types [`tile`] takes in `SIGNED` mode the panel's `qabs`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn pack<W: GemmWeight>(
    p: &mut PackedPanel,
    rows: &[&[W]],
    b0: usize,
    n_blocks: usize,
    tile_rows: usize,
) {
    p.pack(rows, (b0, n_blocks), tile_rows, sum_i8);
    if signed_mode::<W>() {
        // Whole 32-byte chunks: the signed types' QK (32 or 256) is a multiple of 32.
        let n = n_blocks * tile_rows * W::QK;
        debug_assert_eq!(n % 32, 0);
        for (a, q) in p.qabs[..n]
            .chunks_exact_mut(32)
            .zip(p.q[..n].chunks_exact(32))
        {
            // SAFETY: 32 bytes each (chunks_exact).
            unsafe {
                let v = _mm256_abs_epi8(_mm256_loadu_si256(q.as_ptr().cast()));
                _mm256_storeu_si256(a.as_mut_ptr().cast(), v);
            }
        }
    }
}

/// Whether [`tile`] runs weight type `W` in `SIGNED` mode (neither q ≥ 0 nor |q| ≤ 64).
pub(crate) fn signed_mode<W: GemmWeight>() -> bool {
    !W::NONNEG && W::MAX_ABS > 64
}
