//! What the timing examples share: Phi-4's matrix shapes, a type list from the command
//! line, and weight bytes whose scales are all finite.

use phiq_kernels::GgmlType;

/// Phi-4's matrices: (name, n_in, n_out).
pub const SHAPES: [(&str, usize, usize); 5] = [
    ("attn_qkv", 5120, 7680),
    ("attn_output", 5120, 5120),
    ("ffn_up", 5120, 35840),
    ("ffn_down", 17920, 5120),
    ("output", 5120, 100352),
];

/// (n_in, n_out) of a shape by name.
pub fn shape(name: &str) -> (usize, usize) {
    if let Some((i, o)) = name.split_once('x') {
        if let (Ok(i), Ok(o)) = (i.parse(), o.parse()) {
            return (i, o);
        }
    }
    let s = SHAPES.iter().find(|s| s.0 == name);
    s.map(|s| (s.1, s.2)).unwrap_or_else(|| {
        panic!("unknown shape {name} (a Phi-4 matrix name or IN x OUT, e.g. 5120x256)")
    })
}

/// Comma-separated ggml type names (`default` when absent).
pub fn types(arg: Option<&String>, default: &str) -> Vec<GgmlType> {
    arg.map_or(default, |s| s.as_str())
        .split(',')
        .map(|n| {
            phiq_kernels::format::TYPE_TABLE
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(n))
                .unwrap_or_else(|| panic!("unknown type {n}"))
                .ty
        })
        .collect()
}

/// `len` bytes (as u64 words) of xorshift bits with every 16-bit word a small normal f16,
/// so every type's scales are finite: the speed does not depend on values. `seed` varies
/// the bits.
pub fn weight_words(len: usize, seed: u64) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..len.div_ceil(8))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0x03ff_03ff_03ff_03ff) | 0x1c00_1c00_1c00_1c00
        })
        .collect()
}

/// The first `len` bytes of `words`.
pub fn bytes(words: &[u64], len: usize) -> &[u8] {
    // SAFETY: u64 storage viewed as its bytes (no padding; u8 alignment 1), within its
    // length.
    unsafe { &std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8)[..len] }
}

/// Bytes of an `[n_out][n_in]` matrix of type `ty`.
pub fn matrix_bytes(ty: GgmlType, n_in: usize, n_out: usize) -> usize {
    n_in * n_out / ty.block_size() as usize * ty.type_size() as usize
}
