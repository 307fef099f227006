//! phiq-kernels: all of phiq's arithmetic and all of its SIMD code, in layers that each
//! import only the layers below them (`tools/check_kernel_layers.py` checks it):
//!
//! 0. facts: [`isa`] (which instructions the CPU has, detected once), [`format`](mod@format) (the
//!    ggml type table, block structs, what each format's bits mean), [`error`], and the
//!    portable helpers [`buffer`] (huge-page buffers) and [`par`] (the thread team);
//! 1. [`quant`]: quantizing f32 rows to every block format (ggml's algorithms);
//! 2. [`reference`](mod@reference): the scalar dot, matmul, attention and SwiGLU references;
//! 3. [`contract`]: each kind of kernel's job and signature (dot, GEMV, GEMM, attend);
//! 4. `arch`: the SIMD implementations, one folder per instruction set (`arch/x86/avx2`,
//!    `arch/x86/avx512`), each only implementing the contracts;
//! 5. [`select`]: the per-type table of kernels for an [`isa::Isa`] (the only place that
//!    chooses by architecture);
//! 6. the drivers: [`matmul`] (with [`gemm`], the batched loop), [`attention`], [`ops`];
//! 7. [`dynamic`]: the entry points taking a tensor type at run time.

// Index loops mirror ggml's reference code element for element, so the two can be
// diffed; iterator rewrites would hide that correspondence.
#![allow(clippy::needless_range_loop)]

// 0: facts and portable helpers.
pub mod buffer;
pub mod error;
pub mod format;
pub mod isa;
pub mod par;
// 1-3: quantizers, references, contracts.
pub mod contract;
pub mod quant;
pub mod reference;
// 4-5: implementations and their selection.
mod arch;
pub mod select;
// 6-7: drivers and run-time typed entry points.
pub mod attention;
pub mod dynamic;
pub mod gemm;
pub mod matmul;
pub mod ops;

pub use error::KernelError;
pub use format::{GgmlType, TypeFacts};
pub use half;
pub use isa::Isa;
