//! One unpacking description per quantized format: what a block's bits mean, written once.
//!
//! A quantized block is `QK / SUB` sub-blocks of small integers `q`, each with an integer
//! scale `sc`, under one float scale `d`; some formats add a per-sub-block integer min
//! (the K-quants with mins) or a per-block float offset `m` (Q4_1, Q5_1):
//!
//! ```text
//! y[k] = (d · sc[s]) · q[k]                       plain
//! y[k] = (d · sc[s]) · q[k] + (−dmin) · min[s]    MINS  (Q2_K, Q4_K, Q5_K)
//! y[k] = (d · sc[s]) · q[k] + m                   OFFSET (Q4_1, Q5_1)
//! ```
//! for element k of sub-block s. [`Unpack::unpack`] yields those parts, and everything
//! that reads a block's values goes through it: the reference dequantization
//! ([`dequantize_block`], bit-exact with ggml's `dequantize_row_*`), the reference dot
//! products ([`crate::reference::dot`]) and the tile kernels' panel decoding
//! ([`crate::contract::gemm`]). Each product above is evaluated in ggml's order, so the
//! results are ggml's to the bit (Rust never fuses or reassociates float operations).
//!
//! [`Activation`] is the other side: what an activation block (Q8_0, Q8_1, Q8_K) gives a
//! dot product — its quants, its scale and the sums the weights' mins and offsets need.

use half::{bf16, f16};

use super::blocks::*;
use super::iq_grids::*;

/// A quantized block described as integers and scales (see the module doc).
pub trait Unpack: Block {
    /// Elements per scaled sub-block: 16 or 32 (or the whole block).
    const SUB: usize;
    /// Whether the block has per-sub-block mins (Q2_K, Q4_K, Q5_K).
    const MINS: bool;
    /// Whether the block adds a float offset `m` (Q4_1, Q5_1); a dot product adds `m · s8`
    /// with the activation block's stored scaled sum ([`Activation::scaled_sum`]).
    const OFFSET: bool = false;
    /// The largest |q| [`Unpack::unpack`] can produce, for any bits (AVX2 picks its tile
    /// kernel by it).
    const MAX_ABS: i32;
    /// Whether every q [`Unpack::unpack`] produces is ≥ 0, for any bits (the types with
    /// mins or an offset: AVX2's tile then multiplies unsigned weights by signed activations).
    const NONNEG: bool = false;
    /// Writes `q[..QK]` (element order), `sc[..QK/SUB]` and, with mins, `mins[..QK/SUB]`
    /// (untouched otherwise); returns `(d, e)` with `e` = `−dmin` (MINS), `m` (OFFSET) or 0.
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], mins: &mut [i16]) -> (f32, f32);
}

/// The block's `QK` values into `out[..QK]`: ggml's reference dequantization.
#[inline]
pub fn dequantize_block<B: Unpack>(b: &B, out: &mut [f32]) {
    let (mut q, mut sc, mut mins) = ([0i8; QK_K], [0i16; QK_K / 16], [0i16; QK_K / 16]);
    let (d, e) = b.unpack(&mut q, &mut sc, &mut mins);
    for (s, (q, out)) in q[..B::QK]
        .chunks_exact(B::SUB)
        .zip(out[..B::QK].chunks_exact_mut(B::SUB))
        .enumerate()
    {
        let dl = d * sc[s] as f32;
        // ggml: `dl · q − ml` with ml = dmin · m; e · m = −(dmin · m) exactly.
        let ml = if B::MINS { e * mins[s] as f32 } else { 0.0 };
        for (o, &q) in out.iter_mut().zip(q) {
            *o = if B::MINS {
                dl * q as f32 + ml
            } else if B::OFFSET {
                q as f32 * dl + e
            } else {
                q as f32 * dl
            };
        }
    }
}

/// An activation block as the dot products read it.
pub trait Activation: Block {
    /// Quants, scale, and the sums of each 16 quants (Q8_K's `bsums`; empty for Q8_0/Q8_1).
    fn parts(&self) -> (&[i8], f32, &[i16]);
    /// `d · Σq` as the block stores it (Q8_1's `s`, an f16), for the weights' offset.
    fn scaled_sum(&self) -> f32 {
        0.0
    }
}

impl Activation for BlockQ8_0 {
    fn parts(&self) -> (&[i8], f32, &[i16]) {
        (&self.qs, self.d.to_f32(), &[])
    }
}

impl Activation for BlockQ8_1 {
    fn parts(&self) -> (&[i8], f32, &[i16]) {
        (&self.qs, self.d.to_f32(), &[])
    }
    fn scaled_sum(&self) -> f32 {
        self.s.to_f32()
    }
}

impl Activation for BlockQ8_K {
    fn parts(&self) -> (&[i8], f32, &[i16]) {
        (&self.qs, self.d, &self.bsums)
    }
}

// ---------------------------------------------------------------------------------
// The formats. Scales use `to_f32_const` (exact, like `to_f32`, but plain code that
// inlines into the kernels' decoders and needs no run-time CPU check).
// ---------------------------------------------------------------------------------

/// The 32 nibbles of a 32-element block (element j in the low nibble of `qs[j]`, j + 16
/// in the high one), each mapped by `f`.
#[inline(always)]
fn nibbles32(qs: &[u8; 16], q: &mut [i8], f: impl Fn(u8) -> i8) {
    for j in 0..16 {
        q[j] = f(qs[j] & 0x0F);
        q[j + 16] = f(qs[j] >> 4);
    }
}

impl Unpack for BlockQ4_0 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 8;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        nibbles32(&self.qs, q, |v| v as i8 - 8);
        sc[0] = 1;
        (self.d.to_f32_const(), 0.0)
    }
}

impl Unpack for BlockQ4_1 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const OFFSET: bool = true;
    const MAX_ABS: i32 = 15;
    const NONNEG: bool = true;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        nibbles32(&self.qs, q, |v| v as i8);
        sc[0] = 1;
        (self.d.to_f32_const(), self.m.to_f32_const())
    }
}

impl Unpack for BlockQ5_0 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 16;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        // Bit j of `qh` (u32 LE) is element j's fifth bit.
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let h0 = (((qh >> j) & 1) << 4) as u8;
            let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
            q[j] = ((self.qs[j] & 0x0F) | h0) as i8 - 16;
            q[j + 16] = ((self.qs[j] >> 4) | h1) as i8 - 16;
        }
        sc[0] = 1;
        (self.d.to_f32_const(), 0.0)
    }
}

impl Unpack for BlockQ5_1 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const OFFSET: bool = true;
    const MAX_ABS: i32 = 31;
    const NONNEG: bool = true;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        // Bit j of `qh` (u32 LE) is element j's fifth bit.
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let h0 = (((qh >> j) & 1) << 4) as u8;
            let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
            q[j] = ((self.qs[j] & 0x0F) | h0) as i8;
            q[j + 16] = ((self.qs[j] >> 4) | h1) as i8;
        }
        sc[0] = 1;
        (self.d.to_f32_const(), self.m.to_f32_const())
    }
}

impl Unpack for BlockQ8_0 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 128;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        q[..32].copy_from_slice(&self.qs);
        sc[0] = 1;
        (self.d.to_f32_const(), 0.0)
    }
}

/// Q8_1's values are `q · d`; its `s` only serves the offset formats' dot products.
impl Unpack for BlockQ8_1 {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 128;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        q[..32].copy_from_slice(&self.qs);
        sc[0] = 1;
        (self.d.to_f32_const(), 0.0)
    }
}

impl Unpack for BlockIQ4_NL {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 127;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        nibbles32(&self.qs, q, |v| KVALUES_IQ4NL[v as usize]);
        sc[0] = 1;
        (self.d.to_f32_const(), 0.0)
    }
}

impl Unpack for BlockQ2_K {
    const SUB: usize = 16;
    const MINS: bool = true;
    const MAX_ABS: i32 = 3;
    const NONNEG: bool = true;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], mins: &mut [i16]) -> (f32, f32) {
        for half in 0..2 {
            for (k, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                for l in 0..32 {
                    q[128 * half + 32 * k + l] = ((self.qs[32 * half + l] >> shift) & 3) as i8;
                }
            }
        }
        for s in 0..16 {
            sc[s] = (self.scales[s] & 0x0F) as i16;
            mins[s] = (self.scales[s] >> 4) as i16;
        }
        (self.d.to_f32_const(), -self.dmin.to_f32_const())
    }
}

impl Unpack for BlockQ3_K {
    const SUB: usize = 16;
    const MINS: bool = false;
    const MAX_ABS: i32 = 4;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        let mut m = 1u8;
        for half in 0..2 {
            for (k, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                for l in 0..32 {
                    let lo = ((self.qs[32 * half + l] >> shift) & 3) as i8;
                    let sub = if self.hmask[l] & m != 0 { 0 } else { 4 };
                    q[128 * half + 32 * k + l] = lo - sub;
                }
                m <<= 1;
            }
        }
        for (s, v) in self.unpack_scales().into_iter().enumerate() {
            sc[s] = v as i16;
        }
        (self.d.to_f32_const(), 0.0)
    }
}

impl Unpack for BlockQ4_K {
    const SUB: usize = 32;
    const MINS: bool = true;
    const MAX_ABS: i32 = 15;
    const NONNEG: bool = true;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], mins: &mut [i16]) -> (f32, f32) {
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                q[64 * c + l] = (b & 0x0F) as i8;
                q[64 * c + 32 + l] = (b >> 4) as i8;
            }
        }
        for s in 0..8 {
            let (v, m) = scale_min_k4(s, &self.scales);
            (sc[s], mins[s]) = (v as i16, m as i16);
        }
        (self.d.to_f32_const(), -self.dmin.to_f32_const())
    }
}

impl Unpack for BlockQ5_K {
    const SUB: usize = 32;
    const MINS: bool = true;
    const MAX_ABS: i32 = 31;
    const NONNEG: bool = true;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], mins: &mut [i16]) -> (f32, f32) {
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                let h1 = ((self.qh[l] >> (2 * c)) & 1) << 4;
                let h2 = ((self.qh[l] >> (2 * c + 1)) & 1) << 4;
                q[64 * c + l] = ((b & 0x0F) | h1) as i8;
                q[64 * c + 32 + l] = ((b >> 4) | h2) as i8;
            }
        }
        for s in 0..8 {
            let (v, m) = scale_min_k4(s, &self.scales);
            (sc[s], mins[s]) = (v as i16, m as i16);
        }
        (self.d.to_f32_const(), -self.dmin.to_f32_const())
    }
}

impl Unpack for BlockQ6_K {
    const SUB: usize = 16;
    const MINS: bool = false;
    const MAX_ABS: i32 = 32;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for half in 0..2 {
            let ql = &self.ql[64 * half..64 * half + 64];
            let qh = &self.qh[32 * half..32 * half + 32];
            let y = &mut q[128 * half..128 * half + 128];
            for l in 0..32 {
                y[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                y[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        for s in 0..16 {
            sc[s] = self.scales[s] as i16;
        }
        (self.d.to_f32_const(), 0.0)
    }
}

/// Q8_K's values are `d · q` with an f32 `d`; its `bsums` only serve the dot products.
impl Unpack for BlockQ8_K {
    const SUB: usize = QK_K;
    const MINS: bool = false;
    const MAX_ABS: i32 = 128;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        q[..QK_K].copy_from_slice(&self.qs);
        sc[0] = 1;
        (self.d, 0.0)
    }
}

impl Unpack for BlockIQ4_XS {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 127;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for ib in 0..8 {
            let qs = self.qs[16 * ib..16 * ib + 16].try_into().unwrap();
            nibbles32(qs, &mut q[32 * ib..], |v| KVALUES_IQ4NL[v as usize]);
            sc[ib] = self.scale(ib) as i16;
        }
        (self.d.to_f32_const(), 0.0)
    }
}

// The IQ1–IQ3 types. Each scale ggml writes as `d · (0.5 + ls) · 2^-k` (or
// `d · (2·ls + 1)`) is unpacked as `(d · 2^-(k+1)) · (2·ls + 1)`: the f16 `d` times a power
// of two is exact in f32, and `d · (2·ls + 1)` (an 11-bit mantissa times a ≤ 5-bit odd
// integer) is exact too, so `d_eff · sc` equals ggml's scale to the bit and
// [`dequantize_block`]'s `(d_eff · sc) · q` is ggml's `scale · grid · sign`. IQ1's
// `dl · (grid ± 1/8)` becomes `(dl / 8) · (8·grid ± 1)`: scaling by 1/8 commutes exactly
// with the one rounding of the product.

/// `q[..8]` = the 8 grid magnitudes (bytes of `grid`, little-endian), negated where the
/// sign byte has a bit set. Eight bytes at once (SWAR): the sign bits spread to 0xFF bytes
/// `m`, then `(g ^ m) + (m & 1)` negates those bytes; no carry crosses a byte because
/// every grid magnitude is at least 1 (so `g ^ 0xFF ≤ 0xFE`).
#[inline(always)]
fn signed8(q: &mut [i8], grid: u64, signs: u8) {
    // Bit j of `signs` to the top bit of byte j, then to a whole 0xFF byte.
    let spread = (signs as u64).wrapping_mul(0x0101_0101_0101_0101) & 0x8040_2010_0804_0201;
    let top =
        (spread + 0x7F7F_7F7F_7F7F_7F7F) & 0x8080_8080_8080_8080 | spread & 0x8080_8080_8080_8080;
    let m = (top >> 7).wrapping_mul(0xFF);
    let v = (grid ^ m).wrapping_add(m & 0x0101_0101_0101_0101);
    for (o, b) in q[..8].iter_mut().zip(v.to_le_bytes()) {
        *o = b as i8;
    }
}

/// Two 4-magnitude grid points as one 8-byte group.
#[inline(always)]
fn grid2(a: &[u8; 4], b: &[u8; 4]) -> u64 {
    u32::from_le_bytes(*a) as u64 | (u32::from_le_bytes(*b) as u64) << 32
}

impl Unpack for BlockIQ2_XXS {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 43;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for ib in 0..8 {
            let q0 = self.qs[4 * ib] as u32 | (self.qs[4 * ib + 1] as u32) << 16;
            let q1 = self.qs[4 * ib + 2] as u32 | (self.qs[4 * ib + 3] as u32) << 16;
            for l in 0..4 {
                let grid = u64::from_le_bytes(IQ2XXS_GRID[(q0 >> (8 * l) & 0xFF) as usize]);
                let signs = KSIGNS_IQ2XS[(q1 >> (7 * l) & 0x7F) as usize];
                signed8(&mut q[32 * ib + 8 * l..], grid, signs);
            }
            sc[ib] = (2 * (q1 >> 28) + 1) as i16;
        }
        (self.d.to_f32_const() * 0.125, 0.0)
    }
}

impl Unpack for BlockIQ2_XS {
    const SUB: usize = 16;
    const MINS: bool = false;
    const MAX_ABS: i32 = 43;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for (g, &v) in self.qs.iter().enumerate() {
            let grid = u64::from_le_bytes(IQ2XS_GRID[(v & 511) as usize]);
            signed8(&mut q[8 * g..], grid, KSIGNS_IQ2XS[(v >> 9) as usize]);
        }
        for (i, &b) in self.scales.iter().enumerate() {
            sc[2 * i] = (2 * (b & 0xF) + 1) as i16;
            sc[2 * i + 1] = (2 * (b >> 4) + 1) as i16;
        }
        (self.d.to_f32_const() * 0.125, 0.0)
    }
}

impl Unpack for BlockIQ2_S {
    const SUB: usize = 16;
    const MINS: bool = false;
    const MAX_ABS: i32 = 43;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for g in 0..QK_K / 8 {
            let hi = (self.qh[g / 4] >> (2 * (g % 4)) & 3) as usize;
            let grid = u64::from_le_bytes(IQ2S_GRID[self.qs[g] as usize | hi << 8]);
            signed8(&mut q[8 * g..], grid, self.signs[g]);
        }
        for (i, &b) in self.scales.iter().enumerate() {
            sc[2 * i] = (2 * (b & 0xF) + 1) as i16;
            sc[2 * i + 1] = (2 * (b >> 4) + 1) as i16;
        }
        (self.d.to_f32_const() * 0.125, 0.0)
    }
}

impl Unpack for BlockIQ3_XXS {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 62;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        let (grids, aux) = self.qs.split_at(QK_K / 4);
        for ib in 0..8 {
            let a = u32::from_le_bytes(aux[4 * ib..4 * ib + 4].try_into().unwrap());
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[(a >> (7 * l) & 0x7F) as usize];
                let grid = grid2(
                    &IQ3XXS_GRID[grids[8 * ib + 2 * l] as usize],
                    &IQ3XXS_GRID[grids[8 * ib + 2 * l + 1] as usize],
                );
                signed8(&mut q[32 * ib + 8 * l..], grid, signs);
            }
            sc[ib] = (2 * (a >> 28) + 1) as i16;
        }
        (self.d.to_f32_const() * 0.25, 0.0)
    }
}

impl Unpack for BlockIQ3_S {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 15;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for g in 0..QK_K / 8 {
            // Two grid points (4 magnitudes each) per 8 weights; index k's 9th bit is bit
            // k % 8 of qh[k / 8].
            let idx =
                |k: usize| self.qs[k] as usize | ((self.qh[k / 8] >> (k % 8) & 1) as usize) << 8;
            let grid = grid2(&IQ3S_GRID[idx(2 * g)], &IQ3S_GRID[idx(2 * g + 1)]);
            signed8(&mut q[8 * g..], grid, self.signs[g]);
        }
        for ib in 0..8 {
            sc[ib] = (2 * (self.scales[ib / 2] >> (4 * (ib % 2)) & 0xF) + 1) as i16;
        }
        (self.d.to_f32_const(), 0.0)
    }
}

impl Unpack for BlockIQ1_S {
    const SUB: usize = 32;
    const MINS: bool = false;
    const MAX_ABS: i32 = 9;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for ib in 0..8 {
            let h = self.qh[ib];
            let delta: i8 = if h & 0x8000 != 0 { -1 } else { 1 };
            for l in 0..4 {
                let idx = self.qs[4 * ib + l] as usize | ((h >> (3 * l) & 7) as usize) << 8;
                for (o, &g) in q[32 * ib + 8 * l..32 * ib + 8 * l + 8]
                    .iter_mut()
                    .zip(&IQ1S_GRID[idx])
                {
                    *o = 8 * g + delta;
                }
            }
            sc[ib] = (2 * (h >> 12 & 7) + 1) as i16;
        }
        (self.d.to_f32_const() * 0.125, 0.0)
    }
}

impl Unpack for BlockIQ1_M {
    const SUB: usize = 16;
    const MINS: bool = false;
    const MAX_ABS: i32 = 9;
    #[inline(always)]
    fn unpack(&self, q: &mut [i8], sc: &mut [i16], _: &mut [i16]) -> (f32, f32) {
        for g in 0..QK_K / 8 {
            let nib = self.qh[g / 2] >> (4 * (g % 2)) & 0xF;
            let idx = self.qs[g] as usize | ((nib & 7) as usize) << 8;
            let delta: i8 = if nib & 8 != 0 { -1 } else { 1 };
            for (o, &v) in q[8 * g..8 * g + 8].iter_mut().zip(&IQ1S_GRID[idx]) {
                *o = 8 * v + delta;
            }
        }
        for s in 0..QK_K / 16 {
            sc[s] = (2 * (self.scales[s / 4] >> (3 * (s % 4)) & 7) + 1) as i16;
        }
        (self.d().to_f32_const() * 0.125, 0.0)
    }
}

/// A block type whose values can be read as f32: every quantized format through
/// [`Unpack`], and the plain floats.
pub trait Dequantize: Block {
    /// Writes the block's `QK` values to `out[..QK]` (ggml's reference dequantization).
    fn dequantize(&self, out: &mut [f32]);
}

macro_rules! dequantize_by_unpack {
    ($($B:ty),*) => {$(
        impl Dequantize for $B {
            fn dequantize(&self, out: &mut [f32]) {
                dequantize_block(self, out)
            }
        }
    )*};
}
dequantize_by_unpack!(
    BlockQ4_0,
    BlockQ4_1,
    BlockQ5_0,
    BlockQ5_1,
    BlockQ8_0,
    BlockQ8_1,
    BlockIQ4_NL,
    BlockQ2_K,
    BlockQ3_K,
    BlockQ4_K,
    BlockQ5_K,
    BlockQ6_K,
    BlockQ8_K,
    BlockIQ4_XS,
    BlockIQ2_XXS,
    BlockIQ2_XS,
    BlockIQ2_S,
    BlockIQ3_XXS,
    BlockIQ3_S,
    BlockIQ1_S,
    BlockIQ1_M
);

impl Dequantize for f32 {
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = *self;
    }
}

impl Dequantize for f16 {
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = self.to_f32();
    }
}

impl Dequantize for bf16 {
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = self.to_f32();
    }
}

/// Dequantizes a row of blocks into `out` (`out.len() == blocks.len() * B::QK`).
pub fn dequantize_row<B: Dequantize>(blocks: &[B], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * B::QK,
        "dequantize_row: wrong output length"
    );
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(B::QK)) {
        b.dequantize(o);
    }
}
