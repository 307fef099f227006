//! The key/value cache, allocated once per session for its context size: f16 by default
//! (half the memory, as llama.cpp), or f32 (exact; for comparisons with float references).

use half::f16;
use phiq_kernels::attention::KvElem;

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

/// Keys and values of every layer: `[n_layer][n_ctx][n_kv_head · head_dim]` each.
pub struct Kv<T> {
    pub k: Vec<T>,
    pub v: Vec<T>,
    n_ctx: usize,
    kv_dim: usize,
}

impl<T: KvElem> Kv<T> {
    fn new(n_layer: usize, n_ctx: usize, kv_dim: usize) -> Kv<T> {
        let n = n_layer * n_ctx * kv_dim;
        Kv {
            k: vec![T::from_f32(0.0); n],
            v: vec![T::from_f32(0.0); n],
            n_ctx,
            kv_dim,
        }
    }

    /// One layer's keys and values, `[n_ctx][kv_dim]` each.
    pub fn layer(&self, l: usize) -> (&[T], &[T]) {
        let n = self.n_ctx * self.kv_dim;
        (&self.k[l * n..(l + 1) * n], &self.v[l * n..(l + 1) * n])
    }

    fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let at = (l * self.n_ctx + pos) * self.kv_dim;
        for (d, s) in self.k[at..at + self.kv_dim].iter_mut().zip(k) {
            *d = T::from_f32(*s);
        }
        for (d, s) in self.v[at..at + self.kv_dim].iter_mut().zip(v) {
            *d = T::from_f32(*s);
        }
    }
}

pub enum KvCache {
    F16(Kv<f16>),
    F32(Kv<f32>),
}

impl KvCache {
    pub fn new(ty: CacheType, n_layer: usize, n_ctx: usize, kv_dim: usize) -> KvCache {
        match ty {
            CacheType::F16 => KvCache::F16(Kv::new(n_layer, n_ctx, kv_dim)),
            CacheType::F32 => KvCache::F32(Kv::new(n_layer, n_ctx, kv_dim)),
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
