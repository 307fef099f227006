//! A reasoning model's thinking, separated from its answer as it streams.
//!
//! Phi-4-reasoning (and DeepSeek-R1-style models) answer `<think>…</think>` then the answer.
//! [`ReasoningSplitter`] takes the generated text piece by piece and says which part is
//! thinking and which is answer, as llama-server's `--reasoning-format deepseek` does: the
//! thinking (without its tags, whitespace trimmed) goes to `reasoning_content`, the rest to
//! `content`. A tag split across pieces (`<thi` + `nk>`) is held back until it is decided.
//! Text that does not start with `<think>` is all answer, unchanged. When the prompt itself
//! ends with `<think>` (templates that open the thinking for the model) the output starts
//! inside the thinking. A reply cut off inside the thinking is all reasoning, no answer.
//!
//! [`ReasoningSplitter::raw`] keeps the tags and the whitespace (in the reasoning channel):
//! for showing the thinking dimmed in a terminal, where nothing may be lost.

/// The tag that opens the thinking.
pub const THINK_OPEN: &str = "<think>";
/// The tag that closes it.
pub const THINK_CLOSE: &str = "</think>";

/// Which part of the reply a piece of text belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The thinking (`reasoning_content`).
    Reasoning,
    /// The answer (`content`).
    Content,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing decided yet: only whitespace, or a prefix of `<think>`, seen.
    Start,
    Thinking,
    Answer,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct ReasoningSplitter {
    state: State,
    /// Text not yet given out: a possible tag start, or (trimming) trailing whitespace.
    held: String,
    /// Keep tags and whitespace.
    raw: bool,
    /// Right after `<think>` or `</think>`: leading whitespace is dropped (not raw).
    skip_ws: bool,
    /// `</think>` was seen.
    closed: bool,
}

/// The length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_tag_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

impl ReasoningSplitter {
    /// `prompt_opened`: the prompt ends with `<think>`, so the output starts inside it.
    pub fn new(prompt_opened: bool) -> ReasoningSplitter {
        ReasoningSplitter {
            state: if prompt_opened {
                State::Thinking
            } else {
                State::Start
            },
            held: String::new(),
            raw: false,
            skip_ws: prompt_opened,
            closed: false,
        }
    }

    /// Like [`Self::new`], but the tags and all whitespace are kept (in the reasoning
    /// channel): concatenating every piece gives back the text exactly.
    pub fn raw(prompt_opened: bool) -> ReasoningSplitter {
        ReasoningSplitter {
            raw: true,
            skip_ws: false,
            ..ReasoningSplitter::new(prompt_opened)
        }
    }

    /// Whether the text so far opened a thinking section (or the prompt did).
    pub fn saw_thinking(&self) -> bool {
        self.state == State::Thinking || self.closed
    }

    /// The pieces `text` completes, in order (empty ones left out).
    pub fn push(&mut self, text: &str) -> Vec<(Channel, String)> {
        let mut out = Vec::new();
        self.held.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let lead = self.held.len() - self.held.trim_start().len();
                    let rest = &self.held[lead..];
                    if let Some(after) = rest.strip_prefix(THINK_OPEN) {
                        let after = after.to_string();
                        if self.raw {
                            emit(
                                &mut out,
                                Channel::Reasoning,
                                &self.held[..lead + THINK_OPEN.len()],
                            );
                        }
                        self.held = after;
                        self.state = State::Thinking;
                        self.skip_ws = !self.raw;
                        continue;
                    }
                    if rest.is_empty() || THINK_OPEN.starts_with(rest) {
                        return out; // undecided: wait for more
                    }
                    self.state = State::Answer;
                    continue;
                }
                State::Thinking => {
                    if !self.skip_leading_ws() {
                        return out;
                    }
                    if let Some(at) = self.held.find(THINK_CLOSE) {
                        let end = at + THINK_CLOSE.len();
                        let thought = if self.raw {
                            &self.held[..end]
                        } else {
                            self.held[..at].trim_end()
                        };
                        emit(&mut out, Channel::Reasoning, thought);
                        self.held.drain(..end);
                        self.state = State::Answer;
                        self.closed = true;
                        self.skip_ws = !self.raw;
                        continue;
                    }
                    // Give out all but a possible start of `</think>` and, when trimming,
                    // trailing whitespace (it may turn out to precede the close tag).
                    let mut keep = partial_tag_suffix(&self.held, THINK_CLOSE);
                    if !self.raw {
                        let body = &self.held[..self.held.len() - keep];
                        keep += body.len() - body.trim_end().len();
                    }
                    let give = self.held.len() - keep;
                    emit(&mut out, Channel::Reasoning, &self.held[..give]);
                    self.held.drain(..give);
                    return out;
                }
                State::Answer => {
                    if !self.skip_leading_ws() {
                        return out;
                    }
                    emit(&mut out, Channel::Content, &self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// Right after a tag (when trimming): drops the held text's leading whitespace; `false`
    /// while nothing else has come yet.
    fn skip_leading_ws(&mut self) -> bool {
        if self.skip_ws {
            let t = self.held.trim_start().len();
            self.held.drain(..self.held.len() - t);
            if self.held.is_empty() {
                return false;
            }
            self.skip_ws = false;
        }
        true
    }

    /// The end of the text: whatever is held back, in the channel it was in.
    pub fn finish(&mut self) -> Vec<(Channel, String)> {
        let mut out = Vec::new();
        let held = std::mem::take(&mut self.held);
        match self.state {
            // Only whitespace or a prefix of `<think>`: an answer after all.
            State::Start | State::Answer => emit(&mut out, Channel::Content, &held),
            State::Thinking if self.raw => emit(&mut out, Channel::Reasoning, &held),
            State::Thinking => emit(&mut out, Channel::Reasoning, held.trim_end()),
        }
        out
    }
}

fn emit(out: &mut Vec<(Channel, String)>, channel: Channel, text: &str) {
    if text.is_empty() {
        return;
    }
    match out.last_mut() {
        Some((c, t)) if *c == channel => t.push_str(text),
        _ => out.push((channel, text.to_string())),
    }
}

/// Splits a whole reply at once: (reasoning, content).
pub fn split(text: &str, prompt_opened: bool) -> (String, String) {
    let mut s = ReasoningSplitter::new(prompt_opened);
    let mut parts = s.push(text);
    parts.extend(s.finish());
    let (mut reasoning, mut content) = (String::new(), String::new());
    for (c, t) in parts {
        match c {
            Channel::Reasoning => reasoning.push_str(&t),
            Channel::Content => content.push_str(&t),
        }
    }
    (reasoning, content)
}

/// Whether a rendered prompt opens the thinking for the model (ends with `<think>`, up
/// to whitespace).
pub fn prompt_opens_thinking(prompt_tail: &str) -> bool {
    prompt_tail.trim_end().ends_with(THINK_OPEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `text` into three pieces gives the same result as one piece.
    fn all_splits(text: &str, opened: bool) -> (String, String) {
        let whole = split(text, opened);
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &a in &cuts {
            for &b in cuts.iter().filter(|&&b| b >= a) {
                for raw in [false, true] {
                    let mut s = if raw {
                        ReasoningSplitter::raw(opened)
                    } else {
                        ReasoningSplitter::new(opened)
                    };
                    let mut parts = Vec::new();
                    for piece in [&text[..a], &text[a..b], &text[b..]] {
                        parts.extend(s.push(piece));
                    }
                    parts.extend(s.finish());
                    let (mut r, mut c) = (String::new(), String::new());
                    for (ch, t) in &parts {
                        assert!(!t.is_empty());
                        match ch {
                            Channel::Reasoning => r.push_str(t),
                            Channel::Content => c.push_str(t),
                        }
                    }
                    if raw {
                        // Nothing lost, and the answer is the same text.
                        let joined: String = parts.iter().map(|(_, t)| t.as_str()).collect();
                        assert_eq!(joined, text, "raw, cuts {a} {b}");
                        assert_eq!(
                            c.trim_start(),
                            whole.1.trim_start(),
                            "raw content, cuts {a} {b}"
                        );
                    } else {
                        assert_eq!((r, c), whole, "cuts {a} {b} of {text:?}");
                    }
                }
            }
        }
        whole
    }

    #[test]
    fn thinking_then_answer() {
        let (r, c) = all_splits("<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.", false);
        assert_eq!((r.as_str(), c.as_str()), ("Let me see: 2+2.", "It is 4."));
        let (r, c) = all_splits("  <think>a < b </thin k></think>x</think>", false);
        assert_eq!((r.as_str(), c.as_str()), ("a < b </thin k>", "x</think>"));
    }

    #[test]
    fn no_thinking_is_all_answer_unchanged() {
        for text in [
            "Hello there.",
            "  <thinking> is not the tag",
            "<thin",
            "",
            " \n",
            "<b>x</b>",
        ] {
            let (r, c) = all_splits(text, false);
            assert_eq!((r.as_str(), c.as_str()), ("", text), "{text:?}");
        }
    }

    #[test]
    fn cut_off_inside_the_thinking() {
        let (r, c) = all_splits("<think>\nFirst, I consider  ", false);
        assert_eq!((r.as_str(), c.as_str()), ("First, I consider", ""));
        let (r, c) = all_splits("<think>almost done</thi", false);
        assert_eq!((r.as_str(), c.as_str()), ("almost done</thi", ""));
    }

    #[test]
    fn prompt_that_opens_the_thinking() {
        let (r, c) = all_splits("\nhmm, tricky\n</think>\nAnswer: yes", true);
        assert_eq!((r.as_str(), c.as_str()), ("hmm, tricky", "Answer: yes"));
        let (r, c) = all_splits("never closed", true);
        assert_eq!((r.as_str(), c.as_str()), ("never closed", ""));
        assert!(prompt_opens_thinking(
            "<|im_start|>assistant<|im_sep|><think>\n"
        ));
        assert!(!prompt_opens_thinking("<|im_start|>assistant<|im_sep|>"));
    }

    #[test]
    fn multibyte_text_and_tags() {
        let (r, c) = all_splits("<think>é→ü</think>ß 😀", false);
        assert_eq!((r.as_str(), c.as_str()), ("é→ü", "ß 😀"));
    }
}
