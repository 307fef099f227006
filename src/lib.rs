//! phiq: a CPU inference engine for Microsoft's Phi-4 (and the `phi3` GGUF family).
//!
//! Data flows from a GGUF file, memory-mapped and validated once ([`gguf::GgufFile`]),
//! into a model whose weights are borrowed views of the mapping. All arithmetic lives in
//! the `phiq-kernels` crate.
//!
//! Cargo features: the library alone (`default-features = false`) is the engine. `server`
//! adds `phiq::server`, the OpenAI-compatible HTTP server (axum/tokio); `cli` (the default)
//! adds the `phiq` binary's command line on top of it.

pub mod context_shift;
pub mod embedding;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod imatrix;
pub mod model;
pub mod quantize;
pub mod reasoning;
pub mod sampling;
#[cfg(feature = "server")]
pub mod server;
pub mod tokenizer;

pub use context_shift::ContextShift;
pub use error::{Error, Result};
pub use generate::{GenerateParams, Generator, Piece, StopReason, Timings, TokenLogprob};
pub use model::{Model, ModelOptions, Session};
pub use phiq_kernels as kernels;
pub use sampling::{Sampler, SamplerParams};
pub use tokenizer::{ChatMessage, StreamDecoder, Tokenizer};
