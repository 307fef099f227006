//! Matrix × vector from memory (decode's access pattern): a ring of weight matrices much
//! larger than the caches, each product reading a different one, timed against a parallel
//! read of the same bytes measured in the same run (the bandwidth roofline). Compares the
//! multi-row kernels with one dot product per row, alternating run by run; medians.
//!
//!   cargo run --release -p phiq-kernels --example gemv_stream [-- TYPES [SHAPE [RUNS]]]
//!
//! e.g. `-- Q4_0,Q4_K,Q8_0 ffn_up 15` (shapes: attn_qkv attn_output ffn_up ffn_down output,
//! or IN`x`OUT). `PHIQ_RING_MIB=N` sets the ring's size (default 1024): e.g. 1 with shape
//! `5120x64` keeps the matrices in L2, 16 in L3, which gives the kernels' rate without
//! DRAM at the same thread count.
//! The products run on a `par::Team` of as many threads as rayon's pool (RAYON_NUM_THREADS
//! to change), as phiq's forward pass does; the read on rayon's pool. The ring lives in an anonymous
//! mapping with 2 MiB pages (MADV_HUGEPAGE), as phiq maps a model; `PHIQ_SMALL_PAGES=1`
//! keeps 4 KiB pages.
use std::time::Instant;

use phiq_kernels::dynamic::matmul;
use phiq_kernels::isa::Isa;
use phiq_kernels::matmul::MatmulScratch;
use phiq_kernels::par::Team;
use rayon::prelude::*;

mod common;

/// Total bytes of the ring: by default far beyond any cache.
fn ring_bytes() -> usize {
    std::env::var("PHIQ_RING_MIB")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1024)
        << 20
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let types = common::types(args.get(1), "Q4_0,Q4_K,Q6_K,Q8_0");
    let shape = args.get(2).map_or("ffn_up", |s| s.as_str());
    let (n_in, n_out) = common::shape(shape);
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(15);
    let isa = Isa::global().expect("PHIQ_ISA");
    let team = Team::new(rayon::current_num_threads(), "gemv").expect("threads");
    println!(
        "{shape} {n_in}→{n_out}, {} threads, {isa}, median of {runs} passes over a {} MiB ring ({} pages)",
        rayon::current_num_threads(),
        ring_bytes() >> 20,
        if std::env::var_os("PHIQ_SMALL_PAGES").is_some() { "4 KiB" } else { "2 MiB" }
    );
    println!("| type | read GB/s | multi-row GB/s | % of read | one dot/row GB/s | % of read |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for ty in types {
        let len = common::matrix_bytes(ty, n_in, n_out);
        let copies = ring_bytes().div_ceil(len).max(2);
        let small = std::env::var_os("PHIQ_SMALL_PAGES").is_some();
        // Page sizes are a Linux hint (madvise).
        #[cfg(not(target_os = "linux"))]
        let _ = small;
        let mut map = memmap2::MmapMut::map_anon(copies * len).expect("anonymous mapping");
        #[cfg(target_os = "linux")]
        if !small {
            map.advise(memmap2::Advice::HugePage).expect("madvise");
        }
        for (i, m) in map.chunks_mut(len).enumerate() {
            m.copy_from_slice(common::bytes(&common::weight_words(len, i as u64), len));
        }
        let ring: Vec<&[u8]> = map.chunks(len).collect();
        let x: Vec<f32> = (0..n_in).map(|i| (i as f32 * 0.1).cos()).collect();
        let mut y = vec![0f32; n_out];
        let mut scratch = [MatmulScratch::new(), MatmulScratch::single_rows()];
        let (mut read, mut multi, mut single) = (vec![], vec![], vec![]);
        // A small ring is passed over several times per timing (≥ 256 MiB read).
        let laps = (256usize << 20).div_ceil(copies * len);
        for run in 0..=runs {
            // The same bytes read with all threads: the roofline of this run.
            let t = Instant::now();
            let s: u64 = (0..laps)
                .into_par_iter()
                .flat_map(|_| ring.par_iter())
                .flat_map(|m| m.par_chunks(1 << 17))
                .map(|c| {
                    c.chunks_exact(8)
                        .fold(0u64, |a, v| a ^ u64::from_ne_bytes(v.try_into().unwrap()))
                })
                .reduce(|| 0, |a, b| a ^ b);
            std::hint::black_box(s);
            let r = (laps * copies * len) as f64 / t.elapsed().as_secs_f64() / 1e9;
            for (k, sc) in scratch.iter_mut().enumerate() {
                let t = Instant::now();
                team.install(|| {
                    for _ in 0..laps {
                        for m in &ring {
                            matmul(ty, m, n_in, &x, &mut y, sc, isa).unwrap();
                        }
                    }
                });
                let g = (laps * copies * len) as f64 / t.elapsed().as_secs_f64() / 1e9;
                if run > 0 {
                    [&mut multi, &mut single][k].push(g);
                }
            }
            if run > 0 {
                read.push(r);
            }
        }
        let (r, m, s) = (median(read), median(multi), median(single));
        println!(
            "| {} | {r:.1} | {m:.1} | {:.0}% | {s:.1} | {:.0}% |",
            ty.name(),
            100.0 * m / r,
            100.0 * s / r
        );
    }
}
