//! Causal grouped-query attention over a KV cache of f16 (the default, as llama.cpp's)
//! or f32 values.
//!
//! For each query token and head: scores against every cached key up to the token's own
//! position, softmax, weighted sum of the values — in one pass over K and V, with an
//! online softmax over chunks of 64 positions (the running maximum and sum are rescaled
//! once per chunk). Parallel over (token, head); each output is computed whole by one
//! thread, so results do not depend on the thread count.

use half::f16;

use crate::dispatch::Isa;
use crate::dot::VecDot;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Position of the first query token (tokens already in the cache before it).
    pub n_past: usize,
    /// Multiplier of q·k, usually 1/sqrt(head_dim).
    pub scale: f32,
    /// Sliding window: a query at position p attends to keys at positions p − window + 1
    /// ..= p only (transformers' `sliding_window`: q − k < window). 0: the whole past.
    pub window: usize,
    /// Where the caches keep each (position, KV head) row.
    pub layout: KvLayout,
}

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

const CHUNK: usize = 64;

/// One (token, KV head) pair for the SIMD attention kernels: the `g` query heads of a
/// group (`q`, `out`: `g · head_dim` values) over the cached positions `keys`.
pub struct AttendJob<'a, T = f16> {
    pub q: &'a [f32],
    pub k: &'a [T],
    pub v: &'a [T],
    /// Elements between consecutive positions of one head ([`KvLayout::pos_stride`]).
    pub stride: usize,
    /// Position 0 of this KV head ([`KvLayout::at`]`(0, kv_head)`).
    pub offset: usize,
    pub keys: std::ops::Range<usize>,
    pub head_dim: usize,
    pub scale: f32,
    pub out: &'a mut [f32],
}

impl<T> AttendJob<'_, T> {
    /// Panics unless the kernels' assumptions hold (cheap: once per call): a head size
    /// that is a multiple of 16, 1..=8 heads, a non-empty range of positions whose rows
    /// are inside both caches.
    pub fn check(&self) {
        let hd = self.head_dim;
        assert!(
            hd > 0 && hd.is_multiple_of(16),
            "head_dim {hd}: not a multiple of 16"
        );
        let g = self.out.len() / hd;
        assert!(
            (1..=MAX_GROUP).contains(&g)
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
                    .is_some_and(|end| end <= self.k.len().min(self.v.len())),
            "positions {:?} outside the caches",
            self.keys
        );
    }
}

/// The SIMD attention kernel for one [`AttendJob`].
pub type AttendFn<T> = fn(AttendJob<'_, T>);

/// Query heads of one KV group processed together (larger groups go in several passes).
const MAX_GROUP: usize = 8;

/// An element type of the KV cache: f16 or f32.
pub trait KvElem: VecDot<Act = f32> + crate::buffer::Plain {
    fn from_f32(x: f32) -> Self;
    /// `acc += p · v`, the fastest the ISA allows.
    fn axpy_kernel(isa: Isa) -> fn(&mut [f32], f32, &[Self]);
    /// A whole-group SIMD kernel, if the ISA has one for this cache type: `job` is
    /// built from slices of `Self` reinterpreted by the kernel (only f16 has one).
    /// A SIMD kernel for a whole (token, KV head) group, if the ISA has one for this
    /// cache type.
    fn attend_kernel(_isa: Isa) -> Option<AttendFn<Self>> {
        None
    }
}

impl KvElem for f16 {
    fn from_f32(x: f32) -> f16 {
        f16::from_f32(x)
    }
    fn axpy_kernel(isa: Isa) -> fn(&mut [f32], f32, &[f16]) {
        fn axpy_ref(acc: &mut [f32], p: f32, v: &[f16]) {
            for (a, x) in acc.iter_mut().zip(v) {
                *a += p * x.to_f32();
            }
        }
        crate::x86::select_axpy_f16(isa).unwrap_or(axpy_ref)
    }
    fn attend_kernel(isa: Isa) -> Option<AttendFn<f16>> {
        crate::x86::select_attend_f16(isa)
    }
}

impl KvElem for f32 {
    fn from_f32(x: f32) -> f32 {
        x
    }
    fn axpy_kernel(_: Isa) -> fn(&mut [f32], f32, &[f32]) {
        // The compiler vectorises this loop.
        fn axpy(acc: &mut [f32], p: f32, v: &[f32]) {
            for (a, x) in acc.iter_mut().zip(v) {
                *a += p * x;
            }
        }
        axpy
    }
}

/// `q`: `[n_tokens][n_head · head_dim]` (already rotated); `k_cache`, `v_cache`: rows
/// for positions `..n_past + n_tokens` laid out as `shape.layout` says, the current
/// tokens' rows already written; `out`: `[n_tokens][n_head · head_dim]`.
pub fn attention<T: KvElem>(
    q: &[f32],
    k_cache: &[T],
    v_cache: &[T],
    shape: AttnShape,
    out: &mut [f32],
    isa: Isa,
) {
    let AttnShape {
        n_head,
        n_kv_head,
        head_dim: hd,
        n_past,
        scale,
        window,
        layout,
    } = shape;
    assert!(
        n_head % n_kv_head == 0,
        "n_head must be a multiple of n_kv_head"
    );
    let group = n_head / n_kv_head;
    let q_stride = n_head * hd;
    let n_tokens = q.len() / q_stride;
    assert_eq!(out.len(), q.len());
    assert!(layout.pos_stride >= hd || n_past + n_tokens <= 1);
    if n_tokens > 0 {
        let end = layout.at(n_past + n_tokens - 1, n_kv_head - 1) + hd;
        assert!(
            k_cache.len() >= end && v_cache.len() >= end,
            "caches too short"
        );
    }
    let dot = T::dot_kernel(isa);
    let axpy = T::axpy_kernel(isa);
    // The whole-group kernel where there is one (its shape limits: AttendJob::check).
    let attend = T::attend_kernel(isa).filter(|_| hd.is_multiple_of(16));

    // One task per (token, KV head): the query heads that share the KV head run side by
    // side over its keys, so each K and V row is read from memory once for all of them
    // (they are computed exactly as each would be alone: same kernels, same order).
    crate::par::chunks_mut(out, group * hd, |idx, accs| {
        let (t, kvh) = (idx / n_kv_head, idx % n_kv_head);
        let pos = n_past + t;
        let first = if window == 0 {
            0
        } else {
            (pos + 1).saturating_sub(window)
        };
        // Up to MAX_GROUP query heads at a time (their scores live on the stack).
        for (sub, accs) in accs.chunks_mut(MAX_GROUP * hd).enumerate() {
            let g = accs.len() / hd;
            let h0 = kvh * group + sub * MAX_GROUP;
            let q0 = t * q_stride + h0 * hd;
            if let Some(kernel) = attend {
                kernel(AttendJob {
                    q: &q[q0..q0 + g * hd],
                    k: k_cache,
                    v: v_cache,
                    stride: layout.pos_stride,
                    offset: layout.at(0, kvh),
                    keys: first..pos + 1,
                    head_dim: hd,
                    scale,
                    out: accs,
                });
                continue;
            }
            accs.fill(0.0);
            let mut m = [f32::NEG_INFINITY; MAX_GROUP];
            let mut l = [0.0f32; MAX_GROUP];
            let mut scores = [[0.0f32; CHUNK]; MAX_GROUP];
            for start in (first..=pos).step_by(CHUNK) {
                let end = (start + CHUNK).min(pos + 1);
                let mut cmax = [f32::NEG_INFINITY; MAX_GROUP];
                for j in start..end {
                    let k = &k_cache[layout.at(j, kvh)..layout.at(j, kvh) + hd];
                    for i in 0..g {
                        let qh = &q[q0 + i * hd..q0 + (i + 1) * hd];
                        let s = dot(k, qh) * scale;
                        scores[i][j - start] = s;
                        cmax[i] = cmax[i].max(s);
                    }
                }
                for i in 0..g {
                    if cmax[i] > m[i] {
                        // exp(-inf) = 0 on the first chunk: nothing accumulated yet.
                        let rescale = (m[i] - cmax[i]).exp();
                        if rescale != 1.0 {
                            accs[i * hd..(i + 1) * hd]
                                .iter_mut()
                                .for_each(|a| *a *= rescale);
                        }
                        l[i] *= rescale;
                        m[i] = cmax[i];
                    }
                }
                for j in start..end {
                    let v = &v_cache[layout.at(j, kvh)..layout.at(j, kvh) + hd];
                    for i in 0..g {
                        let p = (scores[i][j - start] - m[i]).exp();
                        l[i] += p;
                        axpy(&mut accs[i * hd..(i + 1) * hd], p, v);
                    }
                }
            }
            for i in 0..g {
                let inv = 1.0 / l[i];
                accs[i * hd..(i + 1) * hd]
                    .iter_mut()
                    .for_each(|a| *a *= inv);
            }
        }
    });
}
