//! Causal grouped-query attention over a KV cache of f16 (the default, as llama.cpp's),
//! f32, bf16, Q8_0 or Q4_0 keys and values (each its own type, as llama.cpp's
//! `-ctk`/`-ctv`).
//!
//! A query head is converted once per call to the key type's activation format (Q8_0 for
//! Q8_0 and Q4_0 keys, so scores are int8 dot products read straight from the cache), and
//! value rows are dequantized inside the `p · v` accumulation: no dequantized copy of the
//! cache is ever made.
//!
//! For each query token and head: scores against every cached key up to the token's own
//! position, softmax, weighted sum of the values — in one pass over K and V, with an
//! online softmax over chunks of 64 positions (the running maximum and sum are rescaled
//! once per chunk). Parallel over (token, head); each output is computed whole by one
//! thread, so results do not depend on the thread count. A prompt of 4 × `per_job` tokens
//! or more, on the AVX-512 or AVX2 kernel, runs `per_job = 8 / group` consecutive tokens' query
//! heads side by side in one job (each row masked at its own position), so each K and V
//! row is read once per `per_job` tokens: at depth 8192, 64 Phi-4 tokens take 69 ms per
//! layer together against 95 one at a time, 512 tokens 504 against 606 (`TOKENS=64
//! cargo run --release -p phiq-kernels --example attn_depth -- 8192 8`, medians of
//! alternating calls, AVX-512 on a Xeon; AVX2 on a Zen 3: 190 against 248 for 64 tokens).
//! Less than the 2× fewer reads: at depth the work is bound by the
//! multiply-adds (and the query loads feeding them), ~45% of the FMA peak, not by memory.

use crate::contract::attend::{AttendJob, MAX_GROUP_HEADS};
pub use crate::contract::attend::{KvElem, KvLayout};
use crate::format::blocks::Block;
use crate::isa::Isa;
use crate::select::SelectKv;

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

const CHUNK: usize = 64;

/// `q`: `[n_tokens][n_head · head_dim]` (already rotated); `k_cache`, `v_cache`: rows
/// for positions `..n_past + n_tokens` laid out as `shape.layout` says (in values: a row
/// of a block type starts at `layout.at(..) / QK` blocks), the current tokens' rows
/// already written; `out`: `[n_tokens][n_head · head_dim]`. A block type needs `head_dim`
/// and the layout's strides to be whole blocks (checked).
pub fn attention<K: SelectKv, V: SelectKv>(
    q: &[f32],
    k_cache: &[K],
    v_cache: &[V],
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
    let (kqk, vqk, aqk) = (K::QK, V::QK, <K::Act as Block>::QK);
    for (qk, name) in [(kqk, K::NAME), (vqk, V::NAME), (aqk, K::NAME)] {
        assert!(
            hd % qk == 0 && layout.pos_stride % qk == 0 && layout.head_stride % qk == 0,
            "a {name} cache needs head_dim and the cache strides in whole blocks of {qk}: head_dim {hd}"
        );
    }
    if n_tokens > 0 {
        let end = layout.at(n_past + n_tokens - 1, n_kv_head - 1) + hd;
        assert!(
            k_cache.len() * kqk >= end && v_cache.len() * vqk >= end,
            "caches too short"
        );
    }
    let dot = K::dot(isa);
    let axpy = V::axpy(isa);
    let quantize = crate::select::quantize::<K::Act>(isa);
    // The whole-group kernel where there is one (its shape limits: AttendJob::check).
    let attend = K::attend::<V>(isa).filter(|_| hd.is_multiple_of(16));
    let (krow, vrow, arow) = (hd / kqk, hd / vqk, hd / aqk);

    // Prompts, with the whole-group kernel: the query heads of `per_job` consecutive
    // tokens that share a KV head go side by side through its keys in one job, each row
    // up to its own token's position, so each K and V row is read once for all of them
    // (at depth the rows come from memory, not cache: 2× fewer reads for Phi-4's groups
    // of 4 heads). A row's arithmetic is that of its token alone (the positions past its
    // end get probability exactly 0), but for the order in which the softmax sum adds its
    // terms: the results equal the per-token path's to the last bits, and do not depend
    // on the thread count (the jobs depend on the prompt only).
    let per_job = MAX_GROUP_HEADS / group;
    if let Some(kernel) = attend.filter(|_| window == 0 && per_job >= 2 && n_tokens >= 4 * per_job)
    {
        crate::par::chunks_mut(out, per_job * q_stride, |b, outs| {
            let t0 = b * per_job;
            let nt = outs.len() / q_stride;
            let width = group * hd;
            let mut qbuf = vec![0.0f32; nt * width];
            let mut obuf = vec![0.0f32; nt * width];
            for kvh in 0..n_kv_head {
                let mut ends = [0usize; MAX_GROUP_HEADS];
                for tt in 0..nt {
                    let src = (t0 + tt) * q_stride + kvh * width;
                    qbuf[tt * width..(tt + 1) * width].copy_from_slice(&q[src..src + width]);
                    ends[tt * group..(tt + 1) * group].fill(n_past + t0 + tt + 1);
                }
                kernel(AttendJob {
                    q: &qbuf,
                    k: k_cache,
                    v: v_cache,
                    stride: layout.pos_stride,
                    offset: layout.at(0, kvh),
                    keys: 0..n_past + t0 + nt,
                    head_dim: hd,
                    scale,
                    ends,
                    out: &mut obuf,
                });
                for tt in 0..nt {
                    let dst = tt * q_stride + kvh * width;
                    outs[dst..dst + width].copy_from_slice(&obuf[tt * width..(tt + 1) * width]);
                }
            }
        });
        return;
    }

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
        // Up to MAX_GROUP_HEADS query heads at a time (their scores live on the stack).
        for (sub, accs) in accs.chunks_mut(MAX_GROUP_HEADS * hd).enumerate() {
            let g = accs.len() / hd;
            let h0 = kvh * group + sub * MAX_GROUP_HEADS;
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
                    ends: [pos + 1; MAX_GROUP_HEADS],
                    out: accs,
                });
                continue;
            }
            // The queries in the key type's activation format, once per task.
            let mut qa = vec![<K::Act as Default>::default(); g * arow];
            quantize(&q[q0..q0 + g * hd], &mut qa);
            let krow_at = |j: usize| layout.at(j, kvh) / kqk;
            let vrow_at = |j: usize| layout.at(j, kvh) / vqk;
            accs.fill(0.0);
            let mut m = [f32::NEG_INFINITY; MAX_GROUP_HEADS];
            let mut l = [0.0f32; MAX_GROUP_HEADS];
            let mut scores = [[0.0f32; CHUNK]; MAX_GROUP_HEADS];
            for start in (first..=pos).step_by(CHUNK) {
                let end = (start + CHUNK).min(pos + 1);
                let mut cmax = [f32::NEG_INFINITY; MAX_GROUP_HEADS];
                for j in start..end {
                    let k = &k_cache[krow_at(j)..krow_at(j) + krow];
                    for i in 0..g {
                        let s = dot(k, &qa[i * arow..(i + 1) * arow]) * scale;
                        scores[i][j - start] = s;
                        cmax[i] = cmax[i].max(s);
                    }
                }
                for i in 0..g {
                    if cmax[i] > m[i] {
                        // exp(-inf) = 0 on the first chunk: nothing accumulated yet.
                        let rescale = crate::reference::ops::exp_flush(m[i] - cmax[i]);
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
                    let v = &v_cache[vrow_at(j)..vrow_at(j) + vrow];
                    for i in 0..g {
                        let p = crate::reference::ops::exp_flush(scores[i][j - start] - m[i]);
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
