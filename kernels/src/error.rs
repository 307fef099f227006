//! Why a kernel entry point refused its input.

use crate::format::GgmlType;

/// Why a kernel refused its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// phiq cannot compute with this type (yet).
    Unsupported(GgmlType),
    /// The bytes are not a whole number of blocks, or not aligned for the block type.
    BadBytes { ty: GgmlType, len: usize },
    /// Output or input lengths disagree.
    Length { expected: usize, found: usize },
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Unsupported(t) => write!(f, "unsupported tensor type {t}"),
            KernelError::BadBytes { ty, len } => write!(
                f,
                "{len} bytes are not whole, aligned {ty} blocks of {} bytes",
                ty.type_size()
            ),
            KernelError::Length { expected, found } => {
                write!(f, "length mismatch: expected {expected}, found {found}")
            }
        }
    }
}

impl std::error::Error for KernelError {}
