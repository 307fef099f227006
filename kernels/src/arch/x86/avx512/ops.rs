//! Vector `e^x` and the SwiGLU activation built on it (AVX-512; avx2/ops.rs has the 8-lane twin).
//!
//! SwiGLU is `silu(gate) · up` over Phi-4's 17920-wide feed-forward rows: with libm's
//! scalar `exp` it cost ~100 µs per layer per token (4 ms of a 235 ms token); 16 lanes at a
//! time it is a few µs.

use std::arch::x86_64::*;

/// `e^x` for 16 lanes: 2^n · p(r) with n = round(x·log2 e), r = x − n·ln 2 (split in two
/// constants, Cody–Waite) and p the degree-6 Taylor polynomial, whose error on
/// |r| ≤ ln2 / 2 is below (ln2/2)^7 / 7! ≈ 1.2e-7 relative: about one unit in the last
/// place. Inputs below −87 give 0 (e^-87 ≈ 1.6e-38 is the smallest normal order of
/// magnitude, see [`crate::reference::ops::exp_flush`]), so no denormal reaches the multiply-adds
/// downstream: attention's `p · V` with tiny probabilities made every such FMA a
/// microcode assist, 3.8× the attention time of a pp512 on a file with peaked scores.
/// Large inputs overflow to +inf through `scalef` as `exp` does, and NaN stays NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(crate) fn exp512(x: __m512) -> __m512 {
    let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(-87.0));
    // `max` returns its second operand when either is NaN: NaN goes through.
    let x = _mm512_max_ps(_mm512_set1_ps(-87.0), x);
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n))
}

/// `out[i] = g / (1 + e^-g) · up[i]` with `g = gate[i]`, 16 lanes at a time; the tail
/// through a masked load/store.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(crate) fn swiglu_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(gate.len() == n && up.len() == n);
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i < n {
        let k = (n - i).min(16);
        let m: __mmask16 = if k == 16 { !0 } else { (1u16 << k) - 1 };
        // SAFETY: lanes i..i + k are inside all three slices (k ≤ n − i), and the mask
        // confines the loads and the store to those lanes.
        unsafe {
            let g = _mm512_maskz_loadu_ps(m, gate.as_ptr().add(i));
            let u = _mm512_maskz_loadu_ps(m, up.as_ptr().add(i));
            let e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
            let s = _mm512_div_ps(g, _mm512_add_ps(one, e));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), m, _mm512_mul_ps(s, u));
        }
        i += 16;
    }
}
