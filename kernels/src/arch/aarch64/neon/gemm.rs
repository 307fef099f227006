//! The NEON tile micro-kernel for batches (see [`crate::contract::gemm`]): every integer
//! weight type, from the panels the reference `Unpack` decodes.
//!
//! [`TILE_ROWS`] decoded weight rows × 8 tokens (each 16-token group in two halves).
//! The activations stay signed (the interleaving's `xor` is 0: `sdot` multiplies signed
//! by signed, so the panels' `+128` corrections are not needed). Per 4 weight dwords of a
//! row, one 16-byte load feeds `sdot` by element (`.4b[i]`) against the activations of 8
//! tokens (two registers of 4 tokens × 4 bytes): 8 `sdot` per dword for 4 rows, 6 loads per
//! 4 dwords. Registers: 8 int32 sums, 8 float accumulators, the tokens' scales, the
//! activations and 4 weight registers, 24 of the 32.

use std::arch::aarch64::*;

use super::{sdot_lane, sum_i8};
use crate::contract::gemm::{act_block_bytes, GemmJob, GemmWeight, PackedPanel, TOKEN_GROUP};

/// Weight rows per tile call.
pub(crate) const TILE_ROWS: usize = 4;

/// The tile micro-kernel (see the module doc).
///
/// # Safety
/// The CPU must have NEON and `dotprod`, `job` must pass `job.check::<W>(TILE_ROWS)`, and
/// the activations must be interleaved with `xor` 0 (signed).
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn tile<W: GemmWeight>(job: GemmJob<'_>) {
    const R: usize = TILE_ROWS;
    let qk = W::QK;
    let nsub = qk / W::SUB;
    // Dwords per sub-block: 4 (SUB = 16) or more, always a multiple of 4.
    let dwords = W::SUB / 4;
    let bb = act_block_bytes(qk, W::SUB, W::MINS, W::OFFSET);
    let p: &PackedPanel = job.w;
    let q = p.q.as_ptr();
    let dsc = p.dsc.as_ptr();
    let mins = p.mins.as_ptr();
    let per_block = p.per_block.as_ptr();
    // SAFETY (every pointer below): `check` bounds the activation and output accesses;
    // panel indices stay inside the `PackedPanel` arrays (n_blocks · QK ≤ PANEL, R rows).
    for g in 0..job.groups {
        for half in 0..2 {
            // Lanes 8·half..8·half + 8 of the group: 32 bytes into each 64-byte row.
            let acts = job.acts.as_ptr().add(g * job.group_stride + 32 * half);
            let out = job.out.as_mut_ptr().add(TOKEN_GROUP * g + 8 * half);
            let mut acc = [[vdupq_n_f32(0.0); 2]; R];
            if !job.first {
                for (r, acc) in acc.iter_mut().enumerate().take(job.rows) {
                    let o = out.add(r * job.out_stride);
                    *acc = [vld1q_f32(o), vld1q_f32(o.add(4))];
                }
            }
            for b in 0..p.n_blocks {
                let a = acts.add(b * bb);
                let wq = q.add(b * R * qk);
                let dy_at = a.add(TOKEN_GROUP * qk).cast::<f32>();
                let dy = [vld1q_f32(dy_at), vld1q_f32(dy_at.add(4))];
                for s in 0..nsub {
                    let at = (b * nsub + s) * R;
                    let mut sum = [[vdupq_n_s32(0); 2]; R];
                    for j4 in (s * dwords..(s + 1) * dwords).step_by(4) {
                        let mut w = [vdupq_n_s8(0); R];
                        for (r, w) in w.iter_mut().enumerate() {
                            *w = vld1q_s8(wq.add(r * qk + 4 * j4));
                        }
                        macro_rules! step {
                            ($l:literal) => {{
                                let x = a.add(64 * (j4 + $l)).cast::<i8>();
                                let (a0, a1) = (vld1q_s8(x), vld1q_s8(x.add(16)));
                                for r in 0..R {
                                    sum[r][0] = sdot_lane::<$l>(sum[r][0], a0, w[r]);
                                    sum[r][1] = sdot_lane::<$l>(sum[r][1], a1, w[r]);
                                }
                            }};
                        }
                        step!(0);
                        step!(1);
                        step!(2);
                        step!(3);
                    }
                    for r in 0..R {
                        let d = *dsc.add(at + r);
                        for h in 0..2 {
                            let f = vmulq_f32(vcvtq_f32_s32(sum[r][h]), dy[h]);
                            acc[r][h] = vfmaq_n_f32(acc[r][h], f, d);
                        }
                    }
                }
                if W::MINS {
                    // Per token, Σ_s mins[s] · (Σ of sub-block s's activations): the sums
                    // are [nsub/2][16 lanes][2 i16], split into even and odd s by `ld2`.
                    let sums = a.add(TOKEN_GROUP * (qk + 4)).cast::<i16>();
                    let m = mins.add(b * R * nsub);
                    let mut msum = [[vdupq_n_s32(0); 2]; R];
                    for j in 0..nsub / 2 {
                        let sv = vld2q_s16(sums.add(32 * j));
                        for (r, msum) in msum.iter_mut().enumerate() {
                            let (m0, m1) = (*m.add(r * nsub + 2 * j), *m.add(r * nsub + 2 * j + 1));
                            msum[0] = vmlal_n_s16(msum[0], vget_low_s16(sv.0), m0);
                            msum[0] = vmlal_n_s16(msum[0], vget_low_s16(sv.1), m1);
                            msum[1] = vmlal_high_n_s16(msum[1], sv.0, m0);
                            msum[1] = vmlal_high_n_s16(msum[1], sv.1, m1);
                        }
                    }
                    for r in 0..R {
                        let nd = *per_block.add(b * R + r);
                        for h in 0..2 {
                            let f = vmulq_f32(vcvtq_f32_s32(msum[r][h]), dy[h]);
                            acc[r][h] = vfmaq_n_f32(acc[r][h], f, nd);
                        }
                    }
                }
                if W::OFFSET {
                    // + m · s8 (Q4_1/Q5_1): the offset times the tokens' scaled sums.
                    let sy_at = a.add(TOKEN_GROUP * (qk + 4)).cast::<f32>();
                    let sy = [vld1q_f32(sy_at), vld1q_f32(sy_at.add(4))];
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let m = *per_block.add(b * R + r);
                        for h in 0..2 {
                            acc[h] = vfmaq_n_f32(acc[h], sy[h], m);
                        }
                    }
                }
            }
            match job.y {
                Some(y) => {
                    // Rows × 8 tokens through a small buffer into y[t][col + r].
                    let t = y.t0 + TOKEN_GROUP * g + 8 * half;
                    let tokens = y.n_tokens.saturating_sub(t).min(8);
                    let mut buf = [[0f32; 8]; R];
                    for (b, acc) in buf.iter_mut().zip(&acc) {
                        vst1q_f32(b.as_mut_ptr(), acc[0]);
                        vst1q_f32(b.as_mut_ptr().add(4), acc[1]);
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
                        let o = out.add(r * job.out_stride);
                        vst1q_f32(o, acc[0]);
                        vst1q_f32(o.add(4), acc[1]);
                    }
                }
            }
        }
    }
}

/// [`PackedPanel::pack`] compiled for NEON.
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn pack<W: GemmWeight>(
    p: &mut PackedPanel,
    rows: &[&[W]],
    b0: usize,
    n_blocks: usize,
    tile_rows: usize,
) {
    p.pack(rows, (b0, n_blocks), tile_rows, sum_i8)
}
