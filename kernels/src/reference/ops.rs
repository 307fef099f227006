//! Scalar references of the element-wise operations that have SIMD kernels.

/// SwiGLU over a fused `[gate | up]` row of `2 · n`: `out = silu(gate) · up`.
pub fn swiglu(gate_up: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert_eq!(gate_up.len(), 2 * n);
    let (gate, up) = gate_up.split_at(n);
    for i in 0..n {
        let g = gate[i];
        out[i] = g / (1.0 + (-g).exp()) * up[i];
    }
}

/// `e^x`, or 0 where that is below the smallest normal f32 (x < −87.3): attention's
/// probabilities and rescales go through it (as its vector kernels' `exp` flush inputs
/// below −87), so no denormal reaches the multiply-adds with V, where each one costs a
/// microcode assist. Terms that small are 2^-126 of the largest one, which is 1.
#[inline]
pub fn exp_flush(x: f32) -> f32 {
    let e = x.exp();
    if e < f32::MIN_POSITIVE {
        0.0
    } else {
        e
    }
}
