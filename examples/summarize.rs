//! A small offline tool built on the phiq library: summarise a text file with a local
//! Phi-4 model, streaming the summary to stdout.
//!
//!     cargo run --release --example summarize -- MODEL.gguf notes.txt [max_tokens]
//!
//! It shows the whole embedding API: load a model, render the chat template, generate
//! with a stop reason and timings.

use std::io::Write;

use phiq::{ChatMessage, GenerateParams, Model, ModelOptions, SamplerParams};

fn main() {
    if let Err(e) = run() {
        eprintln!("summarize: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, file, rest @ ..] = args.as_slice() else {
        return Err("usage: summarize MODEL.gguf FILE [max_tokens]".into());
    };
    let max_tokens = match rest.first() {
        Some(n) => n.parse()?,
        None => 200,
    };
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;

    let model = Model::load(model_path, &ModelOptions::default())?;
    let tokenizer = model.tokenizer()?;
    let messages = [
        ChatMessage::system("You summarise documents accurately and briefly."),
        ChatMessage::user(format!("Summarise this text in a few sentences:\n\n{text}")),
    ];
    let prompt = tokenizer.encode_chat(&messages, true)?;
    let n_ctx = (prompt.len() + max_tokens).min(model.config.n_ctx_train);
    let mut session = model.session(n_ctx)?;
    let params = GenerateParams {
        max_tokens,
        sampler: SamplerParams::greedy(),
        ..Default::default()
    };
    let mut generator = session.generate(&prompt, params)?;
    let mut out = std::io::stdout().lock();
    for piece in &mut generator {
        out.write_all(piece?.text.as_bytes())?;
        out.flush()?;
    }
    writeln!(out)?;
    let t = generator.timings();
    eprintln!(
        "[{} prompt tokens in {:.2} s, {} generated in {:.2} s, stopped by {:?}]",
        t.prompt_tokens,
        t.prompt_time.as_secs_f64(),
        t.generated_tokens,
        t.generation_time.as_secs_f64(),
        generator.stop_reason()
    );
    Ok(())
}
