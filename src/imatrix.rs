//! Importance matrices written by `llama-imatrix`, for `phiq quantize --imatrix`.
//!
//! An importance matrix holds, per weight matrix, the mean of the squared input activation
//! of each column (`E[a_j²]` over the tokens of a calibration text): how much an error in
//! column j of that weight costs. The quantizers use it as per-column weights (see
//! `phiq_kernels::quant::imatrix`).
//!
//! Two formats, both read as llama-quantize reads them (`common/imatrix-loader.cpp` and
//! `tools/quantize/quantize.cpp` of llama.cpp):
//! - **GGUF** (llama-imatrix's default): per matrix `NAME.in_sum2` (F32, `[ne0, n_mat]`, the
//!   sums of squares) and `NAME.counts` (F32, `[n_mat]`, tokens seen), plus the metadata
//!   keys `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size` (llama-quantize
//!   refuses a GGUF without all three). Values = `in_sum2 / round(count)` per matrix, or 1
//!   where the count is 0.
//! - **legacy `.dat`** (`--output-format dat`): little-endian `i32 n_entries`, then per entry
//!   `i32 len, len bytes name, i32 ncall, i32 nval, nval × f32`, then optionally
//!   `i32 chunk_count, i32 len, len bytes dataset`. Values = `value / ncall` (when ncall > 0).
//!
//! llama-quantize falls back to the legacy reader when the file is not a GGUF; we decide by
//! the magic. Files are untrusted: every length is checked against the bytes left, and an
//! error names the file, the entry and the byte offset. Non-finite values are refused, as
//! llama-quantize refuses them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::cursor::Cursor;
use crate::gguf::{Array, GgufFile, Value};
use phiq_kernels::GgmlType;

/// The longest entry name accepted in a legacy file (tensor names are far shorter).
const MAX_NAME_LEN: u64 = 4096;
/// The longest dataset name accepted in a legacy file.
const MAX_DATASET_LEN: u64 = 1 << 20;

/// An importance matrix: per weight tensor name, one weight per column (per expert for
/// 3-D tensors: `n_mat` blocks of `ne0`).
#[derive(Clone, Debug, Default)]
pub struct Imatrix {
    pub entries: BTreeMap<String, Vec<f32>>,
    /// The calibration texts it was computed on (as llama-imatrix recorded them).
    pub datasets: Vec<String>,
    /// Chunks of text evaluated (0 if the file does not say).
    pub chunk_count: u32,
    /// Read from the legacy `.dat` format.
    pub legacy: bool,
}

impl Imatrix {
    /// Reads a llama.cpp importance matrix file (GGUF or legacy `.dat`).
    pub fn load(path: &Path) -> Result<Imatrix> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let name = path.display().to_string();
        let im = if bytes.starts_with(b"GGUF") {
            Self::from_gguf(GgufFile::from_bytes(name.clone(), bytes)?)?
        } else {
            Self::from_legacy(&bytes, &name)?
        };
        if im.entries.is_empty() {
            return Err(Error::InvalidFile(format!(
                "{name}: the importance matrix has no entries"
            )));
        }
        for (entry, values) in &im.entries {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::InvalidFile(format!(
                    "{name}: importance matrix entry '{entry}' holds a non-finite value ({}) at index {i}",
                    values[i]
                )));
            }
        }
        Ok(im)
    }

    fn from_gguf(file: GgufFile) -> Result<Imatrix> {
        let fname = file.name().to_string();
        let md = &file.header.metadata;
        let err = |what: String| Error::InvalidFile(format!("{fname}: {what}"));
        for key in [
            "imatrix.datasets",
            "imatrix.chunk_count",
            "imatrix.chunk_size",
        ] {
            if md.get(key).is_none() {
                return Err(err(format!(
                    "missing imatrix metadata key '{key}' (not an importance matrix written by llama-imatrix?)"
                )));
            }
        }
        let datasets = match md.get("imatrix.datasets") {
            Some(Value::Array(Array::String(v))) => v.clone(),
            _ => Vec::new(),
        };
        let chunk_count = md.get_u32("imatrix.chunk_count")?;

        // NAME.in_sum2 and NAME.counts, paired by NAME.
        let mut pairs: BTreeMap<&str, [Option<&crate::gguf::TensorInfo>; 2]> = BTreeMap::new();
        for t in &file.header.tensors {
            if let Some(n) = t.name.strip_suffix(".in_sum2") {
                pairs.entry(n).or_default()[0] = Some(t);
            } else if let Some(n) = t.name.strip_suffix(".counts") {
                pairs.entry(n).or_default()[1] = Some(t);
            }
        }
        let f32s = |t: &crate::gguf::TensorInfo| -> Result<Vec<f32>> {
            if t.ty != Some(GgmlType::F32) {
                return Err(err(format!(
                    "tensor '{}' (byte {}) is {}, an importance matrix holds F32",
                    t.name,
                    t.info_offset,
                    t.type_name()
                )));
            }
            Ok(file
                .tensor_data(t)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let mut entries = BTreeMap::new();
        for (name, [sums, counts]) in pairs {
            let (Some(sums), Some(counts)) = (sums, counts) else {
                return Err(err(format!(
                    "entry '{name}' has {} but not {} (a tensor is missing)",
                    if sums.is_some() {
                        ".in_sum2"
                    } else {
                        ".counts"
                    },
                    if sums.is_some() {
                        ".counts"
                    } else {
                        ".in_sum2"
                    },
                )));
            };
            let sums_v = f32s(sums)?;
            let counts_v = f32s(counts)?;
            if counts_v.is_empty() || !sums_v.len().is_multiple_of(counts_v.len()) {
                return Err(err(format!(
                    "entry '{name}': {} sums (tensor at byte {}) are not a whole number of rows for {} counts",
                    sums_v.len(),
                    sums.info_offset,
                    counts_v.len()
                )));
            }
            let ne0 = sums_v.len() / counts_v.len();
            let mut values = vec![0f32; sums_v.len()];
            for (j, &c) in counts_v.iter().enumerate() {
                // llama.cpp: counts as int64 by lround, then back to float for the divide.
                if !c.is_finite() {
                    return Err(err(format!("entry '{name}': count {j} is {c}")));
                }
                let count = c.round() as i64 as f32;
                for i in 0..ne0 {
                    values[j * ne0 + i] = if count > 0.0 {
                        sums_v[j * ne0 + i] / count
                    } else {
                        1.0 // never seen: every column equally important
                    };
                }
            }
            entries.insert(name.to_string(), values);
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
            legacy: false,
        })
    }

    fn from_legacy(bytes: &[u8], fname: &str) -> Result<Imatrix> {
        let mut c = Cursor::new(bytes, fname);
        let i32_at = |c: &mut Cursor, what: &str| -> Result<i32> {
            Ok(i32::from_le_bytes(c.array::<4>(what)?))
        };
        let at = c.pos();
        let n_entries = i32_at(&mut c, "the entry count")?;
        // Each entry takes at least 12 bytes plus one value: cap the count by the bytes left.
        if n_entries < 1 || n_entries as u64 * 16 > c.remaining() {
            return Err(c.error_at(
                at,
                format!(
                    "not an importance matrix: neither a GGUF file nor a legacy imatrix (entry count {n_entries} for {} bytes)",
                    bytes.len()
                ),
            ));
        }
        let mut entries = BTreeMap::new();
        for i in 0..n_entries {
            let at = c.pos();
            let len = i32_at(&mut c, &format!("the name length of entry {i}"))?;
            if len < 0 || len as u64 > MAX_NAME_LEN {
                return Err(c.error_at(at, format!("entry {i}: name length {len}")));
            }
            let raw = c.take(len as u64, &format!("the name of entry {i}"))?;
            // llama.cpp keeps the name up to its first NUL.
            let raw = raw.split(|&b| b == 0).next().unwrap_or(&[]);
            let name = std::str::from_utf8(raw)
                .map_err(|_| c.error_at(at + 4, format!("entry {i}: the name is not UTF-8")))?
                .to_string();
            let ncall = i32_at(&mut c, &format!("the call count of entry '{name}'"))?;
            let at = c.pos();
            let nval = i32_at(&mut c, &format!("the value count of entry '{name}'"))?;
            if nval < 1 || nval as u64 * 4 > c.remaining() {
                return Err(c.error_at(
                    at,
                    format!(
                        "file truncated or corrupt: entry '{name}' claims {nval} values, {} bytes left",
                        c.remaining()
                    ),
                ));
            }
            let data = c.take(nval as u64 * 4, &format!("the values of entry '{name}'"))?;
            let values: Vec<f32> = data
                .chunks_exact(4)
                .map(|b| {
                    let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    // llama-quantize: the legacy sums hold (sum/count)·ncall.
                    if ncall > 0 {
                        v / ncall as f32
                    } else {
                        v
                    }
                })
                .collect();
            if entries.insert(name.clone(), values).is_some() {
                return Err(c.error_at(at, format!("entry '{name}' appears twice")));
            }
        }
        // Optional trailer: chunk count and dataset name (llama.cpp reads what is there).
        let mut chunk_count = 0;
        let mut datasets = Vec::new();
        if c.remaining() >= 4 {
            chunk_count = i32_at(&mut c, "the chunk count")?.max(0) as u32;
            if c.remaining() >= 4 {
                let at = c.pos();
                let len = i32_at(&mut c, "the dataset name length")?;
                if len > 0 {
                    if len as u64 > MAX_DATASET_LEN {
                        return Err(c.error_at(at, format!("dataset name length {len}")));
                    }
                    let raw = c.take(len as u64, "the dataset name")?;
                    let raw = raw.split(|&b| b == 0).next().unwrap_or(&[]);
                    datasets.push(String::from_utf8_lossy(raw).into_owned());
                }
            }
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
            legacy: true,
        })
    }

    /// The weights for a tensor of `n_per_row` columns (× `n_mat` for 3-D tensors), as
    /// llama-quantize picks them: `None` if the matrix has no entry for it; an error if the
    /// entry has another size (it belongs to another model), except for `token_embd.weight`,
    /// which llama.cpp then quantizes without weights.
    pub fn weights_for(&self, tensor: &str, n_per_row: u64, n_mat: u64) -> Result<Option<&[f32]>> {
        let Some(v) = self.entries.get(tensor) else {
            return Ok(None);
        };
        if Some(v.len() as u64) == n_per_row.checked_mul(n_mat) {
            return Ok(Some(v));
        }
        if tensor == "token_embd.weight" {
            return Ok(None);
        }
        Err(Error::InvalidFile(format!(
            "importance matrix entry '{tensor}' has {} values, the tensor has {} columns{} (an imatrix of another model?)",
            v.len(),
            n_per_row,
            if n_mat > 1 { format!(" × {n_mat} experts") } else { String::new() }
        )))
    }
}
