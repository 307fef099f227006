//! The model's tensors as views into the memory-mapped file: each weight matrix is a
//! (type, shape, byte range) into `GgufFile::bytes()`, never a copy. Only the small
//! vectors (norms, rope factors: a few KB per layer) are dequantized to f32 at load.
//!
//! Every tensor's shape is checked against the config at load; errors name the tensor,
//! the expected and the found shape.

use std::ops::Range;

use phiq_kernels::GgmlType;

use super::config::Config;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// A `[n_out][n_in]` matrix (ggml dims `[n_in, n_out]`) in the mapped file.
#[derive(Clone, Debug)]
pub struct Matrix {
    pub name: String,
    pub ty: GgmlType,
    pub n_in: usize,
    pub n_out: usize,
    /// Byte range of the data in the file.
    pub range: Range<usize>,
}

impl Matrix {
    /// Bytes of one row (`n_in` elements).
    pub fn row_bytes(&self) -> usize {
        self.n_in / self.ty.block_size() as usize * self.ty.type_size() as usize
    }
}

/// Q, K and V projections: fused (`attn_qkv`, HF `qkv_proj`) or separate.
#[derive(Clone, Debug)]
pub enum Qkv {
    Fused(Matrix),
    Separate { q: Matrix, k: Matrix, v: Matrix },
}

/// Gate and up projections: fused (`ffn_up` holding gate | up, HF `gate_up_proj`) or
/// separate (`ffn_gate` and `ffn_up`).
#[derive(Clone, Debug)]
pub enum GateUp {
    Fused(Matrix),
    Separate { gate: Matrix, up: Matrix },
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub qkv: Qkv,
    pub attn_output: Matrix,
    pub ffn_norm: Vec<f32>,
    pub gate_up: GateUp,
    pub ffn_down: Matrix,
}

#[derive(Clone, Debug)]
pub struct Weights {
    /// `[n_vocab][n_embd]`: rows are dequantized one token at a time.
    pub token_embd: Matrix,
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,
    /// `[n_vocab][n_embd]`; the token embedding itself when the file ties them.
    pub output: Matrix,
    /// LongRoPE frequency factors (n_rot / 2 each), when the file has them.
    pub rope_factors_short: Option<Vec<f32>>,
    pub rope_factors_long: Option<Vec<f32>>,
    /// RoPE frequency factors for every context (`rope_freqs.weight`, Llama 3.x's), when
    /// the file has them.
    pub rope_freqs: Option<Vec<f32>>,
    pub n_vocab: usize,
}

fn shape_mismatch(name: &str, expected: &[usize], found: &[u64]) -> Error {
    Error::ShapeMismatch {
        tensor: name.to_string(),
        expected: format!("{expected:?}"),
        found: format!("{found:?}"),
    }
}

fn matrix(file: &GgufFile, name: &str, n_in: usize, n_out: Option<usize>) -> Result<Matrix> {
    let t = file.tensor(name)?;
    let n_out_found = t.dims.get(1).copied().unwrap_or(1) as usize;
    let n_out = n_out.unwrap_or(n_out_found);
    if t.dims.len() != 2 || t.dims[0] as usize != n_in || n_out_found != n_out {
        return Err(shape_mismatch(name, &[n_in, n_out], &t.dims));
    }
    let ty = t.ty.ok_or_else(|| Error::UnsupportedType {
        tensor: name.to_string(),
        ty: t.type_name(),
    })?;
    if !ty.is_supported() || ty == GgmlType::Q8_1 || ty == GgmlType::Q8_K {
        return Err(Error::UnsupportedType {
            tensor: name.to_string(),
            ty: ty.name().to_string(),
        });
    }
    let range = file.header.tensor_range(t).ok_or_else(|| Error::Format {
        file: file.name().to_string(),
        offset: t.info_offset,
        what: format!("tensor '{name}': data outside the file"),
    })?;
    Ok(Matrix {
        name: name.to_string(),
        ty,
        n_in,
        n_out,
        range,
    })
}

/// A 1-D tensor of length `n`, dequantized to f32.
fn vector(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = file.tensor(name)?;
    if t.dims.len() != 1 || t.dims[0] as usize != n {
        return Err(shape_mismatch(name, &[n], &t.dims));
    }
    let ty = t.ty.ok_or_else(|| Error::UnsupportedType {
        tensor: name.to_string(),
        ty: t.type_name(),
    })?;
    let mut out = vec![0f32; n];
    phiq_kernels::dynamic::dequantize(ty, file.tensor_data(t)?, &mut out)
        .map_err(|e| Error::InvalidModel(format!("tensor '{name}': {e}")))?;
    Ok(out)
}

impl Weights {
    pub fn load(file: &GgufFile, cfg: &Config) -> Result<Weights> {
        let e = cfg.n_embd;
        let q_dim = cfg.n_head * cfg.head_dim;
        let kv_dim = cfg.n_kv_head * cfg.head_dim;
        let token_embd = matrix(file, "token_embd.weight", e, None)?;
        let n_vocab = token_embd.n_out;
        let output = if file.header.tensor("output.weight").is_some() {
            matrix(file, "output.weight", e, Some(n_vocab))?
        } else {
            token_embd.clone()
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let has = |t: &str| file.header.tensor(&name(t)).is_some();
            let qkv = if has("attn_qkv") || !has("attn_q") {
                Qkv::Fused(matrix(
                    file,
                    &name("attn_qkv"),
                    e,
                    Some(q_dim + 2 * kv_dim),
                )?)
            } else {
                Qkv::Separate {
                    q: matrix(file, &name("attn_q"), e, Some(q_dim))?,
                    k: matrix(file, &name("attn_k"), e, Some(kv_dim))?,
                    v: matrix(file, &name("attn_v"), e, Some(kv_dim))?,
                }
            };
            let gate_up = if has("ffn_gate") {
                GateUp::Separate {
                    gate: matrix(file, &name("ffn_gate"), e, Some(cfg.n_ff))?,
                    up: matrix(file, &name("ffn_up"), e, Some(cfg.n_ff))?,
                }
            } else {
                GateUp::Fused(matrix(file, &name("ffn_up"), e, Some(2 * cfg.n_ff))?)
            };
            layers.push(Layer {
                attn_norm: vector(file, &name("attn_norm"), e)?,
                qkv,
                attn_output: matrix(file, &name("attn_output"), q_dim, Some(e))?,
                ffn_norm: vector(file, &name("ffn_norm"), e)?,
                gate_up,
                ffn_down: matrix(file, &name("ffn_down"), cfg.n_ff, Some(e))?,
            });
        }
        let factors = |name: &str| -> Result<Option<Vec<f32>>> {
            match file.header.tensor(name) {
                None => Ok(None),
                Some(_) => vector(file, name, cfg.n_rot / 2).map(Some),
            }
        };
        Ok(Weights {
            token_embd,
            layers,
            output_norm: vector(file, "output_norm.weight", e)?,
            output,
            rope_factors_short: factors("rope_factors_short.weight")?,
            rope_factors_long: factors("rope_factors_long.weight")?,
            rope_freqs: factors("rope_freqs.weight")?,
            n_vocab,
        })
    }
}
