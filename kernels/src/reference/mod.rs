//! The scalar references, in plain Rust: what every SIMD kernel must compute, and what
//! [`crate::select`] hands out where no instruction set has a kernel. The tests in
//! `kernels/tests/` check every kernel against these on every ISA the CPU has.

pub mod attention;
pub mod dot;
pub mod matmul;
pub mod ops;
