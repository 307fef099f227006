//! How fast the access pattern of a matrix × vector product can read memory, with no
//! arithmetic: a 1 GiB ring (2 MiB pages), each of rayon's threads reading its half as
//! rows of ROW bytes, against a linear read of the same bytes in the same pass. Patterns:
//! - `4 rows`: groups of 4 rows read 64 bytes of each row in turn, as the multi-row
//!   kernels do, with the next group prefetched into L2 alongside (as they do);
//! - `no pf`: the same without the software prefetch;
//! - `pf 1/2`: prefetching only every other line of the next group (the hardware's
//!   adjacent-line prefetch to fetch the rest);
//! - `8 rows`: groups of 8 rows, every line of the next group prefetched;
//! - `1 row`: one row after the other (a linear walk), prefetching 4 rows ahead;
//! - `1 row, no pf`: the same walk with no software prefetch.
//!
//! The machine's bandwidth moves between ~35 and ~60 GB/s from minute to minute, so each
//! line is one pass of all patterns back to back.
//!
//!   cargo run --release -p phiq-kernels --example access_pattern [-- ROW [PASSES]]
//!
//! ROW defaults to 2880 (a Q4_0 row of 5120 elements).
use std::time::Instant;

use rayon::prelude::*;

/// Xor of the 8-byte words at `p .. p + 64`.
#[inline(always)]
fn line(m: &[u8], p: usize) -> u64 {
    m[p..p + 64]
        .chunks_exact(8)
        .fold(0, |a, v| a ^ u64::from_ne_bytes(v.try_into().unwrap()))
}

#[inline(always)]
fn prefetch(m: &[u8], p: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint and never faults; the address is computed with
    // wrapping arithmetic and not dereferenced.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(m.as_ptr().wrapping_add(p).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (m, p);
}

/// Reads `m` as groups of `rows` rows of `row` bytes, 64 bytes of each row in turn,
/// prefetching one line in `pf_every` of the next group in address order (0: none).
fn rows_interleaved(m: &[u8], row: usize, rows: usize, pf_every: usize) -> u64 {
    let group = rows * row;
    let mut acc = 0;
    for g in (0..m.len() / group).map(|g| g * group) {
        for o in (0..row - 63).step_by(64) {
            if pf_every > 0 {
                for k in 0..rows {
                    let l = o / 64 * rows + k;
                    if l.is_multiple_of(pf_every) {
                        prefetch(m, g + group + 64 * l);
                    }
                }
            }
            for r in 0..rows {
                acc ^= line(m, g + r * row + o);
            }
        }
    }
    acc
}

/// Reads `m` one row after the other, prefetching 4 rows ahead when `pf`.
fn rows_sequential(m: &[u8], row: usize, pf: bool) -> u64 {
    let mut acc = 0;
    for r in (0..m.len() / row).map(|r| r * row) {
        for o in (0..row - 63).step_by(64) {
            if pf {
                prefetch(m, r + 4 * row + o);
            }
            acc ^= line(m, r + o);
        }
    }
    acc
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let row: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2880);
    let passes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let len = 1usize << 30;
    let mut map = memmap2::MmapMut::map_anon(len).expect("anonymous mapping");
    #[cfg(target_os = "linux")]
    map.advise(memmap2::Advice::HugePage).expect("madvise");
    for (i, b) in map.iter_mut().enumerate() {
        *b = i as u8;
    }
    let threads = rayon::current_num_threads();
    let part = len / threads;
    println!("rows of {row} bytes, {threads} threads, best of 3 per pattern per pass");
    println!("| linear GB/s | 4 rows | no pf | pf 1/2 | 8 rows | 1 row | 1 row, no pf |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let time = |f: &(dyn Fn(&[u8]) -> u64 + Sync)| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let s = map.par_chunks(part).map(f).reduce(|| 0, |a, b| a ^ b);
                std::hint::black_box(s);
                len as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0f64, f64::max)
    };
    for _ in 0..passes {
        let linear = time(&|m| m.chunks_exact(64).fold(0, |a, c| a ^ line(c, 0)));
        let rates = [
            time(&|m| rows_interleaved(m, row, 4, 1)),
            time(&|m| rows_interleaved(m, row, 4, 0)),
            time(&|m| rows_interleaved(m, row, 4, 2)),
            time(&|m| rows_interleaved(m, row, 8, 1)),
            time(&|m| rows_sequential(m, row, true)),
            time(&|m| rows_sequential(m, row, false)),
        ];
        let cells: Vec<String> = rates
            .iter()
            .map(|x| format!("{:.0}%", 100.0 * x / linear))
            .collect();
        println!("| {linear:.1} | {} |", cells.join(" | "));
    }
}
