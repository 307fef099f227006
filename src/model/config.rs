//! Model hyper-parameters, read from GGUF metadata by their full keys.
//!
//! Every value comes from the file; a missing key is an error naming it. Two
//! architectures: `phi3` (Phi-3, Phi-3.5, Phi-4, Phi-4-mini, Phi-4-reasoning) and `llama`
//! (the Llama-ified Phi-4 checkpoints, e.g. unsloth's, and other Llama-shaped models whose
//! tensors the loader knows: separate or fused Q/K/V and gate/up, tied or untied output).

use crate::error::{Error, Result};
use crate::gguf::Metadata;

/// Architectures phiq runs.
pub const SUPPORTED_ARCHS: &[&str] = &["phi3", "llama"];

/// Which dimensions of a head RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimension `i` with `i + n_rot/2` (GPT-NeoX; transformers' `rotate_half`): `phi3`.
    Neox,
    /// Dimension `2i` with `2i + 1` (ggml's "normal" RoPE): `llama`, whose converter
    /// permutes the rows of Q and K so that this equals transformers' `rotate_half` on the
    /// original weights.
    Norm,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub arch: String,
    /// Context length the model was trained for (`{arch}.context_length`).
    pub n_ctx_train: usize,
    /// Context length before LongRoPE extension (`rope.scaling.original_context_length`;
    /// equal to `n_ctx_train` when absent).
    pub n_ctx_orig: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    /// Rotated dimensions per head (partial rotary when < head_dim).
    pub n_rot: usize,
    pub rope_base: f32,
    /// LongRoPE's magnitude correction, applied to cos/sin when the file has rope
    /// factors: the stored `rope.scaling.attn_factor`, or sqrt(1 + ln(s)/ln(n_ctx_orig))
    /// with s = n_ctx_train / n_ctx_orig, as transformers and llama.cpp compute it.
    pub rope_attn_factor: f32,
    /// Sliding-window attention span: a token attends to the `sliding_window` latest
    /// positions, itself included, as transformers applies it (0: none, as the converter
    /// marks Phi-4; llama.cpp currently ignores the key for Phi-3 models).
    pub sliding_window: usize,
    pub rope_style: RopeStyle,
    /// Linear RoPE scaling (`rope.scaling.type = linear`): positions are divided by this
    /// factor (1 otherwise).
    pub rope_linear_factor: f32,
}

impl Config {
    pub fn from_metadata(md: &Metadata) -> Result<Config> {
        let arch = md.get_str("general.architecture")?.to_string();
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(Error::UnsupportedArch {
                arch,
                supported: SUPPORTED_ARCHS.join(", "),
            });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let get = |k: &str| -> Result<usize> { md.get_as::<usize>(&key(k)) };
        let n_embd = get("embedding_length")?;
        let n_head = get("attention.head_count")?;
        let n_kv_head = md
            .opt_as::<usize>(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        let n_ctx_train = get("context_length")?;
        let n_ctx_orig = md
            .opt_as::<usize>(&key("rope.scaling.original_context_length"))?
            .unwrap_or(n_ctx_train);
        let bad = |what: String| Error::InvalidModel(format!("model metadata: {what}"));
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(bad(format!(
                "{} = {n_head} must be a positive multiple of {} = {n_kv_head}",
                key("attention.head_count"),
                key("attention.head_count_kv")
            )));
        }
        let head_dim = match md.opt_as::<usize>(&key("attention.key_length"))? {
            Some(d) => d,
            None => {
                if n_embd % n_head != 0 {
                    return Err(bad(format!(
                        "{} = {n_embd} is not a multiple of the head count {n_head}",
                        key("embedding_length")
                    )));
                }
                n_embd / n_head
            }
        };
        let n_rot = md
            .opt_as::<usize>(&key("rope.dimension_count"))?
            .unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(format!(
                "{} = {n_rot} must be even and at most the head size {head_dim}",
                key("rope.dimension_count")
            )));
        }
        let rope_style = match arch.as_str() {
            "llama" => RopeStyle::Norm,
            _ => RopeStyle::Neox,
        };
        // RoPE scaling by type, as llama.cpp reads it: none; linear (a factor on the
        // positions); LongRoPE (`phi3`: factor tensors, handled by the weights). Others
        // (YaRN, …) change the maths in ways phiq does not implement: refused by name.
        let scaling_type = md.opt_as::<&str>(&key("rope.scaling.type"))?;
        let rope_linear_factor = match scaling_type {
            None | Some("none") | Some("longrope") | Some("su") => 1.0,
            Some("linear") => {
                let f = md.get_f32(&key("rope.scaling.factor"))?;
                if !(f.is_finite() && f > 0.0) {
                    return Err(bad(format!(
                        "{} = {f} must be a positive number",
                        key("rope.scaling.factor")
                    )));
                }
                f
            }
            Some(other) => {
                return Err(bad(format!(
                    "{} = '{other}': phiq implements RoPE scaling 'linear' and LongRoPE only",
                    key("rope.scaling.type")
                )))
            }
        };
        let scale = n_ctx_train as f64 / n_ctx_orig.max(1) as f64;
        let default_attn_factor = if scale > 1.0 {
            (1.0 + scale.ln() / (n_ctx_orig as f64).ln()).sqrt() as f32
        } else {
            1.0
        };
        let cfg = Config {
            n_ctx_train,
            n_ctx_orig,
            n_embd,
            n_ff: get("feed_forward_length")?,
            n_layer: get("block_count")?,
            n_head,
            n_kv_head,
            head_dim,
            rms_eps: md.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            n_rot,
            rope_base: md.opt_as::<f32>(&key("rope.freq_base"))?.unwrap_or(10000.0),
            rope_attn_factor: md
                .opt_as::<f32>(&key("rope.scaling.attn_factor"))?
                .unwrap_or(default_attn_factor),
            sliding_window: md
                .opt_as::<usize>(&key("attention.sliding_window"))?
                .unwrap_or(0),
            rope_style,
            rope_linear_factor,
            arch,
        };
        if cfg.n_layer == 0 || cfg.n_embd == 0 || cfg.n_ff == 0 || cfg.n_ctx_train == 0 {
            return Err(bad("a dimension is zero".into()));
        }
        Ok(cfg)
    }
}
