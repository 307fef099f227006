//! matmul (GEMV and batches, every weight type): against an f64 product of the
//! dequantized values on every ISA, bit-identical for any thread count, a batch equal to
//! each token's GEMV, and clear errors for bad shapes.

mod common;

use common::signal;
use phiq_kernels::dynamic::matmul;
use phiq_kernels::format::blocks::*;
use phiq_kernels::format::unpack::{dequantize_row, Dequantize};
use phiq_kernels::half::f16;
use phiq_kernels::isa::Isa;
use phiq_kernels::matmul::MatmulScratch;
use phiq_kernels::quant::Quantize;
use phiq_kernels::GgmlType;

/// A `[n_out][n_in]` weight tensor of type B quantized from a signal, as bytes in an
/// 8-aligned buffer, plus its dequantized values.
fn weights<B: Quantize + Dequantize>(n_out: usize, n_in: usize) -> (Vec<u64>, usize, Vec<f32>) {
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

/// Random blocks of an IQ type (phiq does not write them), as [`weights`] returns them.
fn raw_weights<B: Dequantize>(blocks: Vec<B>) -> (Vec<u64>, usize, Vec<f32>) {
    let bytes = block_bytes(&blocks);
    let mut buf = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY: viewing the u64 buffer as bytes (no padding, alignment 1).
    let view =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
    view[..bytes.len()].copy_from_slice(bytes);
    let mut deq = vec![0f32; blocks.len() * B::QK];
    dequantize_row(&blocks, &mut deq);
    (buf, bytes.len(), deq)
}

fn as_bytes(buf: &[u64], len: usize) -> &[u8] {
    // SAFETY: as above, read-only.
    unsafe { &std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8)[..len] }
}

fn check_matmul<B: Quantize + Dequantize>(ty: GgmlType) {
    let (n_out, n_in) = (67, 512);
    check_matmul_with(ty, n_out, n_in, weights::<B>(n_out, n_in));
}

fn check_matmul_with(
    ty: GgmlType,
    n_out: usize,
    n_in: usize,
    (buf, len, wdeq): (Vec<u64>, usize, Vec<f32>),
) {
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
    use phiq_kernels::half::bf16;
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

/// The IQ1–IQ3 types (random blocks with moderate scales): one token takes the reference
/// dot, batches the tile GEMM.
#[test]
fn matmul_i_quants() {
    use common::{iq1m_blocks, weight_blocks};
    let (n_out, n_in) = (67, 512);
    let n = n_out * n_in / 256;
    let opts = (false, None);
    check_matmul_with(
        GgmlType::IQ2_XXS,
        n_out,
        n_in,
        raw_weights(weight_blocks::<BlockIQ2_XXS>(n, 1, &[0], opts)),
    );
    check_matmul_with(
        GgmlType::IQ2_XS,
        n_out,
        n_in,
        raw_weights(weight_blocks::<BlockIQ2_XS>(n, 2, &[0], opts)),
    );
    check_matmul_with(
        GgmlType::IQ2_S,
        n_out,
        n_in,
        raw_weights(weight_blocks::<BlockIQ2_S>(n, 3, &[0], opts)),
    );
    check_matmul_with(
        GgmlType::IQ3_XXS,
        n_out,
        n_in,
        raw_weights(weight_blocks::<BlockIQ3_XXS>(n, 4, &[0], opts)),
    );
    check_matmul_with(
        GgmlType::IQ3_S,
        n_out,
        n_in,
        raw_weights(weight_blocks::<BlockIQ3_S>(n, 5, &[0], opts)),
    );
    check_matmul_with(
        GgmlType::IQ1_S,
        n_out,
        n_in,
        raw_weights(weight_blocks::<BlockIQ1_S>(n, 6, &[0], opts)),
    );
    check_matmul_with(
        GgmlType::IQ1_M,
        n_out,
        n_in,
        raw_weights(iq1m_blocks(n, 7, &[], opts)),
    );
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
    fn case<B: Quantize + Dequantize>(ty: GgmlType, n_in: usize, scratch: &mut MatmulScratch) {
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
    assert!(matmul(GgmlType::TQ2_0, w, 64, &x, &mut [0f32; 4], &mut s, isa).is_err());
    assert!(matmul(GgmlType::Q8_K, w, 64, &x, &mut [0f32; 4], &mut s, isa).is_err());
}
