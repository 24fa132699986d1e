//! One input shard read as the runner sees it: records numbered, ids made
//! stable and unique, empty texts flagged. Every step of a stage reads its
//! shards through [`ShardRecords`], so `scan` and `apply` of a global stage see
//! exactly the same documents at the same positions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use thresher_stages::Document;

use crate::error::Result;
use crate::parquet_rows;
use crate::progress::Progress;
use crate::readers::{read_records, BadRecord, Compression, DigestingReader, Format, InputDigest, ReadOptions, Record};
use crate::storage::Storage;

/// An input shard of a stage.
#[derive(Debug, Clone)]
pub struct InputShard {
    /// Position in the sorted list of the stage's input shards.
    pub index: u32,
    /// Key under the input storage root.
    pub key: String,
    pub size: u64,
    pub format: Format,
    /// Key of the output shard (and, under `_rejected/` and `_quarantine/`, of
    /// its sidecars): derived from `key` alone.
    pub output_name: String,
}

/// How the runner reads records beyond the format itself.
#[derive(Debug, Clone)]
pub struct ReadPolicy {
    pub read: ReadOptions,
    /// `source` for documents without one.
    pub default_source: Option<String>,
    /// Flag empty or whitespace-only texts.
    pub reject_empty_text: bool,
}

/// A record of a shard after the runner's shared checks.
pub enum Item {
    Document(Document),
    /// Readable, but the text is empty or whitespace only.
    Empty(Document),
    Bad(BadRecord),
}

pub struct ShardRecords {
    records: Box<dyn Iterator<Item = Record> + Send>,
    key: String,
    policy: ReadPolicy,
    next_index: u64,
    /// xxh3-128 of each id seen → record index of its first use.
    seen_ids: HashMap<u128, u64>,
    pub digest: Arc<InputDigest>,
    /// Records that are not documents, by reason (see [`Record::Skipped`]):
    /// shared, since the shard's reader thread owns this iterator.
    pub skipped: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl ShardRecords {
    pub fn open(
        storage: &dyn Storage,
        shard: &InputShard,
        policy: &ReadPolicy,
        progress: Option<Progress>,
    ) -> Result<Self> {
        let digest = Arc::new(InputDigest::default());
        // Parquet says where its rows are at its end: fetched first, so the
        // file can stream a row group at a time instead of whole.
        let parquet_tail = match (shard.format, Compression::of(&shard.key)) {
            (Format::Parquet, Compression::None) => parquet_rows::fetch_tail(storage, &shard.key, shard.size)?,
            _ => None,
        };
        let raw = Box::new(DigestingReader::new(
            storage.open(&shard.key)?,
            digest.clone(),
            progress,
        ));
        let records = match parquet_tail {
            Some(tail) => parquet_rows::read_streamed(raw, tail, policy.read.fields.clone()),
            None => read_records(raw, &shard.key, shard.format, policy.read.clone()),
        };
        Ok(Self {
            records,
            skipped: Arc::default(),
            key: shard.key.clone(),
            policy: policy.clone(),
            next_index: 0,
            seen_ids: HashMap::new(),
            digest,
        })
    }
}

impl Iterator for ShardRecords {
    /// (record index, item)
    type Item = (u64, Item);

    fn next(&mut self) -> Option<(u64, Item)> {
        let record = loop {
            match self.records.next()? {
                Record::Skipped { reason } => *self.skipped.lock().unwrap().entry(reason).or_default() += 1,
                record => break record,
            }
        };
        let index = self.next_index;
        self.next_index += 1;
        let (mut doc, line, offset) = match record {
            Record::Bad(bad) => return Some((index, Item::Bad(bad))),
            Record::Document { doc, line, offset } => (doc, line, offset),
            Record::Skipped { .. } => unreachable!("skipped above"),
        };
        if doc.id.is_empty() {
            // Stable across runs and task counts: the input key and the record index.
            doc.id = format!("{}#{}", self.key, index);
        }
        if doc.source.is_none() {
            doc.source = self.policy.default_source.clone();
        }
        let id_hash = xxhash_rust::xxh3::xxh3_128(doc.id.as_bytes());
        if let Some(first) = self.seen_ids.get(&id_hash) {
            // Ids name documents in every sidecar and in packed provenance, so
            // they must be unique; the later record is kept whole in quarantine.
            let mut raw = Vec::new();
            doc.write_json_line(&mut raw);
            raw.pop();
            let bad = BadRecord {
                line,
                offset,
                reason: format!("duplicate id '{}' (first used by record {first} of this file)", doc.id),
                raw,
            };
            return Some((index, Item::Bad(bad)));
        }
        self.seen_ids.insert(id_hash, index);
        if self.policy.reject_empty_text && doc.text.trim().is_empty() {
            return Some((index, Item::Empty(doc)));
        }
        Some((index, Item::Document(doc)))
    }
}
