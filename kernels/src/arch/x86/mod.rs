//! x86-64 kernels: one folder per instruction-set level, each implementing the kernel
//! contracts of [`crate::contract`] for the types it speeds up, and what they share.
//! [`crate::select`] hands them out behind safe function pointers once an
//! [`crate::isa::Isa`] proves the CPU has their instructions.

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod avxvnni;
pub(crate) mod common;

#[cfg(test)]
mod tests {
    /// The vector `exp`s (AVX-512, AVX2) against f64's: within 4 ulp where the result is
    /// normal, exactly 0 below −87 (never a denormal), NaN for NaN, +inf past the range
    /// (AVX-512; AVX2 clamps at 88, which silu does not notice).
    #[test]
    fn vector_exp_flushes_instead_of_making_denormals() {
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
        let check = |name: &str, x: f32, e: f32| {
            if x < -87.0 {
                assert_eq!(e.to_bits(), 0, "{name}: exp({x}) = {e:e}, want 0");
                return;
            }
            let want = (x as f64).exp();
            assert!(e.is_normal(), "{name}: exp({x}) = {e:e} is not normal");
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!(
                (e as f64 - want).abs() <= 4.0 * ulp as f64,
                "{name}: exp({x}) = {e:e}, want {want:e}"
            );
        };
        if is_x86_feature_detected!("avx512f") {
            for x in xs.iter().copied().chain([88.0, 100.0]) {
                // SAFETY: AVX-512 F was detected; the function needs F (and the AVX2 it
                // implies) only.
                let e = unsafe {
                    use std::arch::x86_64::*;
                    _mm512_cvtss_f32(super::avx512::ops::exp512(_mm512_set1_ps(x)))
                };
                match x {
                    88.0.. => assert!(e.is_infinite() || e > 1e38, "exp({x}) = {e}"),
                    _ => check("avx512", x, e),
                }
            }
            // SAFETY: as above.
            let e = unsafe {
                use std::arch::x86_64::*;
                _mm512_cvtss_f32(super::avx512::ops::exp512(_mm512_set1_ps(f32::NAN)))
            };
            assert!(e.is_nan());
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            for x in xs.iter().copied().filter(|&x| x <= 88.0) {
                // SAFETY: AVX2 and FMA were detected.
                let e = unsafe {
                    use std::arch::x86_64::*;
                    _mm256_cvtss_f32(super::avx2::ops::exp256(_mm256_set1_ps(x)))
                };
                check("avx2", x, e);
            }
            // SAFETY: as above.
            let e = unsafe {
                use std::arch::x86_64::*;
                _mm256_cvtss_f32(super::avx2::ops::exp256(_mm256_set1_ps(f32::NAN)))
            };
            assert!(e.is_nan());
        }
        assert_eq!(crate::reference::ops::exp_flush(-87.5), 0.0);
        assert_eq!(crate::reference::ops::exp_flush(f32::NEG_INFINITY), 0.0);
        assert!(crate::reference::ops::exp_flush(-87.0).is_normal());
    }
}
