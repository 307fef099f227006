//! One `#[repr(C)]` struct per ggml block, with ggml's field names, a compile-time size
//! check and the maths in a header comment; what the bits mean, as integers and scales,
//! is in [`super::unpack`] (which also dequantizes).
//!
//! Element order inside a block is ggml's. `QK_K` = 256 (super-blocks of the K-quants).
//! All `f16` fields are IEEE half floats, little-endian, as in the file.

use half::{bf16, f16};

use super::types::GgmlType;

pub const QK4_0: usize = 32;
pub const QK8_0: usize = 32;
pub const QK_K: usize = 256;

/// IQ4_NL's 16 non-linear levels (ggml `kvalues_iq4nl`), shared by IQ4_XS.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// A ggml block type.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, have no padding and be valid for every bit
/// pattern, so a block can be viewed in place from file bytes (see [`view_blocks`]).
pub unsafe trait Block: Copy + Send + Sync + 'static {
    const TYPE: GgmlType;
    /// Elements per block.
    const QK: usize;
}

/// Views `bytes` as blocks of `B` without copying, or `None` if the length is not a
/// whole number of blocks or the start is not aligned for `B`.
pub fn view_blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size)
        || bytes.as_ptr().align_offset(std::mem::align_of::<B>()) != 0
    {
        return None;
    }
    // SAFETY: the pointer is aligned for B (checked), the length is a whole number of
    // blocks (checked), and `Block` guarantees B has no padding and every bit pattern
    // is a valid B. The result borrows `bytes`, so it cannot outlive them.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// Mutable twin of [`view_blocks`].
pub fn view_blocks_mut<B: Block>(bytes: &mut [u8]) -> Option<&mut [B]> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size)
        || bytes.as_ptr().align_offset(std::mem::align_of::<B>()) != 0
    {
        return None;
    }
    // SAFETY: as in `view_blocks` (aligned, whole blocks, any bit pattern valid); the
    // exclusive borrow of `bytes` moves to the result, so there is no aliasing, and
    // any value written through it is a valid byte pattern.
    Some(unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size)
    })
}

/// Views blocks as their bytes (for writing files).
pub fn block_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: `Block` types have no padding, so every byte is initialised; u8 has
    // alignment 1; the length is the exact byte size of the slice.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}

/// Copies `bytes` (any alignment, a whole number of blocks) into a new `Vec<B>`.
pub fn blocks_from_bytes<B: Block>(bytes: &[u8]) -> Vec<B> {
    let size = std::mem::size_of::<B>();
    assert_eq!(
        bytes.len() % size,
        0,
        "not a whole number of {} blocks",
        B::TYPE
    );
    let n = bytes.len() / size;
    let mut v: Vec<B> = Vec::with_capacity(n);
    // SAFETY: the capacity holds n blocks = bytes.len() bytes; the regions cannot
    // overlap (fresh allocation); `Block` types are valid for any bit pattern, so the
    // n elements are initialised once copied.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len());
        v.set_len(n);
    }
    v
}

/// `n` all-zero blocks (scratch for quantized activations).
pub fn zeroed_blocks<B: Block>(n: usize) -> Vec<B> {
    blocks_from_bytes(&vec![0u8; n * std::mem::size_of::<B>()])
}

macro_rules! check_size {
    ($t:ty, $ty:expr) => {
        const _: () = assert!(std::mem::size_of::<$t>() as u64 == $ty.type_size());
    };
}

// ---------------------------------------------------------------------------------
// Plain floats: one element per "block".
// ---------------------------------------------------------------------------------

// SAFETY: f32 has no padding and every bit pattern is a valid f32.
unsafe impl Block for f32 {
    const TYPE: GgmlType = GgmlType::F32;
    const QK: usize = 1;
}

// SAFETY: f16 is a transparent u16.
unsafe impl Block for f16 {
    const TYPE: GgmlType = GgmlType::F16;
    const QK: usize = 1;
}

// SAFETY: bf16 is a transparent u16.
unsafe impl Block for bf16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const QK: usize = 1;
}

// ---------------------------------------------------------------------------------
// Legacy quants: 32 elements per block.
// ---------------------------------------------------------------------------------

/// Q4_0 — 4.5 bits per weight. `y = (q - 8) * d`, q in 0..16.
/// `qs[j]` holds element j in its low nibble and element j + 16 in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK4_0 / 2],
}
check_size!(BlockQ4_0, GgmlType::Q4_0);

// SAFETY: repr(C), 2 + 16 bytes with alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const QK: usize = 32;
}

/// Q4_1 — 5 bits per weight. `y = q * d + m`, q in 0..16; nibbles as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}
check_size!(BlockQ4_1, GgmlType::Q4_1);

// SAFETY: repr(C), 4 + 16 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const QK: usize = 32;
}

/// Q5_0 — 5.5 bits per weight. `y = (q - 16) * d`, q in 0..32: low 4 bits in the
/// nibbles of `qs` (as Q4_0), the 5th bit of element j in bit j of `qh` (u32 LE).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
check_size!(BlockQ5_0, GgmlType::Q5_0);

// SAFETY: repr(C), 2 + 4 + 16 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const QK: usize = 32;
}

/// Q5_1 — 6 bits per weight. `y = q * d + m`, q in 0..32, bits as in Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
check_size!(BlockQ5_1, GgmlType::Q5_1);

// SAFETY: repr(C), 4 + 4 + 16 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const QK: usize = 32;
}

/// Q8_0 — 8.5 bits per weight. `y = q * d`, q in -128..128, element j in `qs[j]`.
/// Also the activation format paired with Q4_0, Q5_0, Q8_0 and IQ4_NL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK8_0],
}
check_size!(BlockQ8_0, GgmlType::Q8_0);

// SAFETY: repr(C), 2 + 32 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const QK: usize = 32;
}

/// Q8_1 — 9 bits per weight, activation format for Q4_1/Q5_1. `y = q * d`;
/// `s = d * sum(q)` lets the dot product add the weights' offset `m` cheaply.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; 32],
}
check_size!(BlockQ8_1, GgmlType::Q8_1);

// SAFETY: repr(C), 4 + 32 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    const QK: usize = 32;
}

/// IQ4_NL — 4.5 bits per weight. `y = d * KVALUES_IQ4NL[q]`, nibbles as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ4_NL {
    pub d: f16,
    pub qs: [u8; 16],
}
check_size!(BlockIQ4_NL, GgmlType::IQ4_NL);

// SAFETY: repr(C), 2 + 16 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockIQ4_NL {
    const TYPE: GgmlType = GgmlType::IQ4_NL;
    const QK: usize = 32;
}

// ---------------------------------------------------------------------------------
// K-quants: super-blocks of 256 elements with quantized sub-block scales.
// ---------------------------------------------------------------------------------

/// Q2_K — 2.625 bits per weight. 16 sub-blocks of 16; `scales[i]` = 4-bit scale (low
/// nibble) and 4-bit min (high nibble); `y = d * sc * q - dmin * m`, q in 0..4.
/// `qs`: two halves of 32 bytes; in each, bits 2k..2k+2 of byte l are element
/// 32k + l of that half (128 elements).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ2_K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}
check_size!(BlockQ2_K, GgmlType::Q2_K);

// SAFETY: repr(C), 16 + 64 + 4 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ2_K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const QK: usize = QK_K;
}

/// Q3_K — 3.4375 bits per weight. 16 sub-blocks of 16 with 6-bit signed scales
/// (packed in 12 bytes, offset 32); `y = d * (sc - 32) * (q - 4·!hbit)`, where q is
/// 2 bits from `qs` (laid out as Q2_K) and the high bit from `hmask` (bit k of byte l
/// for element 32k + l); a *clear* high bit subtracts 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ3_K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}
check_size!(BlockQ3_K, GgmlType::Q3_K);

impl BlockQ3_K {
    /// The 16 scales, each a 6-bit value minus 32. Scale i has its low 4 bits in
    /// byte i (i < 8, low nibble) or byte i - 8 (high nibble), and its top 2 bits in
    /// byte 8 + i % 4 at bit position 2 * (i / 4).
    pub fn unpack_scales(&self) -> [i8; 16] {
        let mut out = [0i8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let low = if i < 8 {
                self.scales[i] & 0x0F
            } else {
                self.scales[i - 8] >> 4
            };
            let high = (self.scales[8 + i % 4] >> (2 * (i / 4))) & 3;
            *o = (low | (high << 4)) as i8 - 32;
        }
        out
    }
}

// SAFETY: repr(C), 32 + 64 + 12 + 2 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockQ3_K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    const QK: usize = QK_K;
}

/// The 6-bit scale and min of sub-block `j` (0..8) of Q4_K/Q5_K, packed in 12 bytes
/// (ggml `get_scale_min_k4`): j < 4 in the low 6 bits of bytes j and j + 4; j ≥ 4 in
/// the nibbles of byte j + 4 plus the top 2 bits of bytes j - 4 and j.
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K — 4.5 bits per weight. 8 sub-blocks of 32 with 6-bit scales and mins;
/// `y = d * sc * q - dmin * m`, q in 0..16. `qs` in 4 chunks of 32 bytes: chunk c
/// holds sub-block 2c in low nibbles and 2c + 1 in high nibbles.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
check_size!(BlockQ4_K, GgmlType::Q4_K);

// SAFETY: repr(C), 4 + 12 + 128 bytes, alignment 2: no padding; any bits are valid.
unsafe impl Block for BlockQ4_K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const QK: usize = QK_K;
}

/// Q5_K — 5.5 bits per weight. As Q4_K with a 5th bit: element 32s + l (sub-block s)
/// takes bit s of `qh[l]` as its bit 4. q in 0..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
check_size!(BlockQ5_K, GgmlType::Q5_K);

// SAFETY: repr(C), 4 + 12 + 32 + 128 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockQ5_K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const QK: usize = QK_K;
}

/// Q6_K — 6.5625 bits per weight. 16 sub-blocks of 16 with 8-bit signed scales;
/// `y = d * sc * (q - 32)`, q in 0..64: low 4 bits in `ql`, high 2 bits in `qh`.
/// Per half of 128 elements (64 `ql` bytes, 32 `qh` bytes), element 32k + l takes
/// the low/high nibble of `ql[l + 32 (k&1)]` (k < 2: low) and bits 2k..2k+2 of `qh[l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6_K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
check_size!(BlockQ6_K, GgmlType::Q6_K);

// SAFETY: repr(C), 128 + 64 + 16 + 2 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockQ6_K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const QK: usize = QK_K;
}

/// Q8_K — activation format for the K-quants and IQ4_XS: `y = d * q` with an f32
/// scale, and `bsums[i]` = sum of `qs[16i..16i + 16]` for the K-quants' min terms.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}
check_size!(BlockQ8_K, GgmlType::Q8_K);

// SAFETY: repr(C), 4 + 256 + 32 bytes, alignment 4: no padding; any bits are valid.
unsafe impl Block for BlockQ8_K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    const QK: usize = QK_K;
}

/// IQ4_XS — 4.25 bits per weight. 8 sub-blocks of 32 with 6-bit scales (low 4 bits
/// in `scales_l` nibbles, high 2 bits in `scales_h`), offset 32;
/// `y = d * (ls - 32) * KVALUES_IQ4NL[q]`; each sub-block's 16 `qs` bytes hold
/// elements l (low nibble) and l + 16 (high nibble).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ4_XS {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}
check_size!(BlockIQ4_XS, GgmlType::IQ4_XS);

impl BlockIQ4_XS {
    /// Scale of sub-block `ib` (0..8), minus 32.
    pub fn scale(&self, ib: usize) -> i32 {
        let lo = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let hi = ((self.scales_h >> (2 * ib)) & 3) as u8;
        (lo | (hi << 4)) as i32 - 32
    }
}

// SAFETY: repr(C), 2 + 2 + 4 + 128 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ4_XS {
    const TYPE: GgmlType = GgmlType::IQ4_XS;
    const QK: usize = QK_K;
}

// ---------------------------------------------------------------------------------
// The IQ1–IQ3 types (ggml's "i-quants"): each group of 4 or 8 weights is an index into a
// grid of points (kernels/src/format/iq_grids.rs) plus sign bits; one f16 scale per block
// and a small integer scale per 16 or 32 weights.
// ---------------------------------------------------------------------------------

/// IQ2_XXS — 2.0625 bits per weight. 8 sub-blocks of 32, each two u32 (as 4 `qs` u16):
/// the first holds 4 grid indices (bytes, into [`crate::format::iq_grids::IQ2XXS_GRID`], 8
/// magnitudes each), the second 4 × 7-bit sign indices (into `KSIGNS_IQ2XS`) and a 4-bit
/// scale `ls` in its top bits: `y = d · (0.5 + ls) · 0.25 · grid · sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ2_XXS {
    pub d: f16,
    pub qs: [u16; QK_K / 8],
}
check_size!(BlockIQ2_XXS, GgmlType::IQ2_XXS);
// SAFETY: repr(C), 2 + 64 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ2_XXS {
    const TYPE: GgmlType = GgmlType::IQ2_XXS;
    const QK: usize = QK_K;
}

/// IQ2_XS — 2.3125 bits per weight. 32 `qs` u16 of 8 weights each: a 9-bit index into
/// `IQ2XS_GRID` and a 7-bit sign index; a 4-bit scale per 16 weights (`scales` nibbles):
/// `y = d · (0.5 + ls) · 0.25 · grid · sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ2_XS {
    pub d: f16,
    pub qs: [u16; QK_K / 8],
    pub scales: [u8; QK_K / 32],
}
check_size!(BlockIQ2_XS, GgmlType::IQ2_XS);
// SAFETY: repr(C), 2 + 64 + 8 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ2_XS {
    const TYPE: GgmlType = GgmlType::IQ2_XS;
    const QK: usize = QK_K;
}

/// IQ2_S — 2.5 bits per weight. 32 groups of 8: a 10-bit index into `IQ2S_GRID` (low 8
/// bits in `qs`, 2 high bits per group in `qh`), 8 explicit sign bits per group in
/// `signs`; a 4-bit scale per 16 weights: `y = d · (0.5 + ls) · 0.25 · grid · sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ2_S {
    pub d: f16,
    pub qs: [u8; QK_K / 8],
    pub signs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 32],
    pub scales: [u8; QK_K / 32],
}
check_size!(BlockIQ2_S, GgmlType::IQ2_S);
// SAFETY: repr(C), 2 + 32 + 32 + 8 + 8 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ2_S {
    const TYPE: GgmlType = GgmlType::IQ2_S;
    const QK: usize = QK_K;
}

/// IQ3_XXS — 3.0625 bits per weight. 64 `qs` bytes index `IQ3XXS_GRID` (4 magnitudes
/// each); then per sub-block of 32 one u32: 4 × 7-bit sign indices and a 4-bit scale in the
/// top bits: `y = d · (0.5 + ls) · 0.5 · grid · sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ3_XXS {
    pub d: f16,
    pub qs: [u8; 3 * QK_K / 8],
}
check_size!(BlockIQ3_XXS, GgmlType::IQ3_XXS);
// SAFETY: repr(C), 2 + 96 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ3_XXS {
    const TYPE: GgmlType = GgmlType::IQ3_XXS;
    const QK: usize = QK_K;
}

/// IQ3_S — 3.4375 bits per weight. 64 groups of 4: a 9-bit index into `IQ3S_GRID` (low 8
/// bits in `qs`, the 9th in `qh`), explicit sign bits in `signs`; a 4-bit scale per 32
/// weights: `y = d · (1 + 2·ls) · grid · sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ3_S {
    pub d: f16,
    pub qs: [u8; QK_K / 4],
    pub qh: [u8; QK_K / 32],
    pub signs: [u8; QK_K / 8],
    pub scales: [u8; QK_K / 64],
}
check_size!(BlockIQ3_S, GgmlType::IQ3_S);
// SAFETY: repr(C), 2 + 64 + 8 + 32 + 4 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ3_S {
    const TYPE: GgmlType = GgmlType::IQ3_S;
    const QK: usize = QK_K;
}

/// IQ1_S — 1.5625 bits per weight. 32 groups of 8: an 11-bit index into `IQ1S_GRID`
/// (values −1, 0, 1; low 8 bits in `qs`, 3 high bits per group in `qh`); per sub-block of
/// 32 one `qh` u16 also holds a 3-bit scale (bits 12–14) and the sign of a shift δ = ±1/8
/// (bit 15): `y = d · (2·ls + 1) · (grid + δ)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ1_S {
    pub d: f16,
    pub qs: [u8; QK_K / 8],
    pub qh: [u16; QK_K / 32],
}
check_size!(BlockIQ1_S, GgmlType::IQ1_S);
// SAFETY: repr(C), 2 + 32 + 16 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ1_S {
    const TYPE: GgmlType = GgmlType::IQ1_S;
    const QK: usize = QK_K;
}

/// IQ1_M — 1.75 bits per weight. 32 groups of 8: an 11-bit `IQ1S_GRID` index (low 8 bits
/// in `qs`, 3 high bits in a `qh` nibble whose 4th bit is the sign of δ = ±1/8 for that
/// group); a 3-bit scale per 16 weights in `scales` (4 u16 of 4 × 3 bits); the block's f16
/// scale `d` is spread over the top nibbles of those 4 u16: `y = d · (2·ls + 1) · (grid + δ)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockIQ1_M {
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
    pub scales: [u16; QK_K / 64],
}
check_size!(BlockIQ1_M, GgmlType::IQ1_M);
// SAFETY: repr(C), 32 + 16 + 8 bytes, alignment 2: no padding; any bits valid.
unsafe impl Block for BlockIQ1_M {
    const TYPE: GgmlType = GgmlType::IQ1_M;
    const QK: usize = QK_K;
}

impl BlockIQ1_M {
    /// The block's f16 scale, from the top nibbles of the 4 scale words.
    pub fn d(&self) -> f16 {
        let s = &self.scales;
        f16::from_bits(
            (s[0] >> 12) | ((s[1] >> 8) & 0x00F0) | ((s[2] >> 4) & 0x0F00) | (s[3] & 0xF000),
        )
    }
}
