//! GGUF: reading (validated, zero copy) and writing (streaming).
//!
//! - `cursor` — bounds-checked little-endian reads
//! - `reader` — header parsing and validation ([`Header`], [`TensorInfo`])
//! - `metadata` — key → value with typed getters
//! - `value` — the 13 metadata value types
//! - `file` — [`GgufFile`], the header over mmapped or owned bytes
//! - `writer` — [`GgufWriter`]
//! - `sniff` — what a non-GGUF file looks like

pub(crate) mod cursor;
pub mod file;
pub mod metadata;
pub mod reader;
pub mod sniff;
pub mod value;
pub mod writer;

pub use file::GgufFile;
pub use metadata::{FromValue, Metadata};
pub use reader::{Header, TensorInfo};
pub use value::{Array, Value, ValueType};
pub use writer::{GgufWriter, TensorSpec};
