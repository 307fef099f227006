//! Attention references: the `acc += p · v` row update the portable attention loop uses
//! where no SIMD kernel exists, and a naive attention in f64 with a full softmax that the
//! kernels and the online-softmax driver are tested against.

use half::f16;

use crate::format::unpack::Dequantize;

/// `acc += p · v` over an f16 row.
pub fn axpy_f16(acc: &mut [f32], p: f32, v: &[f16]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += p * x.to_f32();
    }
}

/// `acc += p · v` over an f32 row (the compiler vectorises this loop).
pub fn axpy_f32(acc: &mut [f32], p: f32, v: &[f32]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += p * x;
    }
}

/// `acc += p · v` over a row of blocks (bf16, Q8_0, Q4_0 caches): each block dequantized
/// as ggml does, then multiplied in. `acc.len() == QK · v.len()`.
pub fn axpy_dequant<B: Dequantize>(acc: &mut [f32], p: f32, v: &[B]) {
    assert!(B::QK <= 256 && acc.len() == B::QK * v.len());
    let mut tmp = [0f32; 256];
    for (a, b) in acc.chunks_exact_mut(B::QK).zip(v) {
        b.dequantize(&mut tmp[..B::QK]);
        for (x, y) in a.iter_mut().zip(&tmp) {
            *x += p * y;
        }
    }
}

/// Shapes of [`attention_f64`]'s inputs.
#[derive(Clone, Copy, Debug)]
pub struct NaiveShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Position of the first query token.
    pub n_past: usize,
    /// Multiplier of q·k.
    pub scale: f32,
    /// A query at position p sees keys j with p − j < window (0: all of them).
    pub window: usize,
}

/// Causal grouped-query attention in f64 with a full softmax: `q` is
/// `[n_tokens][n_head][head_dim]`, `k` and `v` are `[position][n_kv_head][head_dim]`
/// (position-major); returns `[n_tokens][n_head][head_dim]`.
pub fn attention_f64(q: &[f32], k: &[f16], v: &[f16], shape: NaiveShape) -> Vec<f64> {
    let widen = |x: &[f16]| x.iter().map(|v| v.to_f32()).collect::<Vec<f32>>();
    attention_f64_f32(q, &widen(k), &widen(v), shape)
}

/// [`attention_f64`] over f32 keys and values (e.g. a quantized cache's dequantized rows).
pub fn attention_f64_f32(q: &[f32], k: &[f32], v: &[f32], shape: NaiveShape) -> Vec<f64> {
    let NaiveShape {
        n_head,
        n_kv_head: n_kv,
        head_dim: hd,
        n_past,
        scale,
        window,
    } = shape;
    let n_tokens = q.len() / (n_head * hd);
    let mut out = vec![0f64; q.len()];
    for t in 0..n_tokens {
        for h in 0..n_head {
            let kvh = h / (n_head / n_kv);
            let qh = &q[(t * n_head + h) * hd..][..hd];
            let p = n_past + t;
            let visible: Vec<usize> = (0..=p).filter(|&j| window == 0 || p - j < window).collect();
            let scores: Vec<f64> = visible
                .iter()
                .map(|&j| {
                    (0..hd)
                        .map(|i| qh[i] as f64 * k[(j * n_kv + kvh) * hd + i] as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (&j, p) in visible.iter().zip(&e) {
                for i in 0..hd {
                    out[(t * n_head + h) * hd + i] += p / sum * v[(j * n_kv + kvh) * hd + i] as f64;
                }
            }
        }
    }
    out
}
