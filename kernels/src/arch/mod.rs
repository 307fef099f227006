//! The kernels written for one instruction-set family, one folder each, compiled only on
//! their architecture (with `crate::select`, the only `#[cfg(target_arch)]` outside CPU
//! detection). An `aarch64/` folder with NEON kernels would sit beside `x86/`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;
