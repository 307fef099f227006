//! The kernel contracts: for each kind of kernel, the job it receives and the signature
//! it implements, with the checks that make its raw-pointer code sound. The ISA folders
//! (`crate::arch`) only implement these; the drivers ([`crate::matmul`],
//! [`crate::attention`], [`crate::ops`]) only call them, through [`crate::select`].
//!
//! - [`dot`]: one weight row · one activation row, and each weight format's activation
//!   format ([`dot::VecDot`]);
//! - [`gemv`]: several weight rows · one activation row (matrix × vector);
//! - [`gemm`]: tiles of weight rows × token groups (matrix × matrix, a prompt's batch);
//! - [`attend`]: attention over a KV cache for the query heads of one KV head.

pub mod attend;
pub mod dot;
pub mod gemm;
pub mod gemv;
