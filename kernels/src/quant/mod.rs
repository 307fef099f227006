//! Quantizing f32 rows to blocks with ggml's reference algorithms.
//!
//! - Activation formats, quantized once per matmul: Q8_0 and Q8_1 (`roundf`, i.e. half
//!   away from zero, as `quantize_row_q8_0_ref`), Q8_K (`nearest_int`, i.e. half to even,
//!   with the signed absolute maximum mapped to -127, as `quantize_row_q8_K_ref`).
//! - Weight formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16: ggml's reference quantizers,
//!   bit-exact with gguf-py's `gguf.quants.quantize` (tested). The K-quants and IQ4 live
//!   in [`k`]; the importance-weighted quantizers in [`imatrix`]; the IQ1–IQ3 formats
//!   (most of which need importance weights) in [`iq`].

use half::{bf16, f16};

use crate::format::blocks::*;

pub mod imatrix;
pub mod iq;
pub mod k;

use k::{check_len, inverse_or_zero, signed_absmax};

/// A block type that f32 values can be quantized into.
pub trait Quantize: Block {
    /// Quantizes `x` (`x.len() == y.len() * Self::QK`) into `y`.
    fn quantize_row(x: &[f32], y: &mut [Self]);
}

/// The largest magnitude, as `signed_absmax(x).0` but in a form that vectorizes: the bit
/// patterns of non-negative floats order like their values, so an integer max of `|v|`'s
/// bits is exact; NaNs (bits above infinity's) count as 0, as the `amax < |v|` scan skips
/// them.
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    let key = |v: &f32| {
        let b = v.to_bits() & 0x7fff_ffff;
        if b > 0x7f80_0000 {
            0
        } else {
            b
        }
    };
    // Eight independent lanes: a single running max is a chain the compiler keeps scalar.
    let mut lanes = [0u32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = (*m).max(key(v));
        }
    }
    let bits = lanes
        .into_iter()
        .chain(rest.iter().map(key))
        .fold(0u32, u32::max);
    f32::from_bits(bits)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// ggml's `nearest_int`: round half to even (exact for |x| < 2^22, all that occurs here).
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// C's `roundf` (half away from zero) for |x| < 2^22, in operations that vectorize: the
/// truncation plus the sign where the dropped part is at least a half (`x - trunc(x)` is
/// exact).
#[inline(always)]
fn round_away(x: f32) -> i32 {
    let t = x.trunc();
    let up = if (x - t).abs() >= 0.5 {
        1.0f32.copysign(x)
    } else {
        0.0
    };
    k::nearest_int(t + up)
}

impl Quantize for f32 {
    fn quantize_row(x: &[f32], y: &mut [f32]) {
        check_len(x, y);
        y.copy_from_slice(x);
    }
}

impl Quantize for f16 {
    fn quantize_row(x: &[f32], y: &mut [f16]) {
        check_len(x, y);
        for (o, &v) in y.iter_mut().zip(x) {
            *o = f16::from_f32(v); // round to nearest even, as ggml and numpy
        }
    }
}

impl Quantize for bf16 {
    fn quantize_row(x: &[f32], y: &mut [bf16]) {
        check_len(x, y);
        for (o, &v) in y.iter_mut().zip(x) {
            // ggml_compute_fp32_to_bf16: NaN made quiet, otherwise round to nearest even.
            let u = v.to_bits();
            let b = if u & 0x7fff_ffff > 0x7f80_0000 {
                (u >> 16) | 64
            } else {
                (u + (0x7fff + ((u >> 16) & 1))) >> 16
            };
            *o = bf16::from_bits(b as u16);
        }
    }
}

impl Quantize for BlockQ4_0 {
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_len(x, y);
        for (xb, b) in x.chunks_exact(32).zip(y.iter_mut()) {
            let (_, max) = signed_absmax(xb);
            let d = max / -8.0;
            let id = inverse_or_zero(d);
            b.d = f16::from_f32(d);
            for j in 0..16 {
                // Truncation toward zero of a value in [0.5, 16.5], capped at 15.
                let q0 = ((xb[j] * id + 8.5) as i8).min(15) as u8;
                let q1 = ((xb[j + 16] * id + 8.5) as i8).min(15) as u8;
                b.qs[j] = q0 | (q1 << 4);
            }
        }
    }
}

impl Quantize for BlockQ4_1 {
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_len(x, y);
        for (xb, b) in x.chunks_exact(32).zip(y.iter_mut()) {
            let (min, max) = min_max(xb);
            let d = (max - min) / 15.0;
            let id = inverse_or_zero(d);
            b.d = f16::from_f32(d);
            b.m = f16::from_f32(min);
            for j in 0..16 {
                let q0 = (((xb[j] - min) * id + 0.5) as i8).min(15) as u8;
                let q1 = (((xb[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
                b.qs[j] = q0 | (q1 << 4);
            }
        }
    }
}

impl Quantize for BlockQ5_0 {
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_len(x, y);
        for (xb, b) in x.chunks_exact(32).zip(y.iter_mut()) {
            let (_, max) = signed_absmax(xb);
            let d = max / -16.0;
            let id = inverse_or_zero(d);
            b.d = f16::from_f32(d);
            let mut qh = 0u32;
            for j in 0..16 {
                let q0 = ((xb[j] * id + 16.5) as i8).min(31) as u8;
                let q1 = ((xb[j + 16] * id + 16.5) as i8).min(31) as u8;
                b.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
                qh |= ((q0 as u32 & 0x10) >> 4) << j;
                qh |= ((q1 as u32 & 0x10) >> 4) << (j + 16);
            }
            b.qh = qh.to_le_bytes();
        }
    }
}

impl Quantize for BlockQ5_1 {
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_len(x, y);
        for (xb, b) in x.chunks_exact(32).zip(y.iter_mut()) {
            let (min, max) = min_max(xb);
            let d = (max - min) / 31.0;
            let id = inverse_or_zero(d);
            b.d = f16::from_f32(d);
            b.m = f16::from_f32(min);
            let mut qh = 0u32;
            for j in 0..16 {
                let q0 = (((xb[j] - min) * id + 0.5) as u8).min(31);
                let q1 = (((xb[j + 16] - min) * id + 0.5) as u8).min(31);
                b.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
                qh |= ((q0 as u32 & 0x10) >> 4) << j;
                qh |= ((q1 as u32 & 0x10) >> 4) << (j + 16);
            }
            b.qh = qh.to_le_bytes();
        }
    }
}

impl Quantize for BlockQ8_0 {
    // Inlined so `crate::select::quantize` can compile it for AVX2.
    #[inline(always)]
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_len(x, y);
        for (xb, b) in x.chunks_exact(32).zip(y.iter_mut()) {
            let amax = abs_max(xb);
            let d = amax / 127.0;
            let id = inverse_or_zero(d);
            b.d = f16::from_f32(d);
            for j in 0..32 {
                b.qs[j] = round_away(xb[j] * id) as i8; // roundf: half away from zero
            }
        }
    }
}

impl Quantize for BlockQ8_1 {
    // Inlined so `crate::select::quantize` can compile it for AVX2.
    #[inline(always)]
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_len(x, y);
        for (xb, b) in x.chunks_exact(32).zip(y.iter_mut()) {
            let amax = abs_max(xb);
            let d = amax / 127.0;
            let id = inverse_or_zero(d);
            b.d = f16::from_f32(d);
            let mut sum = 0i32;
            for j in 0..32 {
                b.qs[j] = round_away(xb[j] * id) as i8; // roundf: half away from zero
                sum += b.qs[j] as i32;
            }
            b.s = f16::from_f32(sum as f32 * d);
        }
    }
}

impl Quantize for BlockQ8_K {
    // Inlined so `crate::select::quantize` can compile it for AVX2.
    #[inline(always)]
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_len(x, y);
        for (xb, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            let (amax, max) = signed_absmax(xb);
            if amax == 0.0 {
                b.d = 0.0;
                b.qs = [0; QK_K];
                b.bsums = [0; QK_K / 16];
                continue;
            }
            // The signed maximum maps to -127, so the other sign can reach +128: cap it.
            let iscale = -127.0 / max;
            for j in 0..QK_K {
                b.qs[j] = k::nearest_int(iscale * xb[j]).min(127) as i8;
            }
            for (j, s) in b.bsums.iter_mut().enumerate() {
                *s = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
            }
            b.d = 1.0 / iscale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.1 + 2.0 * (i as f32).cos() * if i % 7 == 0 { 5.0 } else { 1.0 })
            .collect()
    }

    #[test]
    fn q8_k_scales_sums_and_error() {
        let x = signal(3 * QK_K);
        let mut y = crate::format::blocks::zeroed_blocks::<BlockQ8_K>(3);
        BlockQ8_K::quantize_row(&x, &mut y);
        for (b, xb) in y.iter().zip(x.chunks(QK_K)) {
            for j in 0..16 {
                let s: i16 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
                assert_eq!(b.bsums[j], s);
            }
            // Round-to-nearest: each value within half a step of the input.
            for (q, v) in b.qs.iter().zip(xb) {
                assert!((*q as f32 * b.d - v).abs() <= b.d.abs() * 0.5 + 1e-6);
            }
            // The element of largest magnitude maps to exactly ∓127.
            assert!(b.qs.contains(&-127));
        }
        // All zeros: zero scale, zero quants.
        let mut z = crate::format::blocks::zeroed_blocks::<BlockQ8_K>(1);
        BlockQ8_K::quantize_row(&[0.0; QK_K], &mut z);
        assert_eq!(z[0].d, 0.0);
        assert!(z[0].qs.iter().all(|&q| q == 0));
    }

    #[test]
    fn q8_1_sum_is_d_times_sum_of_quants() {
        let x = signal(64);
        let mut y = crate::format::blocks::zeroed_blocks::<BlockQ8_1>(2);
        BlockQ8_1::quantize_row(&x, &mut y);
        for b in &y {
            // s = f16(d · Σq) with the unrounded f32 d, so it agrees with the stored
            // f16 d to within the two f16 roundings.
            let s: i32 = b.qs.iter().map(|&q| q as i32).sum();
            let expect = s as f32 * b.d.to_f32();
            assert!(
                (b.s.to_f32() - expect).abs() <= expect.abs() * 2e-3,
                "{b:?}"
            );
        }
    }

    #[test]
    fn signed_absmax_equals_ggmls_scan() {
        // ggml's loop: the first element of largest magnitude; NaNs never win.
        let scan = |x: &[f32]| {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in x {
                if v.abs() > amax {
                    (amax, max) = (v.abs(), v);
                }
            }
            (amax, max)
        };
        let mut x = signal(1000);
        x[3] = f32::NAN;
        x[500] = -0.0;
        x[700] = -x[600].abs() * 9.0; // ties: the first of ±m wins
        x[701] = -x[700];
        x[40] = 7.0;
        x[41] = -7.0;
        for w in [
            &x[..3],
            &x[..4],
            &x[4..40],
            &x[30..50],
            &x[40..42],
            &x[41..43],
            &x[..],
            &x[650..],
            &x[701..],
            &[-0.0, 0.0][..],
            &[f32::NAN; 20][..],
            &[f32::NEG_INFINITY, f32::INFINITY][..],
            &[],
        ] {
            let (a, b) = (signed_absmax(w), scan(w));
            assert_eq!(
                (a.0.to_bits(), a.1.to_bits()),
                (b.0.to_bits(), b.1.to_bits()),
                "{w:?}"
            );
        }
    }

    #[test]
    fn vectorizable_roundings_equal_the_library_ones() {
        let mut v: Vec<f32> = (-600..=600).map(|i| i as f32 * 0.25).collect();
        for k in [0.5f32, 1.5, 2.5, 126.5, 127.5] {
            for x in [k, -k] {
                v.extend([
                    x,
                    f32::from_bits(x.to_bits() - 1),
                    f32::from_bits(x.to_bits() + 1),
                ]);
            }
        }
        v.extend([0.49999997, -0.49999997, 0.0, -0.0, 4194303.0, -4194303.0]);
        v.extend(signal(5000).iter().map(|x| x * 40.0));
        for x in v {
            // C's roundf without the C library: |x| + 0.5 is exact in f64 and `as` truncates
            // in hardware. (`f32::round` and `f64::round` of windows-gnu, run under Wine,
            // round 0.49999997 up to 1.)
            let want = (x.abs() as f64 + 0.5) as i32 * if x < 0.0 { -1 } else { 1 };
            assert_eq!(round_away(x), want, "round_away({x})");
            #[cfg(not(windows))]
            assert_eq!(x.round() as i32, want, "{x}.round()");
            assert_eq!(k::nearest_int(x), nearest_int(x), "k::nearest_int({x})");
        }
    }

    #[test]
    fn abs_max_equals_the_reference_scan() {
        let mut x = signal(1000);
        x[3] = f32::NAN;
        x[500] = -0.0;
        x[501] = f32::NEG_INFINITY;
        for w in [
            &x[..3],
            &x[..4],
            &x[4..40],
            &x[..],
            &x[502..],
            &[-0.0, 0.0][..],
            &[],
        ] {
            assert_eq!(abs_max(w).to_bits(), signed_absmax(w).0.to_bits(), "{w:?}");
        }
    }

    #[test]
    fn nearest_int_is_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(2.4999), 2);
    }
}

/// The K-quants and IQ4 formats: ggml's reference (non-imatrix) searches, in
/// [`k`].
macro_rules! quantize_via {
    ($($B:ty => $f:ident),*) => {$(
        impl Quantize for $B {
            fn quantize_row(x: &[f32], y: &mut [Self]) {
                k::$f(x, y)
            }
        }
    )*};
}
quantize_via!(
    BlockQ2_K => quantize_row_q2_k,
    BlockQ3_K => quantize_row_q3_k,
    BlockQ4_K => quantize_row_q4_k,
    BlockQ5_K => quantize_row_q5_k,
    BlockQ6_K => quantize_row_q6_k,
    BlockIQ4_NL => quantize_row_iq4_nl,
    BlockIQ4_XS => quantize_row_iq4_xs
);
