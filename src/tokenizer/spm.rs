//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`, Phi-3): merges by score.
//!
//! The text (spaces already escaped as `▁`) starts as one symbol per character. The
//! adjacent pair whose concatenation is a token with the highest score is merged, the
//! leftmost one on a tie, until no adjacent pair forms a token. A final symbol that is
//! not a token (a character outside the vocabulary) is written as its UTF-8 bytes through
//! the `<0xXX>` byte tokens ("byte fallback"), or as the unknown token if the vocabulary
//! has no byte tokens. This is SentencePiece's BPE as llama.cpp runs it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

pub(crate) struct Spm {
    /// Token text -> id for the tokens text may produce (not control or unknown tokens:
    /// those come only from special-token parsing).
    pieces: FxHashMap<Box<str>, u32>,
    /// Score of each token, indexed by id.
    scores: Vec<f32>,
    /// The `<0xXX>` token of each byte, if the vocabulary has it.
    byte_token: [Option<u32>; 256],
    unk: Option<u32>,
    /// No token has `▁` right after another character (true of Llama/Phi-3
    /// vocabularies, checked at load): then no merge can join a word to the `▁` that
    /// starts the next one, and the text is encoded word by word with the same result,
    /// in time linear in the number of words instead of one heap over the whole text.
    pub(crate) split_before_space: bool,
}

/// A candidate merge of the symbols at `left` and `right`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text; a candidate whose symbols have since grown is stale.
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The heap's maximum is the highest score, then the leftmost position.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// One symbol: a byte range of the text, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

impl Spm {
    pub(crate) fn new(
        pieces: FxHashMap<Box<str>, u32>,
        scores: Vec<f32>,
        byte_token: [Option<u32>; 256],
        unk: Option<u32>,
    ) -> Spm {
        let split_before_space = !pieces.keys().any(|p| {
            let mut prev = None;
            p.chars().any(|c| {
                let joins = c == '▁' && prev.is_some_and(|p| p != '▁');
                prev = Some(c);
                joins
            })
        });
        Spm {
            pieces,
            scores,
            byte_token,
            unk,
            split_before_space,
        }
    }

    /// Appends the tokens of `text` (spaces already replaced by `▁`).
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols = Vec::new();
        let mut queue = BinaryHeap::new();
        if !self.split_before_space {
            self.encode_chunk(text, out, &mut symbols, &mut queue);
            return;
        }
        // Cut before each `▁` that follows another character.
        let mut start = 0;
        let mut prev = None;
        for (i, c) in text.char_indices() {
            if c == '▁' && prev.is_some_and(|p| p != '▁') {
                self.encode_chunk(&text[start..i], out, &mut symbols, &mut queue);
                start = i;
            }
            prev = Some(c);
        }
        self.encode_chunk(&text[start..], out, &mut symbols, &mut queue);
    }

    /// The whole text as one chunk (to test that cutting it word by word changes nothing).
    #[cfg(test)]
    pub(crate) fn encode_unsplit(&self, text: &str, out: &mut Vec<u32>) {
        self.encode_chunk(text, out, &mut Vec::new(), &mut BinaryHeap::new());
    }

    fn encode_chunk(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        symbols: &mut Vec<Symbol>,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        if text.is_empty() {
            return;
        }
        symbols.clear();
        queue.clear();
        for (start, c) in text.char_indices() {
            let i = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.wrapping_sub(1),
                next: i + 1,
            });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = NONE;
        }
        symbols[0].prev = NONE;

        for i in 1..symbols.len() {
            self.try_add(text, symbols, i - 1, i, queue);
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
                continue;
            }
            // merge the right symbol into the left one
            symbols[bigram.left].len += r.len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = r.next;
            if r.next != NONE {
                symbols[r.next].prev = bigram.left;
            }
            self.try_add(text, symbols, l.prev, bigram.left, queue);
            self.try_add(text, symbols, bigram.left, r.next, queue);
        }

        let mut i = 0;
        while i != NONE {
            let sym = symbols[i];
            let piece = &text[sym.start..sym.start + sym.len];
            match self.pieces.get(piece) {
                Some(&id) => out.push(id),
                None => self.byte_fallback(piece, out),
            }
            i = sym.next;
        }
    }

    fn try_add(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (symbols[left], symbols[right]);
        let merged = &text[l.start..r.start + r.len];
        if let Some(&id) = self.pieces.get(merged) {
            let score = self.scores.get(id as usize).copied().unwrap_or(f32::MIN);
            queue.push(Bigram {
                score,
                left,
                right,
                size: merged.len(),
            });
        }
    }

    fn byte_fallback(&self, piece: &str, out: &mut Vec<u32>) {
        for &b in piece.as_bytes() {
            if let Some(id) = self.byte_token[b as usize].or(self.unk) {
                out.push(id);
            }
        }
    }
}
