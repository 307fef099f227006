//! `phiq chat`: an interactive chat in the terminal, using the model's chat template.
//!
//! The conversation stays in the KV cache: each turn re-renders the history and only the
//! tokens after the common prefix are evaluated. When the context is full the answer stops
//! and a new message that does not fit is refused; with `--context-shift` the oldest turns
//! are dropped instead (the system message stays), also mid-answer, and the user is told. At a terminal the prompt
//! has line editing and history (rustyline); piped input is read line by line. The slash
//! commands are in [`COMMANDS`] (`phiq chat --help` and `/help` print it).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use phiq::{ChatMessage, ContextShift, Error, GenerateParams, StopReason};
use rustyline::error::ReadlineError;

use super::common::{rate, ModelArgs, SamplingArgs};
use super::run::Stdout;
use super::think::{prompt_opened, ReasoningMode, ThinkingPrinter};

/// The slash commands and keys, for `chat --help` and `/help`.
pub const COMMANDS: &str = "\
Commands (at the chat prompt):
  /help, /?              this list
  /reset, /clear         start a new conversation (the system message stays)
  /system TEXT           set the system message (none if TEXT is empty), new conversation
  /exit, /quit, /bye     leave (as does Ctrl-D at an empty prompt)
  //TEXT                 send a message that starts with '/' (an unknown /command is an error)
Several lines: end a line with \\ to continue it, or put lines between two \"\"\" lines.
Keys: Ctrl-C stops an answer, or clears the line being typed; Ctrl-D at an empty prompt
exits; Up/Down and Ctrl-R walk the history, saved in ~/.phiq_history ($PHIQ_HISTORY names
another file; PHIQ_HISTORY= keeps none).
When the context is full, the answer stops there and a new message that does not fit is
refused (/clear starts over); with --context-shift the oldest turns are dropped instead
(the system message stays), also in the middle of an answer, which then goes on.";

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
    /// A reasoning model's thinking (<think>…</think>): show (dimmed at a terminal) or
    /// hide (the answer alone). Either way only the answer stays in the conversation.
    #[arg(long, value_enum, default_value_t = ReasoningMode::Show)]
    reasoning: ReasoningMode,
    /// When the context fills up, drop the oldest turns (never the system message) and go
    /// on, also in the middle of an answer; without it the answer stops there and a new
    /// message that does not fit is refused.
    #[arg(long = "context-shift")]
    context_shift: bool,
}

/// One line of input.
enum Line {
    Text(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    Eof,
}

/// Where messages come from: the terminal with line editing, or piped text.
enum Input {
    Terminal {
        editor: Box<rustyline::DefaultEditor>,
        history: Option<PathBuf>,
    },
    Piped(std::io::StdinLock<'static>),
}

/// The history file: `$PHIQ_HISTORY` (empty: none), else `~/.phiq_history`.
fn history_path() -> Option<PathBuf> {
    match std::env::var_os("PHIQ_HISTORY") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .map(|h| PathBuf::from(h).join(".phiq_history")),
    }
}

impl Input {
    fn open(terminal: bool) -> phiq::Result<Input> {
        if !terminal {
            return Ok(Input::Piped(std::io::stdin().lock()));
        }
        let mut editor = rustyline::DefaultEditor::new().map_err(|e| {
            Error::Resource(format!("cannot set up line editing on this terminal: {e}"))
        })?;
        let history = history_path();
        if let Some(h) = &history {
            // A missing file is the first run; an unreadable one only loses the history.
            let _ = editor.load_history(h);
        }
        Ok(Input::Terminal {
            editor: Box::new(editor),
            history,
        })
    }

    fn line(&mut self, prompt: &str) -> phiq::Result<Line> {
        match self {
            Input::Piped(r) => {
                let mut s = String::new();
                match r.read_line(&mut s) {
                    Ok(0) => Ok(Line::Eof),
                    Ok(_) => Ok(Line::Text(s.trim_end_matches(['\n', '\r']).to_string())),
                    Err(e) => Err(Error::Io {
                        path: "<stdin>".into(),
                        source: e,
                    }),
                }
            }
            Input::Terminal { editor, .. } => match editor.readline(prompt) {
                Ok(s) => Ok(Line::Text(s)),
                Err(ReadlineError::Interrupted) => Ok(Line::Interrupted),
                Err(ReadlineError::Eof) => Ok(Line::Eof),
                Err(e) => Err(Error::Io {
                    path: "<terminal>".into(),
                    source: std::io::Error::other(e),
                }),
            },
        }
    }

    fn remember(&mut self, message: &str) {
        if let Input::Terminal { editor, history } = self {
            let _ = editor.add_history_entry(message);
            if let Some(h) = history {
                let _ = editor.save_history(h);
            }
        }
    }
}

/// What the user typed.
enum Read {
    Message(String),
    /// Ctrl-C: the line (and any lines before it in the same message) dropped.
    Cleared,
    End,
}

/// Reads one user message, possibly several lines (a trailing `\`, or a `"""` block), with
/// `... ` as the prompt of continuation lines.
fn read_message(input: &mut Input) -> phiq::Result<Read> {
    let mut text = String::new();
    let mut in_block = false;
    let mut prompt = "> ";
    loop {
        let l = match input.line(prompt)? {
            Line::Eof if text.is_empty() => return Ok(Read::End),
            Line::Eof => return Ok(Read::Message(text)),
            Line::Interrupted => return Ok(Read::Cleared),
            Line::Text(l) => l,
        };
        if l.trim() == "\"\"\"" {
            if in_block {
                return Ok(Read::Message(text));
            }
            in_block = true;
            prompt = "... ";
            continue;
        }
        if in_block {
            text.push_str(&l);
            text.push('\n');
        } else if let Some(cont) = l.strip_suffix('\\') {
            text.push_str(cont);
            text.push('\n');
            prompt = "... ";
        } else {
            text.push_str(&l);
            return Ok(Read::Message(text));
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
            "phiq: {} layers, context {n_ctx}, kernels {}, {} threads. /help lists the commands; Ctrl-C stops an answer, Ctrl-D exits.",
            model.config.n_layer,
            model.isa(),
            model.threads()
        );
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    let generating = Arc::new(AtomicBool::new(false));
    {
        let (flag, generating) = (interrupted.clone(), generating.clone());
        // Ctrl-C stops the answer being generated (the loop below checks the flag). At the
        // terminal's prompt the line editor sees Ctrl-C as a key; elsewhere (waiting on
        // piped input) it ends the program as usual.
        let _ = ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                flag.store(true, Ordering::SeqCst);
            } else {
                std::process::exit(130);
            }
        });
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
    let mut input = Input::open(interactive)?;
    loop {
        interrupted.store(false, Ordering::SeqCst);
        let text = match read_message(&mut input)? {
            Read::Message(t) => t,
            Read::Cleared => continue,
            Read::End => {
                if interactive {
                    println!(); // leave the shell's prompt on a line of its own
                }
                break;
            }
        };
        input.remember(&text);
        let trimmed = text.trim();
        let (command, rest) = trimmed
            .split_once(char::is_whitespace)
            .map_or((trimmed, ""), |(a, b)| (a, b.trim()));
        let text = match command {
            "" => continue,
            "/exit" | "/quit" | "/bye" => break,
            "/help" | "/?" => {
                eprintln!("{COMMANDS}");
                continue;
            }
            "/reset" | "/clear" => {
                reset(&mut messages, &system);
                session.reset();
                eprintln!("(new conversation)");
                continue;
            }
            "/system" => {
                system = (!rest.is_empty()).then(|| rest.to_string());
                reset(&mut messages, &system);
                session.reset();
                eprintln!("(system message set; new conversation)");
                continue;
            }
            c if c.starts_with("//") => text.trim_start()[1..].to_string(),
            c if c.starts_with('/') => {
                eprintln!("phiq: unknown command {c} (/help lists the commands; start a message with // to send one that begins with /)");
                continue;
            }
            _ => text,
        };
        messages.push(ChatMessage::user(text));
        // Room for the answer: -n tokens, at most a quarter of the context.
        let reserve = max_tokens.min(n_ctx / 4).max(1);
        let mut shift = ContextShift::new(messages.clone(), reserve);
        let ids = if args.context_shift {
            match shift.prompt(tok, n_ctx) {
                Ok(ids) => ids,
                Err(e) => {
                    messages.pop();
                    eprintln!(
                        "phiq: this message does not fit: {e}: shorten it{}",
                        if n_ctx < model.config.n_ctx_train {
                            ", or raise -c"
                        } else {
                            ""
                        }
                    );
                    continue;
                }
            }
        } else {
            let ids = tok.encode_chat(&messages, true)?;
            if ids.len() + reserve > n_ctx {
                let mut alone: Vec<ChatMessage> = system
                    .iter()
                    .map(|s| ChatMessage::system(s.clone()))
                    .collect();
                alone.extend(messages.pop());
                let alone = tok.encode_chat(&alone, true)?.len();
                if alone + reserve > n_ctx {
                    eprintln!(
                        "phiq: this message ({alone} tokens with the chat template{}) does not fit the context of {n_ctx} tokens with room for an answer: shorten it{}",
                        if system.is_some() { " and the system message" } else { "" },
                        if n_ctx < model.config.n_ctx_train { ", or raise -c" } else { "" }
                    );
                } else {
                    eprintln!(
                        "phiq: the context ({n_ctx} tokens) is full: with this message the conversation is {} tokens and leaves no room for {reserve} of answer. /clear starts a new conversation; --context-shift drops the oldest turns instead{}",
                        ids.len(),
                        if n_ctx < model.config.n_ctx_train { "; or raise -c" } else { "" }
                    );
                }
                continue;
            }
            ids
        };
        if shift.dropped > 0 {
            eprintln!(
                "phiq: the context ({n_ctx} tokens) is full: dropped the {} oldest turn{} of the conversation{}",
                shift.dropped,
                if shift.dropped == 1 { "" } else { "s" },
                if system.is_some() { " (the system message stays)" } else { "" }
            );
            shift.dropped = 0;
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
        let mut out = Stdout::new();
        let opened = prompt_opened(tok, &ids);
        let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let mut printer = ThinkingPrinter::new(args.reasoning, opened, tty);
        generating.store(true, Ordering::SeqCst);
        let mut gen = session.generate(&ids, params)?;
        if args.context_shift {
            gen.shift_with(|answer| shift.shift(tok, n_ctx, answer));
        }
        if interactive && new_tokens > 256 {
            eprint!("\r\x1b[K");
        }
        while let Some(piece) = gen.next() {
            let piece = piece?;
            printer.write(&mut out, &piece.text)?;
            answer.push_str(&piece.text);
            if interrupted.load(Ordering::SeqCst) || out.closed {
                gen.cancel();
            }
        }
        generating.store(false, Ordering::SeqCst);
        printer.finish(&mut out)?;
        out.write("\n")?;
        match gen.stop_reason() {
            Some(StopReason::ContextFull) => eprintln!(
                "phiq: the answer was cut off: the context ({n_ctx} tokens) is full{}",
                if args.context_shift {
                    " and no older turn is left to drop"
                } else {
                    " (/clear starts a new conversation; --context-shift drops the oldest turns instead)"
                }
            ),
            Some(StopReason::Cancelled) if interrupted.load(Ordering::SeqCst) => {
                eprintln!("(answer stopped)")
            }
            _ => {}
        }
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
        // The conversation keeps the answer, not the thinking (as llama.cpp's chat does;
        // reasoning templates drop earlier turns' thinking too). Text without thinking
        // is kept exactly.
        let gen_shifts = gen.timings().context_shifts;
        drop(gen);
        let (_, answer) = phiq::reasoning::split(&answer, opened);
        if gen_shifts > 0 {
            eprintln!(
                "phiq: the context ({n_ctx} tokens) filled during the answer: dropped the {} oldest turn{} and went on{}",
                shift.dropped,
                if shift.dropped == 1 { "" } else { "s" },
                if system.is_some() { " (the system message stays)" } else { "" }
            );
        }
        if args.context_shift {
            messages = shift.messages().to_vec();
        }
        messages.push(ChatMessage::assistant(answer));
        if out.closed {
            break;
        }
    }
    Ok(())
}
