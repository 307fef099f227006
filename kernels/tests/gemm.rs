//! Tile kernels (many weight rows × many tokens): every ISA's kernel against the scalar
//! reference tile on random blocks and edge-case activations, with ragged rows, tokens and
//! K panels; the matmul batch path against one token at a time; bit-identity for any
//! thread count; and the transposing store into y against the kernel's own row output.

mod common;

use common::{activations, dequant, iq1m_blocks, weight_blocks};
use phiq_kernels::contract::dot::VecDot;
use phiq_kernels::contract::gemm::{GemmKernel, PANEL, TOKEN_GROUP};
use phiq_kernels::format::blocks::*;
use phiq_kernels::gemm::gemm_rows;
use phiq_kernels::isa::{Isa, Level};
use phiq_kernels::matmul::{matmul_typed, MatmulScratch, MIN_TILE_TOKENS};
use phiq_kernels::quant::Quantize;
use phiq_kernels::reference::matmul::matmul as matmul_ref;
use phiq_kernels::select::Select;
use phiq_kernels::GgmlType;

/// Σ |w·a| of one row and one token, the scale of their dot product's rounding error.
fn magnitude(wd: &[f64], ad: &[f64]) -> f64 {
    wd.iter().zip(ad).map(|(p, q)| (p * q).abs()).sum()
}

/// The kernels' output for `w` (`[rows][n_blocks]`) × `act` (`[n_tokens][n_blocks]`),
/// `[rows][n_tokens]` (padding lanes dropped).
fn run_tile<W: VecDot>(k: &GemmKernel<W>, w: &[W], n_blocks: usize, act: &[W::Act]) -> Vec<f32> {
    let n_tokens = act.len() / n_blocks;
    let groups = n_tokens.div_ceil(TOKEN_GROUP);
    let gb = k.group_bytes(n_blocks);
    let mut acts = vec![0u8; groups * gb];
    for (g, buf) in acts.chunks_exact_mut(gb).enumerate() {
        k.interleave_group(act, n_tokens, n_blocks, g, buf);
    }
    let n_rows = w.len() / n_blocks;
    let n_pad = groups * TOKEN_GROUP;
    let mut out = vec![f32::NAN; n_rows * n_pad];
    gemm_rows(k, w, n_blocks, &acts, &mut out);
    (0..n_rows)
        .flat_map(|r| out[r * n_pad..r * n_pad + n_tokens].to_vec())
        .collect()
}

/// Every ISA's tile kernel for `W` against the scalar reference tile.
fn check<W: Select>(scale_offsets: &[usize]) {
    for pattern in [None, Some(0xFF), Some(0x00), Some(0x80)] {
        check_with::<W>(|n, seed, max| weight_blocks(n, seed, scale_offsets, (max, pattern)))
    }
}

/// Weights of a plain float type from a float signal (random bytes would be inf / NaN);
/// `big` scales it to ±4·10^4, near the top of f16's range (65504).
fn float_weights<W: Quantize>(n: usize, seed: u64, big: bool) -> Vec<W> {
    let scale = if big { 1e4 } else { 1.0 };
    let x: Vec<f32> = activations(n, seed ^ 0x55, 0)
        .iter()
        .map(|v| v * scale)
        .collect();
    let mut w = zeroed_blocks::<W>(n);
    W::quantize_row(&x, &mut w);
    w
}

/// [`check`] with weights from `make(n_blocks, seed, max)`.
fn check_with<W: Select>(make: impl Fn(usize, u64, bool) -> Vec<W>) {
    let kernels: Vec<(Isa, GemmKernel<W>)> = Isa::all_variants()
        .into_iter()
        .filter_map(|isa| W::kernels(isa).gemm.map(|k| (isa, k)))
        .collect();
    // Every type has a tile kernel on any SIMD level, except the float types, which have
    // them on AVX-512 only (BF16: with AVX512-BF16).
    let best = Isa::best();
    let required = match W::TYPE {
        GgmlType::F32 | GgmlType::F16 => best.level() == Level::Avx512,
        GgmlType::BF16 => best.level() == Level::Avx512 && best.has_avx512_bf16(),
        _ => best.level() > Level::Scalar,
    };
    if required {
        assert!(!kernels.is_empty(), "{}: no tile kernel", W::TYPE);
    }
    // Rows and tokens around the tile sizes (4 or 8 rows, 16-token groups), and more than
    // two K panels with a partial last one.
    let n_blocks = (2 * PANEL + PANEL / 4 + W::QK) / W::QK;
    for (case, (n_rows, n_tokens)) in [(1, 1), (5, 7), (8, 16), (13, 17), (3, 40)]
        .into_iter()
        .enumerate()
    {
        for kind in 0..4u8 {
            for max in [false, true] {
                let seed = 100 * case as u64 + 10 * kind as u64 + max as u64;
                let w: Vec<W> = make(n_rows * n_blocks, seed, max);
                let x = activations(n_tokens * n_blocks * W::QK, seed + 5, kind);
                let mut act = zeroed_blocks::<W::Act>(n_tokens * n_blocks * W::QK / W::Act::QK);
                for (xr, ar) in x
                    .chunks_exact(n_blocks * W::QK)
                    .zip(act.chunks_exact_mut(n_blocks * W::QK / W::Act::QK))
                {
                    W::Act::quantize_row(xr, ar);
                }
                let mut want = vec![0f32; n_rows * n_tokens];
                matmul_ref(&w, n_blocks, &act, &mut want, W::dot_ref);
                let (wd, ad) = (dequant(&w), dequant(&act));
                let n_in = n_blocks * W::QK;
                for (isa, k) in &kernels {
                    let got = run_tile(k, &w, n_blocks, &act);
                    for r in 0..n_rows {
                        for t in 0..n_tokens {
                            let mag = magnitude(
                                &wd[r * n_in..(r + 1) * n_in],
                                &ad[t * n_in..(t + 1) * n_in],
                            );
                            if !mag.is_finite() {
                                continue;
                            }
                            // Both sums round in f32 (2^-24 per operation), in different
                            // orders and with the scales applied differently (per sub-block
                            // here, per block there): a few ulps of the magnitude per block,
                            // as in kernels/tests/dot.rs. A wrong value or index errs by whole
                            // terms, orders of magnitude more.
                            let tol = 1e-5 * mag + 1e-30;
                            let (g, e) = (got[r * n_tokens + t], want[r * n_tokens + t]);
                            assert!(
                                (g as f64 - e as f64).abs() <= tol,
                                "{} on {isa}: [{r}][{t}] = {g}, reference {e} \
                                 (rows {n_rows} tokens {n_tokens} kind {kind} max {max})",
                                W::TYPE
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn legacy_tiles_match_reference() {
    check::<BlockQ4_0>(&[0]);
    check::<BlockQ4_1>(&[0, 2]);
    check::<BlockQ5_0>(&[0]);
    check::<BlockQ5_1>(&[0, 2]);
    check::<BlockQ8_0>(&[0]);
    check::<BlockIQ4_NL>(&[0]);
}

/// F32 and F16 (× f32) and BF16 (× bf16) tiles. The K length, 2305 elements, covers nine
/// float panels and a partial tenth (pack's scalar tail) and BF16's odd last element.
/// Tolerance as in `check`: the kernels sum each (row, token) in element order like the
/// reference, with fused multiply-adds (F32, F16) or pairs of products (`vdpbf16ps`,
/// products exact in f32), so they differ by a few roundings of the partial sums
/// (2^-24 relative each), well inside 1e-5 of Σ|w·a| for these lengths.
#[test]
fn float_tiles_match_reference() {
    check_with::<f32>(float_weights::<f32>);
    check_with::<phiq_kernels::half::f16>(float_weights::<phiq_kernels::half::f16>);
    check_with::<phiq_kernels::half::bf16>(float_weights::<phiq_kernels::half::bf16>);
}

#[test]
fn k_quant_tiles_match_reference() {
    check::<BlockQ2_K>(&[80, 82]);
    check::<BlockQ3_K>(&[108]);
    check::<BlockQ4_K>(&[0, 2]);
    check::<BlockQ5_K>(&[0, 2]);
    check::<BlockQ6_K>(&[208]);
    check::<BlockIQ4_XS>(&[0]);
}

/// The IQ1–IQ3 types through the generic tile kernels (decoded once into int8 panels).
#[test]
fn i_quant_tiles_match_reference() {
    check::<BlockIQ2_XXS>(&[0]);
    check::<BlockIQ2_XS>(&[0]);
    check::<BlockIQ2_S>(&[0]);
    check::<BlockIQ3_XXS>(&[0]);
    check::<BlockIQ3_S>(&[0]);
    check::<BlockIQ1_S>(&[0]);
    for pattern in [None, Some(0xFF), Some(0x00), Some(0x80)] {
        check_with::<BlockIQ1_M>(|n, seed, max| iq1m_blocks(n, seed, &[], (max, pattern)));
    }
}

/// Weights quantized from a smooth signal (the realistic case for the batch checks).
fn signal_weights<W: Quantize>(n_rows: usize, n_in: usize) -> Vec<W> {
    let x: Vec<f32> = (0..n_rows * n_in)
        .map(|i| (i as f32 * 0.37).sin() + 0.25 * ((i * 7 % 13) as f32 - 6.0) / 6.0)
        .collect();
    let mut w = zeroed_blocks::<W>(n_rows * n_in / W::QK);
    W::quantize_row(&x, &mut w);
    w
}

/// matmul's batch path: bit-identical for 1, 2 and 3 threads; when it takes the tiles,
/// equal to the tile kernel's own row output bit for bit (the transposing store into y
/// moves values, it does not change them); and within rounding of one token at a time
/// (the dot-product path).
fn check_batch<W: Select + Quantize>() {
    let (n_rows, n_in) = (37, 3 * PANEL / 2 + W::QK.max(256));
    let n_in = n_in / W::QK * W::QK;
    let w = signal_weights::<W>(n_rows, n_in);
    let n_blocks = n_in / W::QK;
    let (wd, _) = (dequant(&w), ());
    for n_tokens in [2, 16, 19, 530] {
        let x = activations(n_tokens * n_in, 77 + n_tokens as u64, 0);
        for isa in Isa::all_variants() {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y = vec![0f32; n_tokens * n_rows];
                pool.install(|| matmul_typed(&w, n_in, &x, &mut y, &mut MatmulScratch::new(), isa))
                    .unwrap();
                y
            };
            let y = run(2);
            for threads in [1, 3] {
                assert!(
                    run(threads)
                        .iter()
                        .zip(&y)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{} {isa}: {threads} threads differ",
                    W::TYPE
                );
            }
            // Same activations, quantized as matmul does, through the kernel's row output.
            let mut act = zeroed_blocks::<W::Act>(n_tokens * n_in / W::Act::QK);
            for (xr, ar) in x
                .chunks_exact(n_in)
                .zip(act.chunks_exact_mut(n_in / W::Act::QK))
            {
                W::Act::quantize_row(xr, ar);
            }
            let tiled = W::kernels(isa).gemm.filter(|_| n_tokens >= MIN_TILE_TOKENS);
            if let Some(k) = tiled {
                let rows = run_tile(&k, &w, n_blocks, &act);
                for r in 0..n_rows {
                    for t in 0..n_tokens {
                        assert_eq!(
                            rows[r * n_tokens + t].to_bits(),
                            y[t * n_rows + r].to_bits(),
                            "{} {isa}: y[{t}][{r}] differs from the kernel's row output",
                            W::TYPE
                        );
                    }
                }
            }
            let ad = dequant(&act);
            for t in 0..n_tokens {
                let mut one = vec![0f32; n_rows];
                let xt = &x[t * n_in..(t + 1) * n_in];
                matmul_typed(&w, n_in, xt, &mut one, &mut MatmulScratch::new(), isa).unwrap();
                for r in 0..n_rows {
                    let mag =
                        magnitude(&wd[r * n_in..(r + 1) * n_in], &ad[t * n_in..(t + 1) * n_in]);
                    // Rounding only (see `check`): the batch and the single token quantize
                    // the activations identically.
                    let (b, s) = (y[t * n_rows + r], one[r]);
                    assert!(
                        (b as f64 - s as f64).abs() <= 1e-5 * mag + 1e-30,
                        "{} {isa}: token {t} row {r}: batch {b}, alone {s}",
                        W::TYPE
                    );
                }
            }
        }
    }
}

#[test]
fn batch_path_is_deterministic_and_matches_single_tokens() {
    check_batch::<BlockQ4_0>();
    check_batch::<BlockQ4_1>();
    check_batch::<f32>();
    check_batch::<phiq_kernels::half::f16>();
    check_batch::<phiq_kernels::half::bf16>();
    check_batch::<BlockQ8_0>();
    check_batch::<BlockQ4_K>();
    check_batch::<BlockQ6_K>();
}
