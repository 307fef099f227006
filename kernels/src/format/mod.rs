//! The facts about GGUF tensor data, at the bottom of the crate: the ggml tensor types and
//! the one table of facts about them ([`types`]), one `#[repr(C)]` struct per block
//! ([`blocks`], with the IQ types' lookup tables in [`iq_grids`]) and one description of what each format's bits mean ([`unpack`]).

pub mod blocks;
pub mod iq_grids;
pub mod types;
pub mod unpack;

pub use types::{GgmlType, Support, TypeFacts, TYPE_TABLE};
