//! The key/value cache, allocated once per session for its context size: f16 by default
//! (half the memory, as llama.cpp), or f32 (exact; for comparisons with float references).

use half::f16;
use phiq_kernels::attention::{KvElem, KvLayout};
use phiq_kernels::buffer::HugeBuf;

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheType {
    #[default]
    F16,
    F32,
}

impl std::str::FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> Result<CacheType, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(CacheType::F16),
            "f32" => Ok(CacheType::F32),
            other => Err(format!("cache type {other:?} is not f16 or f32")),
        }
    }
}

/// Keys and values of every layer: `[n_layer][n_kv_head][n_ctx][head_dim]` each, so one
/// head's positions are contiguous ([`KvLayout::head_major`]).
pub struct Kv<T: KvElem> {
    /// In 2 MiB pages (see `phiq_kernels::buffer`).
    pub k: HugeBuf<T>,
    pub v: HugeBuf<T>,
    n_ctx: usize,
    kv_dim: usize,
    head_dim: usize,
}

impl<T: KvElem> Kv<T> {
    fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, head_dim: usize) -> Kv<T> {
        let n = n_layer * n_ctx * kv_dim;
        Kv {
            k: HugeBuf::zeroed(n),
            v: HugeBuf::zeroed(n),
            n_ctx,
            kv_dim,
            head_dim,
        }
    }

    /// Where a layer keeps each (position, head) row.
    pub fn layout(&self) -> KvLayout {
        KvLayout::head_major(self.n_ctx, self.head_dim)
    }

    /// One layer's keys and values, `[n_kv_head][n_ctx][head_dim]` each.
    pub fn layer(&self, l: usize) -> (&[T], &[T]) {
        let n = self.n_ctx * self.kv_dim;
        (&self.k[l * n..(l + 1) * n], &self.v[l * n..(l + 1) * n])
    }

    fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (hd, base) = (self.head_dim, l * self.n_ctx * self.kv_dim);
        let layout = self.layout();
        for (h, (kh, vh)) in k.chunks(hd).zip(v.chunks(hd)).enumerate() {
            let at = base + layout.at(pos, h);
            for (d, s) in self.k[at..at + hd].iter_mut().zip(kh) {
                *d = T::from_f32(*s);
            }
            for (d, s) in self.v[at..at + hd].iter_mut().zip(vh) {
                *d = T::from_f32(*s);
            }
        }
    }
}

pub enum KvCache {
    F16(Kv<f16>),
    F32(Kv<f32>),
}

impl KvCache {
    pub fn new(
        ty: CacheType,
        n_layer: usize,
        n_ctx: usize,
        kv_dim: usize,
        head_dim: usize,
    ) -> KvCache {
        match ty {
            CacheType::F16 => KvCache::F16(Kv::new(n_layer, n_ctx, kv_dim, head_dim)),
            CacheType::F32 => KvCache::F32(Kv::new(n_layer, n_ctx, kv_dim, head_dim)),
        }
    }

    /// Where a layer keeps each (position, head) row.
    pub fn layout(&self) -> KvLayout {
        match self {
            KvCache::F16(c) => c.layout(),
            KvCache::F32(c) => c.layout(),
        }
    }

    /// Bytes held (both K and V).
    pub fn bytes(&self) -> usize {
        match self {
            KvCache::F16(c) => (c.k.len() + c.v.len()) * 2,
            KvCache::F32(c) => (c.k.len() + c.v.len()) * 4,
        }
    }

    /// Stores the key and value rows of position `pos` in layer `l`.
    pub fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        match self {
            KvCache::F16(c) => c.store(l, pos, k, v),
            KvCache::F32(c) => c.store(l, pos, k, v),
        }
    }
}
