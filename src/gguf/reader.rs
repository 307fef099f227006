//! Parsing and validating a GGUF header: metadata and tensor table.
//!
//! Layout (GGUF v2/v3, little-endian):
//! ```text
//! magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv × (key: string, value_type u32, value)
//! n_tensors × (name: string, n_dims u32, dims u64[n_dims], type u32, offset u64)
//! padding to general.alignment | tensor data (offsets relative to here)
//! ```
//! Every count is capped and compared with the bytes left before anything is
//! allocated; every tensor's extent is checked against the file and its neighbours.

use std::collections::HashMap;

use phiq_kernels::GgmlType;

use super::cursor::Cursor;
use super::metadata::Metadata;
use super::sniff;
use super::value::{Array, Value, ValueType};
use crate::error::Error;

/// The GGUF magic, "GGUF" as bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions (GGML_MAX_DIMS).
pub const MAX_DIMS: usize = 4;

/// Caps on what a file may declare. Real files are far below all of them
/// (Phi-4: 243 tensors, ~40 keys, 233k merges); they stop a hostile header
/// from making us allocate or loop on numbers it made up.
pub const MAX_TENSORS: u64 = 1 << 20;
pub const MAX_KV: u64 = 1 << 20;
pub const MAX_ARRAY_LEN: u64 = 1 << 26;
pub const MAX_STRING_LEN: u64 = 1 << 24;
pub const MAX_NAME_LEN: u64 = 1 << 12;
pub const MAX_NESTING: u32 = 8;
pub const MAX_ALIGNMENT: u64 = 1 << 20;

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the row length (the contiguous one).
    pub dims: Vec<u64>,
    /// The ggml type id as stored; see [`TensorInfo::ty`].
    pub type_id: u32,
    /// The type, or `None` for an id phiq does not know (an error when the tensor is used).
    pub ty: Option<GgmlType>,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Absolute byte offset of this tensor's record in the tensor table (for errors).
    pub info_offset: u64,
    /// Number of elements (product of dims, checked).
    pub n_elements: u64,
    /// Bytes of data, known when the type is.
    pub n_bytes: Option<u64>,
}

impl TensorInfo {
    /// Shape as text, ggml order: `[5120, 7680]`.
    pub fn shape_string(&self) -> String {
        format!("{:?}", self.dims)
    }

    /// Row length (elements in `dims[0]`) and number of rows (product of the others).
    pub fn rows(&self) -> (u64, u64) {
        let row_len = self.dims.first().copied().unwrap_or(1);
        (row_len, self.n_elements / row_len.max(1))
    }

    pub fn type_name(&self) -> String {
        match self.ty {
            Some(t) => t.name().to_string(),
            None => format!("unknown type id {}", self.type_id),
        }
    }
}

/// A parsed and validated GGUF header.
#[derive(Clone, Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    pub file_size: u64,
}

impl Header {
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Absolute byte range of a tensor's data in the file, checked at parse time.
    pub fn tensor_range(&self, t: &TensorInfo) -> Option<std::ops::Range<usize>> {
        let start = self.data_offset.checked_add(t.offset)?;
        let end = start.checked_add(t.n_bytes?)?;
        if end > self.file_size {
            return None;
        }
        Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// Total number of elements over all tensors.
    pub fn n_params(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements).sum()
    }

    /// Parses and validates the header of a GGUF file held in `bytes`.
    /// `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Header, Error> {
        let mut cur = Cursor::new(bytes, file);
        if bytes.len() < 4 || bytes[..4] != MAGIC {
            return Err(Error::NotGguf {
                file: file.to_string(),
                looks_like: sniff::describe(bytes),
            });
        }
        cur.take(4, "magic")?;
        let version = cur.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::UnsupportedVersion {
                    file: file.to_string(),
                    version,
                })
            }
            v if (1..=3).contains(&v.swap_bytes()) => {
                return Err(cur.error_at(
                    4,
                    format!(
                        "this is a big-endian GGUF file (version {} stored big-endian); phiq reads little-endian GGUF only",
                        v.swap_bytes()
                    ),
                ))
            }
            _ => {
                return Err(Error::UnsupportedVersion {
                    file: file.to_string(),
                    version,
                })
            }
        }

        let n_tensors = cur.u64("tensor count")?;
        let n_kv = cur.u64("metadata key count")?;
        // Minimum encoded sizes: a tensor record is at least name length (8) + n_dims
        // (4) + one dim (8) + type (4) + offset (8); a key-value at least key length
        // (8) + type (4) + a 1-byte value.
        check_count(&cur, 8, "tensor count", n_tensors, MAX_TENSORS, 32)?;
        check_count(&cur, 16, "metadata key count", n_kv, MAX_KV, 13)?;

        let mut metadata = Metadata::default();
        for _ in 0..n_kv {
            let at = cur.pos();
            let key = cur.string("metadata key", MAX_NAME_LEN)?;
            let ty_at = cur.pos();
            let ty_id = cur.u32("metadata value type")?;
            let ty = ValueType::from_id(ty_id).ok_or_else(|| {
                cur.error_at(
                    ty_at,
                    format!("metadata key '{key}': unknown value type {ty_id} (GGUF has 0..=12)"),
                )
            })?;
            let value = read_value(&mut cur, ty, &key, 0)?;
            if metadata.get(&key).is_some() {
                return Err(cur.error_at(at, format!("duplicate metadata key '{key}'")));
            }
            metadata.insert(key, value, at);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => {
                let a = v.as_i128().unwrap_or(0);
                if a <= 0 || a as u128 > MAX_ALIGNMENT as u128 || !(a as u64).is_power_of_two() {
                    return Err(cur.error_at(
                        metadata.offset_of("general.alignment").unwrap_or(0),
                        format!(
                            "general.alignment must be a power of two up to {MAX_ALIGNMENT}, found {}",
                            v.describe()
                        ),
                    ));
                }
                a as u64
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let info = read_tensor_info(&mut cur, i, alignment)?;
            if tensor_index.contains_key(&info.name) {
                return Err(cur.error_at(
                    info.info_offset,
                    format!("duplicate tensor name '{}'", info.name),
                ));
            }
            tensor_index.insert(info.name.clone(), tensors.len());
            tensors.push(info);
        }

        let file_size = bytes.len() as u64;
        let data_offset = align_up(cur.pos(), alignment)
            .ok_or_else(|| cur.error_at(cur.pos(), "data section offset overflows".to_string()))?;
        let header = Header {
            version,
            metadata,
            tensors,
            tensor_index,
            alignment,
            data_offset,
            file_size,
        };
        header.check_extents(&cur)?;
        Ok(header)
    }

    /// Every tensor inside the file, and no two overlapping.
    fn check_extents(&self, cur: &Cursor) -> Result<(), Error> {
        // (start, end, index) of every tensor, absolute; unknown-type tensors have an
        // unknown size, so they are checked as zero-length at their start.
        let mut spans = Vec::with_capacity(self.tensors.len());
        for (i, t) in self.tensors.iter().enumerate() {
            let start = self.data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes.unwrap_or(0)));
            let (Some(start), Some(end)) = (start, end) else {
                return Err(cur.error_at(
                    t.info_offset,
                    format!("tensor '{}': data offset {} overflows", t.name, t.offset),
                ));
            };
            spans.push((start, end, i));
        }
        spans.sort_unstable();
        for &(_, end, i) in &spans {
            if end > self.file_size {
                let t = &self.tensors[i];
                return Err(cur.error_at(
                    t.info_offset,
                    format!(
                        "file truncated: tensor '{}' needs bytes up to {end}, file has {} (incomplete download?)",
                        t.name, self.file_size
                    ),
                ));
            }
        }
        for pair in spans.windows(2) {
            let (_, end_a, a) = pair[0];
            let (start_b, _, b) = pair[1];
            if start_b < end_a {
                let (ta, tb) = (&self.tensors[a], &self.tensors[b]);
                return Err(cur.error_at(
                    tb.info_offset,
                    format!(
                        "tensor '{}' (data at {}..{}) overlaps tensor '{}' (data at {start_b}..)",
                        ta.name,
                        self.data_offset + ta.offset,
                        end_a,
                        tb.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? / a * a)
}

/// Fails unless `count` is at most `cap` and `count * min_size` bytes remain.
fn check_count(
    cur: &Cursor,
    at: u64,
    what: &str,
    count: u64,
    cap: u64,
    min_size: u64,
) -> Result<(), Error> {
    if count > cap {
        return Err(cur.error_at(at, format!("{what} {count} exceeds the limit of {cap}")));
    }
    match count.checked_mul(min_size) {
        Some(need) if need <= cur.remaining() => Ok(()),
        _ => Err(cur.error_at(
            at,
            format!(
                "{what} {count} cannot fit in the {} bytes left (file truncated or corrupt)",
                cur.remaining()
            ),
        )),
    }
}

fn read_value(cur: &mut Cursor, ty: ValueType, key: &str, depth: u32) -> Result<Value, Error> {
    let what = key;
    Ok(match ty {
        ValueType::U8 => Value::U8(cur.u8(what)?),
        ValueType::I8 => Value::I8(cur.u8(what)? as i8),
        ValueType::U16 => Value::U16(cur.u16(what)?),
        ValueType::I16 => Value::I16(cur.u16(what)? as i16),
        ValueType::U32 => Value::U32(cur.u32(what)?),
        ValueType::I32 => Value::I32(cur.u32(what)? as i32),
        ValueType::F32 => Value::F32(f32::from_bits(cur.u32(what)?)),
        ValueType::Bool => Value::Bool(read_bool(cur, key)?),
        ValueType::String => Value::String(cur.string(what, MAX_STRING_LEN)?),
        ValueType::Array => Value::Array(read_array(cur, key, depth)?),
        ValueType::U64 => Value::U64(cur.u64(what)?),
        ValueType::I64 => Value::I64(cur.u64(what)? as i64),
        ValueType::F64 => Value::F64(f64::from_bits(cur.u64(what)?)),
    })
}

fn read_bool(cur: &mut Cursor, key: &str) -> Result<bool, Error> {
    let at = cur.pos();
    match cur.u8(key)? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(cur.error_at(
            at,
            format!("metadata key '{key}': bool byte is {b}, not 0 or 1"),
        )),
    }
}

fn read_array(cur: &mut Cursor, key: &str, depth: u32) -> Result<Array, Error> {
    let at = cur.pos();
    if depth >= MAX_NESTING {
        return Err(cur.error_at(
            at,
            format!("metadata key '{key}': arrays nested deeper than {MAX_NESTING}"),
        ));
    }
    let ty_id = cur.u32(key)?;
    let ty = ValueType::from_id(ty_id).ok_or_else(|| {
        cur.error_at(
            at,
            format!("metadata key '{key}': unknown array element type {ty_id}"),
        )
    })?;
    let len = cur.u64(key)?;
    let what = format!("metadata key '{key}': array length");
    check_count(
        cur,
        at + 4,
        &what,
        len,
        MAX_ARRAY_LEN,
        ty.min_encoded_size(),
    )?;
    let n = len as usize; // <= MAX_ARRAY_LEN, and fits in the bytes left

    macro_rules! scalars {
        ($variant:ident, $read:expr) => {{
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push($read);
            }
            Array::$variant(v)
        }};
    }
    Ok(match ty {
        ValueType::U8 => Array::U8(cur.take(len, key)?.to_vec()),
        ValueType::I8 => Array::I8(cur.take(len, key)?.iter().map(|&b| b as i8).collect()),
        ValueType::U16 => scalars!(U16, cur.u16(key)?),
        ValueType::I16 => scalars!(I16, cur.u16(key)? as i16),
        ValueType::U32 => scalars!(U32, cur.u32(key)?),
        ValueType::I32 => scalars!(I32, cur.u32(key)? as i32),
        ValueType::F32 => scalars!(F32, f32::from_bits(cur.u32(key)?)),
        ValueType::Bool => scalars!(Bool, read_bool(cur, key)?),
        ValueType::String => scalars!(String, cur.string(key, MAX_STRING_LEN)?),
        ValueType::Array => scalars!(Array, read_array(cur, key, depth + 1)?),
        ValueType::U64 => scalars!(U64, cur.u64(key)?),
        ValueType::I64 => scalars!(I64, cur.u64(key)? as i64),
        ValueType::F64 => scalars!(F64, f64::from_bits(cur.u64(key)?)),
    })
}

fn read_tensor_info(cur: &mut Cursor, index: u64, alignment: u64) -> Result<TensorInfo, Error> {
    let info_offset = cur.pos();
    let name = cur.string(&format!("tensor #{index} name"), MAX_NAME_LEN)?;
    let at = cur.pos();
    let n_dims = cur.u32(&format!("tensor '{name}' dimension count"))?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(cur.error_at(
            at,
            format!("tensor '{name}': {n_dims} dimensions (must be 1 to {MAX_DIMS})"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut n_elements: u64 = 1;
    for d in 0..n_dims {
        let at = cur.pos();
        let dim = cur.u64(&format!("tensor '{name}' dimension {d}"))?;
        if dim == 0 {
            return Err(cur.error_at(at, format!("tensor '{name}': dimension {d} is 0")));
        }
        // Each dimension must fit in i64, as ggml stores them.
        n_elements = n_elements
            .checked_mul(dim)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| cur.error_at(at, format!("tensor '{name}': element count overflows")))?;
        dims.push(dim);
    }
    let type_at = cur.pos();
    let type_id = cur.u32(&format!("tensor '{name}' type"))?;
    let ty = GgmlType::from_id(type_id);
    let n_bytes = match ty {
        None => None,
        Some(t) => {
            if dims[0] % t.block_size() != 0 {
                return Err(cur.error_at(
                    type_at,
                    format!(
                        "tensor '{name}': row length {} is not a multiple of {}'s block size {}",
                        dims[0],
                        t.name(),
                        t.block_size()
                    ),
                ));
            }
            Some(t.bytes_for(n_elements).ok_or_else(|| {
                cur.error_at(type_at, format!("tensor '{name}': byte size overflows"))
            })?)
        }
    };
    let off_at = cur.pos();
    let offset = cur.u64(&format!("tensor '{name}' offset"))?;
    if offset % alignment != 0 {
        return Err(cur.error_at(
            off_at,
            format!("tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}"),
        ));
    }
    Ok(TensorInfo {
        name,
        dims,
        type_id,
        ty,
        offset,
        info_offset,
        n_elements,
        n_bytes,
    })
}
