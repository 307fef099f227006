//! The vocabulary as GGUF stores it: token texts, token types, and what each token
//! decodes to.
//!
//! Byte-level BPE vocabularies (GPT-2, cl100k, ...) write each byte as a printable
//! character (GPT-2's `bytes_to_unicode`: `Ġ` is a space, `Ċ` a newline); SentencePiece
//! vocabularies write a space as `▁` and a raw byte as a `<0xXX>` token.

use std::fmt;

/// A token's type, `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TokenType {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    /// The type stored as `v`; values outside the enum count as undefined, as in llama.cpp.
    pub fn from_i32(v: i32) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// Control and unknown tokens: never produced from text unless special-token parsing
    /// is on, and hidden when decoding unless asked for.
    pub fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::Unknown)
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TokenType::Undefined => "undefined",
            TokenType::Normal => "normal",
            TokenType::Unknown => "unknown",
            TokenType::Control => "control",
            TokenType::UserDefined => "user-defined",
            TokenType::Unused => "unused",
            TokenType::Byte => "byte",
        };
        f.write_str(name)
    }
}

/// GPT-2's `bytes_to_unicode`: the character that stands for each byte. Printable
/// Latin-1 bytes stand for themselves; the other 68 get U+0100 and up, in byte order.
pub(crate) fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            b as u32
        } else {
            let c = next;
            next += 1;
            c
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    table
}

/// The inverse of [`byte_to_char`]: the byte a character stands for, if any.
pub(crate) fn char_to_byte_table() -> rustc_hash::FxHashMap<char, u8> {
    byte_to_char()
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect()
}

/// The bytes a byte-level BPE token's text stands for. A character outside GPT-2's table
/// (possible only in a malformed vocabulary) stands for its own UTF-8 bytes.
pub(crate) fn bpe_text_to_bytes(text: &str, table: &rustc_hash::FxHashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match table.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// The byte of a SentencePiece byte token `<0xXX>`.
pub(crate) fn spm_byte_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_table() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0xAD], 'Ń', "the last of the 68 remapped bytes");
        let inv = char_to_byte_table();
        assert_eq!(inv.len(), 256);
        assert_eq!(bpe_text_to_bytes("Ġworld", &inv), b" world");
    }

    #[test]
    fn spm_bytes() {
        assert_eq!(spm_byte_value("<0x0A>"), Some(10));
        assert_eq!(spm_byte_value("<0xff>"), Some(255));
        assert_eq!(spm_byte_value("<0x0>"), None);
        assert_eq!(spm_byte_value("<s>"), None);
    }
}
