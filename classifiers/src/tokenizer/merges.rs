//! A `tokenizer.json`'s BPE model, applied by thresher as the `tokenizers`
//! crate applies it, id for id, but without the crate's per-token `String`s,
//! offsets and locked cache.
//!
//! The crate's rule (`Word::merge_all`): a pre-token starts as one symbol per
//! character (its token, or its bytes' `<0xXX>` tokens under byte fallback);
//! then, repeatedly, of the neighbouring pairs that the merge list holds, the
//! one with the lowest merge rank is merged, the leftmost on a tie, into the
//! token the list names. This differs from tiktoken's rule ([`super::bpe`]),
//! which merges any pair whose joined bytes are a token, ranked by that
//! token's id: the list may lack a pair whose join is a token.
//!
//! Only the plain model is taken: no dropout (random merges), no word prefix
//! or suffix. A character with neither a token nor byte fallback (the crate's
//! unknown token, which it may fuse with neighbours) is left to the crate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use tokenizers::models::bpe::BPE;

use super::bpe::TokenIds;
use super::piece_cache;

/// How a pre-token's text becomes the first symbols.
enum Symbols {
    /// Byte-level vocabularies (GPT-2, Llama 3, Qwen): the pre-token's raw
    /// bytes, each the token of the character that stands for it.
    Bytes([u32; 256]),
    /// Vocabularies of characters (SentencePiece conversions: Llama 2,
    /// Mistral): each character's token, or with byte fallback its UTF-8
    /// bytes' `<0xXX>` tokens.
    Chars {
        single: FxHashMap<char, u32>,
        byte_fallback: Option<[u32; 256]>,
    },
}

pub(crate) struct MergeListBpe {
    /// (left id, right id), packed → (merge rank, merged id).
    pairs: FxHashMap<u64, (u32, u32)>,
    symbols: Symbols,
    /// `ignore_merges`: a pre-token that is a token whole is that token.
    /// Keyed by the input's bytes (raw bytes for a byte-level vocabulary).
    whole: Option<TokenIds>,
    /// This model's tag in the per-thread cache of pre-token ids.
    cache_owner: u64,
}

#[inline]
fn pair_key(left: u32, right: u32) -> u64 {
    (left as u64) << 32 | right as u64
}

/// No pair: sorts after every real rank.
const NO_MERGE: (u32, u32) = (u32::MAX, u32::MAX);

/// Symbol runs up to this long are merged by scanning; longer ones with a heap.
const SCAN_UP_TO: usize = 64;

/// The tokens that are one character, by character.
pub(crate) fn single_chars<'t>(tokens: impl Iterator<Item = (&'t str, u32)>) -> FxHashMap<char, u32> {
    tokens
        .filter_map(|(token, id)| {
            let mut chars = token.chars();
            let c = chars.next()?;
            chars.next().is_none().then_some((c, id))
        })
        .collect()
}

/// The ids of the 256 byte-fallback tokens `<0x00>` … `<0xFF>`; `None` when
/// one is missing.
pub(crate) fn byte_fallback_ids(id_of: impl Fn(&str) -> Option<u32>) -> Option<[u32; 256]> {
    let mut ids = [0u32; 256];
    for (byte, id) in ids.iter_mut().enumerate() {
        *id = id_of(&format!("<0x{byte:02X}>"))?;
    }
    Some(ids)
}

/// Whether the model has dropout: its merges are random, so a piece's ids
/// depend on more than the piece.
pub(crate) fn merges_at_random(bpe: &BPE) -> bool {
    bpe.dropout.is_some_and(|d| d > 0.0)
}

/// A plain BPE: merges not at random, no word prefix or suffix.
pub(crate) fn is_plain(bpe: &BPE) -> bool {
    !merges_at_random(bpe) && bpe.continuing_subword_prefix.is_none() && bpe.end_of_word_suffix.is_none()
}

impl MergeListBpe {
    /// The model as the crate loaded it, and its vocabulary. `byte_chars`:
    /// for a byte-level vocabulary, the character that stands for each
    /// byte; `None` reads characters as they are. `None` when the model is
    /// not plain, or a byte-level vocabulary lacks a byte.
    pub(crate) fn of(bpe: &BPE, vocab: &HashMap<String, u32>, byte_chars: Option<&[char; 256]>) -> Option<Self> {
        if !is_plain(bpe) {
            return None;
        }
        // The crate keeps its merge map private; its serialization lists
        // the pairs by rank (as [left, right]), and only their order
        // matters. Read into a struct, the vocabulary is skipped unparsed.
        #[derive(serde::Deserialize)]
        struct Serialized {
            merges: Vec<(String, String)>,
        }
        let Serialized { merges } = serde_json::from_slice(&serde_json::to_vec(bpe).ok()?).ok()?;
        let mut pairs = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        for (rank, (left, right)) in merges.iter().enumerate() {
            let merged = vocab.get(&format!("{left}{right}"))?;
            pairs.insert(
                pair_key(*vocab.get(left.as_str())?, *vocab.get(right.as_str())?),
                (rank as u32, *merged),
            );
        }
        let byte_of: FxHashMap<char, u8> = byte_chars
            .iter()
            .flat_map(|chars| chars.iter().enumerate().map(|(byte, &c)| (c, byte as u8)))
            .collect();
        // The bytes a token stands for, in the input's terms.
        let input_bytes = |token: &str| -> Option<Vec<u8>> {
            match byte_chars {
                Some(_) => token.chars().map(|c| byte_of.get(&c).copied()).collect(),
                None => Some(token.as_bytes().to_vec()),
            }
        };
        let symbols = match byte_chars {
            Some(chars) => {
                let mut ids = [0u32; 256];
                for (byte, c) in chars.iter().enumerate() {
                    ids[byte] = *vocab.get(c.to_string().as_str())?;
                }
                Symbols::Bytes(ids)
            }
            None => Symbols::Chars {
                single: single_chars(vocab.iter().map(|(token, &id)| (token.as_str(), id))),
                // All 256 `<0xXX>` tokens, or none used: the crate falls to
                // the unknown token when one is missing, which is left to it.
                byte_fallback: bpe
                    .byte_fallback
                    .then(|| byte_fallback_ids(|token| vocab.get(token).copied()))
                    .flatten(),
            },
        };
        let whole = bpe
            .ignore_merges
            .then(|| TokenIds::new(vocab.iter().filter_map(|(token, &id)| Some((input_bytes(token)?, id)))));
        Some(Self {
            pairs,
            symbols,
            whole,
            cache_owner: piece_cache::owner_id(),
        })
    }

    /// A vocabulary of characters with its merges given directly, as
    /// (left id, right id, rank, merged id): SentencePiece's BPE, where a
    /// pair's rank is its joined piece's score (pieces of equal score tie,
    /// and the leftmost pair goes first, as in SentencePiece).
    pub(crate) fn of_ranked_merges(
        merges: impl Iterator<Item = (u32, u32, u32, u32)>,
        single: FxHashMap<char, u32>,
        byte_fallback: Option<[u32; 256]>,
    ) -> Self {
        Self {
            pairs: merges
                .map(|(left, right, rank, merged)| (pair_key(left, right), (rank, merged)))
                .collect(),
            symbols: Symbols::Chars { single, byte_fallback },
            whole: None,
            cache_owner: piece_cache::owner_id(),
        }
    }

    /// Appends the ids of one pre-token, given as the input's bytes (raw
    /// bytes for a byte-level vocabulary, else UTF-8 text). False, with
    /// nothing appended, when a character has no token: the crate's unknown
    /// token handles it.
    pub(crate) fn encode(&self, piece: &[u8], out: &mut Vec<u32>) -> bool {
        if piece.is_empty() {
            return true;
        }
        if let Some(id) = self.whole.as_ref().and_then(|whole| whole.get(piece)) {
            out.push(id);
            return true;
        }
        piece_cache::encode_cached(self.cache_owner, piece, out, |out| {
            let start = out.len();
            let known = self.first_symbols(piece, out);
            if known {
                self.merge(out, start);
            }
            known
        })
    }

    /// Appends the symbols before any merge; false when one is unknown
    /// (then `out` is as it was).
    fn first_symbols(&self, piece: &[u8], out: &mut Vec<u32>) -> bool {
        match &self.symbols {
            Symbols::Bytes(ids) => {
                out.extend(piece.iter().map(|&b| ids[b as usize]));
                true
            }
            Symbols::Chars { single, byte_fallback } => {
                let start = out.len();
                // Callers pass text for a vocabulary of characters.
                let text = std::str::from_utf8(piece).expect("a pre-token of text");
                for c in text.chars() {
                    match (single.get(&c), byte_fallback) {
                        (Some(&id), _) => out.push(id),
                        (None, Some(bytes)) => {
                            out.extend(c.encode_utf8(&mut [0; 4]).bytes().map(|b| bytes[b as usize]))
                        }
                        (None, None) => {
                            out.truncate(start);
                            return false;
                        }
                    }
                }
                true
            }
        }
    }

    #[inline]
    fn pair(&self, left: u32, right: u32) -> (u32, u32) {
        self.pairs.get(&pair_key(left, right)).copied().unwrap_or(NO_MERGE)
    }

    /// Merges `symbols[start..]` in place.
    fn merge(&self, symbols: &mut Vec<u32>, start: usize) {
        if symbols.len() - start <= SCAN_UP_TO {
            self.merge_by_scan(symbols, start)
        } else {
            let merged = self.merge_by_heap(&symbols[start..]);
            symbols.truncate(start);
            symbols.extend(merged);
        }
    }

    /// Quadratic, over a small array: fastest for short pre-tokens.
    fn merge_by_scan(&self, symbols: &mut Vec<u32>, start: usize) {
        // pairs[i]: the merge of symbol i with symbol i + 1.
        let mut pairs: Vec<(u32, u32)> = symbols[start..].windows(2).map(|w| self.pair(w[0], w[1])).collect();
        loop {
            // The lowest rank; ties go to the leftmost pair (strict `<`).
            let (mut i, mut rank, mut merged) = (0, u32::MAX, 0);
            for (at, &(pair_rank, pair_merged)) in pairs.iter().enumerate() {
                if pair_rank < rank {
                    (i, rank, merged) = (at, pair_rank, pair_merged);
                }
            }
            if rank == u32::MAX {
                break;
            }
            let at = start + i;
            symbols[at] = merged;
            symbols.remove(at + 1);
            pairs.remove(i);
            if i < pairs.len() {
                pairs[i] = self.pair(merged, symbols[at + 1]);
            }
            if i > 0 {
                pairs[i - 1] = self.pair(symbols[at - 1], merged);
            }
        }
    }

    /// The crate's own way, a heap and a linked list: O(n log n), so that a
    /// pathological pre-token (a megabyte of one letter) cannot stall a
    /// worker.
    fn merge_by_heap(&self, first: &[u32]) -> Vec<u32> {
        let n = first.len();
        let mut symbol = first.to_vec();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        // (rank, left position, merged id), lowest first. An entry is stale
        // when its pair has changed since; as in the crate, a pair is the
        // same when it still merges into the same id (symbols only grow, so
        // a changed pair always names a longer token).
        let mut heap = BinaryHeap::new();
        for i in 0..n - 1 {
            let (rank, merged) = self.pair(symbol[i], symbol[i + 1]);
            if rank != u32::MAX {
                heap.push(Reverse((rank, i, merged)));
            }
        }
        while let Some(Reverse((_, left, merged))) = heap.pop() {
            let right = next[left];
            if !alive[left] || right >= n || self.pair(symbol[left], symbol[right]).1 != merged {
                continue;
            }
            symbol[left] = merged;
            alive[right] = false;
            next[left] = next[right];
            if next[left] < n {
                prev[next[left]] = left;
            }
            if prev[left] != usize::MAX {
                let (rank, merged) = self.pair(symbol[prev[left]], symbol[left]);
                if rank != u32::MAX {
                    heap.push(Reverse((rank, prev[left], merged)));
                }
            }
            if next[left] < n {
                let (rank, merged) = self.pair(symbol[left], symbol[next[left]]);
                if rank != u32::MAX {
                    heap.push(Reverse((rank, left, merged)));
                }
            }
        }
        let mut merged = Vec::new();
        let mut i = 0;
        while i < n {
            merged.push(symbol[i]);
            i = next[i];
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A character vocabulary whose merge list ranks a pair below the pair
    /// whose join is the lower id, lacks a pair whose join is a token
    /// ("a" + "bc" is not listed though "abc" is reached via "ab" + "c"),
    /// and repeats a letter for long runs.
    fn toy() -> BPE {
        let tokens = ["a", "b", "c", "d", "ab", "bc", "abc", "aa", "aaaa", "cd", "bcd"];
        let vocab: [(String, u32); 11] = std::array::from_fn(|i| (tokens[i].to_string(), i as u32));
        let merges = [
            ("b", "c"),
            ("a", "b"),
            ("ab", "c"),
            ("a", "a"),
            ("aa", "aa"),
            ("c", "d"),
            ("bc", "d"),
        ];
        BPE::builder()
            .vocab_and_merges(
                vocab,
                merges.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            )
            .build()
            .unwrap()
    }

    fn by_crate(bpe: &BPE, text: &str) -> Vec<u32> {
        tokenizers::Model::tokenize(bpe, text)
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect()
    }

    #[test]
    fn scan_heap_and_crate_agree() {
        let bpe = toy();
        let ours = MergeListBpe::of(&bpe, &bpe.get_vocab(), None).unwrap();
        let mut seed = 7u64;
        for len in [1, 2, 3, 5, 8, 40, 64, 65, 200, 1000] {
            for _ in 0..30 {
                let text: String = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        b"abcd"[(seed >> 60) as usize % 4] as char
                    })
                    .collect();
                let expected = by_crate(&bpe, &text);
                let mut scanned: Vec<u32> = Vec::new();
                assert!(ours.first_symbols(text.as_bytes(), &mut scanned));
                let heaped = ours.merge_by_heap(&scanned);
                ours.merge_by_scan(&mut scanned, 0);
                assert_eq!(scanned, expected, "scan: {text}");
                assert_eq!(heaped, expected, "heap: {text}");
                let mut encoded = Vec::new();
                assert!(ours.encode(text.as_bytes(), &mut encoded));
                assert_eq!(encoded, expected, "encode: {text}");
            }
        }
        // The list's order, not the ids: "bc" (rank 0) before "ab" (rank 1).
        assert_eq!(by_crate(&bpe, "abc"), [0, 5]);
        let mut out = Vec::new();
        ours.encode(b"abc", &mut out);
        assert_eq!(out, [0, 5]);
    }

    #[test]
    fn an_unknown_character_is_left_to_the_crate() {
        let bpe = toy();
        let ours = MergeListBpe::of(&bpe, &bpe.get_vocab(), None).unwrap();
        let mut out = vec![42];
        assert!(!ours.encode("abx".as_bytes(), &mut out));
        assert_eq!(out, [42]);
    }

    /// Random merge lists over a small alphabet, so that long pieces hit
    /// every case: pairs listed twice into one token ("ab"+"c" and
    /// "a"+"bc"), merge lists in random order (ranks unrelated to ids),
    /// `ignore_merges` on and off; scanning, the heap and the crate agree.
    #[test]
    fn random_merge_lists_agree_with_the_crate() {
        let mut seed = 11u64;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for round in 0..40 {
            let mut tokens: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
            let mut merges: Vec<(String, String)> = Vec::new();
            while merges.len() < 30 {
                let (left, right) = (tokens[next(tokens.len())].clone(), tokens[next(tokens.len())].clone());
                if left.len() + right.len() > 6 || merges.contains(&(left.clone(), right.clone())) {
                    continue;
                }
                let joined = format!("{left}{right}");
                if !tokens.contains(&joined) {
                    tokens.push(joined);
                }
                merges.push((left, right));
            }
            // Ranks in another order than the tokens were made in.
            for i in (1..merges.len()).rev() {
                merges.swap(i, next(i + 1));
            }
            let vocab: serde_json::Map<String, serde_json::Value> = tokens
                .iter()
                .enumerate()
                .map(|(id, t)| (t.clone(), serde_json::Value::from(id)))
                .collect();
            // The builder wants an ahash map; the model's JSON form does not.
            let json = serde_json::json!({
                "type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": round % 2 == 1,
            });
            let bpe: BPE = serde_json::from_str(&json.to_string()).unwrap();
            let ours = MergeListBpe::of(&bpe, &bpe.get_vocab(), None).unwrap();
            for len in [1, 2, 3, 7, 20, 64, 65, 300] {
                let text: String = (0..len).map(|_| b"abcd"[next(4)] as char).collect();
                let expected = by_crate(&bpe, &text);
                let mut encoded = Vec::new();
                assert!(ours.encode(text.as_bytes(), &mut encoded));
                assert_eq!(encoded, expected, "round {round}: {text}");
                let mut scanned = Vec::new();
                ours.first_symbols(text.as_bytes(), &mut scanned);
                let heaped = ours.merge_by_heap(&scanned);
                ours.merge_by_scan(&mut scanned, 0);
                assert_eq!((&scanned, &heaped), (&expected, &expected), "round {round}: {text}");
            }
        }
    }
}
