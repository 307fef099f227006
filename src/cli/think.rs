//! Showing a reasoning model's thinking in the terminal: `--reasoning show` (the default)
//! prints it dimmed when stdout is a terminal and as it is (tags included) otherwise;
//! `--reasoning hide` leaves it out, printing the answer alone.

use phiq::reasoning::{prompt_opens_thinking, Channel, ReasoningSplitter};
use phiq::Tokenizer;

use super::run::Stdout;

/// `--reasoning`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReasoningMode {
    /// The thinking, dimmed at a terminal.
    #[default]
    Show,
    /// The answer alone.
    Hide,
}

/// Whether the prompt `ids` ends by opening the thinking (`<think>`).
pub fn prompt_opened(tok: &Tokenizer, ids: &[u32]) -> bool {
    // (special tokens shown: a template may open the thinking with a control token)
    tok.decode_with(&ids[ids.len().saturating_sub(8)..], true)
        .is_ok_and(|tail| prompt_opens_thinking(&tail))
}

/// Writes generated text, the thinking shown dimmed, shown plain or hidden.
pub struct ThinkingPrinter {
    splitter: Option<ReasoningSplitter>,
    hide: bool,
}

const DIM: &str = "\x1b[2m";
const UNDIM: &str = "\x1b[22m";

impl ThinkingPrinter {
    /// `tty`: stdout is a terminal (dimming is possible).
    pub fn new(mode: ReasoningMode, prompt_opened: bool, tty: bool) -> ThinkingPrinter {
        let hide = mode == ReasoningMode::Hide;
        ThinkingPrinter {
            splitter: match (hide, tty) {
                (true, _) => Some(ReasoningSplitter::new(prompt_opened)),
                (false, true) => Some(ReasoningSplitter::raw(prompt_opened)),
                // Plain text to a pipe: nothing to change.
                (false, false) => None,
            },
            hide,
        }
    }

    pub fn write(&mut self, out: &mut Stdout, text: &str) -> phiq::Result<()> {
        match &mut self.splitter {
            None => out.write(text),
            Some(s) => {
                let parts = s.push(text);
                self.emit(out, parts)
            }
        }
    }

    /// The end of the reply: what was held back.
    pub fn finish(&mut self, out: &mut Stdout) -> phiq::Result<()> {
        match &mut self.splitter {
            None => Ok(()),
            Some(s) => {
                let parts = s.finish();
                self.emit(out, parts)
            }
        }
    }

    fn emit(&self, out: &mut Stdout, parts: Vec<(Channel, String)>) -> phiq::Result<()> {
        for (channel, t) in parts {
            match channel {
                Channel::Reasoning if self.hide => {}
                Channel::Reasoning => out.write(&format!("{DIM}{t}{UNDIM}"))?,
                Channel::Content => out.write(&t)?,
            }
        }
        Ok(())
    }
}
