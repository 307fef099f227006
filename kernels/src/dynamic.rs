//! The entry points that take the tensor type at run time (a GGUF tensor's): dequantize,
//! quantize and matmul rows of a [`GgmlType`]. The one place that maps a type id to its
//! block struct (`with_block!`); everything below it is typed.

use crate::error::KernelError;
use crate::format::blocks::*;
use crate::format::unpack::dequantize_row;
use crate::format::GgmlType;
use crate::isa::Isa;
use crate::matmul::{matmul_typed, MatmulScratch};

/// Runs `$body` with `$B` bound to the block struct of `$ty`, or evaluates to
/// `Err(KernelError::Unsupported)` for a type without one: every type phiq can write
/// (quantize) without an importance matrix, activation formats included. IQ2_XXS, IQ2_XS
/// and IQ1_S, which ggml quantizes only with one, are in `with_imatrix_block!`.
#[macro_export]
macro_rules! with_block {
    ($ty:expr, $B:ident => $body:expr) => {
        $crate::__block_dispatch!($ty, $B => $body, [Q8_1 => BlockQ8_1, Q8_K => BlockQ8_K, IQ2_S => BlockIQ2_S, IQ3_XXS => BlockIQ3_XXS, IQ3_S => BlockIQ3_S, IQ1_M => BlockIQ1_M])
    };
}

/// Every type phiq reads (dequantization): `with_block!`'s and the IQ1–IQ3 types.
#[macro_export]
macro_rules! with_any_block {
    ($ty:expr, $B:ident => $body:expr) => {
        $crate::__block_dispatch!($ty, $B => $body, [Q8_1 => BlockQ8_1, Q8_K => BlockQ8_K, IQ2_XXS => BlockIQ2_XXS, IQ2_XS => BlockIQ2_XS, IQ2_S => BlockIQ2_S, IQ3_XXS => BlockIQ3_XXS, IQ3_S => BlockIQ3_S, IQ1_S => BlockIQ1_S, IQ1_M => BlockIQ1_M])
    };
}

/// Weight types (matmul): the activation-only formats Q8_1 and Q8_K (which have no dot
/// product as weights) are `Unsupported`; the IQ1–IQ3 types are in.
#[macro_export]
macro_rules! with_weight_block {
    ($ty:expr, $B:ident => $body:expr) => {
        $crate::__block_dispatch!($ty, $B => $body, [IQ2_XXS => BlockIQ2_XXS, IQ2_XS => BlockIQ2_XS, IQ2_S => BlockIQ2_S, IQ3_XXS => BlockIQ3_XXS, IQ3_S => BlockIQ3_S, IQ1_S => BlockIQ1_S, IQ1_M => BlockIQ1_M])
    };
}

/// Weight types phiq quantizes to without an importance matrix (no activation formats).
#[macro_export]
macro_rules! with_quantizable_weight_block {
    ($ty:expr, $B:ident => $body:expr) => {
        $crate::__block_dispatch!($ty, $B => $body, [IQ2_S => BlockIQ2_S, IQ3_XXS => BlockIQ3_XXS, IQ3_S => BlockIQ3_S, IQ1_M => BlockIQ1_M])
    };
}

/// Weight types phiq quantizes to with an importance matrix: every weight type.
#[macro_export]
macro_rules! with_imatrix_block {
    ($ty:expr, $B:ident => $body:expr) => {
        $crate::__block_dispatch!($ty, $B => $body, [IQ2_XXS => BlockIQ2_XXS, IQ2_XS => BlockIQ2_XS, IQ2_S => BlockIQ2_S, IQ3_XXS => BlockIQ3_XXS, IQ3_S => BlockIQ3_S, IQ1_S => BlockIQ1_S, IQ1_M => BlockIQ1_M])
    };
}

/// The one match from a run-time type to its block struct.
#[doc(hidden)]
#[macro_export]
macro_rules! __block_dispatch {
    ($ty:expr, $B:ident => $body:expr, [$($extra:ident => $EB:ident),*]) => {{
        use $crate::format::blocks::*;
        use $crate::format::GgmlType as T;
        match $ty {
            T::F32 => { type $B = f32; $body }
            T::F16 => { type $B = $crate::half::f16; $body }
            T::BF16 => { type $B = $crate::half::bf16; $body }
            T::Q4_0 => { type $B = BlockQ4_0; $body }
            T::Q4_1 => { type $B = BlockQ4_1; $body }
            T::Q5_0 => { type $B = BlockQ5_0; $body }
            T::Q5_1 => { type $B = BlockQ5_1; $body }
            T::Q8_0 => { type $B = BlockQ8_0; $body }
            T::Q2_K => { type $B = BlockQ2_K; $body }
            T::Q3_K => { type $B = BlockQ3_K; $body }
            T::Q4_K => { type $B = BlockQ4_K; $body }
            T::Q5_K => { type $B = BlockQ5_K; $body }
            T::Q6_K => { type $B = BlockQ6_K; $body }
            T::IQ4_NL => { type $B = BlockIQ4_NL; $body }
            T::IQ4_XS => { type $B = BlockIQ4_XS; $body }
            $( T::$extra => { type $B = $EB; $body } )*
            other => Err($crate::error::KernelError::Unsupported(other)),
        }
    }};
}

/// Views `bytes` as blocks of `B`, or says why not.
pub fn blocks_of<B: Block>(bytes: &[u8]) -> Result<&[B], KernelError> {
    view_blocks::<B>(bytes).ok_or(KernelError::BadBytes {
        ty: B::TYPE,
        len: bytes.len(),
    })
}

/// Dequantizes one row (or any whole number of blocks) of type `ty` to f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    with_any_block!(ty, B => {
        let blocks = blocks_of::<B>(bytes)?;
        let n = blocks.len() * B::QK;
        if out.len() != n {
            return Err(KernelError::Length { expected: n, found: out.len() });
        }
        dequantize_row(blocks, out);
        Ok(())
    })
}

/// Quantizes f32 values into blocks of `ty` (bytes in `out`, aligned for the type).
pub fn quantize(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    use crate::quant::Quantize;
    crate::with_block!(ty, B => {
        let len = out.len();
        let blocks = view_blocks_mut::<B>(out).ok_or(KernelError::BadBytes { ty, len })?;
        if x.len() != blocks.len() * B::QK {
            return Err(KernelError::Length { expected: blocks.len() * B::QK, found: x.len() });
        }
        B::quantize_row(x, blocks);
        Ok(())
    })
}

/// Quantizes one row with importance weights `qw` (one per value, from an importance
/// matrix) into a new byte vector of blocks of `ty`: ggml's weighted `_impl` quantizers
/// for the K-quants, IQ1–IQ4 and Q4_0/Q4_1/Q5_0/Q5_1; the other types ignore the weights.
pub fn quantize_to_vec_imatrix(
    ty: GgmlType,
    x: &[f32],
    qw: &[f32],
) -> Result<Vec<u8>, KernelError> {
    use crate::quant::imatrix::QuantizeImatrix;
    if qw.len() != x.len() {
        return Err(KernelError::Length {
            expected: x.len(),
            found: qw.len(),
        });
    }
    crate::with_imatrix_block!(ty, B => {
        let n = x.len() / B::QK;
        if n * B::QK != x.len() {
            return Err(KernelError::Length { expected: (n + 1) * B::QK, found: x.len() });
        }
        let mut blocks = zeroed_blocks::<B>(n);
        B::quantize_row_imatrix(x, &mut blocks, qw);
        Ok(block_bytes(&blocks).to_vec())
    })
}

/// Quantizes f32 values into a new byte vector of blocks of `ty`.
pub fn quantize_to_vec(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, KernelError> {
    use crate::quant::Quantize;
    crate::with_block!(ty, B => {
        let n = x.len() / B::QK;
        if n * B::QK != x.len() {
            return Err(KernelError::Length { expected: (n + 1) * B::QK, found: x.len() });
        }
        let mut blocks = zeroed_blocks::<B>(n);
        B::quantize_row(x, &mut blocks);
        Ok(block_bytes(&blocks).to_vec())
    })
}

/// Matmul with the weight type known only at run time: `w` is the raw bytes of a
/// `[n_out][n_in]` tensor of type `ty` (see [`matmul_typed`]).
pub fn matmul(
    ty: GgmlType,
    w: &[u8],
    n_in: usize,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut MatmulScratch,
    isa: Isa,
) -> Result<(), KernelError> {
    with_weight_block!(ty, B => {
        let blocks = view_blocks::<B>(w).ok_or(KernelError::BadBytes { ty, len: w.len() })?;
        matmul_typed::<B>(blocks, n_in, x, y, scratch, isa)
    })
}
