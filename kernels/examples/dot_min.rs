//! Quick kernel timing that tolerates a busy machine: the *minimum* over many runs of
//! one in-cache dot product per type and ISA (the minimum is the run that had the core
//! to itself). `cargo run --release -p phiq-kernels --example dot_min [-- TYPES]`, e.g.
//! `-- Q4_1,Q5_K` (comma-separated ggml type names; default the common Phi-4 types).
use std::time::Instant;

#[allow(dead_code)]
mod common;

use phiq_kernels::format::blocks::*;
use phiq_kernels::isa::Isa;
use phiq_kernels::quant::Quantize;
use phiq_kernels::select::Select;

const N: usize = 5120;

fn signal() -> Vec<f32> {
    (0..N)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect()
}

/// A row quantized from the signal.
fn quantized<W: Select + Quantize>() -> Vec<W> {
    let mut w = zeroed_blocks::<W>(N / W::QK);
    W::quantize_row(&signal(), &mut w);
    w
}

/// A row of pseudo-random blocks (the IQ1–IQ3 types, which phiq does not quantize to):
/// every field random except the f16 scale at offset 0, set to 1/64 (IQ1_M keeps its
/// scale in the top nibbles of `scales`: random there, harmless for timing).
fn random<W: Select>() -> Vec<W> {
    let size = std::mem::size_of::<W>();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes: Vec<u8> = (0..N / W::QK * size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    if W::TYPE != phiq_kernels::GgmlType::IQ1_M {
        for b in bytes.chunks_exact_mut(size) {
            b[..2].copy_from_slice(&half::f16::from_f32(1.0 / 64.0).to_bits().to_le_bytes());
        }
    }
    blocks_from_bytes(&bytes)
}

fn run<W: Select>(w: Vec<W>) {
    let mut a = zeroed_blocks::<W::Act>(N / W::Act::QK);
    W::Act::quantize_row(&signal(), &mut a);
    let bytes = std::mem::size_of_val(&w[..]);
    for isa in Isa::all_supported().into_iter().skip(1) {
        let f = W::kernels(isa).dot;
        let mut best = f64::MAX;
        for _ in 0..2000 {
            let t = Instant::now();
            for _ in 0..10 {
                std::hint::black_box(f(std::hint::black_box(&w), std::hint::black_box(&a)));
            }
            best = best.min(t.elapsed().as_secs_f64() / 10.0);
        }
        println!(
            "{:7} {:12} {:8.1} ns  {:6.1} GB/s",
            W::TYPE.name(),
            isa.to_string(),
            best * 1e9,
            bytes as f64 / best / 1e9
        );
        // The multi-row kernel (matrix × vector), ROWS rows of the same data; a kernel
        // on prepared activations gets them prepared once, as matrix × vector does.
        if let Some(kernel) = W::kernels(isa).gemv {
            let rows = [&w[..]; phiq_kernels::contract::gemv::GEMV_ROWS];
            let prep = kernel.prepare(&a);
            let f = |rows, a: &[W::Act]| kernel.run(rows, a, &prep);
            let mut best = f64::MAX;
            for _ in 0..2000 {
                let t = Instant::now();
                for _ in 0..10 {
                    std::hint::black_box(f(std::hint::black_box(rows), std::hint::black_box(&a)));
                }
                best = best.min(t.elapsed().as_secs_f64() / 10.0);
            }
            let rb = bytes * rows.len();
            println!(
                "{:7} {:12} {:8.1} ns  {:6.1} GB/s  ({} rows)",
                W::TYPE.name(),
                isa.to_string(),
                best * 1e9,
                rb as f64 / best / 1e9,
                rows.len()
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let types = common::types(args.get(1), "Q4_0,Q8_0,Q4_K,Q5_K,Q6_K,IQ4_XS,BF16");
    for ty in types {
        let quantizable = phiq_kernels::with_quantizable_weight_block!(ty, B => {
            run::<B>(quantized::<B>());
            Ok::<(), phiq_kernels::KernelError>(())
        });
        if quantizable.is_err() {
            phiq_kernels::with_weight_block!(ty, B => {
                run::<B>(random::<B>());
                Ok::<(), phiq_kernels::KernelError>(())
            })
            .expect("type");
        }
    }
}
