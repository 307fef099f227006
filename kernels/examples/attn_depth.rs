//! Decode-step attention at depth: one query token, Phi-4's heads (40 query heads on 10
//! KV heads of 128), over DEPTH cached positions of an f16 cache, on every ISA level the
//! CPU has; median of RUNS calls, with the KV bytes read per call as GB/s. Each call
//! reads a different layer's cache (a ring of 40, as decode does), so K and V come from
//! memory, not cache.
//!
//!   cargo run --release -p phiq-kernels --example attn_depth [-- DEPTH [RUNS [N_KV_HEAD]]]
//!
//! `PHIQ_ISA=avx512` times one level only; `POSITION_MAJOR=1` lays the cache out
//! `[position][kv_head][head_dim]` instead of phiq's `[kv_head][position][head_dim]`.
//! `TOKENS=N`: a prompt's attention instead, N query tokens ending at position DEPTH,
//! in one call (as a prompt batch runs it) and one token at a time, alternating: median
//! ms per layer of each and their ratio. `CACHE=q8_0` (or `q4_0`, `bf16`): keys and values
//! of that type instead of f16 (the same values, quantized).
use std::time::Instant;

use half::f16;
use phiq_kernels::attention::{attention, AttnShape, KvLayout};
use phiq_kernels::format::blocks::{BlockQ4_0, BlockQ8_0};
use phiq_kernels::isa::Isa;
use phiq_kernels::select::SelectKv;
use phiq_kernels::GgmlType;

fn main() {
    match std::env::var("CACHE").as_deref() {
        Err(_) | Ok("f16") => bench::<f16>(GgmlType::F16),
        Ok("bf16") => bench::<half::bf16>(GgmlType::BF16),
        Ok("q8_0") => bench::<BlockQ8_0>(GgmlType::Q8_0),
        Ok("q4_0") => bench::<BlockQ4_0>(GgmlType::Q4_0),
        Ok(other) => panic!("CACHE={other}: f16, bf16, q8_0 or q4_0"),
    }
}

fn bench<T: SelectKv>(ty: GgmlType) {
    let args: Vec<String> = std::env::args().collect();
    let depth: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(80);
    let n_kv: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let layers: usize = std::env::var("LAYERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let (n_head, hd) = (4 * n_kv, 128);
    let n = (depth + 1) * n_kv * hd;
    // The caches in 2 MiB pages, as phiq allocates them (PHIQ_SMALL_PAGES=1: 4 KiB).
    let small = std::env::var_os("PHIQ_SMALL_PAGES").is_some();
    // Page sizes are a Linux hint (madvise).
    #[cfg(not(target_os = "linux"))]
    let _ = small;
    let elems = n / T::QK;
    let size = elems * std::mem::size_of::<T>();
    let mut maps: Vec<memmap2::MmapMut> = (0..2 * layers)
        .map(|c| {
            let mut m = memmap2::MmapMut::map_anon(size).expect("anonymous mapping");
            #[cfg(target_os = "linux")]
            if !small {
                m.advise(memmap2::Advice::HugePage).expect("madvise");
            }
            let x: Vec<f32> = (0..n)
                .map(|i| f16::from_f32(((i * 7 + c * 13) % 97) as f32 / 97.0 - 0.5).to_f32())
                .collect();
            phiq_kernels::dynamic::quantize(ty, &x, &mut m).expect("quantize the cache");
            m
        })
        .collect();
    let caches: Vec<&[T]> = maps
        .iter_mut()
        // SAFETY: `elems` values of T (plain old data, alignment ≤ 2) written above; the
        // mapping is page-aligned.
        .map(|m| unsafe { std::slice::from_raw_parts(m.as_ptr().cast::<T>(), elems) })
        .collect();
    let q: Vec<f32> = (0..n_head * hd).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut out = vec![0f32; q.len()];
    let shape = AttnShape {
        n_head,
        n_kv_head: n_kv,
        head_dim: hd,
        n_past: depth,
        scale: 1.0 / (hd as f32).sqrt(),
        window: 0,
        layout: if std::env::var_os("POSITION_MAJOR").is_some() {
            KvLayout::position_major(n_kv, hd)
        } else {
            KvLayout::head_major(depth + 1, hd)
        },
    };
    let bytes = 2 * size;
    println!(
        "depth {depth}, {ty:?} cache, {} threads, median of {runs} calls (one layer each)",
        rayon::current_num_threads()
    );
    let isas = match std::env::var("PHIQ_ISA") {
        Ok(_) => vec![Isa::global().expect("PHIQ_ISA")],
        Err(_) => Isa::all_supported(),
    };
    let tokens: usize = std::env::var("TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    if tokens > 1 {
        let qn: Vec<f32> = (0..tokens * n_head * hd)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let mut outn = vec![0f32; qn.len()];
        let base = AttnShape {
            n_past: depth + 1 - tokens,
            ..shape
        };
        let row = n_head * hd;
        for isa in isas {
            let (mut together, mut alone) = (vec![], vec![]);
            for r in 0..runs {
                let (k, v) = (caches[2 * (r % layers)], caches[2 * (r % layers) + 1]);
                let s = Instant::now();
                attention(&qn, k, v, base, &mut outn, isa);
                together.push(s.elapsed().as_secs_f64());
                let (k, v) = (
                    caches[2 * ((r + 1) % layers)],
                    caches[2 * ((r + 1) % layers) + 1],
                );
                let s = Instant::now();
                for t in 0..tokens {
                    let one = AttnShape {
                        n_past: base.n_past + t,
                        ..base
                    };
                    attention(&qn[t * row..(t + 1) * row], k, v, one, &mut out, isa);
                }
                alone.push(s.elapsed().as_secs_f64());
            }
            let med = |t: &mut Vec<f64>| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            };
            let (a, b) = (med(&mut together), med(&mut alone));
            println!(
                "{:12} {tokens} tokens at depth {depth}: together {:8.3} ms/layer, one at a time {:8.3} ms/layer: {:.2}x",
                isa.to_string(),
                a * 1e3,
                b * 1e3,
                b / a
            );
        }
        return;
    }
    for isa in isas {
        let mut t = vec![];
        for r in 0..runs {
            let (k, v) = (caches[2 * (r % layers)], caches[2 * (r % layers) + 1]);
            let s = Instant::now();
            attention(&q, k, v, shape, &mut out, isa);
            t.push(s.elapsed().as_secs_f64());
        }
        t.sort_by(f64::total_cmp);
        let m = t[t.len() / 2];
        println!(
            "{:12} {:8.3} ms/layer  {:6.1} ms/token (40 layers)  {:5.1} GB/s",
            isa.to_string(),
            m * 1e3,
            m * 1e3 * layers as f64,
            bytes as f64 / m / 1e9
        );
    }
}
