//! The dot-product contract: which activation format each weight format pairs with
//! (ggml's pairing: Q4_0/Q5_0/Q8_0/IQ4_NL × Q8_0; Q4_1/Q5_1 × Q8_1; K-quants and IQ4_XS ×
//! Q8_K; F16 and F32 × F32; BF16 × BF16), and the signature of a one-row dot kernel.
//! The scalar references are in [`crate::reference::dot`]; the SIMD kernels in
//! `crate::arch` implement [`DotFn`] and are tested against them.

use half::{bf16, f16};

use crate::format::blocks::*;
use crate::format::unpack::Dequantize;
use crate::quant::Quantize;
use crate::reference;

/// One weight row · one activation row.
pub type DotFn<W> = fn(&[W], &[<W as VecDot>::Act]) -> f32;

/// A weight block type and the activation format its dot product pairs it with.
pub trait VecDot: Dequantize {
    /// The activation block: the f32 activations are quantized to this once per matmul.
    type Act: Quantize + Dequantize;
    /// The scalar reference kernel.
    fn dot_ref(w: &[Self], a: &[Self::Act]) -> f32;
}

impl VecDot for f32 {
    type Act = f32;
    fn dot_ref(w: &[f32], a: &[f32]) -> f32 {
        reference::dot::dot_f32(w, a)
    }
}

impl VecDot for f16 {
    type Act = f32;
    fn dot_ref(w: &[f16], a: &[f32]) -> f32 {
        reference::dot::dot_f16(w, a)
    }
}

impl VecDot for bf16 {
    type Act = bf16;
    fn dot_ref(w: &[bf16], a: &[bf16]) -> f32 {
        reference::dot::dot_bf16(w, a)
    }
}

/// The quantized pairings: weight block => activation block.
macro_rules! pairings {
    ($($W:ty => $A:ty),* $(,)?) => {$(
        impl VecDot for $W {
            type Act = $A;
            fn dot_ref(w: &[$W], a: &[$A]) -> f32 {
                reference::dot::dot_quant(w, a)
            }
        }
    )*};
}

pairings! {
    BlockQ4_0 => BlockQ8_0,
    BlockQ4_1 => BlockQ8_1,
    BlockQ5_0 => BlockQ8_0,
    BlockQ5_1 => BlockQ8_1,
    BlockQ8_0 => BlockQ8_0,
    BlockIQ4_NL => BlockQ8_0,
    BlockQ2_K => BlockQ8_K,
    BlockQ3_K => BlockQ8_K,
    BlockQ4_K => BlockQ8_K,
    BlockQ5_K => BlockQ8_K,
    BlockQ6_K => BlockQ8_K,
    BlockIQ4_XS => BlockQ8_K,
    BlockIQ2_XXS => BlockQ8_K,
    BlockIQ2_XS => BlockQ8_K,
    BlockIQ2_S => BlockQ8_K,
    BlockIQ3_XXS => BlockQ8_K,
    BlockIQ3_S => BlockQ8_K,
    BlockIQ1_S => BlockQ8_K,
    BlockIQ1_M => BlockQ8_K,
}
