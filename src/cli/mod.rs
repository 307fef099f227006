//! Subcommands of the `phiq` binary, one file each.

pub mod bench;
pub mod chat;
pub mod common;
pub mod hub;
pub mod inspect;
pub mod list;
pub mod llama_flags;
pub mod logits;
pub mod perplexity;
pub mod pull;
pub mod quant_report;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod think;
pub mod tokenize;
