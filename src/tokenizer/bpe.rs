//! Byte-level BPE (GPT-2 style): merges by rank over the bytes of one pre-token.
//!
//! A piece starts as one token per byte; the adjacent pair with the lowest merge rank is
//! merged, the leftmost one on a tie, until no adjacent pair has a merge. This is the rule
//! of llama.cpp, HF `tokenizers` and (with ranks as merge order) tiktoken. Merges are kept
//! by token id: `(left, right) -> (rank, merged)`, checked at load so that every merge
//! names tokens of the vocabulary.
//!
//! Two shortcuts, both exact:
//! - a piece that is a whole token whose own bytes BPE-encode to itself (checked once per
//!   token, the first time it is met) is that token: BPE on it would give the same;
//! - with `ignore_merges` (Llama 3) a piece that is a token is that token, by definition.
//!
//! Short pieces (almost all) use an O(n²) scan over a small vector; long ones (a run of
//! 5000 letters is one piece) a heap over a linked list, O(n log n). Both pick the same
//! merge at each step; a unit test compares them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use std::sync::atomic::{AtomicU8, Ordering};

use rustc_hash::FxHashMap;

/// No token (a byte the vocabulary lacks).
pub(crate) const NO_TOKEN: u32 = u32::MAX;

/// States of `Bpe::self_encoding`.
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// No merge for a pair (ranks are below the number of merges, checked at load).
const NO_RANK: u32 = u32::MAX;

/// Pieces up to this many bytes use the quadratic scan.
const SHORT_PIECE: usize = 48;

pub(crate) struct Bpe {
    /// The token of each single byte, or `NO_TOKEN`.
    pub byte_token: [u32; 256],
    /// `(left << 32) | right` -> `(rank << 32) | merged`: one u64 each, one probe per pair.
    merges: FxHashMap<u64, u64>,
    /// The bytes of each ordinary token -> its id, for the whole-piece shortcut.
    whole: FxHashMap<Box<[u8]>, u32>,
    /// Whether `BPE(bytes(t)) == [t]`, indexed by id: `UNKNOWN` until a piece equal to
    /// the token is first met, then `YES` or `NO`. Filled lazily (an atomic per token, so
    /// `&self` stays shareable across threads) because checking all 100k tokens up front
    /// would double the load time.
    self_encoding: Vec<AtomicU8>,
    ignore_merges: bool,
}

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
        Bpe {
            byte_token,
            merges: map,
            whole,
            self_encoding: (0..n_vocab).map(|_| AtomicU8::new(UNKNOWN)).collect(),
            ignore_merges,
        }
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
            if self.ignore_merges || self.encodes_to_itself(id, piece) {
                out.push(id);
                return;
            }
        }
        self.merge(piece, out);
    }

    /// Whether BPE on `bytes` (the token's own bytes) gives exactly `[id]`; computed once
    /// per token. Racing threads compute the same answer, so relaxed ordering suffices.
    fn encodes_to_itself(&self, id: u32, bytes: &[u8]) -> bool {
        let Some(state) = self.self_encoding.get(id as usize) else {
            return false;
        };
        match state.load(Ordering::Relaxed) {
            YES => true,
            NO => false,
            _ => {
                let mut out = Vec::new();
                self.merge(bytes, &mut out);
                let yes = out == [id];
                state.store(if yes { YES } else { NO }, Ordering::Relaxed);
                yes
            }
        }
    }

    /// Runs the merges on `piece`.
    fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= SHORT_PIECE {
            self.merge_short(piece, out);
        } else {
            self.merge_long(piece, out);
        }
    }

    /// O(n²) on the stack: rescan the ranks of all adjacent pairs after each merge.
    #[inline(never)]
    fn merge_short(&self, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len().min(SHORT_PIECE);
        // ids[..len]: the current symbols; ranks[i]: (rank, merged) of (ids[i], ids[i + 1]),
        // rank NO_RANK when the pair has no merge.
        let mut ids = [NO_TOKEN; SHORT_PIECE];
        let mut ranks = [(NO_RANK, NO_TOKEN); SHORT_PIECE];
        for (id, &b) in ids.iter_mut().zip(&piece[..n]) {
            *id = self.byte_token[b as usize];
        }
        let pair = |l: u32, r: u32| self.lookup(l, r).unwrap_or((NO_RANK, NO_TOKEN));
        for i in 0..n.saturating_sub(1) {
            ranks[i] = pair(ids[i], ids[i + 1]);
        }
        let mut len = n;
        while len > 1 {
            let mut best = NO_RANK;
            let mut at = 0;
            for (i, &(rank, _)) in ranks[..len - 1].iter().enumerate() {
                if rank < best {
                    best = rank;
                    at = i;
                }
            }
            if best == NO_RANK {
                break;
            }
            ids[at] = ranks[at].1;
            ids.copy_within(at + 2..len, at + 1);
            ranks.copy_within(at + 1..len - 1, at);
            len -= 1;
            if at > 0 {
                ranks[at - 1] = pair(ids[at - 1], ids[at]);
            }
            if at + 1 < len {
                ranks[at] = pair(ids[at], ids[at + 1]);
            }
        }
        out.extend_from_slice(&ids[..len]);
    }

    /// O(n log n): a min-heap of candidate merges over a doubly linked list of symbols.
    ///
    /// A candidate is `rank << 32 | left position` in one u64, so the heap orders by rank
    /// and then position (leftmost first) with one integer compare. It is checked when
    /// popped: the pair now at that position must still have that rank. A rank names one
    /// pair of tokens, so a pair that still has it is the same pair, and merging it is
    /// what a fresh candidate would do; anything else is stale and skipped.
    #[inline(never)]
    fn merge_long(&self, piece: &[u8], out: &mut Vec<u32>) {
        const NONE: u32 = u32::MAX;
        let n = piece.len();
        debug_assert!(n < NONE as usize);
        let mut id: Vec<u32> = piece.iter().map(|&b| self.byte_token[b as usize]).collect();
        // next[i] / prev[i]: neighbours in the list; next[i] == i marks a merged-away symbol.
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next[n - 1] = NONE;
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let candidate = |rank: u32, left: u32| Reverse(((rank as u64) << 32) | left as u64);
        let initial: Vec<Reverse<u64>> = (0..n - 1)
            .filter_map(|i| {
                let (rank, _) = self.lookup(id[i], id[i + 1])?;
                Some(candidate(rank, i as u32))
            })
            .collect();
        let mut heap = BinaryHeap::from(initial);
        while let Some(Reverse(key)) = heap.pop() {
            let (rank, left) = ((key >> 32) as u32, key as u32);
            let l = left as usize;
            let right = next[l];
            if right == NONE || right == left {
                continue;
            }
            let r = right as usize;
            let Some((now, merged)) = self.lookup(id[l], id[r]) else {
                continue;
            };
            if now != rank {
                continue;
            }
            id[l] = merged;
            next[l] = next[r];
            next[r] = right; // merged away
            if next[l] != NONE {
                prev[next[l] as usize] = left;
            }
            let p = prev[l];
            if p != NONE {
                if let Some((rank, _)) = self.lookup(id[p as usize], merged) {
                    heap.push(candidate(rank, p));
                }
            }
            if next[l] != NONE {
                if let Some((rank, _)) = self.lookup(merged, id[next[l] as usize]) {
                    heap.push(candidate(rank, left));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(id[i as usize]);
            i = next[i as usize];
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
            let len = (x % (SHORT_PIECE as u64 - 1)) as usize + 2;
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
