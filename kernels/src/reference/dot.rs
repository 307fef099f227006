//! Scalar reference dot products: integer sums per sub-block exactly as ggml's generic
//! kernels form them, then one float multiply-add per block. Every SIMD dot, multi-row
//! and tile kernel is tested against these.

use half::{bf16, f16};

use crate::format::blocks::QK_K;
use crate::format::unpack::{Activation, Unpack};

pub fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(x, y)| x * y).sum()
}

pub fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(x, y)| x.to_f32() * y).sum()
}

pub fn dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
    w.iter().zip(a).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
}

/// A quantized weight row · its activation row, block by block: with the block's parts
/// ([`Unpack`]: values q, integer scales sc, mins, d and e) and the activation block's
/// (quants q8, scale d8, sums),
/// `Σ (d·d8) · Σ_s sc_s · Σ_{k∈s} q_k·q8_k  +  (e·d8) · Σ_s min_s · Σ_{k∈s} q8_k` (MINS, e = −dmin)
/// or `… + e · s8` (OFFSET, e = m, s8 = the activation's stored `d8·Σq8`).
/// The integer sums are exact; the float operations are ggml's, in its order.
pub fn dot_quant<W: Unpack, A: Activation>(w: &[W], a: &[A]) -> f32 {
    let mut sumf = 0.0;
    let (mut q, mut sc, mut mins) = ([0i8; QK_K], [0i16; QK_K / 16], [0i16; QK_K / 16]);
    for (x, y) in w.iter().zip(a) {
        let (d, e) = x.unpack(&mut q, &mut sc, &mut mins);
        let (q8, d8, bsums) = y.parts();
        let (mut isum, mut summs) = (0i32, 0i32);
        for s in 0..W::QK / W::SUB {
            let span = s * W::SUB..(s + 1) * W::SUB;
            let dot: i32 = q[span.clone()]
                .iter()
                .zip(&q8[span])
                .map(|(&q, &q8)| q as i32 * q8 as i32)
                .sum();
            isum += sc[s] as i32 * dot;
            if W::MINS {
                // Σ of the sub-block's activations from the block's sums of 16.
                let per = W::SUB / 16;
                let sum: i32 = bsums[s * per..(s + 1) * per]
                    .iter()
                    .map(|&v| v as i32)
                    .sum();
                summs += mins[s] as i32 * sum;
            }
        }
        // One addition to `sumf` per block, as ggml (`sumf += a - b`: −b is e·d8·summs).
        let scaled = d * d8 * isum as f32;
        sumf += if W::MINS {
            scaled + e * d8 * summs as f32
        } else if W::OFFSET {
            scaled + e * y.scaled_sum()
        } else {
            scaled
        };
    }
    sumf
}
