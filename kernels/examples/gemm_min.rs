//! GEMM timing that tolerates a busy machine: the *minimum* over several runs of one
//! `matmul` at a Phi-4 shape (default attn_qkv, 5120 → 7680) per type, ISA and token
//! count, all threads (rayon's default), for both batch paths — one dot product per output
//! (`MatmulScratch::dots_only`, the path before the tile kernels) and the tile kernels —
//! alternating run by run. Figures are GOP/s with 2·n_in·n_out operations per token:
//! from wall-clock time, and from the threads' on-CPU time (robust when other processes
//! take turns on the cores, see `cpu_ns`).
//!
//!   cargo run --release -p phiq-kernels --example gemm_min [-- TYPES [TOKENS [RUNS [SHAPE]]]]
//!
//! e.g. `-- Q4_0,Q8_0 512 5 ffn_down` (shapes: attn_qkv attn_output ffn_up ffn_down
//! output); `PHIQ_ISA=avx512` times one path only. The weights are random bits with every
//! 16-bit word a small normal f16 (as the criterion bench makes them): the speed does not
//! depend on values. `TILES_ONLY=1` skips the dots path (for profiling the tiles).
use std::time::Instant;

mod common;

use phiq_kernels::dynamic::matmul;
use phiq_kernels::isa::Isa;
use phiq_kernels::matmul::MatmulScratch;

/// Nanoseconds this process's threads have spent on a CPU (`/proc/self/task/*/schedstat`,
/// Linux), or None elsewhere. Unlike wall-clock time it does not count time spent waiting
/// for a core another process holds; it does count rayon's brief idle spinning, so it errs
/// on the slow side.
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let types = common::types(args.get(1), "Q4_0,Q8_0,Q4_K,Q6_K");
    let tokens: Vec<usize> = args
        .get(2)
        .map(|s| s.as_str())
        .unwrap_or("512")
        .split(',')
        .map(|t| t.parse().expect("token count"))
        .collect();
    let runs: usize = args.get(3).map_or(5, |r| r.parse().expect("runs"));
    let shape = args.get(4).map_or("attn_qkv", |s| s.as_str());
    let (n_in, n_out) = common::shape(shape);
    // PHIQ_ISA picks one path; by default every SIMD path.
    let isas: Vec<Isa> = match std::env::var("PHIQ_ISA") {
        Ok(name) if !name.is_empty() => vec![Isa::from_name(&name).expect("PHIQ_ISA")],
        _ => Isa::all_supported().into_iter().skip(1).collect(),
    };
    let threads = rayon::current_num_threads();
    println!(
        "{shape} {n_in}->{n_out}, {threads} threads, min of {runs}: wall-clock GOP/s, and \
         on-CPU GOP/s (ops / (CPU time of all threads / {threads}))"
    );
    for &ty in &types {
        let len = common::matrix_bytes(ty, n_in, n_out);
        let words = common::weight_words(len, 0);
        let w = common::bytes(&words, len);
        for &n_tokens in &tokens {
            let x: Vec<f32> = (0..n_in * n_tokens)
                .map(|i| (i as f32 * 0.1).cos())
                .collect();
            let mut y = vec![0f32; n_out * n_tokens];
            for isa in isas.iter().copied() {
                // Before (one dot product per output) and after (tile kernels), alternating
                // run by run so both see the same machine.
                let mut paths = [
                    (MatmulScratch::dots_only(), f64::MAX, f64::MAX),
                    (MatmulScratch::new(), f64::MAX, f64::MAX),
                ];
                let first = usize::from(std::env::var_os("TILES_ONLY").is_some());
                for (scratch, _, _) in paths[first..].iter_mut() {
                    matmul(ty, w, n_in, &x, &mut y, scratch, isa).unwrap(); // warm-up
                }
                for _ in 0..runs {
                    for (scratch, wall, cpu) in paths[first..].iter_mut() {
                        let (t, c) = (Instant::now(), cpu_ns());
                        matmul(ty, w, n_in, &x, &mut y, scratch, isa).unwrap();
                        *wall = wall.min(t.elapsed().as_secs_f64());
                        if let (Some(c0), Some(c1)) = (c, cpu_ns()) {
                            *cpu = cpu.min((c1 - c0) as f64 * 1e-9 / threads as f64);
                        }
                    }
                }
                let ops = 2.0 * (n_in * n_out * n_tokens) as f64;
                let gops = |secs: f64| ops / secs / 1e9;
                println!(
                    "{:6} {:4} tok {:12} dots {:7.1}  tiles {:7.1} GOP/s  x{:4.1}   \
                     on-CPU: dots {:7.1}  tiles {:7.1} GOP/s  x{:4.1}",
                    ty.name(),
                    n_tokens,
                    isa.to_string(),
                    gops(paths[0].1),
                    gops(paths[1].1),
                    paths[0].1 / paths[1].1,
                    gops(paths[0].2),
                    gops(paths[1].2),
                    paths[0].2 / paths[1].2,
                );
            }
        }
    }
}
