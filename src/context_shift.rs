//! Context shift for conversations: when a chat no longer fits its context, drop the
//! oldest turns (never the system messages nor the newest message) and go on from the
//! shorter conversation, re-evaluating only what changed after the kept prefix (the system
//! prompt stays cached).
//!
//! Off by default in `phiq chat` and `phiq serve` (a full context stops the answer with
//! `finish_reason: "length"`); `--context-shift` turns it on. Mid-answer, the answer so far
//! is kept and continued after the shorter conversation, exactly as if the kept tokens had
//! been evaluated from scratch (`tests/context_shift.rs` checks that).
//!
//! ```no_run
//! use phiq::{ChatMessage, ContextShift, GenerateParams, Model, ModelOptions};
//! let model = Model::load("phi-4-Q4_K_M.gguf", &ModelOptions::default())?;
//! let tok = model.tokenizer()?;
//! let n_ctx = 4096;
//! let mut session = model.session(n_ctx)?;
//! let mut shift = ContextShift::new(vec![ChatMessage::user("Hello")], 256);
//! let prompt = shift.prompt(tok, n_ctx)?;
//! let mut gen = session.generate(&prompt, GenerateParams::default())?;
//! gen.shift_with(|answer| shift.shift(tok, n_ctx, answer));
//! for piece in &mut gen {
//!     print!("{}", piece?.text);
//! }
//! # Ok::<(), phiq::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::tokenizer::{ChatMessage, Tokenizer};

/// Drops the oldest turn (its first non-system message and the answers after it up to the
/// next user message), never a system message nor the last message. `false` when there is
/// no such turn.
pub fn drop_oldest_turn(messages: &mut Vec<ChatMessage>) -> bool {
    let Some(first) = messages.iter().position(|m| m.role != "system") else {
        return false;
    };
    if first + 1 >= messages.len() {
        return false; // only the newest message is left
    }
    messages.remove(first);
    while first + 1 < messages.len() && messages[first].role != "user" {
        messages.remove(first);
    }
    true
}

/// A conversation that keeps itself within a context by dropping its oldest turns.
#[derive(Clone, Debug)]
pub struct ContextShift {
    messages: Vec<ChatMessage>,
    /// Tokens kept free after the prompt for the answer to grow into.
    reserve: usize,
    /// Turns dropped so far.
    pub dropped: usize,
    /// Shifts made during an answer.
    pub shifts: usize,
}

impl ContextShift {
    /// `messages` ending with the one to answer; `reserve`: the room to leave for the
    /// answer after each shift (e.g. `min(max_tokens, n_ctx / 4)`).
    pub fn new(messages: Vec<ChatMessage>, reserve: usize) -> ContextShift {
        ContextShift {
            messages,
            reserve: reserve.max(1),
            dropped: 0,
            shifts: 0,
        }
    }

    /// The conversation as it stands (after the turns dropped so far).
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// The prompt (the chat template over the conversation, ready for the answer), after
    /// dropping the oldest turns until it and `reserve` tokens fit in `n_ctx`. An error
    /// when the newest message (with the system messages) alone does not leave a token.
    pub fn prompt(&mut self, tok: &Tokenizer, n_ctx: usize) -> Result<Vec<u32>> {
        loop {
            let ids = tok.encode_chat(&self.messages, true)?;
            if ids.len() + self.reserve <= n_ctx {
                return Ok(ids);
            }
            if !drop_oldest_turn(&mut self.messages) {
                if ids.len() < n_ctx {
                    return Ok(ids);
                }
                return Err(Error::InvalidInput(format!(
                    "the last message has {} tokens with the chat template and the system messages: more than the context of {n_ctx} tokens allows",
                    ids.len()
                )));
            }
            self.dropped += 1;
        }
    }

    /// Mid-answer, with the context full: the tokens to continue from, the prompt with
    /// more turns dropped followed by `answer` (the tokens generated so far): as few turns
    /// as leave `reserve` tokens of room (at most a quarter of the context), else as many
    /// as there are to drop if that leaves any room. `None` when nothing can be dropped
    /// that makes room: the answer stops there, and the conversation stays as it was.
    pub fn shift(
        &mut self,
        tok: &Tokenizer,
        n_ctx: usize,
        answer: &[u32],
    ) -> Result<Option<Vec<u32>>> {
        let want = self.reserve.min(n_ctx / 4).max(1);
        let mut messages = self.messages.clone();
        let mut dropped = 0;
        let mut best = None;
        while drop_oldest_turn(&mut messages) {
            dropped += 1;
            let ids = tok.encode_chat(&messages, true)?;
            let room = n_ctx.saturating_sub(ids.len() + answer.len());
            if room >= 1 {
                best = Some((ids, messages.clone(), dropped));
            }
            if room >= want {
                break;
            }
        }
        let Some((mut ids, messages, dropped)) = best else {
            return Ok(None);
        };
        self.messages = messages;
        self.dropped += dropped;
        self.shifts += 1;
        ids.extend_from_slice(answer);
        Ok(Some(ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(m: &[ChatMessage]) -> String {
        m.iter()
            .map(|m| &m.content[..])
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn turns_go_oldest_first_keeping_system_and_newest() {
        let mut m = vec![
            ChatMessage::new("system", "s"),
            ChatMessage::new("user", "u1"),
            ChatMessage::new("assistant", "a1"),
            ChatMessage::new("user", "u2"),
            ChatMessage::new("assistant", "a2"),
            ChatMessage::new("user", "u3"),
        ];
        assert!(drop_oldest_turn(&mut m));
        assert_eq!(roles(&m), "s u2 a2 u3");
        assert!(drop_oldest_turn(&mut m));
        assert_eq!(roles(&m), "s u3");
        assert!(!drop_oldest_turn(&mut m));
        assert_eq!(roles(&m), "s u3");
    }
}
