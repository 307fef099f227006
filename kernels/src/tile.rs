//! Tile kernels for batches ("GEMM"): many weight rows × many tokens at once, so a prompt
//! reads and decodes each weight block once for all its tokens.
//!
//! The per-dot path ([`crate::dot`]) pays for every (row, token) pair again: it decodes the
//! weight block, converts both scales and reduces 32 products across a vector. Here:
//!
//! 1. **Activations** (quantized once per matmul as usual, to Q8_0 or Q8_K) are
//!    *interleaved* by [`prepare_group`] into groups of [`GROUP`] = 16 tokens, so that one
//!    512-bit register holds the same 4 consecutive elements of 16 tokens: lanes are tokens.
//!    Per group and weight block (`QK` elements) the layout is
//!    `quants [QK/4][16 lanes][4 bytes] | d [16] f32 | sums [nsub/2][16][2 i16]` (sums only
//!    for types with mins), see [`act_block_bytes`]. The quants are XORed with the kernel's
//!    `xor` (0x80 turns signed bytes into `a + 128`, the unsigned operand of `vpdpbusd`).
//! 2. **Weights** stay where they are (the mmap, ggml's layout). A panel of R rows ×
//!    [`PANEL`] elements is decoded by [`TileScheme::decode`] into [`PackedRows`], a
//!    14 KiB buffer on the stack that lives in L1: signed 8-bit values in element order,
//!    a float scale per sub-block (`d·sc`), the K-quants' mins, and `-128·Σq` per
//!    sub-block (the correction for the `+128` of the unsigned activations). The panel is
//!    reused for up to 512 tokens, then dropped; no copy of the weights is kept. (The
//!    float tiles use another 8 KiB of it instead: 8 rows × 256 f32 or bf16 pairs, see
//!    [`PackedRows`] and `x86::avx512::tile_f32`.)
//!
//!    Q4_1 / Q5_1 (`TileScheme::OFFSET`) add `m · s` per block: the block's offset times
//!    the token's Q8_1 `s`, which the interleaved activations carry after `d`.
//! 3. An ISA **micro-kernel** (`x86::{avx2,avx512}::tile`) walks the panel for every token
//!    group: each weight dword is broadcast to all lanes and multiply-added with 16 tokens'
//!    activations (`vpdpbusd`), so each instruction does 64 useful multiply-adds and the
//!    per-block float work (convert, scale) is shared by a whole sub-block.
//!
//! Every output element is computed by the same sequence of operations whatever the row or
//! token tile it falls in (lanes and rows are independent, and the panel boundaries only
//! store and reload the float accumulator), so the result is bit-identical for any
//! thread count or chunking. It differs from the per-dot path by float rounding only.
//!
//! Sums carry between panels in `out`, `[rows][n_pad]` with `n_pad` the token count rounded
//! up to [`GROUP`] (padded lanes hold zero activations and are dropped). The last panel
//! stores there too ([`TileKernel::rows`]) or, for matmul, straight into `y` with a
//! transposing store. With many tokens the panels are the outer loop (one panel of
//! activations stays in L2 while the rows stream past); with few, the rows are (each row
//! read front to back, weights prefetched two tiles ahead).

// Without x86-64 kernels, the parts only they use are unused (aarch64 runs the scalar path).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::marker::PhantomData;

use crate::blocks::*;
use crate::dot::VecDot;
use crate::quantize::Quantize;

/// Tokens per group: the 16 int32 lanes of a 512-bit register.
pub const GROUP: usize = 16;
/// Elements of a row decoded per panel (the K blocking): 1 KiB of int8 per row.
pub const PANEL: usize = 1024;
/// Most weight rows a micro-kernel handles at once.
pub const MAX_TILE_ROWS: usize = 8;
/// Token groups processed per decoded panel (512 tokens): keeps a panel's activations
/// (≈ 590 KiB for Q8_0) inside a 1 MiB L2.
const GROUPS_PER_PASS: usize = 32;
/// Up to this many bytes of activations per pass, tiles go row by row through all the
/// panels (reading weights front to back); beyond, panel by panel through all the rows.
const ROW_ORDER_MAX_BYTES: usize = 256 << 10;
/// Sub-blocks per row per panel (the smallest sub-block has 16 elements).
const MAX_SUBS: usize = PANEL / 16;
/// Weight blocks per row per panel (the smallest block has 32 elements).
const MAX_BLOCKS: usize = PANEL / 32;
/// 32-bit words of a float panel per row: 256 f32 (F32, F16) or 256 bf16 pairs (BF16).
pub const FLOAT_PANEL: usize = 256;

/// An activation block the tile kernels can read: quants, scale and the sums of each
/// 16 quants (Q8_K's `bsums`; empty for Q8_0 and Q8_1).
pub trait TileAct: Quantize {
    fn parts(&self) -> (&[i8], f32, &[i16]);
    /// `d · Σq` as the block stores it (Q8_1's `s`, an f16), for the weights' offset.
    fn scaled_sum(&self) -> f32 {
        0.0
    }
}

impl TileAct for BlockQ8_0 {
    fn parts(&self) -> (&[i8], f32, &[i16]) {
        (&self.qs, self.d.to_f32(), &[])
    }
}

impl TileAct for BlockQ8_1 {
    fn parts(&self) -> (&[i8], f32, &[i16]) {
        (&self.qs, self.d.to_f32(), &[])
    }
    fn scaled_sum(&self) -> f32 {
        self.s.to_f32()
    }
}

impl TileAct for BlockQ8_K {
    fn parts(&self) -> (&[i8], f32, &[i16]) {
        (&self.qs, self.d, &self.bsums)
    }
}

/// A weight type the tile kernels can decode: each block is `QK / SUB` sub-blocks of
/// small integers with one float scale each, plus (`MINS`) a per-sub-block min or
/// (`OFFSET`) a per-block offset.
///
/// The block's dot with an activation block `(q8, d8, s8 = d8·Σq8)` must equal
/// `d8 · (Σ_s dsc[s] · Σ_{k∈s} q[k]·q8[k]  +  f · Σ_s mins[s] · Σ_{k∈s} q8[k])` (`MINS`),
/// `d8 · Σ_s dsc[s] · Σ_{k∈s} q[k]·q8[k]  +  f · s8` (`OFFSET`), or the first term alone,
/// up to float rounding, where `decode` fills `q`, `dsc`, `mins` and returns `f`.
pub trait TileScheme: VecDot<Act: TileAct> {
    /// Elements per scaled sub-block: 32 or 16.
    const SUB: usize;
    /// Whether the block has mins (Q4_K, Q5_K, Q2_K).
    const MINS: bool;
    /// Whether the block adds `m · s8`, its offset times the activation block's stored
    /// scaled sum (Q4_1, Q5_1 with Q8_1: the reference dot's `m_x · s_y`, taken from the
    /// same f16 `s` so the tiles agree with the dot path).
    const OFFSET: bool = false;
    /// The largest |q| `decode` can produce, for any bits (AVX2 picks its kernel by it).
    const MAX_ABS: i32;
    /// Decodes one block: `q[..QK]` in element order, `dsc[..QK/SUB]`, `mins[..QK/SUB]`
    /// (untouched without mins); returns `-dmin` (`MINS`), `m` (`OFFSET`) or 0.
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], mins: &mut [i16]) -> f32;
}

/// Bytes of one interleaved activation block (one weight block's span, 16 tokens):
/// quants, `d`, then `s` (`offset`) or the sub-block sums (`mins`).
pub const fn act_block_bytes(qk: usize, sub: usize, mins: bool, offset: bool) -> usize {
    GROUP * qk
        + GROUP * 4
        + if mins { GROUP * 2 * (qk / sub) } else { 0 }
        + if offset { GROUP * 4 } else { 0 }
}

/// Interleaves one group: tokens `t0..t0 + GROUP` of `act` (`[n_tokens][n_blocks]`), those
/// past `n_tokens` as zeros, into `out` (`n_blocks · act_block_bytes` bytes).
pub fn prepare_group<W: TileScheme>(
    act: &[W::Act],
    n_tokens: usize,
    n_blocks: usize,
    t0: usize,
    xor: u8,
    out: &mut [u8],
) {
    let qk = W::QK;
    let nsub = qk / W::SUB;
    let bb = act_block_bytes(qk, W::SUB, W::MINS, W::OFFSET);
    assert_eq!(
        out.len(),
        n_blocks * bb,
        "prepare_group: wrong buffer length"
    );
    for (b, dst) in out.chunks_exact_mut(bb).enumerate() {
        let (quants, rest) = dst.split_at_mut(GROUP * qk);
        let (scales, sums) = rest.split_at_mut(GROUP * 4);
        for lane in 0..GROUP {
            let t = t0 + lane;
            if t >= n_tokens {
                for j in 0..qk / 4 {
                    quants[(j * GROUP + lane) * 4..][..4].fill(xor);
                }
                scales[4 * lane..4 * lane + 4].fill(0);
                if W::OFFSET {
                    sums[4 * lane..4 * lane + 4].fill(0);
                }
                if W::MINS {
                    for s in 0..nsub / 2 {
                        sums[(s * GROUP + lane) * 4..][..4].fill(0);
                    }
                }
                continue;
            }
            let (qs, d, bsums) = act[t * n_blocks + b].parts();
            for j in 0..qk / 4 {
                for i in 0..4 {
                    quants[(j * GROUP + lane) * 4 + i] = qs[4 * j + i] as u8 ^ xor;
                }
            }
            scales[4 * lane..4 * lane + 4].copy_from_slice(&d.to_le_bytes());
            if W::OFFSET {
                let s = act[t * n_blocks + b].scaled_sum();
                sums[4 * lane..4 * lane + 4].copy_from_slice(&s.to_le_bytes());
            }
            if W::MINS {
                let per = W::SUB / 16;
                for s in 0..nsub {
                    let sum: i16 = bsums[s * per..(s + 1) * per].iter().sum();
                    let at = ((s / 2) * GROUP + lane) * 4 + (s % 2) * 2;
                    sums[at..at + 2].copy_from_slice(&sum.to_le_bytes());
                }
            }
        }
    }
}

/// A panel of weight rows decoded for a micro-kernel (R rows × up to [`PANEL`] elements).
/// Layouts, with `R` the kernel's row count, `b` the block within the panel, `s` the
/// sub-block within the block and `nsub = QK / SUB`:
/// - `q`: `[b][R][QK]` signed values;
/// - `dsc`, `corr`: `[b][s][R]` scale `d·sc` and `-128 · Σ_{k∈s} q[k]`;
/// - `mins`: `[b][R][nsub]`; `per_block`: `[b][R]`, what `decode` returns (`-dmin` or `m`);
/// - `words` (the float tiles instead of all the above): `[k][R]` f32 bits (F32, F16), or
///   `[k/2][R]` bf16 pairs, element 2j in the low half (BF16).
///
/// Rows past the valid ones are zero.
#[repr(C, align(64))]
pub struct PackedRows {
    pub(crate) q: [i8; MAX_TILE_ROWS * PANEL],
    pub(crate) dsc: [f32; MAX_TILE_ROWS * MAX_SUBS],
    pub(crate) corr: [i32; MAX_TILE_ROWS * MAX_SUBS],
    pub(crate) mins: [i16; MAX_TILE_ROWS * MAX_SUBS],
    pub(crate) per_block: [f32; MAX_TILE_ROWS * MAX_BLOCKS],
    pub(crate) words: [u32; MAX_TILE_ROWS * FLOAT_PANEL],
    /// Blocks per row in this panel (`n_blocks · QK ≤ PANEL`; the float tiles: elements).
    pub(crate) n_blocks: usize,
}

impl PackedRows {
    fn new() -> PackedRows {
        PackedRows {
            q: [0; MAX_TILE_ROWS * PANEL],
            dsc: [0.0; MAX_TILE_ROWS * MAX_SUBS],
            corr: [0; MAX_TILE_ROWS * MAX_SUBS],
            mins: [0; MAX_TILE_ROWS * MAX_SUBS],
            per_block: [0.0; MAX_TILE_ROWS * MAX_BLOCKS],
            words: [0; MAX_TILE_ROWS * FLOAT_PANEL],
            n_blocks: 0,
        }
    }

    /// Decodes `rows[r][b0..b0 + n_blocks]` for `r < rows.len()`; rows up to `tile_rows`
    /// are zero. Inlined into ISA wrappers (`x86::select_tile`) so it is vectorized for them.
    #[inline(always)]
    pub(crate) fn pack<W: TileScheme>(
        &mut self,
        rows: &[&[W]],
        b0: usize,
        n_blocks: usize,
        tile_rows: usize,
    ) {
        let (qk, nsub) = (W::QK, W::QK / W::SUB);
        assert!(tile_rows <= MAX_TILE_ROWS && rows.len() <= tile_rows);
        assert!(n_blocks * qk <= PANEL);
        self.n_blocks = n_blocks;
        let mut dsc = [0f32; 16];
        for b in 0..n_blocks {
            for r in 0..tile_rows {
                let q = &mut self.q[(b * tile_rows + r) * qk..][..qk];
                let mins = &mut self.mins[(b * tile_rows + r) * nsub..][..nsub];
                let per_block = match rows.get(r) {
                    Some(row) => row[b0 + b].decode(q, &mut dsc, mins),
                    None => {
                        q.fill(0);
                        mins.fill(0);
                        dsc.fill(0.0);
                        0.0
                    }
                };
                self.per_block[b * tile_rows + r] = per_block;
                for s in 0..nsub {
                    self.dsc[(b * nsub + s) * tile_rows + r] = dsc[s];
                }
            }
        }
        // The corrections in a second pass: reading each block right after its decode would
        // wait for the wide store to retire (a 16-byte load from inside a 32-byte store is
        // not forwarded).
        for b in 0..n_blocks {
            for r in 0..tile_rows {
                let q = &self.q[(b * tile_rows + r) * qk..][..qk];
                for (s, sub) in q.chunks_exact(W::SUB).enumerate() {
                    self.corr[(b * nsub + s) * tile_rows + r] = -128 * crate::x86::sum_i8(sub);
                }
            }
        }
    }
}

/// Where the last panel's results go instead of `out`: `y[t][col + r]` (`y` is
/// `[n_tokens][stride]` floats), written by the kernel with a transposing store, for the
/// tokens `t0 + GROUP·g + lane < n_tokens` of the job's groups.
#[derive(Clone, Copy)]
pub(crate) struct YOut {
    pub(crate) ptr: *mut f32,
    len: usize,
    pub(crate) stride: usize,
    pub(crate) col: usize,
    /// Token of the job's first group.
    pub(crate) t0: usize,
    pub(crate) n_tokens: usize,
}

// SAFETY: a YOut is only a way to write elements of one `y`; whoever makes one (the unsafe
// `YOut::new`) promises that concurrent jobs write disjoint elements (disjoint columns).
unsafe impl Send for YOut {}
unsafe impl Sync for YOut {}

impl YOut {
    /// # Safety
    /// `ptr` must be valid for writes of `len` floats for as long as jobs use the YOut,
    /// and no one else may read or write the columns a job writes while it runs.
    pub(crate) unsafe fn new(ptr: *mut f32, len: usize, stride: usize, n_tokens: usize) -> YOut {
        YOut {
            ptr,
            len,
            stride,
            col: 0,
            t0: 0,
            n_tokens,
        }
    }
}

/// Asks for the bytes of `blocks` to be brought into cache (a hint; no effect elsewhere).
#[inline(always)]
fn prefetch<B>(blocks: &[B]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(blocks);
        let p = blocks.as_ptr().cast::<i8>();
        for off in (0..bytes).step_by(64) {
            // SAFETY: prefetch is only a hint and never faults; the address is inside
            // `blocks` (SSE, which it needs, is part of x86-64).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = blocks;
}

/// One micro-kernel call: a decoded panel × `groups` token groups, accumulating into `out`.
pub struct TileJob<'a> {
    pub(crate) w: &'a PackedRows,
    /// Interleaved activations: group `g`, block `b` of the panel at
    /// `g · group_stride + b · act_block_bytes`.
    pub(crate) acts: &'a [u8],
    pub(crate) group_stride: usize,
    pub(crate) groups: usize,
    /// Row `r`, group `g` at `r · out_stride + GROUP · g` (16 floats).
    pub(crate) out: &'a mut [f32],
    pub(crate) out_stride: usize,
    /// Valid rows (≤ the kernel's R); the others are computed and dropped.
    pub(crate) rows: usize,
    /// The first panel of the row: start from zero instead of `out`.
    pub(crate) first: bool,
    /// The last panel, when the results go to `y` rather than back to `out`.
    pub(crate) y: Option<YOut>,
}

impl TileJob<'_> {
    /// Panics unless every access a kernel with `tile_rows` rows makes for weight type `W`
    /// is in bounds (checked once per call, so the kernels can use raw pointers).
    pub(crate) fn check<W: TileScheme>(&self, tile_rows: usize) {
        assert!(self.w.n_blocks * W::QK <= PANEL);
        self.check_layout(
            tile_rows,
            act_block_bytes(W::QK, W::SUB, W::MINS, W::OFFSET),
        );
    }

    /// [`Self::check`] for a float tile whose panel words hold `per_word` elements each
    /// (interleaved activations: `elem_bytes` per element and token).
    pub(crate) fn check_float(&self, tile_rows: usize, per_word: usize, elem_bytes: usize) {
        assert!(self.w.n_blocks.div_ceil(per_word) <= FLOAT_PANEL);
        self.check_layout(tile_rows, GROUP * elem_bytes);
    }

    /// Activations (`bb` bytes per panel block and group), output and `y` bounds.
    fn check_layout(&self, tile_rows: usize, bb: usize) {
        assert!(tile_rows <= MAX_TILE_ROWS && self.rows <= tile_rows);
        if self.groups == 0 || self.rows == 0 {
            return;
        }
        assert!(self.acts.len() >= (self.groups - 1) * self.group_stride + self.w.n_blocks * bb);
        assert!(self.out.len() >= (self.rows - 1) * self.out_stride + GROUP * self.groups);
        if let Some(y) = self.y {
            // Writes go to tokens below n_tokens and columns col..col + rows.
            assert!(y.col + self.rows <= y.stride);
            if y.n_tokens > 0 {
                let end = (y.n_tokens - 1)
                    .checked_mul(y.stride)
                    .and_then(|v| v.checked_add(y.col + self.rows));
                assert!(end.is_some_and(|end| end <= y.len));
            }
        }
    }
}

/// Decodes a panel of weight rows (see [`PackedRows`]).
type PackFn<W> = fn(&mut PackedRows, &[&[W]], usize, usize, usize);
/// Interleaves one token group (see [`prepare_group`]).
type PrepareFn<A> = fn(&[A], usize, usize, usize, u8, &mut [u8]);

/// A batched kernel for weight type `W` on one ISA (see [`VecDot::tile_kernel`]).
pub struct TileKernel<W: VecDot> {
    /// Weight rows per micro-kernel call.
    pub rows: usize,
    /// XORed into every activation byte (0x80: unsigned `a + 128`).
    pub xor: u8,
    tile: fn(TileJob<'_>),
    pack: PackFn<W>,
    prepare: PrepareFn<W::Act>,
    /// [`act_block_bytes`] of `W`.
    pub act_block_bytes: usize,
    /// Weight blocks per row decoded per panel.
    panel_blocks: usize,
    _w: PhantomData<fn(&W)>,
}

impl<W: VecDot> Clone for TileKernel<W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: VecDot> Copy for TileKernel<W> {}

impl<W: TileScheme> TileKernel<W> {
    /// `tile` must be safe to call with any job that passes [`TileJob::check`] for
    /// `rows` (the x86 wrappers check, then call the `#[target_feature]` kernel); `pack`
    /// is [`PackedRows::pack`], possibly compiled for the kernel's ISA.
    pub(crate) fn new(
        rows: usize,
        xor: u8,
        tile: fn(TileJob<'_>),
        pack: PackFn<W>,
    ) -> TileKernel<W> {
        TileKernel {
            rows,
            xor,
            tile,
            pack,
            prepare: prepare_group::<W>,
            act_block_bytes: act_block_bytes(W::QK, W::SUB, W::MINS, W::OFFSET),
            panel_blocks: PANEL / W::QK,
            _w: PhantomData,
        }
    }
}

impl<W: VecDot> TileKernel<W> {
    /// A float tile (F32, F16, BF16: one element per block): `pack` fills
    /// [`PackedRows::words`] with up to `panel_elems` elements per row, `prepare`
    /// interleaves `elem_bytes` per element and token; `tile` as for [`Self::new`].
    pub(crate) fn new_float(
        rows: usize,
        tile: fn(TileJob<'_>),
        pack: PackFn<W>,
        prepare: PrepareFn<W::Act>,
        elem_bytes: usize,
        panel_elems: usize,
    ) -> TileKernel<W> {
        assert!(W::QK == 1 && panel_elems > 0);
        TileKernel {
            rows,
            xor: 0,
            tile,
            pack,
            prepare,
            act_block_bytes: GROUP * elem_bytes,
            panel_blocks: panel_elems,
            _w: PhantomData,
        }
    }

    /// Bytes of one group's interleaved activations for rows of `n_blocks` blocks.
    pub fn group_bytes(&self, n_blocks: usize) -> usize {
        n_blocks * self.act_block_bytes
    }

    /// Interleaves group `g` of `act` (`[n_tokens][n_blocks]`) into `out`
    /// ([`Self::group_bytes`] long).
    pub fn prepare_group(
        &self,
        act: &[W::Act],
        n_tokens: usize,
        n_blocks: usize,
        g: usize,
        out: &mut [u8],
    ) {
        (self.prepare)(act, n_tokens, n_blocks, g * GROUP, self.xor, out)
    }

    /// `out[r][t] = Σ_b w[r][b] · act[t][b]` for the rows of `w` (`[rows][n_blocks]`) and
    /// the tokens of `acts` (all groups, as made by [`Self::prepare_group`]);
    /// `out` is `[rows][n_pad]` with `n_pad = GROUP · groups`.
    pub fn rows(&self, w: &[W], n_blocks: usize, acts: &[u8], out: &mut [f32]) {
        self.run(w, n_blocks, acts, out, None)
    }

    /// As [`Self::rows`], but the results go to `y[t][row0 + r]` (`out` is then only the
    /// accumulator between panels).
    pub(crate) fn rows_to_y(
        &self,
        w: &[W],
        n_blocks: usize,
        acts: &[u8],
        out: &mut [f32],
        y: YOut,
        row0: usize,
    ) {
        self.run(w, n_blocks, acts, out, Some(YOut { col: row0, ..y }))
    }

    fn run(&self, w: &[W], n_blocks: usize, acts: &[u8], out: &mut [f32], y: Option<YOut>) {
        let group_stride = self.group_bytes(n_blocks);
        assert!(n_blocks > 0 && w.len().is_multiple_of(n_blocks));
        assert!(acts.len().is_multiple_of(group_stride));
        let (n_rows, groups) = (w.len() / n_blocks, acts.len() / group_stride);
        let n_pad = groups * GROUP;
        assert_eq!(out.len(), n_rows * n_pad, "tile rows: wrong output length");
        let blocks_per_panel = self.panel_blocks;
        let mut packed = PackedRows::new();
        let mut rows: [&[W]; MAX_TILE_ROWS] = [&[]; MAX_TILE_ROWS];
        for g0 in (0..groups).step_by(GROUPS_PER_PASS) {
            let ng = GROUPS_PER_PASS.min(groups - g0);
            // One tile: rows r0.. × the panel at block b0, for groups g0..g0 + ng.
            let mut tile = |r0: usize, b0: usize, next: Option<(usize, usize)>| {
                let nr = self.rows.min(n_rows - r0);
                let nb = blocks_per_panel.min(n_blocks - b0);
                for (r, row) in rows[..nr].iter_mut().enumerate() {
                    *row = &w[(r0 + r) * n_blocks..(r0 + r + 1) * n_blocks];
                }
                (self.pack)(&mut packed, &rows[..nr], b0, nb, self.rows);
                // The next tile's weights arrive from memory while this one computes.
                if let Some((r1, b1)) = next {
                    let nb1 = blocks_per_panel.min(n_blocks - b1);
                    for r in r1..(r1 + self.rows).min(n_rows) {
                        prefetch(&w[r * n_blocks + b1..r * n_blocks + b1 + nb1]);
                    }
                }
                (self.tile)(TileJob {
                    w: &packed,
                    acts: &acts[g0 * group_stride + b0 * self.act_block_bytes..],
                    group_stride,
                    groups: ng,
                    out: &mut out[r0 * n_pad + g0 * GROUP..],
                    out_stride: n_pad,
                    rows: nr,
                    first: b0 == 0,
                    y: y.filter(|_| b0 + nb == n_blocks).map(|y| YOut {
                        col: y.col + r0,
                        t0: g0 * GROUP,
                        ..y
                    }),
                });
            };
            let (row_step, panel_step) = (self.rows, blocks_per_panel);
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
}

/// [`prepare_group`] for f32 activations (F32, F16 weights): element k of the group's 16
/// tokens at `out[64k..64k + 64]`, one f32 per lane (zeros past `n_tokens`).
pub fn prepare_group_f32(
    act: &[f32],
    n_tokens: usize,
    n: usize,
    t0: usize,
    _xor: u8,
    out: &mut [u8],
) {
    assert_eq!(out.len(), n * GROUP * 4, "prepare_group_f32: wrong length");
    for lane in 0..GROUP {
        let t = t0 + lane;
        let row = (t < n_tokens).then(|| &act[t * n..(t + 1) * n]);
        for (k, dst) in out.chunks_exact_mut(GROUP * 4).enumerate() {
            let v = row.map_or(0.0, |r| r[k]);
            dst[4 * lane..4 * lane + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// [`prepare_group`] for bf16 activations: elements 2j, 2j+1 of the group's 16 tokens at
/// `out[64j..64j + 64]`, one pair per lane (the operand layout of `vdpbf16ps`); an odd
/// last element alone at `out[64j..64j + 32]`, one bf16 per lane.
pub fn prepare_group_bf16(
    act: &[half::bf16],
    n_tokens: usize,
    n: usize,
    t0: usize,
    _xor: u8,
    out: &mut [u8],
) {
    assert_eq!(out.len(), n * GROUP * 2, "prepare_group_bf16: wrong length");
    let pairs = n / 2;
    for lane in 0..GROUP {
        let t = t0 + lane;
        let row = (t < n_tokens).then(|| &act[t * n..(t + 1) * n]);
        for k in 0..n {
            let v = row.map_or(0, |r| r[k].to_bits());
            let at = if k / 2 < pairs {
                64 * (k / 2) + 4 * lane + 2 * (k % 2)
            } else {
                64 * pairs + 2 * lane
            };
            out[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// The scalar reference tile: `out[r][t] = dot_ref(w[r], act[t])` for the rows of `w`
/// (`[rows][n_blocks]`) and the tokens of `act` (`[n_tokens][n_act_blocks]`); `out` is
/// `[rows][n_tokens]`. The tile kernels are tested against this.
pub fn tile_ref<W: VecDot>(w: &[W], n_blocks: usize, act: &[W::Act], out: &mut [f32]) {
    let n_rows = w.len() / n_blocks;
    let n_tokens = out.len() / n_rows.max(1);
    let per_token = act.len() / n_tokens.max(1);
    for r in 0..n_rows {
        for t in 0..n_tokens {
            out[r * n_tokens + t] = W::dot_ref(
                &w[r * n_blocks..(r + 1) * n_blocks],
                &act[t * per_token..(t + 1) * per_token],
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Decoders: each mirrors its type's `dot_ref` in crate::dot. Scales use `to_f32_const`
// (exact, like `to_f32`, but plain code that inlines and needs no run-time CPU check).
// ---------------------------------------------------------------------------------

impl TileScheme for BlockQ4_0 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 8;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        for j in 0..16 {
            q[j] = (self.qs[j] & 0x0F) as i8 - 8;
            q[j + 16] = (self.qs[j] >> 4) as i8 - 8;
        }
        dsc[0] = self.d.to_f32_const();
        0.0
    }
}

impl TileScheme for BlockQ5_0 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 16;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let h0 = (((qh >> j) & 1) << 4) as u8;
            let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
            q[j] = ((self.qs[j] & 0x0F) | h0) as i8 - 16;
            q[j + 16] = ((self.qs[j] >> 4) | h1) as i8 - 16;
        }
        dsc[0] = self.d.to_f32_const();
        0.0
    }
}

impl TileScheme for BlockQ4_1 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const OFFSET: bool = true;
    const MAX_ABS: i32 = 15;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        for j in 0..16 {
            q[j] = (self.qs[j] & 0x0F) as i8;
            q[j + 16] = (self.qs[j] >> 4) as i8;
        }
        dsc[0] = self.d.to_f32_const();
        self.m.to_f32_const()
    }
}

impl TileScheme for BlockQ5_1 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const OFFSET: bool = true;
    const MAX_ABS: i32 = 31;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let h0 = (((qh >> j) & 1) << 4) as u8;
            let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
            q[j] = ((self.qs[j] & 0x0F) | h0) as i8;
            q[j + 16] = ((self.qs[j] >> 4) | h1) as i8;
        }
        dsc[0] = self.d.to_f32_const();
        self.m.to_f32_const()
    }
}

impl TileScheme for BlockQ8_0 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 128;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        q[..32].copy_from_slice(&self.qs);
        dsc[0] = self.d.to_f32_const();
        0.0
    }
}

impl TileScheme for BlockIQ4_NL {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 127;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        for j in 0..16 {
            q[j] = KVALUES_IQ4NL[(self.qs[j] & 0x0F) as usize];
            q[j + 16] = KVALUES_IQ4NL[(self.qs[j] >> 4) as usize];
        }
        dsc[0] = self.d.to_f32_const();
        0.0
    }
}

impl TileScheme for BlockQ4_K {
    const SUB: usize = 32;
    const MINS: bool = true;
    const MAX_ABS: i32 = 15;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], mins: &mut [i16]) -> f32 {
        let d = self.d.to_f32_const();
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                q[64 * c + l] = (b & 0x0F) as i8;
                q[64 * c + 32 + l] = (b >> 4) as i8;
            }
        }
        for s in 0..8 {
            let (sc, m) = scale_min_k4(s, &self.scales);
            // d (11-bit mantissa) × sc (6 bits) is exact in f32.
            dsc[s] = d * sc as f32;
            mins[s] = m as i16;
        }
        -self.dmin.to_f32_const()
    }
}

impl TileScheme for BlockQ5_K {
    const SUB: usize = 32;
    const MINS: bool = true;
    const MAX_ABS: i32 = 31;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], mins: &mut [i16]) -> f32 {
        let d = self.d.to_f32_const();
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                let h1 = ((self.qh[l] >> (2 * c)) & 1) << 4;
                let h2 = ((self.qh[l] >> (2 * c + 1)) & 1) << 4;
                q[64 * c + l] = ((b & 0x0F) | h1) as i8;
                q[64 * c + 32 + l] = ((b >> 4) | h2) as i8;
            }
        }
        for s in 0..8 {
            let (sc, m) = scale_min_k4(s, &self.scales);
            dsc[s] = d * sc as f32;
            mins[s] = m as i16;
        }
        -self.dmin.to_f32_const()
    }
}

impl TileScheme for BlockQ6_K {
    const SUB: usize = 16;
    const MINS: bool = false;
    const MAX_ABS: i32 = 32;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        for half in 0..2 {
            let ql = &self.ql[64 * half..64 * half + 64];
            let qh = &self.qh[32 * half..32 * half + 32];
            let y = &mut q[128 * half..128 * half + 128];
            for l in 0..32 {
                y[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                y[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        let d = self.d.to_f32_const();
        for s in 0..16 {
            dsc[s] = d * self.scales[s] as f32;
        }
        0.0
    }
}

impl TileScheme for BlockIQ4_XS {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 127;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        let d = self.d.to_f32_const();
        for ib in 0..8 {
            for j in 0..16 {
                let b = self.qs[16 * ib + j];
                q[32 * ib + j] = KVALUES_IQ4NL[(b & 0x0F) as usize];
                q[32 * ib + j + 16] = KVALUES_IQ4NL[(b >> 4) as usize];
            }
            dsc[ib] = d * self.scale(ib) as f32;
        }
        0.0
    }
}

impl TileScheme for BlockQ3_K {
    const SUB: usize = 16;
    const MINS: bool = false;
    const MAX_ABS: i32 = 4;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], _: &mut [i16]) -> f32 {
        let mut m = 1u8;
        for half in 0..2 {
            for (k, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                for l in 0..32 {
                    let lo = ((self.qs[32 * half + l] >> shift) & 3) as i8;
                    let sub = if self.hmask[l] & m != 0 { 0 } else { 4 };
                    q[128 * half + 32 * k + l] = lo - sub;
                }
                m <<= 1;
            }
        }
        let d = self.d.to_f32_const();
        for (s, sc) in self.unpack_scales().into_iter().enumerate() {
            dsc[s] = d * sc as f32;
        }
        0.0
    }
}

impl TileScheme for BlockQ2_K {
    const SUB: usize = 16;
    const MINS: bool = true;
    const MAX_ABS: i32 = 3;
    #[inline(always)]
    fn decode(&self, q: &mut [i8], dsc: &mut [f32], mins: &mut [i16]) -> f32 {
        for half in 0..2 {
            for (k, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                for l in 0..32 {
                    q[128 * half + 32 * k + l] = ((self.qs[32 * half + l] >> shift) & 3) as i8;
                }
            }
        }
        let d = self.d.to_f32_const();
        for s in 0..16 {
            dsc[s] = d * (self.scales[s] & 0x0F) as f32;
            mins[s] = (self.scales[s] >> 4) as i16;
        }
        -self.dmin.to_f32_const()
    }
}
