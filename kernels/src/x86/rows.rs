//! What the AVX2 and AVX-512 Q4_0 multi-row kernels share (`rows_q4_0_prepared` in
//! avx2.rs, `rows_q4_0` in avx512.rs): [`ROWS`] weight rows against one activation row.
//! The 4-bit values are used as they are stored, 0..16, as the unsigned operand (no sign
//! tricks per row): Σ (q − 8)·y = Σ q·y − 8·Σ y, and the −8·Σ y of each activation block
//! is prepared once per activation row ([`write_q4_0_prepared`]) and starts every row's
//! integer sum. Every row's arithmetic is the same whichever rows share the call, so
//! results do not depend on how rows are grouped.

/// Q4_0 × Q8_0 for `ROWS` rows, one block at a time, returned in row order: the last
/// (< 8) blocks of a row, after the kernels' groups of 8. Each block's low nibbles meet
/// its first 16 activations in lanes 0–3, its high nibbles the last 16 in lanes 4–7, all
/// with the block's scale.
///
/// `$dp(acc, u, s)`: acc + the sum of 4 adjacent u8 × i8 products in each i32 lane.
macro_rules! q4_0_rows_tail {
    ($rows:expr, $a:expr, $dp:expr) => {{
        let rows: [&[BlockQ4_0]; ROWS] = $rows;
        let a: &[BlockQ8_0] = $a;
        let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
        let low = _mm256_set1_epi8(0x0F);
        let eights = _mm256_set1_epi8(8);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); ROWS];
        for b in 0..n {
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
        }
        std::array::from_fn(|r| hsum(acc[r]))
    }};
}
pub(super) use q4_0_rows_tail;

/// Bytes per group of 8 blocks of [`write_q4_0_prepared`]'s layout with a `head`-byte
/// header: the header, then 8 × (16 + 16 values + 4 i32 corrections).
pub(super) const fn q4_0_prepared_group(head: usize) -> usize {
    head + 8 * 48
}

/// Writes the prepared Q4_0 activation layout of the AVX2 and AVX-512 multi-row kernels
/// (`prep_q4_0` in each): per group of 8 blocks, `head` bytes holding the 8 scales d_y as
/// f32 (zeros after), then for each run of `per_vec` blocks (one vector's worth: 2 in 256
/// bits, 4 in 512) their first 16 values side by side, their last 16, and the i32
/// −8·Σ of the 8 values that meet each i32 lane of the two (the weights' offset of 8).
pub(super) fn write_q4_0_prepared(
    a: &[crate::blocks::BlockQ8_0],
    out: &mut [u8],
    head: usize,
    per_vec: usize,
) {
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
