//! `line_dedup`: removes lines repeated across many documents, as Llama 3
//! did ("lines that appeared more than 6 times in each bucket of 30M
//! documents") and CCNet before it: navigation menus, cookie notices,
//! copyright footers, share buttons.
//!
//! Lines are compared normalized, CCNet's way: lower-cased, digits made `0`,
//! punctuation and symbols removed, whitespace collapsed; a line that
//! normalizes to nothing is never counted. Documents are grouped into buckets
//! of `bucket_shards` input shards (by input order, so buckets never depend
//! on the task count). A line occurring more than `max_repeats` times in its
//! bucket is removed from every document it occurs in. A document left with
//! fewer than `min_chars` characters of text goes to the rejected sidecar as
//! `line_dedup_too_short`.
//!
//! Steps: `scan` emits one record per counted line, routed by the line's
//! hash; `resolve` counts per (bucket, hash) in its partition and names the
//! lines to remove; `apply` removes them. Memory of a resolve unit: about 40
//! bytes per line occurrence of its partition.

use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use crate::{Decision, Document, Error, GlobalStage, Position, Result, ScanRecord, StageStats, Verdict};

/// Configuration of `line_dedup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineDedupConfig {
    /// A line seen more often than this in its bucket is removed everywhere.
    pub max_repeats: u32,
    /// Input shards per bucket; 0 puts every document in one bucket.
    pub bucket_shards: u32,
    /// Documents with less text than this after removal are rejected.
    pub min_chars: usize,
    /// Partitions of the `resolve` step.
    pub partitions: u32,
}

impl Default for LineDedupConfig {
    fn default() -> Self {
        Self {
            max_repeats: 6,
            bucket_shards: 0,
            min_chars: 1,
            partitions: 16,
        }
    }
}

pub struct LineDedup {
    config: LineDedupConfig,
}

/// hash (8) | bucket (4) | shard (4) | record (8) | line (4)
const RECORD: usize = 8 + 4 + 4 + 8 + 4;

impl LineDedup {
    pub fn new(config: LineDedupConfig) -> Result<Self> {
        let invalid = |message: &str| Error::Config {
            kind: "line_dedup",
            message: message.into(),
        };
        if config.partitions == 0 {
            return Err(invalid("partitions must be at least 1"));
        }
        if config.max_repeats == 0 {
            return Err(invalid("max_repeats must be at least 1 (a line is always seen once)"));
        }
        Ok(Self { config })
    }

    /// CCNet's line normalization; `None` when nothing is left to compare.
    pub fn normalize(line: &str) -> Option<String> {
        let mut out = String::with_capacity(line.len());
        let mut space = false;
        for c in line.chars() {
            if c.is_whitespace() {
                space = !out.is_empty();
            } else if c.is_numeric() {
                if space {
                    out.push(' ');
                    space = false;
                }
                out.push('0');
            } else if c.is_alphabetic() {
                if space {
                    out.push(' ');
                    space = false;
                }
                out.extend(c.to_lowercase());
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn bucket(&self, shard: u32) -> u32 {
        match self.config.bucket_shards {
            0 => 0,
            n => shard / n,
        }
    }
}

impl GlobalStage for LineDedup {
    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    fn scan(&self, doc: &Document, position: Position, emit: &mut dyn FnMut(ScanRecord)) {
        let bucket = self.bucket(position.shard);
        for (index, line) in doc.text.split('\n').enumerate() {
            let Some(normal) = Self::normalize(line) else {
                continue;
            };
            let hash = xxh3_64(normal.as_bytes());
            let mut bytes = Vec::with_capacity(RECORD);
            bytes.extend_from_slice(&hash.to_le_bytes());
            bytes.extend_from_slice(&bucket.to_le_bytes());
            bytes.extend_from_slice(&position.shard.to_le_bytes());
            bytes.extend_from_slice(&position.record.to_le_bytes());
            bytes.extend_from_slice(&(index as u32).to_le_bytes());
            emit(ScanRecord { route: hash, bytes });
        }
    }

    fn resolve(&self, _partition: u32, records: Vec<Vec<u8>>) -> Result<Vec<Verdict>> {
        let mut lines = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if r.len() != RECORD {
                return Err(Error::CorruptRecord {
                    step: "scan",
                    message: format!("record {i} has {} bytes, not {RECORD}", r.len()),
                });
            }
            let hash = u64::from_le_bytes(r[0..8].try_into().unwrap());
            let bucket = u32::from_le_bytes(r[8..12].try_into().unwrap());
            let shard = u32::from_le_bytes(r[12..16].try_into().unwrap());
            let record = u64::from_le_bytes(r[16..24].try_into().unwrap());
            let line = u32::from_le_bytes(r[24..28].try_into().unwrap());
            lines.push((bucket, hash, Position { shard, record }, line));
        }
        drop(records);
        lines.sort_unstable();
        let mut verdicts = Vec::new();
        for group in lines.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            if group.len() > self.config.max_repeats as usize {
                verdicts.extend(group.iter().map(|&(_, _, position, line)| Verdict {
                    position,
                    bytes: line.to_le_bytes().to_vec(),
                }));
            }
        }
        Ok(verdicts)
    }

    fn apply(&self, doc: &mut Document, verdicts: &[Vec<u8>], stats: &mut StageStats) -> Decision {
        if verdicts.is_empty() {
            return Decision::Keep;
        }
        let mut remove: Vec<u32> = verdicts
            .iter()
            .filter_map(|v| v.as_slice().try_into().ok().map(u32::from_le_bytes))
            .collect();
        remove.sort_unstable();
        remove.dedup();
        let before = doc.text.len();
        let kept: Vec<&str> = doc
            .text
            .split('\n')
            .enumerate()
            .filter(|(i, _)| remove.binary_search(&(*i as u32)).is_err())
            .map(|(_, line)| line)
            .collect();
        let text = kept.join("\n");
        stats.add("line_dedup", "lines_removed", remove.len() as u64);
        stats.add("line_dedup", "bytes_removed", (before - text.len()) as u64);
        stats.add("line_dedup", "documents_changed", 1);
        let remaining = text.trim().chars().count();
        if remaining < self.config.min_chars {
            return Decision::Drop {
                reason: "line_dedup_too_short",
                detail: json!({ "lines_removed": remove.len(), "remaining_chars": remaining }),
            };
        }
        doc.text = text;
        Decision::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, run_docs};

    #[test]
    fn normalization_is_ccnets() {
        assert_eq!(
            LineDedup::normalize("  Copyright © 2024, ACME Inc.  All rights reserved. "),
            Some("copyright 0000 acme inc all rights reserved".into())
        );
        assert_eq!(LineDedup::normalize(" --- | *** "), None);
        assert_eq!(
            LineDedup::normalize("Page 12 of 40"),
            LineDedup::normalize("page 99 of 10")
        );
    }

    fn doc(id: &str, text: &str) -> Document {
        Document::new(id.to_string(), text)
    }

    #[test]
    fn repeated_lines_go_and_unique_lines_stay() {
        let stage = LineDedup::new(LineDedupConfig {
            max_repeats: 2,
            min_chars: 10,
            partitions: 3,
            ..Default::default()
        })
        .unwrap();
        let footer = "Share on Facebook";
        let shards = vec![
            vec![
                doc("a", &format!("Rivers carry silt to the sea.\n{footer}")),
                doc("b", &format!("{footer}\nBridges span the rivers.\nCOPYRIGHT 2021")),
            ],
            vec![
                doc("c", "share on facebook!\nOwls hunt at night.\nCopyright 1999"),
                doc("d", "short\nCopyright 2000"),
                doc("e", "Once only.\n\nTwice.\nTwice."),
            ],
        ];
        let out = run_docs(&stage, shards);
        let texts: Vec<Vec<&str>> = out
            .iter()
            .map(|shard| shard.iter().map(|(_, d)| d.text.as_str()).collect())
            .collect();
        // The footer (3 times, punctuation and case aside) and the copyright
        // line (3 times, digits aside) go; "Twice." (2 times) stays.
        assert_eq!(texts[0], ["Rivers carry silt to the sea.", "Bridges span the rivers."]);
        assert_eq!(texts[1][0], "Owls hunt at night.");
        assert_eq!(texts[1][2], "Once only.\n\nTwice.\nTwice.");
        assert_eq!(out[0][0].0, Decision::Keep);
        // "d" keeps only "short": under min_chars.
        assert_eq!(
            out[1][1].0,
            Decision::Drop {
                reason: "line_dedup_too_short",
                detail: json!({ "lines_removed": 1, "remaining_chars": 5 }),
            }
        );
        let mut stats = StageStats::default();
        let mut a = Document::new("a", "x\ny\nz");
        let verdicts = vec![1u32.to_le_bytes().to_vec(), 1u32.to_le_bytes().to_vec()];
        assert_eq!(
            stage.apply(&mut a, &verdicts, &mut stats),
            Decision::Drop {
                reason: "line_dedup_too_short",
                detail: json!({ "lines_removed": 1, "remaining_chars": 3 }),
            }
        );
        assert_eq!(stats.0["line_dedup"]["lines_removed"], 1);
    }

    #[test]
    fn buckets_count_apart() {
        let stage = LineDedup::new(LineDedupConfig {
            max_repeats: 1,
            bucket_shards: 1,
            min_chars: 0,
            partitions: 2,
        })
        .unwrap();
        // The line occurs once per shard: within each bucket it is unique.
        let shards = vec![vec![doc("a", "menu\nbody one")], vec![doc("b", "menu\nbody two")]];
        let out = run(&stage, shards);
        assert_eq!(out, vec![vec![Decision::Keep], vec![Decision::Keep]]);
    }
}
