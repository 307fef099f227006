//! Decoding: token ids back to bytes and text, whole or streamed one id at a time.
//!
//! A token's bytes are fixed at load (see `vocab`): byte-level BPE maps its GPT-2
//! characters back to bytes, SentencePiece turns `▁` into a space and `<0xXX>` into one
//! byte. Control and unknown tokens decode to nothing unless the caller asks for special
//! tokens. SentencePiece adds a space in front of the text when encoding; decoding removes
//! it from the first piece of text, as HF's decoder does, so `decode(encode(s)) == s`.
//!
//! A token may end in the middle of a UTF-8 character (byte fallback, or byte-level BPE
//! tokens that split an emoji). [`StreamDecoder`] holds such a tail until the character is
//! complete, so everything it emits is whole characters, and the concatenation of its output
//! equals [`String::from_utf8_lossy`] of all the bytes (which `Tokenizer::decode` returns).

use super::Tokenizer;
use crate::error::Result;

impl Tokenizer {
    /// The bytes token `id` contributes to decoded text. `strip_space` is the pending
    /// "remove the SentencePiece prefix space" state: cleared once any byte is emitted.
    pub(crate) fn piece_for_decode(
        &self,
        id: u32,
        show_special: bool,
        strip_space: &mut bool,
    ) -> Result<&[u8]> {
        let mut bytes = self.token_bytes_checked(id)?;
        if !show_special && self.is_hidden(id) {
            return Ok(&[]);
        }
        if *strip_space && !bytes.is_empty() {
            if bytes[0] == b' ' {
                bytes = &bytes[1..];
            }
            *strip_space = false;
        }
        Ok(bytes)
    }

    /// The decoded bytes of `ids` (which need not be valid UTF-8). Control tokens are
    /// included only if `show_special`.
    pub fn decode_bytes(&self, ids: &[u32], show_special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut strip_space = self.add_space_prefix;
        for &id in ids {
            out.extend_from_slice(self.piece_for_decode(id, show_special, &mut strip_space)?);
        }
        Ok(out)
    }

    /// The text of `ids`, control tokens hidden; bytes that do not form valid UTF-8 become
    /// U+FFFD. An id outside the vocabulary is an error naming it.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, false)
    }

    /// Like [`Tokenizer::decode`], with control tokens shown as their text if `show_special`.
    pub fn decode_with(&self, ids: &[u32], show_special: bool) -> Result<String> {
        let bytes = self.decode_bytes(ids, show_special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A streaming decoder over this tokenizer, control tokens hidden.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self, false)
    }
}

/// Decodes a stream of token ids into text, emitting only complete UTF-8 characters.
///
/// Feed ids with [`StreamDecoder::push`] as they are generated and print what it returns;
/// call [`StreamDecoder::finish`] at the end to flush a dangling partial character (as
/// U+FFFD). The concatenated output equals `Tokenizer::decode` of all the ids.
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    show_special: bool,
    strip_space: bool,
    /// Bytes of an incomplete UTF-8 character (at most 3), waiting for the rest.
    pending: Vec<u8>,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder; `show_special` shows control tokens as their text.
    pub fn new(tokenizer: &'t Tokenizer, show_special: bool) -> StreamDecoder<'t> {
        StreamDecoder {
            tokenizer,
            show_special,
            strip_space: tokenizer.add_space_prefix,
            pending: Vec::new(),
        }
    }

    /// For ids that continue text already shown (a completion after its prompt): the
    /// SentencePiece space in front of the first word is then a real space and is kept.
    /// By default it is removed, as when decoding a whole text or a chat reply.
    pub fn continuation(mut self) -> StreamDecoder<'t> {
        self.strip_space = false;
        self
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let bytes =
            self.tokenizer
                .piece_for_decode(id, self.show_special, &mut self.strip_space)?;
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The first `valid_up_to` bytes are valid UTF-8 by definition.
                    out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Bytes that can never start a valid character: replace them now,
                        // exactly as from_utf8_lossy would.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &rest[valid + n..];
                        }
                        // A character cut short at the end: keep it for the next token.
                        None => {
                            rest = &rest[valid..];
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        Ok(out)
    }

    /// Flushes a partial character left at the end (as U+FFFD) and resets the decoder.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.strip_space = self.tokenizer.add_space_prefix;
        out
    }
}
