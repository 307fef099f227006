//! The batched-kernel contract ("GEMM"): tiles of many weight rows × many tokens at once,
//! so a prompt reads and decodes each weight block once for all its tokens. This file
//! holds the layouts the micro-kernels read and their job; [`crate::gemm`] drives them.
//!
//! The per-dot path ([`super::dot`]) pays for every (row, token) pair again: it decodes the
//! weight block, converts both scales and reduces 32 products across a vector. Here:
//!
//! 1. **Activations** (quantized once per matmul as usual, to Q8_0 or Q8_K) are
//!    *interleaved* by [`interleave`] into groups of [`TOKEN_GROUP`] = 16 tokens, so that one
//!    512-bit register holds the same 4 consecutive elements of 16 tokens: lanes are tokens.
//!    Per group and weight block (`QK` elements) the layout is
//!    `quants [QK/4][16 lanes][4 bytes] | d [16] f32 | sums [nsub/2][16][2 i16]` (sums only
//!    for types with mins), see [`act_block_bytes`]. The quants are XORed with the kernel's
//!    `xor` (0x80 turns signed bytes into `a + 128`, the unsigned operand of `vpdpbusd`).
//! 2. **Weights** stay where they are (the mmap, ggml's layout). A panel of R rows ×
//!    [`PANEL`] elements is decoded by [`decode`] (from [`Unpack`]) into [`PackedPanel`], a
//!    14 KiB buffer on the stack that lives in L1: signed 8-bit values in element order,
//!    a float scale per sub-block (`d·sc`), the K-quants' mins, and `-128·Σq` per
//!    sub-block (the correction for the `+128` of the unsigned activations). The panel is
//!    reused for up to 512 tokens, then dropped; no copy of the weights is kept. (The
//!    float tiles use another 8 KiB of it instead: 8 rows × 256 f32 or bf16 pairs, see
//!    [`PackedPanel`] and `arch/x86/avx512/gemm.rs`.)
//!
//!    Q4_1 / Q5_1 (`GemmWeight::OFFSET`) add `m · s` per block: the block's offset times
//!    the token's Q8_1 `s`, which the interleaved activations carry after `d`.
//! 3. An ISA **micro-kernel** (`tile` in `arch/x86/{avx2,avx512}/gemm.rs`) walks the panel for every token
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
//! up to [`TOKEN_GROUP`] (padded lanes hold zero activations and are dropped). The last panel
//! stores there too ([`crate::gemm::gemm_rows`]) or, for matmul, straight into `y` with a
//! transposing store. With many tokens the panels are the outer loop (one panel of
//! activations stays in L2 while the rows stream past); with few, the rows are (each row
//! read front to back, weights prefetched two tiles ahead).

use std::marker::PhantomData;

use super::dot::VecDot;
use crate::format::unpack::{Activation, Unpack};

/// Tokens per group: the 16 int32 lanes of a 512-bit register.
pub const TOKEN_GROUP: usize = 16;
/// Elements of a row decoded per panel (the K blocking): 1 KiB of int8 per row.
pub const PANEL: usize = 1024;
/// Most weight rows a micro-kernel handles at once.
pub const MAX_TILE_ROWS: usize = 8;
/// Sub-blocks per row per panel (the smallest sub-block has 16 elements).
const MAX_SUBS: usize = PANEL / 16;
/// Weight blocks per row per panel (the smallest block has 32 elements).
const MAX_BLOCKS: usize = PANEL / 32;
/// 32-bit words of a float panel per row: 256 f32 (F32, F16) or 256 bf16 pairs (BF16).
pub const FLOAT_PANEL: usize = 256;

/// A weight type the tile kernels can decode: a quantized format ([`Unpack`]: `QK / SUB`
/// sub-blocks of small integers with one scale each, plus mins or an offset) paired with
/// an activation format the interleaving can read ([`Activation`]).
///
/// With `decode`'s `dsc`, `mins` and `f`, the block's dot with an activation block
/// `(q8, d8, s8 = d8·Σq8)` is
/// `d8 · (Σ_s dsc[s] · Σ_{k∈s} q[k]·q8[k]  +  f · Σ_s mins[s] · Σ_{k∈s} q8[k])` (`MINS`),
/// `d8 · Σ_s dsc[s] · Σ_{k∈s} q[k]·q8[k]  +  f · s8` (`OFFSET`: the reference dot's
/// `m_x · s_y`, taken from the same f16 `s` so the tiles agree with the dot path), or the
/// first term alone, up to float rounding.
pub trait GemmWeight: VecDot<Act: Activation> + Unpack {}

impl<W: VecDot<Act: Activation> + Unpack> GemmWeight for W {}

/// Decodes one block for a panel: `q[..QK]` in element order, the float scale of each
/// sub-block `dsc[..QK/SUB]` (`d · sc`), `mins[..QK/SUB]` (untouched without mins);
/// returns `-dmin` (`MINS`), `m` (`OFFSET`) or 0.
#[inline(always)]
pub fn decode<W: GemmWeight>(w: &W, q: &mut [i8], dsc: &mut [f32], mins: &mut [i16]) -> f32 {
    decode_with(w, q, dsc, mins, W::unpack)
}

/// [`decode`] with `unpack` in place of [`crate::format::unpack::Unpack::unpack`] (an
/// ISA's vectorized equivalent: the same values).
#[inline(always)]
pub fn decode_with<W: GemmWeight>(
    w: &W,
    q: &mut [i8],
    dsc: &mut [f32],
    mins: &mut [i16],
    unpack: impl Fn(&W, &mut [i8], &mut [i16], &mut [i16]) -> (f32, f32),
) -> f32 {
    let mut sc = [0i16; 16];
    let (d, e) = unpack(w, q, &mut sc, mins);
    for s in 0..W::QK / W::SUB {
        // d (11-bit mantissa) × sc (≤ 8 bits) is exact in f32.
        dsc[s] = d * sc[s] as f32;
    }
    e
}

/// Bytes of one interleaved activation block (one weight block's span, 16 tokens):
/// quants, `d`, then `s` (`offset`) or the sub-block sums (`mins`).
pub const fn act_block_bytes(qk: usize, sub: usize, mins: bool, offset: bool) -> usize {
    TOKEN_GROUP * qk
        + TOKEN_GROUP * 4
        + if mins {
            TOKEN_GROUP * 2 * (qk / sub)
        } else {
            0
        }
        + if offset { TOKEN_GROUP * 4 } else { 0 }
}

/// Interleaves one group: tokens `t0..t0 + TOKEN_GROUP` of `act` (`[n_tokens][n_blocks]`), those
/// past `n_tokens` as zeros, into `out` (`n_blocks · act_block_bytes` bytes).
pub fn interleave<W: GemmWeight>(
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
    assert_eq!(out.len(), n_blocks * bb, "interleave: wrong buffer length");
    for (b, dst) in out.chunks_exact_mut(bb).enumerate() {
        let (quants, rest) = dst.split_at_mut(TOKEN_GROUP * qk);
        let (scales, sums) = rest.split_at_mut(TOKEN_GROUP * 4);
        for lane in 0..TOKEN_GROUP {
            let t = t0 + lane;
            if t >= n_tokens {
                for j in 0..qk / 4 {
                    quants[(j * TOKEN_GROUP + lane) * 4..][..4].fill(xor);
                }
                scales[4 * lane..4 * lane + 4].fill(0);
                if W::OFFSET {
                    sums[4 * lane..4 * lane + 4].fill(0);
                }
                if W::MINS {
                    for s in 0..nsub / 2 {
                        sums[(s * TOKEN_GROUP + lane) * 4..][..4].fill(0);
                    }
                }
                continue;
            }
            let (qs, d, bsums) = act[t * n_blocks + b].parts();
            for j in 0..qk / 4 {
                for i in 0..4 {
                    quants[(j * TOKEN_GROUP + lane) * 4 + i] = qs[4 * j + i] as u8 ^ xor;
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
                    let at = ((s / 2) * TOKEN_GROUP + lane) * 4 + (s % 2) * 2;
                    sums[at..at + 2].copy_from_slice(&sum.to_le_bytes());
                }
            }
        }
    }
}

/// A panel of weight rows decoded for a micro-kernel (R rows × up to [`PANEL`] elements).
/// Layouts, with `R` the kernel's row count, `b` the block within the panel, `s` the
/// sub-block within the block and `nsub = QK / SUB`:
/// - `q`: `[b][R][QK]` signed values; `qabs`: their absolute values (unsigned bytes,
///   same layout), written only by the packing of kernels that read them (AVX2's tile
///   for types with |q| > 64);
/// - `dsc`, `corr`: `[b][s][R]` scale `d·sc` and `-128 · Σ_{k∈s} q[k]`;
/// - `mins`: `[b][R][nsub]`; `per_block`: `[b][R]`, what `decode` returns (`-dmin` or `m`);
/// - `words` (the float tiles instead of all the above): `[k][R]` f32 bits (F32, F16), or
///   `[k/2][R]` bf16 pairs, element 2j in the low half (BF16).
///
/// Rows past the valid ones are zero.
#[repr(C, align(64))]
pub struct PackedPanel {
    pub q: [i8; MAX_TILE_ROWS * PANEL],
    pub qabs: [u8; MAX_TILE_ROWS * PANEL],
    pub dsc: [f32; MAX_TILE_ROWS * MAX_SUBS],
    pub corr: [i32; MAX_TILE_ROWS * MAX_SUBS],
    pub mins: [i16; MAX_TILE_ROWS * MAX_SUBS],
    pub per_block: [f32; MAX_TILE_ROWS * MAX_BLOCKS],
    pub words: [u32; MAX_TILE_ROWS * FLOAT_PANEL],
    /// Blocks per row in this panel (`n_blocks · QK ≤ PANEL`; the float tiles: elements).
    pub n_blocks: usize,
}

impl Default for PackedPanel {
    fn default() -> Self {
        PackedPanel::new()
    }
}

impl PackedPanel {
    pub fn new() -> PackedPanel {
        PackedPanel {
            q: [0; MAX_TILE_ROWS * PANEL],
            qabs: [0; MAX_TILE_ROWS * PANEL],
            dsc: [0.0; MAX_TILE_ROWS * MAX_SUBS],
            corr: [0; MAX_TILE_ROWS * MAX_SUBS],
            mins: [0; MAX_TILE_ROWS * MAX_SUBS],
            per_block: [0.0; MAX_TILE_ROWS * MAX_BLOCKS],
            words: [0; MAX_TILE_ROWS * FLOAT_PANEL],
            n_blocks: 0,
        }
    }

    /// Decodes `rows[r][b0..b0 + n_blocks]` for `r < rows.len()`; rows up to `tile_rows`
    /// are zero. `sum_i8` sums signed bytes (16 at a time). Inlined into the ISA's packing
    /// function (`pack` in `crate::arch::x86::*::gemm`) so it is vectorized for it.
    #[inline(always)]
    pub fn pack<W: GemmWeight>(
        &mut self,
        rows: &[&[W]],
        blocks: (usize, usize),
        tile_rows: usize,
        sum_i8: impl Fn(&[i8]) -> i32,
    ) {
        self.pack_with(rows, blocks, tile_rows, sum_i8, W::unpack)
    }

    /// [`Self::pack`] decoding each block with `unpack` (see [`decode_with`]).
    #[inline(always)]
    pub fn pack_with<W: GemmWeight>(
        &mut self,
        rows: &[&[W]],
        (b0, n_blocks): (usize, usize),
        tile_rows: usize,
        sum_i8: impl Fn(&[i8]) -> i32,
        unpack: impl Fn(&W, &mut [i8], &mut [i16], &mut [i16]) -> (f32, f32),
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
                    Some(row) => decode_with(&row[b0 + b], q, &mut dsc, mins, &unpack),
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
                    self.corr[(b * nsub + s) * tile_rows + r] = -128 * sum_i8(sub);
                }
            }
        }
    }
}

/// Where the last panel's results go instead of `out`: `y[t][col + r]` (`y` is
/// `[n_tokens][stride]` floats), written by the kernel with a transposing store, for the
/// tokens `t0 + TOKEN_GROUP·g + lane < n_tokens` of the job's groups.
#[derive(Clone, Copy)]
pub struct YOut {
    pub ptr: *mut f32,
    pub len: usize,
    pub stride: usize,
    pub col: usize,
    /// Token of the job's first group.
    pub t0: usize,
    pub n_tokens: usize,
}

// SAFETY: a YOut is only a way to write elements of one `y`; whoever makes one (the unsafe
// `YOut::new`) promises that concurrent jobs write disjoint elements (disjoint columns).
unsafe impl Send for YOut {}
unsafe impl Sync for YOut {}

impl YOut {
    /// # Safety
    /// `ptr` must be valid for writes of `len` floats for as long as jobs use the YOut,
    /// and no one else may read or write the columns a job writes while it runs.
    pub unsafe fn new(ptr: *mut f32, len: usize, stride: usize, n_tokens: usize) -> YOut {
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

/// One micro-kernel call: a decoded panel × `groups` token groups, accumulating into `out`.
pub struct GemmJob<'a> {
    pub w: &'a PackedPanel,
    /// Interleaved activations: group `g`, block `b` of the panel at
    /// `g · group_stride + b · act_block_bytes`.
    pub acts: &'a [u8],
    pub group_stride: usize,
    pub groups: usize,
    /// Row `r`, group `g` at `r · out_stride + TOKEN_GROUP · g` (16 floats).
    pub out: &'a mut [f32],
    pub out_stride: usize,
    /// Valid rows (≤ the kernel's R); the others are computed and dropped.
    pub rows: usize,
    /// The first panel of the row: start from zero instead of `out`.
    pub first: bool,
    /// The last panel, when the results go to `y` rather than back to `out`.
    pub y: Option<YOut>,
}

impl GemmJob<'_> {
    /// Panics unless every access a kernel with `tile_rows` rows makes for weight type `W`
    /// is in bounds (checked once per call, so the kernels can use raw pointers).
    pub fn check<W: GemmWeight>(&self, tile_rows: usize) {
        assert!(self.w.n_blocks * W::QK <= PANEL);
        self.check_layout(
            tile_rows,
            act_block_bytes(W::QK, W::SUB, W::MINS, W::OFFSET),
        );
    }

    /// [`Self::check`] for a float tile whose panel words hold `per_word` elements each
    /// (interleaved activations: `elem_bytes` per element and token).
    pub fn check_float(&self, tile_rows: usize, per_word: usize, elem_bytes: usize) {
        assert!(self.w.n_blocks.div_ceil(per_word) <= FLOAT_PANEL);
        self.check_layout(tile_rows, TOKEN_GROUP * elem_bytes);
    }

    /// Activations (`bb` bytes per panel block and group), output and `y` bounds.
    fn check_layout(&self, tile_rows: usize, bb: usize) {
        assert!(tile_rows <= MAX_TILE_ROWS && self.rows <= tile_rows);
        if self.groups == 0 || self.rows == 0 {
            return;
        }
        assert!(self.acts.len() >= (self.groups - 1) * self.group_stride + self.w.n_blocks * bb);
        assert!(self.out.len() >= (self.rows - 1) * self.out_stride + TOKEN_GROUP * self.groups);
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

/// Decodes a panel of weight rows (see [`PackedPanel`]).
pub type PackFn<W> = fn(&mut PackedPanel, &[&[W]], usize, usize, usize);
/// Interleaves one token group (see [`interleave`]).
pub type InterleaveFn<A> = fn(&[A], usize, usize, usize, u8, &mut [u8]);

/// A batched kernel for weight type `W` on one ISA (see [`crate::select::Kernels::gemm`]).
pub struct GemmKernel<W: VecDot> {
    /// Weight rows per micro-kernel call.
    pub rows: usize,
    /// XORed into every activation byte (0x80: unsigned `a + 128`).
    pub xor: u8,
    pub(crate) tile: fn(GemmJob<'_>),
    pub(crate) pack: PackFn<W>,
    pub(crate) interleave: InterleaveFn<W::Act>,
    /// [`act_block_bytes`] of `W`.
    pub act_block_bytes: usize,
    /// Weight blocks per row decoded per panel.
    pub(crate) panel_blocks: usize,
    _w: PhantomData<fn(&W)>,
}

impl<W: VecDot> Clone for GemmKernel<W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: VecDot> Copy for GemmKernel<W> {}

impl<W: GemmWeight> GemmKernel<W> {
    /// `tile` must be safe to call with any job that passes [`GemmJob::check`] for
    /// `rows` (the x86 wrappers check, then call the `#[target_feature]` kernel); `pack`
    /// is [`PackedPanel::pack`], possibly compiled for the kernel's ISA.
    pub fn new(rows: usize, xor: u8, tile: fn(GemmJob<'_>), pack: PackFn<W>) -> GemmKernel<W> {
        GemmKernel {
            rows,
            xor,
            tile,
            pack,
            interleave: interleave::<W>,
            act_block_bytes: act_block_bytes(W::QK, W::SUB, W::MINS, W::OFFSET),
            panel_blocks: PANEL / W::QK,
            _w: PhantomData,
        }
    }
}

impl<W: VecDot> GemmKernel<W> {
    /// A float tile (F32, F16, BF16: one element per block): `pack` fills
    /// [`PackedPanel::words`] with up to `panel_elems` elements per row, `interleave`
    /// interleaves `elem_bytes` per element and token; `tile` as for [`Self::new`].
    pub fn new_float(
        rows: usize,
        tile: fn(GemmJob<'_>),
        pack: PackFn<W>,
        interleave: InterleaveFn<W::Act>,
        elem_bytes: usize,
        panel_elems: usize,
    ) -> GemmKernel<W> {
        assert!(W::QK == 1 && panel_elems > 0);
        GemmKernel {
            rows,
            xor: 0,
            tile,
            pack,
            interleave,
            act_block_bytes: TOKEN_GROUP * elem_bytes,
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
    pub fn interleave_group(
        &self,
        act: &[W::Act],
        n_tokens: usize,
        n_blocks: usize,
        g: usize,
        out: &mut [u8],
    ) {
        (self.interleave)(act, n_tokens, n_blocks, g * TOKEN_GROUP, self.xor, out)
    }
}

/// [`interleave`] for f32 activations (F32, F16 weights): element k of the group's 16
/// tokens at `out[64k..64k + 64]`, one f32 per lane (zeros past `n_tokens`).
pub fn interleave_f32(act: &[f32], n_tokens: usize, n: usize, t0: usize, _xor: u8, out: &mut [u8]) {
    assert_eq!(
        out.len(),
        n * TOKEN_GROUP * 4,
        "interleave_f32: wrong length"
    );
    for lane in 0..TOKEN_GROUP {
        let t = t0 + lane;
        let row = (t < n_tokens).then(|| &act[t * n..(t + 1) * n]);
        for (k, dst) in out.chunks_exact_mut(TOKEN_GROUP * 4).enumerate() {
            let v = row.map_or(0.0, |r| r[k]);
            dst[4 * lane..4 * lane + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// [`interleave`] for bf16 activations: elements 2j, 2j+1 of the group's 16 tokens at
/// `out[64j..64j + 64]`, one pair per lane (the operand layout of `vdpbf16ps`); an odd
/// last element alone at `out[64j..64j + 32]`, one bf16 per lane.
pub fn interleave_bf16(
    act: &[half::bf16],
    n_tokens: usize,
    n: usize,
    t0: usize,
    _xor: u8,
    out: &mut [u8],
) {
    assert_eq!(
        out.len(),
        n * TOKEN_GROUP * 2,
        "interleave_bf16: wrong length"
    );
    let pairs = n / 2;
    for lane in 0..TOKEN_GROUP {
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
