//! The f32 operations of the forward pass besides matmul and attention: RMS norm,
//! RoPE (NEOX pairs, partial rotary, per-dimension frequency factors for LongRoPE),
//! softmax, SwiGLU, residual add. They are a small share of the time (the matmuls
//! dominate), so they are plain Rust that the compiler vectorises, except SwiGLU's `exp`
//! (a SIMD kernel from [`crate::select`]).

/// `out = x / sqrt(mean(x²) + eps) * weight` over one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == weight.len() && x.len() == out.len());
    // Sum of squares in f64: rows are up to ~5k long and this keeps the norm exact to
    // f32 precision whatever the order (and every path calls this one function, so batch
    // and single-token results agree). Eight independent partial sums: one running sum is
    // a chain of dependent adds the compiler must keep in order.
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += (v as f64) * (v as f64);
        }
    }
    let ss: f64 =
        lanes.iter().sum::<f64>() + rest.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
    let scale = (1.0 / ((ss / x.len() as f64) + eps as f64).sqrt()) as f32;
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// cos/sin of every rotated pair at position `pos`:
/// `theta_i = pos · inv_freq_i`, `inv_freq_i = 1 / (factor_i · base^(2i / n_rot))`, scaled
/// by `attn_factor` (LongRoPE's magnitude correction; 1 otherwise).
/// `cos.len() == sin.len() == n_rot / 2`.
///
/// The precision follows transformers (the reference the tests hold us to): `inv_freq` is
/// a float32 value, `pos · inv_freq` a float32 product; cos and sin of that float32 angle
/// are then evaluated accurately. (At position ~10⁴ the angle's float32 rounding is
/// ~10⁻³ rad: computing it in f64 instead would be "more exact" but differ from the
/// model's training-time numbers.)
pub fn rope_cache(
    pos: usize,
    n_rot: usize,
    base: f32,
    factors: Option<&[f32]>,
    attn_factor: f32,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    rope_cache_scaled(pos, 1.0, n_rot, base, factors, attn_factor, cos, sin)
}

/// [`rope_cache`] with linear position scaling: every `inv_freq` times `freq_scale`
/// (transformers' `linear` rope type divides `inv_freq` by its factor; llama.cpp's
/// `freq_scale` is 1 / factor). `freq_scale = 1` is exactly [`rope_cache`].
#[allow(clippy::too_many_arguments)]
pub fn rope_cache_scaled(
    pos: usize,
    freq_scale: f32,
    n_rot: usize,
    base: f32,
    factors: Option<&[f32]>,
    attn_factor: f32,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    let half = n_rot / 2;
    assert!(cos.len() == half && sin.len() == half);
    for i in 0..half {
        let exponent = (2 * i) as f32 / n_rot as f32;
        let factor = factors.map_or(1.0, |f| f[i]);
        let inv_freq = 1.0 / (factor * (base as f64).powf(exponent as f64) as f32) * freq_scale;
        let theta = (pos as f32 * inv_freq) as f64;
        cos[i] = (theta.cos() as f32) * attn_factor;
        sin[i] = (theta.sin() as f32) * attn_factor;
    }
}

/// Rotates one head in place, NEOX style: dimension `i` pairs with `i + n_rot/2`;
/// dimensions from `n_rot` on (partial rotary) are left as they are.
pub fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (a, rest) = head.split_at_mut(half);
    let b = &mut rest[..half];
    for i in 0..half {
        let (x0, x1) = (a[i], b[i]);
        a[i] = x0 * cos[i] - x1 * sin[i];
        b[i] = x0 * sin[i] + x1 * cos[i];
    }
}

/// Rotates one head in place, ggml's "normal" style: dimension `2i` pairs with `2i + 1`
/// for `i < n_rot/2`; dimensions from `n_rot` on are left as they are.
pub fn rope_norm(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for (i, pair) in head[..2 * cos.len()].chunks_exact_mut(2).enumerate() {
        let (x0, x1) = (pair[0], pair[1]);
        pair[0] = x0 * cos[i] - x1 * sin[i];
        pair[1] = x0 * sin[i] + x1 * cos[i];
    }
}

/// In-place softmax over a row.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// SwiGLU over a fused `[gate | up]` row of `2 · n` (`out = silu(gate) · up`), on the
/// fastest path `isa` allows (a vector `exp`; within a few units in the last place of
/// [`swiglu`], the scalar reference, which other ISAs use).
pub fn swiglu_kernel(isa: crate::isa::Isa) -> fn(&[f32], &mut [f32]) {
    crate::select::swiglu(isa)
}

pub use crate::reference::ops::swiglu;

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_simd_matches_the_scalar_reference() {
        for isa in crate::isa::Isa::all_variants() {
            let f = swiglu_kernel(isa);
            for n in [1usize, 7, 8, 15, 16, 17, 64, 100, 17920] {
                let mut gu: Vec<f32> = (0..2 * n)
                    .map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 23) as f32))
                    .collect();
                // Edge values among the gates: zero, ±large (exp overflow/underflow in
                // the scalar code), tiny.
                for (j, v) in [0.0, 100.0, -100.0, 88.5, -88.5, 1e-30, -1e-30]
                    .into_iter()
                    .enumerate()
                {
                    if j < n {
                        gu[j] = v;
                    }
                }
                let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
                swiglu(&gu, &mut want);
                f(&gu, &mut got);
                for i in 0..n {
                    // The vector exp is within ~2 ulp of libm's; silu's division and the
                    // product add one rounding each: 8 ulp of the result is generous.
                    // Below gate ≈ −87 silu is < 1e-35 and the paths differ in how they
                    // reach zero (clamped exp, or libm's overflowing to inf): absolute
                    // slack of 1e-35 there.
                    let tol = 8.0 * f32::EPSILON * want[i].abs() + 1e-35;
                    assert!(
                        (got[i] - want[i]).abs() <= tol,
                        "{isa} n {n} i {i}: gate {} got {} want {}",
                        gu[i],
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }

    #[test]
    fn rms_norm_unit() {
        let x = [3.0, 4.0];
        let mut out = [0.0; 2];
        rms_norm(&x, &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_the_tail() {
        let mut head = [1.0, 0.0, 0.0, 0.0, 5.0];
        let (mut c, mut s) = ([0.0; 2], [0.0; 2]);
        rope_cache(1, 4, 10000.0, None, 1.0, &mut c, &mut s);
        rope_neox(&mut head, &c, &s);
        assert!((head[0] - 1f32.cos()).abs() < 1e-6);
        assert!((head[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(head[4], 5.0);
        // Frequency factors divide the angle.
        rope_cache(3, 4, 10000.0, Some(&[3.0, 1.0]), 2.0, &mut c, &mut s);
        assert!((c[0] - 2.0 * 1f32.cos()).abs() < 1e-6);
    }

    /// llama.cpp's converter permutes Q and K rows of Llama checkpoints so that the normal
    /// (adjacent-pair) RoPE of the permuted head equals NeoX RoPE (`rotate_half`) of the
    /// original head, permuted the same way: check that identity on a random head.
    #[test]
    fn rope_norm_of_the_converter_permutation_is_rope_neox() {
        let (head_dim, n_rot) = (16usize, 12usize);
        let x: Vec<f32> = (0..head_dim).map(|i| ((i * 7 + 3) as f32).sin()).collect();
        // convert_hf_to_gguf's permute for one head: reshape(2, n/2).swapaxes → row
        // 2j + h comes from h * n/2 + j (over the rotated dims; the tail stays, as in
        // partial-rotary checkpoints, which the converter permutes whole: here n_rot only).
        let half = n_rot / 2;
        let permute = |v: &[f32]| -> Vec<f32> {
            let mut out = v.to_vec();
            for j in 0..half {
                for h in 0..2 {
                    out[2 * j + h] = v[h * half + j];
                }
            }
            out
        };
        let (mut c, mut s) = (vec![0.0; half], vec![0.0; half]);
        rope_cache(37, n_rot, 10000.0, None, 1.0, &mut c, &mut s);
        let mut neox = x.clone();
        rope_neox(&mut neox, &c, &s);
        let mut norm = permute(&x);
        rope_norm(&mut norm, &c, &s);
        assert_eq!(norm, permute(&neox));
        // Linear scaling: scale 1/4 at position 4·p is the angle of position p.
        let (mut c4, mut s4) = (vec![0.0; half], vec![0.0; half]);
        rope_cache_scaled(4 * 37, 0.25, n_rot, 10000.0, None, 1.0, &mut c4, &mut s4);
        for i in 0..half {
            assert!((c4[i] - c[i]).abs() < 1e-5 && (s4[i] - s[i]).abs() < 1e-5);
        }
    }

    #[test]
    fn softmax_and_swiglu() {
        let mut x = [1.0, 2.0, 3.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0]);
        let mut out = [0.0; 2];
        swiglu(&[0.0, 1.0, 5.0, 2.0], &mut out);
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 2.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
    }
}
