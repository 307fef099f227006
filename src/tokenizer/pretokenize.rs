//! Pre-tokenizers: split text into the pieces that byte-level BPE then encodes one by one.
//!
//! Each splitter is a hand-written matcher for one regex, equal to the regex as a
//! backtracking engine (fancy-regex, which tiktoken uses; Oniguruma in HF `tokenizers`)
//! runs it: at each position the first alternative that matches wins, quantifiers are
//! greedy and give back characters only as far as needed. The unit tests check every
//! matcher against fancy-regex running the original pattern on random text drawn from the
//! characters that matter (letters of each case, marks, digits, all kinds of white space,
//! CR/LF, apostrophes, `ſ`, punctuation, emoji).
//!
//! The patterns (named by `tokenizer.ggml.pre`, as llama.cpp names them):
//! - cl100k / Llama 3 (`dbrx`, `llama3`, `llama-bpe`, ...):
//!   `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! - o200k (`gpt-4o`, `llama4`): case-aware letter runs with the contraction as a suffix,
//!   `\p{N}{1,3}`, and `[\r\n/]*` after a punctuation run.
//! - GPT-2 (`gpt-2`, `phi-2`, ...): `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! - llama.cpp's `default`: four regexes applied in turn, each splitting the pieces of the
//!   previous one into matches and the gaps between them.
//!
//! One deliberate choice: cl100k's contractions are case-insensitive as in tiktoken's
//! `(?i:...)`, so `'ſ` (U+017F, which folds to `s`) is a contraction. llama.cpp rewrites the
//! group as `'[sS]|...` and splits `'ſ` differently; the model was trained with tiktoken.

use super::unicode::{self, LETTER, LOWERISH, NUMBER, PUNCT, SPACE, UPPERISH};

/// A pre-tokenizer, as selected by `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreTokenizer {
    /// GPT-4's cl100k_base split (also Llama 3's and DBRX's).
    Cl100k,
    /// GPT-4o's o200k_base split.
    O200k,
    /// GPT-2's split.
    Gpt2,
    /// llama.cpp's fallback for BPE vocabularies with `pre = "default"`.
    LlamaDefault,
}

/// How a `tokenizer.ggml.pre` value configures byte-level BPE.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    pub pre: PreTokenizer,
    /// A piece that is itself a token is emitted whole, without running the merges
    /// (HF `ignore_merges`, set by Llama 3's tokenizer).
    pub ignore_merges: bool,
    /// Whether BOS is added when the file has no `tokenizer.ggml.add_bos_token`.
    pub add_bos_default: bool,
}

/// The `tokenizer.ggml.pre` names phiq understands (for the error message).
pub(crate) const KNOWN_PRE: &str =
    "dbrx, smaug-bpe, llama3, llama-v3, llama-bpe, falcon3, gpt-4o, llama4, gpt-2, phi-2, default";

impl PreConfig {
    /// The configuration for a `tokenizer.ggml.pre` value; `None` if phiq does not know it.
    /// A missing key is "default", as in llama.cpp.
    pub(crate) fn from_name(name: &str) -> Option<PreConfig> {
        let (pre, ignore_merges, add_bos_default) = match name {
            "dbrx" | "smaug-bpe" => (PreTokenizer::Cl100k, false, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => (PreTokenizer::Cl100k, true, true),
            "gpt-4o" | "llama4" => (PreTokenizer::O200k, false, false),
            "gpt-2" | "phi-2" => (PreTokenizer::Gpt2, false, false),
            "default" => (PreTokenizer::LlamaDefault, false, false),
            _ => return None,
        };
        Some(PreConfig {
            pre,
            ignore_merges,
            add_bos_default,
        })
    }
}

impl PreTokenizer {
    /// Calls `piece` with each piece of `text`, in order; the pieces tile `text` exactly.
    pub(crate) fn split<'t>(self, text: &'t str, mut piece: impl FnMut(&'t str)) {
        if text.is_empty() {
            return;
        }
        let table = unicode::table();
        let matcher: fn(&Scan, usize) -> usize = match self {
            PreTokenizer::Cl100k => match_cl100k,
            PreTokenizer::O200k => match_o200k,
            PreTokenizer::Gpt2 => match_gpt2,
            PreTokenizer::LlamaDefault => return split_llama_default(table, text, piece),
        };
        let scan = Scan { s: text, table };
        let mut i = 0;
        while i < text.len() {
            let end = matcher(&scan, i);
            debug_assert!(end > i && text.is_char_boundary(end));
            piece(&text[i..end]);
            i = end;
        }
    }
}

/// The text being split and the class table, with the small queries the matchers need.
/// Positions are byte offsets on char boundaries.
struct Scan<'a> {
    s: &'a str,
    table: &'a [u8],
}

impl Scan<'_> {
    /// The char at byte `i` and its length, or `None` at the end.
    #[inline(always)]
    fn at(&self, i: usize) -> Option<(char, usize)> {
        let b = *self.s.as_bytes().get(i)?;
        if b < 0x80 {
            return Some((b as char, 1));
        }
        let c = self.s[i..].chars().next()?;
        Some((c, c.len_utf8()))
    }

    #[inline(always)]
    fn flags(&self, c: char) -> u8 {
        unicode::flags(self.table, c)
    }

    /// Whether the char at `i` exists and has any of `mask`.
    #[inline(always)]
    fn is(&self, i: usize, mask: u8) -> bool {
        matches!(self.at(i), Some((c, _)) if self.flags(c) & mask != 0)
    }

    /// End of the run of chars with any flag in `mask`, starting at `i`.
    #[inline(always)]
    fn run(&self, mut i: usize, mask: u8) -> usize {
        while let Some((c, n)) = self.at(i) {
            if self.flags(c) & mask == 0 {
                break;
            }
            i += n;
        }
        i
    }

    /// End of the run of chars satisfying `pred`, starting at `i`.
    #[inline(always)]
    fn run_while(&self, mut i: usize, pred: impl Fn(char, u8) -> bool) -> usize {
        while let Some((c, n)) = self.at(i) {
            if !pred(c, self.flags(c)) {
                break;
            }
            i += n;
        }
        i
    }

    /// Whether the char at `i` exists and is none of white space, letter, number
    /// (`[^\s\p{L}\p{N}]`).
    #[inline(always)]
    fn is_other(&self, i: usize) -> bool {
        matches!(self.at(i), Some((c, _)) if self.flags(c) & (SPACE | LETTER | NUMBER) == 0)
    }

    /// The end of the contraction `'s|'t|'re|'ve|'m|'ll|'d` starting at `i` (which holds
    /// the apostrophe), if there is one. `fold` makes it case-insensitive as regex's
    /// `(?i:...)` is: simple case folding, under which `ſ` (U+017F) is an `s`.
    fn contraction(&self, i: usize, fold: bool) -> Option<usize> {
        let b = self.s.as_bytes();
        if b.get(i) != Some(&b'\'') {
            return None;
        }
        let (c1, n1) = self.at(i + 1)?;
        let lower = |c: char| if fold { fold_ascii(c) } else { c };
        let second = |expect: char| match self.at(i + 1 + n1) {
            Some((c2, n2)) if lower(c2) == expect => Some(i + 1 + n1 + n2),
            _ => None,
        };
        match lower(c1) {
            's' | 't' | 'm' | 'd' => Some(i + 1 + n1),
            'r' | 'v' => second('e'),
            'l' => second('l'),
            _ => None,
        }
    }

    /// Where `\s*[\r\n]+|\s+(?!\S)|\s+` ends when the char at `i` is white space.
    ///
    /// - `\s*[\r\n]+`: the greedy `\s*` gives back until a CR/LF follows, so the match ends
    ///   just after the last CR/LF of the white-space run.
    /// - `\s+(?!\S)`: the whole run at the end of the text; otherwise the run less its last
    ///   char (which is white space, so the look-ahead holds), if that leaves any.
    /// - `\s+`: the whole run (one white-space char before a non-space).
    fn whitespace(&self, i: usize, newlines: bool) -> usize {
        let mut end = i;
        let mut last_newline = None;
        let mut last_len = 0;
        while let Some((c, n)) = self.at(end) {
            if self.flags(c) & SPACE == 0 {
                break;
            }
            if c == '\r' || c == '\n' {
                last_newline = Some(end + n);
            }
            last_len = n;
            end += n;
        }
        if newlines {
            if let Some(after) = last_newline {
                return after;
            }
        }
        if end == self.s.len() || end - last_len == i {
            end
        } else {
            end - last_len
        }
    }
}

/// Simple case folding of the letters the contraction group mentions.
#[inline]
fn fold_ascii(c: char) -> char {
    match c {
        'ſ' => 's',
        c => c.to_ascii_lowercase(),
    }
}

/// cl100k: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn match_cl100k(t: &Scan, i: usize) -> usize {
    let Some((c0, n0)) = t.at(i) else { return i };
    let f0 = t.flags(c0);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c0 == '\'' {
        if let Some(end) = t.contraction(i, true) {
            return end;
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if f0 & LETTER != 0 {
        return t.run(i, LETTER);
    }
    if c0 != '\r' && c0 != '\n' && f0 & NUMBER == 0 && t.is(i + n0, LETTER) {
        return t.run(i + n0, LETTER);
    }
    // \p{N}{1,3}
    if f0 & NUMBER != 0 {
        let mut end = i + n0;
        for _ in 0..2 {
            match t.at(end) {
                Some((c, n)) if t.flags(c) & NUMBER != 0 => end += n,
                _ => break,
            }
        }
        return end;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    let start = if c0 == ' ' { i + 1 } else { i };
    if t.is_other(start) {
        let end = t.run_while(start, |_, f| f & (SPACE | LETTER | NUMBER) == 0);
        return t.run_while(end, |c, _| c == '\r' || c == '\n');
    }
    // Only white space is left: \s*[\r\n]+|\s+(?!\S)|\s+
    t.whitespace(i, true)
}

/// o200k:
/// `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
/// `|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
/// `|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn match_o200k(t: &Scan, i: usize) -> usize {
    let Some((c0, n0)) = t.at(i) else { return i };
    let f0 = t.flags(c0);
    let suffix = |end: usize| t.contraction(end, true).unwrap_or(end);
    // Where the letter part may start: after the optional leading char when c0 can be it
    // (tried first, the `?` being greedy), then at c0 itself when c0 could also begin the
    // letter part (only a mark is both outside \p{L}\p{N} and inside the letter classes).
    let optional_prefix = c0 != '\r' && c0 != '\n' && f0 & (LETTER | NUMBER) == 0;
    let starts = if optional_prefix {
        [Some(i + n0), (f0 & (UPPERISH | LOWERISH) != 0).then_some(i)]
    } else {
        [Some(i), None]
    };
    // Alternative 1: prefix? upper* lower+ contraction?
    for start in starts.into_iter().flatten() {
        let upper_end = t.run(start, UPPERISH);
        if t.is(upper_end, LOWERISH) {
            return suffix(t.run(upper_end, LOWERISH));
        }
        // upper* gives back chars until one in the lower class follows: the last char of
        // the run that is in both classes (Lm, Lo, M) ends the match.
        let mut last_lower = None;
        let mut j = start;
        while j < upper_end {
            let Some((c, n)) = t.at(j) else { break };
            if t.flags(c) & LOWERISH != 0 {
                last_lower = Some(j + n);
            }
            j += n;
        }
        if let Some(end) = last_lower {
            return suffix(end);
        }
    }
    // Alternative 2: prefix? upper+ lower* contraction?
    for start in starts.into_iter().flatten() {
        if t.is(start, UPPERISH) {
            let upper_end = t.run(start, UPPERISH);
            return suffix(t.run(upper_end, LOWERISH));
        }
    }
    // \p{N}{1,3}
    if f0 & NUMBER != 0 {
        let mut end = i + n0;
        for _ in 0..2 {
            match t.at(end) {
                Some((c, n)) if t.flags(c) & NUMBER != 0 => end += n,
                _ => break,
            }
        }
        return end;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n/]*
    let start = if c0 == ' ' { i + 1 } else { i };
    if t.is_other(start) {
        let end = t.run_while(start, |_, f| f & (SPACE | LETTER | NUMBER) == 0);
        return t.run_while(end, |c, _| c == '\r' || c == '\n' || c == '/');
    }
    t.whitespace(i, true)
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn match_gpt2(t: &Scan, i: usize) -> usize {
    let Some((c0, _)) = t.at(i) else { return i };
    if c0 == '\'' {
        if let Some(end) = t.contraction(i, false) {
            return end;
        }
    }
    let start = if c0 == ' ' { i + 1 } else { i };
    if t.is(start, LETTER) {
        return t.run(start, LETTER);
    }
    if t.is(start, NUMBER) {
        return t.run(start, NUMBER);
    }
    if t.is_other(start) {
        return t.run_while(start, |_, f| f & (SPACE | LETTER | NUMBER) == 0);
    }
    t.whitespace(i, false)
}

/// llama.cpp's "default" BPE split: each of these regexes in turn splits every current
/// piece into its matches and the gaps between them (both kept as pieces):
/// `[\p{P}\$\+<=>\^~\|]+`, GPT-2's regex, `\p{N}+`, `[0-9][0-9][0-9]`.
fn split_llama_default<'t>(table: &[u8], text: &'t str, mut piece: impl FnMut(&'t str)) {
    let scan = Scan { s: text, table };
    let punct = |c: char, f: u8| {
        f & PUNCT != 0 || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
    };
    // Stage 1: runs of punctuation, and the gaps between them.
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let end = scan.run_while(i, punct);
        let end = if end > i {
            end
        } else {
            scan.run_while(i, |c, f| !punct(c, f))
        };
        pieces.push((i, end));
        i = end;
    }
    // Stage 2: GPT-2's regex within each piece (its matches tile a piece: the gaps the
    // regex leaves are single white-space chars, which its `\s+` alternative matches).
    let mut next = Vec::with_capacity(pieces.len());
    for &(start, end) in &pieces {
        let sub = Scan {
            s: &text[start..end],
            table,
        };
        let mut j = 0;
        while j < sub.s.len() {
            let e = match_gpt2(&sub, j);
            next.push((start + j, start + e));
            j = e;
        }
    }
    // Stages 3 and 4: runs of \p{N}, then groups of three ASCII digits, within each piece.
    for &(start, end) in &next {
        let sub = Scan {
            s: &text[start..end],
            table,
        };
        let mut j = 0;
        while j < sub.s.len() {
            let e = sub.run(j, NUMBER);
            let e = if e > j {
                e
            } else {
                sub.run_while(j, |_, f| f & NUMBER == 0)
            };
            split_digit_triples(&text[start + j..start + e], &mut piece);
            j = e;
        }
    }
}

/// Splits `s` at every leftmost non-overlapping match of `[0-9][0-9][0-9]` (matches and
/// gaps are pieces).
fn split_digit_triples<'t>(s: &'t str, piece: &mut impl FnMut(&'t str)) {
    let b = s.as_bytes();
    let mut gap_start = 0;
    let mut i = 0;
    while i < b.len() {
        if i + 3 <= b.len() && b[i..i + 3].iter().all(u8::is_ascii_digit) {
            if gap_start < i {
                piece(&s[gap_start..i]);
            }
            piece(&s[i..i + 3]);
            i += 3;
            gap_start = i;
        } else {
            i += 1;
        }
    }
    if gap_start < b.len() {
        piece(&s[gap_start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CL100K: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const O200K: &str = concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const GPT2: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// Characters that exercise every branch: letters of each case class, marks, digits and
    /// other numbers, every kind of white space, CR/LF, apostrophes and contraction letters,
    /// `ſ`, `/`, punctuation and symbols, emoji, ZWJ.
    const ALPHABET: &[char] = &[
        'a', 'b', 's', 'S', 't', 'T', 'r', 'R', 'e', 'E', 'v', 'V', 'm', 'M', 'l', 'L', 'd', 'D',
        'ſ', 'K', 'ǅ', 'ʰ', '日', 'ק', 'я', 'Я', 'é', '\u{301}', '\u{94d}', 'क', '0', '7', '½',
        '²', '٣', ' ', ' ', ' ', '\t', '\n', '\r', '\u{a0}', '\u{3000}', '\u{85}', '\u{2028}',
        '\u{b}', '\'', '\'', '’', '/', '!', '.', ',', '(', '$', '+', '<', '|', '-', '😀',
        '\u{200d}', '\u{200b}', '\u{feff}', '\u{0}', '_',
    ];

    fn regex_split(re: &fancy_regex::Regex, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut last = 0;
        for m in re.find_iter(text) {
            let m = m.expect("regex ran");
            assert_eq!(m.start(), last, "the regex left a gap in {text:?}");
            out.push(m.as_str().to_string());
            last = m.end();
        }
        assert_eq!(last, text.len());
        out
    }

    fn ours(pre: PreTokenizer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pre.split(text, |p| out.push(p.to_string()));
        out
    }

    /// Deterministic random strings over ALPHABET (xorshift).
    fn random_texts(n: usize, seed: u64) -> Vec<String> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let len = (next() % 24) as usize;
                (0..len)
                    .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    fn check_against_regex(pre: PreTokenizer, pattern: &str) {
        let re = fancy_regex::Regex::new(pattern).unwrap();
        let mut fixed: Vec<String> = [
            "Hello, world! I'm here; you're there. WE'LL see'S",
            "  leading\n\n\ntrailing   ",
            "a\r\n\r\nb \t \n c",
            "12345678 1½²3",
            "'ſ 'S 'll 'LL 'Ll 're'",
            "HelloWorld ABCdef abcDEF ǅungla /path//to\n/x",
            "नमस्ते दुनिया क्\u{94d}ष",
            "e\u{301}\u{301}x \u{301}a \u{301}\u{301}",
            "😀\u{200d}😀 !!!\n\n///",
            "",
            " ",
            "\u{3000}\u{3000}x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        fixed.extend(random_texts(20_000, 0x5EED ^ pattern.len() as u64));
        for text in &fixed {
            assert_eq!(
                ours(pre, text),
                regex_split(&re, text),
                "{pre:?} on {text:?}"
            );
        }
    }

    #[test]
    fn cl100k_equals_the_regex() {
        check_against_regex(PreTokenizer::Cl100k, CL100K);
    }

    #[test]
    fn o200k_equals_the_regex() {
        check_against_regex(PreTokenizer::O200k, O200K);
    }

    #[test]
    fn gpt2_equals_the_regex() {
        check_against_regex(PreTokenizer::Gpt2, GPT2);
    }

    #[test]
    fn llama_default_stages() {
        let split = |s: &str| ours(PreTokenizer::LlamaDefault, s);
        assert_eq!(split("Hello, world!!"), ["Hello", ",", " world", "!!"]);
        assert_eq!(split("x 1234567"), ["x", " ", "123", "456", "7"]);
        assert_eq!(split("a+=b"), ["a", "+=", "b"]);
        for text in random_texts(2000, 99) {
            assert_eq!(split(&text).concat(), text, "pieces must tile the text");
        }
    }
}
