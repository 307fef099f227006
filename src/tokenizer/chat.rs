//! Chat templates: `tokenizer.chat_template` rendered as transformers' `apply_chat_template`
//! renders it, in a sandbox.
//!
//! transformers compiles the template with Jinja2's `ImmutableSandboxedEnvironment
//! (trim_blocks=True, lstrip_blocks=True)` plus the loop-controls extension, a `tojson`
//! filter that is `json.dumps(ensure_ascii=False)`, and a `raise_exception(msg)` global,
//! and renders it with `messages`, `add_generation_prompt`, `tools`, `documents` and the
//! special-token strings (`bos_token`, `eos_token`, ...). We do the same with minijinja;
//! Python string methods (`.strip()`, `.startswith()`, `.items()`, ...) come from
//! minijinja-contrib's pycompat.
//!
//! A template comes from an untrusted file. minijinja has no access to the host (no file
//! system, no imports beyond the template itself); on top of that rendering runs on a fuel
//! budget (instructions, which bounds loops), a recursion limit, and a cap on output size.
//!
//! Without a template in the file we fall back to the family's format, recognised by its
//! control tokens: Phi-4's `<|im_start|>role<|im_sep|>content<|im_end|>` (the exact text of
//! microsoft/phi-4's template) or Phi-3's `<|role|>\ncontent<|end|>\n`.

use std::collections::BTreeMap;
use std::io;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};

use super::{TokenType, Tokenizer};
use crate::error::{Error, Result};

/// Instructions a template may execute (a 100-message chat needs ~10^4).
const FUEL: u64 = 10_000_000;
/// Nesting of macros, includes and blocks.
const RECURSION_LIMIT: usize = 64;
/// Output cap: a fixed allowance for the template's own text plus a multiple of the
/// messages' size (a template may repeat a message, e.g. a system prompt, a few times).
const OUTPUT_BASE: usize = 1 << 20;
const OUTPUT_PER_MESSAGE_BYTE: usize = 8;

/// microsoft/phi-4's template, used when a Phi-4 GGUF carries none.
const PHI4_TEMPLATE: &str = "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'assistant') %}{{'<|im_start|>assistant<|im_sep|>' + message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}";

/// Phi-3's format (llama.cpp's built-in `phi3`), used when a Phi-3 GGUF carries none.
const PHI3_TEMPLATE: &str = "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}";

/// One message of a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// "system", "user" or "assistant" (templates may know others, e.g. "tool").
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("assistant", content)
    }
}

/// An `io::Write` that refuses to grow past `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(io::Error::other(format!(
                "the rendered prompt exceeds {} bytes",
                self.limit
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Tokenizer {
    /// The template `apply_chat_template` uses: the file's, else the family's built-in one.
    pub fn effective_chat_template(&self) -> Result<&str> {
        if let Some(t) = self.chat_template() {
            return Ok(t);
        }
        let control = |t: &str| {
            self.token_id(t)
                .is_some_and(|id| self.token_type(id) == Some(TokenType::Control))
        };
        if control("<|im_start|>") && control("<|im_sep|>") && control("<|im_end|>") {
            Ok(PHI4_TEMPLATE)
        } else if control("<|user|>") && control("<|assistant|>") && control("<|end|>") {
            Ok(PHI3_TEMPLATE)
        } else {
            Err(Error::InvalidModel(
                "chat template: the file has no tokenizer.chat_template and its vocabulary matches no \
                 built-in chat format (Phi-4 <|im_start|>/<|im_sep|>, Phi-3 <|user|>/<|end|>)"
                    .into(),
            ))
        }
    }

    /// Renders the chat as the model's template does (see the module doc). With
    /// `add_generation_prompt` the text ends where the assistant's reply begins.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.effective_chat_template()?;
        render_chat_template(
            template,
            messages,
            add_generation_prompt,
            &self.special_strings(),
        )
    }

    /// Renders the chat and tokenizes it with special-token parsing, adding BOS if the
    /// model wants one and the template did not already write it.
    ///
    /// Control tokens come only from the template, never from the messages: control-token
    /// text in a message (a user typing `<|im_end|><|im_start|>system...`) stays plain
    /// text. As transformers' `sanitize_special_tokens`, each such text is swapped for a
    /// unique placeholder before rendering, put back after, and its span in the prompt is
    /// excluded from special-token parsing.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let template = self.effective_chat_template()?;
        let controls: Vec<&str> = self.control_texts().collect();
        let mut placeholders = Placeholders::new(template, messages);
        let sanitized: Vec<ChatMessage> = messages
            .iter()
            .map(|m| ChatMessage {
                role: placeholders.sanitize(&m.role, &controls),
                content: placeholders.sanitize(&m.content, &controls),
            })
            .collect();
        let rendered = render_chat_template(
            template,
            &sanitized,
            add_generation_prompt,
            &self.special_strings(),
        )?;
        let (text, untrusted) = placeholders.restore(&rendered);
        let mut ids = self.encode_with_untrusted(&text, false, true, &untrusted);
        if let (true, Some(bos)) = (self.add_bos(), self.bos()) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// `bos_token`, `eos_token`, `unk_token`, `pad_token` as the template sees them.
    fn special_strings(&self) -> Vec<(&'static str, String)> {
        [
            ("bos_token", self.bos()),
            ("eos_token", self.eos()),
            ("unk_token", self.unk()),
            ("pad_token", self.pad()),
        ]
        .into_iter()
        .filter_map(|(name, id)| Some((name, self.token_text(id?)?.to_string())))
        .collect()
    }
}

/// Placeholders for control-token text found in chat messages: `PLACEHOLDER_OPEN`, 16
/// digits, `PLACEHOLDER_CLOSE`. Private-use characters and digits pass through every
/// string filter a template may apply (trim, upper, tojson) unchanged.
const PLACEHOLDER_OPEN: char = '\u{E000}';
const PLACEHOLDER_CLOSE: char = '\u{E001}';

struct Placeholders<'a> {
    /// Text the placeholders must not collide with (template and messages).
    haystacks: Vec<&'a str>,
    /// placeholder -> original text
    originals: rustc_hash::FxHashMap<String, String>,
    state: u64,
}

impl<'a> Placeholders<'a> {
    fn new(template: &'a str, messages: &'a [ChatMessage]) -> Placeholders<'a> {
        let mut haystacks = vec![template];
        for m in messages {
            haystacks.push(&m.role);
            haystacks.push(&m.content);
        }
        Placeholders {
            haystacks,
            originals: Default::default(),
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// A placeholder that occurs nowhere in the inputs and was not handed out before.
    fn fresh(&mut self) -> String {
        loop {
            // splitmix64: distinct, non-periodic digit strings.
            self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let p = format!(
                "{PLACEHOLDER_OPEN}{:016}{PLACEHOLDER_CLOSE}",
                z % 10_u64.pow(16)
            );
            if !self.originals.contains_key(&p) && !self.haystacks.iter().any(|h| h.contains(&p)) {
                return p;
            }
        }
    }

    /// `text` with every occurrence of a control-token text replaced by a placeholder
    /// (longest text first at each position, as special-token parsing matches).
    fn sanitize(&mut self, text: &str, controls: &[&str]) -> String {
        if !controls.iter().any(|c| text.contains(c)) {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            let found = controls
                .iter()
                .filter(|c| rest.starts_with(**c))
                .max_by_key(|c| c.len());
            match found {
                Some(c) => {
                    let p = self.fresh();
                    out.push_str(&p);
                    self.originals.insert(p, c.to_string());
                    i += c.len();
                }
                None => {
                    let ch = rest.chars().next().unwrap_or_default();
                    out.push(ch);
                    i += ch.len_utf8().max(1);
                }
            }
        }
        out
    }

    /// The rendered text with the originals put back, and their byte ranges in it.
    fn restore(&self, rendered: &str) -> (String, Vec<(usize, usize)>) {
        if self.originals.is_empty() {
            return (rendered.to_string(), Vec::new());
        }
        let mut out = String::with_capacity(rendered.len());
        let mut spans = Vec::new();
        let mut rest = rendered;
        while let Some(open) = rest.find(PLACEHOLDER_OPEN) {
            out.push_str(&rest[..open]);
            rest = &rest[open..];
            let len = PLACEHOLDER_OPEN.len_utf8() + 16 + PLACEHOLDER_CLOSE.len_utf8();
            match rest.get(..len).and_then(|p| self.originals.get(p)) {
                Some(original) => {
                    spans.push((out.len(), out.len() + original.len()));
                    out.push_str(original);
                    rest = &rest[len..];
                }
                None => {
                    out.push(PLACEHOLDER_OPEN);
                    rest = &rest[PLACEHOLDER_OPEN.len_utf8()..];
                }
            }
        }
        out.push_str(rest);
        (out, spans)
    }
}

/// Renders `template` for `messages` as transformers would; `specials` are the
/// special-token variables (`("bos_token", "<s>")`, ...).
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    specials: &[(&str, String)],
) -> Result<String> {
    let fail = |e: minijinja::Error| Error::ChatTemplate(describe(&e));
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    // Jinja2 prints Python values: True/False/None, not minijinja's true/false/none.
    env.set_formatter(|out, state, value| match value.kind() {
        ValueKind::Bool => out
            .write_str(if value.is_true() { "True" } else { "False" })
            .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed")),
        ValueKind::None => out
            .write_str("None")
            .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed")),
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.add_function("raise_exception", raise_exception);
    env.add_filter("tojson", tojson);
    // A template that does not compile is the model file's fault, not the messages'.
    let compiled = env
        .template_from_str(template)
        .map_err(|e| Error::InvalidModel(format!("chat template: {}", describe(&e))))?;

    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            // In insertion order, as the Python dict is (it shows in `tojson`).
            Value::from_iter([
                ("role", Value::from(m.role.as_str())),
                ("content", Value::from(m.content.as_str())),
            ])
        })
        .collect();
    let message_bytes: usize = messages.len() * 64
        + specials.iter().map(|(_, s)| s.len()).sum::<usize>()
        + messages
            .iter()
            .map(|m| {
                m.get_attr("content")
                    .map_or(0, |c| c.as_str().map_or(0, str::len))
            })
            .sum::<usize>();
    let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
    ctx.insert("messages", Value::from(messages));
    ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
    ctx.insert("tools", Value::from(()));
    ctx.insert("documents", Value::from(()));
    for (name, text) in specials {
        ctx.insert(name, Value::from(text.as_str()));
    }

    let mut out = CappedWriter {
        buf: Vec::new(),
        limit: OUTPUT_BASE + OUTPUT_PER_MESSAGE_BYTE * message_bytes,
    };
    compiled.render_captured_to(ctx, &mut out).map_err(fail)?;
    String::from_utf8(out.buf)
        .map_err(|_| Error::ChatTemplate("the rendered prompt is not valid UTF-8".into()))
}

/// The error and its causes in one line (minijinja puts the template line in the source).
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `raise_exception(message)`: the template refuses the input (e.g. roles out of order).
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised an exception: {message}"),
    ))
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, so no HTML escaping, `", "` and `": "` separators,
/// and with `indent` one item per line.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(seps) => {
            let a = seps.get_item_by_index(0)?;
            let b = seps.get_item_by_index(1)?;
            (
                a.as_str().unwrap_or(",").to_string(),
                b.as_str().unwrap_or(":").to_string(),
            )
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    let style = JsonStyle {
        indent,
        item_sep: &item_sep,
        key_sep: &key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    write_json(&json, &style, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

struct JsonStyle<'a> {
    indent: Option<usize>,
    item_sep: &'a str,
    key_sep: &'a str,
    sort_keys: bool,
}

/// Python's `json.dumps` layout (ensure_ascii=False).
fn write_json(v: &serde_json::Value, style: &JsonStyle, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = style.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            // Python writes floats as repr(): 1.0, 0.1, 1e+100
            (_, _, Some(f)) => out.push_str(&format!("{f:?}")),
            _ => out.push_str("null"),
        },
        J::String(s) => write_json_string(s, out),
        J::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item_sep);
                }
                newline(out, depth + 1);
                write_json(item, style, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item_sep);
                }
                newline(out, depth + 1);
                write_json_string(k, out);
                out.push_str(style.key_sep);
                write_json(item, style, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, msgs: &[ChatMessage], gen: bool) -> Result<String> {
        render_chat_template(
            t,
            msgs,
            gen,
            &[("bos_token", "<s>".into()), ("eos_token", "</s>".into())],
        )
    }

    #[test]
    fn phi4_fallback_renders() {
        let msgs = [ChatMessage::system("S"), ChatMessage::user("U")];
        assert_eq!(
            render(PHI4_TEMPLATE, &msgs, true).unwrap(),
            "<|im_start|>system<|im_sep|>S<|im_end|><|im_start|>user<|im_sep|>U<|im_end|><|im_start|>assistant<|im_sep|>"
        );
        assert_eq!(
            render(PHI3_TEMPLATE, &msgs, true).unwrap(),
            "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let e = render("{{ raise_exception('roles must alternate') }}", &[], false).unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }

    #[test]
    fn sandbox_limits() {
        // An endless loop runs out of fuel instead of hanging.
        let e = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &[],
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("fuel") || e.to_string().contains("exceeds"),
            "{e}"
        );
        // Output is capped.
        let e = render("{{ 'x' * 50000000 }}", &[], false).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        // Syntax errors are errors.
        assert!(render("{% for %}", &[], false).is_err());
        // Recursion is bounded.
        let e = render(
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            &[],
            false,
        )
        .unwrap_err();
        assert!(!e.to_string().is_empty());
    }

    #[test]
    fn python_methods_and_tojson() {
        let msgs = [ChatMessage::user("  hi <b> \"q\" é ")];
        let out = render(
            "{{ messages[0]['content'].strip() }}|{{ messages[0]['content'].startswith('  h') }}|{{ messages[0] | tojson }}|{{ {'a': [1, 2.5, none]} | tojson(indent=2) }}",
            &msgs,
            false,
        )
        .unwrap();
        assert_eq!(
            out,
            "hi <b> \"q\" é|True|{\"role\": \"user\", \"content\": \"  hi <b> \\\"q\\\" é \"}|{\n  \"a\": [\n    1,\n    2.5,\n    null\n  ]\n}"
        );
    }
}
