//! Matrix multiplication: weights W (`[n_out][n_in]`, any block type) × activations X
//! (f32 `[n_tokens][n_in]`) → Y (f32 `[n_tokens][n_out]`).
//!
//! The activations are quantized once per call to W's activation format; output rows are
//! split across rayon threads in chunks; every output element is one dot product computed
//! whole by one thread, so the result is bit-identical for any thread count. Scratch
//! buffers belong to the caller ([`MatmulScratch`]), so the hot path does not allocate
//! once they have grown to size.

use rayon::prelude::*;

use crate::blocks::{view_blocks_mut, Block};
use crate::dispatch::Isa;
use crate::dot::VecDot;
use crate::formats::GgmlType;
use crate::quantize::Quantize;
use crate::row::KernelError;

/// Reusable buffers for [`matmul`]: the quantized activations and a transposed output.
#[derive(Default)]
pub struct MatmulScratch {
    /// Quantized activations, `[n_tokens][blocks per row]`, as raw 8-byte-aligned storage.
    act: Vec<u64>,
    /// Output in `[n_out][n_tokens]` order, so each thread writes one contiguous run.
    out_t: Vec<f32>,
}

impl MatmulScratch {
    pub fn new() -> MatmulScratch {
        MatmulScratch::default()
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
    let threads = rayon::current_num_threads().max(1);
    (n_out / (threads * 8)).clamp(16, 256)
}

/// Typed matmul. `w.len() == n_out * n_in / W::QK`, `x.len() == n_tokens * n_in`,
/// `y.len() == n_tokens * n_out`.
pub fn matmul_typed<W: VecDot>(
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
    let dot = W::dot_kernel(isa);

    // Quantize every token's activations once (in parallel over tokens).
    let mut out_t = std::mem::take(&mut scratch.out_t);
    let act = scratch.act_blocks::<W::Act>(n_tokens * act_per_row);
    act.par_chunks_mut(act_per_row)
        .zip(x.par_chunks(n_in))
        .for_each(|(a, xr)| W::Act::quantize_row(xr, a));
    let act: &[W::Act] = act;

    if n_tokens == 1 {
        // GEMV: write straight into y.
        let chunk = rows_per_task(n_out);
        y.par_chunks_mut(chunk).enumerate().for_each(|(c, ys)| {
            for (i, yv) in ys.iter_mut().enumerate() {
                let r = c * chunk + i;
                *yv = dot(&w[r * row_blocks..(r + 1) * row_blocks], act);
            }
        });
    } else {
        out_t.resize(n_out * n_tokens, 0.0);
        let chunk = rows_per_task(n_out);
        out_t
            .par_chunks_mut(chunk * n_tokens)
            .enumerate()
            .for_each(|(c, ys)| {
                let rows = ys.len() / n_tokens;
                // Tokens in tiles so a tile's activations stay in cache while the
                // chunk's weight rows stream past them.
                const TOKEN_TILE: usize = 32;
                for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
                    let t1 = (t0 + TOKEN_TILE).min(n_tokens);
                    for i in 0..rows {
                        let r = c * chunk + i;
                        let wr = &w[r * row_blocks..(r + 1) * row_blocks];
                        for t in t0..t1 {
                            ys[i * n_tokens + t] =
                                dot(wr, &act[t * act_per_row..(t + 1) * act_per_row]);
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
    Ok(())
}

/// Matmul with the weight type known only at run time: `w` is the raw bytes of a
/// `[n_out][n_in]` tensor of type `ty`.
pub fn matmul(
    ty: GgmlType,
    w: &[u8],
    n_in: usize,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut MatmulScratch,
    isa: Isa,
) -> Result<(), KernelError> {
    crate::with_weight_block!(ty, B => {
        let blocks = view_blocks::<B>(w).ok_or(KernelError::BadBytes { ty, len: w.len() })?;
        matmul_typed::<B>(blocks, n_in, x, y, scratch, isa)
    })
}
