//! The attention contract: where a KV cache keeps its rows ([`KvLayout`]), the element
//! types it may hold ([`KvElem`]), and the job a whole-group SIMD kernel receives
//! ([`AttendJob`], checked once per call so the kernel can use raw pointers).

use half::{bf16, f16};

use super::dot::VecDot;
use crate::buffer::Plain;
use crate::format::blocks::{Block, BlockQ4_0, BlockQ8_0};

/// Where a cache slice keeps the row of (position, KV head): its element d is at
/// `head · head_stride + pos · pos_stride + d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub pos_stride: usize,
    pub head_stride: usize,
}

impl KvLayout {
    /// `[position][kv_head][head_dim]`: a position's heads side by side.
    pub fn position_major(n_kv_head: usize, head_dim: usize) -> KvLayout {
        KvLayout {
            pos_stride: n_kv_head * head_dim,
            head_stride: head_dim,
        }
    }

    /// `[kv_head][n_ctx][head_dim]`: each head's positions contiguous, so attention for
    /// one head streams two contiguous ranges (K and V), which the hardware prefetchers
    /// follow; phiq's cache. (Position-major rows are 2·head_dim bytes every
    /// n_kv_head·2·head_dim: one thread read them at 8 GB/s where contiguous ones went
    /// at 12, `--example attn_depth`.)
    pub fn head_major(n_ctx: usize, head_dim: usize) -> KvLayout {
        KvLayout {
            pos_stride: head_dim,
            head_stride: n_ctx * head_dim,
        }
    }

    /// First element of the row of (`pos`, `head`).
    pub fn at(self, pos: usize, head: usize) -> usize {
        head * self.head_stride + pos * self.pos_stride
    }
}

/// One (token, KV head) pair for the SIMD attention kernels: the `g` query heads of a
/// group (`q`, `out`: `g · head_dim` values) over the cached positions `keys`. Or a few
/// consecutive tokens' query heads of one KV head, side by side (`g` rows in all), so that
/// each K and V row read serves all of them: row `h` then attends to `keys.start ..
/// ends[h]` (each `ends[h]` in `keys.start + 1 ..= keys.end`; the causal mask of the
/// earlier tokens).
pub struct AttendJob<'a, K = f16, V = K> {
    pub q: &'a [f32],
    pub k: &'a [K],
    pub v: &'a [V],
    /// Values between consecutive positions of one head ([`KvLayout::pos_stride`]; a
    /// whole number of blocks of either type).
    pub stride: usize,
    /// Value index of position 0 of this KV head ([`KvLayout::at`]`(0, kv_head)`).
    pub offset: usize,
    pub keys: std::ops::Range<usize>,
    pub head_dim: usize,
    pub scale: f32,
    /// Where each row's keys end (exclusive); `keys.end` for a single token's heads.
    pub ends: [usize; MAX_GROUP_HEADS],
    pub out: &'a mut [f32],
}

impl<K: Block, V: Block> AttendJob<'_, K, V> {
    /// Panics unless the kernels' assumptions hold (cheap: once per call): a head size
    /// that is a multiple of 16, 1..=8 heads, rows in whole blocks of both types, a
    /// non-empty range of positions whose rows are inside both caches.
    pub fn check(&self) {
        let hd = self.head_dim;
        assert!(
            hd > 0 && hd.is_multiple_of(16),
            "head_dim {hd}: not a multiple of 16"
        );
        for qk in [K::QK, V::QK] {
            assert!(
                hd.is_multiple_of(qk)
                    && self.stride.is_multiple_of(qk)
                    && self.offset.is_multiple_of(qk),
                "rows of {hd} values every {} from {}: not whole blocks of {qk}",
                self.stride,
                self.offset
            );
        }
        let g = self.out.len() / hd;
        assert!(
            (1..=MAX_GROUP_HEADS).contains(&g)
                && self.out.len() == g * hd
                && self.q.len() == self.out.len(),
            "attention job: {} queries, {} outputs for head_dim {hd}",
            self.q.len(),
            self.out.len()
        );
        assert!(
            self.stride >= hd,
            "rows of {hd} every {} elements",
            self.stride
        );
        // Rows of positions < keys.end, which start at offset + pos · stride, end in both.
        assert!(
            self.keys.start < self.keys.end
                && (self.keys.end - 1)
                    .checked_mul(self.stride)
                    .and_then(|x| x.checked_add(self.offset + hd))
                    .is_some_and(|end| end <= (self.k.len() * K::QK).min(self.v.len() * V::QK)),
            "positions {:?} outside the caches",
            self.keys
        );
        assert!(
            self.ends[..g]
                .iter()
                .all(|&e| e > self.keys.start && e <= self.keys.end),
            "row ends {:?} outside the positions {:?}",
            &self.ends[..g],
            self.keys
        );
    }
}

/// The SIMD attention kernel for one [`AttendJob`].
pub type AttendFn<K, V = K> = fn(AttendJob<'_, K, V>);

/// Query heads of one KV group processed together (larger groups go in several passes).
pub const MAX_GROUP_HEADS: usize = 8;

/// `acc += p · v` over one cached value row (attention's V accumulation).
pub type AxpyFn<T> = fn(&mut [f32], f32, &[T]);

/// The KV cache's element types ([`KvElem::KIND`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvKind {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
}

/// An element type of the KV cache: f32, f16, bf16, or a block of 32 values in Q8_0 or
/// Q4_0 (llama.cpp's `--cache-type-k/-v` types; plain data, so a cache can live in a
/// [`crate::buffer::HugeBuf`]). A cached row of `head_dim` values is `head_dim / QK`
/// elements ([`crate::format::blocks::Block::QK`]: 1 for the float types). Scores are the key
/// type's dot product with the query quantized to its activation format ([`VecDot::Act`]:
/// f32 for f32 and f16 keys, bf16 for bf16, Q8_0 for Q8_0 and Q4_0: int8 dot products, as
/// llama.cpp's flash attention does).
pub trait KvElem: VecDot<Act: Plain> + Plain + crate::quant::Quantize {
    /// The cache type's name as llama.cpp's flags spell it (`f16`, `q8_0`, ...).
    const NAME: &'static str;
    /// Which of them it is (the SIMD kernels read each row format by it).
    const KIND: KvKind;
    /// Converts (or quantizes) one row of `head_dim` values into `out` (`head_dim / QK`
    /// elements): round to nearest even for the float types, ggml's reference quantizer
    /// for the blocks.
    fn store(x: &[f32], out: &mut [Self]) {
        <Self as crate::quant::Quantize>::quantize_row(x, out)
    }
}

impl KvElem for f16 {
    const KIND: KvKind = KvKind::F16;
    const NAME: &'static str = "f16";
}

impl KvElem for f32 {
    const KIND: KvKind = KvKind::F32;
    const NAME: &'static str = "f32";
}

impl KvElem for bf16 {
    const KIND: KvKind = KvKind::Bf16;
    const NAME: &'static str = "bf16";
}

impl KvElem for BlockQ8_0 {
    const KIND: KvKind = KvKind::Q8_0;
    const NAME: &'static str = "q8_0";
}

impl KvElem for BlockQ4_0 {
    const KIND: KvKind = KvKind::Q4_0;
    const NAME: &'static str = "q4_0";
}
