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
];

impl Preset {
    pub fn from_name(name: &str) -> Result<Preset> {
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

/// The type a tensor gets under `preset` (llama.cpp's rules for these tensors).
pub fn choose_type(
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
    if !opts.pure && quantized_preset {
        let layer = layer_of(&t.name).unwrap_or(0);
        let more = use_more_bits(layer, n_layer.max(1));
        let name = preset.name;
        if is_output {
            if base != T::Q8_0 {
                ty = T::Q6_K;
            }
        } else if t.name.contains("attn_v.weight") || t.name.contains("attn_qkv.weight") {
            // llama.cpp gives a fused attn_qkv the attn_v rules (they decide V's share).
            ty = match name {
                "Q2_K" => {
                    if n_gqa >= 4 {
                        T::Q4_K
                    } else {
                        T::Q3_K
                    }
                }
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
        } else if t.name.contains("ffn_down.weight") {
            ty = match name {
                "Q2_K" => T::Q3_K,
                // llama.cpp: Q4_K past the first sixteenth unless the model is Falcon.
                "Q3_K_M" => {
                    if layer < n_layer / 16 {
                        T::Q5_K
                    } else {
                        T::Q4_K
                    }
                }
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
        } else if t.name.contains("attn_output.weight") {
            ty = match name {
                "Q2_K" => T::Q3_K,
                "Q3_K_M" => T::Q4_K,
                "Q3_K_L" => T::Q5_K,
                _ => base,
            };
        }
    }
    // Rows that are not whole blocks of the chosen type fall back as llama.cpp does.
    if !t.dims[0].is_multiple_of(ty.block_size()) {
        ty = match ty {
            T::Q2_K | T::Q3_K => T::Q4_0,
            T::IQ4_XS => T::IQ4_NL,
            T::Q4_K => T::Q5_0,
            T::Q5_K => T::Q5_1,
            T::Q6_K => T::Q8_0,
            other => other,
        };
        if !t.dims[0].is_multiple_of(ty.block_size()) {
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
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Rows quantized per parallel chunk: bounded memory (an f32 chunk of a 35840-wide tensor
/// is 64 rows × 140 KB = 9 MB) with enough rows to keep every thread busy.
const ROWS_PER_CHUNK: usize = 64;

/// Quantizes `input` into `output` with `preset`. `progress` is called after each tensor.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    preset: Preset,
    opts: &QuantizeOptions,
    mut progress: impl FnMut(&TensorDone),
) -> Result<()> {
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
    for (t, _) in &plan {
        if t.ty.is_none_or(|ty| !ty.is_supported()) {
            return Err(Error::UnsupportedType {
                tensor: t.name.clone(),
                ty: t.type_name(),
            });
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
    let result = (|| -> Result<()> {
        let f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut w = GgufWriter::new(
            BufWriter::with_capacity(1 << 22, f),
            &tmp,
            &metadata,
            &specs,
        )?;
        let count = plan.len();
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
            progress(&TensorDone {
                index,
                count,
                name: t.name.clone(),
                from: t.type_name(),
                to: *to,
                bytes_in: data.len() as u64,
                bytes_out: written,
            });
        }
        w.finish()?;
        Ok(())
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, output).map_err(io(output)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
