//! The AVX-VNNI tile micro-kernel for batches (see [`crate::contract::gemm`]): the AVX2
//! tile ([`crate::arch::x86::avx2::gemm`]) with `vpdpbusd` for its integer products.

use std::arch::x86_64::*;

use crate::arch::x86::avx2::gemm::tile_body;
use crate::contract::gemm::{GemmJob, GemmWeight};

/// Weight rows per tile call: with one instruction per product (AVX2 needs temporaries
/// for three) 6 int32 + 6 float accumulators, the activations, the broadcast weight and
/// the tokens' scales fit the 16 ymm registers.
pub(crate) const TILE_ROWS: usize = 6;

/// [`TILE_ROWS`] decoded weight rows × 8 tokens at a time, each weight dword broadcast
/// into one `vpdpbusd` per row with the tokens' activations (`a + 128`, unsigned), the
/// sums starting from the rows' `corr` (−128 · Σ q), as the AVX-512 tile does.
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-VNNI, `job` must pass
/// `job.check::<W>(TILE_ROWS)`, and the activations must be `a + 128`.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) unsafe fn tile<W: GemmWeight>(job: GemmJob<'_>) {
    let dp =
        |sum: __m256i, av: __m256i, wv: __m256i, _: __m256i| _mm256_dpbusd_avx_epi32(sum, av, wv);
    // The body's unsafe block relies on this function's contract.
    let pairs = |_: __m256i, _: __m256i, _: __m256i| -> __m256i { unreachable!() };
    // Chunk 0: never the int16 path (`vpdpbusd` widens in the same instruction).
    tile_body!(W, TILE_ROWS, true, 0, false, job, dp, pairs)
}
