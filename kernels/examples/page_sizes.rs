//! Read bandwidth from 2 MiB pages vs 4 KiB pages, interleaved in one process (the
//! machine's bandwidth drifts from minute to minute, so only back-to-back pairs compare).
//! Two 1 GiB anonymous mappings, one with MADV_HUGEPAGE and one with MADV_NOHUGEPAGE,
//! each read by all of rayon's threads in turn.
//!
//!   cargo run --release -p phiq-kernels --example page_sizes [-- PAIRS]
use std::time::Instant;

use rayon::prelude::*;

fn read(m: &[u8]) -> f64 {
    let t = Instant::now();
    let s = m
        .par_chunks(1 << 17)
        .map(|c| {
            c.chunks_exact(8)
                .fold(0u64, |a, v| a ^ u64::from_ne_bytes(v.try_into().unwrap()))
        })
        .reduce(|| 0, |a, b| a ^ b);
    std::hint::black_box(s);
    m.len() as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let pairs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let len = 1 << 30;
    let map = |huge: bool| {
        let mut m = memmap2::MmapMut::map_anon(len).expect("anonymous mapping");
        // Page sizes are a Linux hint (madvise); elsewhere both maps are the same.
        #[cfg(not(target_os = "linux"))]
        let _ = huge;
        #[cfg(target_os = "linux")]
        m.advise(if huge {
            memmap2::Advice::HugePage
        } else {
            memmap2::Advice::NoHugePage
        })
        .expect("madvise");
        m.fill(1);
        m
    };
    let (huge, small) = (map(true), map(false));
    println!("| pair | 2 MiB pages GB/s | 4 KiB pages GB/s | ratio |");
    println!("| ---: | ---: | ---: | ---: |");
    let mut ratios = vec![];
    for p in 0..=pairs {
        let (h, s) = (read(&huge), read(&small));
        if p > 0 {
            println!("| {p} | {h:.1} | {s:.1} | {:.2} |", h / s);
            ratios.push(h / s);
        }
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio {:.2}", ratios[ratios.len() / 2]);
}
