//! `phiq logits -m FILE (--ids 1,2,3 | -p TEXT) [-c CTX] [--batch-size N] -o OUT.npy`
//!
//! Evaluates exactly the given token ids (no BOS added) and writes the logits of every
//! position as a numpy `.npy` file, float32, shape `[n_tokens, n_vocab]`. The context is
//! exactly the evaluated tokens unless `-c` is given, so the LongRoPE factor choice equals
//! transformers' for that sequence.

use std::io::Write;
use std::path::PathBuf;

use phiq::{Error, Model, ModelOptions};

use super::common::ModelSource;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: ModelSource,
    /// Allow positions past the model's training context length (see `phiq run --help`).
    #[arg(long = "ctx-beyond-training")]
    ctx_beyond_training: bool,
    /// Token ids to evaluate: comma-separated (e.g. 100264,882,100266) or as
    /// `phiq tokenize --ids` prints them ("[100264, 882, 100266]").
    #[arg(
        long,
        num_args = 1..,
        required_unless_present = "prompt",
        conflicts_with = "prompt"
    )]
    ids: Vec<String>,
    /// Text to tokenize and evaluate (no BOS unless the model's add_bos_token says so;
    /// control-token text stays plain text).
    #[arg(short = 'p', long = "prompt")]
    prompt: Option<String>,
    /// Context size (default: exactly the number of tokens).
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    /// Tokens per batch (1 evaluates one token at a time).
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    batch_size: usize,
    /// Threads (default: physical cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    #[command(flatten)]
    cache: super::common::CacheArgs,
    /// Output .npy file.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

pub fn run(args: Args) -> phiq::Result<()> {
    let opts = ModelOptions {
        threads: args.threads,
        batch_size: Some(args.batch_size),
        cache_type_k: args.cache.types().0,
        cache_type_v: args.cache.types().1,
    };
    let mut model = Model::load(args.source.path()?, &opts)?;
    model.set_context_beyond_training(args.ctx_beyond_training);
    let ids = match &args.prompt {
        Some(text) => model.tokenizer()?.encode(text, true, false),
        None => super::tokenize::parse_ids(&args.ids)?,
    };
    if ids.is_empty() {
        return Err(Error::InvalidInput("no tokens to evaluate".into()));
    }
    let n_ctx = args.ctx_size.unwrap_or(ids.len()).max(1);
    let mut session = model.session(n_ctx)?;
    let logits = session.eval_all(&ids)?;
    write_npy(&args.output, &logits, ids.len(), model.n_vocab())
}

/// Writes a float32 C-order `.npy` (format version 1.0) of shape `[rows, cols]`.
pub fn write_npy(path: &PathBuf, data: &[f32], rows: usize, cols: usize) -> phiq::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let io = |e| Error::Io {
        path: path.clone(),
        source: e,
    };
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .map_err(io)
}
