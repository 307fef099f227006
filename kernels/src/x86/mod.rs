//! x86-64 SIMD kernels and their selection.
//!
//! `select_*` return the fastest kernel an [`Isa`] allows, as a safe `fn` pointer. The
//! pointers wrap `#[target_feature]` functions; that is sound because an `Isa` can only
//! be made after the CPU was checked for its features (see [`crate::dispatch`]), so a
//! wrapper is only ever handed out when its instructions exist.

use half::{bf16, f16};

use crate::blocks::*;
use crate::dispatch::{Isa, Level};
use crate::dot::DotFn;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Declares `select_$name(isa) -> Option<DotFn<$W>>` from a list of
/// (minimum level, kernel module) pairs, best first.
macro_rules! selector {
    ($select:ident, $W:ty, $kernel:ident, [$($level:ident => $module:ident),*]) => {
        pub fn $select(isa: Isa) -> Option<DotFn<$W>> {
            #[cfg(target_arch = "x86_64")]
            {
                $(
                    if isa.level() >= Level::$level {
                        fn wrapper(w: &[$W], a: &[<$W as crate::dot::VecDot>::Act]) -> f32 {
                            // SAFETY: only returned for an `Isa` at or above this level,
                            // which exists only on CPUs with these features (see module doc).
                            unsafe { $module::$kernel(w, a) }
                        }
                        return Some(wrapper);
                    }
                )*
            }
            let _ = isa;
            None
        }
    };
}

selector!(select_f32, f32, dot_f32, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_f16, f16, dot_f16, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_q4_0, BlockQ4_0, dot_q4_0, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_q8_0, BlockQ8_0, dot_q8_0, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_q4_k, BlockQ4_K, dot_q4_k, [Avx2 => avx2]);
selector!(select_q4_1, BlockQ4_1, dot_q4_1, [Avx2 => avx2]);
selector!(select_q5_0, BlockQ5_0, dot_q5_0, [Avx2 => avx2]);
selector!(select_q5_1, BlockQ5_1, dot_q5_1, [Avx2 => avx2]);
selector!(select_iq4_nl, BlockIQ4_NL, dot_iq4_nl, [Avx2 => avx2]);
selector!(select_iq4_xs, BlockIQ4_XS, dot_iq4_xs, [Avx2 => avx2]);
selector!(select_q2_k, BlockQ2_K, dot_q2_k, [Avx2 => avx2]);
selector!(select_q3_k, BlockQ3_K, dot_q3_k, [Avx2 => avx2]);
selector!(select_q5_k, BlockQ5_K, dot_q5_k, [Avx2 => avx2]);
selector!(select_q6_k, BlockQ6_K, dot_q6_k, [Avx2 => avx2]);

/// BF16 × BF16: `vdpbf16ps` when the CPU has AVX512-BF16, else AVX2 widening.
pub fn select_bf16(isa: Isa) -> Option<DotFn<bf16>> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx512 && isa.has_avx512_bf16() {
            fn wrapper(w: &[bf16], a: &[bf16]) -> f32 {
                // SAFETY: `has_avx512_bf16` is true only when the CPU reported avx512bf16
                // (and the level check guarantees avx512f/vl).
                unsafe { avx512::dot_bf16(w, a) }
            }
            return Some(wrapper);
        }
        if isa.level() >= Level::Avx2 {
            fn wrapper(w: &[bf16], a: &[bf16]) -> f32 {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { avx2::dot_bf16(w, a) }
            }
            return Some(wrapper);
        }
    }
    let _ = isa;
    None
}

/// `acc += p · v` over an f16 row (attention's V accumulation).
pub type AxpyF16 = fn(&mut [f32], f32, &[f16]);

pub fn select_axpy_f16(isa: Isa) -> Option<AxpyF16> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx2 {
            fn wrapper(acc: &mut [f32], p: f32, v: &[f16]) {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { avx2::axpy_f16(acc, p, v) }
            }
            return Some(wrapper);
        }
    }
    let _ = isa;
    None
}
