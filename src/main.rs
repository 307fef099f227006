//! The `phiq` command line. Each subcommand lives in `src/cli/<name>.rs`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Show what a GGUF file holds: architecture, size, type mix, metadata, tensors.
    Inspect(cli::inspect::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => cli::inspect::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phiq: error: {e}");
            ExitCode::FAILURE
        }
    }
}
