//! x86-64 kernels: one folder per instruction-set level, each implementing the kernel
//! contracts of [`crate::contract`] for the types it speeds up, and what they share.
//! [`crate::select`] hands them out behind safe function pointers once an
//! [`crate::isa::Isa`] proves the CPU has their instructions.

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod common;
