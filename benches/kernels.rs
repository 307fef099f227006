//! Kernel benchmarks at Phi-4's shapes (criterion).
//!
//!   cargo bench --bench kernels                     # everything (long)
//!   cargo bench --bench kernels -- 'gemv/Q4_0'      # a subset
//!
//! - `bandwidth`: a parallel read of 1 GiB, the memory roofline for the figures below.
//! - `gemv/<type>/<tensor>`: one token × a weight matrix. Throughput is bytes of weights
//!   read; each iteration uses a different copy of the matrix (a ring larger than the
//!   last-level cache), so the weights really come from memory.
//! - `gemm/<type>/<tensor>/<n_tokens>`: a batch; throughput is operations (2·n_out·n_in
//!   per token), so criterion's "elem/s" reads as op/s. Batches of 16 tokens or more take
//!   the tile kernels (kernels/src/contract/gemm.rs, kernels/src/gemm.rs).
//! - `gemm_dots/<type>/<tensor>/512`: the same 512-token batch with one dot product per
//!   output (`MatmulScratch::dots_only`), the path before the tile kernels.
//!
//! Threads: rayon's default (all cores); `RAYON_NUM_THREADS=1` for one.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use phiq::kernels::dynamic::matmul;
use phiq::kernels::isa::Isa;
use phiq::kernels::matmul::MatmulScratch;
use phiq::kernels::GgmlType;
use rayon::prelude::*;

/// Phi-4's matmul shapes: (name, n_in, n_out).
const SHAPES: [(&str, usize, usize); 5] = [
    ("attn_qkv", 5120, 7680),
    ("attn_output", 5120, 5120),
    ("ffn_up", 5120, 35840),
    ("ffn_down", 17920, 5120),
    ("output", 5120, 100352),
];

const TYPES: [GgmlType; 7] = [
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
    GgmlType::IQ4_XS,
    GgmlType::BF16,
];

/// The batch benchmarks' types: the legacy pair and the Q4_K_M mix.
const GEMM_TYPES: [GgmlType; 4] = [
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

/// Enough copies of a matrix that the ring exceeds any last-level cache (≥ 256 MiB).
const RING_BYTES: usize = 256 << 20;

/// Weight bytes of `ty` for `[n_out][n_in]`: random bits with every 2-byte scale-sized
/// word set to a small normal f16 (so no inf/NaN reaches the float units). The kernels'
/// speed does not depend on the values.
fn weight_bytes(ty: GgmlType, n_in: usize, n_out: usize, seed: u64) -> Vec<u64> {
    let n = n_in * n_out / ty.block_size() as usize * ty.type_size() as usize;
    let mut words = vec![0u64; n.div_ceil(8)];
    let mut x = seed | 1;
    for w in words.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Every 16-bit half-word an f16 in [2^-8, 2^-7): harmless as data or scale.
        *w = (x & 0x03ff_03ff_03ff_03ff) | 0x1c00_1c00_1c00_1c00;
    }
    words
}

fn bytes(words: &[u64], len: usize) -> &[u8] {
    // SAFETY: a u64 buffer viewed as its bytes (no padding; u8 alignment 1), `len` ≤ size.
    unsafe { &std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8)[..len] }
}

fn bandwidth(c: &mut Criterion) {
    let buf = vec![1u64; (1usize << 30) / 8];
    let mut g = c.benchmark_group("bandwidth");
    g.throughput(Throughput::Bytes((buf.len() * 8) as u64));
    g.sample_size(20);
    g.bench_function("read_1GiB", |b| {
        b.iter(|| {
            let s: u64 = buf
                .par_chunks(1 << 16)
                .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
                .sum();
            black_box(s)
        })
    });
    g.finish();
}

fn gemv(c: &mut Criterion) {
    let isa = Isa::global().expect("PHIQ_ISA");
    let mut g = c.benchmark_group("gemv");
    g.sample_size(20);
    for ty in TYPES {
        for (name, n_in, n_out) in SHAPES {
            let len = n_in * n_out / ty.block_size() as usize * ty.type_size() as usize;
            let copies = RING_BYTES.div_ceil(len).max(2);
            let ring: Vec<Vec<u64>> = (0..copies)
                .map(|i| weight_bytes(ty, n_in, n_out, 7 + i as u64))
                .collect();
            let x: Vec<f32> = (0..n_in).map(|i| (i as f32 * 0.1).cos()).collect();
            let mut y = vec![0f32; n_out];
            let mut scratch = MatmulScratch::new();
            let mut k = 0;
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(BenchmarkId::new(ty.name(), name), |b| {
                b.iter(|| {
                    k = (k + 1) % copies;
                    matmul(
                        ty,
                        bytes(&ring[k], len),
                        n_in,
                        &x,
                        &mut y,
                        &mut scratch,
                        isa,
                    )
                    .unwrap();
                    black_box(y[0])
                })
            });
        }
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    let isa = Isa::global().expect("PHIQ_ISA");
    let (name, n_in, n_out) = SHAPES[0];
    let x_for = |n_tokens: usize| -> Vec<f32> {
        (0..n_in * n_tokens)
            .map(|i| (i as f32 * 0.1).cos())
            .collect()
    };
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10);
    for ty in GEMM_TYPES {
        let len = n_in * n_out / ty.block_size() as usize * ty.type_size() as usize;
        let w = weight_bytes(ty, n_in, n_out, 3);
        for n_tokens in [8, 32, 128, 512] {
            let x = x_for(n_tokens);
            let mut y = vec![0f32; n_out * n_tokens];
            let mut scratch = MatmulScratch::new();
            g.throughput(Throughput::Elements((2 * n_in * n_out * n_tokens) as u64));
            g.bench_function(
                BenchmarkId::new(format!("{}/{name}", ty.name()), n_tokens),
                |b| {
                    b.iter(|| {
                        matmul(ty, bytes(&w, len), n_in, &x, &mut y, &mut scratch, isa).unwrap();
                        black_box(y[0])
                    })
                },
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("gemm_dots");
    g.sample_size(10);
    for ty in GEMM_TYPES {
        let len = n_in * n_out / ty.block_size() as usize * ty.type_size() as usize;
        let w = weight_bytes(ty, n_in, n_out, 3);
        let n_tokens = 512;
        let x = x_for(n_tokens);
        let mut y = vec![0f32; n_out * n_tokens];
        let mut scratch = MatmulScratch::dots_only();
        g.throughput(Throughput::Elements((2 * n_in * n_out * n_tokens) as u64));
        g.bench_function(
            BenchmarkId::new(format!("{}/{name}", ty.name()), n_tokens),
            |b| {
                b.iter(|| {
                    matmul(ty, bytes(&w, len), n_in, &x, &mut y, &mut scratch, isa).unwrap();
                    black_box(y[0])
                })
            },
        );
    }
    g.finish();
}

/// One row × one activation in cache: the kernels' raw speed, per ISA, one core.
fn dot_in_cache(c: &mut Criterion) {
    use phiq::kernels::format::blocks::*;
    use phiq::kernels::quant::Quantize;
    use phiq::kernels::select::Select;
    fn one<W: Select>(g: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>) {
        let n_in = 5120;
        let len = n_in / W::QK * std::mem::size_of::<W>();
        let w: Vec<W> = blocks_from_bytes(bytes(&weight_bytes(W::TYPE, n_in, 1, 1), len));
        let x: Vec<f32> = (0..n_in).map(|i| (i as f32 * 0.1).cos()).collect();
        let mut a = zeroed_blocks::<W::Act>(n_in / W::Act::QK);
        W::Act::quantize_row(&x, &mut a);
        g.throughput(Throughput::Bytes(len as u64));
        for isa in Isa::all_supported().into_iter().skip(1) {
            let f = W::kernels(isa).dot;
            g.bench_function(BenchmarkId::new(W::TYPE.name(), isa.to_string()), |b| {
                b.iter(|| black_box(f(black_box(&w), black_box(&a))))
            });
        }
    }
    let mut g = c.benchmark_group("dot_in_cache");
    one::<BlockQ4_0>(&mut g);
    one::<BlockQ8_0>(&mut g);
    one::<BlockQ4_K>(&mut g);
    one::<BlockQ5_K>(&mut g);
    one::<BlockQ6_K>(&mut g);
    one::<BlockIQ4_XS>(&mut g);
    one::<phiq::kernels::half::bf16>(&mut g);
    g.finish();
}

criterion_group!(benches, bandwidth, dot_in_cache, gemv, gemm);
criterion_main!(benches);
