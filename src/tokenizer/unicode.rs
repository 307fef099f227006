//! Unicode character classes for the pre-tokenizers, one flag byte per code point.
//!
//! The split regexes of GPT-2, cl100k and o200k ask about `\p{L}`, `\p{N}`, `\s`, `\p{M}`,
//! the letter subcategories and `\p{P}`. The classes come from `regex-syntax`, the same
//! tables as the `regex`/`fancy-regex` engine tiktoken runs, so our hand-written splitters
//! see exactly the categories the reference regexes see. The table (1.1 MB, one byte per
//! code point) is built once on first use: a lookup is one load, with no branch on the
//! code point's range in the hot loop.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// `\p{L}`: any letter.
pub(crate) const LETTER: u8 = 1 << 0;
/// `\p{N}`: any number (Nd, Nl, No).
pub(crate) const NUMBER: u8 = 1 << 1;
/// `\s`: Unicode White_Space.
pub(crate) const SPACE: u8 = 1 << 2;
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`: o200k's "upper case or caseless" class.
pub(crate) const UPPERISH: u8 = 1 << 3;
/// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`: o200k's "lower case or caseless" class.
pub(crate) const LOWERISH: u8 = 1 << 4;
/// `\p{P}`: punctuation (llama.cpp's "default" BPE split).
pub(crate) const PUNCT: u8 = 1 << 5;

const N_CODE_POINTS: usize = 0x11_0000;

/// The classes as regex-syntax spells them, with the flag each one sets.
const CLASSES: [(&str, u8); 6] = [
    (r"\p{L}", LETTER),
    (r"\p{N}", NUMBER),
    (r"\s", SPACE),
    (r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", UPPERISH),
    (r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]", LOWERISH),
    (r"\p{P}", PUNCT),
];

static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();

/// The flag table: `table[c as usize]` holds the flags of code point `c`.
pub(crate) fn table() -> &'static [u8] {
    TABLE.get_or_init(build)
}

fn build() -> Box<[u8]> {
    let mut table = vec![0u8; N_CODE_POINTS].into_boxed_slice();
    for (pattern, flag) in CLASSES {
        // The patterns are constants (and a unit test parses every one), so a failure here
        // is a bug in this file, never a property of the input.
        let hir = regex_syntax::Parser::new()
            .parse(pattern)
            .expect("constant Unicode class pattern");
        let HirKind::Class(Class::Unicode(class)) = hir.kind() else {
            unreachable!("{pattern} is a Unicode class");
        };
        for range in class.ranges() {
            for c in range.start() as usize..=range.end() as usize {
                table[c] |= flag;
            }
        }
    }
    table
}

/// Flags of one character (a `char` is always below 0x110000, so the index is in range).
#[inline(always)]
pub(crate) fn flags(table: &[u8], c: char) -> u8 {
    table[c as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_expectations() {
        let t = table();
        assert_eq!(flags(t, 'a') & (LETTER | LOWERISH), LETTER | LOWERISH);
        assert_eq!(
            flags(t, 'A') & (LETTER | UPPERISH | LOWERISH),
            LETTER | UPPERISH
        );
        assert_eq!(
            flags(t, '日') & (LETTER | UPPERISH | LOWERISH),
            LETTER | UPPERISH | LOWERISH
        );
        assert_eq!(flags(t, '7'), NUMBER);
        assert_eq!(flags(t, '½'), NUMBER);
        assert_eq!(flags(t, ' '), SPACE);
        assert_eq!(flags(t, '\u{3000}'), SPACE);
        assert_eq!(flags(t, '\u{85}'), SPACE);
        assert_eq!(
            flags(t, '\u{200b}'),
            0,
            "zero-width space is not White_Space"
        );
        assert_eq!(flags(t, '\u{301}'), UPPERISH | LOWERISH, "a combining mark");
        assert_eq!(flags(t, '!'), PUNCT);
        assert_eq!(flags(t, '$'), 0, "a symbol, not punctuation");
        assert_eq!(flags(t, '😀'), 0);
    }
}
