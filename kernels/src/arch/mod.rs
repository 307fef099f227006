//! The kernels written for one instruction-set family, one folder each, compiled only on
//! their architecture (with `crate::select`, the only `#[cfg(target_arch)]` outside CPU
//! detection): `x86/` (AVX2, AVX-VNNI, AVX-512) and `aarch64/` (NEON with `dotprod`).

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;
