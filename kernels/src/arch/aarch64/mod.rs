//! aarch64 kernels: one folder per instruction-set level, each implementing the kernel
//! contracts of [`crate::contract`] for the types it speeds up. [`crate::select`] hands
//! them out behind safe function pointers once an [`crate::isa::Isa`] proves the CPU has
//! their instructions.

pub(crate) mod neon;

#[cfg(test)]
mod tests {
    /// The NEON `exp` against f64's: within 4 ulp where the result is normal, exactly 0
    /// below −87 (never a denormal), NaN for NaN, finite and huge at the clamp (88).
    #[test]
    fn vector_exp_flushes_instead_of_making_denormals() {
        if !std::arch::is_aarch64_feature_detected!("neon") {
            return;
        }
        use std::arch::aarch64::*;
        let exp = |x: f32| {
            // SAFETY: NEON was detected.
            unsafe { vgetq_lane_f32::<0>(super::neon::ops::exp128(vdupq_n_f32(x))) }
        };
        let mut xs: Vec<f32> = (0..600).map(|i| -120.0 + 0.35 * i as f32).collect();
        xs.extend([
            -87.0,
            -86.99,
            -87.01,
            -87.3,
            -103.0,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
        ]);
        for x in xs.into_iter().filter(|&x| x <= 88.0) {
            let e = exp(x);
            if x < -87.0 {
                assert_eq!(e.to_bits(), 0, "exp({x}) = {e:e}, want 0");
                continue;
            }
            let want = (x as f64).exp();
            assert!(e.is_normal(), "exp({x}) = {e:e} is not normal");
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!(
                (e as f64 - want).abs() <= 4.0 * ulp as f64,
                "exp({x}) = {e:e}, want {want:e}"
            );
        }
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(100.0) > 1e38 && exp(100.0).is_finite());
    }
}
