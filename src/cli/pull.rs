//! `phiq pull REPO[:QUANT]`: download a GGUF from the Hugging Face hub into the cache (see
//! `hub`); prints the model's path on stdout, progress and notes on stderr.

use super::hub::{self, HfSpec};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
phiq pull bartowski/phi-4-GGUF:Q4_K_M\n  \
phiq pull OWNER/REPO --hf-file path/in/the/repo.gguf\n\
Then: phiq run -m bartowski/phi-4-GGUF:Q4_K_M -p \"...\" (or -hf, which pulls on first use).\n\
The cache: $PHIQ_CACHE (default: the platform cache directory + /phiq). The hub: \
$HF_ENDPOINT (default https://huggingface.co); $HF_TOKEN for private or gated repositories.\n\
An interrupted download resumes when run again; every file is checked against the hub's \
size and sha256.")]
pub struct Args {
    /// The repository and quant: OWNER/REPO[:QUANT], e.g. bartowski/phi-4-GGUF:Q4_K_M.
    /// QUANT is matched case-insensitively in the .gguf file names (default Q4_K_M, then
    /// Q8_0, then the repository's only model file).
    #[arg(value_name = "REPO[:QUANT]")]
    repo: String,
    /// This file of the repository instead of choosing by QUANT.
    #[arg(long = "hf-file", value_name = "FILE")]
    hf_file: Option<String>,
}

pub fn run(args: Args) -> phiq::Result<()> {
    let spec = HfSpec::parse(&args.repo)?.with_file(args.hf_file.as_deref());
    let path = hub::pull(&spec)?;
    println!("{}", path.display());
    Ok(())
}
