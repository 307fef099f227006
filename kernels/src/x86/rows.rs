//! Multi-row dot products for matrix × vector: [`ROWS`] weight rows against one activation
//! row, so the activation side of each block (its loads, its rearrangement, the correction
//! for the weights' offset) is done once for all the rows. The body is a macro so the
//! AVX2 and AVX-512 VNNI modules compile the same steps with their own integer
//! multiply-add (`maddubs`+`madd`, or `vpdpbusd`).

/// Q4_0 × Q8_0 for `ROWS` rows, returned in row order.
///
/// The 4-bit values are used as they are stored, 0..16, as the unsigned operand (no sign
/// tricks per row): Σ (q − 8)·y = Σ q·y − 8·Σ y, and the −8·Σ y of each activation block is
/// computed once and starts every row's integer sum. Two blocks share one 256-bit vector:
/// their 16 bytes of nibbles side by side, the low nibbles against the two blocks' first 16
/// activations and the high nibbles against their last 16, so lanes 0–3 sum the first
/// block and lanes 4–7 the second; `vpermps` spreads the two blocks' d_w·d_y over those
/// lanes. Eight blocks' scales are converted together. Every row's arithmetic is the same
/// whichever rows share the call, so results do not depend on how rows are grouped.
///
/// `$dp(acc, u, s)`: acc + the sum of 4 adjacent u8 × i8 products in each i32 lane.
/// `$wd(p)`: the scales `d` of the 8 blocks from `p` as 8 f32 (unsafe: reads 8 blocks).
macro_rules! q4_0_rows {
    ($rows:expr, $a:expr, $dp:expr, $wd:expr) => {{
        let rows: [&[BlockQ4_0]; ROWS] = $rows;
        let a: &[BlockQ8_0] = $a;
        let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
        let low = _mm256_set1_epi8(0x0F);
        let eights = _mm256_set1_epi8(8);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); ROWS];
        let mut b = 0;
        // Raw pointers in the main loop: indexing four slices would bounds-check every
        // block of every row.
        let ap = a.as_ptr();
        let wp: [*const BlockQ4_0; ROWS] = std::array::from_fn(|r| rows[r].as_ptr());
        // The hardware prefetcher follows one long stream well but not ROWS short ones
        // that end every few KiB, so each step prefetches (into L2) its share of the
        // bytes after the last row: the next group of rows of a matrix, whose rows are
        // contiguous. Prefetches never fault; past the matrix they only waste a request.
        let ahead = wp[ROWS - 1].wrapping_add(n).cast::<i8>();
        const STEP_BYTES: usize = ROWS * 8 * std::mem::size_of::<BlockQ4_0>();
        while b + 8 <= n {
            for l in (0..STEP_BYTES).step_by(64) {
                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(b / 8 * STEP_BYTES + l));
            }
            // SAFETY (all reads below): b + 8 <= n, and every row and `a` hold ≥ n blocks.
            unsafe {
                let dy = f16x8(std::array::from_fn(|k| (*ap.add(b + k)).d));
                let s: [__m256; ROWS] =
                    std::array::from_fn(|r| _mm256_mul_ps($wd(wp[r].add(b)), dy));
                for p in 0..4 {
                    let y0 = (*ap.add(b + 2 * p)).qs.as_ptr();
                    let y1 = (*ap.add(b + 2 * p + 1)).qs.as_ptr();
                    let ylo = _mm256_loadu2_m128i(y1.cast(), y0.cast());
                    let yhi = _mm256_loadu2_m128i(y1.add(16).cast(), y0.add(16).cast());
                    let c = _mm256_sub_epi32(zero, $dp($dp(zero, eights, ylo), eights, yhi));
                    let k = 2 * p as i32;
                    let idx = _mm256_setr_epi32(k, k, k, k, k + 1, k + 1, k + 1, k + 1);
                    for r in 0..ROWS {
                        let w0 = (*wp[r].add(b + 2 * p)).qs.as_ptr();
                        let w1 = (*wp[r].add(b + 2 * p + 1)).qs.as_ptr();
                        let v = _mm256_loadu2_m128i(w1.cast(), w0.cast());
                        let lo = _mm256_and_si256(v, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                        let i = $dp($dp(c, lo, ylo), hi, yhi);
                        let sc = _mm256_permutevar8x32_ps(s[r], idx);
                        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), sc, acc[r]);
                    }
                }
            }
            b += 8;
        }
        // The last blocks (fewer than 8), one at a time: low nibbles in lanes 0–3, high in
        // 4–7, all with the block's scale.
        while b < n {
            let y = &a[b];
            // SAFETY: 32 readable bytes.
            let yv = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
            let c = _mm256_sub_epi32(zero, $dp(zero, eights, yv));
            for r in 0..ROWS {
                let x = &rows[r][b];
                // SAFETY: 16 readable bytes.
                let t = unsafe { _mm_loadu_si128(x.qs.as_ptr().cast()) };
                let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low);
                let i = $dp(c, q, yv);
                let sc = _mm256_set1_ps(fp16_mul(x.d, y.d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), sc, acc[r]);
            }
            b += 1;
        }
        std::array::from_fn(|r| hsum(acc[r]))
    }};
}
pub(super) use q4_0_rows;
