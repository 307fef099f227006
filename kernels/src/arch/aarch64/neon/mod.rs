//! NEON + `dotprod` kernels (ARMv8.2-A and later: Apple M1 onwards, Snapdragon X,
//! Graviton 2 onwards, Cortex-A76 onwards), by role: [`dot`] one weight row · one
//! activation row, [`gemv`] several weight rows · one activation row (Q4_0, Q8_0, Q4_K,
//! Q6_K), [`gemm`] the tile micro-kernel for batches (every integer type), [`ops`]
//! attention's `axpy` and SwiGLU. Types and kinds not here use the scalar reference
//! ([`crate::select`]). Each kernel is checked against the scalar reference by
//! `kernels/tests/`, run under `qemu-aarch64 -cpu max` on x86 machines
//! (`tools/test-aarch64.sh`).
//!
//! Integer dot products use `sdot` (signed × signed int8, four products summed into each
//! int32 lane, plus the accumulator): one instruction for 16 products, where AVX2 needs
//! `maddubs` + `madd` + `add` for 32 and a sign trick. Rust's `sdot` and f16 conversion
//! intrinsics are still unstable, so those two are written as inline assembly here, each
//! a single instruction on registers.
//!
//! Instructions per 32-element block of the main decode types, loads included: Q8_0 ×
//! Q8_0 takes 4 loads, 2 `sdot`, a convert and an `fmla` (AVX2: 2 loads, 5 integer and 2
//! float operations); Q4_0 × Q8_0 takes 3 loads, 5 integer operations (nibbles and −8),
//! 2 `sdot` and 2 float ones. Speed cannot be measured on this project's machines (x86
//! only); `phiq bench` reports it on real hardware.

use std::arch::aarch64::*;
use std::arch::asm;

use half::f16;

pub(crate) mod dot;
pub(crate) mod gemm;
pub(crate) mod gemv;
pub(crate) mod ops;

/// `acc + Σ_{i<4} a[4l+i]·b[4l+i]` in each int32 lane `l` (`sdot`).
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: one `sdot` on three vector registers (no memory, no flags); this function
    // only runs where `dotprod` exists (its target feature).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `acc + Σ_{i<4} a[4l+i]·b[4L+i]` in each int32 lane `l`: the dword `L` of `b` against
/// every dword of `a` (`sdot` by element).
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn sdot_lane<const L: i32>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: as in `sdot`; L is 0..4, the instruction's index range (checked by the
    // assembler).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.4b[{l}]",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            l = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Four f16 (as bits) → four f32 (`fcvtl`; exact, subnormals, infinities and NaNs included).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16x4(bits: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: one `fcvtl` (base ARMv8 floating point) on vector registers.
    unsafe {
        asm!(
            "fcvtl {o:v}.4s, {i:v}.4h",
            i = in(vreg) bits,
            o = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// One f16 → f32 (`fcvt`), without `half`'s software path.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn fp16(x: f16) -> f32 {
    vgetq_lane_f32::<0>(f16x4(vdup_n_u16(x.to_bits())))
}

/// 16 bytes at `p` as signed bytes.
///
/// # Safety
/// `p` must be valid for reads of 16 bytes.
#[inline(always)]
pub(crate) unsafe fn load_i8(p: *const i8) -> int8x16_t {
    vld1q_s8(p)
}

/// 16 bytes at `p`.
///
/// # Safety
/// `p` must be valid for reads of 16 bytes.
#[inline(always)]
pub(crate) unsafe fn load_u8(p: *const u8) -> uint8x16_t {
    vld1q_u8(p)
}

/// The signed sum of bytes (the panels' corrections; unused by the signed NEON tile
/// but kept exact).
#[inline]
pub(crate) fn sum_i8(v: &[i8]) -> i32 {
    v.iter().map(|&x| x as i32).sum()
}
