//! Dot products of a weight row with an activation row, in the pairing ggml uses
//! (Q4_0/Q5_0/Q8_0/IQ4_NL × Q8_0; Q4_1/Q5_1 × Q8_1; K-quants and IQ4_XS × Q8_K;
//! F16 and F32 × F32; BF16 × BF16), expressed as [`VecDot::Act`].
//!
//! This file holds the scalar references: integer sums per block exactly as ggml's
//! generic kernels form them, then one float multiply-add per block. The SIMD kernels in
//! [`crate::x86`] are tested against these.

use half::{bf16, f16};

use crate::blocks::*;
use crate::dispatch::Isa;
use crate::quantize::Quantize;
use crate::tile::TileKernel;
pub use crate::x86::{PreparedRows, Rows, RowsFn, ROWS};

/// A weight row × activation row kernel.
pub type DotFn<W> = fn(&[W], &[<W as VecDot>::Act]) -> f32;

/// A weight block type and the activation format its dot product pairs it with.
pub trait VecDot: Block {
    /// The activation block: the f32 activations are quantized to this once per matmul.
    type Act: Quantize;
    /// The scalar reference kernel.
    fn dot_ref(w: &[Self], a: &[Self::Act]) -> f32;
    /// The fastest kernel `isa` allows (the reference when there is no SIMD one).
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        let _ = isa;
        Self::dot_ref
    }
    /// The multi-row kernel ([`ROWS`] weight rows × one activation row) `isa` allows, if
    /// this type has one; matrix × vector products use it for every group of rows (the
    /// last group repeats its last row), else one [`Self::dot_kernel`] per row.
    fn rows_kernel(isa: Isa) -> Option<Rows<Self>> {
        let _ = isa;
        None
    }
    /// Matrix × vector takes [`Self::rows_kernel`] only when one activation row is at
    /// least this many bytes (on `isa`). Kernels that share work between the rows (Q4_0) win at
    /// every shape (0); those that only walk the rows together (the block-wise driver)
    /// win when the activation row no longer fits in L1 beside the streaming weights
    /// (Phi-4's ffn_down, 17920 wide) and lose a few % below it to one dot per row,
    /// which the hardware prefetcher follows well (examples/gemv_stream.rs).
    fn rows_min_act_bytes(isa: Isa) -> usize {
        let _ = isa;
        16 << 10
    }
    /// The batched kernel (many weight rows × many tokens, see [`crate::tile`]) `isa`
    /// allows, if this type has one; `None` makes matmul loop over [`Self::dot_kernel`].
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        let _ = isa;
        None
    }
}

#[inline]
fn h(x: f16) -> f32 {
    x.to_f32()
}

impl VecDot for f32 {
    type Act = f32;
    fn dot_ref(w: &[f32], a: &[f32]) -> f32 {
        w.iter().zip(a).map(|(x, y)| x * y).sum()
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_f32(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile_f32(isa)
    }
}

impl VecDot for f16 {
    type Act = f32;
    fn dot_ref(w: &[f16], a: &[f32]) -> f32 {
        w.iter().zip(a).map(|(x, y)| x.to_f32() * y).sum()
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_f16(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile_f16(isa)
    }
}

impl VecDot for bf16 {
    type Act = bf16;
    fn dot_ref(w: &[bf16], a: &[bf16]) -> f32 {
        w.iter().zip(a).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_bf16(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile_bf16(isa)
    }
}

impl VecDot for BlockQ4_0 {
    type Act = BlockQ8_0;
    fn dot_ref(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += ((x.qs[j] & 0x0F) as i32 - 8) * y.qs[j] as i32;
                sumi += ((x.qs[j] >> 4) as i32 - 8) * y.qs[j + 16] as i32;
            }
            sumf += sumi as f32 * (h(x.d) * h(y.d));
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q4_0(isa).unwrap_or(Self::dot_ref)
    }
    fn rows_kernel(isa: Isa) -> Option<Rows<Self>> {
        crate::x86::select_rows_q4_0(isa)
    }
    fn rows_min_act_bytes(_: Isa) -> usize {
        0
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ4_1 {
    type Act = BlockQ8_1;
    fn dot_ref(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += (x.qs[j] & 0x0F) as i32 * y.qs[j] as i32;
                sumi += (x.qs[j] >> 4) as i32 * y.qs[j + 16] as i32;
            }
            // y.s = d_y * Σ q_y, so m_x * s_y adds the weights' offset.
            sumf += sumi as f32 * (h(x.d) * h(y.d)) + h(x.m) * h(y.s);
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q4_1(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

/// The 32 values 0..32 of a Q5 block (5th bit from `qh`), element order.
#[inline]
fn q5_values(qs: &[u8; 16], qh: [u8; 4]) -> [i32; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut v = [0i32; 32];
    for j in 0..16 {
        v[j] = ((qs[j] & 0x0F) as u32 | (((qh >> j) & 1) << 4)) as i32;
        v[j + 16] = ((qs[j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4)) as i32;
    }
    v
}

impl VecDot for BlockQ5_0 {
    type Act = BlockQ8_0;
    fn dot_ref(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let v = q5_values(&x.qs, x.qh);
            let sumi: i32 = (0..32).map(|j| (v[j] - 16) * y.qs[j] as i32).sum();
            sumf += sumi as f32 * (h(x.d) * h(y.d));
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q5_0(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ5_1 {
    type Act = BlockQ8_1;
    fn dot_ref(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let v = q5_values(&x.qs, x.qh);
            let sumi: i32 = (0..32).map(|j| v[j] * y.qs[j] as i32).sum();
            sumf += sumi as f32 * (h(x.d) * h(y.d)) + h(x.m) * h(y.s);
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q5_1(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ8_0 {
    type Act = BlockQ8_0;
    fn dot_ref(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let sumi: i32 = (0..32).map(|j| x.qs[j] as i32 * y.qs[j] as i32).sum();
            sumf += sumi as f32 * (h(x.d) * h(y.d));
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q8_0(isa).unwrap_or(Self::dot_ref)
    }
    fn rows_kernel(isa: Isa) -> Option<Rows<Self>> {
        crate::x86::select_rows_q8_0(isa).map(Rows::Plain)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockIQ4_NL {
    type Act = BlockQ8_0;
    fn dot_ref(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += KVALUES_IQ4NL[(x.qs[j] & 0x0F) as usize] as i32 * y.qs[j] as i32;
                sumi += KVALUES_IQ4NL[(x.qs[j] >> 4) as usize] as i32 * y.qs[j + 16] as i32;
            }
            sumf += sumi as f32 * (h(x.d) * h(y.d));
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_iq4_nl(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ2_K {
    type Act = BlockQ8_K;
    fn dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            // Min terms: Σ_j m_j · Σ(q8 in sub-block j) from the precomputed bsums.
            let summs: i32 = (0..16)
                .map(|j| y.bsums[j] as i32 * (x.scales[j] >> 4) as i32)
                .sum();
            let mut isum = 0i32;
            let mut is = 0;
            for half in 0..2 {
                let q2 = &x.qs[32 * half..32 * half + 32];
                for (k, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                    let q8 = &y.qs[128 * half + 32 * k..];
                    for part in 0..2 {
                        let sc = (x.scales[is] & 0x0F) as i32;
                        is += 1;
                        let s: i32 = (0..16)
                            .map(|l| {
                                q8[16 * part + l] as i32 * ((q2[16 * part + l] >> shift) & 3) as i32
                            })
                            .sum();
                        isum += sc * s;
                    }
                }
            }
            let dall = y.d * h(x.d);
            let dmin = y.d * h(x.dmin);
            sumf += dall * isum as f32 - dmin * summs as f32;
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q2_k(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ3_K {
    type Act = BlockQ8_K;
    fn dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        let mut sumf = 0.0;
        let mut q = [0i8; QK_K];
        for (x, y) in w.iter().zip(a) {
            // The 3-bit values, element order, already offset (q - 4·!hbit).
            let mut m = 1u8;
            for half in 0..2 {
                for (k, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                    for l in 0..32 {
                        let lo = ((x.qs[32 * half + l] >> shift) & 3) as i8;
                        let sub = if x.hmask[l] & m != 0 { 0 } else { 4 };
                        q[128 * half + 32 * k + l] = lo - sub;
                    }
                    m <<= 1;
                }
            }
            let scales = x.unpack_scales();
            let mut isum = 0i32;
            for j in 0..16 {
                let s: i32 = (16 * j..16 * j + 16)
                    .map(|i| q[i] as i32 * y.qs[i] as i32)
                    .sum();
                isum += scales[j] as i32 * s;
            }
            sumf += h(x.d) * y.d * isum as f32;
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q3_k(isa).unwrap_or(Self::dot_ref)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ4_K {
    type Act = BlockQ8_K;
    fn dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let (mut isum, mut summs) = (0i32, 0i32);
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, &x.scales);
                let c = s / 2;
                let mut d = 0i32;
                for l in 0..32 {
                    let b = x.qs[32 * c + l];
                    let q = if s % 2 == 0 { b & 0x0F } else { b >> 4 };
                    d += q as i32 * y.qs[32 * s + l] as i32;
                }
                isum += sc as i32 * d;
                summs += m as i32 * (y.bsums[2 * s] as i32 + y.bsums[2 * s + 1] as i32);
            }
            sumf += h(x.d) * y.d * isum as f32 - h(x.dmin) * y.d * summs as f32;
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q4_k(isa).unwrap_or(Self::dot_ref)
    }
    fn rows_kernel(isa: Isa) -> Option<Rows<Self>> {
        crate::x86::select_rows_q4_k(isa)
    }
    /// The AVX-512 kernel shares the activations' rearrangement between its rows and
    /// wins at every shape; the AVX2 one is the block-wise driver.
    fn rows_min_act_bytes(isa: Isa) -> usize {
        if isa.level() >= crate::dispatch::Level::Avx512 {
            0
        } else {
            16 << 10
        }
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ5_K {
    type Act = BlockQ8_K;
    fn dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let (mut isum, mut summs) = (0i32, 0i32);
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, &x.scales);
                let c = s / 2;
                let mut d = 0i32;
                for l in 0..32 {
                    let b = x.qs[32 * c + l];
                    let lo = if s % 2 == 0 { b & 0x0F } else { b >> 4 };
                    let hi = (x.qh[l] >> s) & 1;
                    d += (lo | (hi << 4)) as i32 * y.qs[32 * s + l] as i32;
                }
                isum += sc as i32 * d;
                summs += m as i32 * (y.bsums[2 * s] as i32 + y.bsums[2 * s + 1] as i32);
            }
            sumf += h(x.d) * y.d * isum as f32 - h(x.dmin) * y.d * summs as f32;
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q5_k(isa).unwrap_or(Self::dot_ref)
    }
    fn rows_kernel(isa: Isa) -> Option<Rows<Self>> {
        crate::x86::select_rows_q5_k(isa)
    }
    fn rows_min_act_bytes(_: Isa) -> usize {
        0
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockQ6_K {
    type Act = BlockQ8_K;
    fn dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let mut isum = 0i32;
            for half in 0..2 {
                let ql = &x.ql[64 * half..];
                let qh = &x.qh[32 * half..];
                let q8 = &y.qs[128 * half..];
                let sc = &x.scales[8 * half..];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    isum += sc[is] as i32 * q1 * q8[l] as i32;
                    isum += sc[is + 2] as i32 * q2 * q8[l + 32] as i32;
                    isum += sc[is + 4] as i32 * q3 * q8[l + 64] as i32;
                    isum += sc[is + 6] as i32 * q4 * q8[l + 96] as i32;
                }
            }
            sumf += h(x.d) * y.d * isum as f32;
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_q6_k(isa).unwrap_or(Self::dot_ref)
    }
    fn rows_kernel(isa: Isa) -> Option<Rows<Self>> {
        crate::x86::select_rows_q6_k(isa).map(Rows::Plain)
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}

impl VecDot for BlockIQ4_XS {
    type Act = BlockQ8_K;
    fn dot_ref(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        let mut sumf = 0.0;
        for (x, y) in w.iter().zip(a) {
            let mut isum = 0i32;
            for ib in 0..8 {
                let qs = &x.qs[16 * ib..16 * ib + 16];
                let q8 = &y.qs[32 * ib..32 * ib + 32];
                let mut s = 0i32;
                for j in 0..16 {
                    s += KVALUES_IQ4NL[(qs[j] & 0x0F) as usize] as i32 * q8[j] as i32;
                    s += KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32 * q8[j + 16] as i32;
                }
                isum += x.scale(ib) * s;
            }
            sumf += h(x.d) * y.d * isum as f32;
        }
        sumf
    }
    fn dot_kernel(isa: Isa) -> DotFn<Self> {
        crate::x86::select_iq4_xs(isa).unwrap_or(Self::dot_ref)
    }
    fn rows_kernel(isa: Isa) -> Option<Rows<Self>> {
        crate::x86::select_rows_iq4_xs(isa)
    }
    /// The AVX-512 kernel shares the activations' rearrangement between its rows.
    fn rows_min_act_bytes(_: Isa) -> usize {
        0
    }
    fn tile_kernel(isa: Isa) -> Option<TileKernel<Self>> {
        crate::x86::select_tile::<Self>(isa)
    }
}
