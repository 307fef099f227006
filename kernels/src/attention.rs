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

    out.par_chunks_mut(hd).enumerate().for_each(|(idx, acc)| {
        let (t, h) = (idx / n_head, idx % n_head);
        let pos = n_past + t;
        let kvh = h / group;
        let qh = &q[t * q_stride + h * hd..t * q_stride + (h + 1) * hd];
        acc.fill(0.0);
        let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
        let mut scores = [0.0f32; CHUNK];
        let first = if window == 0 {
            0
        } else {
            (pos + 1).saturating_sub(window)
        };
        for start in (first..=pos).step_by(CHUNK) {
            let end = (start + CHUNK).min(pos + 1);
            let mut cmax = f32::NEG_INFINITY;
            for j in start..end {
                let k = &k_cache[j * kv_stride + kvh * hd..j * kv_stride + (kvh + 1) * hd];
                let s = dot(k, qh) * scale;
                scores[j - start] = s;
                cmax = cmax.max(s);
            }
            if cmax > m {
                // exp(-inf) = 0 on the first chunk: nothing accumulated yet.
                let rescale = (m - cmax).exp();
                if rescale != 1.0 {
                    acc.iter_mut().for_each(|a| *a *= rescale);
                }
                l *= rescale;
                m = cmax;
            }
            for j in start..end {
                let p = (scores[j - start] - m).exp();
                l += p;
                let v = &v_cache[j * kv_stride + kvh * hd..j * kv_stride + (kvh + 1) * hd];
                axpy(acc, p, v);
            }
        }
        let inv = 1.0 / l;
        acc.iter_mut().for_each(|a| *a *= inv);
    });
}
