//! Attention: the driver (online softmax over chunks, grouped-query heads, sliding
//! windows, both cache layouts) and the AVX-512 whole-group kernel, on every ISA, against
//! a naive f64 attention with a full softmax ([`phiq_kernels::reference::attention`]).

mod common;

use common::signal;
use phiq_kernels::attention::{attention, AttnShape, KvLayout};
use phiq_kernels::half::f16;
use phiq_kernels::isa::Isa;
use phiq_kernels::reference::attention::{attention_f64, NaiveShape};

#[test]
fn attention_matches_naive_softmax() {
    // Head shapes: the tiny models' (group 4, head_dim 32), Phi-4's (group 4, 128: two
    // 64-dimension slices in the AVX-512 kernel), and a group of 5 with head_dim 48 (a
    // 4 + 1 head split and 16-dimension slices), and 8 heads on one KV head.
    // (4, 4, 32): one head per KV head, so a prompt's jobs hold 8 tokens side by side.
    for (n_head, n_kv, hd) in [(8, 2, 32), (8, 2, 128), (10, 2, 48), (8, 1, 16), (4, 4, 32)] {
        attention_case(n_head, n_kv, hd);
    }
}

fn attention_case(n_head: usize, n_kv: usize, hd: usize) {
    // Prompts of 8+ tokens go through the query-blocked jobs (their last block short with
    // 9 and 70 tokens, their rows' ends across chunk boundaries at 60 + 9).
    let cases = [
        (0, 1, 0),
        (0, 7, 0),
        (5, 1, 0),
        (130, 3, 0),
        (200, 70, 0),
        (60, 9, 0),
        (0, 33, 0),
    ];
    // Sliding windows: shorter than, across and longer than the chunk of 64 keys.
    let windows = [
        (0, 7, 3),
        (5, 1, 1),
        (130, 3, 100),
        (200, 70, 65),
        (10, 5, 1000),
    ];
    for (n_past, n_tokens, window) in cases.into_iter().chain(windows) {
        let total = n_past + n_tokens;
        let q: Vec<f32> = signal(n_tokens * n_head * hd, 1);
        let k: Vec<f16> = signal(total * n_kv * hd, 2)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let v: Vec<f16> = signal(total * n_kv * hd, 4)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();
        let naive = NaiveShape {
            n_head,
            n_kv_head: n_kv,
            head_dim: hd,
            n_past,
            scale,
            window,
        };
        let want = attention_f64(&q, &k, &v, naive);
        // The same rows position-major, and head-major in a cache with room for 3 more
        // positions (as a session's cache, larger than what is used).
        let n_ctx = total + 3;
        let head_major = |x: &[f16]| {
            let mut y = vec![f16::from_f32(9.0); n_kv * n_ctx * hd];
            for j in 0..total {
                for h in 0..n_kv {
                    y[(h * n_ctx + j) * hd..][..hd]
                        .copy_from_slice(&x[(j * n_kv + h) * hd..][..hd]);
                }
            }
            y
        };
        let layouts = [
            (KvLayout::position_major(n_kv, hd), k.clone(), v.clone()),
            (
                KvLayout::head_major(n_ctx, hd),
                head_major(&k),
                head_major(&v),
            ),
        ];
        for ((layout, k, v), isa) in layouts
            .iter()
            .flat_map(|l| Isa::all_variants().into_iter().map(move |i| (l, i)))
        {
            let mut out = vec![0f32; q.len()];
            let shape = AttnShape {
                n_head,
                n_kv_head: n_kv,
                head_dim: hd,
                n_past,
                scale,
                window,
                layout: *layout,
            };
            attention(&q, k, v, shape, &mut out, isa);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                // f32 accumulation over ≤ 270 positions of values ≤ ~3: a few 1e-6.
                assert!(
                    (*a as f64 - b).abs() < 2e-5,
                    "{isa} {layout:?} heads {n_head}/{n_kv}×{hd} n_past={n_past} window={window} [{i}]: {a} vs {b}"
                );
            }
            // A prompt's tokens computed together equal each token computed alone (as
            // decoding computes it) to the last bits: side by side, the softmax sums
            // add the same terms in another order.
            let row = n_head * hd;
            for t in 0..n_tokens {
                let mut one = vec![0f32; row];
                let shape = AttnShape {
                    n_past: n_past + t,
                    ..shape
                };
                attention(&q[t * row..(t + 1) * row], k, v, shape, &mut one, isa);
                assert!(
                    one.iter()
                        .zip(&out[t * row..(t + 1) * row])
                        .all(|(a, b)| (a - b).abs() <= 1e-6 * a.abs().max(1.0)),
                    "{isa} {layout:?} heads {n_head}/{n_kv}×{hd} n_past={n_past} window={window}: token {t} alone differs"
                );
            }
        }
    }
}

/// Every combination of key and value cache types (f32, f16, bf16, Q8_0, Q4_0, as
/// llama.cpp's `-ctk`/`-ctv`) on every ISA, against the naive f64 attention over what the
/// kernels are given: the cache's rows dequantized, and the query as the path sees it
/// (the portable loop rounds it to the key type's activation format, Q8_0 for Q8_0 and
/// Q4_0 keys, whose scores are then int8 dot products; the AVX-512 kernel keeps it f32). So the only differences left are f32 rounding: a wrong block, nibble or
/// scale anywhere shows up as an error of order 1.
#[test]
fn every_cache_type_pair_matches_naive_softmax_over_its_values() {
    use phiq_kernels::format::blocks::{BlockQ4_0, BlockQ8_0};
    use phiq_kernels::half::bf16;
    macro_rules! pairs {
        ($($K:ty),*) => {$(
            pairs!(@v $K; f32, f16, bf16, BlockQ8_0, BlockQ4_0);
        )*};
        (@v $K:ty; $($V:ty),*) => {$(
            for (n_head, n_kv, hd) in [(8, 2, 32), (8, 2, 128), (4, 1, 64), (6, 2, 96)] {
                typed_case::<$K, $V>(n_head, n_kv, hd);
            }
        )*};
    }
    pairs!(f32, f16, bf16, BlockQ8_0, BlockQ4_0);
}

fn typed_case<K: phiq_kernels::select::SelectKv, V: phiq_kernels::select::SelectKv>(
    n_head: usize,
    n_kv: usize,
    hd: usize,
) {
    use phiq_kernels::format::blocks::Block;
    use phiq_kernels::format::unpack::Dequantize;
    use phiq_kernels::quant::Quantize;

    /// Rows of `hd` values stored as `T` (head-major, `n_ctx` positions per head), and
    /// the values they hold, position-major, for the naive attention.
    fn store<T: phiq_kernels::attention::KvElem>(
        x: &[f32],
        total: usize,
        n_ctx: usize,
        n_kv: usize,
        hd: usize,
    ) -> (Vec<T>, Vec<f32>) {
        let row = hd / T::QK;
        let mut cache = vec![T::default(); n_kv * n_ctx * row];
        let mut held = vec![0f32; x.len()];
        for j in 0..total {
            for h in 0..n_kv {
                let src = &x[(j * n_kv + h) * hd..][..hd];
                let dst = &mut cache[(h * n_ctx + j) * row..][..row];
                T::store(src, dst);
                for (b, out) in dst
                    .iter()
                    .zip(held[(j * n_kv + h) * hd..][..hd].chunks_exact_mut(T::QK))
                {
                    b.dequantize(out);
                }
            }
        }
        (cache, held)
    }

    for (n_past, n_tokens, window) in [(0, 1, 0), (0, 5, 0), (130, 3, 0), (70, 2, 20)] {
        let total = n_past + n_tokens;
        let n_ctx = total + 2;
        let q: Vec<f32> = signal(n_tokens * n_head * hd, 11);
        let (k, k_held) = store::<K>(&signal(total * n_kv * hd, 12), total, n_ctx, n_kv, hd);
        let (v, v_held) = store::<V>(&signal(total * n_kv * hd, 14), total, n_ctx, n_kv, hd);
        // The query as the scores see it: rounded to the key type's activation format.
        let aqk = <K::Act as Block>::QK;
        let mut qa = vec![K::Act::default(); q.len() / aqk];
        K::Act::quantize_row(&q, &mut qa);
        let mut q_held = vec![0f32; q.len()];
        for (b, out) in qa.iter().zip(q_held.chunks_exact_mut(aqk)) {
            b.dequantize(out);
        }
        let scale = 1.0 / (hd as f32).sqrt();
        let naive = NaiveShape {
            n_head,
            n_kv_head: n_kv,
            head_dim: hd,
            n_past,
            scale,
            window,
        };
        let want_rounded =
            phiq_kernels::reference::attention::attention_f64_f32(&q_held, &k_held, &v_held, naive);
        let want_exact =
            phiq_kernels::reference::attention::attention_f64_f32(&q, &k_held, &v_held, naive);
        for isa in Isa::all_variants() {
            // The AVX-512 whole-group kernel widens the cache's values in registers and
            // keeps the query in f32; the portable loop rounds it for int8 dot products.
            let want = if K::attend::<V>(isa).is_some() {
                &want_exact
            } else {
                &want_rounded
            };
            let mut out = vec![0f32; q.len()];
            let shape = AttnShape {
                n_head,
                n_kv_head: n_kv,
                head_dim: hd,
                n_past,
                scale,
                window,
                layout: KvLayout::head_major(n_ctx, hd),
            };
            attention(&q, &k, &v, shape, &mut out, isa);
            for (i, (a, b)) in out.iter().zip(want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() < 5e-5,
                    "{isa} K {} V {} heads {n_head}/{n_kv}×{hd} n_past={n_past} window={window} [{i}]: {a} vs {b}",
                    K::NAME,
                    V::NAME,
                );
            }
        }
    }
}
