//! Writing GGUF v3 files, streaming: the header first, then tensor data in pieces,
//! so a writer never needs more than the piece it is given in memory.
//!
//! ```no_run
//! # use phiq::gguf::{GgufWriter, TensorSpec, Value};
//! # use phiq_kernels::GgmlType;
//! let out = std::io::BufWriter::new(std::fs::File::create("out.gguf")?);
//! let meta = vec![("general.architecture".to_string(), Value::String("phi3".into()))];
//! let tensors = vec![TensorSpec { name: "t".into(), dims: vec![4, 2], ty: GgmlType::F32 }];
//! let mut w = GgufWriter::new(out, "out.gguf", &meta, &tensors)?;
//! w.write_data(&[0u8; 32])?; // any number of pieces, in tensor order
//! w.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Write;
use std::path::PathBuf;

use phiq_kernels::GgmlType;

use super::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use super::value::{Array, Value};
use crate::error::Error;

/// Name, shape (ggml order, row length first) and type of a tensor to write.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

pub struct GgufWriter<W: Write> {
    out: W,
    path: PathBuf,
    alignment: u64,
    /// Bytes of each tensor, in order.
    sizes: Vec<(String, u64)>,
    /// Index of the tensor being written and how many of its bytes are written.
    current: usize,
    written: u64,
}

impl<W: Write> GgufWriter<W> {
    /// Writes the header (metadata and tensor table) to `out`. `path` names the output in
    /// errors. `general.alignment`, if present in `metadata`, sets the alignment.
    pub fn new(
        out: W,
        path: impl Into<PathBuf>,
        metadata: &[(String, Value)],
        tensors: &[TensorSpec],
    ) -> Result<GgufWriter<W>, Error> {
        let path = path.into();
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_i128() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() && a <= u32::MAX as i128 => {
                    a as u64
                }
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "general.alignment must be a power of two, found {}",
                        v.describe()
                    )))
                }
            },
        };

        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata {
            put_string(&mut head, key);
            head.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut head, value);
        }
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut offset = 0u64;
        for t in tensors {
            let bad = |why: &str| Error::InvalidInput(format!("tensor '{}': {why}", t.name));
            if t.dims.is_empty() || t.dims.len() > MAX_DIMS || t.dims.contains(&0) {
                return Err(bad("needs 1 to 4 dimensions, none zero"));
            }
            let n = t
                .dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| bad("element count overflows"))?;
            if t.dims[0] % t.ty.block_size() != 0 {
                return Err(bad(&format!(
                    "row length {} is not a multiple of {}'s block size",
                    t.dims[0], t.ty
                )));
            }
            let n_bytes = t.ty.bytes_for(n).ok_or_else(|| bad("size overflows"))?;
            put_string(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ty.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            sizes.push((t.name.clone(), n_bytes));
            offset = padded(offset + n_bytes, alignment);
        }
        head.resize(padded(head.len() as u64, alignment) as usize, 0);

        let mut w = GgufWriter {
            out,
            path,
            alignment,
            sizes,
            current: 0,
            written: 0,
        };
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(self.path.clone(), e))
    }

    /// Appends tensor data. Pieces may split or span tensors; each tensor's padding
    /// is written when its last byte is.
    pub fn write_data(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let Some(&(_, size)) = self.sizes.get(self.current) else {
                return Err(Error::InvalidInput(format!(
                    "{}: {} bytes of tensor data written after the last tensor",
                    self.path.display(),
                    data.len()
                )));
            };
            let take = (size - self.written).min(data.len() as u64) as usize;
            self.put(&data[..take])?;
            data = &data[take..];
            self.written += take as u64;
            if self.written == size {
                let pad = padded(size, self.alignment) - size;
                self.put(&vec![0u8; pad as usize])?;
                self.current += 1;
                self.written = 0;
            }
        }
        Ok(())
    }

    /// Checks that every tensor was written in full, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W, Error> {
        // Zero-sized tensors cannot exist (dims > 0), so a tensor is complete only
        // once `write_data` moved past it.
        if let Some((name, size)) = self.sizes.get(self.current) {
            return Err(Error::InvalidInput(format!(
                "{}: tensor '{name}' has {} of its {size} bytes written",
                self.path.display(),
                self.written
            )));
        }
        self.out
            .flush()
            .map_err(|e| Error::io(self.path.clone(), e))?;
        Ok(self.out)
    }
}

fn padded(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.push(*x as u8),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(*x as u8),
        Value::String(s) => put_string(buf, s),
        Value::Array(a) => put_array(buf, a),
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(buf: &mut Vec<u8>, a: &Array) {
    buf.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            $v.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match a {
        Array::U8(v) => buf.extend_from_slice(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::Bool(v) => v.iter().for_each(|&b| buf.push(b as u8)),
        Array::String(v) => v.iter().for_each(|s| put_string(buf, s)),
        Array::Array(v) => v.iter().for_each(|x| put_array(buf, x)),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
    }
}
