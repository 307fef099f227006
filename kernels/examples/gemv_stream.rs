//! Matrix × vector from memory (decode's access pattern): a ring of weight matrices much
//! larger than the caches, each product reading a different one, timed against a parallel
//! read of the same bytes measured in the same run (the bandwidth roofline). Compares the
//! multi-row kernels with one dot product per row, alternating run by run; medians.
//!
//!   cargo run --release -p phiq-kernels --example gemv_stream [-- TYPES [SHAPE [RUNS]]]
//!
//! e.g. `-- Q4_0,Q4_K,Q8_0 ffn_up 15` (shapes: attn_qkv attn_output ffn_up ffn_down output).
//! All of rayon's threads (RAYON_NUM_THREADS to change).
use std::time::Instant;

use phiq_kernels::dispatch::Isa;
use phiq_kernels::matmul::{matmul, MatmulScratch};
use phiq_kernels::GgmlType;
use rayon::prelude::*;

const SHAPES: [(&str, usize, usize); 5] = [
    ("attn_qkv", 5120, 7680),
    ("attn_output", 5120, 5120),
    ("ffn_up", 5120, 35840),
    ("ffn_down", 17920, 5120),
    ("output", 5120, 100352),
];
/// Total bytes of the ring: far beyond any cache.
const RING_BYTES: usize = 1 << 30;

fn weight_words(ty: GgmlType, len: usize, seed: u64) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..len.div_ceil(8))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every 16-bit word a small normal f16, so scales are finite whatever the type.
            let _ = ty;
            (x & 0x03ff_03ff_03ff_03ff) | 0x1c00_1c00_1c00_1c00
        })
        .collect()
}

fn bytes(words: &[u64], len: usize) -> &[u8] {
    // SAFETY: u64 storage viewed as its bytes, within its length.
    unsafe { &std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8)[..len] }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let types: Vec<GgmlType> = args
        .get(1)
        .map(|s| s.as_str())
        .unwrap_or("Q4_0,Q4_K,Q6_K,Q8_0")
        .split(',')
        .map(|n| {
            phiq_kernels::formats::TYPE_TABLE
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(n))
                .unwrap_or_else(|| panic!("unknown type {n}"))
                .ty
        })
        .collect();
    let shape = args.get(2).map(|s| s.as_str()).unwrap_or("ffn_up");
    let (_, n_in, n_out) = *SHAPES
        .iter()
        .find(|s| s.0 == shape)
        .unwrap_or_else(|| panic!("unknown shape {shape}"));
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(15);
    let isa = Isa::global().expect("PHIQ_ISA");
    println!(
        "{shape} {n_in}→{n_out}, {} threads, {isa}, median of {runs} passes over a {} MiB ring",
        rayon::current_num_threads(),
        RING_BYTES >> 20
    );
    println!("| type | read GB/s | multi-row GB/s | % of read | one dot/row GB/s | % of read |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for ty in types {
        let len = n_in * n_out / ty.block_size() as usize * ty.type_size() as usize;
        let copies = RING_BYTES.div_ceil(len).max(2);
        let ring: Vec<Vec<u64>> = (0..copies)
            .map(|i| weight_words(ty, len, i as u64))
            .collect();
        let x: Vec<f32> = (0..n_in).map(|i| (i as f32 * 0.1).cos()).collect();
        let mut y = vec![0f32; n_out];
        let mut scratch = [MatmulScratch::new(), MatmulScratch::single_rows()];
        let (mut read, mut multi, mut single) = (vec![], vec![], vec![]);
        for run in 0..=runs {
            // The same bytes read with all threads: the roofline of this run.
            let t = Instant::now();
            let s: u64 = ring
                .par_iter()
                .flat_map(|m| m.par_chunks(1 << 14))
                .map(|c| c.iter().fold(0u64, |a, &v| a ^ v))
                .reduce(|| 0, |a, b| a ^ b);
            std::hint::black_box(s);
            let r = (copies * len) as f64 / t.elapsed().as_secs_f64() / 1e9;
            for (k, sc) in scratch.iter_mut().enumerate() {
                let t = Instant::now();
                for m in &ring {
                    matmul(ty, bytes(m, len), n_in, &x, &mut y, sc, isa).unwrap();
                }
                let g = (copies * len) as f64 / t.elapsed().as_secs_f64() / 1e9;
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
