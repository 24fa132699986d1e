//! MinHash signatures and LSH bands: the per-document part of near-duplicate
//! detection (issue 6). The `minhash_dedup` stage that buckets the bands,
//! pairs candidates and clusters them is built on this.
//!
//! - **Tokens**: maximal runs of letters and digits, lower-cased; every
//!   character of a script written without spaces (Han, Hiragana, Katakana,
//!   Hangul syllables are spaced and stay words; Thai, Lao, Khmer, Myanmar,
//!   Tibetan) is a token of its own, so those scripts get character n-grams.
//! - **Shingles**: every window of `ngram` tokens (FineWeb: 5), hashed with
//!   xxh3 (64 bit). A document with fewer tokens is one shingle.
//! - **Signature**: `bands × rows` minimums (FineWeb: 14 × 8 = 112) of
//!   `a_i·x + b_i mod 2^64` over the shingle hashes `x`, with odd `a_i` and
//!   `b_i` drawn from `seed`. The shingle hash is already uniform, so one
//!   multiply-add per permutation suffices (multiply-shift hashing: the high
//!   bits, which decide the minimum, are universal); a test checks that
//!   estimated and true Jaccard agree within the sampling error of 112
//!   permutations on real text.
//! - **Bands**: xxh3 of each band's `rows` values; two documents are
//!   candidates when any band hash is equal. Probability for Jaccard `s`:
//!   `1 - (1 - s^rows)^bands` ([`MinHasher::match_probability`]).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Parameters of the signature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinHashParams {
    pub ngram: usize,
    pub bands: usize,
    pub rows: usize,
    pub seed: u64,
}

impl Default for MinHashParams {
    fn default() -> Self {
        Self {
            ngram: 5,
            bands: 14,
            rows: 8,
            seed: 1,
        }
    }
}

pub struct MinHasher {
    params: MinHashParams,
    a: Vec<u64>,
    b: Vec<u64>,
}

const NOT_ALPHANUMERIC: u32 = u32::MAX;
const LOWERS_TO_SEVERAL: u32 = u32::MAX - 1;

/// For every char of two UTF-8 bytes or fewer: its lower case when it is
/// alphanumeric, else [`NOT_ALPHANUMERIC`] (none of them is unspaced).
static TWO_BYTE_CHARS: std::sync::LazyLock<Vec<u32>> = std::sync::LazyLock::new(|| {
    (0..0x800u32)
        .map(|code| match char::from_u32(code) {
            Some(c) if c.is_alphanumeric() => {
                let mut lower = c.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(l), None) => l as u32,
                    _ => LOWERS_TO_SEVERAL,
                }
            }
            _ => NOT_ALPHANUMERIC,
        })
        .collect()
});

/// Scripts written without spaces between words.
fn unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF        // Thai, Lao
        | 0x0F00..=0x0FFF      // Tibetan
        | 0x1000..=0x109F      // Myanmar
        | 0x1780..=0x17FF      // Khmer
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0x20000..=0x2FA1F) // CJK extensions B-F, supplement
}

impl MinHasher {
    pub fn new(params: MinHashParams) -> Self {
        assert!(params.ngram > 0 && params.bands > 0 && params.rows > 0);
        let mut rng = crate::SplitMix64(params.seed);
        let n = params.bands * params.rows;
        let a = (0..n).map(|_| rng.next() | 1).collect();
        let b = (0..n).map(|_| rng.next()).collect();
        Self { params, a, b }
    }

    pub fn params(&self) -> MinHashParams {
        self.params
    }

    /// Hashes of the document's tokens (see the module docs).
    pub fn token_hashes(text: &str) -> Vec<u64> {
        let mut out = Vec::with_capacity(text.len() / 5);
        // The current word, lower-cased, as UTF-8.
        let mut word: Vec<u8> = Vec::with_capacity(64);
        let flush = |word: &mut Vec<u8>, out: &mut Vec<u64>| {
            if !word.is_empty() {
                out.push(xxh3_64(word));
                word.clear();
            }
        };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            // ASCII is most of the web's bytes: no char decoding for it.
            if b < 0x80 {
                if b.is_ascii_alphanumeric() {
                    word.push(b.to_ascii_lowercase());
                } else {
                    flush(&mut word, &mut out);
                }
                i += 1;
                continue;
            }
            let c = text[i..].chars().next().expect("a char starts here");
            i += c.len_utf8();
            // Latin, Greek, Cyrillic, Arabic, Hebrew...: a table instead of
            // Unicode's binary searches, which cost as much as all the ASCII.
            if let Some(&entry) = TWO_BYTE_CHARS.get(c as usize) {
                match entry {
                    NOT_ALPHANUMERIC => flush(&mut word, &mut out),
                    LOWERS_TO_SEVERAL => {
                        let mut buf = [0u8; 4];
                        for lower in c.to_lowercase() {
                            word.extend_from_slice(lower.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                    lower => {
                        let mut buf = [0u8; 4];
                        let lower = char::from_u32(lower).expect("the table holds chars");
                        word.extend_from_slice(lower.encode_utf8(&mut buf).as_bytes());
                    }
                }
                continue;
            }
            if unspaced(c) {
                flush(&mut word, &mut out);
                let mut buf = [0u8; 4];
                out.push(xxh3_64(c.encode_utf8(&mut buf).as_bytes()));
            } else if c.is_alphanumeric() {
                let mut buf = [0u8; 4];
                for lower in c.to_lowercase() {
                    word.extend_from_slice(lower.encode_utf8(&mut buf).as_bytes());
                }
            } else {
                flush(&mut word, &mut out);
            }
        }
        flush(&mut word, &mut out);
        out
    }

    /// Hashes of the document's shingles, as a set (sorted, distinct).
    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let mut shingles = Vec::new();
        self.for_each_shingle(&Self::token_hashes(text), |h| shingles.push(h));
        shingles.sort_unstable();
        shingles.dedup();
        shingles
    }

    /// Calls `f` with every shingle's hash, repeats included.
    fn for_each_shingle(&self, tokens: &[u64], mut f: impl FnMut(u64)) {
        let n = self.params.ngram;
        if tokens.is_empty() {
            return;
        }
        if tokens.len() <= n {
            f(hash_window(tokens));
            return;
        }
        for window in tokens.windows(n) {
            f(hash_window(window));
        }
    }

    /// The signature: `bands × rows` minimums; empty for a text without tokens.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let tokens = Self::token_hashes(text);
        if tokens.is_empty() {
            return Vec::new();
        }
        let mut mins = vec![u64::MAX; self.a.len()];
        // Repeated shingles are not removed first: a repeat cannot lower a
        // minimum, and sorting to find them costs more than the repeat.
        let mut batch = [0u64; SHINGLE_BATCH];
        let mut filled = 0;
        self.for_each_shingle(&tokens, |h| {
            batch[filled] = h;
            filled += 1;
            if filled == SHINGLE_BATCH {
                update_minimums(&mut mins, &self.a, &self.b, &batch);
                filled = 0;
            }
        });
        update_minimums(&mut mins, &self.a, &self.b, &batch[..filled]);
        mins
    }

    /// One hash per band of a signature.
    pub fn band_hashes(&self, signature: &[u64]) -> Vec<u64> {
        signature
            .chunks(self.params.rows)
            .enumerate()
            .map(|(band, rows)| {
                let mut bytes = Vec::with_capacity(rows.len() * 8);
                for r in rows {
                    bytes.extend_from_slice(&r.to_le_bytes());
                }
                xxh3_64_with_seed(&bytes, band as u64)
            })
            .collect()
    }

    /// Estimated Jaccard similarity: the share of equal minimums.
    pub fn estimated_jaccard(a: &[u64], b: &[u64]) -> f64 {
        if a.is_empty() || a.len() != b.len() {
            return 0.0;
        }
        a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
    }

    /// The chance that two documents of Jaccard similarity `s` share a band.
    pub fn match_probability(&self, s: f64) -> f64 {
        1.0 - (1.0 - s.powi(self.params.rows as i32)).powi(self.params.bands as i32)
    }

    /// The S-curve of the setting, for people choosing bands and rows.
    pub fn s_curve(&self) -> String {
        let mut out = format!(
            "{} bands x {} rows, {}-grams: P(candidate) by Jaccard similarity\n",
            self.params.bands, self.params.rows, self.params.ngram
        );
        for s in [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95] {
            out.push_str(&format!("  {s:.2}  {:.3}\n", self.match_probability(s)));
        }
        out
    }
}

/// Shingles handed to [`update_minimums`] at a time.
const SHINGLE_BATCH: usize = 64;

/// `mins[i] = min(mins[i], a[i]·x + b[i])` for every shingle `x`: most of a
/// signature's arithmetic. The loop over `i` vectorizes; with AVX-512 (a
/// 64-bit lane multiply) or AVX2 present at run time, the same code is
/// compiled for them, since the portable x86-64 baseline has neither.
fn update_minimums(mins: &mut [u64], a: &[u64], b: &[u64], shingles: &[u64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512dq") && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { update_minimums_avx512(mins, a, b, shingles) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { update_minimums_avx2(mins, a, b, shingles) };
        }
    }
    update_minimums_portable(mins, a, b, shingles)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn update_minimums_avx512(mins: &mut [u64], a: &[u64], b: &[u64], shingles: &[u64]) {
    update_minimums_portable(mins, a, b, shingles)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_minimums_avx2(mins: &mut [u64], a: &[u64], b: &[u64], shingles: &[u64]) {
    update_minimums_portable(mins, a, b, shingles)
}

#[inline(always)]
fn update_minimums_portable(mins: &mut [u64], a: &[u64], b: &[u64], shingles: &[u64]) {
    let n = mins.len().min(a.len()).min(b.len());
    let (mins, a, b) = (&mut mins[..n], &a[..n], &b[..n]);
    for &x in shingles {
        for i in 0..n {
            mins[i] = mins[i].min(a[i].wrapping_mul(x).wrapping_add(b[i]));
        }
    }
}

fn hash_window(tokens: &[u64]) -> u64 {
    let mut bytes = [0u8; 8 * 16];
    let n = tokens.len().min(16);
    for (i, t) in tokens[..n].iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&t.to_le_bytes());
    }
    xxh3_64(&bytes[..n * 8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn testdata(rel: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/testdata")
                .join(rel),
        )
        .unwrap()
    }

    #[test]
    fn tokens_split_words_and_unspaced_scripts() {
        assert_eq!(MinHasher::token_hashes("Hello, WORLD 42!").len(), 3);
        assert_eq!(MinHasher::token_hashes("Hello"), MinHasher::token_hashes("hello"));
        // Four Han characters: four tokens; Thai likewise.
        assert_eq!(MinHasher::token_hashes("我们的书").len(), 4);
        assert_eq!(MinHasher::token_hashes("ภาษาไทย").len(), 7);
        assert!(MinHasher::token_hashes(" ,.;").is_empty());
    }

    #[test]
    fn signature_is_the_minimum_over_the_shingle_set() {
        // The batched, vectorized minimums (and the ASCII fast path of the
        // tokenizer) against the definition, on text with non-ASCII words.
        let m = MinHasher::new(MinHashParams::default());
        let text = format!(
            "{} Ünïcode ŞEHİR Straße {}",
            testdata("langid/sentences/de.txt"),
            "x ".repeat(200)
        );
        let shingles = m.shingles(&text);
        assert!(shingles.len() > SHINGLE_BATCH * 3);
        let naive: Vec<u64> = (0..m.a.len())
            .map(|i| {
                shingles
                    .iter()
                    .map(|&x| m.a[i].wrapping_mul(x).wrapping_add(m.b[i]))
                    .min()
                    .unwrap()
            })
            .collect();
        assert_eq!(m.signature(&text), naive);
        assert_eq!(
            MinHasher::token_hashes("Straße STRASSE"),
            MinHasher::token_hashes("straße strasse")
        );
    }

    #[test]
    fn s_curve_of_fineweb_setting() {
        let m = MinHasher::new(MinHashParams::default());
        // 1 - (1 - 0.75^8)^14 = 1 - 0.8999^14 = 0.772
        assert!((m.match_probability(0.75) - 0.772).abs() < 0.001, "{}", m.s_curve());
        assert!(m.match_probability(0.9) > 0.99);
        assert!(m.match_probability(0.5) < 0.06);
        assert!(m.s_curve().contains("14 bands x 8 rows"));
    }

    /// Jaccard of shingle sets, exactly.
    fn jaccard(m: &MinHasher, a: &str, b: &str) -> f64 {
        let (x, y): (HashSet<u64>, HashSet<u64>) =
            (m.shingles(a).into_iter().collect(), m.shingles(b).into_iter().collect());
        x.intersection(&y).count() as f64 / x.union(&y).count() as f64
    }

    #[test]
    fn estimates_agree_with_true_jaccard_on_real_text() {
        let m = MinHasher::new(MinHashParams::default());
        let mut words: Vec<String> = Vec::new();
        for lang in ["en", "de", "fr", "es"] {
            words.extend(
                testdata(&format!("langid/sentences/{lang}.txt"))
                    .split_whitespace()
                    .map(str::to_string),
            );
        }
        let mut errors = Vec::new();
        let mut state = 99u64;
        let mut rand = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % n
        };
        for doc in 0..60 {
            let start = doc * 150 % (words.len() - 400);
            let original: Vec<String> = words[start..start + 300].to_vec();
            // 0 to 30% of the words replaced.
            let mut edited = original.clone();
            for _ in 0..(doc % 7) * 15 {
                let i = rand(edited.len());
                edited[i] = words[rand(words.len())].clone();
            }
            let (a, b) = (original.join(" "), edited.join(" "));
            let truth = jaccard(&m, &a, &b);
            let estimate = MinHasher::estimated_jaccard(&m.signature(&a), &m.signature(&b));
            errors.push((estimate - truth).abs());
        }
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let worst = errors.iter().cloned().fold(0.0, f64::max);
        // One estimate's standard deviation is at most sqrt(0.25/112) = 0.047.
        println!("estimated vs true Jaccard: mean error {mean:.3}, worst {worst:.3}");
        assert!(mean < 0.04 && worst < 0.16, "mean error {mean:.3}, worst {worst:.3}");
    }

    #[test]
    fn copies_share_bands_and_unrelated_texts_do_not() {
        let m = MinHasher::new(MinHashParams::default());
        let text = testdata("langid/sentences/en.txt");
        let lines: Vec<&str> = text.lines().collect();
        let doc = lines[..20].join(" ");
        let other = lines[100..120].join(" ");
        let copy = format!("  {}  ", doc.to_uppercase());
        let bands = |t: &str| m.band_hashes(&m.signature(t));
        assert_eq!(bands(&doc), bands(&copy), "case and spacing are normalized away");
        let shared = bands(&doc).iter().zip(bands(&other)).filter(|(a, b)| **a == *b).count();
        assert_eq!(shared, 0);
        assert!(m.signature("").is_empty());
        assert_eq!(m.signature("one two").len(), 112);
    }
}
