//! Causal grouped-query attention over a KV cache of f16 (the default, as llama.cpp's)
//! or f32 values.
//!
//! For each query token and head: scores against every cached key up to the token's own
//! position, softmax, weighted sum of the values — in one pass over K and V, with an
//! online softmax over chunks of 64 positions (the running maximum and sum are rescaled
//! once per chunk). Parallel over (token, head); each output is computed whole by one
//! thread, so results do not depend on the thread count.

use half::f16;
use rayon::prelude::*;

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
}

const CHUNK: usize = 64;

/// Query heads of one KV group processed together (larger groups go in several passes).
const MAX_GROUP: usize = 8;

/// An element type of the KV cache: f16 or f32.
pub trait KvElem: VecDot<Act = f32> {
    fn from_f32(x: f32) -> Self;
    /// `acc += p · v`, the fastest the ISA allows.
    fn axpy_kernel(isa: Isa) -> fn(&mut [f32], f32, &[Self]);
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

/// `q`: `[n_tokens][n_head · head_dim]` (already rotated); `k_cache`, `v_cache`:
/// `[n_past + n_tokens][n_kv_head · head_dim]`, the current tokens' rows already written;
/// `out`: `[n_tokens][n_head · head_dim]`.
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
    } = shape;
    assert!(
        n_head % n_kv_head == 0,
        "n_head must be a multiple of n_kv_head"
    );
    let group = n_head / n_kv_head;
    let q_stride = n_head * hd;
    let kv_stride = n_kv_head * hd;
    let n_tokens = q.len() / q_stride;
    assert_eq!(out.len(), q.len());
    assert!(k_cache.len() >= (n_past + n_tokens) * kv_stride);
    assert!(v_cache.len() >= (n_past + n_tokens) * kv_stride);
    let dot = T::dot_kernel(isa);
    let axpy = T::axpy_kernel(isa);

    // One task per (token, KV head): the query heads that share the KV head run side by
    // side over its keys, so each K and V row is read from memory once for all of them
    // (they are computed exactly as each would be alone: same kernels, same order).
    out.par_chunks_mut(group * hd)
        .enumerate()
        .for_each(|(idx, accs)| {
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
                accs.fill(0.0);
                let mut m = [f32::NEG_INFINITY; MAX_GROUP];
                let mut l = [0.0f32; MAX_GROUP];
                let mut scores = [[0.0f32; CHUNK]; MAX_GROUP];
                for start in (first..=pos).step_by(CHUNK) {
                    let end = (start + CHUNK).min(pos + 1);
                    let mut cmax = [f32::NEG_INFINITY; MAX_GROUP];
                    for j in start..end {
                        let k = &k_cache[j * kv_stride + kvh * hd..j * kv_stride + (kvh + 1) * hd];
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
                        let v = &v_cache[j * kv_stride + kvh * hd..j * kv_stride + (kvh + 1) * hd];
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
