//! Block formats against gguf-py: dequantization bit-exact for every type phiq
//! computes with, on random blocks and edge-case scales.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use phiq::kernels::dynamic::dequantize;
use phiq::kernels::GgmlType;
use phiq::kernels::KernelError;

/// Byte offsets of the f16 scale fields inside one block of each type.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S => &[0],
        // IQ1_M's f16 scale is the top nibbles of its scale words: random bytes.
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

const EDGE_F16: [u16; 9] = [
    0x0000, // 0
    0x8000, // -0
    0x7bff, // 65504, the largest f16
    0xfbff, // -65504
    0x0001, // smallest subnormal
    0x3c00, // 1
    0xbc00, // -1
    0x7c00, // inf
    0x7e00, // NaN
];

/// `n` blocks of `ty`: random bytes, with scale fields mostly moderate, sometimes extreme.
fn random_blocks(ty: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let size = ty.type_size() as usize;
    let mut bytes = pattern_bytes(n * size, seed);
    let picks = pattern_bytes(n * 4, seed ^ 0xabc);
    for b in 0..n {
        for (k, &off) in f16_fields(ty).iter().enumerate() {
            let p = picks[b * 4 + k];
            let v: u16 = if p < 180 {
                // A moderate f16: exponent in 2^-14..2^1, random sign and mantissa.
                let mant = u16::from_le_bytes([picks[b * 4 + 2], p]) & 0x3ff;
                let exp = 1 + (p as u16 % 16);
                ((p as u16 & 1) << 15) | (exp << 10) | mant
            } else {
                EDGE_F16[p as usize % EDGE_F16.len()]
            };
            bytes[b * size + off..b * size + off + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

fn gguf_py_dequantize(py: &Path, ty: GgmlType, bytes: &[u8], dir: &Path) -> Vec<f32> {
    let src = dir.join(format!("{}.bin", ty.name()));
    let dst = dir.join(format!("{}.f32", ty.name()));
    std::fs::write(&src, bytes).unwrap();
    let out = Command::new(py)
        .arg(repo_root().join("tools/quant_ref.py"))
        .args(["dequantize", ty.name()])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&dst)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const TYPES: [GgmlType; 21] = {
    use GgmlType::*;
    [
        F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
        IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
    ]
};

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    let Some(py) = reference_python() else { return };
    let dir = std::env::temp_dir().join(format!("phiq-dequant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, &ty) in TYPES.iter().enumerate() {
        // 16 super-blocks' worth of elements whatever the block size.
        let n_blocks = 4096 / ty.block_size() as usize;
        let raw = random_blocks(ty, n_blocks, 100 + i as u64);
        let mut aligned = aligned_copy(&raw);
        let bytes = &bytemuck_bytes(&mut aligned)[..raw.len()];

        let mut ours = vec![0f32; n_blocks * ty.block_size() as usize];
        dequantize(ty, bytes, &mut ours).unwrap();
        let theirs = gguf_py_dequantize(&py, ty, bytes, &dir);
        assert_eq!(ours.len(), theirs.len(), "{ty}");
        for (j, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{ty}: element {j} (block {}): ours {a:e}, gguf-py {b:e}",
                j / ty.block_size() as usize
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `bytes` in a 4-byte-aligned buffer (view it with [`bytemuck_bytes`]).
fn aligned_copy(bytes: &[u8]) -> Vec<u32> {
    let mut v = vec![0u32; bytes.len().div_ceil(4)];
    bytemuck_bytes(&mut v)[..bytes.len()].copy_from_slice(bytes);
    v
}

/// A `&mut [u8]` over a `u32` buffer (4-byte aligned, enough for every block type).
fn bytemuck_bytes(v: &mut [u32]) -> &mut [u8] {
    let len = v.len() * 4;
    // SAFETY: u32 has no padding and u8 has alignment 1; the length is the buffer's size.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) }
}

#[test]
fn dequantize_rejects_bad_input() {
    let mut out = vec![0f32; 32];
    assert_eq!(
        dequantize(GgmlType::TQ2_0, &[0; 66], &mut out),
        Err(KernelError::Unsupported(GgmlType::TQ2_0))
    );
    assert!(matches!(
        dequantize(GgmlType::Q4_0, &[0; 17], &mut out),
        Err(KernelError::BadBytes { .. })
    ));
    let mut two = aligned_copy(&[0; 36]);
    assert!(matches!(
        dequantize(GgmlType::Q4_0, &bytemuck_bytes(&mut two)[..36], &mut out),
        Err(KernelError::Length { .. })
    ));
    // Misaligned for the block type.
    assert!(matches!(
        dequantize(GgmlType::Q4_0, &bytemuck_bytes(&mut two)[1..19], &mut out),
        Err(KernelError::BadBytes { .. })
    ));
    // A Q4_0 block of all-0x88 nibbles with d = 1 dequantizes to zeros.
    let mut block = vec![0x00, 0x3c];
    block.extend([0x88; 16]);
    let mut aligned = aligned_copy(&block);
    dequantize(
        GgmlType::Q4_0,
        &bytemuck_bytes(&mut aligned)[..18],
        &mut out,
    )
    .unwrap();
    assert!(out.iter().all(|&x| x == 0.0));
}

fn gguf_py_quantize(py: &Path, ty: GgmlType, x: &[f32], dir: &Path) -> Vec<u8> {
    let src = dir.join(format!("{}-in.f32", ty.name()));
    let dst = dir.join(format!("{}-out.bin", ty.name()));
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&src, bytes).unwrap();
    let out = Command::new(py)
        .arg(repo_root().join("tools/quant_ref.py"))
        .args(["quantize", ty.name()])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&dst).unwrap()
}

/// Test signal: ggml's `0.1 + 2 cos(i)`, random values over several magnitudes,
/// exact ties for rounding (k + 0.5 steps), zeros, a lone outlier, all-negative.
fn quantize_inputs() -> Vec<f32> {
    let noise = pattern_bytes(4096, 77);
    let mut x: Vec<f32> = (0..1024).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect();
    x.extend((0..1024).map(|i| {
        let e = (noise[i] % 16) as i32 - 8;
        (noise[i + 1024] as f32 - 127.5) / 64.0 * 2f32.powi(e)
    }));
    x.extend((0..256).map(|i| (i % 64) as f32 * 0.5 - 16.0)); // many exact halves
    x.extend(std::iter::repeat_n(0.0, 256));
    x.extend((0..256).map(|i| if i == 77 { 1e4 } else { (i as f32).sin() }));
    x.extend((0..256).map(|i| -1.0 - (i as f32) / 100.0));
    x
}

fn check_quantize<B: phiq::kernels::quant::Quantize>(py: &Path, dir: &Path) {
    use phiq::kernels::format::blocks::{block_bytes, zeroed_blocks};
    let x = quantize_inputs();
    let mut ours = zeroed_blocks::<B>(x.len() / B::QK);
    B::quantize_row(&x, &mut ours);
    let theirs = gguf_py_quantize(py, B::TYPE, &x, dir);
    let ours = block_bytes(&ours);
    assert_eq!(ours.len(), theirs.len(), "{}", B::TYPE);
    let size = B::TYPE.type_size() as usize;
    for (i, (a, b)) in ours.chunks(size).zip(theirs.chunks(size)).enumerate() {
        assert_eq!(a, b, "{}: block {i} differs from gguf-py", B::TYPE);
    }
}

#[test]
fn quantize_matches_gguf_py_bit_for_bit() {
    use phiq::kernels::format::blocks::*;
    use phiq::kernels::half::{bf16, f16};
    let Some(py) = reference_python() else { return };
    let dir = std::env::temp_dir().join(format!("phiq-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    check_quantize::<f16>(&py, &dir);
    check_quantize::<bf16>(&py, &dir);
    check_quantize::<BlockQ4_0>(&py, &dir);
    check_quantize::<BlockQ4_1>(&py, &dir);
    check_quantize::<BlockQ5_0>(&py, &dir);
    check_quantize::<BlockQ5_1>(&py, &dir);
    check_quantize::<BlockQ8_0>(&py, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}
