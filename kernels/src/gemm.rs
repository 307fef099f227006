//! The batched driver: walks a [`GemmKernel`] over a weight matrix, panel by panel and
//! tile of rows by tile of rows, for every group of interleaved tokens (the layouts and
//! the micro-kernel's job are in [`crate::contract::gemm`]). Sums carry between panels
//! in `out`; the last panel writes them there or, for matmul, straight into `y`.

use crate::contract::dot::VecDot;
use crate::contract::gemm::{GemmJob, GemmKernel, PackedPanel, YOut, MAX_TILE_ROWS, TOKEN_GROUP};
use crate::select;

/// Token groups processed per decoded panel (512 tokens): keeps a panel's activations
/// (≈ 590 KiB for Q8_0) inside a 1 MiB L2.
const GROUPS_PER_PASS: usize = 32;
/// Up to this many bytes of activations per pass, tiles go row by row through all the
/// panels (reading weights front to back); beyond, panel by panel through all the rows.
const ROW_ORDER_MAX_BYTES: usize = 256 << 10;

/// `out[r][t] = Σ_b w[r][b] · act[t][b]` for the rows of `w` (`[rows][n_blocks]`) and the
/// tokens of `acts` (all groups, as made by [`GemmKernel::interleave_group`]); `out` is
/// `[rows][n_pad]` with `n_pad = TOKEN_GROUP · groups`.
pub fn gemm_rows<W: VecDot>(
    kernel: &GemmKernel<W>,
    w: &[W],
    n_blocks: usize,
    acts: &[u8],
    out: &mut [f32],
) {
    run(kernel, w, n_blocks, acts, out, None)
}

/// As [`gemm_rows`], but the results go to `y[t][row0 + r]` (`out` is then only the
/// accumulator between panels).
pub(crate) fn gemm_rows_to_y<W: VecDot>(
    kernel: &GemmKernel<W>,
    (w, n_blocks): (&[W], usize),
    acts: &[u8],
    out: &mut [f32],
    y: YOut,
    row0: usize,
) {
    run(
        kernel,
        w,
        n_blocks,
        acts,
        out,
        Some(YOut { col: row0, ..y }),
    )
}

fn run<W: VecDot>(
    kernel: &GemmKernel<W>,
    w: &[W],
    n_blocks: usize,
    acts: &[u8],
    out: &mut [f32],
    y: Option<YOut>,
) {
    let group_stride = kernel.group_bytes(n_blocks);
    assert!(n_blocks > 0 && w.len().is_multiple_of(n_blocks));
    assert!(acts.len().is_multiple_of(group_stride));
    let (n_rows, groups) = (w.len() / n_blocks, acts.len() / group_stride);
    let n_pad = groups * TOKEN_GROUP;
    assert_eq!(out.len(), n_rows * n_pad, "tile rows: wrong output length");
    let blocks_per_panel = kernel.panel_blocks;
    let mut packed = PackedPanel::new();
    let mut rows: [&[W]; MAX_TILE_ROWS] = [&[]; MAX_TILE_ROWS];
    for g0 in (0..groups).step_by(GROUPS_PER_PASS) {
        let ng = GROUPS_PER_PASS.min(groups - g0);
        // One tile: rows r0.. × the panel at block b0, for groups g0..g0 + ng.
        let mut tile = |r0: usize, b0: usize, next: Option<(usize, usize)>| {
            let nr = kernel.rows.min(n_rows - r0);
            let nb = blocks_per_panel.min(n_blocks - b0);
            for (r, row) in rows[..nr].iter_mut().enumerate() {
                *row = &w[(r0 + r) * n_blocks..(r0 + r + 1) * n_blocks];
            }
            (kernel.pack)(&mut packed, &rows[..nr], b0, nb, kernel.rows);
            // The next tile's weights arrive from memory while this one computes.
            if let Some((r1, b1)) = next {
                let nb1 = blocks_per_panel.min(n_blocks - b1);
                for r in r1..(r1 + kernel.rows).min(n_rows) {
                    select::prefetch(&w[r * n_blocks + b1..r * n_blocks + b1 + nb1]);
                }
            }
            (kernel.tile)(GemmJob {
                w: &packed,
                acts: &acts[g0 * group_stride + b0 * kernel.act_block_bytes..],
                group_stride,
                groups: ng,
                out: &mut out[r0 * n_pad + g0 * TOKEN_GROUP..],
                out_stride: n_pad,
                rows: nr,
                first: b0 == 0,
                y: y.filter(|_| b0 + nb == n_blocks).map(|y| YOut {
                    col: y.col + r0,
                    t0: g0 * TOKEN_GROUP,
                    ..y
                }),
            });
        };
        let (row_step, panel_step) = (kernel.rows, blocks_per_panel);
        let next_row = |r0: usize| Some(r0 + row_step).filter(|&r| r < n_rows);
        let next_panel = |b0: usize| Some(b0 + panel_step).filter(|&b| b < n_blocks);
        if ng * group_stride <= ROW_ORDER_MAX_BYTES {
            // Few tokens: all their activations stay in L2 anyway, so walk each row
            // tile through every panel, reading its rows front to back. A tile then
            // computes for less than a memory latency: prefetch two tiles ahead.
            let after = |r0: usize, b0: usize| match next_panel(b0) {
                Some(b1) => Some((r0, b1)),
                None => next_row(r0).map(|r1| (r1, 0)),
            };
            for r0 in (0..n_rows).step_by(row_step) {
                for b0 in (0..n_blocks).step_by(panel_step) {
                    tile(r0, b0, after(r0, b0).and_then(|(r, b)| after(r, b)));
                }
            }
        } else {
            // Many tokens: keep one panel of activations in L2 while every row tile
            // streams past it.
            for b0 in (0..n_blocks).step_by(panel_step) {
                for r0 in (0..n_rows).step_by(row_step) {
                    let next = match next_row(r0) {
                        Some(r1) => Some((r1, b0)),
                        None => next_panel(b0).map(|b1| (0, b1)),
                    };
                    tile(r0, b0, next);
                }
            }
        }
    }
}
