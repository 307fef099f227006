//! matmul and attention: against naive f64 references, on every ISA, and bit-identical
//! for any thread count.

mod common;

use common::pattern_bytes;
use phiq::kernels::attention::{attention, AttnShape, KvLayout};
use phiq::kernels::blocks::*;
use phiq::kernels::dispatch::Isa;
use phiq::kernels::half::f16;
use phiq::kernels::matmul::{matmul, MatmulScratch};
use phiq::kernels::quantize::Quantize;
use phiq::kernels::GgmlType;

fn signal(n: usize, seed: u64) -> Vec<f32> {
    let r = pattern_bytes(n, seed);
    (0..n)
        .map(|i| {
            0.1 + 2.0 * ((i as f32) * 0.37 + seed as f32).cos() + (r[i] as f32 - 128.0) / 256.0
        })
        .collect()
}

/// A `[n_out][n_in]` weight tensor of type B quantized from a signal, as bytes in an
/// 8-aligned buffer, plus its dequantized values.
fn weights<B: Quantize>(n_out: usize, n_in: usize) -> (Vec<u64>, usize, Vec<f32>) {
    let x = signal(n_out * n_in, 3);
    let mut blocks = zeroed_blocks::<B>(n_out * n_in / B::QK);
    B::quantize_row(&x, &mut blocks);
    let bytes = block_bytes(&blocks);
    let mut buf = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY: viewing the u64 buffer as bytes (no padding, alignment 1).
    let view =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
    view[..bytes.len()].copy_from_slice(bytes);
    let mut deq = vec![0f32; n_out * n_in];
    dequantize_row(&blocks, &mut deq);
    (buf, bytes.len(), deq)
}

fn as_bytes(buf: &[u64], len: usize) -> &[u8] {
    // SAFETY: as above, read-only.
    unsafe { &std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8)[..len] }
}

fn check_matmul<B: Quantize>(ty: GgmlType) {
    let (n_out, n_in) = (67, 512);
    let (buf, len, wdeq) = weights::<B>(n_out, n_in);
    let w = as_bytes(&buf, len);
    for n_tokens in [1, 2, 5, 33] {
        let x = signal(n_tokens * n_in, 9 + n_tokens as u64);
        let mut first: Option<Vec<f32>> = None;
        for isa in Isa::all_variants() {
            let mut y = vec![0f32; n_tokens * n_out];
            let mut scratch = MatmulScratch::new();
            matmul(ty, w, n_in, &x, &mut y, &mut scratch, isa).unwrap();
            for t in 0..n_tokens {
                for r in 0..n_out {
                    let exact: f64 = (0..n_in)
                        .map(|i| wdeq[r * n_in + i] as f64 * x[t * n_in + i] as f64)
                        .sum();
                    let mag: f64 = (0..n_in)
                        .map(|i| (wdeq[r * n_in + i] as f64 * x[t * n_in + i] as f64).abs())
                        .sum();
                    // The activations are quantized (8-bit: ≤ 1/254 of each block's
                    // max per value, ~1% of the magnitude in the worst case); BF16/F16/F32
                    // activations are near exact.
                    let tol = 0.01 * mag + 1e-4;
                    let got = y[t * n_out + r] as f64;
                    assert!(
                        (got - exact).abs() <= tol,
                        "{ty} {isa}: y[{t}][{r}] = {got}, f64 {exact}"
                    );
                }
            }
            // Same ISA, same numbers, whatever the number of threads.
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y2 = vec![0f32; n_tokens * n_out];
                pool.install(|| matmul(ty, w, n_in, &x, &mut y2, &mut MatmulScratch::new(), isa))
                    .unwrap();
                assert!(
                    y.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty} {isa}: {threads} threads differ"
                );
            }
            first.get_or_insert(y);
        }
    }
}

#[test]
fn matmul_every_weight_type() {
    use phiq::kernels::half::bf16;
    check_matmul::<f32>(GgmlType::F32);
    check_matmul::<f16>(GgmlType::F16);
    check_matmul::<bf16>(GgmlType::BF16);
    check_matmul::<BlockQ4_0>(GgmlType::Q4_0);
    check_matmul::<BlockQ4_1>(GgmlType::Q4_1);
    check_matmul::<BlockQ5_0>(GgmlType::Q5_0);
    check_matmul::<BlockQ5_1>(GgmlType::Q5_1);
    check_matmul::<BlockQ8_0>(GgmlType::Q8_0);
    check_matmul::<BlockIQ4_NL>(GgmlType::IQ4_NL);
}

#[test]
fn matmul_k_quants() {
    check_matmul::<BlockQ2_K>(GgmlType::Q2_K);
    check_matmul::<BlockQ3_K>(GgmlType::Q3_K);
    check_matmul::<BlockQ4_K>(GgmlType::Q4_K);
    check_matmul::<BlockQ5_K>(GgmlType::Q5_K);
    check_matmul::<BlockQ6_K>(GgmlType::Q6_K);
    check_matmul::<BlockIQ4_XS>(GgmlType::IQ4_XS);
}

/// Each token of a batch that takes the dot path (2..15 tokens) equals, bit for bit, the
/// same token alone (GEMV); and one scratch reused across types and shapes (largest
/// first, so stale bytes of an earlier call sit in its buffers) gives the same bits as a
/// fresh one. Widths with a tail after the multi-row kernels' groups (Q4_0: 23 blocks =
/// 2 groups of 8 + 7) and several K super-blocks, so the prepared activations of every
/// token are read at every offset.
#[test]
fn batch_rows_equal_gemv_and_scratch_reuse_is_clean() {
    fn case<B: Quantize>(ty: GgmlType, n_in: usize, scratch: &mut MatmulScratch) {
        let n_out = 37;
        let (buf, len, _) = weights::<B>(n_out, n_in);
        let w = as_bytes(&buf, len);
        let n_tokens = 5;
        let x = signal(n_tokens * n_in, 17);
        for isa in Isa::all_variants() {
            let mut batch = vec![0f32; n_tokens * n_out];
            matmul(ty, w, n_in, &x, &mut batch, scratch, isa).unwrap();
            for t in 0..n_tokens {
                let xt = &x[t * n_in..(t + 1) * n_in];
                let (mut reused, mut fresh) = (vec![0f32; n_out], vec![0f32; n_out]);
                matmul(ty, w, n_in, xt, &mut reused, scratch, isa).unwrap();
                matmul(ty, w, n_in, xt, &mut fresh, &mut MatmulScratch::new(), isa).unwrap();
                for r in 0..n_out {
                    let (b, g, f) = (batch[t * n_out + r], reused[r], fresh[r]);
                    assert_eq!(
                        b.to_bits(),
                        f.to_bits(),
                        "{ty} {isa}: token {t} row {r} in a batch"
                    );
                    assert_eq!(
                        g.to_bits(),
                        f.to_bits(),
                        "{ty} {isa}: token {t} row {r} reused scratch"
                    );
                }
            }
        }
    }
    let mut scratch = MatmulScratch::new();
    case::<BlockQ4_K>(GgmlType::Q4_K, 1280, &mut scratch);
    case::<BlockQ4_0>(GgmlType::Q4_0, 736, &mut scratch);
    case::<BlockIQ4_XS>(GgmlType::IQ4_XS, 768, &mut scratch);
    case::<BlockQ5_K>(GgmlType::Q5_K, 512, &mut scratch);
    case::<BlockQ4_0>(GgmlType::Q4_0, 96, &mut scratch);
    case::<BlockQ8_0>(GgmlType::Q8_0, 544, &mut scratch);
    case::<BlockQ6_K>(GgmlType::Q6_K, 256, &mut scratch);
}

#[test]
fn matmul_rejects_bad_shapes() {
    let (buf, len, _) = weights::<BlockQ8_0>(4, 64);
    let w = as_bytes(&buf, len);
    let isa = Isa::scalar();
    let mut s = MatmulScratch::new();
    let x = vec![0f32; 64];
    assert!(matmul(GgmlType::Q8_0, w, 64, &x, &mut [0f32; 3], &mut s, isa).is_err());
    assert!(matmul(GgmlType::Q8_0, w, 48, &x[..48], &mut [0f32; 4], &mut s, isa).is_err());
    assert!(matmul(GgmlType::Q8_0, w, 64, &x[..60], &mut [0f32; 4], &mut s, isa).is_err());
    assert!(matmul(GgmlType::IQ2_XXS, w, 64, &x, &mut [0f32; 4], &mut s, isa).is_err());
    assert!(matmul(GgmlType::Q8_K, w, 64, &x, &mut [0f32; 4], &mut s, isa).is_err());
}

/// Naive attention in f64 with a full softmax; a query at position p sees keys
/// j with p − j < window (window 0: all of them).
#[allow(clippy::too_many_arguments)]
fn attention_f64(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    n_head: usize,
    n_kv: usize,
    hd: usize,
    n_past: usize,
    scale: f32,
    window: usize,
) -> Vec<f64> {
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
                        .map(|i| qh[i] as f64 * k[(j * n_kv + kvh) * hd + i].to_f64())
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (&j, p) in visible.iter().zip(&e) {
                for i in 0..hd {
                    out[(t * n_head + h) * hd + i] +=
                        p / sum * v[(j * n_kv + kvh) * hd + i].to_f64();
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_naive_softmax() {
    // Head shapes: the tiny models' (group 4, head_dim 32), Phi-4's (group 4, 128: two
    // 64-dimension slices in the AVX-512 kernel), and a group of 5 with head_dim 48 (a
    // 4 + 1 head split and 16-dimension slices), and 8 heads on one KV head.
    for (n_head, n_kv, hd) in [(8, 2, 32), (8, 2, 128), (10, 2, 48), (8, 1, 16)] {
        attention_case(n_head, n_kv, hd);
    }
}

fn attention_case(n_head: usize, n_kv: usize, hd: usize) {
    let cases = [(0, 1, 0), (0, 7, 0), (5, 1, 0), (130, 3, 0), (200, 70, 0)];
    // Sliding windows: shorter than, across and longer than the chunk of 64 keys.
    let windows = [
        (0, 7, 3),
        (5, 1, 1),
        (130, 3, 100),
        (200, 70, 65),
        (10, 5, 1000),
    ];
    for (n_past, n_tokens, window) in cases.into_iter().chain(windows) {
        let total = n_past + n_tokens;
        let q: Vec<f32> = signal(n_tokens * n_head * hd, 1);
        let k: Vec<f16> = signal(total * n_kv * hd, 2)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let v: Vec<f16> = signal(total * n_kv * hd, 4)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();
        let want = attention_f64(&q, &k, &v, n_head, n_kv, hd, n_past, scale, window);
        // The same rows position-major, and head-major in a cache with room for 3 more
        // positions (as a session's cache, larger than what is used).
        let n_ctx = total + 3;
        let head_major = |x: &[f16]| {
            let mut y = vec![f16::from_f32(9.0); n_kv * n_ctx * hd];
            for j in 0..total {
                for h in 0..n_kv {
                    y[(h * n_ctx + j) * hd..][..hd]
                        .copy_from_slice(&x[(j * n_kv + h) * hd..][..hd]);
                }
            }
            y
        };
        let layouts = [
            (KvLayout::position_major(n_kv, hd), k.clone(), v.clone()),
            (
                KvLayout::head_major(n_ctx, hd),
                head_major(&k),
                head_major(&v),
            ),
        ];
        for ((layout, k, v), isa) in layouts
            .iter()
            .flat_map(|l| Isa::all_variants().into_iter().map(move |i| (l, i)))
        {
            let mut out = vec![0f32; q.len()];
            let shape = AttnShape {
                n_head,
                n_kv_head: n_kv,
                head_dim: hd,
                n_past,
                scale,
                window,
                layout: *layout,
            };
            attention(&q, k, v, shape, &mut out, isa);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                // f32 accumulation over ≤ 270 positions of values ≤ ~3: a few 1e-6.
                assert!(
                    (*a as f64 - b).abs() < 2e-5,
                    "{isa} {layout:?} heads {n_head}/{n_kv}×{hd} n_past={n_past} window={window} [{i}]: {a} vs {b}"
                );
            }
        }
    }
}
