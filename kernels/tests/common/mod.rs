//! The kernel tests' shared fixtures: deterministic bytes, activation signals, weight
//! blocks with controlled scale fields, and dequantized f64 views.

#![allow(dead_code)]

use phiq_kernels::format::blocks::*;
use phiq_kernels::format::unpack::{dequantize_row, Dequantize};

/// Deterministic pseudo-random bytes (xorshift64 seeded by `seed`; the workspace tests'
/// `pattern_bytes`).
pub fn pattern_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Deterministic activations: ggml's test signal `0.1 + 2 cos(i + off)` mixed with noise
/// (kind 0), zeros (1), all negative (2), or mostly small with rare large outliers (3).
pub fn activations(n: usize, seed: u64, kind: u8) -> Vec<f32> {
    let noise = pattern_bytes(n, seed);
    (0..n)
        .map(|i| match kind {
            0 => 0.1 + 2.0 * ((i as f32) + seed as f32).cos() + (noise[i] as f32 - 128.0) / 64.0,
            1 => 0.0,
            2 => -((noise[i] as f32) + 1.0) / 7.0, // all negative
            _ => {
                if noise[i] > 250 {
                    1000.0
                } else {
                    (noise[i] as f32 - 128.0) / 128.0
                }
            }
        })
        .collect()
}

/// Weight blocks of `pattern` bytes (random when None; 0xFF, 0x00 and 0x80 give the
/// extreme quants, scales and mins), with the f16 scale fields at `scale_offsets` set to
/// moderate random values (or to the f16 maximum, 65504, when `max_scales`).
pub fn weight_blocks<W: Block>(
    n: usize,
    seed: u64,
    scale_offsets: &[usize],
    (max_scales, pattern): (bool, Option<u8>),
) -> Vec<W> {
    let size = std::mem::size_of::<W>();
    let random = pattern_bytes(n * size, seed);
    let mut bytes = match pattern {
        Some(b) => vec![b; n * size],
        None => random.clone(),
    };
    for b in 0..n {
        for (k, &off) in scale_offsets.iter().enumerate() {
            let r = random[(b * size + 7 * k + 3) % random.len()];
            let v: u16 = if max_scales {
                0x7bff
            } else {
                ((r as u16 & 1) << 15) | ((8 + (r as u16 % 8)) << 10) | (r as u16 * 3)
            };
            bytes[b * size + off..b * size + off + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    blocks_from_bytes(&bytes)
}

/// The dequantized values of `b`, in f64.
pub fn dequant<B: Dequantize>(b: &[B]) -> Vec<f64> {
    let mut out = vec![0f32; b.len() * B::QK];
    dequantize_row(b, &mut out);
    out.into_iter().map(f64::from).collect()
}

/// A smooth signal with a little noise (the matmul and attention tests' inputs).
pub fn signal(n: usize, seed: u64) -> Vec<f32> {
    let r = pattern_bytes(n, seed);
    (0..n)
        .map(|i| {
            0.1 + 2.0 * ((i as f32) * 0.37 + seed as f32).cos() + (r[i] as f32 - 128.0) / 256.0
        })
        .collect()
}

/// Random IQ1_M blocks like [`weight_blocks`]: IQ1_M has no f16 field of its own, its
/// scale is the top nibbles of its four u16 scale words, set here to a moderate value
/// (or the largest f16 with `max_scales`). `scale_offsets` is unused.
#[allow(dead_code)]
pub fn iq1m_blocks(
    n: usize,
    seed: u64,
    _: &[usize],
    (max_scales, pattern): (bool, Option<u8>),
) -> Vec<BlockIQ1_M> {
    let mut blocks: Vec<BlockIQ1_M> = weight_blocks(n, seed, &[], (max_scales, pattern));
    let random = pattern_bytes(n, seed ^ 0x5eed);
    for (b, r) in blocks.iter_mut().zip(random) {
        let d: u16 = if max_scales {
            0x7bff
        } else {
            ((r as u16 & 1) << 15) | ((8 + (r as u16 % 8)) << 10) | (r as u16 * 3)
        };
        for k in 0..4 {
            b.scales[k] = (b.scales[k] & 0x0FFF) | ((d >> (4 * k)) & 0xF) << 12;
        }
        assert_eq!(b.d().to_bits(), d);
    }
    blocks
}
