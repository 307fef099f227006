//! The `phiq` command line. Each subcommand lives in `src/cli/<name>.rs`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use phiq::kernels::isa::Isa;

mod cli;

#[derive(Parser)]
#[command(
    name = "phiq",
    version,
    about = "Run Microsoft Phi-4 (and the phi3 GGUF family) on the CPU from quantized GGUF files",
    long_about = None,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (streams to stdout; timings to stderr).
    Run(cli::run::Args),
    /// Download a GGUF from the Hugging Face hub into the cache: REPO[:QUANT].
    Pull(cli::pull::Args),
    /// List the models in the cache: the names -m takes, sizes, paths.
    List(cli::list::ListArgs),
    /// Remove a model (and its partial download) from the cache.
    Rm(cli::list::RmArgs),
    /// Convert a GGUF to another quantization type (llama-quantize's presets).
    Quantize(cli::quantize::Args),
    /// Quantize to several types and report size, bits/weight, PPL, KLD and speed (index.md + plots).
    QuantReport(cli::quant_report::Args),
    /// Perplexity of a text file, as llama-perplexity computes it.
    Perplexity(cli::perplexity::Args),
    /// Measure prompt (pp) and generation (tg) speed, like llama-bench.
    Bench(cli::bench::Args),
    /// Serve an OpenAI-compatible HTTP API (chat, completions, embeddings) on localhost.
    Serve(cli::serve::Args),
    /// Chat in the terminal with the model's chat template (history kept in the KV cache).
    #[command(after_help = cli::chat::COMMANDS)]
    Chat(cli::chat::Args),
    /// Show what a GGUF file holds: architecture, size, type mix, metadata, tensors.
    Inspect(cli::inspect::Args),
    /// Evaluate token ids and write the logits of every position to a .npy file.
    Logits(cli::logits::Args),
    /// Turn text into token ids with the model's own tokenizer.
    Tokenize(cli::tokenize::TokenizeArgs),
    /// Turn token ids back into text.
    Detokenize(cli::tokenize::DetokenizeArgs),
}

/// `phiq --version`: the version and the kernel path this CPU gets (or PHIQ_ISA forces).
fn version() -> String {
    let isa = match Isa::global() {
        Ok(isa) => isa.to_string(),
        Err(e) => format!("error: {e}"),
    };
    let supported: Vec<String> = Isa::all_supported().iter().map(|i| i.to_string()).collect();
    let features = phiq::kernels::isa::cpu_features();
    format!(
        "{} (kernels: {isa}; this CPU supports: {}; features seen: {})",
        env!("CARGO_PKG_VERSION"),
        supported.join(", "),
        if features.is_empty() {
            "none of phiq's".to_string()
        } else {
            features.join(" ")
        }
    )
}

fn main() -> ExitCode {
    let version: &'static str = Box::leak(version().into_boxed_str());
    // llama.cpp's multi-letter short flags, before clap would split them into letters.
    let args = match cli::llama_flags::translate(std::env::args_os().collect()) {
        Ok((args, notes)) => {
            for n in notes {
                eprintln!("phiq: note: {n}");
            }
            args
        }
        Err(e) => {
            eprintln!("phiq: error: {e}");
            return ExitCode::from(2);
        }
    };
    // A repeated flag: the last one wins, as in llama.cpp (lists such as --stop still
    // collect every value).
    let matches = Cli::command()
        .version(version)
        .args_override_self(true)
        .mut_subcommands(|s| s.args_override_self(true))
        .get_matches_from(args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Pull(args) => cli::pull::run(args),
        Command::List(args) => cli::list::run_list(args),
        Command::Rm(args) => cli::list::run_rm(args),
        Command::Chat(args) => cli::chat::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Quantize(args) => cli::quantize::run(args),
        Command::QuantReport(args) => cli::quant_report::run(args),
        Command::Perplexity(args) => cli::perplexity::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Logits(args) => cli::logits::run(args),
        Command::Tokenize(args) => cli::tokenize::run_tokenize(args),
        Command::Detokenize(args) => cli::tokenize::run_detokenize(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phiq: error: {e}");
            ExitCode::FAILURE
        }
    }
}
