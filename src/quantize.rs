//! Converting a GGUF file to another tensor type, as llama-quantize does, streaming: a
//! chunk of rows of one tensor in memory at a time (Phi-4 in F16 is 28 GB, more than most
//! machines' RAM), quantized in parallel over rows, written to a temporary name and
//! renamed only when complete (an interrupted run never leaves a truncated file under the
//! final name).
//!
//! Presets follow llama.cpp's names (`Q4_K_M`, …). The per-tensor rules are llama.cpp's
//! for the `phi3` tensors (fused `attn_qkv`, `ffn_down`, `output`, `token_embd`; the "more
//! bits in some layers" rule, and the two rules that change with an importance matrix);
//! `pure` gives every 2-D tensor the preset's base type (llama-quantize `--pure`). With an
//! importance matrix ([`crate::imatrix`]) each tensor it has an entry for is quantized with
//! ggml's weighted quantizers (`phiq_kernels::quant::imatrix`).

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use phiq_kernels::GgmlType;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufWriter, TensorInfo, TensorSpec, Value};
use crate::imatrix::Imatrix;

/// A llama.cpp quantization preset: its name, `general.file_type` id and base type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub file_type: u32,
    pub base: GgmlType,
}

/// Every preset phiq writes (llama.cpp's `llama_ftype` ids).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "F32",
        file_type: 0,
        base: GgmlType::F32,
    },
    Preset {
        name: "F16",
        file_type: 1,
        base: GgmlType::F16,
    },
    Preset {
        name: "BF16",
        file_type: 32,
        base: GgmlType::BF16,
    },
    Preset {
        name: "Q4_0",
        file_type: 2,
        base: GgmlType::Q4_0,
    },
    Preset {
        name: "Q4_1",
        file_type: 3,
        base: GgmlType::Q4_1,
    },
    Preset {
        name: "Q8_0",
        file_type: 7,
        base: GgmlType::Q8_0,
    },
    Preset {
        name: "Q5_0",
        file_type: 8,
        base: GgmlType::Q5_0,
    },
    Preset {
        name: "Q5_1",
        file_type: 9,
        base: GgmlType::Q5_1,
    },
    Preset {
        name: "Q2_K",
        file_type: 10,
        base: GgmlType::Q2_K,
    },
    Preset {
        name: "Q3_K_S",
        file_type: 11,
        base: GgmlType::Q3_K,
    },
    Preset {
        name: "Q3_K_M",
        file_type: 12,
        base: GgmlType::Q3_K,
    },
    Preset {
        name: "Q3_K_L",
        file_type: 13,
        base: GgmlType::Q3_K,
    },
    Preset {
        name: "Q4_K_S",
        file_type: 14,
        base: GgmlType::Q4_K,
    },
    Preset {
        name: "Q4_K_M",
        file_type: 15,
        base: GgmlType::Q4_K,
    },
    Preset {
        name: "Q5_K_S",
        file_type: 16,
        base: GgmlType::Q5_K,
    },
    Preset {
        name: "Q5_K_M",
        file_type: 17,
        base: GgmlType::Q5_K,
    },
    Preset {
        name: "Q6_K",
        file_type: 18,
        base: GgmlType::Q6_K,
    },
    Preset {
        name: "IQ4_NL",
        file_type: 25,
        base: GgmlType::IQ4_NL,
    },
    Preset {
        name: "IQ4_XS",
        file_type: 30,
        base: GgmlType::IQ4_XS,
    },
    // The IQ1–IQ3 presets (most need an importance matrix: see `needs_imatrix`).
    Preset {
        name: "IQ2_XXS",
        file_type: 19,
        base: GgmlType::IQ2_XXS,
    },
    Preset {
        name: "IQ2_XS",
        file_type: 20,
        base: GgmlType::IQ2_XS,
    },
    Preset {
        name: "IQ3_XS",
        file_type: 22,
        base: GgmlType::IQ3_S,
    },
    Preset {
        name: "IQ3_XXS",
        file_type: 23,
        base: GgmlType::IQ3_XXS,
    },
    Preset {
        name: "IQ1_S",
        file_type: 24,
        base: GgmlType::IQ1_S,
    },
    Preset {
        name: "IQ3_S",
        file_type: 26,
        base: GgmlType::IQ3_S,
    },
    Preset {
        name: "IQ3_M",
        file_type: 27,
        base: GgmlType::IQ3_S,
    },
    // (llama.cpp's IQ2_S preset is mostly IQ2_XS; IQ2_M is mostly IQ2_S)
    Preset {
        name: "IQ2_S",
        file_type: 28,
        base: GgmlType::IQ2_XS,
    },
    Preset {
        name: "IQ2_M",
        file_type: 29,
        base: GgmlType::IQ2_S,
    },
    Preset {
        name: "IQ1_M",
        file_type: 31,
        base: GgmlType::IQ1_M,
    },
];

impl Preset {
    /// The preset named `name` (case-insensitive, llama-quantize's aliases `Q3_K`, `Q4_K`,
    /// `Q5_K`), or with the `general.file_type` id `name` (llama-quantize takes `15` for
    /// `Q4_K_M`).
    pub fn from_name(name: &str) -> Result<Preset> {
        if let Ok(id) = name.parse::<u32>() {
            return PRESETS
                .iter()
                .find(|p| p.file_type == id)
                .copied()
                .ok_or_else(|| {
                    let ids: Vec<String> = PRESETS
                        .iter()
                        .map(|p| format!("{} {}", p.file_type, p.name))
                        .collect();
                    Error::InvalidInput(format!(
                        "unknown quantization type id {id} (phiq writes: {})",
                        ids.join(", ")
                    ))
                });
        }
        // llama-quantize's aliases for the medium presets.
        let name = match name.to_ascii_uppercase().as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            _ => name,
        };
        PRESETS
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                Error::InvalidInput(format!(
                    "unknown quantization type '{name}' (phiq writes: {})",
                    names.join(", ")
                ))
            })
    }
}

#[derive(Clone, Debug, Default)]
pub struct QuantizeOptions {
    /// Every 2-D tensor gets the preset's base type.
    pub pure: bool,
    /// Quantize tensors that are already quantized (quality suffers).
    pub allow_requantize: bool,
    pub output_tensor_type: Option<GgmlType>,
    pub token_embedding_type: Option<GgmlType>,
    /// Importance matrix (llama-quantize `--imatrix`) and the file name recorded in the
    /// output's `quantize.imatrix.file`.
    pub imatrix: Option<(Arc<Imatrix>, String)>,
    /// Allow the output to be the input file itself (it is replaced only when the new file
    /// is complete).
    pub overwrite_input: bool,
    /// Set from another thread (a Ctrl-C handler) to stop: the temporary file is removed
    /// and [`quantize_file`] returns [`Error::Interrupted`].
    pub cancel: Option<Arc<AtomicBool>>,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third
/// one between get more bits in the mixed presets.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as isize - (n / 8) as isize).rem_euclid(3) == 2
}

/// The layer number of `blk.N.…`.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type a tensor gets under `preset` (llama.cpp's rules for these tensors), after the
/// fallback for rows that are not whole blocks ([`fallback_type`]).
pub fn choose_type(
    preset: Preset,
    opts: &QuantizeOptions,
    t: &TensorInfo,
    n_layer: usize,
    n_gqa: usize,
    tied_output: bool,
) -> GgmlType {
    let ty = rule_type(preset, opts, t, n_layer, n_gqa, tied_output);
    fallback_type(ty, t.dims.first().copied().unwrap_or(0))
}

/// llama.cpp's per-tensor rules, before the fallback for partial blocks.
fn rule_type(
    preset: Preset,
    opts: &QuantizeOptions,
    t: &TensorInfo,
    n_layer: usize,
    n_gqa: usize,
    tied_output: bool,
) -> GgmlType {
    use GgmlType as T;
    if t.dims.len() < 2 {
        return T::F32; // norms, rope factors: always F32, as the converter writes them
    }
    let base = preset.base;
    let is_output = t.name == "output.weight" || (tied_output && t.name == "token_embd.weight");
    let mut ty = base;
    if is_output {
        if let Some(o) = opts.output_tensor_type {
            return o;
        }
    } else if t.name == "token_embd.weight" {
        if let Some(e) = opts.token_embedding_type {
            return e;
        }
    }
    let quantized_preset = !matches!(base, T::F32 | T::F16 | T::BF16);
    let has_imatrix = opts.imatrix.is_some();
    if opts.pure || !quantized_preset {
        return ty;
    }
    let layer = layer_of(&t.name).unwrap_or(0);
    let more = use_more_bits(layer, n_layer.max(1));
    let name = preset.name;
    // llama.cpp's very-low-bit family, which has its own rules for every tensor below.
    let iq1_iq2 = matches!(
        name,
        "IQ2_XXS" | "IQ2_XS" | "IQ1_S" | "IQ2_S" | "IQ2_M" | "IQ1_M"
    );
    let iq2_s_m = matches!(name, "IQ2_S" | "IQ2_M");
    let row_len = t.dims[0];
    // llama.cpp gives a fused attn_qkv the attn_v rules (they decide V's share).
    let attn_v = t.name.contains("attn_v.weight") || t.name.contains("attn_qkv.weight");
    let ffn_down = t.name.contains("ffn_down.weight");
    let attn_output = t.name.contains("attn_output.weight");
    if is_output {
        ty = if !row_len.is_multiple_of(base.block_size()) {
            T::Q8_0
        } else if iq1_iq2 || name == "IQ3_XXS" {
            T::Q5_K
        } else if base != T::Q8_0 {
            T::Q6_K
        } else {
            base
        };
    } else if t.name == "token_embd.weight" {
        ty = match name {
            "IQ2_XXS" | "IQ2_XS" | "IQ1_S" | "IQ1_M" => T::Q2_K,
            "IQ2_S" | "IQ2_M" | "IQ3_XXS" => T::IQ3_S,
            _ => base,
        };
    } else if iq1_iq2 {
        let more_bits = if iq2_s_m { T::IQ3_S } else { T::Q2_K };
        if attn_v {
            ty = if n_gqa >= 4 { T::Q4_K } else { more_bits };
        } else if ffn_down {
            if layer < n_layer / 8 {
                ty = more_bits;
            }
        } else if attn_output {
            ty = match name {
                "IQ1_S" | "IQ1_M" => T::IQ2_XXS,
                "IQ2_S" | "IQ2_M" => T::IQ3_S,
                _ => base,
            };
        }
    } else if attn_v {
        ty = match name {
            "Q2_K" => {
                if n_gqa >= 4 {
                    T::Q4_K
                } else {
                    T::Q3_K
                }
            }
            "IQ3_XXS" if n_gqa >= 4 => T::Q4_K,
            "IQ3_XXS" if !has_imatrix => T::IQ3_S,
            "IQ3_XS" | "IQ3_S" if n_gqa >= 4 => T::Q4_K,
            "IQ3_M" => T::Q4_K,
            "IQ4_NL" | "IQ4_XS" if n_gqa >= 4 => T::Q5_K,
            "Q3_K_M" => {
                if layer < 2 {
                    T::Q5_K
                } else {
                    T::Q4_K
                }
            }
            "Q3_K_L" => T::Q5_K,
            "Q4_K_M" | "Q5_K_M" if more => T::Q6_K,
            "Q4_K_S" if layer < 4 => T::Q5_K,
            _ => base,
        };
    } else if t.name.contains("attn_k.weight") || t.name.contains("attn_q.weight") {
        ty = match name {
            "IQ3_XS" => T::IQ3_XXS,
            "IQ3_XXS" => T::IQ2_S,
            _ => base,
        };
    } else if ffn_down {
        ty = match name {
            "Q2_K" => T::Q3_K,
            "IQ3_XXS" if !has_imatrix => {
                if layer < n_layer / 8 {
                    T::Q4_K
                } else {
                    T::Q3_K
                }
            }
            // llama.cpp: Q4_K past the first sixteenth unless the model is Falcon.
            "Q3_K_M" => {
                if layer < n_layer / 16 {
                    T::Q5_K
                } else {
                    T::Q4_K
                }
            }
            "IQ3_M" if layer < n_layer / 8 => T::Q4_K,
            "Q3_K_L" => T::Q5_K,
            "Q4_K_M" | "Q5_K_M" if more => T::Q6_K,
            "Q4_K_S" if layer < n_layer / 8 => T::Q5_K,
            // Without an imatrix the first eighth gets more bits; with one, not.
            "IQ4_NL" | "IQ4_XS" if layer < n_layer / 8 && !has_imatrix => T::Q5_K,
            // llama.cpp guards the first eighth of Q4_0/Q5_0 ffn_down only when an
            // imatrix is given (so files made without one stay as they always were).
            "Q4_0" if layer < n_layer / 8 && has_imatrix => T::Q4_1,
            "Q5_0" if layer < n_layer / 8 && has_imatrix => T::Q5_1,
            _ => base,
        };
    } else if attn_output {
        ty = match name {
            "Q2_K" => T::Q3_K,
            "IQ3_XXS" => T::IQ3_S,
            "Q3_K_M" | "IQ3_M" => T::Q4_K,
            "Q3_K_L" => T::Q5_K,
            _ => base,
        };
    } else if t.name.contains("ffn_up") || t.name.contains("ffn_gate") {
        // IQ3_XS: the middle three quarters of the layers' FFN inputs one step lower.
        if name == "IQ3_XS" && layer >= n_layer / 8 && layer < 7 * n_layer / 8 {
            ty = T::IQ3_XXS;
        }
    }
    ty
}

/// Whether quantizing tensor `name` to `ty` needs importance weights. llama-quantize
/// refuses the IQ1/IQ2 types and IQ3_XXS without them, except for `token_embd.weight` and
/// `output.weight` (`tensor_requires_imatrix`); ggml cannot quantize IQ2_XXS, IQ2_XS and
/// IQ1_S at all without them (`ggml_quantize_requires_imatrix`: llama-quantize aborts
/// even for those two tensors).
pub fn needs_imatrix(name: &str, ty: GgmlType) -> bool {
    use GgmlType as T;
    let embd_or_output = name == "token_embd.weight" || name == "output.weight";
    matches!(ty, T::IQ2_XXS | T::IQ2_XS | T::IQ1_S)
        || (!embd_or_output && matches!(ty, T::IQ3_XXS | T::IQ2_S | T::IQ1_M))
}

/// The type rows of `row_len` elements get when `ty`'s blocks do not divide them: llama.cpp's
/// fallbacks (Q4_K → Q5_0, …), else F16. `ty` itself when they do.
pub fn fallback_type(mut ty: GgmlType, row_len: u64) -> GgmlType {
    use GgmlType as T;
    if !row_len.is_multiple_of(ty.block_size()) {
        ty = match ty {
            T::Q2_K | T::Q3_K => T::Q4_0,
            T::IQ1_S | T::IQ1_M | T::IQ2_XXS | T::IQ2_XS | T::IQ2_S | T::IQ3_XXS | T::IQ3_S => {
                T::IQ4_NL
            }
            T::IQ4_XS => T::IQ4_NL,
            T::Q4_K => T::Q5_0,
            T::Q5_K => T::Q5_1,
            T::Q6_K => T::Q8_0,
            other => other,
        };
        if !row_len.is_multiple_of(ty.block_size()) {
            ty = T::F16;
        }
    }
    ty
}

/// What happened to one tensor (for progress and the summary).
#[derive(Clone, Debug)]
pub struct TensorDone {
    pub index: usize,
    pub count: usize,
    pub name: String,
    pub from: String,
    pub to: GgmlType,
    /// Weights in the tensor.
    pub elements: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What [`quantize_file`] reports as it goes.
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// Before any work: something the user should know about the plan (a type that falls
    /// back for rows that are not whole blocks, an option that has no effect).
    Note(String),
    /// One tensor is written.
    Tensor(&'a TensorDone),
}

/// The size of the finished file and what went into it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub input_file_bytes: u64,
    pub output_file_bytes: u64,
    pub tensor_bytes_in: u64,
    pub tensor_bytes_out: u64,
    pub elements: u64,
}

/// Rows quantized per parallel chunk: bounded memory (an f32 chunk of a 35840-wide tensor
/// is 64 rows × 140 KB = 9 MB) with enough rows to keep every thread busy.
const ROWS_PER_CHUNK: usize = 64;

/// The checks made before any work: the output is a file we can create (not a directory,
/// in a directory that exists) and not the input itself unless `overwrite_input`.
fn check_output(input: &Path, output: &Path, overwrite_input: bool) -> Result<()> {
    if output.is_dir() {
        return Err(Error::InvalidInput(format!(
            "output {} is a directory; give a file name (e.g. {}/model-Q4_K_M.gguf)",
            output.display(),
            output.display()
        )));
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::InvalidInput(format!(
            "output {}: the directory {} does not exist",
            output.display(),
            parent.display()
        )));
    }
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same && !overwrite_input {
        return Err(Error::InvalidInput(format!(
            "output {} is the input file; give another name, or pass --force to replace the input when the new file is complete",
            output.display()
        )));
    }
    Ok(())
}

/// Quantizes `input` into `output` with `preset`. `progress` hears the plan's notes before
/// any work and each tensor as it is written. The output is written to `OUT.tmp-PID` and
/// renamed when complete; on any error (and on [`QuantizeOptions::cancel`]) the temporary
/// file is removed.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    preset: Preset,
    opts: &QuantizeOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Summary> {
    check_output(input, output, opts.overwrite_input)?;
    let file = GgufFile::open(input)?;
    let h = &file.header;
    let md = &h.metadata;
    let arch = md.get_str("general.architecture").unwrap_or("");
    let n_layer = md
        .opt_as::<usize>(&format!("{arch}.block_count"))?
        .unwrap_or(0);
    let tied = h.tensor("output.weight").is_none();
    let n_head = md
        .opt_as::<usize>(&format!("{arch}.attention.head_count"))?
        .unwrap_or(1);
    let n_kv = md
        .opt_as::<usize>(&format!("{arch}.attention.head_count_kv"))?
        .unwrap_or(n_head)
        .max(1);
    let n_gqa = n_head / n_kv;

    // Refuse to requantize unless asked: quality would suffer silently.
    if !opts.allow_requantize {
        if let Some(t) = h.tensors.iter().find(|t| {
            t.dims.len() >= 2
                && !matches!(t.ty, Some(GgmlType::F32 | GgmlType::F16 | GgmlType::BF16))
        }) {
            return Err(Error::InvalidInput(format!(
                "{}: tensor '{}' is already quantized ({}); quantize from an F32/F16/BF16 file, or pass --allow-requantize",
                file.name(),
                t.name,
                t.type_name()
            )));
        }
    }

    let plan: Vec<(&TensorInfo, GgmlType)> = h
        .tensors
        .iter()
        .map(|t| (t, choose_type(preset, opts, t, n_layer, n_gqa, tied)))
        .collect();
    for note in plan_notes(preset, opts, &plan, n_layer, n_gqa, tied) {
        progress(Progress::Note(note));
    }
    for (t, _) in &plan {
        if t.ty.is_none_or(|ty| !ty.is_supported()) {
            return Err(Error::UnsupportedType {
                tensor: t.name.clone(),
                ty: t.type_name(),
            });
        }
    }
    // The types that need importance weights, before any work (llama-quantize refuses
    // these plans too, at the start or at the tensor).
    for (t, to) in &plan {
        if t.dims.len() < 2 || t.ty == Some(*to) || !needs_imatrix(&t.name, *to) {
            continue;
        }
        let Some((im, file_name)) = &opts.imatrix else {
            return Err(Error::InvalidInput(format!(
                "{}: tensor '{}' would be {to}, which needs an importance matrix: pass --imatrix FILE (made by llama-imatrix), as llama-quantize requires",
                preset.name, t.name
            )));
        };
        let (row_len, _) = t.rows();
        let n_mat = t.dims.get(2..).map_or(1, |d| d.iter().product::<u64>());
        if im.weights_for(&t.name, row_len, n_mat)?.is_none() {
            return Err(Error::InvalidInput(format!(
                "{}: tensor '{}' would be {to}, which needs importance weights, and {file_name} has no entry for it (llama-quantize refuses this too; for output.weight, make the imatrix with llama-imatrix --process-output)",
                preset.name, t.name
            )));
        }
    }

    let mut metadata: Vec<(String, Value)> = md
        .iter()
        .filter(|(k, _)| *k != "general.file_type" && *k != "general.quantization_version")
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    metadata.push(("general.file_type".into(), Value::U32(preset.file_type)));
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    if let Some((im, file_name)) = &opts.imatrix {
        // llama-quantize's keys (strings cut to 127 bytes, as its overrides hold them).
        let cut = |s: &str| {
            let mut end = s.len().min(127);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        metadata.retain(|(k, _)| !k.starts_with("quantize.imatrix."));
        metadata.push((
            "quantize.imatrix.file".into(),
            Value::String(cut(file_name)),
        ));
        if let Some(d) = im.datasets.first() {
            metadata.push(("quantize.imatrix.dataset".into(), Value::String(cut(d))));
        }
        metadata.push((
            "quantize.imatrix.entries_count".into(),
            Value::U32(im.entries.len() as u32),
        ));
        if im.chunk_count > 0 {
            metadata.push((
                "quantize.imatrix.chunks_count".into(),
                Value::U32(im.chunk_count),
            ));
        }
    }
    let specs: Vec<TensorSpec> = plan
        .iter()
        .map(|(t, ty)| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: *ty,
        })
        .collect();

    let tmp: PathBuf = {
        let mut name = output.as_os_str().to_owned();
        name.push(format!(".tmp-{}", std::process::id()));
        name.into()
    };
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::Io {
            path: p.clone(),
            source: e,
        }
    };
    let mut summary = Summary {
        input_file_bytes: std::fs::metadata(input).map_err(io(input))?.len(),
        ..Summary::default()
    };
    let result = (|| -> Result<()> {
        let f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut w = GgufWriter::new(
            BufWriter::with_capacity(1 << 22, f),
            &tmp,
            &metadata,
            &specs,
        )?;
        let count = plan.len();
        let cancelled = || {
            opts.cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
        };
        for (index, (t, to)) in plan.iter().enumerate() {
            let from = t.ty.expect("checked above");
            let data = file.tensor_data(t)?;
            let (row_len, n_rows) = t.rows();
            let (row_len, n_rows) = (row_len as usize, n_rows as usize);
            let in_row = row_len / from.block_size() as usize * from.type_size() as usize;
            // Importance weights: only for tensors that are actually converted (llama.cpp
            // copies the others), one block of row_len per expert for 3-D tensors.
            let rows_per_mat = t.dims.get(1).copied().unwrap_or(1).max(1) as usize;
            let n_mat = t.dims.get(2..).map_or(1, |d| d.iter().product::<u64>());
            let weights = match &opts.imatrix {
                Some((im, _)) if t.dims.len() >= 2 && *to != from => {
                    im.weights_for(&t.name, row_len as u64, n_mat)?
                }
                _ => None,
            };
            let mut written = 0u64;
            for chunk in (0..n_rows).step_by(ROWS_PER_CHUNK) {
                if cancelled() {
                    return Err(Error::Interrupted);
                }
                let rows = ROWS_PER_CHUNK.min(n_rows - chunk);
                let results: Vec<Result<Vec<u8>>> = (0..rows)
                    .into_par_iter()
                    .map(|r| {
                        let row = chunk + r;
                        let src = &data[row * in_row..(row + 1) * in_row];
                        let mut x = vec![0f32; row_len];
                        let err = |e| Error::InvalidModel(format!("tensor '{}': {e}", t.name));
                        phiq_kernels::dynamic::dequantize(from, src, &mut x).map_err(err)?;
                        match weights {
                            Some(w) => {
                                let m = row / rows_per_mat;
                                let qw = &w[m * row_len..(m + 1) * row_len];
                                phiq_kernels::dynamic::quantize_to_vec_imatrix(*to, &x, qw)
                            }
                            None => phiq_kernels::dynamic::quantize_to_vec(*to, &x),
                        }
                        .map_err(err)
                    })
                    .collect();
                for r in results {
                    let bytes = r?;
                    w.write_data(&bytes)?;
                    written += bytes.len() as u64;
                }
            }
            let elements = t.dims.iter().product::<u64>();
            summary.elements += elements;
            summary.tensor_bytes_in += data.len() as u64;
            summary.tensor_bytes_out += written;
            progress(Progress::Tensor(&TensorDone {
                index,
                count,
                name: t.name.clone(),
                from: t.type_name(),
                to: *to,
                elements,
                bytes_in: data.len() as u64,
                bytes_out: written,
            }));
        }
        w.finish()?;
        if cancelled() {
            return Err(Error::Interrupted);
        }
        Ok(())
    })();
    match result.and_then(|()| std::fs::rename(&tmp, output).map_err(io(output))) {
        Ok(()) => {
            summary.output_file_bytes = std::fs::metadata(output).map_err(io(output))?.len();
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// What the user should hear about a plan before the work: tensors whose rows are not whole
/// blocks of the type the rules give them (llama-quantize warns of its fallback too), and a
/// `--token-embedding-type` that a tied output overrides.
fn plan_notes(
    preset: Preset,
    opts: &QuantizeOptions,
    plan: &[(&TensorInfo, GgmlType)],
    n_layer: usize,
    n_gqa: usize,
    tied: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    // (wanted, got, row length) -> tensors
    type Fallback = (GgmlType, GgmlType, u64);
    let mut fallbacks: Vec<(Fallback, Vec<&str>)> = Vec::new();
    for (t, got) in plan {
        let wanted = rule_type(preset, opts, t, n_layer, n_gqa, tied);
        if wanted != *got {
            let key = (wanted, *got, t.dims[0]);
            match fallbacks.iter_mut().find(|(k, _)| *k == key) {
                Some((_, names)) => names.push(&t.name),
                None => fallbacks.push((key, vec![&t.name])),
            }
        }
    }
    for ((wanted, got, cols), names) in fallbacks {
        let shown = if names.len() > 3 {
            format!("{}, … ({} tensors)", names[..2].join(", "), names.len())
        } else {
            names.join(", ")
        };
        notes.push(format!(
            "{shown}: rows of {cols} are not a multiple of {wanted}'s {}-weight blocks: using {got} instead (llama-quantize's fallback)",
            wanted.block_size()
        ));
    }
    if tied {
        if let Some(e) = opts.token_embedding_type {
            let used = plan
                .iter()
                .find(|(t, _)| t.name == "token_embd.weight")
                .map(|(_, ty)| ty.to_string())
                .unwrap_or_default();
            notes.push(format!(
                "--token-embedding-type {e} has no effect: this model ties its output to token_embd.weight, which gets the output's type ({used}; set it with --output-tensor-type), as in llama-quantize"
            ));
        }
    }
    notes
}
