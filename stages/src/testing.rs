//! Test harness of global stages: their steps run in memory, in the order
//! and with the verdict grouping the runner uses.

use crate::{Decision, Document, GlobalStage, Position, StageStats};

/// Runs a global stage's steps (scan, resolve, cluster when it has one,
/// apply) in memory over shards of documents.
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
                partitions[(rec.route % stage.partitions() as u64) as usize].push(rec.bytes)
            });
        }
    }
    let mut verdicts: std::collections::HashMap<Position, Vec<Vec<u8>>> = Default::default();
    let mut all = Vec::new();
    let mut batches = Vec::new();
    for (p, recs) in partitions.into_iter().enumerate() {
        let mut resolved = stage.resolve(p as u32, recs).unwrap();
        // As the runner does: each partition's verdicts in position order.
        resolved.sort_by_key(|v| v.position);
        batches.push(resolved.clone());
        all.extend(resolved);
    }
    if stage.clusters() {
        let mut batches = batches.into_iter();
        all = stage.cluster(&mut || Ok(batches.next())).unwrap();
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
