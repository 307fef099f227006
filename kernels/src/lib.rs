//! phiq-kernels: all of phiq's arithmetic and all of its SIMD code.
//!
//! - [`formats`]: the ggml tensor types — one table of facts (id, name, elements and bytes
//!   per block) used everywhere, so no other file repeats a per-type `match`.
//! - [`matmul`]: one dot product per output for a token ([`dot`]), tile kernels that reuse
//!   each decoded weight block for many tokens for a batch ([`tile`]).

// Index loops mirror ggml's reference code element for element, so the two can be
// diffed; iterator rewrites would hide that correspondence.
#![allow(clippy::needless_range_loop)]

pub mod attention;
pub mod blocks;
pub mod buffer;
pub mod dispatch;
pub mod dot;
pub mod formats;
pub mod matmul;
pub mod ops;
pub mod par;
pub mod quantize;
pub mod quantize_imatrix;
pub mod quantize_k;
pub mod row;
pub mod tile;
pub mod x86;

pub use formats::{GgmlType, TypeFacts};
pub use half;
