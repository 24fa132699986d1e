//! `minhash_dedup`: near-duplicate removal with MinHash LSH (Llama 3's
//! document-level deduplication; FineWeb's setting by default).
//!
//! Steps, each sharded and independent of the task count:
//! - `scan` (per input shard): the document's signature ([`crate::minhash`])
//!   and one record per band: (band, band hash, position, id), routed by the
//!   band hash.
//! - `resolve` (per partition): records sorted by (band, band hash,
//!   position); each group of equal band hashes becomes edges from its first
//!   document to every other one.
//! - `cluster` (one unit): union-find over every edge; each connected
//!   component keeps its first document in input order (smallest position),
//!   the others get the kept document's id. Memory: the edges and the
//!   documents in them, not the corpus.
//! - `apply` (per input shard): the others go to the rejected sidecar as
//!   `near_duplicate` with `kept_id`; manifest stats count the clusters
//!   (`minhash.clusters`) and removals.
//!
//! With `verify_threshold` set, band collisions whose estimated Jaccard (the
//! share of equal minimums of the two full signatures) is below it are not
//! edges: fewer false positives for more scan bytes. The signature travels
//! with each band record as the low 16 bits of every minimum (b-bit MinHash:
//! two unrelated minimums agree there by chance with probability 2^-16, which
//! the estimate subtracts), a quarter of the full signature's bytes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use crate::minhash::{MinHashParams, MinHasher};
use crate::{
    Decision, Document, Error, GlobalStage, Position, Result, ScanRecord, StageStats, Verdict, VerdictBatches,
};

/// Configuration of `minhash_dedup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinhashDedupConfig {
    /// Tokens per shingle (words; characters for unspaced scripts).
    pub ngram: usize,
    pub bands: usize,
    pub rows: usize,
    pub seed: u64,
    /// When set, candidates below this estimated Jaccard are not merged.
    pub verify_threshold: Option<f64>,
    /// Partitions of the `resolve` step.
    pub partitions: u32,
}

impl Default for MinhashDedupConfig {
    fn default() -> Self {
        let p = MinHashParams::default();
        Self {
            ngram: p.ngram,
            bands: p.bands,
            rows: p.rows,
            seed: p.seed,
            verify_threshold: None,
            partitions: 16,
        }
    }
}

pub struct MinhashDedup {
    config: MinhashDedupConfig,
    hasher: MinHasher,
}

/// band (4) | band hash (8) | shard (4) | record (8) | signature length (4),
/// then the signature's low 16 bits per minimum, then the id
const HEADER: usize = 4 + 8 + 4 + 8 + 4;

/// Verdict bytes: a kind byte, then the kept document's id.
const KEPT: u8 = 0;
const REMOVED: u8 = 1;

fn position_bytes(p: Position, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.shard.to_le_bytes());
    out.extend_from_slice(&p.record.to_le_bytes());
}

impl MinhashDedup {
    pub fn new(config: MinhashDedupConfig) -> Result<Self> {
        let invalid = |message: String| Error::Config {
            kind: "minhash_dedup",
            message,
        };
        if config.partitions == 0 || config.ngram == 0 || config.bands == 0 || config.rows == 0 {
            return Err(invalid("ngram, bands, rows and partitions must be at least 1".into()));
        }
        if let Some(t) = config.verify_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(invalid(format!("verify_threshold {t} is not between 0 and 1")));
            }
        }
        let hasher = MinHasher::new(MinHashParams {
            ngram: config.ngram,
            bands: config.bands,
            rows: config.rows,
            seed: config.seed,
        });
        Ok(Self { config, hasher })
    }

    /// The S-curve of this setting (printed by `thresher plan`'s users and the README).
    pub fn s_curve(&self) -> String {
        self.hasher.s_curve()
    }
}

struct Parsed<'a> {
    band: u32,
    hash: u64,
    position: Position,
    /// The signature's low 16 bits, when it travels with the record
    /// (verification).
    signature: Vec<u16>,
    id: &'a [u8],
}

fn parse(record: &[u8], i: usize) -> Result<Parsed<'_>> {
    let corrupt = |message: String| Error::CorruptRecord { step: "scan", message };
    if record.len() < HEADER {
        return Err(corrupt(format!(
            "record {i} has {} bytes, fewer than {HEADER}",
            record.len()
        )));
    }
    let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap());
    let signature_len = u32_at(24) as usize * 2;
    if record.len() < HEADER + signature_len {
        return Err(corrupt(format!("record {i} is shorter than its signature")));
    }
    Ok(Parsed {
        band: u32_at(0),
        hash: u64_at(4),
        position: Position {
            shard: u32_at(12),
            record: u64_at(16),
        },
        signature: record[HEADER..HEADER + signature_len]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        id: &record[HEADER + signature_len..],
    })
}

/// Estimated Jaccard from the low 16 bits of two signatures: equal minimums
/// always agree there, different ones with probability 2^-16, so the share of
/// agreeing values `m` estimates `J + (1 - J)·2^-16`.
fn estimated_jaccard_low16(a: &[u16], b: &[u16]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    let m = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
    let chance = 1.0 / 65536.0;
    ((m - chance) / (1.0 - chance)).max(0.0)
}

/// One edge of `resolve`, parsed.
struct Edge<'a> {
    earlier: Position,
    earlier_id: &'a [u8],
    /// With verification: the later document's id and both signatures.
    later_id: Option<&'a [u8]>,
    earlier_signature: Option<Vec<u16>>,
    later_signature: Option<Vec<u16>>,
}

fn parse_edge(bytes: &[u8], verified: bool) -> Result<Edge<'_>> {
    let corrupt = || Error::CorruptRecord {
        step: "resolve",
        message: "an edge shorter than its fields".into(),
    };
    if bytes.len() < 12 {
        return Err(corrupt());
    }
    let earlier = Position {
        shard: u32::from_le_bytes(bytes[0..4].try_into().unwrap()),
        record: u64::from_le_bytes(bytes[4..12].try_into().unwrap()),
    };
    if !verified {
        return Ok(Edge {
            earlier,
            earlier_id: &bytes[12..],
            later_id: None,
            earlier_signature: None,
            later_signature: None,
        });
    }
    let mut at = 12;
    let mut take = |n: usize| -> Result<&[u8]> {
        let slice = bytes.get(at..at + n).ok_or_else(corrupt)?;
        at += n;
        Ok(slice)
    };
    let mut signature = || -> Result<Vec<u16>> {
        let len = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
        Ok(take(2 * len)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    };
    let (earlier_signature, later_signature) = (signature()?, signature()?);
    let id_len = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
    let earlier_id = take(id_len)?;
    let later_id = &bytes[at..];
    Ok(Edge {
        earlier,
        earlier_id,
        later_id: Some(later_id),
        earlier_signature: Some(earlier_signature),
        later_signature: Some(later_signature),
    })
}

/// Union-find over documents with a near-duplicate; the root of a set is its
/// smallest position.
#[derive(Default)]
struct Components {
    index: HashMap<Position, u32>,
    positions: Vec<Position>,
    parent: Vec<u32>,
    /// Ids of documents that were the earlier end of an edge (with
    /// verification: of every document).
    ids: Vec<Option<Box<[u8]>>>,
    /// With verification: each document's 16-bit signature.
    signatures: Vec<Option<Box<[u16]>>>,
}

impl Components {
    fn node(&mut self, p: Position) -> Result<u32> {
        if let Some(&n) = self.index.get(&p) {
            return Ok(n);
        }
        let n = u32::try_from(self.positions.len()).map_err(|_| Error::CorruptRecord {
            step: "cluster",
            message: "more than 2^32 documents with near-duplicates".into(),
        })?;
        self.index.insert(p, n);
        self.positions.push(p);
        self.parent.push(n);
        self.ids.push(None);
        self.signatures.push(None);
        Ok(n)
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (find(&mut self.parent, a), find(&mut self.parent, b));
        if ra != rb {
            let (keep, join) = if self.positions[ra as usize] < self.positions[rb as usize] {
                (ra, rb)
            } else {
                (rb, ra)
            };
            self.parent[join as usize] = keep;
        }
    }
}

/// The root of `x`, halving the path on the way.
fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        parent[x as usize] = parent[parent[x as usize] as usize];
        x = parent[x as usize];
    }
    x
}

impl GlobalStage for MinhashDedup {
    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    fn scan(&self, doc: &Document, position: Position, emit: &mut dyn FnMut(ScanRecord)) {
        let signature = self.hasher.signature(&doc.text);
        if signature.is_empty() {
            return;
        }
        let verify = self.config.verify_threshold.is_some();
        for (band, hash) in self.hasher.band_hashes(&signature).into_iter().enumerate() {
            let mut bytes = Vec::with_capacity(HEADER + doc.id.len() + if verify { signature.len() * 2 } else { 0 });
            bytes.extend_from_slice(&(band as u32).to_le_bytes());
            bytes.extend_from_slice(&hash.to_le_bytes());
            position_bytes(position, &mut bytes);
            if verify {
                bytes.extend_from_slice(&(signature.len() as u32).to_le_bytes());
                for &v in &signature {
                    bytes.extend_from_slice(&(v as u16).to_le_bytes());
                }
            } else {
                bytes.extend_from_slice(&0u32.to_le_bytes());
            }
            bytes.extend_from_slice(doc.id.as_bytes());
            emit(ScanRecord {
                route: xxh3_64(&bytes[..12]),
                bytes,
            });
        }
    }

    /// Edges, as verdicts about the later document: the earlier document's
    /// position and id.
    fn resolve(&self, _partition: u32, records: Vec<Vec<u8>>) -> Result<Vec<Verdict>> {
        let mut parsed = records
            .iter()
            .enumerate()
            .map(|(i, r)| parse(r, i))
            .collect::<Result<Vec<_>>>()?;
        parsed.sort_unstable_by_key(|p| (p.band, p.hash, p.position));
        let mut edges = Vec::new();
        for group in parsed.chunk_by(|a, b| (a.band, a.hash) == (b.band, b.hash)) {
            let first = &group[0];
            for other in &group[1..] {
                if other.position == first.position {
                    continue;
                }
                if let Some(threshold) = self.config.verify_threshold {
                    if estimated_jaccard_low16(&first.signature, &other.signature) < threshold {
                        continue;
                    }
                }
                let mut bytes = Vec::with_capacity(12 + first.id.len());
                position_bytes(first.position, &mut bytes);
                if self.config.verify_threshold.is_some() {
                    // Both ends' signatures and ids: the cluster step checks
                    // every removal against the document it keeps instead.
                    for end in [first, other] {
                        bytes.extend_from_slice(&(end.signature.len() as u32).to_le_bytes());
                        for v in &end.signature {
                            bytes.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                    bytes.extend_from_slice(&(first.id.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(first.id);
                    bytes.extend_from_slice(other.id);
                } else {
                    bytes.extend_from_slice(first.id);
                }
                edges.push(Verdict {
                    position: other.position,
                    bytes,
                });
            }
        }
        Ok(edges)
    }

    fn clusters(&self) -> bool {
        true
    }

    /// Connected components of the edges; each keeps its smallest position.
    /// Edges are joined as they stream in (union-find is online), so memory
    /// holds the documents that have a near-duplicate, never the edges.
    ///
    /// With `verify_threshold`, a component is not removed wholesale: its
    /// documents, in input order, are each removed for the first kept
    /// document of the component whose estimated Jaccard with it reaches the
    /// threshold, and kept when there is none (a leader). A chain A~B~C then
    /// never removes C for an A it barely resembles: every removal is checked
    /// against the document that stays.
    fn cluster(&self, edges: &mut VerdictBatches<'_>) -> Result<Vec<Verdict>> {
        let verify = self.config.verify_threshold;
        let mut components = Components::default();
        while let Some(batch) = edges()? {
            for edge in batch {
                let parsed = parse_edge(&edge.bytes, verify.is_some())?;
                let a = components.node(parsed.earlier)?;
                let b = components.node(edge.position)?;
                for (node, id, signature) in [
                    (a, Some(parsed.earlier_id), parsed.earlier_signature),
                    (b, parsed.later_id, parsed.later_signature),
                ] {
                    if let Some(id) = id {
                        if components.ids[node as usize].is_none() {
                            components.ids[node as usize] = Some(id.into());
                        }
                    }
                    if let Some(signature) = signature {
                        if components.signatures[node as usize].is_none() {
                            components.signatures[node as usize] = Some(signature.into());
                        }
                    }
                }
                components.union(a, b);
            }
        }
        let Components {
            mut parent,
            positions,
            ids,
            signatures,
            ..
        } = components;
        let id_of = |n: usize| ids[n].as_deref().unwrap_or_default();
        let verdict = |n: usize, kind: u8, kept: usize| {
            let id = id_of(kept);
            let mut bytes = Vec::with_capacity(1 + id.len());
            bytes.push(kind);
            bytes.extend_from_slice(id);
            Verdict {
                position: positions[n],
                bytes,
            }
        };
        let roots: Vec<usize> = (0..positions.len())
            .map(|n| find(&mut parent, n as u32) as usize)
            .collect();
        let Some(threshold) = verify else {
            // The smallest position of a component is the first document of
            // some group it is in, so its id came with an edge.
            return Ok((0..positions.len())
                .map(|n| verdict(n, if roots[n] == n { KEPT } else { REMOVED }, roots[n]))
                .collect());
        };
        let mut order: Vec<usize> = (0..positions.len()).collect();
        order.sort_unstable_by_key(|&n| (positions[roots[n]], positions[n]));
        let signature = |n: usize| signatures[n].as_deref().unwrap_or_default();
        let mut verdicts = Vec::with_capacity(positions.len());
        for component in order.chunk_by(|&a, &b| roots[a] == roots[b]) {
            // (leader, whether anything was removed for it)
            let mut leaders: Vec<(usize, bool)> = Vec::new();
            for &n in component {
                match leaders
                    .iter_mut()
                    .find(|(l, _)| estimated_jaccard_low16(signature(n), signature(*l)) >= threshold)
                {
                    Some((leader, followed)) => {
                        *followed = true;
                        verdicts.push(verdict(n, REMOVED, *leader));
                    }
                    None => leaders.push((n, false)),
                }
            }
            // A leader nothing was removed for is an ordinary document.
            verdicts.extend(leaders.into_iter().filter(|l| l.1).map(|(l, _)| verdict(l, KEPT, l)));
        }
        Ok(verdicts)
    }

    fn apply(&self, _doc: &mut Document, verdicts: &[Vec<u8>], stats: &mut StageStats) -> Decision {
        match verdicts.first().map(|v| (v[0], &v[1..])) {
            None => Decision::Keep,
            Some((KEPT, _)) => {
                stats.add("minhash", "clusters", 1);
                Decision::Keep
            }
            Some((_, kept_id)) => Decision::Drop {
                reason: "near_duplicate",
                detail: json!({ "kept_id": String::from_utf8_lossy(kept_id) }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;

    fn sentences() -> Vec<String> {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/langid/sentences/en.txt"),
        )
        .unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn clusters_chain_across_shards_and_keep_the_first() {
        let s = sentences();
        let base = s[..15].join(" ");
        let mut words: Vec<&str> = base.split(' ').collect();
        let n = words.len();
        words[n / 3] = "zebra";
        let edited = words.join(" ");
        let unrelated = s[40..55].join(" ");
        let doc = |id: &str, t: &str| Document::new(id, t);
        let shards = vec![
            vec![doc("u", &unrelated), doc("b", &edited)],
            vec![
                doc("a", &base),
                doc("c", &format!("{base}  ")),
                doc("v", &s[60..75].join(" ")),
            ],
        ];
        let stage = MinhashDedup::new(MinhashDedupConfig {
            partitions: 3,
            ..Default::default()
        })
        .unwrap();
        let out = run(&stage, shards);
        let removed = |id: &str| Decision::Drop {
            reason: "near_duplicate",
            detail: json!({ "kept_id": id }),
        };
        // "b" (shard 0) comes first in input order: it is kept.
        assert_eq!(out[0], [Decision::Keep, Decision::Keep]);
        assert_eq!(out[1], [removed("b"), removed("b"), Decision::Keep]);
    }

    #[test]
    fn verification_never_removes_for_a_distant_end_of_a_chain() {
        // a~b and b~c (15 of 20 sentences shared, Jaccard about 0.6), a and c
        // far apart (about 0.3). Without verification one component removes
        // b and c for a; with it c has no kept document it resembles, so it
        // stays.
        let s = sentences();
        let docs = || {
            vec![vec![
                Document::new("a", s[0..20].join(" ")),
                Document::new("b", s[5..25].join(" ")),
                Document::new("c", s[10..30].join(" ")),
            ]]
        };
        let config = MinhashDedupConfig {
            bands: 40,
            rows: 3,
            partitions: 3,
            ..Default::default()
        };
        let removed_for_a = Decision::Drop {
            reason: "near_duplicate",
            detail: json!({ "kept_id": "a" }),
        };
        let plain = MinhashDedup::new(config.clone()).unwrap();
        assert_eq!(
            run(&plain, docs())[0],
            [Decision::Keep, removed_for_a.clone(), removed_for_a.clone()]
        );
        let verified = MinhashDedup::new(MinhashDedupConfig {
            verify_threshold: Some(0.5),
            ..config
        })
        .unwrap();
        assert_eq!(
            run(&verified, docs())[0],
            [Decision::Keep, removed_for_a, Decision::Keep]
        );
    }

    #[test]
    fn verification_drops_weak_candidates() {
        let stage = MinhashDedup::new(MinhashDedupConfig {
            verify_threshold: Some(1.1),
            ..Default::default()
        });
        assert!(stage.is_err());
        let s = sentences();
        let base = s[..15].join(" ");
        let strict = MinhashDedup::new(MinhashDedupConfig {
            verify_threshold: Some(0.99),
            partitions: 2,
            ..Default::default()
        })
        .unwrap();
        let mut words: Vec<&str> = base.split(' ').collect();
        for i in (0..words.len()).step_by(12) {
            words[i] = "zebra";
        }
        let edited = words.join(" ");
        let out = run(
            &strict,
            vec![vec![
                Document::new("a", &base),
                Document::new("b", &edited),
                Document::new("c", &base),
            ]],
        );
        // The exact copy stays merged; the 8%-edited copy is under 0.99.
        assert_eq!(out[0][1], Decision::Keep);
        assert!(matches!(out[0][2], Decision::Drop { .. }));
    }
}
