//! `phiq perplexity -m FILE -f TEXT [-c 512] [-b N] [--chunks N]`, with llama-perplexity's
//! definition: the text is tokenized once and cut into chunks of `-c` tokens; each chunk
//! is evaluated from an empty cache and only its second half is scored (each position
//! then has at least c/2 tokens of context). Running estimates per chunk, then
//! `Final estimate: PPL = X +/- Y` with llama.cpp's uncertainty (the standard error of
//! the mean negative log-likelihood, times the PPL).

use std::io::Write;
use std::path::PathBuf;

use phiq::Error;

use super::common::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Text file to score.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: PathBuf,
    /// Score at most this many chunks.
    #[arg(long)]
    chunks: Option<usize>,
}

/// log-sum-exp of a row, in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    row.iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max
}

pub fn run(args: Args) -> phiq::Result<()> {
    // -c defaults to 4096 for run/chat; perplexity's default is llama.cpp's 512.
    let n_ctx = if args.model.ctx_size == 4096 {
        512
    } else {
        args.model.ctx_size
    };
    if n_ctx < 4 {
        return Err(Error::InvalidInput(
            "-c/--ctx-size must be at least 4 for perplexity".into(),
        ));
    }
    let bytes = std::fs::read(&args.file).map_err(|e| Error::Io {
        path: args.file.clone(),
        source: e,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "{}: not valid UTF-8 (byte {})",
            args.file.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let model = args.model.load()?;
    let tok = model.tokenizer()?;
    let ids = tok.encode(&text, true, false);
    let n_chunks_all = ids.len() / n_ctx;
    let n_chunks = args.chunks.map_or(n_chunks_all, |c| c.min(n_chunks_all));
    if n_chunks == 0 {
        return Err(Error::InvalidInput(format!(
            "{}: {} tokens, fewer than one chunk of {n_ctx} (use a longer text or a smaller -c)",
            args.file.display(),
            ids.len()
        )));
    }
    eprintln!(
        "phiq: {} tokens, {n_chunks} chunks of {n_ctx}, scoring the second half of each",
        ids.len()
    );
    let mut session = model.session(n_ctx.min(model.config.n_ctx_train))?;
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let n_vocab = model.n_vocab();
    let mut out = std::io::stdout().lock();
    for c in 0..n_chunks {
        let mut chunk = ids[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let (true, Some(bos)) = (tok.add_bos(), tok.bos()) {
            chunk[0] = bos; // as llama-perplexity: every chunk starts with BOS
        }
        session.reset();
        let logits = session.eval_all(&chunk)?;
        for i in first..n_ctx - 1 {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            let lp = row[chunk[i + 1] as usize] as f64 - log_sum_exp(row);
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
        }
        let _ = write!(out, "[{}]{:.4},", c + 1, (nll / count as f64).exp());
        let _ = out.flush();
    }
    let _ = writeln!(out);
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let unc = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    let _ = writeln!(out, "Final estimate: PPL = {ppl:.4} +/- {unc:.5}");
    Ok(())
}
