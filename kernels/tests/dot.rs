//! Dot products: every SIMD path the CPU supports against the scalar reference, and the
//! scalar reference against an f64 dot of the dequantized values.

mod common;

use common::{activations, dequant, iq1m_blocks, weight_blocks};
use phiq_kernels::format::blocks::*;
use phiq_kernels::half::{bf16, f16};
use phiq_kernels::isa::Isa;
use phiq_kernels::quant::Quantize;
use phiq_kernels::select::Select;

/// Block counts tried for every pairing.
const LENGTHS: [usize; 8] = [1, 2, 3, 7, 16, 23, 64, 65];

/// Weight bytes besides the f16 scales: random, or every byte 0xFF, 0x00 or 0x80 — the
/// extreme quants (all bits set: the largest values, largest K-quant scales and mins; all
/// clear: the most negative values of the offset formats; 0x80: Q6_K's scales −128).
const WEIGHT_PATTERNS: [Option<u8>; 4] = [None, Some(0xFF), Some(0x00), Some(0x80)];

/// Weights of a plain float type, from a float signal (random bytes would be inf/NaN).
fn float_weights<W: Select + Quantize>(
    n: usize,
    seed: u64,
    _: &[usize],
    (big, _): (bool, Option<u8>),
) -> Vec<W> {
    let scale = if big { 3e4 } else { 1.0 };
    let x: Vec<f32> = activations(n, seed ^ 0x55, 0)
        .iter()
        .map(|v| v * scale)
        .collect();
    let mut w = zeroed_blocks::<W>(n);
    W::quantize_row(&x, &mut w);
    w
}

/// Extra tolerance for the Q8_1 pairings: the activation's `s = d·Σq` is stored as f16,
/// so `m_x · s_y` carries a relative error of up to 2^-11 that the f64 sum of the
/// dequantized values does not have (ggml's own design).
fn q8_1_sum_error(m: &[f16], a: &[BlockQ8_1]) -> f64 {
    m.iter()
        .zip(a)
        .map(|(m, y)| (m.to_f32() as f64 * y.s.to_f32() as f64).abs() * 2f64.powi(-11))
        .sum()
}

type MakeWeights<W> = fn(usize, u64, &[usize], (bool, Option<u8>)) -> Vec<W>;

fn check<W: Select>(scale_offsets: &[usize]) {
    check_with::<W>(scale_offsets, weight_blocks::<W>, |_, _| 0.0)
}

/// Checks one pairing on every supported ISA and against the f64 dot.
fn check_with<W: Select>(
    scale_offsets: &[usize],
    make: MakeWeights<W>,
    extra_tol: fn(&[W], &[W::Act]) -> f64,
) {
    // Float weights come from a signal: the byte patterns are for the quantized types.
    let patterns = if W::QK == 1 {
        &WEIGHT_PATTERNS[..1]
    } else {
        &WEIGHT_PATTERNS[..]
    };
    for (li, &n) in LENGTHS.iter().enumerate() {
        for (kind, &pattern) in (0..4u8).flat_map(|k| patterns.iter().map(move |p| (k, p))) {
            for max_scales in [false, true] {
                let seed = 1000 * li as u64 + 10 * kind as u64 + max_scales as u64;
                let w: Vec<W> = make(
                    if W::QK == 1 { n * 32 + 5 } else { n },
                    seed,
                    scale_offsets,
                    (max_scales, pattern),
                );
                let x = activations(w.len() * W::QK, seed + 7, kind);
                let mut a = zeroed_blocks::<W::Act>(w.len() * W::QK / W::Act::QK);
                W::Act::quantize_row(&x, &mut a);

                let reference = W::dot_ref(&w, &a);
                let (wd, ad) = (dequant(&w), dequant(&a));
                let exact: f64 = wd.iter().zip(&ad).map(|(p, q)| p * q).sum();
                let magnitude: f64 = wd.iter().zip(&ad).map(|(p, q)| (p * q).abs()).sum();
                // f32 accumulation over ≤ 65·256 terms in a different order than the f64
                // sum: each partial sum may round (2^-24 relative), and scales are
                // multiplied in a different order, so allow a few ulps per block of the
                // total magnitude. 1e-5 covers 65 blocks with margin; a wrong index or
                // bit in a kernel errs by whole terms, orders of magnitude more.
                let tol = 1e-5 * magnitude + extra_tol(&w, &a) + 1e-30;
                if !magnitude.is_finite() {
                    continue;
                }
                assert!(
                    (reference as f64 - exact).abs() <= tol,
                    "{}: scalar {reference} vs f64 {exact} (n={n} kind={kind})",
                    W::TYPE
                );
                // More weight rows for the multi-row kernels (same scale settings), each
                // different: the first row is `w`, the others random.
                let others: Vec<Vec<W>> = (1..4u64)
                    .map(|k| make(w.len(), seed + 500 * k, scale_offsets, (max_scales, None)))
                    .collect();
                let mut group: Vec<(&[W], f32, f64, bool)> =
                    vec![(&w[..], reference, tol, magnitude.is_finite())];
                for o in &others {
                    let m: f64 = dequant(o).iter().zip(&ad).map(|(p, q)| (p * q).abs()).sum();
                    let t = 1e-5 * m + extra_tol(o, &a) + 1e-30;
                    group.push((&o[..], W::dot_ref(o, &a), t, m.is_finite()));
                }
                for isa in Isa::all_variants() {
                    let got = (W::kernels(isa).dot)(&w, &a);
                    assert!(
                        (got as f64 - reference as f64).abs() <= tol,
                        "{} on {isa}: {got} vs scalar {reference} \
                         (n={n} kind={kind} max={max_scales} weights={pattern:?})",
                        W::TYPE
                    );
                    // Multi-row kernel: each row within the same bound of its scalar dot,
                    // and a row's result does not depend on its neighbours or position
                    // (the same rows rotated by one give the same bits, moved).
                    if let Some(rows) = W::kernels(isa).gemv {
                        let one = rows.call(std::array::from_fn(|j| group[j % group.len()].0), &a);
                        let two =
                            rows.call(std::array::from_fn(|j| group[(j + 1) % group.len()].0), &a);
                        for (j, &v) in one.iter().enumerate() {
                            let (_, want, t, finite) = group[j % group.len()];
                            assert!(
                                (v as f64 - want as f64).abs() <= t.max(1e-30) || !finite,
                                "{} rows on {isa}, row {j}: {v} vs scalar {want} (n={n} kind={kind} max={max_scales})",
                                W::TYPE
                            );
                        }
                        for j in 1..one.len() {
                            assert_eq!(
                                one[j].to_bits(),
                                two[j - 1].to_bits(),
                                "{} rows on {isa}: row {j} moved to {}",
                                W::TYPE,
                                j - 1
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn plain_floats() {
    check_with::<f32>(&[], float_weights::<f32>, |_, _| 0.0);
    check_with::<f16>(&[], float_weights::<f16>, |_, _| 0.0);
    check_with::<bf16>(&[], float_weights::<bf16>, |_, _| 0.0);
}

#[test]
fn legacy_quants() {
    check::<BlockQ4_0>(&[0]);
    check_with::<BlockQ4_1>(&[0, 2], weight_blocks, |w, a| {
        q8_1_sum_error(&w.iter().map(|b| b.m).collect::<Vec<_>>(), a)
    });
    check::<BlockQ5_0>(&[0]);
    check_with::<BlockQ5_1>(&[0, 2], weight_blocks, |w, a| {
        q8_1_sum_error(&w.iter().map(|b| b.m).collect::<Vec<_>>(), a)
    });
    check::<BlockQ8_0>(&[0]);
    check::<BlockIQ4_NL>(&[0]);
}

/// The IQ1–IQ3 types: the reference dot (the only one so far) against the f64 product.
#[test]
fn i_quants() {
    check::<BlockIQ2_XXS>(&[0]);
    check::<BlockIQ2_XS>(&[0]);
    check::<BlockIQ2_S>(&[0]);
    check::<BlockIQ3_XXS>(&[0]);
    check::<BlockIQ3_S>(&[0]);
    check::<BlockIQ1_S>(&[0]);
    check_with::<BlockIQ1_M>(&[], iq1m_blocks, |_, _| 0.0);
}

#[test]
fn k_quants() {
    check::<BlockQ2_K>(&[80, 82]);
    check::<BlockQ3_K>(&[108]);
    check::<BlockQ4_K>(&[0, 2]);
    check::<BlockQ5_K>(&[0, 2]);
    check::<BlockQ6_K>(&[208]);
    check::<BlockIQ4_XS>(&[0]);
}

#[test]
fn every_isa_is_reachable_here() {
    // With PHIQ_REQUIRE_ALL_ISAS=1 (CI), every x86 level this CPU can run must be
    // exercised: scalar and avx2 always (every machine this project's CI runs on has
    // AVX2), avx512 and avxvnni where the CPU reports their features (the project's
    // machines change: an AVX-512 Xeon, a Zen 4, a Zen 3 with AVX2 only).
    let names: Vec<String> = Isa::all_variants().iter().map(|i| i.to_string()).collect();
    eprintln!("ISAs tested: {names:?}");
    assert!(names.iter().any(|n| n == "scalar"), "{names:?}");
    // On aarch64 (qemu-aarch64 -cpu max in tools/test-aarch64.sh): neon.
    if std::env::var("PHIQ_REQUIRE_ALL_ISAS").as_deref() == Ok("1") {
        #[cfg(target_arch = "x86_64")]
        let want = {
            use std::arch::is_x86_feature_detected as has;
            let mut want = vec!["avx2"];
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                want.push("avx512");
            }
            if has!("avxvnni") {
                want.push("avxvnni");
            }
            want
        };
        #[cfg(not(target_arch = "x86_64"))]
        let want = vec!["neon"];
        for w in want {
            assert!(
                names.iter().any(|n| n.split('+').next() == Some(w)),
                "{w} not among {names:?}"
            );
        }
    }
}
