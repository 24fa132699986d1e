//! The manifest schema of thresher: what every stage writes beside its output.
//!
//! Each stage folder holds `_manifest/<shard>.json` ([`ShardManifest`]) for every
//! output shard and one `_manifest/stage.json` ([`StageManifest`]) once all its
//! shards are committed. Counts are plain values that add ([`Counts`] implements
//! `AddAssign`), so a stage summary is the sum of its shard manifests, and
//! [`Counts::check`] states the accounting rule every manifest obeys:
//! `in = out + rejected + quarantined`.
//!
//! ```
//! use thresher_manifests::Counts;
//! let mut total = Counts::default();
//! let mut shard = Counts::default();
//! shard.documents_in = 3;
//! shard.documents_out = 2;
//! shard.text_bytes_in = 30;
//! shard.text_bytes_out = 20;
//! shard.reject("duplicate", 1, 10);
//! total += shard;
//! assert!(total.check().is_ok());
//! ```

use std::collections::BTreeMap;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// Errors from reading or checking manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("manifest {path} is not valid JSON for this schema: {source}")]
    Parse { path: String, source: serde_json::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The version string written into every manifest.
pub const TOOL_VERSION: &str = concat!("thresher ", env!("CARGO_PKG_VERSION"));

/// One stored object (input shard, output shard or sidecar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// Key relative to the storage root it lives under (input root or stage folder).
    pub name: String,
    /// Size in bytes as stored (compressed).
    pub size: u64,
    /// xxh3-64 of the stored bytes, lower-case hex.
    pub xxh3: String,
}

/// Document and byte counts of a shard or a whole stage.
///
/// `documents_in` counts every record read, including unreadable ones, so that
/// `documents_in = documents_out + rejected + quarantined` always holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub documents_in: u64,
    pub documents_out: u64,
    /// Documents dropped by the stage, by reason (the rejected sidecar holds them).
    pub rejected: BTreeMap<String, u64>,
    /// Records that could not be read (the quarantine sidecar holds their raw bytes).
    pub quarantined: u64,
    /// Bytes of document text read (UTF-8) by readable records.
    pub text_bytes_in: u64,
    pub text_bytes_out: u64,
    pub text_bytes_rejected: u64,
    /// Raw bytes of quarantined records.
    pub quarantined_bytes: u64,
}

impl Counts {
    /// Counts one rejected document.
    pub fn reject(&mut self, reason: &str, documents: u64, text_bytes: u64) {
        *self.rejected.entry(reason.to_string()).or_default() += documents;
        self.text_bytes_rejected += text_bytes;
    }

    /// Total rejected documents over all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Checks the accounting rule; the error says which numbers disagree.
    pub fn check(&self) -> std::result::Result<(), String> {
        let accounted = self.documents_out + self.rejected_total() + self.quarantined;
        if accounted != self.documents_in {
            return Err(format!(
                "documents in ({}) != out ({}) + rejected ({}) + quarantined ({})",
                self.documents_in,
                self.documents_out,
                self.rejected_total(),
                self.quarantined
            ));
        }
        let readable_bytes = self.text_bytes_out + self.text_bytes_rejected;
        if readable_bytes > self.text_bytes_in {
            return Err(format!(
                "text bytes out ({}) + rejected ({}) exceed text bytes in ({})",
                self.text_bytes_out, self.text_bytes_rejected, self.text_bytes_in
            ));
        }
        Ok(())
    }
}

impl AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, other: &Counts) {
        self.documents_in += other.documents_in;
        self.documents_out += other.documents_out;
        for (reason, n) in &other.rejected {
            *self.rejected.entry(reason.clone()).or_default() += n;
        }
        self.quarantined += other.quarantined;
        self.text_bytes_in += other.text_bytes_in;
        self.text_bytes_out += other.text_bytes_out;
        self.text_bytes_rejected += other.text_bytes_rejected;
        self.quarantined_bytes += other.quarantined_bytes;
    }
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        *self += &other;
    }
}

/// Named counters a stage adds to its manifests (e.g. documents per language).
/// Adding two of them adds the counters key by key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageStats(pub BTreeMap<String, BTreeMap<String, u64>>);

impl StageStats {
    /// Adds `n` to counter `key` of group `group`.
    pub fn add(&mut self, group: &str, key: &str, n: u64) {
        *self
            .0
            .entry(group.to_string())
            .or_default()
            .entry(key.to_string())
            .or_default() += n;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AddAssign<&StageStats> for StageStats {
    fn add_assign(&mut self, other: &StageStats) {
        for (group, counters) in &other.0 {
            let mine = self.0.entry(group.clone()).or_default();
            for (key, n) in counters {
                *mine.entry(key.clone()).or_default() += n;
            }
        }
    }
}

/// Time spent on a piece of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
}

impl AddAssign for Timing {
    fn add_assign(&mut self, other: Timing) {
        self.wall_seconds += other.wall_seconds;
        self.cpu_seconds += other.cpu_seconds;
    }
}

/// `_manifest/<shard>.json`: one committed output shard of a stage.
///
/// It is committed last, after every object it lists, so its presence (with the
/// stage's current config hash) is what marks the shard as done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    pub stage: String,
    pub config_hash: String,
    pub version: String,
    /// Output shard name (key of the main output, relative to the stage folder).
    pub shard: String,
    /// The input objects this shard was made from.
    pub inputs: Vec<ObjectInfo>,
    /// Everything committed for this shard: output, rejected and quarantine sidecars.
    pub outputs: Vec<ObjectInfo>,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "StageStats::is_empty")]
    pub stats: StageStats,
    pub timing: Timing,
}

impl ShardManifest {
    pub fn from_json(path: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| Error::Parse {
            path: path.to_string(),
            source,
        })
    }
}

/// `_manifest/stage.json`: the summary written when every shard of a stage is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageManifest {
    pub stage: String,
    /// The stage's `kind` (e.g. `exact_dedup`).
    pub kind: String,
    /// Position of the stage in the pipeline, from 0.
    pub position: usize,
    pub config_hash: String,
    /// The stage's own configuration, as resolved (defaults filled in).
    pub config: serde_json::Value,
    pub version: String,
    /// Where the stage read from (a URL or path).
    pub input: String,
    /// Output shard names, sorted; each has `_manifest/<name>.json`.
    pub shards: Vec<String>,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "StageStats::is_empty")]
    pub stats: StageStats,
    /// Objects the stage wrote beyond its shards (the packed rows of `pack`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<ObjectInfo>,
    /// Sum over shards (and over global steps, for stages that have them).
    pub timing: Timing,
}

impl StageManifest {
    pub fn from_json(path: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| Error::Parse {
            path: path.to_string(),
            source,
        })
    }
}

/// `_manifest/config.json`: written when a stage first starts, so that every
/// later task (and rerun) can refuse to mix outputs of two configurations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageLock {
    pub stage: String,
    pub config_hash: String,
    pub config: serde_json::Value,
    pub version: String,
}

/// Manifest path of a shard, relative to its stage folder.
pub fn shard_manifest_key(shard: &str) -> String {
    format!("_manifest/{shard}.json")
}

pub const STAGE_MANIFEST_KEY: &str = "_manifest/stage.json";
pub const STAGE_LOCK_KEY: &str = "_manifest/config.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_and_check() {
        let mut a = Counts {
            documents_in: 5,
            documents_out: 3,
            quarantined: 1,
            text_bytes_in: 100,
            text_bytes_out: 60,
            ..Default::default()
        };
        a.reject("duplicate", 1, 20);
        assert!(a.check().is_ok());
        let mut total = Counts::default();
        total += &a;
        total += &a;
        assert_eq!(total.documents_in, 10);
        assert_eq!(total.rejected["duplicate"], 2);
        assert!(total.check().is_ok());
        total.documents_out += 1;
        let err = total.check().unwrap_err();
        assert!(err.contains("documents in (10)"), "{err}");
    }

    #[test]
    fn stats_add_by_key() {
        let mut a = StageStats::default();
        a.add("lang", "en", 2);
        let mut b = StageStats::default();
        b.add("lang", "en", 1);
        b.add("lang", "de", 4);
        a += &b;
        assert_eq!(a.0["lang"]["en"], 3);
        assert_eq!(a.0["lang"]["de"], 4);
    }

    #[test]
    fn shard_manifest_round_trips() {
        let m = ShardManifest {
            stage: "langid".into(),
            config_hash: "abc".into(),
            version: TOOL_VERSION.into(),
            shard: "a.jsonl.zst".into(),
            inputs: vec![ObjectInfo {
                name: "a.jsonl".into(),
                size: 3,
                xxh3: "00".into(),
            }],
            outputs: vec![],
            counts: Counts::default(),
            stats: StageStats::default(),
            timing: Timing::default(),
        };
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(ShardManifest::from_json("x", &bytes).unwrap(), m);
        let err = ShardManifest::from_json("x.json", b"{}").unwrap_err();
        assert!(err.to_string().contains("x.json"));
    }
}
