//! Subcommands of the `phiq` binary, one file each.

pub mod inspect;
pub mod logits;
pub mod tokenize;
