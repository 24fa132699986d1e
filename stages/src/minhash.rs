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
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut Vec<u64>| {
            if !word.is_empty() {
                out.push(xxh3_64(word.as_bytes()));
                word.clear();
            }
        };
        for c in text.chars() {
            if unspaced(c) {
                flush(&mut word, &mut out);
                let mut buf = [0u8; 4];
                out.push(xxh3_64(c.encode_utf8(&mut buf).as_bytes()));
            } else if c.is_alphanumeric() {
                if c.is_ascii() {
                    word.push(c.to_ascii_lowercase());
                } else {
                    word.extend(c.to_lowercase());
                }
            } else {
                flush(&mut word, &mut out);
            }
        }
        flush(&mut word, &mut out);
        out
    }

    /// Hashes of the document's shingles.
    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let tokens = Self::token_hashes(text);
        let n = self.params.ngram;
        if tokens.is_empty() {
            return Vec::new();
        }
        if tokens.len() <= n {
            return vec![hash_window(&tokens)];
        }
        let mut shingles: Vec<u64> = tokens.windows(n).map(hash_window).collect();
        // A set: repeats of a shingle change nothing and cost time.
        shingles.sort_unstable();
        shingles.dedup();
        shingles
    }

    /// The signature: `bands × rows` minimums; empty for a text without tokens.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let shingles = self.shingles(text);
        if shingles.is_empty() {
            return Vec::new();
        }
        let mut mins = vec![u64::MAX; self.a.len()];
        for &x in &shingles {
            for ((m, &a), &b) in mins.iter_mut().zip(&self.a).zip(&self.b) {
                let h = a.wrapping_mul(x).wrapping_add(b);
                if h < *m {
                    *m = h;
                }
            }
        }
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
