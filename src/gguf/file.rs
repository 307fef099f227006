//! `GgufFile`: a validated header over the file's bytes, memory-mapped (zero copy)
//! or owned (tests, small files).

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::reader::{Header, TensorInfo};
use crate::error::Error;

enum Bytes {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

/// A GGUF file: its parsed, validated header and its bytes.
pub struct GgufFile {
    name: String,
    bytes: Bytes,
    pub header: Header,
}

impl GgufFile {
    /// Memory-maps `path` read-only and validates its header. The weights are never
    /// copied: tensor data is borrowed from the mapping.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, Error> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::InvalidInput(format!(
                "{name}: is a directory, not a GGUF file"
            )));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        if meta.len() == 0 {
            // mmap of an empty file fails; say what the user needs to know instead.
            return Self::from_bytes(name, Vec::new());
        }
        // SAFETY: the mapping is read-only and lives as long as `GgufFile`, which hands
        // out only `&[u8]` borrowed from it. If another process truncates the file while
        // it is mapped, reads past the new end fault (SIGBUS): the same contract as every
        // mmap-based model loader (llama.cpp included); we never write through it.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = Header::parse(&mmap, &name)?;
        Ok(GgufFile {
            name,
            bytes: Bytes::Mmap(mmap),
            header,
        })
    }

    /// Validates a GGUF file held in memory; `name` labels it in errors.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<GgufFile, Error> {
        let name = name.into();
        let header = Header::parse(&bytes, &name)?;
        Ok(GgufFile {
            name,
            bytes: Bytes::Owned(bytes),
            header,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// All the bytes of the file.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mmap(m) => m,
            Bytes::Owned(v) => v,
        }
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, Error> {
        self.header
            .tensor(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
            })
    }

    /// The raw bytes of a tensor's data. An unknown tensor type is an error naming it.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<&[u8], Error> {
        if t.ty.is_none() {
            return Err(Error::UnsupportedType {
                tensor: t.name.clone(),
                ty: t.type_name(),
            });
        }
        // The range was checked against the file at parse time; `get` keeps this
        // sound even for a `TensorInfo` that came from another file.
        self.header
            .tensor_range(t)
            .and_then(|r| self.bytes().get(r))
            .ok_or_else(|| Error::Format {
                file: self.name.clone(),
                offset: t.info_offset,
                what: format!("tensor '{}': data lies outside the file", t.name),
            })
    }
}
