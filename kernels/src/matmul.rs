//! Matrix multiplication: weights W (`[n_out][n_in]`, any block type) × activations X
//! (f32 `[n_tokens][n_in]`) → Y (f32 `[n_tokens][n_out]`).
//!
//! The activations are quantized once per call to W's activation format (and, for a
//! multi-row kernel that reads one, written once into its prepared layout); output rows are
//! split across the threads in chunks ([`crate::par`]: the installed team, else rayon). One
//! token (GEMV) takes the type's multi-row kernel (4 rows at a time, [`GemvKernel`]) where
//! the row is wide enough for it, else one dot product per output element. A batch takes
//! the type's tile kernel when it has one ([`crate::contract::gemm`]: weight blocks decoded
//! once per panel and reused for up to 512 tokens, driven by [`crate::gemm`]), else each
//! token goes through the GEMV path. The kernels come from [`crate::select`].
//! Either way every output element is computed whole by one thread with the same code, so
//! the result is bit-identical for any thread count. Scratch buffers belong to
//! the caller ([`MatmulScratch`]), so the hot path does not allocate once they have grown
//! to size.

use crate::contract::dot::{DotFn, VecDot};
use crate::contract::gemm::{GemmKernel, YOut, TOKEN_GROUP};
use crate::contract::gemv::{GemvKernel, GEMV_ROWS};
use crate::error::KernelError;
use crate::format::blocks::{view_blocks_mut, Block};
use crate::gemm::gemm_rows_to_y;
use crate::isa::Isa;
use crate::par;
use crate::select::Select;

/// A 64-byte aligned line of scratch (the interleaved activations are read as zmm rows).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// The lines as one byte slice, borrowed from them.
fn lines_as_bytes(lines: &mut [Line]) -> &mut [u8] {
    // SAFETY: `Line` is 64 plain bytes without padding, so the lines are a valid,
    // initialised byte slice of 64 × their number; the returned borrow is tied to
    // `lines` by the signature.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), lines.len() * 64) }
}

/// Fewest tokens for which a batch takes the tile kernels: one full group of 16 lanes.
/// Below a few tokens a group is mostly padding and the weight panels' decode is not
/// amortized (tiles overtake one dot per output at about 6–8 tokens on Zen 4, see
/// kernels/README.md). Batches up to 15 tokens keep the dot path, so their results are
/// bit-identical to evaluating each token alone (tests/forward.rs relies on that for an
/// 11-token prompt).
pub const MIN_TILE_TOKENS: usize = TOKEN_GROUP;

/// Reusable buffers for [`matmul_typed`] (and `crate::dynamic::matmul`): the quantized activations (also interleaved for the
/// tile kernels) and a transposed output.
#[derive(Default)]
pub struct MatmulScratch {
    /// Quantized activations, `[n_tokens][blocks per row]`, as raw 8-byte-aligned storage.
    act: Vec<u64>,
    /// Output in `[n_out][n_tokens]` order (tile path: tokens padded to a multiple of
    /// 16), so each thread writes one contiguous run.
    out_t: Vec<f32>,
    /// The tile path's interleaved activations (`[groups][blocks][act_block_bytes]`).
    tile: Vec<Line>,
    /// The multi-row kernel's prepared activations (`[n_tokens][whole lines]`), for
    /// kernels that read them ([`GemvKernel::Prepared`]).
    prep: Vec<Line>,
    /// Batches take one dot product per output even when a tile kernel exists (to compare
    /// the two paths in benchmarks and tests).
    dots_only: bool,
    /// One dot product per row even when a multi-row kernel exists (likewise).
    single_rows: bool,
}

impl MatmulScratch {
    pub fn new() -> MatmulScratch {
        MatmulScratch::default()
    }

    /// Scratch whose batches use one dot product per output element, never the tile
    /// kernels: the path every batch took before them, kept to measure against.
    pub fn dots_only() -> MatmulScratch {
        MatmulScratch {
            dots_only: true,
            ..MatmulScratch::default()
        }
    }

    /// Scratch whose matrix × vector products take one dot product per row, never the
    /// multi-row kernels (to measure against).
    pub fn single_rows() -> MatmulScratch {
        MatmulScratch {
            single_rows: true,
            ..MatmulScratch::default()
        }
    }

    fn act_blocks<A: Block>(&mut self, n: usize) -> &mut [A] {
        let bytes = n * std::mem::size_of::<A>();
        let words = bytes.div_ceil(8);
        if self.act.len() < words {
            self.act.resize(words, 0);
        }
        // SAFETY (of the cast inside view_blocks_mut): u64 storage is 8-aligned, enough
        // for every block type; the byte view covers only initialised u64s.
        let all = unsafe {
            std::slice::from_raw_parts_mut(self.act.as_mut_ptr().cast::<u8>(), self.act.len() * 8)
        };
        view_blocks_mut::<A>(&mut all[..bytes]).expect("8-aligned scratch fits every block")
    }
}

/// Rows of W per parallel task: enough work to amortise scheduling (≥ 16 rows), and
/// several tasks per thread so uneven cores balance.
fn rows_per_task(n_out: usize) -> usize {
    let threads = par::current_threads().max(1);
    (n_out / (threads * 8))
        .clamp(16, 256)
        .next_multiple_of(GEMV_ROWS)
}

/// The dot products of weight rows `r0..r0 + n` with one activation row, each handed to
/// `put(i, value)` for row `r0 + i`: through the multi-row kernel when the type has one
/// (the last group repeats its last row; every row's arithmetic is the same in any group),
/// else one dot product per row. `prep` is the row's prepared layout when the multi-row
/// kernel reads one.
#[inline]
fn row_dots<W: VecDot>(
    w: &[W],
    row_blocks: usize,
    (r0, n): (usize, usize),
    (act, prep): (&[W::Act], &[u8]),
    (dot, multi): (DotFn<W>, Option<GemvKernel<W>>),
    mut put: impl FnMut(usize, f32),
) {
    let row = |r: usize| &w[r * row_blocks..(r + 1) * row_blocks];
    let Some(multi) = multi else {
        for i in 0..n {
            put(i, dot(row(r0 + i), act));
        }
        return;
    };
    for i0 in (0..n).step_by(GEMV_ROWS) {
        let k = (n - i0).min(GEMV_ROWS);
        let rows = std::array::from_fn(|j| row(r0 + i0 + j.min(k - 1)));
        let out = multi.run(rows, act, prep);
        for (j, &v) in out[..k].iter().enumerate() {
            put(i0 + j, v);
        }
    }
}

/// Typed matmul. `w.len() == n_out * n_in / W::QK`, `x.len() == n_tokens * n_in`,
/// `y.len() == n_tokens * n_out`.
pub fn matmul_typed<W: Select>(
    w: &[W],
    n_in: usize,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut MatmulScratch,
    isa: Isa,
) -> Result<(), KernelError> {
    let row_blocks = n_in / W::QK;
    if !n_in.is_multiple_of(W::QK) || !n_in.is_multiple_of(W::Act::QK) || row_blocks == 0 {
        return Err(KernelError::Length {
            expected: n_in.next_multiple_of(W::QK),
            found: n_in,
        });
    }
    let n_out = w.len() / row_blocks;
    if w.len() != n_out * row_blocks {
        return Err(KernelError::Length {
            expected: n_out * row_blocks,
            found: w.len(),
        });
    }
    if !x.len().is_multiple_of(n_in) {
        return Err(KernelError::Length {
            expected: x.len().next_multiple_of(n_in),
            found: x.len(),
        });
    }
    let n_tokens = x.len() / n_in;
    if y.len() != n_tokens * n_out {
        return Err(KernelError::Length {
            expected: n_tokens * n_out,
            found: y.len(),
        });
    }
    let act_per_row = n_in / W::Act::QK;
    let kernels = W::kernels(isa);
    let dot = kernels.dot;
    let act_row_bytes = act_per_row * std::mem::size_of::<W::Act>();
    let multi = kernels
        .gemv
        .filter(|k| !scratch.single_rows && act_row_bytes >= k.min_act_bytes());

    let tiles = kernels
        .gemm
        .filter(|_| n_tokens >= MIN_TILE_TOKENS && !scratch.dots_only);
    // Quantize every token's activations once (in parallel over tokens).
    let mut out_t = std::mem::take(&mut scratch.out_t);
    let mut tile = std::mem::take(&mut scratch.tile);
    let mut prep = std::mem::take(&mut scratch.prep);
    let act = scratch.act_blocks::<W::Act>(n_tokens * act_per_row);
    let quantize = kernels.quantize;
    par::chunks_mut(act, act_per_row, |t, a| {
        quantize(&x[t * n_in..(t + 1) * n_in], a)
    });
    let act: &[W::Act] = act;
    // The multi-row kernel's prepared activations (when it reads them and the batch does
    // not take the tiles), each token's in whole lines.
    let prepared = match multi {
        Some(GemvKernel::Prepared(p)) if tiles.is_none() => Some(p),
        _ => None,
    };
    let prep_bytes = prepared.map_or(0, |p| (p.bytes)(act_per_row).next_multiple_of(64));
    if prep.len() < n_tokens * prep_bytes / 64 {
        prep.resize(n_tokens * prep_bytes / 64, Line([0; 64]));
    }
    let prep_all = &mut lines_as_bytes(&mut prep)[..n_tokens * prep_bytes];
    // (A row shorter than one prepared group has an empty layout: nothing to write.)
    if let Some(p) = prepared.filter(|_| prep_bytes > 0) {
        par::chunks_mut(prep_all, prep_bytes, |t, buf| {
            (p.write)(&act[t * act_per_row..(t + 1) * act_per_row], buf)
        });
    }
    let prep_all: &[u8] = prep_all;
    let prep_of = |t: usize| &prep_all[t * prep_bytes..(t + 1) * prep_bytes];

    if n_tokens == 1 {
        // GEMV: write straight into y.
        let chunk = rows_per_task(n_out);
        par::chunks_mut(y, chunk, |c, ys| {
            let rows = (c * chunk, ys.len());
            let a = (act, prep_of(0));
            row_dots(w, row_blocks, rows, a, (dot, multi), |i, v| ys[i] = v);
        });
    } else if let Some(kernel) = tiles {
        let shape = (row_blocks, n_out, n_tokens);
        matmul_tiles(kernel, w, act, shape, y, &mut out_t, &mut tile);
    } else {
        out_t.resize(n_out * n_tokens, 0.0);
        let chunk = rows_per_task(n_out);
        par::chunks_mut(&mut out_t, chunk * n_tokens, |c, ys| {
            let rows = ys.len() / n_tokens;
            // Tokens in tiles so a tile's activations stay in cache while the
            // chunk's weight rows stream past them.
            const TOKEN_TILE: usize = 32;
            // Each token goes through `row_dots` exactly as a GEMV would, so a batch
            // gives each token's outputs bit for bit as evaluating it alone.
            for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
                let t1 = (t0 + TOKEN_TILE).min(n_tokens);
                for i0 in (0..rows).step_by(GEMV_ROWS) {
                    let group = (c * chunk + i0, (rows - i0).min(GEMV_ROWS));
                    for t in t0..t1 {
                        let a = (&act[t * act_per_row..(t + 1) * act_per_row], prep_of(t));
                        row_dots(w, row_blocks, group, a, (dot, multi), |i, v| {
                            ys[(i0 + i) * n_tokens + t] = v
                        });
                    }
                }
            }
        });
        for (r, col) in out_t.chunks_exact(n_tokens).enumerate() {
            for (t, &v) in col.iter().enumerate() {
                y[t * n_out + r] = v;
            }
        }
    }
    scratch.out_t = out_t;
    scratch.tile = tile;
    scratch.prep = prep;
    Ok(())
}

/// The batched path with a tile kernel: interleave the quantized activations by groups of
/// 16 tokens (in parallel), then run the kernel over chunks of output rows (in parallel);
/// the kernel carries its sums between K panels in `out_t` (`[n_out][n_pad]`) and writes
/// the finished ones straight into `y` (`[n_tokens][n_out]`).
fn matmul_tiles<W: VecDot>(
    kernel: GemmKernel<W>,
    w: &[W],
    act: &[W::Act],
    (row_blocks, n_out, n_tokens): (usize, usize, usize),
    y: &mut [f32],
    out_t: &mut Vec<f32>,
    tile: &mut Vec<Line>,
) {
    let groups = n_tokens.div_ceil(TOKEN_GROUP);
    let n_pad = groups * TOKEN_GROUP;
    let group_bytes = kernel.group_bytes(row_blocks);
    let bytes = groups * group_bytes;
    if tile.len() < bytes.div_ceil(64) {
        tile.resize(bytes.div_ceil(64), Line([0; 64]));
    }
    let tile_bytes = &mut lines_as_bytes(tile)[..bytes];
    let act_per_row = act.len() / n_tokens;
    par::chunks_mut(tile_bytes, group_bytes, |g, buf| {
        kernel.interleave_group(act, n_tokens, act_per_row, g, buf)
    });
    let tile_bytes: &[u8] = tile_bytes;

    // `out_t` only carries the sums between K panels; the last panel writes y directly.
    out_t.resize(n_out * n_pad, 0.0);
    // SAFETY: y is valid for its length for the whole parallel loop below (it is borrowed
    // mutably here and not otherwise touched), and each task writes only the columns of
    // its own rows, so no two tasks write the same element.
    let y_out = unsafe { YOut::new(y.as_mut_ptr(), y.len(), n_out, n_tokens) };
    let chunk = rows_per_task(n_out).next_multiple_of(kernel.rows);
    par::chunks_mut(out_t, chunk * n_pad, |c, out| {
        let rows = out.len() / n_pad;
        let w = &w[c * chunk * row_blocks..(c * chunk + rows) * row_blocks];
        gemm_rows_to_y(&kernel, (w, row_blocks), tile_bytes, out, y_out, c * chunk);
    });
}
