//! The resolve and apply logic every "keep one document per key" stage shares
//! (`exact_dedup`, `url_dedup`): scan emits one keyed record per document,
//! resolve groups records by key and keeps one per group, apply drops the
//! others with the kept document's id.
//!
//! Record layout (little-endian): key (16 bytes, a 128-bit hash) | rank (8) |
//! input shard (4) | record (8) | id (the rest). In each group the record
//! with the lowest (rank, shard, record) is kept, so a stage expresses its
//! rule through the rank (0 for "first seen"; `u64::MAX - length` for
//! "longest") and ties always go to the first in input order, whatever the
//! number of tasks.

use serde_json::json;

use crate::{Decision, Document, Error, Position, Result, ScanRecord, Verdict};

const HEADER: usize = 16 + 8 + 4 + 8;

/// The scan record of `doc` under `key` with `rank`, routed by the key.
pub fn scan_record(key: u128, rank: u64, doc: &Document, position: Position) -> ScanRecord {
    let mut bytes = Vec::with_capacity(HEADER + doc.id.len());
    bytes.extend_from_slice(&key.to_le_bytes());
    bytes.extend_from_slice(&rank.to_le_bytes());
    bytes.extend_from_slice(&position.shard.to_le_bytes());
    bytes.extend_from_slice(&position.record.to_le_bytes());
    bytes.extend_from_slice(doc.id.as_bytes());
    ScanRecord {
        route: key as u64,
        bytes,
    }
}

/// Keeps the lowest (rank, position) of every key; the verdict of each other
/// document is the kept document's id.
pub fn resolve(records: Vec<Vec<u8>>) -> Result<Vec<Verdict>> {
    let mut keyed = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        if r.len() < HEADER {
            return Err(Error::CorruptRecord {
                step: "scan",
                message: format!("record {i} has {} bytes, fewer than {HEADER}", r.len()),
            });
        }
        let key = u128::from_le_bytes(r[0..16].try_into().unwrap());
        let rank = u64::from_le_bytes(r[16..24].try_into().unwrap());
        let shard = u32::from_le_bytes(r[24..28].try_into().unwrap());
        let record = u64::from_le_bytes(r[28..36].try_into().unwrap());
        keyed.push((key, rank, Position { shard, record }, i));
    }
    keyed.sort_unstable();
    let mut verdicts = Vec::new();
    for group in keyed.chunk_by(|a, b| a.0 == b.0) {
        let kept_id = &records[group[0].3][HEADER..];
        verdicts.extend(group[1..].iter().map(|&(_, _, position, _)| Verdict {
            position,
            bytes: kept_id.to_vec(),
        }));
    }
    Ok(verdicts)
}

/// What apply decides from [`resolve`]'s verdict: keep, or drop with
/// `reason` and the kept document's id.
pub fn decision(verdicts: &[Vec<u8>], reason: &'static str) -> Decision {
    match verdicts.first() {
        None => Decision::Keep,
        Some(kept_id) => Decision::Drop {
            reason,
            detail: json!({ "kept_id": String::from_utf8_lossy(kept_id) }),
        },
    }
}
