//! Tests of the IQ quantizers: bytes equal to ggml's (hashes of its output for a fixed input
//! with edge cases), no panic on non-finite input, and errors in the expected range.

use super::*;
use crate::format::blocks::{zeroed_blocks, Block, QK_K};
use crate::format::unpack::{dequantize_row, Dequantize};

/// Gaussian-ish values from a fixed xorshift (k.rs's `normalish`).
fn normalish(seed: u64, n: usize, sigma: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| ((0..12).map(|_| uniform()).sum::<f32>() - 6.0) * sigma)
        .collect()
}

/// Rows of [`ROW`] values (Gaussian at three scales, sparse, spiky, integer ties, zeros,
/// constants, tiny values, all-zero sub-blocks) and one row of importance weights (with
/// zeros: a whole sub-block and every 7th column).
fn golden_input() -> (Vec<f32>, Vec<f32>) {
    let n = ROW;
    let mut rows: Vec<Vec<f32>> = vec![
        normalish(21, n, 1.0),
        normalish(22, n, 0.02),
        normalish(23, n, 1000.0),
        normalish(24, n, 1.0)
            .iter()
            .enumerate()
            .map(|(i, &v)| if (i * 2654435761) % 10 < 7 { 0.0 } else { v })
            .collect(),
        (0..n)
            .map(|i| ((i * 7919) % 17) as f32 * 0.25 - 2.0)
            .collect(),
        vec![0.0; n],
        vec![0.7; n],
        vec![-0.3; n],
        normalish(25, n, 1.0).iter().map(|v| v * 1e-20).collect(),
        (0..n)
            .map(|i| if i % 97 == 5 { 3.0 } else { 0.0 })
            .collect(),
    ];
    let mut holes = normalish(26, n, 1.0);
    for r in [32..64, 300..316, 512..768] {
        holes[r].fill(0.0);
    }
    rows.push(holes);
    let qw = (0..n)
        .map(|i| {
            if i < 32 || i % 7 == 3 {
                0.0
            } else {
                0.25 + ((i * 37) % 101) as f32 / 50.0
            }
        })
        .collect();
    (rows.concat(), qw)
}

/// Values per row: 4 super-blocks.
const ROW: usize = 4 * QK_K;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn bytes_of<B: Block>(blocks: &[B]) -> Vec<u8> {
    crate::format::blocks::block_bytes(blocks).to_vec()
}

/// Quantizes `x` row by row with `qw` (one row of weights).
fn quantize<B: QuantizeImatrix>(x: &[f32], qw: &[f32]) -> Vec<B> {
    let mut y = zeroed_blocks::<B>(x.len() / B::QK);
    for (xr, yr) in x.chunks(ROW).zip(y.chunks_mut(ROW / B::QK)) {
        B::quantize_row_imatrix(xr, yr, qw);
    }
    y
}

/// Quantizes `x` row by row without weights.
fn quantize_plain<B: Quantize>(x: &[f32]) -> Vec<B> {
    let mut y = zeroed_blocks::<B>(x.len() / B::QK);
    for (xr, yr) in x.chunks(ROW).zip(y.chunks_mut(ROW / B::QK)) {
        B::quantize_row(xr, yr);
    }
    y
}

/// One type's quantizers, type-erased: (name, with weights, without weights if it has one).
type Case = (
    &'static str,
    fn(&[f32], &[f32]) -> Vec<u8>,
    Option<fn(&[f32]) -> Vec<u8>>,
);

fn cases() -> Vec<Case> {
    fn w<B: QuantizeImatrix>(x: &[f32], qw: &[f32]) -> Vec<u8> {
        bytes_of(&quantize::<B>(x, qw))
    }
    fn p<B: Quantize>(x: &[f32]) -> Vec<u8> {
        bytes_of(&quantize_plain::<B>(x))
    }
    vec![
        ("IQ2_XXS", w::<BlockIQ2_XXS>, None),
        ("IQ2_XS", w::<BlockIQ2_XS>, None),
        ("IQ2_S", w::<BlockIQ2_S>, Some(p::<BlockIQ2_S>)),
        ("IQ3_XXS", w::<BlockIQ3_XXS>, Some(p::<BlockIQ3_XXS>)),
        ("IQ3_S", w::<BlockIQ3_S>, Some(p::<BlockIQ3_S>)),
        ("IQ1_S", w::<BlockIQ1_S>, None),
        ("IQ1_M", w::<BlockIQ1_M>, Some(p::<BlockIQ1_M>)),
    ]
}

/// Bit-exactness with ggml. The hashes are of the bytes `ggml_quantize_chunk` (from the
/// libggml-base.a that tools/build_llamacpp.sh builds for llama-quantize: the llama.cpp
/// vendored by llama-cpp-python 0.3.36, GCC 12, x86-64 without FMA) writes for
/// [`golden_input`]: with its importance weights, with all-zero weights, and without
/// weights (the types that allow it). The input's edge cases (zero and constant rows,
/// all-zero sub-blocks, which shift IQ3_S's indices, tiny values, ties, zero weights)
/// each take their own branch of the C code.
#[test]
fn matches_ggml_golden() {
    let expected: [(&str, u64, u64, Option<u64>, usize); 7] = [
        (
            "IQ2_XXS",
            0x6961c2aa6267c1b7,
            0x26464e94db4ec405,
            None,
            2904,
        ),
        ("IQ2_XS", 0x4246ad8706b7112f, 0x2b1449507996d1c9, None, 3256),
        (
            "IQ2_S",
            0xd806fb3beca432e9,
            0xbc2c93c5da71234b,
            Some(0xb8ff4e06e62a7f3c),
            3608,
        ),
        (
            "IQ3_XXS",
            0x6694a608881cc586,
            0x6d2dc3e4ca95a8ee,
            Some(0x6c59ad8c1f977c97),
            4312,
        ),
        (
            "IQ3_S",
            0x772c71cfad88ad47,
            0x0668419da72bcffd,
            Some(0x1b625babc736f57f),
            4840,
        ),
        ("IQ1_S", 0x5f76e3721475c830, 0xa0c75c8c2c8f4d05, None, 2200),
        (
            "IQ1_M",
            0x0ea1aa290263b377,
            0xbeecaa4b8122f3a5,
            Some(0x5f62704f793fa5aa),
            2464,
        ),
    ];
    let (x, qw) = golden_input();
    let zero = vec![0.0f32; qw.len()];
    for (name, weighted, plain) in cases() {
        let (_, want_w, want_zero, want_plain, len) =
            expected.iter().find(|e| e.0 == name).copied().unwrap();
        let bytes = weighted(&x, &qw);
        assert_eq!(bytes.len(), len, "{name}");
        assert_eq!(
            fnv1a(&bytes),
            want_w,
            "{name} with weights: bytes differ from ggml's"
        );
        assert_eq!(
            fnv1a(&weighted(&x, &zero)),
            want_zero,
            "{name} with zero weights"
        );
        assert_eq!(
            plain.map(|f| fnv1a(&f(&x))),
            want_plain,
            "{name} without weights"
        );
    }
}

/// ggml aborts on some non-finite or overflowing inputs (a neighbour search where every
/// distance is infinite); we must not panic, whatever the row holds.
#[test]
fn non_finite_and_extreme_rows_do_not_panic() {
    let base = normalish(31, ROW, 1.0);
    let mut rows: Vec<Vec<f32>> = [1e15f32, 1e30, f32::MAX, 1e-40]
        .iter()
        .map(|&s| base.iter().map(|v| v * s).collect())
        .collect();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut r = base.clone();
        r[7] = bad;
        r[300] = bad;
        rows.push(r);
        rows.push(vec![bad; ROW]);
    }
    let x = rows.concat();
    let qw: Vec<f32> = (0..ROW).map(|i| 0.5 + (i % 3) as f32).collect();
    let big_w = vec![1e30f32; ROW];
    for (_, weighted, plain) in cases() {
        weighted(&x, &qw);
        weighted(&x, &big_w);
        if let Some(f) = plain {
            f(&x);
        }
    }
}

/// Relative RMS error `sqrt(Σ(x − y)² / Σx²)` of `x` quantized to `B` and back.
fn relative_error<B: QuantizeImatrix + Dequantize>(x: &[f32], qw: &[f32]) -> f32 {
    let y = quantize::<B>(x, qw);
    let mut back = vec![0.0f32; x.len()];
    dequantize_row(&y, &mut back);
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (a, b) in x.iter().zip(&back) {
        err += ((a - b) as f64).powi(2);
        norm += (*a as f64).powi(2);
    }
    (err / norm).sqrt() as f32
}

/// The round trip through each format stays within its expected error on Gaussian rows
/// at three scales and on constant rows, and all-zero rows stay zero. The bounds are ~8%
/// above what these (ggml-identical, see [`matches_ggml_golden`]) bytes give: relative
/// RMS errors of 0.14 (IQ3_S) to 0.51 (IQ1_S) on Gaussian rows, in the order of the
/// formats' bit rates; at most 0.34 (IQ2_XXS) on constant rows.
#[test]
fn round_trip_errors_are_in_range() {
    fn check<B: QuantizeImatrix + Dequantize>(gauss_bound: f32) {
        let qw: Vec<f32> = (0..ROW).map(|i| 0.5 + (i % 3) as f32).collect();
        for (what, scale) in [("unit", 1.0f32), ("small", 1e-2), ("large", 1e3)] {
            let x: Vec<f32> = normalish(41, 4 * ROW, scale);
            let e = relative_error::<B>(&x, &qw);
            assert!(
                e < gauss_bound,
                "{}: {what} Gaussian rows: relative error {e}",
                B::TYPE
            );
        }
        for c in [0.7f32, -0.3] {
            let e = relative_error::<B>(&vec![c; ROW], &qw);
            assert!(e < 0.35, "{}: constant {c}: relative error {e}", B::TYPE);
        }
        let zero = quantize::<B>(&vec![0.0; ROW], &qw);
        let mut back = vec![1.0f32; ROW];
        dequantize_row(&zero, &mut back);
        assert!(back.iter().all(|&v| v == 0.0), "{}: zeros", B::TYPE);
    }
    check::<BlockIQ3_S>(0.156);
    check::<BlockIQ3_XXS>(0.21);
    check::<BlockIQ2_S>(0.28);
    check::<BlockIQ2_XS>(0.34);
    check::<BlockIQ2_XXS>(0.39);
    check::<BlockIQ1_M>(0.52);
    check::<BlockIQ1_S>(0.55);
}
