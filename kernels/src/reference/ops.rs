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
