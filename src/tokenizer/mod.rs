//! The tokenizer, built from the GGUF metadata alone (`tokenizer.ggml.*`).
//!
//! - `vocab` — token types, GPT-2's byte alphabet, SentencePiece byte tokens
//! - `unicode` — character classes for the split regexes
//! - `pretokenize` — the split regexes (cl100k, o200k, GPT-2, llama.cpp's default)
//! - `bpe` — byte-level BPE by merge rank (`tokenizer.ggml.model = "gpt2"`: Phi-4)
//! - `spm` — SentencePiece BPE by score (`"llama"`: Phi-3)
//! - `decode` — ids to text, and [`StreamDecoder`] for generation
//! - `chat` — chat templates ([`ChatMessage`], sandboxed minijinja)
//!
//! Encoding first cuts the text at special tokens (control tokens only when the caller
//! asks: text a user typed must not inject `<|im_end|>`; user-defined tokens always, as
//! llama.cpp and HF do), then encodes each stretch of plain text. Every rule follows
//! llama.cpp's `llama-vocab.cpp` (facts, not code) and is checked against llama.cpp's and
//! tiktoken's outputs in `tests/tokenizer.rs`.

mod bpe;
mod chat;
mod decode;
mod pretokenize;
mod spm;
mod unicode;
mod vocab;

use rustc_hash::FxHashMap;

pub use chat::{render_chat_template, ChatMessage};
pub use decode::StreamDecoder;
pub use vocab::TokenType;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Metadata};
use bpe::{Bpe, NO_TOKEN};
use pretokenize::{PreConfig, PreTokenizer};
use spm::Spm;

/// Texts of control tokens that end a turn or the text (llama.cpp's end-of-generation
/// list): generation stops on any of them that the vocabulary has as a control token,
/// besides the eos/eot/eom ids. Phi-4 ends turns with `<|im_end|>` but older GGUFs set
/// eos to `<|endoftext|>`; Phi-3 ends them with `<|end|>`.
const END_OF_TURN_TEXTS: [&str; 7] = [
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<EOT>",
];

/// Candidates for the end-of-turn token when `tokenizer.ggml.eot_token_id` is absent,
/// in order of preference.
const EOT_CANDIDATES: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// A vocabulary larger than this is refused: ids are u32 and `u32::MAX` marks "none".
const MAX_VOCAB: usize = (u32::MAX - 1) as usize;

/// The algorithm that turns plain text into ids.
enum Model {
    Bpe { bpe: Box<Bpe>, pre: PreTokenizer },
    Spm(Box<Spm>),
}

/// A token that special-token parsing looks for in the text.
struct SpecialToken {
    id: u32,
    text: Box<str>,
    /// Matched even without `parse_special` (user-defined tokens).
    always: bool,
    /// Swallow white space before / after a match (llama.cpp's LSTRIP / RSTRIP).
    lstrip: bool,
    rstrip: bool,
}

/// A stretch of the input: plain text, or a special token found in it.
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// A tokenizer for one model, built from its GGUF metadata.
pub struct Tokenizer {
    model: Model,
    /// `tokenizer.ggml.model` and `tokenizer.ggml.pre`, for display.
    model_name: String,
    pre_name: String,
    texts: Vec<Box<str>>,
    types: Vec<TokenType>,
    /// What each token decodes to: `piece_data[piece_offsets[id]..piece_offsets[id + 1]]`.
    piece_data: Vec<u8>,
    piece_offsets: Vec<usize>,
    /// Exact token text -> id (the last id when two tokens share a text, as in llama.cpp).
    by_text: FxHashMap<Box<str>, u32>,
    /// Longest text first: llama.cpp's matching order.
    specials: Vec<SpecialToken>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// SentencePiece: a space is put in front of the text (and removed when decoding).
    add_space_prefix: bool,
    stop_tokens: Vec<u32>,
    chat_template: Option<String>,
}

fn invalid(what: impl Into<String>) -> Error {
    Error::Tokenizer(what.into())
}

/// C's `isspace` in the "C" locale, which llama.cpp uses to strip around special tokens.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

impl Tokenizer {
    /// Builds the tokenizer of a GGUF file from its `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        Tokenizer::from_metadata(&file.header.metadata)
    }

    /// Builds the tokenizer from GGUF metadata. Every inconsistency (arrays of different
    /// lengths, a merge naming an unknown token, a special id out of range, an unknown
    /// model or pre-tokenizer) is an error that names it.
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer> {
        let model_name: &str = md.get_as("tokenizer.ggml.model")?;
        let tokens: &[String] = md.get_as("tokenizer.ggml.tokens")?;
        let n_vocab = tokens.len();
        if n_vocab == 0 {
            return Err(invalid("tokenizer.ggml.tokens is empty"));
        }
        if n_vocab > MAX_VOCAB {
            return Err(invalid(format!(
                "tokenizer.ggml.tokens has {n_vocab} tokens; at most {MAX_VOCAB} are supported"
            )));
        }
        let types: Vec<TokenType> = match md.opt_as::<&[i32]>("tokenizer.ggml.token_type")? {
            None => vec![TokenType::Normal; n_vocab],
            Some(t) if t.len() == n_vocab => t.iter().map(|&v| TokenType::from_i32(v)).collect(),
            Some(t) => {
                return Err(invalid(format!(
                "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {n_vocab}",
                t.len()
            )))
            }
        };
        let scores: Option<&[f32]> = md.opt_as("tokenizer.ggml.scores")?;
        if let Some(s) = scores {
            if s.len() != n_vocab {
                return Err(invalid(format!(
                    "tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {n_vocab}",
                    s.len()
                )));
            }
        }

        let texts: Vec<Box<str>> = tokens.iter().map(|t| t.as_str().into()).collect();
        let mut by_text: FxHashMap<Box<str>, u32> =
            FxHashMap::with_capacity_and_hasher(n_vocab, Default::default());
        for (id, t) in texts.iter().enumerate() {
            by_text.insert(t.clone(), id as u32);
        }

        let special_id = |key: &str| -> Result<Option<u32>> {
            match md.opt_as::<u32>(key)? {
                Some(id) if id as usize >= n_vocab => Err(invalid(format!(
                    "metadata key '{key}': token id {id} is out of range (the vocabulary has {n_vocab} tokens)"
                ))),
                other => Ok(other),
            }
        };
        let bos = special_id("tokenizer.ggml.bos_token_id")?;
        let eos = special_id("tokenizer.ggml.eos_token_id")?;
        let eom = special_id("tokenizer.ggml.eom_token_id")?;
        let unk = special_id("tokenizer.ggml.unknown_token_id")?;
        let pad = special_id("tokenizer.ggml.padding_token_id")?;
        let eot = match special_id("tokenizer.ggml.eot_token_id")? {
            Some(id) => Some(id),
            None => EOT_CANDIDATES
                .iter()
                .filter_map(|t| by_text.get(*t).copied())
                .find(|&id| types[id as usize] == TokenType::Control),
        };

        let add_bos_key: Option<bool> = md.opt_as("tokenizer.ggml.add_bos_token")?;
        let add_eos: bool = md.opt_as("tokenizer.ggml.add_eos_token")?.unwrap_or(false);

        let (model, pre_name, add_bos_default, add_space_prefix, piece_bytes) = match model_name {
            "gpt2" => {
                let pre_name: &str = md.opt_as("tokenizer.ggml.pre")?.unwrap_or("default");
                let config = PreConfig::from_name(pre_name).ok_or_else(|| {
                    invalid(format!(
                        "unknown pre-tokenizer tokenizer.ggml.pre = '{pre_name}' (phiq knows: {})",
                        pretokenize::KNOWN_PRE
                    ))
                })?;
                let (bpe, piece_bytes) = build_bpe(md, &texts, &types, &by_text, config)?;
                let model = Model::Bpe {
                    bpe: Box::new(bpe),
                    pre: config.pre,
                };
                (model, pre_name.to_string(), config.add_bos_default, false, piece_bytes)
            }
            "llama" => {
                let add_space_prefix: bool = md
                    .opt_as("tokenizer.ggml.add_space_prefix")?
                    .unwrap_or(true);
                let (spm, piece_bytes) = build_spm(&texts, &types, scores, unk);
                let pre_name = md.opt_as::<&str>("tokenizer.ggml.pre")?.unwrap_or("default");
                (Model::Spm(Box::new(spm)), pre_name.to_string(), true, add_space_prefix, piece_bytes)
            }
            other => {
                return Err(invalid(format!(
                    "unknown tokenizer model tokenizer.ggml.model = '{other}' (phiq knows: gpt2, llama)"
                )))
            }
        };
        let add_bos = add_bos_key.unwrap_or(add_bos_default);
        if add_bos && bos.is_none() && add_bos_key == Some(true) {
            return Err(invalid(
                "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing",
            ));
        }
        if add_eos && eos.is_none() {
            return Err(invalid(
                "tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing",
            ));
        }

        let mut piece_data = Vec::new();
        let mut piece_offsets = Vec::with_capacity(n_vocab + 1);
        piece_offsets.push(0);
        for bytes in &piece_bytes {
            piece_data.extend_from_slice(bytes);
            piece_offsets.push(piece_data.len());
        }

        let name = md
            .opt_as::<&str>("general.name")?
            .unwrap_or("")
            .to_lowercase();
        let specials = special_tokens(&texts, &types, &name);

        let mut stop_tokens: Vec<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for text in END_OF_TURN_TEXTS {
            if let Some(&id) = by_text.get(text) {
                if types[id as usize] == TokenType::Control {
                    stop_tokens.push(id);
                }
            }
        }
        stop_tokens.sort_unstable();
        stop_tokens.dedup();

        let chat_template = md
            .opt_as::<&str>("tokenizer.chat_template")?
            .map(str::to_string);

        Ok(Tokenizer {
            model,
            model_name: model_name.to_string(),
            pre_name,
            texts,
            types,
            piece_data,
            piece_offsets,
            by_text,
            specials,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            add_bos: add_bos && bos.is_some(),
            add_eos,
            add_space_prefix,
            stop_tokens,
            chat_template,
        })
    }

    /// Encodes `text`. `add_special` adds BOS/EOS as the model's `add_bos_token` /
    /// `add_eos_token` say; `parse_special` turns control-token text such as `<|im_end|>`
    /// into its id (templates need it; text a user typed must not get it).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.encode_with_untrusted(text, add_special, parse_special, &[])
    }

    /// [`Tokenizer::encode`], except that special-token text overlapping one of the
    /// `untrusted` byte ranges stays plain text (chat messages inside a rendered template).
    pub(crate) fn encode_with_untrusted(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        untrusted: &[(usize, usize)],
    ) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let fragments = self.partition(text, parse_special, untrusted);
        match &self.model {
            Model::Bpe { bpe, pre } => {
                for fragment in fragments {
                    match fragment {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(s) => {
                            let start = out.len();
                            pre.split(s, |piece| bpe.encode_piece(piece.as_bytes(), &mut out));
                            if out[start..].contains(&NO_TOKEN) {
                                self.replace_missing(&mut out, start);
                            }
                        }
                    }
                }
            }
            Model::Spm(spm) => {
                // A space goes in front of the text, and of text after a special token,
                // as SentencePiece's "dummy prefix" (llama.cpp does the same).
                let mut prev_special = true;
                let mut buf = String::new();
                for fragment in fragments {
                    match fragment {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(s) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for c in s.chars() {
                                buf.push(if c == ' ' { '▁' } else { c });
                            }
                            spm.encode(&buf, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Replaces `NO_TOKEN` (a byte the vocabulary lacks) from `start` on by the unknown
    /// token, or drops it if there is none (as llama.cpp does).
    fn replace_missing(&self, out: &mut Vec<u32>, start: usize) {
        let tail: Vec<u32> = out.drain(start..).collect();
        out.extend(tail.into_iter().filter_map(
            |id| {
                if id == NO_TOKEN {
                    self.unk
                } else {
                    Some(id)
                }
            },
        ));
    }

    /// Cuts `text` at special tokens: longest token text first; at each occurrence, left
    /// to right, within what is still plain text.
    fn partition<'a>(
        &self,
        text: &'a str,
        parse_special: bool,
        untrusted: &[(usize, usize)],
    ) -> Vec<Fragment<'a>> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        // Byte offset of a slice of `text` within `text`.
        let offset_of = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
        let in_untrusted =
            |start: usize, end: usize| untrusted.iter().any(|&(a, b)| start < b && a < end);
        fragments.push(Fragment::Text(text));
        let present = self.specials_present(text, parse_special);
        for (special, _) in self.specials.iter().zip(present).filter(|(_, p)| *p) {
            let needle = &*special.text;
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut s) = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut from = 0;
                while let Some(found) = s[from..].find(needle) {
                    let pos = from + found;
                    let start = offset_of(s) + pos;
                    if !special.always && in_untrusted(start, start + needle.len()) {
                        // Control-token text that came from a chat message stays text.
                        from = pos + needle.chars().next().map_or(1, char::len_utf8);
                        continue;
                    }
                    let mut left = &s[..pos];
                    if special.lstrip {
                        left = left.trim_end_matches(is_c_space);
                    }
                    if !left.is_empty() {
                        next.push(Fragment::Text(left));
                    }
                    next.push(Fragment::Token(special.id));
                    s = &s[pos + needle.len()..];
                    if special.rstrip {
                        s = s.trim_start_matches(is_c_space);
                    }
                    from = 0;
                }
                if !s.is_empty() {
                    next.push(Fragment::Text(s));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// Which of `self.specials` (those that apply) occur in `text`, found in one pass:
    /// only bytes that begin some special text are looked at.
    fn specials_present(&self, text: &str, parse_special: bool) -> Vec<bool> {
        let applies = |s: &SpecialToken| parse_special || s.always;
        let mut present = vec![false; self.specials.len()];
        let mut first = [false; 256];
        let mut missing = 0;
        for s in self.specials.iter().filter(|s| applies(s)) {
            first[s.text.as_bytes()[0] as usize] = true;
            missing += 1;
        }
        let bytes = text.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if missing == 0 {
                break;
            }
            if !first[b as usize] {
                continue;
            }
            let rest = &bytes[i..];
            for (k, s) in self.specials.iter().enumerate() {
                if !present[k] && applies(s) && rest.starts_with(s.text.as_bytes()) {
                    present[k] = true;
                    missing -= 1;
                }
            }
        }
        present
    }

    /// The texts that special-token parsing turns into control (or unknown) tokens.
    pub(crate) fn control_texts(&self) -> impl Iterator<Item = &str> {
        self.specials.iter().filter(|s| !s.always).map(|s| &*s.text)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.texts.len()
    }

    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// `tokenizer.ggml.pre` (the pre-tokenizer's name; "default" when absent).
    pub fn pre_name(&self) -> &str {
        &self.pre_name
    }

    /// The token's text as the vocabulary stores it (`Ġworld`, `▁world`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(|t| &**t)
    }

    /// The bytes the token decodes to, with control tokens shown.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (&start, &end) = (self.piece_offsets.get(i)?, self.piece_offsets.get(i + 1)?);
        self.piece_data.get(start..end)
    }

    pub(crate) fn token_bytes_checked(&self, id: u32) -> Result<&[u8]> {
        self.token_bytes(id).ok_or(Error::TokenOutOfRange {
            id,
            n_vocab: self.n_vocab(),
        })
    }

    /// The token's decoded text (invalid UTF-8, e.g. half an emoji, shown as U+FFFD).
    pub fn token_piece(&self, id: u32) -> Option<String> {
        self.token_bytes(id)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Whether the token is a control token (`<|im_end|>`, `<s>`).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_type(id) == Some(TokenType::Control)
    }

    /// Control and unknown tokens: hidden when decoding unless asked for.
    pub(crate) fn is_hidden(&self, id: u32) -> bool {
        self.token_type(id).is_some_and(TokenType::is_special)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    /// End of turn: `tokenizer.ggml.eot_token_id`, or the vocabulary's `<|im_end|>`,
    /// `<|eot_id|>`, `<|end|>`, ... control token.
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }
    /// Whether `encode(.., add_special = true, ..)` puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` puts EOS last.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// The tokens that end generation, sorted: eos, eot, eom, and every control token
    /// whose text marks the end of a turn or of the text (`<|im_end|>`, `<|end|>`,
    /// `<|endoftext|>`, ...).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_tokens.binary_search(&id).is_ok()
    }

    /// `tokenizer.chat_template`, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
}

/// The special tokens text is cut at, longest text first (ties by id), with llama.cpp's
/// strip rules. `name` is `general.name` in lower case: llama.cpp gives Phi-3's special
/// tokens RSTRIP (white space after them is swallowed, as in Phi-3's HF tokenizer), except
/// `<unk>`, `<s>` and `<|endoftext|>`.
fn special_tokens(texts: &[Box<str>], types: &[TokenType], name: &str) -> Vec<SpecialToken> {
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    let mut specials: Vec<SpecialToken> = texts
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (text, ty))| {
            !text.is_empty()
                && matches!(
                    ty,
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                )
        })
        .map(|(id, (text, ty))| SpecialToken {
            id: id as u32,
            text: text.clone(),
            always: *ty == TokenType::UserDefined,
            lstrip: false,
            rstrip: phi3 && !matches!(&**text, "<unk>" | "<s>" | "<|endoftext|>"),
        })
        .collect();
    specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
    specials
}

/// Byte-level BPE from `tokenizer.ggml.merges`; also returns what each token decodes to.
fn build_bpe(
    md: &Metadata,
    texts: &[Box<str>],
    types: &[TokenType],
    by_text: &FxHashMap<Box<str>, u32>,
    config: PreConfig,
) -> Result<(Bpe, Vec<Vec<u8>>)> {
    let char_to_byte = vocab::char_to_byte_table();
    let mut piece_bytes = Vec::with_capacity(texts.len());
    let mut whole: FxHashMap<Box<[u8]>, u32> =
        FxHashMap::with_capacity_and_hasher(texts.len(), Default::default());
    let mut byte_token = [NO_TOKEN; 256];
    for (id, (text, ty)) in texts.iter().zip(types).enumerate() {
        let bytes = match ty {
            // What BPE produces from text: tokens in GPT-2's byte alphabet.
            TokenType::Normal => vocab::bpe_text_to_bytes(text, &char_to_byte),
            // Written as themselves (llama.cpp's token_to_piece).
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                text.as_bytes().to_vec()
            }
            TokenType::Undefined | TokenType::Unused | TokenType::Byte => Vec::new(),
        };
        if *ty == TokenType::Normal && !bytes.is_empty() {
            if let [b] = bytes[..] {
                byte_token[b as usize] = id as u32;
            }
            whole.insert(bytes.clone().into_boxed_slice(), id as u32);
        }
        piece_bytes.push(bytes);
    }

    let merges: &[String] = md.get_as("tokenizer.ggml.merges")?;
    if merges.len() >= u32::MAX as usize {
        return Err(invalid(format!(
            "tokenizer.ggml.merges has {} merges; ranks must fit in 32 bits",
            merges.len()
        )));
    }
    let lookup = |merge_index: usize, text: &str| -> Result<u32> {
        by_text.get(text).copied().ok_or_else(|| {
            invalid(format!(
                "tokenizer.ggml.merges[{merge_index}] names '{text}', which is not a token"
            ))
        })
    };
    let mut triples = Vec::with_capacity(merges.len());
    let mut joined = String::new();
    for (i, merge) in merges.iter().enumerate() {
        // The separator is the first space after the first character (a token may itself
        // be a single space in a non-byte-level vocabulary).
        let split = merge
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(pos, _)| pos);
        let Some(pos) = split else {
            return Err(invalid(format!(
                "tokenizer.ggml.merges[{i}] = {merge:?} is not two tokens separated by a space"
            )));
        };
        let (left, right) = (&merge[..pos], &merge[pos + 1..]);
        joined.clear();
        joined.push_str(left);
        joined.push_str(right);
        triples.push((lookup(i, left)?, lookup(i, right)?, lookup(i, &joined)?));
    }
    let bpe = Bpe::new(
        texts.len(),
        byte_token,
        &triples,
        whole,
        config.ignore_merges,
    );
    Ok((bpe, piece_bytes))
}

/// SentencePiece BPE; also returns what each token decodes to.
fn build_spm(
    texts: &[Box<str>],
    types: &[TokenType],
    scores: Option<&[f32]>,
    unk: Option<u32>,
) -> (Spm, Vec<Vec<u8>>) {
    let mut pieces: FxHashMap<Box<str>, u32> =
        FxHashMap::with_capacity_and_hasher(texts.len(), Default::default());
    let mut byte_token = [None; 256];
    let mut piece_bytes = Vec::with_capacity(texts.len());
    for (id, (text, ty)) in texts.iter().zip(types).enumerate() {
        let id = id as u32;
        if !ty.is_special() {
            pieces.insert(text.clone(), id);
        }
        let bytes = match ty {
            TokenType::Normal => text.replace('▁', " ").into_bytes(),
            TokenType::Byte => match vocab::spm_byte_value(text) {
                Some(b) => {
                    byte_token[b as usize] = Some(id);
                    vec![b]
                }
                None => Vec::new(),
            },
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                text.as_bytes().to_vec()
            }
            TokenType::Undefined | TokenType::Unused => Vec::new(),
        };
        piece_bytes.push(bytes);
    }
    let scores = scores.map_or_else(|| vec![0.0; texts.len()], <[f32]>::to_vec);
    (Spm::new(pieces, scores, byte_token, unk), piece_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Phi-3's SentencePiece encoder cuts the text before each word's `▁`; the ids must be
    /// those of one heap over the whole text.
    #[test]
    fn spm_word_split_is_exact() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/vocab/ggml-vocab-phi-3.gguf");
        let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
        let Model::Spm(spm) = &tok.model else {
            panic!("phi-3 is SentencePiece")
        };
        assert!(spm.split_before_space);
        let corpus = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/fixtures/tokenizer/phi4-corpus.jsonl"),
        )
        .unwrap();
        for line in corpus.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = format!("▁{}", v["text"].as_str().unwrap().replace(' ', "▁"));
            let (mut split, mut whole) = (Vec::new(), Vec::new());
            spm.encode(&text, &mut split);
            spm.encode_unsplit(&text, &mut whole);
            assert_eq!(split, whole, "{text:?}");
        }
    }
}
