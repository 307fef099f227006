//! The matrix × vector contract: a kernel that takes [`GEMV_ROWS`] weight rows against one
//! activation row, so each activation block is loaded once for all of them and the rows'
//! weights stream side by side. Some kernels also read a layout of the activations
//! written once per activation row ([`PreparedGemv`]) and shared by every group of rows.

use super::dot::VecDot;

/// Weight rows per multi-row kernel call.
pub const GEMV_ROWS: usize = 4;

/// [`GEMV_ROWS`] weight rows · one activation row.
pub type GemvFn<W> = fn([&[W]; GEMV_ROWS], &[<W as VecDot>::Act]) -> [f32; GEMV_ROWS];

/// [`GEMV_ROWS`] weight rows · one activation row and its prepared layout ([`PreparedGemv`]).
pub type PreparedGemvFn<W> =
    fn([&[W]; GEMV_ROWS], &[<W as VecDot>::Act], &[u8]) -> [f32; GEMV_ROWS];

/// A multi-row kernel that reads, besides the activation blocks, a layout of them
/// written once per activation row and shared by every group of rows of the matrix: the
/// activations' rearrangement, the correction for the weights' offset and the scales
/// converted to f32, work that a [`GemvFn`] repeats for every group of [`GEMV_ROWS`] rows.
pub struct PreparedGemv<W: VecDot> {
    /// Bytes of the layout for an activation row of `n` blocks.
    pub bytes: fn(usize) -> usize,
    /// Writes the layout of the given activation row (into `bytes(a.len())` bytes).
    pub write: fn(&[W::Act], &mut [u8]),
    /// The kernel: weight rows, the activation row, and what `write` wrote for it
    /// (panics if that is shorter than `bytes(n)` for the `n` blocks it reads; other
    /// bytes than `write`'s give wrong sums, never unsafety).
    pub run: PreparedGemvFn<W>,
}

// Manual impls: a derive would require `W: Clone`.
impl<W: VecDot> Clone for PreparedGemv<W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: VecDot> Copy for PreparedGemv<W> {}

/// A type's multi-row kernel on some ISA.
pub enum GemvKernel<W: VecDot> {
    /// Reads the activation blocks as they are; only walks the rows together.
    Plain(GemvFn<W>),
    /// Reads the activation blocks as they are and shares their loads between the rows,
    /// where the per-row work is the larger part (the IQ grid lookups): wins at every
    /// shape.
    Shared(GemvFn<W>),
    /// Reads a layout of the activations prepared once per row.
    Prepared(PreparedGemv<W>),
}

impl<W: VecDot> Clone for GemvKernel<W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: VecDot> Copy for GemvKernel<W> {}

impl<W: VecDot> GemvKernel<W> {
    /// Matrix × vector takes this kernel only when one activation row is at least this many
    /// bytes: 0 for every kind. Plain kernels only walk the rows together (the block-wise
    /// driver) and were once kept for rows of 16 KiB and more, on the belief that one dot
    /// per row, which the hardware prefetcher follows, won below that; measured from
    /// memory they win at every Phi-4 shape (`gemv_stream`, 2026-12-07, two alternating
    /// pairs, % of the read bandwidth): AVX2 Q4_K ffn_up 31 → 64%, attn_qkv 30 → 61%;
    /// Q6_K 57 → 62% (AVX2), 63 → 65% (AVX-512); Q8_0 attn_qkv 79 → 82% (AVX-512),
    /// 74 → 80% (AVX2).
    pub fn min_act_bytes(&self) -> usize {
        match self {
            GemvKernel::Plain(_) | GemvKernel::Shared(_) | GemvKernel::Prepared(_) => 0,
        }
    }

    /// The prepared layout of activation row `a` (empty for a plain kernel).
    pub fn prepare(&self, a: &[W::Act]) -> Vec<u8> {
        match self {
            GemvKernel::Plain(_) | GemvKernel::Shared(_) => Vec::new(),
            GemvKernel::Prepared(p) => {
                // Not zeros: a byte the writer skipped must not pass for a plausible value.
                let mut buf = vec![0xA5u8; (p.bytes)(a.len())];
                (p.write)(a, &mut buf);
                buf
            }
        }
    }

    /// Runs the kernel on `a` and its prepared layout (ignored by a plain kernel).
    #[inline]
    pub fn run(&self, rows: [&[W]; GEMV_ROWS], a: &[W::Act], prep: &[u8]) -> [f32; GEMV_ROWS] {
        match self {
            GemvKernel::Plain(f) | GemvKernel::Shared(f) => f(rows, a),
            GemvKernel::Prepared(p) => (p.run)(rows, a, prep),
        }
    }

    /// Runs the kernel once, preparing the activations first if it needs that (tests and
    /// examples; matrix × vector prepares once per activation row).
    pub fn call(&self, rows: [&[W]; GEMV_ROWS], a: &[W::Act]) -> [f32; GEMV_ROWS] {
        self.run(rows, a, &self.prepare(a))
    }
}
