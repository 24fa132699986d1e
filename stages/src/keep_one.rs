//! The resolve logic every "keep one document per key" stage shares
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

use crate::{Document, Error, Position, Result, ScanRecord, Verdict};

const HEADER: usize = 16 + 8 + 4 + 8;

/// The scan record of `doc` under `key` with `rank`, routed by the key.
pub fn scan_record(key: u128, rank: u64, doc: &Document, position: Position, partitions: u32) -> ScanRecord {
    let mut bytes = Vec::with_capacity(HEADER + doc.id.len());
    bytes.extend_from_slice(&key.to_le_bytes());
    bytes.extend_from_slice(&rank.to_le_bytes());
    bytes.extend_from_slice(&position.shard.to_le_bytes());
    bytes.extend_from_slice(&position.record.to_le_bytes());
    bytes.extend_from_slice(doc.id.as_bytes());
    ScanRecord {
        partition: (key as u64 % partitions as u64) as u32,
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

#[cfg(test)]
pub(crate) mod testing {
    use crate::{Decision, Document, GlobalStage, Position, StageStats};

    /// Runs a global stage's three steps in memory over shards of documents.
    pub fn run(stage: &dyn GlobalStage, shards: Vec<Vec<Document>>) -> Vec<Vec<Decision>> {
        run_docs(stage, shards)
            .into_iter()
            .map(|shard| shard.into_iter().map(|(decision, _)| decision).collect())
            .collect()
    }

    /// [`run`], with each document as `apply` left it.
    pub fn run_docs(stage: &dyn GlobalStage, shards: Vec<Vec<Document>>) -> Vec<Vec<(Decision, Document)>> {
        let mut partitions: Vec<Vec<Vec<u8>>> = vec![Vec::new(); stage.partitions() as usize];
        for (s, shard) in shards.iter().enumerate() {
            for (r, doc) in shard.iter().enumerate() {
                let position = Position {
                    shard: s as u32,
                    record: r as u64,
                };
                stage.scan(doc, position, &mut |rec| {
                    partitions[rec.partition as usize].push(rec.bytes)
                });
            }
        }
        let mut verdicts: std::collections::HashMap<Position, Vec<Vec<u8>>> = Default::default();
        let mut all = Vec::new();
        for (p, recs) in partitions.into_iter().enumerate() {
            let mut resolved = stage.resolve(p as u32, recs).unwrap();
            // As the runner does: each partition's verdicts in position order.
            resolved.sort_by_key(|v| v.position);
            all.extend(resolved);
        }
        if stage.clusters() {
            all = stage.cluster(all).unwrap();
            all.sort_by_key(|v| v.position);
        }
        for v in all {
            verdicts.entry(v.position).or_default().push(v.bytes);
        }
        shards
            .into_iter()
            .enumerate()
            .map(|(s, shard)| {
                shard
                    .into_iter()
                    .enumerate()
                    .map(|(r, mut doc)| {
                        let v = verdicts.get(&Position {
                            shard: s as u32,
                            record: r as u64,
                        });
                        let decision = stage.apply(
                            &mut doc,
                            v.map(Vec::as_slice).unwrap_or(&[]),
                            &mut StageStats::default(),
                        );
                        (decision, doc)
                    })
                    .collect()
            })
            .collect()
    }
}
