//! The one place that chooses kernels: for each type, the fastest implementation an
//! [`Isa`] allows (ggml's `type_traits_cpu`, decided at run time), handed out as safe `fn`
//! pointers; the scalar reference where no instruction set has one. The only file with
//! `#[cfg(target_arch)]` besides CPU detection (`isa.rs`) and the folder declarations
//! (`arch/mod.rs`): adding an instruction set means a folder in `arch/` and rows here.
//!
//! The pointers wrap `#[target_feature]` functions. That is sound because an `Isa` can
//! only be made after the CPU was checked for its features (see [`crate::isa`]), so a
//! wrapper is only ever handed out when its instructions exist.

// Without x86-64 kernels most selectors only return the references.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, unused_imports))]

use half::{bf16, f16};

#[cfg(target_arch = "aarch64")]
use crate::arch::aarch64::neon;
#[cfg(target_arch = "x86_64")]
use crate::arch::x86::{avx2, avx512, avxvnni, common};
use crate::contract::attend::{AttendFn, AttendJob, AxpyFn, KvElem};
use crate::contract::dot::{DotFn, VecDot};
use crate::contract::gemm::{
    interleave_bf16, interleave_f32, GemmJob, GemmKernel, GemmWeight, PackedPanel, FLOAT_PANEL,
};
use crate::contract::gemv::{GemvKernel, PreparedGemv, GEMV_ROWS};
use crate::format::blocks::*;
use crate::isa::{Isa, Level};
use crate::quant::Quantize;
use crate::reference;

/// The kernels one weight type gets on one [`Isa`].
pub struct Kernels<W: VecDot> {
    /// One weight row · one activation row (the reference when no ISA has one).
    pub dot: DotFn<W>,
    /// [`GEMV_ROWS`] weight rows · one activation row, if the type has such a kernel here;
    /// matrix × vector uses it for every group of rows where the activation row is at least
    /// [`GemvKernel::min_act_bytes`] long, else one [`Self::dot`] per row.
    pub gemv: Option<GemvKernel<W>>,
    /// The batched kernel (many weight rows × many tokens, see [`crate::contract::gemm`]),
    /// if the type has one here; else a batch loops over the GEMV path.
    pub gemm: Option<GemmKernel<W>>,
    /// Quantizes f32 activations to the type's activation format ([`VecDot::Act`]).
    pub quantize: fn(&[f32], &mut [W::Act]),
}

/// A weight type with a row in the table below.
pub trait Select: VecDot {
    /// The one-row dot alone (attention's scores take only this, once per call).
    fn dot(isa: Isa) -> DotFn<Self>;
    fn kernels(isa: Isa) -> Kernels<Self>;
}

/// The table: per weight type, its one-row dot, multi-row (GEMV) and batched (GEMM)
/// kernel selectors, each `fn(Isa) -> Option<…>` below.
macro_rules! table {
    ($($W:ty => $dot:ident, $gemv:expr, $gemm:expr;)*) => {$(
        impl Select for $W {
            fn dot(isa: Isa) -> DotFn<Self> {
                $dot(isa).unwrap_or(<$W as VecDot>::dot_ref)
            }
            fn kernels(isa: Isa) -> Kernels<Self> {
                Kernels {
                    dot: Self::dot(isa),
                    gemv: $gemv(isa),
                    gemm: $gemm(isa),
                    quantize: quantize::<<$W as VecDot>::Act>(isa),
                }
            }
        }
    )*};
}

table! {
    f32         => dot_f32,    none,           gemm_f32;
    f16         => dot_f16,    none,           gemm_f16;
    bf16        => dot_bf16,   none,           gemm_bf16;
    BlockQ4_0   => dot_q4_0,   gemv_q4_0,      gemm_int;
    BlockQ4_1   => dot_q4_1,   none,           gemm_int;
    BlockQ5_0   => dot_q5_0,   none,           gemm_int;
    BlockQ5_1   => dot_q5_1,   none,           gemm_int;
    BlockQ8_0   => dot_q8_0,   gemv_q8_0,      gemm_int;
    BlockIQ4_NL => dot_iq4_nl, none,           gemm_int;
    BlockQ2_K   => dot_q2_k,   none,           gemm_int;
    BlockQ3_K   => dot_q3_k,   none,           gemm_int;
    BlockQ4_K   => dot_q4_k,   gemv_q4_k,      gemm_int;
    BlockQ5_K   => dot_q5_k,   gemv_q5_k,      gemm_int;
    BlockQ6_K   => dot_q6_k,   gemv_q6_k,      gemm_int;
    BlockIQ4_XS => dot_iq4_xs, gemv_iq4_xs,    gemm_int;
    // The IQ1–IQ3 types (arch/x86/avx512/gemv_iq.rs): prompts take the tile GEMM, which
    // decodes each weight block once into int8 panels.
    BlockIQ2_XXS => dot_iq2_xxs, gemv_iq2_xxs, gemm_int;
    BlockIQ2_XS => dot_iq2_xs, gemv_iq2_xs,   gemm_int;
    BlockIQ2_S  => dot_iq2_s,  gemv_iq2_s,     gemm_int;
    BlockIQ3_XXS => dot_iq3_xxs, gemv_iq3_xxs, gemm_int;
    BlockIQ3_S  => dot_iq3_s,  gemv_iq3_s,     gemm_int;
    BlockIQ1_S  => dot_iq1_s,  gemv_iq1_s,     gemm_int;
    BlockIQ1_M  => dot_iq1_m,  gemv_iq1_m,     gemm_int;
}

/// No kernel of this kind for the type.
fn none<T>(_: Isa) -> Option<T> {
    None
}

// ---------------------------------------------------------------------------------
// One-row dots.
// ---------------------------------------------------------------------------------

/// Declares `$name(isa) -> Option<DotFn<$W>>` from x86-64 (minimum level, kernel) pairs,
/// best first, and the aarch64 NEON kernel: `neon::dot::dot_unpacked` (any quantized type,
/// bit-identical to the reference) unless one is named.
macro_rules! dot {
    ($name:ident, $W:ty, [$($level:ident => $kernel:path),*]) => {
        dot!($name, $W, [$($level => $kernel),*], neon::dot::dot_unpacked::<$W>);
    };
    ($name:ident, $W:ty, [$($level:ident => $kernel:path),*], $neon:path) => {
        fn $name(isa: Isa) -> Option<DotFn<$W>> {
            #[cfg(target_arch = "x86_64")]
            {
                $(
                    if isa.level() >= Level::$level {
                        fn wrapper(w: &[$W], a: &[<$W as VecDot>::Act]) -> f32 {
                            // SAFETY: only returned for an `Isa` at or above this level,
                            // which exists only on CPUs with these features (module doc).
                            unsafe { $kernel(w, a) }
                        }
                        return Some(wrapper);
                    }
                )*
            }
            #[cfg(target_arch = "aarch64")]
            if isa.level() >= Level::Neon {
                fn wrapper(w: &[$W], a: &[<$W as VecDot>::Act]) -> f32 {
                    // SAFETY: only returned for an `Isa` at level Neon, which exists only
                    // on CPUs with NEON and dotprod (module doc).
                    unsafe { $neon(w, a) }
                }
                return Some(wrapper);
            }
            None
        }
    };
}

dot!(dot_f32, f32, [Avx512 => avx512::dot::dot_f32, Avx2 => avx2::dot::dot_f32],
    neon::dot::dot_f32);
dot!(dot_f16, f16, [Avx512 => avx512::dot::dot_f16, Avx2 => avx2::dot::dot_f16],
    neon::dot::dot_f16);
dot!(dot_q4_0, BlockQ4_0, [Avx512 => avx512::dot::dot_q4_0, Avx2 => avx2::dot::dot_q4_0],
    neon::dot::dot_q4_0);
dot!(dot_q8_0, BlockQ8_0, [Avx512 => avx512::dot::dot_q8_0, Avx2 => avx2::dot::dot_q8_0],
    neon::dot::dot_q8_0);
dot!(dot_q4_1, BlockQ4_1, [Avx512 => avx512::dot::dot_q4_1, Avx2 => avx2::dot::dot_q4_1]);
dot!(dot_q5_0, BlockQ5_0, [Avx512 => avx512::dot::dot_q5_0, Avx2 => avx2::dot::dot_q5_0]);
dot!(dot_q5_1, BlockQ5_1, [Avx512 => avx512::dot::dot_q5_1, Avx2 => avx2::dot::dot_q5_1]);
dot!(dot_iq4_nl, BlockIQ4_NL, [Avx512 => avx512::dot::dot_iq4_nl, Avx2 => avx2::dot::dot_iq4_nl]);
dot!(dot_iq4_xs, BlockIQ4_XS, [Avx512 => avx512::dot::dot_iq4_xs, Avx2 => avx2::dot::dot_iq4_xs]);
dot!(dot_q2_k, BlockQ2_K, [Avx512 => avx512::dot::dot_q2_k, Avx2 => avx2::dot::dot_q2_k]);
dot!(dot_q3_k, BlockQ3_K, [Avx512 => avx512::dot::dot_q3_k, Avx2 => avx2::dot::dot_q3_k]);
dot!(dot_q4_k, BlockQ4_K, [Avx512 => avx512::dot::dot_q4_k, Avx2 => avx2::dot::dot_q4_k],
    neon::dot::dot_q4_k);
dot!(dot_q5_k, BlockQ5_K, [Avx512 => avx512::dot::dot_q5_k, Avx2 => avx2::dot::dot_q5_k]);
dot!(dot_iq3_s, BlockIQ3_S, [Avx512 => avx512::gemv_iq::dot_iq3_s, Avx2 => avx2::gemv_iq::dot_iq3_s]);
dot!(dot_iq3_xxs, BlockIQ3_XXS, [Avx512 => avx512::gemv_iq::dot_iq3_xxs, Avx2 => avx2::gemv_iq::dot_iq3_xxs]);
dot!(dot_iq2_s, BlockIQ2_S, [Avx512 => avx512::gemv_iq::dot_iq2_s, Avx2 => avx2::gemv_iq::dot_iq2_s]);
dot!(dot_iq2_xs, BlockIQ2_XS, [Avx512 => avx512::gemv_iq::dot_iq2_xs, Avx2 => avx2::gemv_iq::dot_iq2_xs]);
dot!(dot_iq2_xxs, BlockIQ2_XXS, [Avx512 => avx512::gemv_iq::dot_iq2_xxs, Avx2 => avx2::gemv_iq::dot_iq2_xxs]);
dot!(dot_iq1_s, BlockIQ1_S, [Avx512 => avx512::gemv_iq::dot_iq1_s, Avx2 => avx2::gemv_iq::dot_iq1_s]);
dot!(dot_iq1_m, BlockIQ1_M, [Avx512 => avx512::gemv_iq::dot_iq1_m, Avx2 => avx2::gemv_iq::dot_iq1_m]);
dot!(dot_q6_k, BlockQ6_K, [Avx512 => avx512::dot::dot_q6_k, Avx2 => avx2::dot::dot_q6_k],
    neon::dot::dot_q6_k);

/// BF16 × BF16: `vdpbf16ps` when the CPU has AVX512-BF16, else AVX2 widening.
fn dot_bf16(isa: Isa) -> Option<DotFn<bf16>> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx512 && isa.has_avx512_bf16() {
            fn wrapper(w: &[bf16], a: &[bf16]) -> f32 {
                // SAFETY: `has_avx512_bf16` is true only when the CPU reported avx512bf16
                // (and the level check guarantees avx512f/vl).
                unsafe { avx512::dot::dot_bf16(w, a) }
            }
            return Some(wrapper);
        }
        if isa.level() >= Level::Avx2 {
            fn wrapper(w: &[bf16], a: &[bf16]) -> f32 {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { avx2::dot::dot_bf16(w, a) }
            }
            return Some(wrapper);
        }
    }
    None
}

// ---------------------------------------------------------------------------------
// Multi-row (GEMV) kernels.
// ---------------------------------------------------------------------------------

/// `GemvKernel::Plain` (or `$variant`) from (minimum level, kernel) pairs, best first.
macro_rules! gemv_plain {
    ($isa:expr, $W:ty, [$($level:ident => $kernel:path),*]) => {
        gemv_plain!($isa, $W, Plain, [$($level => $kernel),*])
    };
    ($isa:expr, $W:ty, $variant:ident, [$($level:ident => $kernel:path),*]) => {{
        #[cfg(target_arch = "x86_64")]
        {
            $(
                if $isa.level() >= Level::$level {
                    fn wrapper(
                        w: [&[$W]; GEMV_ROWS],
                        a: &[<$W as VecDot>::Act],
                    ) -> [f32; GEMV_ROWS] {
                        // SAFETY: only returned for an `Isa` at or above this level, which
                        // exists only on CPUs with these features (module doc).
                        unsafe { $kernel(w, a) }
                    }
                    return Some(GemvKernel::$variant(wrapper));
                }
            )*
        }
    }};
}

/// `GemvKernel::Plain` for `$W` from the aarch64 NEON kernel `$kernel`.
macro_rules! gemv_neon {
    ($isa:expr, $W:ty, $kernel:path) => {{
        #[cfg(target_arch = "aarch64")]
        if $isa.level() >= Level::Neon {
            fn wrapper(w: [&[$W]; GEMV_ROWS], a: &[<$W as VecDot>::Act]) -> [f32; GEMV_ROWS] {
                // SAFETY: only returned for an `Isa` at level Neon, which exists only on CPUs
                // with NEON and dotprod (module doc).
                unsafe { $kernel(w, a) }
            }
            return Some(GemvKernel::Plain(wrapper));
        }
    }};
}

/// `GemvKernel::Prepared` for `$W` at `$level`: `$kernel` on activations laid out by
/// `$write` (`$bytes` per row).
macro_rules! gemv_prepared {
    ($isa:expr, $W:ty, $level:ident => $kernel:path, $write:path, $bytes:path) => {{
        #[cfg(target_arch = "x86_64")]
        if $isa.level() >= Level::$level {
            fn run(
                w: [&[$W]; GEMV_ROWS],
                a: &[<$W as VecDot>::Act],
                prep: &[u8],
            ) -> [f32; GEMV_ROWS] {
                // SAFETY: only returned for an `Isa` at or above this level, which exists
                // only on CPUs with these features (module doc).
                unsafe { $kernel(w, a, prep) }
            }
            return Some(GemvKernel::Prepared(PreparedGemv {
                bytes: $bytes,
                write: $write,
                run,
            }));
        }
    }};
}

fn gemv_q4_0(isa: Isa) -> Option<GemvKernel<BlockQ4_0>> {
    gemv_neon!(isa, BlockQ4_0, neon::gemv::rows_q4_0);
    gemv_prepared!(isa, BlockQ4_0, Avx512 => avx512::gemv::rows_q4_0,
        avx512::gemv::prep_q4_0, avx512::gemv::prep_q4_0_bytes);
    gemv_prepared!(isa, BlockQ4_0, AvxVnni => avxvnni::gemv::rows_q4_0_prepared,
        avx2::gemv::prep_q4_0, avx2::gemv::prep_q4_0_bytes);
    gemv_prepared!(isa, BlockQ4_0, Avx2 => avx2::gemv::rows_q4_0_prepared,
        avx2::gemv::prep_q4_0, avx2::gemv::prep_q4_0_bytes);
    None
}

fn gemv_q8_0(isa: Isa) -> Option<GemvKernel<BlockQ8_0>> {
    gemv_neon!(isa, BlockQ8_0, neon::gemv::rows_q8_0);
    gemv_plain!(isa, BlockQ8_0, [Avx512 => avx512::gemv::rows_q8_0,
        AvxVnni => avxvnni::gemv::rows_q8_0, Avx2 => avx2::gemv::rows_q8_0]);
    None
}

fn gemv_q4_k(isa: Isa) -> Option<GemvKernel<BlockQ4_K>> {
    gemv_neon!(isa, BlockQ4_K, neon::gemv::rows_q4_k);
    gemv_prepared!(isa, BlockQ4_K, Avx512 => avx512::gemv::rows_q4_k,
        avx512::gemv::prep_k4, avx512::gemv::prep_k4_bytes);
    gemv_plain!(isa, BlockQ4_K, [Avx2 => avx2::gemv::rows_q4_k]);
    None
}

fn gemv_q5_k(isa: Isa) -> Option<GemvKernel<BlockQ5_K>> {
    gemv_prepared!(isa, BlockQ5_K, Avx512 => avx512::gemv::rows_q5_k,
        avx512::gemv::prep_k4, avx512::gemv::prep_k4_bytes);
    gemv_plain!(isa, BlockQ5_K, [Avx2 => avx2::gemv::rows_q5_k]);
    None
}

fn gemv_q6_k(isa: Isa) -> Option<GemvKernel<BlockQ6_K>> {
    gemv_neon!(isa, BlockQ6_K, neon::gemv::rows_q6_k);
    gemv_plain!(isa, BlockQ6_K, [Avx512 => avx512::gemv::rows_q6_k, Avx2 => avx2::gemv::rows_q6_k]);
    None
}

fn gemv_iq4_xs(isa: Isa) -> Option<GemvKernel<BlockIQ4_XS>> {
    gemv_prepared!(isa, BlockIQ4_XS, Avx512 => avx512::gemv::rows_iq4_xs,
        avx512::gemv::prep_iq4_xs, avx512::gemv::prep_iq4_xs_bytes);
    gemv_plain!(isa, BlockIQ4_XS, [AvxVnni => avxvnni::gemv::rows_iq4_xs, Avx2 => avx2::gemv::rows_iq4_xs]);
    None
}

fn gemv_iq3_s(isa: Isa) -> Option<GemvKernel<BlockIQ3_S>> {
    gemv_plain!(isa, BlockIQ3_S, Shared, [Avx512 => avx512::gemv_iq::rows_iq3_s]);
    None
}

fn gemv_iq3_xxs(isa: Isa) -> Option<GemvKernel<BlockIQ3_XXS>> {
    gemv_plain!(isa, BlockIQ3_XXS, Shared, [Avx512 => avx512::gemv_iq::rows_iq3_xxs]);
    None
}

fn gemv_iq2_s(isa: Isa) -> Option<GemvKernel<BlockIQ2_S>> {
    gemv_plain!(isa, BlockIQ2_S, Shared, [Avx512 => avx512::gemv_iq::rows_iq2_s]);
    None
}

fn gemv_iq2_xs(isa: Isa) -> Option<GemvKernel<BlockIQ2_XS>> {
    gemv_plain!(isa, BlockIQ2_XS, Shared, [Avx512 => avx512::gemv_iq::rows_iq2_xs]);
    None
}

fn gemv_iq2_xxs(isa: Isa) -> Option<GemvKernel<BlockIQ2_XXS>> {
    gemv_plain!(isa, BlockIQ2_XXS, Shared, [Avx512 => avx512::gemv_iq::rows_iq2_xxs]);
    None
}

fn gemv_iq1_s(isa: Isa) -> Option<GemvKernel<BlockIQ1_S>> {
    gemv_plain!(isa, BlockIQ1_S, Shared, [Avx512 => avx512::gemv_iq::rows_iq1_s]);
    None
}

fn gemv_iq1_m(isa: Isa) -> Option<GemvKernel<BlockIQ1_M>> {
    gemv_plain!(isa, BlockIQ1_M, Shared, [Avx512 => avx512::gemv_iq::rows_iq1_m]);
    None
}

// ---------------------------------------------------------------------------------
// Batched (GEMM) kernels.
// ---------------------------------------------------------------------------------

/// The integer tile kernel for quantized weight type `W`: AVX-512 VNNI, else AVX-VNNI,
/// else AVX2; NEON with `sdot` on aarch64.
fn gemm_int<W: GemmWeight>(isa: Isa) -> Option<GemmKernel<W>> {
    #[cfg(target_arch = "aarch64")]
    if isa.level() >= Level::Neon {
        fn tile<W: GemmWeight>(job: GemmJob<'_>) {
            job.check::<W>(neon::gemm::TILE_ROWS);
            // SAFETY: only returned for an `Isa` at level Neon, which exists only on CPUs
            // with NEON and dotprod (module doc); `check` passed; handed out with xor 0
            // below, so the activations are signed.
            unsafe { neon::gemm::tile::<W>(job) }
        }
        fn pack<W: GemmWeight>(p: &mut PackedPanel, rows: &[&[W]], b0: usize, n: usize, tr: usize) {
            // SAFETY: as for `tile` (safe code, compiled for NEON + dotprod).
            unsafe { neon::gemm::pack(p, rows, b0, n, tr) }
        }
        return Some(GemmKernel::new(
            neon::gemm::TILE_ROWS,
            0x00,
            tile::<W>,
            pack::<W>,
        ));
    }
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx512 {
            fn tile<W: GemmWeight>(job: GemmJob<'_>) {
                job.check::<W>(avx512::gemm::INT_TILE_ROWS);
                // SAFETY: only returned for an `Isa` at level Avx512, which exists only on
                // CPUs with these features (module doc); `check` passed.
                unsafe { avx512::gemm::tile::<W>(job) }
            }
            fn pack<W: GemmWeight>(
                p: &mut PackedPanel,
                rows: &[&[W]],
                b0: usize,
                n: usize,
                tr: usize,
            ) {
                // SAFETY: as for `tile` (safe code, compiled for AVX-512).
                unsafe { avx512::gemm::pack(p, rows, b0, n, tr) }
            }
            return Some(GemmKernel::new(
                avx512::gemm::INT_TILE_ROWS,
                0x80,
                tile::<W>,
                pack::<W>,
            ));
        }
        // The panels of the AVX-VNNI and AVX2 tiles (one layout), packed by code compiled
        // for AVX2.
        fn pack_avx2<W: GemmWeight>(
            p: &mut PackedPanel,
            rows: &[&[W]],
            b0: usize,
            n: usize,
            tr: usize,
        ) {
            // SAFETY: handed out below only for an `Isa` at level ≥ Avx2, which exists only
            // on CPUs with avx2+fma+f16c (safe code, compiled for AVX2).
            unsafe { avx2::gemm::pack(p, rows, b0, n, tr) }
        }
        if isa.level() >= Level::AvxVnni {
            fn tile<W: GemmWeight>(job: GemmJob<'_>) {
                job.check::<W>(avxvnni::gemm::TILE_ROWS);
                // SAFETY: level ≥ AvxVnni means avx2+fma+f16c+avxvnni were detected;
                // `check` passed; this kernel is handed out only with xor 0x80 below, so
                // the activations are a + 128.
                unsafe { avxvnni::gemm::tile::<W>(job) }
            }
            return Some(GemmKernel::new(
                avxvnni::gemm::TILE_ROWS,
                0x80,
                tile::<W>,
                pack_avx2::<W>,
            ));
        }
        if isa.level() >= Level::Avx2 {
            use avx2::gemm::mode;
            fn signed<W: GemmWeight>(job: GemmJob<'_>) {
                job.check::<W>(avx2::gemm::TILE_ROWS);
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected; `check` passed.
                unsafe { avx2::gemm::tile::<W, { mode::SIGNED }>(job) }
            }
            fn unsigned_acts<W: GemmWeight>(job: GemmJob<'_>) {
                job.check::<W>(avx2::gemm::TILE_ROWS);
                assert!(W::MAX_ABS <= 64);
                // SAFETY: as for `signed`; this kernel is handed out only with xor 0x80
                // below, so the activations are a + 128, and |q| ≤ 64 was checked.
                unsafe { avx2::gemm::tile::<W, { mode::UNSIGNED_ACTS }>(job) }
            }
            fn unsigned_weights<W: GemmWeight>(job: GemmJob<'_>) {
                job.check::<W>(avx2::gemm::TILE_ROWS);
                assert!(W::NONNEG);
                // SAFETY: as for `signed`; handed out only with xor 0 below (signed
                // activations), and q ≥ 0 was checked.
                unsafe { avx2::gemm::tile::<W, { mode::UNSIGNED_WEIGHTS }>(job) }
            }
            // Weights ≥ 0: no correction and twice the int16 headroom; small values:
            // unsigned activations; both without sign operations (see avx2::gemm).
            let rows = avx2::gemm::TILE_ROWS;
            return Some(if W::NONNEG {
                GemmKernel::new(rows, 0x00, unsigned_weights::<W>, pack_avx2::<W>)
            } else if !avx2::gemm::signed_mode::<W>() {
                GemmKernel::new(rows, 0x80, unsigned_acts::<W>, pack_avx2::<W>)
            } else {
                GemmKernel::new(rows, 0x00, signed::<W>, pack_avx2::<W>)
            });
        }
    }
    None
}

/// Declares `$name(isa)`: the float tile kernel (see [`crate::contract::gemm`]) for weight
/// type `$W` at level Avx512 when `$extra(isa)` holds, else None (one dot per output).
macro_rules! gemm_float {
    ($name:ident, $W:ty, $tile:ident, $pack:ident, $interleave:ident,
     ($per_word:expr, $elem_bytes:expr), $extra:path) => {
        fn $name(isa: Isa) -> Option<GemmKernel<$W>> {
            #[cfg(target_arch = "x86_64")]
            if isa.level() >= Level::Avx512 && $extra(isa) {
                fn tile(job: GemmJob<'_>) {
                    job.check_float(avx512::gemm::TILE_ROWS, $per_word, $elem_bytes);
                    // SAFETY: only returned for an `Isa` at level Avx512 that passed
                    // `$extra` (the kernel's features exist, see module doc); check passed.
                    unsafe { avx512::gemm::$tile(job) }
                }
                fn pack(p: &mut PackedPanel, rows: &[&[$W]], b0: usize, n: usize, tr: usize) {
                    // SAFETY: as for `tile` (the packing needs AVX-512 F only).
                    unsafe { avx512::gemm::$pack(p, rows, b0, n, tr) }
                }
                return Some(GemmKernel::new_float(
                    avx512::gemm::TILE_ROWS,
                    tile,
                    pack,
                    $interleave,
                    $elem_bytes,
                    $per_word * FLOAT_PANEL,
                ));
            }
            None
        }
    };
}

// F32 and F16 weights × f32 activations: AVX-512 FMA, the weights converted to f32 in the
// panel. BF16 × BF16: `vdpbf16ps`, where the CPU has AVX512-BF16.
gemm_float!(
    gemm_f32,
    f32,
    tile_f32,
    pack_f32,
    interleave_f32,
    (1, 4),
    any_avx512
);
gemm_float!(
    gemm_f16,
    f16,
    tile_f32,
    pack_f16,
    interleave_f32,
    (1, 4),
    any_avx512
);
gemm_float!(
    gemm_bf16,
    bf16,
    tile_bf16,
    pack_bf16,
    interleave_bf16,
    (2, 2),
    Isa::has_avx512_bf16
);

/// No requirement beyond the level (for `gemm_float!`).
#[cfg(target_arch = "x86_64")]
fn any_avx512(_: Isa) -> bool {
    true
}

// ---------------------------------------------------------------------------------
// Activations, attention, element-wise operations, memory.
// ---------------------------------------------------------------------------------

/// `A::quantize_row` compiled for AVX2 when `isa` allows it: the same code, so the same
/// bits (Rust never contracts or reassociates float operations), but `round` becomes
/// `vroundps` instead of a libm call and the loops vectorize.
pub fn quantize<A: Quantize>(isa: Isa) -> fn(&[f32], &mut [A]) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx2 {
            fn wrapper<A: Quantize>(x: &[f32], y: &mut [A]) {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { avx2::ops::quantize_row::<A>(x, y) }
            }
            return wrapper::<A>;
        }
    }
    A::quantize_row
}

/// A KV-cache element type's attention kernels.
pub trait SelectKv: KvElem + Select {
    /// `acc += p · v`, the fastest the ISA allows.
    fn axpy(isa: Isa) -> AxpyFn<Self>;
    /// A SIMD kernel for a whole (token, KV head) group over keys of this type and values
    /// of type `V`, if the ISA has one (AVX-512 and AVX2, for every pair of f16, bf16,
    /// q8_0 and q4_0; else, and for f32, the portable loop in [`crate::attention`]).
    fn attend<V: SelectKv>(isa: Isa) -> Option<AttendFn<Self, V>> {
        #[cfg(target_arch = "x86_64")]
        if isa.level() >= Level::Avx512
            && avx512::attend::reads(Self::KIND)
            && avx512::attend::reads(V::KIND)
        {
            fn wrapper<K: KvElem, V: KvElem>(job: AttendJob<'_, K, V>) {
                job.check();
                // SAFETY: only returned for an `Isa` at level Avx512, which exists only on
                // CPUs with these features (module doc), and for types it reads; `check`
                // passed.
                unsafe { avx512::attend::attend(job) }
            }
            return Some(wrapper::<Self, V>);
        }
        #[cfg(target_arch = "x86_64")]
        if isa.level() >= Level::Avx2
            && avx2::attend::reads(Self::KIND)
            && avx2::attend::reads(V::KIND)
        {
            fn wrapper<K: KvElem, V: KvElem>(job: AttendJob<'_, K, V>) {
                job.check();
                // SAFETY: only returned for an `Isa` at level ≥ Avx2, which exists only
                // on CPUs with AVX2, FMA and F16C, and for types it reads; `check` passed.
                unsafe { avx2::attend::attend(job) }
            }
            return Some(wrapper::<Self, V>);
        }
        let _ = isa;
        None
    }
}

impl SelectKv for f16 {
    fn axpy(isa: Isa) -> AxpyFn<f16> {
        #[cfg(target_arch = "aarch64")]
        if isa.level() >= Level::Neon {
            fn wrapper(acc: &mut [f32], p: f32, v: &[f16]) {
                // SAFETY: level Neon means NEON and dotprod were detected.
                unsafe { neon::ops::axpy_f16(acc, p, v) }
            }
            return wrapper;
        }
        #[cfg(target_arch = "x86_64")]
        if isa.level() >= Level::Avx2 {
            fn wrapper(acc: &mut [f32], p: f32, v: &[f16]) {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { avx2::ops::axpy_f16(acc, p, v) }
            }
            return wrapper;
        }
        reference::attention::axpy_f16
    }
}

impl SelectKv for f32 {
    /// The compiler vectorises the reference loop.
    fn axpy(_: Isa) -> AxpyFn<f32> {
        reference::attention::axpy_f32
    }
}

/// The value-row kernels of the other cache types: an AVX2 one (which AVX-512 CPUs run
/// too: the row is short and the loads, not the width, bound it), else the reference.
macro_rules! kv_axpy {
    ($($T:ty => $avx2:ident;)*) => {$(
        impl SelectKv for $T {
            fn axpy(isa: Isa) -> AxpyFn<$T> {
                #[cfg(target_arch = "x86_64")]
                if isa.level() >= Level::Avx2 {
                    fn wrapper(acc: &mut [f32], p: f32, v: &[$T]) {
                        // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                        unsafe { avx2::ops::$avx2(acc, p, v) }
                    }
                    return wrapper;
                }
                reference::attention::axpy_dequant::<$T>
            }
        }
    )*};
}

kv_axpy! {
    bf16 => axpy_bf16;
    BlockQ8_0 => axpy_q8_0;
    BlockQ4_0 => axpy_q4_0;
}

/// SwiGLU over a fused `[gate | up]` row (see [`crate::ops::swiglu`]): a vector `exp`
/// (`arch/x86/*/ops.rs`, `arch/aarch64/neon/ops.rs`), within a few units in the last place
/// of the scalar reference, which other ISAs use.
pub fn swiglu(isa: Isa) -> fn(&[f32], &mut [f32]) {
    #[cfg(target_arch = "aarch64")]
    if isa.level() >= Level::Neon {
        fn wrapper(gate_up: &[f32], out: &mut [f32]) {
            let (gate, up) = gate_up.split_at(out.len());
            // SAFETY: level Neon means NEON (and dotprod) were detected.
            unsafe { neon::ops::swiglu(gate, up, out) }
        }
        return wrapper;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx512 {
            fn wrapper(gate_up: &[f32], out: &mut [f32]) {
                let (gate, up) = gate_up.split_at(out.len());
                // SAFETY: level ≥ Avx512 means AVX-512 F/BW/VL, AVX2, FMA and F16C were
                // detected (module doc).
                unsafe { avx512::ops::swiglu_avx512(gate, up, out) }
            }
            return wrapper;
        }
        if isa.level() >= Level::Avx2 {
            fn wrapper(gate_up: &[f32], out: &mut [f32]) {
                let (gate, up) = gate_up.split_at(out.len());
                // SAFETY: level ≥ Avx2 means avx2+fma were detected.
                unsafe { avx2::ops::swiglu_avx2(gate, up, out) }
            }
            return wrapper;
        }
    }
    reference::ops::swiglu
}

/// Reads every byte of `bytes` as fast as the memory allows (the bandwidth probe of
/// `phiq bench --roofline` and the benches); returns a fold of them.
pub fn read_all(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    return common::read_all(bytes);
    #[cfg(not(target_arch = "x86_64"))]
    bytes.iter().fold(0u64, |a, &b| a.rotate_left(1) ^ b as u64)
}

/// Asks for the bytes of `blocks` to be brought into cache (a hint; nothing elsewhere).
#[inline(always)]
pub(crate) fn prefetch<B>(blocks: &[B]) {
    #[cfg(target_arch = "x86_64")]
    common::prefetch(blocks);
}
