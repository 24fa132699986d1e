//! `exact_dedup`: keeps the first copy of every text, globally across shards.
//!
//! Texts are compared by xxh3-128 of their normalized form (whitespace
//! collapsed by default). "First" is by [`Position`]: input shard order, then
//! record order, so the kept copy never depends on the task count. The stage
//! runs as three steps: `scan` hashes every document, `resolve` groups equal
//! hashes per partition and picks the first, `apply` drops the others into the
//! rejected sidecar with the id of the copy that was kept.
//!
//! With 128-bit hashes the chance of any false match among 10^12 documents is
//! about 10^-15, so no second comparison of the texts is made.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::{keep_one, Decision, Document, Error, GlobalStage, Position, Result, ScanRecord, StageStats, Verdict};

/// Configuration of `exact_dedup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExactDedupConfig {
    /// Treat every run of whitespace as one space and ignore leading and
    /// trailing whitespace before hashing.
    pub collapse_whitespace: bool,
    /// Compare texts case-insensitively (Unicode lower case).
    pub lowercase: bool,
    /// Ignore punctuation and symbols (keep letters, digits and whitespace).
    pub ignore_punctuation: bool,
    /// Partitions of the `resolve` step: units of parallel work. A partition
    /// larger than `[run] resolve_memory_mb` is resolved in passes.
    pub partitions: u32,
}

impl Default for ExactDedupConfig {
    fn default() -> Self {
        Self {
            collapse_whitespace: true,
            lowercase: false,
            ignore_punctuation: false,
            partitions: 16,
        }
    }
}

pub struct ExactDedup {
    config: ExactDedupConfig,
}

impl ExactDedup {
    pub fn new(config: ExactDedupConfig) -> Result<Self> {
        if config.partitions == 0 {
            return Err(Error::Config {
                kind: "exact_dedup",
                message: "partitions must be at least 1".into(),
            });
        }
        Ok(Self { config })
    }

    /// xxh3-128 of the normalized text.
    pub fn text_hash(&self, text: &str) -> u128 {
        let cfg = &self.config;
        let mut hasher = Xxh3::new();
        if !cfg.collapse_whitespace && !cfg.lowercase && !cfg.ignore_punctuation {
            hasher.update(text.as_bytes());
            return hasher.digest128();
        }
        let mut buf = String::new();
        let mut feed = |piece: &str, buf: &mut String| {
            if !cfg.lowercase && !cfg.ignore_punctuation {
                hasher.update(piece.as_bytes());
                return;
            }
            buf.clear();
            for c in piece.chars() {
                if cfg.ignore_punctuation && !(c.is_alphanumeric() || c.is_whitespace()) {
                    continue;
                }
                if cfg.lowercase {
                    buf.extend(c.to_lowercase());
                } else {
                    buf.push(c);
                }
            }
            hasher.update(buf.as_bytes());
        };
        if cfg.collapse_whitespace {
            let mut words = text.split_whitespace();
            if let Some(first) = words.next() {
                feed(first, &mut buf);
                for word in words {
                    // One space between words; every normalization keeps whitespace.
                    feed(" ", &mut buf);
                    feed(word, &mut buf);
                }
            }
        } else {
            feed(text, &mut buf);
        }
        hasher.digest128()
    }
}

impl GlobalStage for ExactDedup {
    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    fn scan(&self, doc: &Document, position: Position, emit: &mut dyn FnMut(ScanRecord)) {
        // Rank 0 for all: the first copy in input order is kept.
        emit(keep_one::scan_record(self.text_hash(&doc.text), 0, doc, position))
    }

    fn resolve(&self, _partition: u32, records: Vec<Vec<u8>>) -> Result<Vec<Verdict>> {
        keep_one::resolve(records)
    }

    fn apply(&self, _doc: &mut Document, verdicts: &[Vec<u8>], _stats: &mut StageStats) -> Decision {
        keep_one::decision(verdicts, "duplicate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(stage: &ExactDedup, shards: &[&[&str]]) -> Vec<Vec<Decision>> {
        let docs = shards
            .iter()
            .enumerate()
            .map(|(s, texts)| {
                texts
                    .iter()
                    .enumerate()
                    .map(|(r, t)| Document::new(format!("s{s}r{r}"), *t))
                    .collect()
            })
            .collect();
        crate::testing::run(stage, docs)
    }

    #[test]
    fn keeps_first_copy_across_shards() {
        let stage = ExactDedup::new(ExactDedupConfig::default()).unwrap();
        let out = run(&stage, &[&["b", "a  x", "c"], &["a x", "d", " a\tx\n"]]);
        assert_eq!(out[0], vec![Decision::Keep, Decision::Keep, Decision::Keep]);
        let dup = Decision::Drop {
            reason: "duplicate",
            detail: json!({"kept_id": "s0r1"}),
        };
        assert_eq!(out[1], vec![dup.clone(), Decision::Keep, dup]);
    }

    #[test]
    fn normalization_is_configurable() {
        let exact = ExactDedup::new(ExactDedupConfig {
            collapse_whitespace: false,
            ..Default::default()
        })
        .unwrap();
        assert_ne!(exact.text_hash("a  b"), exact.text_hash("a b"));
        let loose = ExactDedup::new(ExactDedupConfig {
            lowercase: true,
            ignore_punctuation: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(loose.text_hash("Hello, World!"), loose.text_hash("hello world"));
        assert_ne!(loose.text_hash("hello world"), loose.text_hash("helloworld"));
        let default = ExactDedup::new(ExactDedupConfig::default()).unwrap();
        assert_ne!(default.text_hash("Hello"), default.text_hash("hello"));
    }

    #[test]
    fn corrupt_scan_record_is_an_error() {
        let stage = ExactDedup::new(ExactDedupConfig::default()).unwrap();
        assert!(stage.resolve(0, vec![vec![1, 2, 3]]).is_err());
    }
}
