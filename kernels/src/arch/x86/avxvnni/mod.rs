//! AVX-VNNI kernels (AVX2 + FMA + F16C + the 256-bit VEX `vpdpbusd`: Intel Core from the
//! 12th generation, which has no AVX-512): the AVX2 kernels whose integer dot products
//! are `vpmaddubsw` + `vpmaddwd` (+ `vpaddd`), with one `vpdpbusd` instead. By role:
//! [`gemm`] the tile micro-kernel for batches (every integer type, activations always
//! unsigned `a + 128`: `vpdpbusd` sums into int32 without the int16 saturation that kept
//! the AVX2 tile's wide-valued types signed), [`gemv`] Q4_0 and Q8_0 × one row. Kinds
//! and types not here use the AVX2 kernels ([`crate::select`]). Each kernel is checked
//! against the scalar reference by `kernels/tests/` on a CPU with AVX-VNNI (`PHIQ_ISA`
//! levels are all tested where supported).

pub(crate) mod gemm;
pub(crate) mod gemv;
