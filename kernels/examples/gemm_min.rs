//! GEMM timing that tolerates a busy machine: the *minimum* over several runs of one
//! `matmul` at Phi-4's attn_qkv shape (5120 → 7680) per type, ISA and token count, all
//! threads (rayon's default), for both batch paths — one dot product per output
//! (`MatmulScratch::dots_only`, the path before the tile kernels) and the tile kernels —
//! alternating run by run. Figures are GOP/s with 2·n_in·n_out operations per token.
//!
//!   cargo run --release -p phiq-kernels --example gemm_min [-- TYPES [TOKENS [RUNS]]]
//!
//! e.g. `-- Q4_0,Q8_0 512 5`; `PHIQ_ISA=avx512` times one path only. The weights are random bits with every 16-bit word a small
//! normal f16 (as the criterion bench makes them): the speed does not depend on values.
use std::time::Instant;

use phiq_kernels::dispatch::Isa;
use phiq_kernels::matmul::{matmul, MatmulScratch};
use phiq_kernels::GgmlType;

fn weight_words(ty: GgmlType, n_in: usize, n_out: usize) -> (Vec<u64>, usize) {
    let len = n_in * n_out / ty.block_size() as usize * ty.type_size() as usize;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let words = (0..len.div_ceil(8))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0x03ff_03ff_03ff_03ff) | 0x1c00_1c00_1c00_1c00
        })
        .collect();
    (words, len)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let types: Vec<GgmlType> = args
        .get(1)
        .map(|s| s.as_str())
        .unwrap_or("Q4_0,Q8_0,Q4_K,Q6_K")
        .split(',')
        .map(|n| {
            phiq_kernels::formats::TYPE_TABLE
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(n))
                .unwrap_or_else(|| panic!("unknown type {n}"))
                .ty
        })
        .collect();
    let tokens: Vec<usize> = args
        .get(2)
        .map(|s| s.as_str())
        .unwrap_or("512")
        .split(',')
        .map(|t| t.parse().expect("token count"))
        .collect();
    let runs: usize = args.get(3).map_or(5, |r| r.parse().expect("runs"));
    let (n_in, n_out) = (5120, 7680);
    // PHIQ_ISA picks one path; by default every SIMD path.
    let isas: Vec<Isa> = match std::env::var("PHIQ_ISA") {
        Ok(name) if !name.is_empty() => vec![Isa::from_name(&name).expect("PHIQ_ISA")],
        _ => Isa::all_supported().into_iter().skip(1).collect(),
    };
    println!(
        "attn_qkv {n_in}->{n_out}, {} threads, min of {runs}",
        rayon::current_num_threads()
    );
    for &ty in &types {
        let (words, len) = weight_words(ty, n_in, n_out);
        // SAFETY: a u64 buffer viewed as its bytes (no padding; u8 alignment 1).
        let w = unsafe {
            &std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8)[..len]
        };
        for &n_tokens in &tokens {
            let x: Vec<f32> = (0..n_in * n_tokens)
                .map(|i| (i as f32 * 0.1).cos())
                .collect();
            let mut y = vec![0f32; n_out * n_tokens];
            for isa in isas.iter().copied() {
                // Before (one dot product per output) and after (tile kernels), alternating
                // run by run so both see the same machine.
                let mut paths = [
                    ("dots", MatmulScratch::dots_only(), f64::MAX),
                    ("tiles", MatmulScratch::new(), f64::MAX),
                ];
                for (_, scratch, _) in paths.iter_mut() {
                    matmul(ty, w, n_in, &x, &mut y, scratch, isa).unwrap(); // warm-up
                }
                for _ in 0..runs {
                    for (_, scratch, best) in paths.iter_mut() {
                        let t = Instant::now();
                        matmul(ty, w, n_in, &x, &mut y, scratch, isa).unwrap();
                        *best = best.min(t.elapsed().as_secs_f64());
                    }
                }
                let ops = 2.0 * (n_in * n_out * n_tokens) as f64;
                let gops = |best: f64| ops / best / 1e9;
                println!(
                    "{:6} {:4} tok {:12} dots {:8.1} GOP/s  tiles {:8.1} GOP/s  ({:.2} ms)  x{:.1}",
                    ty.name(),
                    n_tokens,
                    isa.to_string(),
                    gops(paths[0].2),
                    gops(paths[1].2),
                    paths[1].2 * 1e3,
                    paths[0].2 / paths[1].2
                );
            }
        }
    }
}
