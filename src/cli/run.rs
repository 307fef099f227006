//! `phiq run`: generate text from a prompt, streaming it to stdout.
//!
//! stdout holds only the generated text (the prompt too with `--echo`), so scripts can
//! use it; timings go to stderr at the end, as llama.cpp prints them.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::time::Instant;

use phiq::{ChatMessage, Error, GenerateParams, StopReason};

use super::common::{rate, ModelArgs, SamplingArgs};
use super::think::{prompt_opened, ReasoningMode, ThinkingPrinter};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long = "prompt", conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the prompt from a file (its bytes exactly, UTF-8); `-` for standard input,
    /// which is also read when neither -p nor -f is given and it is not a terminal.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: Option<PathBuf>,
    /// Tokens to generate (-1: until a stop token or a full context).
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 256,
        allow_negative_numbers = true
    )]
    n_predict: i64,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Wrap the prompt in the model's chat template (as a user message).
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long, value_name = "TEXT", requires = "chat")]
    system: Option<String>,
    /// Parse control-token text in the prompt (e.g. <|im_end|>) into control tokens.
    #[arg(long)]
    special: bool,
    /// Also print the prompt before the generated text.
    #[arg(long)]
    echo: bool,
    /// Stop when this text appears (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    stop: Vec<String>,
    /// Do not stop at the model's end-of-turn / end-of-text tokens.
    #[arg(long = "ignore-eos")]
    ignore_eos: bool,
    /// Print load details and the stop reason to stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// A reasoning model's thinking (<think>…</think>): show (dimmed at a terminal, as
    /// it is in a pipe) or hide (the answer alone).
    #[arg(long, value_enum, default_value_t = ReasoningMode::Show)]
    reasoning: ReasoningMode,
}

/// The prompt: `-p`, else `-f FILE` (`-f -`: standard input), else standard input when
/// it is a pipe or a file (`echo text | phiq run`).
fn read_prompt(args: &Args) -> phiq::Result<String> {
    use std::io::{IsTerminal, Read};
    let stdin_path = PathBuf::from("-");
    let file = match (&args.file, &args.prompt) {
        (Some(path), _) => Some(path),
        (None, None) if !std::io::stdin().is_terminal() => Some(&stdin_path),
        _ => None,
    };
    let text = match (&args.prompt, file) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) => {
            let bytes = if path.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map(|_| buf)
            } else {
                std::fs::read(path)
            }
            .map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            String::from_utf8(bytes).map_err(|e| {
                Error::InvalidFile(format!(
                    "{}: not valid UTF-8 (byte {})",
                    path.display(),
                    e.utf8_error().valid_up_to()
                ))
            })?
        }
        (None, None) => {
            return Err(Error::InvalidInput(
                "no prompt: give -p TEXT, -f FILE, or pipe it on standard input".into(),
            ))
        }
    };
    if text.is_empty() && args.prompt.is_none() && args.file.is_none() {
        // Nothing given and nothing piped (e.g. stdin is /dev/null).
        return Err(Error::InvalidInput(
            "no prompt: give -p TEXT, -f FILE, or pipe it on standard input".into(),
        ));
    }
    if text.is_empty() {
        return Err(Error::InvalidInput("the prompt is empty".into()));
    }
    Ok(text)
}

pub fn run(args: Args) -> phiq::Result<()> {
    let max_tokens = match args.n_predict {
        n if n < 0 => usize::MAX,
        0 => {
            return Err(Error::InvalidInput(
                "-n/--n-predict must be at least 1 (or -1 for no limit)".into(),
            ))
        }
        n => n as usize,
    };
    let prompt_text = read_prompt(&args)?;
    let sampler = args.sampling.params()?;

    let t_load = Instant::now();
    let model = args.model.load()?;
    let tok = model.tokenizer()?;
    let load_secs = t_load.elapsed().as_secs_f64();
    if args.verbose {
        eprintln!(
            "phiq: {} | {} layers, {} | kernels {} | {} threads | seed {}",
            model.file.name(),
            model.config.n_layer,
            model.config.arch,
            model.isa(),
            model.threads(),
            sampler.seed
        );
    }

    let prompt = if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::system(s.clone()));
        }
        messages.push(ChatMessage::user(prompt_text.clone()));
        tok.encode_chat(&messages, true)?
    } else {
        tok.encode(&prompt_text, true, args.special)
    };
    let n_ctx = args.model.n_ctx(&model)?;
    if prompt.len() >= n_ctx {
        return Err(Error::InvalidInput(format!(
            "the prompt is {} tokens, the context only {n_ctx} (raise -c/--ctx-size; the model allows {})",
            prompt.len(),
            model.config.n_ctx_train
        )));
    }
    let mut session = model.session(n_ctx)?;
    let session_kv_mib = session.kv_cache_bytes() as f64 / (1024.0 * 1024.0);
    let params = GenerateParams {
        max_tokens,
        sampler,
        stop_strings: args.stop.clone(),
        stop_tokens: Vec::new(),
        ignore_eos: args.ignore_eos,
    };

    let mut out = Stdout::new();
    if args.echo {
        out.write(&prompt_text)?;
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut printer = ThinkingPrinter::new(args.reasoning, prompt_opened(tok, &prompt), tty);
    let mut gen = session.generate(&prompt, params)?;
    while let Some(piece) = gen.next() {
        printer.write(&mut out, &piece?.text)?;
        if out.closed {
            gen.cancel();
        }
    }
    printer.finish(&mut out)?;
    // Only the generated text goes to a pipe; a terminal gets a final newline so the
    // shell prompt starts on its own line.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        out.write("\n")?;
    }
    let closed = out.closed;
    let t = gen.timings().clone();
    let kv_mib = session_kv_mib;
    let reason = gen.stop_reason().cloned();
    if closed {
        return Ok(());
    }
    let (pt, gt) = (t.prompt_time.as_secs_f64(), t.generation_time.as_secs_f64());
    let evaluated = t.prompt_tokens - t.prompt_cached;
    eprintln!();
    eprintln!("phiq: load time       = {:8.2} ms", load_secs * 1e3);
    eprintln!(
        "phiq: prompt eval     = {:8.2} ms / {evaluated:5} tokens ({})",
        pt * 1e3,
        rate(evaluated, pt)
    );
    eprintln!(
        "phiq: generation      = {:8.2} ms / {:5} tokens ({})",
        gt * 1e3,
        t.generated_tokens,
        rate(t.generated_tokens, gt)
    );
    // A full context cuts the answer short: always say so, in words.
    if reason == Some(StopReason::ContextFull) {
        eprintln!(
            "phiq: stopped: the context of {n_ctx} tokens is full (the answer may be cut short; raise -c/--ctx-size, up to the model's {})",
            model.config.n_ctx_train
        );
    }
    if args.verbose {
        let why = match reason {
            Some(StopReason::StopToken(id)) => format!("stop token {id}"),
            Some(StopReason::MaxTokens) => "-n/--n-predict tokens".into(),
            Some(StopReason::StopString(s)) => format!("stop string {s:?}"),
            Some(StopReason::ContextFull) => "a full context".into(),
            Some(StopReason::Cancelled) => "cancellation".into(),
            None => "-".into(),
        };
        eprintln!("phiq: stopped by {why}");
        if let Some(mem) = memory_report() {
            eprintln!("phiq: memory: {mem} (KV cache {:.0} MiB)", kv_mib);
        }
    }
    Ok(())
}

/// Peak resident memory and its anonymous (heap) part, from /proc/self/status: the
/// weights are file-backed pages of the mapping, so they count in RSS but not RssAnon.
pub fn memory_report() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some(format!(
        "peak RSS {:.0} MiB, RssAnon {:.0} MiB, RssFile {:.0} MiB",
        field("VmHWM:")?,
        field("RssAnon:")?,
        field("RssFile:")?
    ))
}

/// Standard output that treats a closed pipe as "stop writing", not as an error.
pub struct Stdout {
    lock: std::io::StdoutLock<'static>,
    pub closed: bool,
}

impl Stdout {
    pub fn new() -> Stdout {
        Stdout {
            lock: std::io::stdout().lock(),
            closed: false,
        }
    }

    pub fn write(&mut self, s: &str) -> phiq::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self
            .lock
            .write_all(s.as_bytes())
            .and_then(|_| self.lock.flush())
        {
            Ok(()) => Ok(()),
            // `phiq run ... | head -c 10`: stop quietly.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Error::Io {
                path: "<stdout>".into(),
                source: e,
            }),
        }
    }
}
