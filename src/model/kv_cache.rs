//! The f16 key/value cache, allocated once per session for its context size.

use half::f16;

/// Keys and values of every layer: `[n_layer][n_ctx][n_kv_head · head_dim]` each.
pub struct KvCache {
    pub k: Vec<f16>,
    pub v: Vec<f16>,
    n_ctx: usize,
    kv_dim: usize,
}

impl KvCache {
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize) -> KvCache {
        let n = n_layer * n_ctx * kv_dim;
        KvCache {
            k: vec![f16::ZERO; n],
            v: vec![f16::ZERO; n],
            n_ctx,
            kv_dim,
        }
    }

    /// Bytes held (both K and V).
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2
    }

    /// One layer's keys and values, `[n_ctx][kv_dim]` each.
    pub fn layer(&self, l: usize) -> (&[f16], &[f16]) {
        let n = self.n_ctx * self.kv_dim;
        (&self.k[l * n..(l + 1) * n], &self.v[l * n..(l + 1) * n])
    }

    /// Stores the key and value rows of position `pos` in layer `l`.
    pub fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let at = (l * self.n_ctx + pos) * self.kv_dim;
        for (d, s) in self.k[at..at + self.kv_dim].iter_mut().zip(k) {
            *d = f16::from_f32(*s);
        }
        for (d, s) in self.v[at..at + self.kv_dim].iter_mut().zip(v) {
            *d = f16::from_f32(*s);
        }
    }
}
