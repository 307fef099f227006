//! Byte-level BPE (GPT-2 style): merges by rank over the bytes of one pre-token.
//!
//! A piece starts as one token per byte; the adjacent pair with the lowest merge rank is
//! merged, the leftmost one on a tie, until no adjacent pair has a merge. This is the rule
//! of llama.cpp, HF `tokenizers` and (with ranks as merge order) tiktoken. Merges are kept
//! by token id: `(left, right) -> (rank, merged)`, checked at load so that every merge
//! names tokens of the vocabulary.
//!
//! Two shortcuts, both exact:
//! - a piece that is a whole token whose own bytes BPE-encode to itself (checked for every
//!   token at load) is that token: BPE on it would give the same;
//! - with `ignore_merges` (Llama 3) a piece that is a token is that token, by definition.
//!
//! Short pieces (almost all) use an O(n²) scan over a small vector; long ones (a run of
//! 5000 letters is one piece) a heap over a linked list, O(n log n). Both pick the same
//! merge at each step; a unit test compares them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// No token (a byte the vocabulary lacks).
pub(crate) const NO_TOKEN: u32 = u32::MAX;

/// Pieces up to this many bytes use the quadratic scan.
const SHORT_PIECE: usize = 48;

pub(crate) struct Bpe {
    /// The token of each single byte, or `NO_TOKEN`.
    pub byte_token: [u32; 256],
    /// `(left << 32) | right` -> `(rank << 32) | merged`: one u64 each, one probe per pair.
    merges: FxHashMap<u64, u64>,
    /// The bytes of each ordinary token -> its id, for the whole-piece shortcut.
    whole: FxHashMap<Box<[u8]>, u32>,
    /// Tokens `t` with `BPE(bytes(t)) == [t]`, indexed by id.
    self_encoding: Vec<bool>,
    ignore_merges: bool,
}

/// A candidate merge: (rank, left position, left id, right id, merged id).
type Candidate = (u32, usize, u32, u32, u32);

#[inline(always)]
fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

impl Bpe {
    /// `merges` holds `(left, right, merged)` in rank order; `whole` maps the bytes of the
    /// ordinary tokens to their ids. Duplicate pairs keep their first (lowest) rank.
    pub(crate) fn new(
        n_vocab: usize,
        byte_token: [u32; 256],
        merges: &[(u32, u32, u32)],
        whole: FxHashMap<Box<[u8]>, u32>,
        ignore_merges: bool,
    ) -> Bpe {
        let mut map = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        for (rank, &(left, right, merged)) in merges.iter().enumerate() {
            map.entry(pair_key(left, right))
                .or_insert(((rank as u64) << 32) | merged as u64);
        }
        let mut bpe = Bpe {
            byte_token,
            merges: map,
            whole,
            self_encoding: vec![false; n_vocab],
            ignore_merges,
        };
        if !ignore_merges {
            let mut out = Vec::new();
            let mut self_encoding = vec![false; n_vocab];
            for (bytes, &id) in &bpe.whole {
                out.clear();
                bpe.merge(bytes, &mut out);
                if let (Some(slot), [only]) = (self_encoding.get_mut(id as usize), out.as_slice()) {
                    *slot = *only == id;
                }
            }
            bpe.self_encoding = self_encoding;
        }
        bpe
    }

    #[inline(always)]
    fn lookup(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        let v = *self.merges.get(&pair_key(left, right))?;
        Some(((v >> 32) as u32, v as u32))
    }

    /// Appends the tokens of one pre-token piece. Bytes the vocabulary lacks come out as
    /// `NO_TOKEN`, for the caller to replace.
    #[inline]
    pub(crate) fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if let [b] = piece {
            out.push(self.byte_token[*b as usize]);
            return;
        }
        if let Some(&id) = self.whole.get(piece) {
            if self.ignore_merges || self.self_encoding.get(id as usize) == Some(&true) {
                out.push(id);
                return;
            }
        }
        self.merge(piece, out);
    }

    /// Runs the merges on `piece`.
    fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= SHORT_PIECE {
            self.merge_short(piece, out);
        } else {
            self.merge_long(piece, out);
        }
    }

    /// O(n²): rescan the ranks of all adjacent pairs after each merge.
    fn merge_short(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut ids: Vec<u32> = piece.iter().map(|&b| self.byte_token[b as usize]).collect();
        // ranks[i]: (rank, merged) of pair (ids[i], ids[i + 1])
        let mut ranks: Vec<Option<(u32, u32)>> =
            ids.windows(2).map(|w| self.lookup(w[0], w[1])).collect();
        loop {
            let mut best: Option<(usize, u32, u32)> = None;
            for (i, r) in ranks.iter().enumerate() {
                if let Some((rank, merged)) = *r {
                    if best.is_none_or(|(_, b, _)| rank < b) {
                        best = Some((i, rank, merged));
                    }
                }
            }
            let Some((i, _, merged)) = best else { break };
            ids[i] = merged;
            ids.remove(i + 1);
            ranks.remove(i);
            if i > 0 {
                ranks[i - 1] = self.lookup(ids[i - 1], ids[i]);
            }
            if i < ranks.len() {
                ranks[i] = self.lookup(ids[i], ids[i + 1]);
            }
        }
        out.extend_from_slice(&ids);
    }

    /// O(n log n): a min-heap of candidate merges over a doubly linked list of symbols.
    /// A candidate is stale (skipped) when either side has changed since it was pushed.
    fn merge_long(&self, piece: &[u8], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        let n = piece.len();
        let mut id: Vec<u32> = piece.iter().map(|&b| self.byte_token[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        prev[0] = NONE;
        let mut alive = vec![true; n];
        // Smallest rank, then leftmost position, first.
        let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, left: usize, lid: u32, rid: u32| {
            if let Some((rank, merged)) = self.lookup(lid, rid) {
                heap.push(Reverse((rank, left, lid, rid, merged)));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, i, id[i], id[i + 1]);
        }
        while let Some(Reverse((_, left, lid, rid, merged))) = heap.pop() {
            let right = next[left];
            if !alive[left] || right == NONE || id[left] != lid || id[right] != rid {
                continue;
            }
            id[left] = merged;
            alive[right] = false;
            next[left] = next[right];
            if next[right] != NONE {
                prev[next[right]] = left;
            }
            if prev[left] != NONE {
                push(&mut heap, prev[left], id[prev[left]], merged);
            }
            if next[left] != NONE {
                push(&mut heap, left, merged, id[next[left]]);
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(id[i]);
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: bytes a, b, c and merges building longer runs.
    fn toy() -> Bpe {
        let mut byte_token = [NO_TOKEN; 256];
        byte_token[b'a' as usize] = 0;
        byte_token[b'b' as usize] = 1;
        byte_token[b'c' as usize] = 2;
        // 3 = aa, 4 = ab, 5 = aab, 6 = bc, 7 = aaaa, 8 = abc
        let merges = [
            (0, 0, 3),
            (0, 1, 4),
            (3, 1, 5),
            (1, 2, 6),
            (3, 3, 7),
            (4, 2, 8),
        ];
        Bpe::new(9, byte_token, &merges, FxHashMap::default(), false)
    }

    #[test]
    fn short_and_long_merges_agree() {
        let bpe = toy();
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 80) as usize + 2;
            let piece: Vec<u8> = (0..len)
                .map(|k| b"aabcx"[((x >> (k % 60)) % 5) as usize])
                .collect();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            bpe.merge_short(&piece, &mut a);
            bpe.merge_long(&piece, &mut b);
            assert_eq!(a, b, "{:?}", String::from_utf8_lossy(&piece));
        }
    }

    #[test]
    fn lowest_rank_then_leftmost() {
        let bpe = toy();
        let mut out = Vec::new();
        bpe.merge_short(b"aaa", &mut out);
        assert_eq!(out, [3, 0], "leftmost 'aa' first");
        out.clear();
        bpe.merge_short(b"aabc", &mut out);
        // aa (rank 0) first, then aab (rank 2) beats bc (rank 3)
        assert_eq!(out, [5, 2]);
        out.clear();
        bpe.merge_short(b"abc", &mut out);
        assert_eq!(out, [8]);
    }
}
