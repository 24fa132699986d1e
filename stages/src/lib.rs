//! thresher's stages: pure functions of documents plus their config.
//!
//! A stage never sees storage, shards on disk or scheduling; the runner in the
//! `thresher` crate does all of that. A stage is one of two shapes ([`Stage`]):
//!
//! - [`DocumentStage`]: looks at one document at a time and returns a
//!   [`Decision`] (keep, possibly with new tags, or drop with a reason), e.g.
//!   [`langid`].
//! - [`GlobalStage`]: needs to see every shard before deciding, so it runs as
//!   explicit steps with a barrier between them (`scan` per shard → `resolve`
//!   per partition → `apply` per shard), e.g. [`exact_dedup`]. Each step is
//!   sharded, so the same plan runs on one machine or a Slurm array.
//!
//! Adding a stage: write one file (config struct, stage struct, trait impl,
//! tests) and add one arm to [`registry::StageConfig`].
//!
//! ```
//! use thresher_stages::{registry::StageConfig, Document, Stage, Decision};
//! use thresher_manifests::StageStats;
//! let config: StageConfig = serde_json::from_str(r#"{"kind": "langid"}"#).unwrap();
//! let Stage::Document(stage) = config.build().unwrap() else { unreachable!() };
//! let mut doc = Document::new("1", "Ceci est une phrase écrite en français, assez longue pour être reconnue.");
//! let mut stats = StageStats::default();
//! assert_eq!(stage.process(&mut doc, &mut stats), Decision::Keep);
//! assert_eq!(doc.metadata["lang"], "fra");
//! ```

pub mod bad_words;
pub mod code;
pub mod document;
pub mod exact_dedup;
pub mod filter;
pub mod heuristics;
pub mod ingest;
mod keep_one;
pub mod langid;
pub mod line_dedup;
pub mod minhash;
pub mod minhash_dedup;
pub mod pack;
pub mod quality;
pub mod registry;
mod splitmix;
#[cfg(test)]
pub(crate) mod testing;
pub use splitmix::SplitMix64;
pub mod url_dedup;
pub mod url_filter;

pub use document::{Document, FieldNames};
pub use thresher_manifests::StageStats;

/// Whether a configured model or tokenizer path is a URL (`s3://…`): the
/// pipeline copies such files to local disk when it builds the stage
/// (`thresher::remote_files`), so reading the config cannot look at them.
pub fn is_url(path: &std::path::Path) -> bool {
    path.to_str().is_some_and(|s| s.contains("://"))
}

/// Errors of stage construction and of global steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid config for stage kind `{kind}`: {message}")]
    Config { kind: &'static str, message: String },
    #[error("corrupt {step} record: {message}")]
    CorruptRecord { step: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a stage decided about one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward the document (its tags may have changed).
    Keep,
    /// Move the document to the rejected sidecar. `reason` is a short, stable
    /// name counted in manifests; `detail` (a JSON object, or null) is kept with
    /// the rejected document so that a person can audit the decision.
    Drop {
        reason: &'static str,
        detail: serde_json::Value,
    },
}

/// A stage that judges documents one at a time.
pub trait DocumentStage: Send + Sync {
    /// Judges (and may tag) one document; counters go into `stats`.
    fn process(&self, doc: &mut Document, stats: &mut StageStats) -> Decision;
}

/// A stage that judges documents in batches (a model on a GPU or in SIMD
/// wants many documents at once). Decisions come back in input order.
pub trait BatchStage: Send + Sync {
    fn process_batch(&self, docs: &mut [Document], stats: &mut StageStats) -> Result<Vec<Decision>>;
}

/// Where a document sits in the stage's input: the position of its input
/// shard in the sorted list of input shards, and its record index in that
/// shard. This order never depends on how many tasks run the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub shard: u32,
    pub record: u64,
}

/// One record a `scan` step emits.
///
/// `route` is a hash of what groups records: every record `resolve` must see
/// together (one key, one band bucket) has the same route. The runner sends a
/// record to partition `route % partitions` and, when a partition is too large
/// for `[run] resolve_memory_mb`, resolves it in passes, each taking the
/// records with one value of `(route / partitions) % passes`; so a stage's
/// `resolve` may see its partition in several calls, each with whole groups.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRecord {
    pub route: u64,
    pub bytes: Vec<u8>,
}

/// A source of verdict batches for [`GlobalStage::cluster`]: `Ok(None)` when
/// every batch was given. Batches stream so the cluster step never holds
/// every partition's verdicts at once.
pub type VerdictBatches<'a> = dyn FnMut() -> Result<Option<Vec<Verdict>>> + 'a;

/// One verdict a `resolve` step emits about one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub position: Position,
    pub bytes: Vec<u8>,
}

/// A stage that must see all shards before deciding (e.g. exact dedup).
///
/// The runner runs `scan` over every input shard, then `resolve` once per
/// partition over the scan records of that partition from every shard (in shard
/// order), then `apply` over every input shard with the verdicts about its
/// documents. Records are opaque bytes to the runner.
pub trait GlobalStage: Send + Sync {
    /// Number of resolve partitions: part of the config, never the task count,
    /// so results do not depend on how many tasks run.
    fn partitions(&self) -> u32;
    /// Emits any number of records for a document (one per key it has).
    fn scan(&self, doc: &Document, position: Position, emit: &mut dyn FnMut(ScanRecord));
    /// Decides over the records of one partition, or one pass of it (whole
    /// groups; see [`ScanRecord`]), given in shard order.
    fn resolve(&self, partition: u32, records: Vec<Vec<u8>>) -> Result<Vec<Verdict>>;
    /// Whether the stage has a `cluster` step between `resolve` and `apply`:
    /// one unit that sees every verdict of every partition (near-duplicate
    /// clusters span partitions) and returns the verdicts `apply` gets.
    fn clusters(&self) -> bool {
        false
    }
    /// The `cluster` step over every `resolve` verdict, in batches; only
    /// called when [`GlobalStage::clusters`].
    fn cluster(&self, resolved: &mut VerdictBatches<'_>) -> Result<Vec<Verdict>> {
        let mut all = Vec::new();
        while let Some(batch) = resolved()? {
            all.extend(batch);
        }
        Ok(all)
    }
    /// Applies the verdicts about one document (none, or any number, in
    /// partition order, then in the order `resolve` gave them).
    fn apply(&self, doc: &mut Document, verdicts: &[Vec<u8>], stats: &mut StageStats) -> Decision;
}

/// A built stage, ready to run.
pub enum Stage {
    Document(Box<dyn DocumentStage>),
    Batch(Box<dyn BatchStage>),
    Global(Box<dyn GlobalStage>),
    /// The terminal stage: documents become packed token rows, not documents.
    Pack(Box<pack::Pack>),
}
