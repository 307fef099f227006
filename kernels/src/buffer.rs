//! Large zeroed buffers in 2 MiB pages: an anonymous mapping advised `MADV_HUGEPAGE`
//! (this machine's transparent huge pages are `madvise`-only, so a `Vec` of the same size
//! lives in 4 KiB pages). For the KV cache, which a decoded token deep in the context reads
//! in full (800 MB at depth 4096 for Phi-4): in 4 KiB pages that is ~200 000 pages per
//! token, each a TLB miss and a page walk.

use std::ops::{Deref, DerefMut};

use half::{bf16, f16};

use crate::format::blocks::{BlockQ4_0, BlockQ8_0};

/// Element types for which every bit pattern is a valid value and all-zero bits are 0.0,
/// so a zero-filled mapping can be viewed as a slice of them.
///
/// # Safety
/// Implement only for such plain types (no padding, no invalid bit patterns).
pub unsafe trait Plain: Copy + Default {}
// SAFETY: IEEE floats: any bits are a value (maybe NaN), zero bits are +0.0.
unsafe impl Plain for f32 {}
// SAFETY: as f32 (binary16).
unsafe impl Plain for f16 {}
// SAFETY: as f32 (bfloat16).
unsafe impl Plain for bf16 {}
// SAFETY: repr(C) blocks of an f16 scale and bytes, no padding (their `Block` impls);
// any bits are a value, zero bits are a block of zeros.
unsafe impl Plain for BlockQ8_0 {}
// SAFETY: as BlockQ8_0.
unsafe impl Plain for BlockQ4_0 {}

/// `len` zeroed values of `T`, in 2 MiB pages where the kernel grants them, else a `Vec`.
pub enum HugeBuf<T: Plain> {
    /// The advised mapping, exactly `len · size_of::<T>()` bytes.
    Mapped(memmap2::MmapMut),
    Heap(Vec<T>),
}

impl<T: Plain> HugeBuf<T> {
    pub fn zeroed(len: usize) -> HugeBuf<T> {
        let map = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|&b| b > 0)
            .and_then(|b| memmap2::MmapMut::map_anon(b).ok());
        match map {
            Some(m) => {
                // Before the first touch, so the pages are allocated huge; a kernel
                // without THP refuses and the mapping keeps 4 KiB pages.
                #[cfg(target_os = "linux")]
                let _ = m.advise(memmap2::Advice::HugePage);
                HugeBuf::Mapped(m)
            }
            None => HugeBuf::Heap(vec![T::default(); len]),
        }
    }

    /// True when the values live in the advised mapping (not the `Vec` fallback).
    pub fn is_mapped(&self) -> bool {
        matches!(self, HugeBuf::Mapped(_))
    }
}

impl<T: Plain> Deref for HugeBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            // SAFETY: the mapping is page-aligned (≥ align_of::<T>()), holds a whole
            // number of T (made as len · size_of::<T>() bytes), is zero-filled or written
            // only through `deref_mut` as T, and T: Plain accepts any bits.
            HugeBuf::Mapped(m) => unsafe {
                std::slice::from_raw_parts(
                    m.as_ptr().cast::<T>(),
                    m.len() / std::mem::size_of::<T>(),
                )
            },
            HugeBuf::Heap(v) => v,
        }
    }
}

impl<T: Plain> DerefMut for HugeBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            // SAFETY: as in `deref`; `&mut self` makes this the only view.
            HugeBuf::Mapped(m) => unsafe {
                let len = m.len() / std::mem::size_of::<T>();
                std::slice::from_raw_parts_mut(m.as_mut_ptr().cast::<T>(), len)
            },
            HugeBuf::Heap(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_reads_zero_and_keeps_writes() {
        for len in [0usize, 1, 1000, (4 << 20) + 3] {
            let mut b = HugeBuf::<f16>::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|x| x.to_f32() == 0.0));
            if len > 0 {
                b[len - 1] = f16::from_f32(1.5);
                assert_eq!(b[len - 1].to_f32(), 1.5);
            }
        }
        let b = HugeBuf::<f32>::zeroed(3 << 20);
        assert!(b.is_mapped());
        assert_eq!(b.iter().map(|&x| x as f64).sum::<f64>(), 0.0);
    }
}
