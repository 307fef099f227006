//! x86-64 SIMD kernels and their selection.
//!
//! `select_*` return the fastest kernel an [`Isa`] allows, as a safe `fn` pointer. The
//! pointers wrap `#[target_feature]` functions; that is sound because an `Isa` can only
//! be made after the CPU was checked for its features (see [`crate::dispatch`]), so a
//! wrapper is only ever handed out when its instructions exist.

// Without x86-64 kernels, the parts only they use are unused (aarch64 runs the scalar path).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use half::{bf16, f16};

use crate::blocks::*;
use crate::dispatch::{Isa, Level};
use crate::dot::DotFn;

#[cfg(target_arch = "x86_64")]
mod act;
#[cfg(target_arch = "x86_64")]
mod attend;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_dots;
#[cfg(target_arch = "x86_64")]
mod rows;

/// Weight rows per multi-row kernel call (see `rows.rs`).
pub const ROWS: usize = 4;

/// Declares `select_$name(isa) -> Option<…>` from a list of (minimum level, kernel
/// module) pairs, best first: `selector!` for the one-row dot kernels ([`DotFn`]),
/// `selector!(rows …)` for the multi-row ones ([`RowsFn`]). Both expand the `@fn` arm.
macro_rules! selector {
    ($select:ident, $W:ty, $kernel:ident, $levels:tt) => {
        selector!(@fn $select, DotFn<$W>, $kernel,
            (&[$W], &[<$W as crate::dot::VecDot>::Act]) -> f32, $levels);
    };
    (rows $select:ident, $W:ty, $kernel:ident, $levels:tt) => {
        selector!(@fn $select, RowsFn<$W>, $kernel,
            ([&[$W]; ROWS], &[<$W as crate::dot::VecDot>::Act]) -> [f32; ROWS], $levels);
    };
    (@fn $select:ident, $F:ty, $kernel:ident, ($Wt:ty, $At:ty) -> $ret:ty,
        [$($level:ident => $module:ident),*]) => {
        pub fn $select(isa: Isa) -> Option<$F> {
            #[cfg(target_arch = "x86_64")]
            {
                $(
                    if isa.level() >= Level::$level {
                        fn wrapper(w: $Wt, a: $At) -> $ret {
                            // SAFETY: only returned for an `Isa` at or above this level,
                            // which exists only on CPUs with these features (see module doc).
                            unsafe { $module::$kernel(w, a) }
                        }
                        return Some(wrapper);
                    }
                )*
            }
            let _ = isa;
            None
        }
    };
}

selector!(select_f32, f32, dot_f32, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_f16, f16, dot_f16, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_q4_0, BlockQ4_0, dot_q4_0, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_q8_0, BlockQ8_0, dot_q8_0, [Avx512 => avx512, Avx2 => avx2]);
selector!(select_q4_k, BlockQ4_K, dot_q4_k, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_q4_1, BlockQ4_1, dot_q4_1, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_q5_0, BlockQ5_0, dot_q5_0, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_q5_1, BlockQ5_1, dot_q5_1, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_iq4_nl, BlockIQ4_NL, dot_iq4_nl, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_iq4_xs, BlockIQ4_XS, dot_iq4_xs, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_q2_k, BlockQ2_K, dot_q2_k, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_q3_k, BlockQ3_K, dot_q3_k, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_q5_k, BlockQ5_K, dot_q5_k, [Avx512 => avx512_dots, Avx2 => avx2]);
selector!(select_q6_k, BlockQ6_K, dot_q6_k, [Avx512 => avx512_dots, Avx2 => avx2]);

/// [`ROWS`] weight rows × one activation row (see the `rows` module).
pub type RowsFn<W> = fn([&[W]; ROWS], &[<W as crate::dot::VecDot>::Act]) -> [f32; ROWS];

/// [`ROWS`] weight rows × one activation row and its prepared layout ([`PreparedRows`]).
pub type PreparedRowsFn<W> =
    fn([&[W]; ROWS], &[<W as crate::dot::VecDot>::Act], &[u8]) -> [f32; ROWS];

/// A multi-row kernel that reads, besides the activation blocks, a layout of them
/// written once per activation row and shared by every group of rows of the matrix: the
/// activations' rearrangement, the correction for the weights' offset and the scales
/// converted to f32, work that a [`RowsFn`] repeats for every group of [`ROWS`] rows.
pub struct PreparedRows<W: crate::dot::VecDot> {
    /// Bytes of the layout for an activation row of `n` blocks.
    pub bytes: fn(usize) -> usize,
    /// Writes the layout of the given activation row (into `bytes(a.len())` bytes).
    pub write: fn(&[W::Act], &mut [u8]),
    /// The kernel: weight rows, the activation row, and what `write` wrote for it
    /// (panics if that is shorter than `bytes(n)` for the `n` blocks it reads; other
    /// bytes than `write`'s give wrong sums, never unsafety).
    pub run: PreparedRowsFn<W>,
}

// Manual impls: a derive would require `W: Clone`.
impl<W: crate::dot::VecDot> Clone for PreparedRows<W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: crate::dot::VecDot> Copy for PreparedRows<W> {}

/// A type's multi-row kernel on some [`Isa`].
pub enum Rows<W: crate::dot::VecDot> {
    /// Reads the activation blocks as they are.
    Plain(RowsFn<W>),
    /// Reads a layout of the activations prepared once per row.
    Prepared(PreparedRows<W>),
}

impl<W: crate::dot::VecDot> Clone for Rows<W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: crate::dot::VecDot> Copy for Rows<W> {}

impl<W: crate::dot::VecDot> Rows<W> {
    /// The prepared layout of activation row `a` (empty for a plain kernel).
    pub fn prepare(&self, a: &[W::Act]) -> Vec<u8> {
        match self {
            Rows::Plain(_) => Vec::new(),
            Rows::Prepared(p) => {
                // Not zeros: a byte the writer skipped must not pass for a plausible value.
                let mut buf = vec![0xA5u8; (p.bytes)(a.len())];
                (p.write)(a, &mut buf);
                buf
            }
        }
    }

    /// Runs the kernel on `a` and its prepared layout (ignored by a plain kernel).
    #[inline]
    pub fn run(&self, rows: [&[W]; ROWS], a: &[W::Act], prep: &[u8]) -> [f32; ROWS] {
        match self {
            Rows::Plain(f) => f(rows, a),
            Rows::Prepared(p) => (p.run)(rows, a, prep),
        }
    }

    /// Runs the kernel once, preparing the activations first if it needs that (tests and
    /// examples; matrix × vector prepares once per activation row).
    pub fn call(&self, rows: [&[W]; ROWS], a: &[W::Act]) -> [f32; ROWS] {
        self.run(rows, a, &self.prepare(a))
    }
}

/// Wraps a [`RowsFn`] selector as a [`Rows`] one.
fn plain<W: crate::dot::VecDot>(f: Option<RowsFn<W>>) -> Option<Rows<W>> {
    f.map(Rows::Plain)
}

/// `select_$name(isa) -> Option<Rows<W>>`: the AVX-512 kernel `$module::$kernel` on
/// activations prepared by `$module::$write` (`$module::$bytes` per row), else the
/// selector `$plain` (for lower levels).
macro_rules! prepared_selector {
    ($select:ident, $W:ty, $module:ident :: { $kernel:ident, $write:ident, $bytes:ident }, $plain:expr) => {
        pub fn $select(isa: Isa) -> Option<Rows<$W>> {
            #[cfg(target_arch = "x86_64")]
            {
                if isa.level() >= Level::Avx512 {
                    fn run(
                        w: [&[$W]; ROWS],
                        a: &[<$W as crate::dot::VecDot>::Act],
                        prep: &[u8],
                    ) -> [f32; ROWS] {
                        // SAFETY: only returned for an `Isa` at or above AVX-512, which
                        // exists only on CPUs with these features (see module doc).
                        unsafe { $module::$kernel(w, a, prep) }
                    }
                    return Some(Rows::Prepared(PreparedRows {
                        bytes: $module::$bytes,
                        write: $module::$write,
                        run,
                    }));
                }
            }
            $plain(isa)
        }
    };
}

prepared_selector!(select_rows_q4_0, BlockQ4_0,
    avx512::{rows_q4_0, prep_q4_0, prep_q4_0_bytes}, select_rows_q4_0_avx2);

/// Q4_0 below AVX-512: the AVX2 kernel on its own prepared layout.
fn select_rows_q4_0_avx2(isa: Isa) -> Option<Rows<BlockQ4_0>> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx2 {
            fn run(w: [&[BlockQ4_0]; ROWS], a: &[BlockQ8_0], prep: &[u8]) -> [f32; ROWS] {
                // SAFETY: only returned for an `Isa` at or above AVX2, which exists only
                // on CPUs with avx2+fma+f16c (see module doc).
                unsafe { avx2::rows_q4_0_prepared(w, a, prep) }
            }
            return Some(Rows::Prepared(PreparedRows {
                bytes: avx2::prep_q4_0_bytes,
                write: avx2::prep_q4_0,
                run,
            }));
        }
    }
    let _ = isa;
    None
}
prepared_selector!(select_rows_q4_k, BlockQ4_K,
    avx512_dots::{rows_q4_k, prep_k4, prep_k4_bytes}, |isa| plain(select_rows_q4_k_plain(isa)));
prepared_selector!(select_rows_q5_k, BlockQ5_K,
    avx512_dots::{rows_q5_k, prep_k4, prep_k4_bytes}, |_| None);
prepared_selector!(select_rows_iq4_xs, BlockIQ4_XS,
    avx512_dots::{rows_iq4_xs, prep_iq4_xs, prep_iq4_xs_bytes}, |_| None);

selector!(rows select_rows_q8_0, BlockQ8_0, rows_q8_0, [Avx512 => avx512, Avx2 => avx2]);
selector!(rows select_rows_q4_k_plain, BlockQ4_K, rows_q4_k, [Avx2 => avx2]);
selector!(rows select_rows_q6_k, BlockQ6_K, rows_q6_k, [Avx512 => avx512_dots, Avx2 => avx2]);

/// BF16 × BF16: `vdpbf16ps` when the CPU has AVX512-BF16, else AVX2 widening.
pub fn select_bf16(isa: Isa) -> Option<DotFn<bf16>> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx512 && isa.has_avx512_bf16() {
            fn wrapper(w: &[bf16], a: &[bf16]) -> f32 {
                // SAFETY: `has_avx512_bf16` is true only when the CPU reported avx512bf16
                // (and the level check guarantees avx512f/vl).
                unsafe { avx512::dot_bf16(w, a) }
            }
            return Some(wrapper);
        }
        if isa.level() >= Level::Avx2 {
            fn wrapper(w: &[bf16], a: &[bf16]) -> f32 {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { avx2::dot_bf16(w, a) }
            }
            return Some(wrapper);
        }
    }
    let _ = isa;
    None
}

/// `acc += p · v` over an f16 row (attention's V accumulation).
pub type AxpyF16 = fn(&mut [f32], f32, &[f16]);

pub fn select_axpy_f16(isa: Isa) -> Option<AxpyF16> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx2 {
            fn wrapper(acc: &mut [f32], p: f32, v: &[f16]) {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { avx2::axpy_f16(acc, p, v) }
            }
            return Some(wrapper);
        }
    }
    let _ = isa;
    None
}

/// SwiGLU over a fused `[gate | up]` row (see [`crate::ops::swiglu`]).
pub type SwigluFn = fn(&[f32], &mut [f32]);

pub fn select_swiglu(isa: Isa) -> Option<SwigluFn> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx512 {
            fn wrapper(gate_up: &[f32], out: &mut [f32]) {
                let (gate, up) = gate_up.split_at(out.len());
                // SAFETY: level ≥ Avx512 means AVX-512 F/BW/VL, AVX2, FMA and F16C were
                // detected (see module doc).
                unsafe { act::swiglu_avx512(gate, up, out) }
            }
            return Some(wrapper);
        }
        if isa.level() >= Level::Avx2 {
            fn wrapper(gate_up: &[f32], out: &mut [f32]) {
                let (gate, up) = gate_up.split_at(out.len());
                // SAFETY: level ≥ Avx2 means avx2+fma were detected.
                unsafe { act::swiglu_avx2(gate, up, out) }
            }
            return Some(wrapper);
        }
    }
    let _ = isa;
    None
}

/// Attention for one (token, KV head) group over an f16 cache (see `attend.rs`):
/// AVX-512 only; other levels use the portable loop in [`crate::attention`].
pub fn select_attend_f16(isa: Isa) -> Option<crate::attention::AttendFn<f16>> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx512 {
            fn wrapper(job: crate::attention::AttendJob<'_, f16>) {
                job.check();
                // SAFETY: only returned for an `Isa` at level Avx512, which exists only on
                // CPUs with these features (see module doc); `check` passed.
                unsafe { attend::attend_f16(job) }
            }
            return Some(wrapper);
        }
    }
    let _ = isa;
    None
}

/// The tile kernel (see [`crate::tile`]) for weight type `W`: AVX-512 VNNI, else AVX2.
pub fn select_tile<W: crate::tile::TileScheme>(isa: Isa) -> Option<crate::tile::TileKernel<W>> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::tile::{PackedRows, TileJob, TileKernel};
        if isa.level() >= Level::Avx512 {
            fn wrapper<W: crate::tile::TileScheme>(job: TileJob<'_>) {
                job.check::<W>(avx512::TILE_ROWS);
                // SAFETY: only returned for an `Isa` at level Avx512, which exists only on
                // CPUs with these features (see module doc); `check` passed.
                unsafe { avx512::tile::<W>(job) }
            }
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn pack_simd<W: crate::tile::TileScheme>(
                p: &mut PackedRows,
                rows: &[&[W]],
                b0: usize,
                n: usize,
                tr: usize,
            ) {
                p.pack(rows, b0, n, tr)
            }
            fn pack<W: crate::tile::TileScheme>(
                p: &mut PackedRows,
                rows: &[&[W]],
                b0: usize,
                n: usize,
                tr: usize,
            ) {
                // SAFETY: as for `wrapper` (safe code, compiled for AVX-512).
                unsafe { pack_simd(p, rows, b0, n, tr) }
            }
            return Some(TileKernel::new(
                avx512::TILE_ROWS,
                0x80,
                wrapper::<W>,
                pack::<W>,
            ));
        }
        if isa.level() >= Level::Avx2 {
            fn signed<W: crate::tile::TileScheme>(job: TileJob<'_>) {
                job.check::<W>(avx2::TILE_ROWS);
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected; `check` passed.
                unsafe { avx2::tile::<W, false>(job) }
            }
            fn unsigned<W: crate::tile::TileScheme>(job: TileJob<'_>) {
                job.check::<W>(avx2::TILE_ROWS);
                assert!(W::MAX_ABS <= 64);
                // SAFETY: as for `signed`; this kernel is handed out only with xor 0x80
                // below, so the activations are a + 128, and |q| ≤ 64 was checked.
                unsafe { avx2::tile::<W, true>(job) }
            }
            #[target_feature(enable = "avx2,fma,f16c")]
            fn pack_simd<W: crate::tile::TileScheme>(
                p: &mut PackedRows,
                rows: &[&[W]],
                b0: usize,
                n: usize,
                tr: usize,
            ) {
                p.pack(rows, b0, n, tr)
            }
            fn pack<W: crate::tile::TileScheme>(
                p: &mut PackedRows,
                rows: &[&[W]],
                b0: usize,
                n: usize,
                tr: usize,
            ) {
                // SAFETY: as for `signed` (safe code, compiled for AVX2).
                unsafe { pack_simd(p, rows, b0, n, tr) }
            }
            // Small values: unsigned activations and no sign operations (see avx2::tile).
            return Some(match W::MAX_ABS <= 64 {
                true => TileKernel::new(avx2::TILE_ROWS, 0x80, unsigned::<W>, pack::<W>),
                false => TileKernel::new(avx2::TILE_ROWS, 0x00, signed::<W>, pack::<W>),
            });
        }
    }
    let _ = isa;
    None
}

/// Declares `select_tile_$ty(isa)`: the float tile kernel (see [`crate::tile`]) for weight
/// type `$W` at level Avx512 when `$extra(isa)` holds, else None (one dot per output).
macro_rules! float_tile {
    ($select:ident, $W:ty, $tile:ident, $pack:ident, $prepare:ident,
     ($per_word:expr, $elem_bytes:expr), $extra:path) => {
        pub fn $select(isa: Isa) -> Option<crate::tile::TileKernel<$W>> {
            #[cfg(target_arch = "x86_64")]
            if isa.level() >= Level::Avx512 && $extra(isa) {
                use crate::tile::{PackedRows, TileJob, TileKernel, FLOAT_PANEL};
                fn wrapper(job: TileJob<'_>) {
                    job.check_float(avx512::TILE_ROWS, $per_word, $elem_bytes);
                    // SAFETY: only returned for an `Isa` at level Avx512 that passed
                    // `$extra` (the kernel's features exist, see module doc); check passed.
                    unsafe { avx512::$tile(job) }
                }
                fn pack(p: &mut PackedRows, rows: &[&[$W]], b0: usize, n: usize, tr: usize) {
                    // SAFETY: as for `wrapper` (the packing needs AVX-512 F only).
                    unsafe { avx512::$pack(p, rows, b0, n, tr) }
                }
                return Some(TileKernel::new_float(
                    avx512::TILE_ROWS,
                    wrapper,
                    pack,
                    crate::tile::$prepare,
                    $elem_bytes,
                    $per_word * FLOAT_PANEL,
                ));
            }
            let _ = isa;
            None
        }
    };
}

// F32 and F16 weights × f32 activations: AVX-512 FMA, the weights converted to f32 in the
// panel. BF16 × BF16: `vdpbf16ps`, where the CPU has AVX512-BF16.
float_tile!(
    select_tile_f32,
    f32,
    tile_f32,
    pack_f32,
    prepare_group_f32,
    (1, 4),
    any_avx512
);
float_tile!(
    select_tile_f16,
    f16,
    tile_f32,
    pack_f16,
    prepare_group_f32,
    (1, 4),
    any_avx512
);
float_tile!(
    select_tile_bf16,
    bf16,
    tile_bf16,
    pack_bf16,
    prepare_group_bf16,
    (2, 2),
    Isa::has_avx512_bf16
);

/// No requirement beyond the level (for `float_tile!`).
fn any_avx512(_: Isa) -> bool {
    true
}

/// Reads every byte of `bytes` as fast as the memory allows (the bandwidth probe of
/// `phiq bench --roofline` and the benches): xor of its 16-byte words (SSE2, part of
/// x86-64, four independent accumulators), folded to 64 bits. Elsewhere a plain loop.
pub fn read_all(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut acc = [0u64; 2];
        let chunks = bytes.chunks_exact(64);
        let rest = chunks.remainder();
        // SAFETY: each chunk is 64 readable bytes; unaligned 16-byte loads; SSE2 is
        // always present on x86-64.
        unsafe {
            let mut v = [_mm_setzero_si128(); 4];
            for c in chunks {
                for (k, v) in v.iter_mut().enumerate() {
                    *v = _mm_xor_si128(*v, _mm_loadu_si128(c.as_ptr().add(16 * k).cast()));
                }
            }
            let x = _mm_xor_si128(_mm_xor_si128(v[0], v[1]), _mm_xor_si128(v[2], v[3]));
            _mm_storeu_si128(acc.as_mut_ptr().cast(), x);
        }
        rest.iter().fold(acc[0] ^ acc[1], |a, &b| a ^ b as u64)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        bytes.iter().fold(0u64, |a, &b| a.rotate_left(1) ^ b as u64)
    }
}

/// Σ of signed bytes (`v.len()` a multiple of 16, |Σ| < 2^31): `psadbw` against zero on
/// `v + 128` (SSE2, part of x86-64), minus the 128 added to each byte.
#[inline(always)]
pub(crate) fn sum_i8(v: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut total = 0i64;
        for c in v.chunks_exact(16) {
            // SAFETY: `c` is 16 readable bytes; SSE2 is always present on x86-64.
            total += unsafe {
                let x = _mm_xor_si128(_mm_loadu_si128(c.as_ptr().cast()), _mm_set1_epi8(-128));
                let s = _mm_sad_epu8(x, _mm_setzero_si128());
                _mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s))
            };
        }
        (total - 128 * (v.len() / 16 * 16) as i64) as i32
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        v.iter().map(|&x| x as i32).sum()
    }
}

/// `A::quantize_row` compiled for AVX2 when `isa` allows it: the same code, so the same
/// bits (Rust never contracts or reassociates float operations), but `round` becomes
/// `vroundps` instead of a libm call and the loops vectorize.
pub fn select_quantize<A: crate::quantize::Quantize>(isa: Isa) -> fn(&[f32], &mut [A]) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.level() >= Level::Avx2 {
            #[target_feature(enable = "avx2,f16c")]
            fn quantize_simd<A: crate::quantize::Quantize>(x: &[f32], y: &mut [A]) {
                A::quantize_row(x, y)
            }
            fn wrapper<A: crate::quantize::Quantize>(x: &[f32], y: &mut [A]) {
                // SAFETY: level ≥ Avx2 means avx2+fma+f16c were detected.
                unsafe { quantize_simd(x, y) }
            }
            return wrapper::<A>;
        }
    }
    let _ = isa;
    A::quantize_row
}
