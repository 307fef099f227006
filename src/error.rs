//! The one error type of the phiq library.
//!
//! Each variant is a kind a caller can tell apart; every message names what is wrong
//! (file, key, tensor, byte offset) so the CLI can print it in a line or two. The kinds
//! also say whose fault it is: the caller's request ([`Error::InvalidInput`],
//! [`Error::TokenOutOfRange`], [`Error::ChatTemplate`]), the model or another input file
//! (the format and metadata kinds, [`Error::InvalidModel`], [`Error::InvalidFile`]), or
//! the machine ([`Error::Io`], [`Error::Resource`]). The server answers 4xx only for the
//! first.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not a GGUF file at all; `looks_like` says what it seems to be.
    #[error("{file}: not a GGUF file: {looks_like}")]
    NotGguf { file: String, looks_like: String },

    /// The bytes break the GGUF format at `offset`.
    #[error("{file}: byte {offset}: {what}")]
    Format {
        file: String,
        offset: u64,
        what: String,
    },

    /// A GGUF version phiq does not read.
    #[error("{file}: unsupported GGUF version {version} (phiq reads versions 2 and 3)")]
    UnsupportedVersion { file: String, version: u32 },

    /// A tensor type phiq cannot compute with (the file may still be inspected).
    #[error("tensor '{tensor}': unsupported tensor type {ty}")]
    UnsupportedType { tensor: String, ty: String },

    /// A model architecture phiq does not run.
    #[error("unsupported architecture '{arch}' (phiq runs: {supported})")]
    UnsupportedArch { arch: String, supported: String },

    /// A metadata key that must be present is not.
    #[error("missing metadata key '{key}'")]
    MissingKey { key: String },

    /// A metadata key holds a value of the wrong type or out of range.
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: String,
        found: String,
    },

    /// A tensor that must be present is not.
    #[error("missing tensor '{name}'")]
    MissingTensor { name: String },

    /// A tensor's shape disagrees with what the metadata implies.
    #[error("tensor '{tensor}': expected shape {expected}, found {found}")]
    ShapeMismatch {
        tensor: String,
        expected: String,
        found: String,
    },

    /// The caller's request does not make sense: a bad argument value (an empty token
    /// list, a prompt longer than the context, a bad sampling parameter, a context larger
    /// than the model's). The only kind that is the caller's fault (HTTP 400 in the server).
    #[error("{0}")]
    InvalidInput(String),

    /// The model file parses but its contents are wrong: a metadata value out of range,
    /// tensor data that does not decode, weights that produce NaN, a broken chat template.
    /// The message names the key, tensor or layer.
    #[error("{0}")]
    InvalidModel(String),

    /// A data file other than the model (an importance matrix, a text to score, a
    /// perplexity base file) is malformed or does not fit the model. The message names it.
    #[error("{0}")]
    InvalidFile(String),

    /// The machine or the environment cannot give what is needed: threads, a socket to
    /// listen on, an async runtime, a child process; a CPU without the kernels' features
    /// or an unusable `PHIQ_ISA`.
    #[error("{0}")]
    Resource(String),

    /// The tokenizer described by the metadata cannot be built (what and why in the text).
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A token id that is not in the vocabulary.
    #[error("token id {id} is out of range (the vocabulary has {n_vocab} tokens)")]
    TokenOutOfRange { id: u32, n_vocab: usize },

    /// A chat template failed to render the caller's messages (the template's own
    /// `raise_exception` messages, e.g. roles out of order, and hitting the sandbox's
    /// limits). A template that does not compile is [`Error::InvalidModel`].
    #[error("chat template: {0}")]
    ChatTemplate(String),

    /// The user stopped the work (Ctrl-C, SIGTERM) before it was complete; nothing was
    /// left half-written.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
