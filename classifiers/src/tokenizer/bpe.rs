//! Exact byte-level BPE over tiktoken ranks, as tiktoken computes it: within a
//! pre-token, repeatedly merge the adjacent pair whose merged bytes have the
//! lowest rank, until no merged pair is a token.
//!
//! Llama 3's vocabulary has tokens that rank-ordered merging never produces
//! (" việc" is one token, but BPE reaches it as three), so encoders that assume
//! every token is reachable (e.g. the `bpe` crate, which checks this on load)
//! cannot be used; this one follows the merge rule itself.

use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use super::piece_cache;

pub struct BytePairEncoder {
    /// Token bytes → rank (= id).
    ranks: TokenIds,
    /// Bytes of each token, by id, for decoding.
    tokens: Vec<Box<[u8]>>,
    /// Owner tag of this encoder's entries in the per-thread cache.
    id: u64,
}

/// Token bytes → id, the lookup BPE makes most.
pub(crate) struct TokenIds {
    /// Tokens of up to 7 bytes (70% of Llama 3's), keyed by their bytes
    /// packed into a u64 with the length in the top byte: a lookup hashes and
    /// compares one integer instead of calling memcmp (9% of the time in a
    /// profile), and the table is half the size of a u128-keyed one, so more
    /// of it stays in cache.
    small: FxHashMap<u64, u32>,
    /// Tokens of 8 to 15 bytes, packed into a u128 likewise.
    mid: FxHashMap<u128, u32>,
    /// Longer tokens.
    long: FxHashMap<Box<[u8]>, u32>,
}

impl TokenIds {
    pub(crate) fn new<B: AsRef<[u8]>>(tokens: impl IntoIterator<Item = (B, u32)>) -> Self {
        let mut ids = Self {
            small: FxHashMap::default(),
            mid: FxHashMap::default(),
            long: FxHashMap::default(),
        };
        for (bytes, id) in tokens {
            let bytes = bytes.as_ref();
            match bytes.len() {
                0..=7 => ids.small.insert(key_small(bytes), id),
                8..=15 => ids.mid.insert(key_mid(bytes), id),
                _ => ids.long.insert(bytes.into(), id),
            };
        }
        ids
    }

    #[inline]
    pub(crate) fn get(&self, bytes: &[u8]) -> Option<u32> {
        match bytes.len() {
            0..=7 => self.small.get(&key_small(bytes)).copied(),
            8..=15 => self.mid.get(&key_mid(bytes)).copied(),
            _ => self.long.get(bytes).copied(),
        }
    }
}

/// Up to 7 bytes and their length in a u64, built from overlapping loads
/// (no memcpy): bytes that two loads both cover are the same bytes.
#[inline]
fn key_small(b: &[u8]) -> u64 {
    let n = b.len();
    debug_assert!(n <= 7);
    let packed = if n >= 4 {
        let lo = u32::from_le_bytes(b[..4].try_into().unwrap()) as u64;
        let hi = u32::from_le_bytes(b[n - 4..].try_into().unwrap()) as u64;
        lo | (hi << ((n - 4) * 8))
    } else if n > 0 {
        b[0] as u64 | (b[n / 2] as u64) << ((n / 2) * 8) | (b[n - 1] as u64) << ((n - 1) * 8)
    } else {
        0
    };
    packed | (n as u64) << 56
}

/// 8 to 15 bytes and their length in a u128, from two overlapping u64 loads.
#[inline]
fn key_mid(b: &[u8]) -> u128 {
    let n = b.len();
    debug_assert!((8..=15).contains(&n));
    let lo = u64::from_le_bytes(b[..8].try_into().unwrap());
    let hi = u64::from_le_bytes(b[n - 8..].try_into().unwrap());
    // The last n - 8 bytes, from the top of `hi`.
    let rest = if n == 8 { 0 } else { hi >> ((16 - n) * 8) };
    lo as u128 | (rest as u128) << 64 | (n as u128) << 120
}

impl BytePairEncoder {
    /// `tokens[rank]` holds the bytes of the token with that rank (= id).
    pub fn new(tokens: Vec<Vec<u8>>) -> Self {
        let tokens: Vec<Box<[u8]>> = tokens.into_iter().map(Vec::into_boxed_slice).collect();
        let ranks = TokenIds::new(tokens.iter().enumerate().map(|(rank, bytes)| (&bytes[..], rank as u32)));
        Self {
            ranks,
            tokens,
            id: piece_cache::owner_id(),
        }
    }

    /// The bytes of `ids` (ids outside the vocabulary are skipped).
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .filter_map(|&id| self.tokens.get(id as usize))
            .flat_map(|t| t.iter().copied())
            .collect()
    }

    #[inline]
    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        self.ranks.get(bytes)
    }

    /// Appends the ids of one pre-token.
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if let Some(rank) = self.rank(piece) {
            out.push(rank);
            return;
        }
        piece_cache::encode_cached(self.id, piece, out, |out| {
            self.merge(piece, out);
            true
        });
    }

    fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= 64 {
            self.merge_small(piece, out)
        } else {
            self.merge_large(piece, out)
        }
    }

    /// tiktoken's quadratic merge over a small array: fastest for short pieces.
    fn merge_small(&self, piece: &[u8], out: &mut Vec<u32>) {
        // parts[i] = (start of part i, rank of part i merged with part i+1)
        let mut parts: Vec<(usize, u32)> = Vec::with_capacity(piece.len() + 1);
        for i in 0..piece.len() - 1 {
            parts.push((i, self.rank(&piece[i..i + 2]).unwrap_or(u32::MAX)));
        }
        parts.push((piece.len() - 1, u32::MAX));
        parts.push((piece.len(), u32::MAX));
        let pair_rank = |parts: &[(usize, u32)], i: usize| -> u32 {
            if i + 3 < parts.len() {
                self.rank(&piece[parts[i].0..parts[i + 3].0]).unwrap_or(u32::MAX)
            } else {
                u32::MAX
            }
        };
        loop {
            // The lowest rank; ties go to the leftmost pair, as in tiktoken.
            let (mut min_rank, mut min_i) = (u32::MAX, 0);
            for (i, &(_, rank)) in parts[..parts.len() - 1].iter().enumerate() {
                if rank < min_rank {
                    min_rank = rank;
                    min_i = i;
                }
            }
            if min_rank == u32::MAX {
                break;
            }
            parts[min_i].1 = pair_rank(&parts, min_i);
            if min_i > 0 {
                parts[min_i - 1].1 = pair_rank(&parts, min_i - 1);
            }
            parts.remove(min_i + 1);
        }
        for w in parts.windows(2) {
            out.push(self.rank(&piece[w[0].0..w[1].0]).expect("every single byte is a token"));
        }
    }

    /// The same merges with a heap and a linked list: O(n log n), so that a
    /// pathological piece (a megabyte of one letter) cannot stall a worker.
    fn merge_large(&self, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len();
        // Part i covers piece[start[i]..start[next[i]]]; removed parts are dead.
        let start: Vec<usize> = (0..=n).collect();
        let mut next: Vec<usize> = (1..=n + 1).collect();
        let mut prev: Vec<usize> = (0..=n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n + 1];
        // Entries (rank, left part, right end) as a min-heap; stale ones are skipped.
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<std::cmp::Reverse<(u32, usize, usize)>>, left: usize, right_end: usize| {
            if let Some(rank) = self.rank(&piece[start[left]..start[right_end]]) {
                heap.push(std::cmp::Reverse((rank, left, right_end)));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, i, i + 2);
        }
        while let Some(std::cmp::Reverse((_, left, right_end))) = heap.pop() {
            let right = next[left];
            if !alive[left] || right >= n || next[right] != right_end {
                continue; // stale: one side was merged since
            }
            // Merge `right` into `left`.
            alive[right] = false;
            next[left] = right_end;
            prev[right_end] = left;
            if prev[left] != usize::MAX {
                push(&mut heap, prev[left], right_end);
            }
            if right_end < n {
                push(&mut heap, left, next[right_end]);
            }
        }
        let mut i = 0;
        while i < n {
            out.push(
                self.rank(&piece[start[i]..start[next[i]]])
                    .expect("merged parts are tokens"),
            );
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: all bytes, then merges by rank.
    fn toy() -> BytePairEncoder {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for t in ["ab", "bc", "abc", "aa", "aaaa", "cd"] {
            tokens.push(t.as_bytes().to_vec());
        }
        BytePairEncoder::new(tokens)
    }

    #[test]
    fn small_and_large_merges_agree() {
        let bpe = toy();
        let mut seed = 7u64;
        for len in [1, 2, 3, 5, 8, 40, 65, 200, 1000] {
            for _ in 0..20 {
                let piece: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        b"abcd"[(seed >> 60) as usize % 4]
                    })
                    .collect();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                bpe.merge_small(&piece, &mut a);
                bpe.merge_large(&piece, &mut b);
                assert_eq!(a, b, "{}", String::from_utf8_lossy(&piece));
                assert_eq!(bpe.decode(&a), piece);
            }
        }
    }

    #[test]
    fn packed_keys_are_injective() {
        let mut seen_small = std::collections::HashMap::new();
        let mut seen_mid = std::collections::HashMap::new();
        let mut seed = 1u64;
        for _ in 0..50_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = (seed >> 59) as usize % 16;
            let bytes: Vec<u8> = (0..n).map(|i| (seed >> (i * 4)) as u8 & 0x03).collect();
            if n <= 7 {
                if let Some(other) = seen_small.insert(key_small(&bytes), bytes.clone()) {
                    assert_eq!(other, bytes);
                }
            } else {
                if let Some(other) = seen_mid.insert(key_mid(&bytes), bytes.clone()) {
                    assert_eq!(other, bytes);
                }
            }
        }
        assert_ne!(key_small(b"a"), key_small(b"a\0"));
        assert_ne!(key_mid(b"abcdefgh"), key_mid(b"abcdefgh\0"));
    }

    #[test]
    fn two_vocabularies_on_one_thread_do_not_share_cached_pieces() {
        let a = toy();
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        tokens.push(b"bc".to_vec());
        let b = BytePairEncoder::new(tokens);
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        a.encode_piece(b"abcab", &mut out_a);
        b.encode_piece(b"abcab", &mut out_b);
        assert_eq!(out_b, vec![97, 256, 97, 98]);
        out_a.clear();
        a.encode_piece(b"abcab", &mut out_a);
        assert_eq!(out_a, vec![258, 256]);
    }

    #[test]
    fn lowest_rank_first() {
        let bpe = toy();
        let mut out = Vec::new();
        // "abc": ab (256) beats bc (257), then ab+c = abc (258).
        bpe.encode_piece(b"abc", &mut out);
        assert_eq!(out, vec![258]);
        out.clear();
        // "aaaaa": aa, aa, a → aaaa (260) + a
        bpe.encode_piece(b"aaaaa", &mut out);
        assert_eq!(out, vec![260, 97]);
    }
}
