//! `phiq chat`: an interactive chat in the terminal, using the model's chat template.
//!
//! The conversation stays in the KV cache: each turn re-renders the history and only the
//! tokens after the common prefix are evaluated. Commands: `/reset`, `/system TEXT`,
//! `/exit`, `/help`. End a line with `\` to continue it, or wrap a block in `"""`.
//! Ctrl-C stops the current answer (not the program); Ctrl-D (EOF) exits.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use phiq::{ChatMessage, Error, GenerateParams};

use super::common::{rate, ModelArgs, SamplingArgs};
use super::run::Stdout;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// System message.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Most tokens per answer (-1: no limit but the context).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    n_predict: i64,
    /// Print timings after each answer.
    #[arg(short = 'v', long)]
    verbose: bool,
}

const HELP: &str = "commands: /reset (new conversation), /system TEXT (set the system message and reset), /exit; \
end a line with \\ to continue it, or wrap several lines in \"\"\"; Ctrl-C stops an answer, Ctrl-D exits";

/// Reads one user message (possibly several lines); `None` at end of input.
fn read_message(input: &mut impl BufRead, interactive: bool) -> std::io::Result<Option<String>> {
    let prompt = |s: &str| {
        if interactive {
            print!("{s}");
            let _ = std::io::stdout().flush();
        }
    };
    prompt("> ");
    let mut text = String::new();
    let mut line = String::new();
    let mut in_block = false;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(if text.is_empty() { None } else { Some(text) });
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l.trim() == "\"\"\"" {
            if in_block {
                return Ok(Some(text));
            }
            in_block = true;
            prompt(". ");
            continue;
        }
        if in_block {
            text.push_str(l);
            text.push('\n');
            prompt(". ");
        } else if let Some(cont) = l.strip_suffix('\\') {
            text.push_str(cont);
            text.push('\n');
            prompt(". ");
        } else {
            text.push_str(l);
            return Ok(Some(text));
        }
    }
}

pub fn run(args: Args) -> phiq::Result<()> {
    let max_tokens = match args.n_predict {
        n if n < 0 => usize::MAX,
        0 => {
            return Err(Error::InvalidInput(
                "-n/--n-predict must be at least 1 (or -1)".into(),
            ))
        }
        n => n as usize,
    };
    let sampler = args.sampling.params()?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("phiq: loading {} ...", args.model.model_path()?.display());
    }
    let model = args.model.load()?;
    if interactive {
        // Read the weights in with a progress bar (a 9 GB file from disk takes a while).
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "loading {bar:30} {bytes}/{total_bytes} [{eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        model.prefetch(|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
    }
    let tok = model.tokenizer()?;
    tok.effective_chat_template()?;
    let n_ctx = args.model.n_ctx(&model)?;
    let mut session = model.session(n_ctx)?;
    if interactive {
        eprintln!(
            "phiq: {} layers, context {n_ctx}, kernels {}, {} threads. {HELP}",
            model.config.n_layer,
            model.isa(),
            model.threads()
        );
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // Ctrl-C stops the answer being generated; the loop below checks the flag.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let mut system = args.system.clone();
    let mut messages: Vec<ChatMessage> = Vec::new();
    let reset = |messages: &mut Vec<ChatMessage>, system: &Option<String>| {
        messages.clear();
        if let Some(s) = system {
            messages.push(ChatMessage::system(s.clone()));
        }
    };
    reset(&mut messages, &system);
    let mut out = Stdout::new();
    let mut input = std::io::stdin().lock();
    loop {
        interrupted.store(false, Ordering::SeqCst);
        let Some(text) = read_message(&mut input, interactive).map_err(|e| Error::Io {
            path: "<stdin>".into(),
            source: e,
        })?
        else {
            break;
        };
        let trimmed = text.trim();
        match trimmed
            .split_once(' ')
            .map_or((trimmed, ""), |(a, b)| (a, b.trim()))
        {
            ("", _) => continue,
            ("/exit" | "/quit", _) => break,
            ("/help", _) => {
                eprintln!("{HELP}");
                continue;
            }
            ("/reset", _) => {
                reset(&mut messages, &system);
                session.reset();
                eprintln!("(new conversation)");
                continue;
            }
            ("/system", rest) => {
                system = (!rest.is_empty()).then(|| rest.to_string());
                reset(&mut messages, &system);
                session.reset();
                eprintln!("(system message set; new conversation)");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::user(text.clone()));
        let ids = tok.encode_chat(&messages, true)?;
        if ids.len() >= n_ctx {
            messages.pop();
            eprintln!("phiq: the conversation ({} tokens) no longer fits the context of {n_ctx}; /reset to start over", ids.len());
            continue;
        }
        let params = GenerateParams {
            max_tokens,
            sampler: sampler.clone(),
            ..Default::default()
        };
        let mut answer = String::new();
        let new_tokens = ids.len()
            - session
                .tokens()
                .iter()
                .zip(&ids)
                .take_while(|(a, b)| a == b)
                .count();
        if interactive && new_tokens > 256 {
            eprint!("(reading {new_tokens} tokens…)");
        }
        let mut gen = session.generate(&ids, params)?;
        if interactive && new_tokens > 256 {
            eprint!("\r\x1b[K");
        }
        while let Some(piece) = gen.next() {
            let piece = piece?;
            out.write(&piece.text)?;
            answer.push_str(&piece.text);
            if interrupted.load(Ordering::SeqCst) || out.closed {
                gen.cancel();
            }
        }
        out.write("\n")?;
        if args.verbose {
            let t = gen.timings();
            eprintln!(
                "[prompt {} new tokens ({} cached), {}; answer {} tokens, {}]",
                t.prompt_tokens - t.prompt_cached,
                t.prompt_cached,
                rate(
                    t.prompt_tokens - t.prompt_cached,
                    t.prompt_time.as_secs_f64()
                ),
                t.generated_tokens,
                rate(t.generated_tokens, t.generation_time.as_secs_f64())
            );
        }
        messages.push(ChatMessage::assistant(answer));
        if out.closed {
            break;
        }
    }
    Ok(())
}
