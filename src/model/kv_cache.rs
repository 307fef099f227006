//! The key/value cache, allocated once per session for its context size. Keys and values
//! each have their own element type, as llama.cpp's `-ctk`/`-ctv`: f16 by default (half
//! the memory of f32, as llama.cpp), f32 (exact; for comparisons with float references),
//! bf16, or the block formats q8_0 (8.5 bits per value) and q4_0 (4.5 bits). Attention
//! reads each type in place (`phiq_kernels::attention`): int8 dot products against q8_0
//! and q4_0 keys, values dequantized inside the accumulation, never a dequantized copy.

use half::{bf16, f16};
use phiq_kernels::attention::{KvElem, KvLayout};
use phiq_kernels::buffer::HugeBuf;
use phiq_kernels::format::blocks::{Block, BlockQ4_0, BlockQ8_0};

/// Element type of the keys or of the values of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CacheType {
    #[default]
    F16,
    F32,
    Bf16,
    Q8_0,
    Q4_0,
}

impl CacheType {
    pub const ALL: [CacheType; 5] = [
        CacheType::F32,
        CacheType::F16,
        CacheType::Bf16,
        CacheType::Q8_0,
        CacheType::Q4_0,
    ];

    /// The name llama.cpp's flags use (`f16`, `q8_0`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => f32::NAME,
            CacheType::F16 => f16::NAME,
            CacheType::Bf16 => bf16::NAME,
            CacheType::Q8_0 => BlockQ8_0::NAME,
            CacheType::Q4_0 => BlockQ4_0::NAME,
        }
    }

    /// (bytes, values) of one element: `bytes / values` bytes per cached value.
    fn elem(self) -> (usize, usize) {
        fn of<T: Block>() -> (usize, usize) {
            (std::mem::size_of::<T>(), T::QK)
        }
        match self {
            CacheType::F32 => of::<f32>(),
            CacheType::F16 => of::<f16>(),
            CacheType::Bf16 => of::<bf16>(),
            CacheType::Q8_0 => of::<BlockQ8_0>(),
            CacheType::Q4_0 => of::<BlockQ4_0>(),
        }
    }

    /// Values per element: 1 for the float types, 32 for the blocks.
    pub fn block_values(self) -> usize {
        self.elem().1
    }

    /// Bytes that `n` cached values take (`n` a multiple of [`Self::block_values`]).
    pub fn bytes_for(self, n: usize) -> usize {
        let (bytes, per) = self.elem();
        n / per * bytes
    }

    /// Bits per cached value (16 for f16, 8.5 for q8_0).
    pub fn bits_per_value(self) -> f64 {
        let (bytes, per) = self.elem();
        bytes as f64 * 8.0 / per as f64
    }
}

impl std::fmt::Display for CacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> Result<CacheType, String> {
        let lower = s.to_ascii_lowercase();
        CacheType::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| {
                format!("KV cache type {s:?} is not supported: use f32, f16, bf16, q8_0 or q4_0")
            })
    }
}

/// One of K or V for every layer, `[n_layer][n_kv_head][n_ctx][head_dim]` values, so one
/// head's positions are contiguous ([`KvLayout::head_major`]); block types hold
/// `head_dim / 32` blocks per row. In 2 MiB pages (see `phiq_kernels::buffer`).
pub enum Store {
    F32(HugeBuf<f32>),
    F16(HugeBuf<f16>),
    Bf16(HugeBuf<bf16>),
    Q8_0(HugeBuf<BlockQ8_0>),
    Q4_0(HugeBuf<BlockQ4_0>),
}

/// `$body` with `$v` bound to the typed buffer of a [`Store`].
macro_rules! with_store {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            Store::F32($v) => $body,
            Store::F16($v) => $body,
            Store::Bf16($v) => $body,
            Store::Q8_0($v) => $body,
            Store::Q4_0($v) => $body,
        }
    };
}
pub(crate) use with_store;

impl Store {
    fn new(ty: CacheType, values: usize) -> Store {
        let n = values / ty.block_values();
        match ty {
            CacheType::F32 => Store::F32(HugeBuf::zeroed(n)),
            CacheType::F16 => Store::F16(HugeBuf::zeroed(n)),
            CacheType::Bf16 => Store::Bf16(HugeBuf::zeroed(n)),
            CacheType::Q8_0 => Store::Q8_0(HugeBuf::zeroed(n)),
            CacheType::Q4_0 => Store::Q4_0(HugeBuf::zeroed(n)),
        }
    }

    /// Writes the rows of one position: `x` holds `x.len() / hd` heads of `hd` values,
    /// head `h` going to value offset `at(h)` (a multiple of the block size).
    fn write(&mut self, x: &[f32], hd: usize, at: impl Fn(usize) -> usize) {
        fn put<T: KvElem>(buf: &mut [T], x: &[f32], hd: usize, at: impl Fn(usize) -> usize) {
            let row = hd / T::QK;
            for (h, src) in x.chunks_exact(hd).enumerate() {
                let o = at(h) / T::QK;
                T::store(src, &mut buf[o..o + row]);
            }
        }
        with_store!(self, b => put(b, x, hd, at))
    }
}

/// Keys and values of every layer.
pub struct KvCache {
    pub k: Store,
    pub v: Store,
    types: (CacheType, CacheType),
    n_layer: usize,
    n_ctx: usize,
    kv_dim: usize,
    head_dim: usize,
}

impl KvCache {
    /// A zeroed cache, or an error saying why the types cannot hold this model's heads
    /// (the block types need a head size in whole blocks of 32).
    pub fn new(
        k: CacheType,
        v: CacheType,
        n_layer: usize,
        n_ctx: usize,
        kv_dim: usize,
        head_dim: usize,
    ) -> Result<KvCache, String> {
        for (flag, ty) in [("-ctk/--cache-type-k", k), ("-ctv/--cache-type-v", v)] {
            let qk = ty.block_values();
            if !head_dim.is_multiple_of(qk) {
                return Err(format!(
                    "{flag} {ty}: {ty} stores blocks of {qk} values, and this model's head size {head_dim} is not a multiple of {qk} (use f16, bf16 or f32)"
                ));
            }
        }
        let values = n_layer * n_ctx * kv_dim;
        Ok(KvCache {
            k: Store::new(k, values),
            v: Store::new(v, values),
            types: (k, v),
            n_layer,
            n_ctx,
            kv_dim,
            head_dim,
        })
    }

    /// Bytes a cache of these types takes (both K and V), without allocating it.
    pub fn bytes_needed(
        k: CacheType,
        v: CacheType,
        n_layer: usize,
        n_ctx: usize,
        kv_dim: usize,
    ) -> usize {
        let values = n_layer * n_ctx * kv_dim;
        k.bytes_for(values) + v.bytes_for(values)
    }

    /// The key and value element types.
    pub fn types(&self) -> (CacheType, CacheType) {
        self.types
    }

    /// Where a layer keeps each (position, head) row, in values.
    pub fn layout(&self) -> KvLayout {
        KvLayout::head_major(self.n_ctx, self.head_dim)
    }

    /// Values per layer (the typed slice of layer `l` starts at `l ·` this `/ QK`).
    pub fn layer_values(&self) -> usize {
        self.n_ctx * self.kv_dim
    }

    /// Bytes held (both K and V).
    pub fn bytes(&self) -> usize {
        Self::bytes_needed(
            self.types.0,
            self.types.1,
            self.n_layer,
            self.n_ctx,
            self.kv_dim,
        )
    }

    /// Stores the key and value rows of position `pos` in layer `l`.
    pub fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (hd, base) = (self.head_dim, l * self.layer_values());
        let layout = self.layout();
        self.k.write(k, hd, |h| base + layout.at(pos, h));
        self.v.write(v, hd, |h| base + layout.at(pos, h));
    }
}
