//! The `scan` and `resolve` steps of global stages, their work files, and the
//! stage summary written once every shard is done.
//!
//! Work files (little-endian), under the stage's `_work/`:
//!
//! ```text
//! scan/<shard index>.bin      "THRSCAN2" wall:f64 cpu:f64 partitions:u32
//!                             partitions × (offset:u64 len:u64)
//!                             sections of records: (len:u32 pass:u32 bytes)*
//!                             (pass: the record's route / partitions, which
//!                             picks its pass when a partition is resolved in
//!                             several)
//! resolve/<partition>.bin     "THRRSLV1" wall:f64 cpu:f64 entries:u32
//!                             entries × (shard:u32 offset:u64 len:u64)
//!                             sections of verdicts: (record:u64 len:u32 bytes)*
//! cluster/000000.bin          the same layout, for stages with a cluster step:
//!                             what apply reads instead of the resolve files
//! ```
//!
//! The tables let each later step fetch only its own section with a ranged
//! read, so no task ever reads more than its share.
//!
//! Memory: a `scan` unit holds one shard's records; a `resolve` unit holds
//! one partition's, or one pass's share when the partition is larger than
//! `[run] resolve_memory_mb` (it then re-reads its sections once per pass);
//! `cluster` streams the verdicts section by section into the stage.

use std::collections::{BTreeSet, HashMap};

use thresher_manifests::{
    shard_manifest_key, Counts, ShardManifest, StageManifest, StageStats, Timing, STAGE_MANIFEST_KEY, TOOL_VERSION,
};
use thresher_stages::{GlobalStage, Position, Verdict};

use crate::error::{Error, Result};
use crate::runner::{Pipeline, RunOptions, StagePlan, Stopwatch, Tasks, MANIFEST_PREFIX, WORK_PREFIX};
use crate::shard::{InputShard, Item, ShardRecords};
use crate::storage::Storage;

const SCAN_MAGIC: &[u8; 8] = b"THRSCAN2";
/// How many times a partition's scan bytes `resolve` counts as its memory:
/// each record becomes an owned buffer plus the stage's parsed form.
const RESOLVE_MEMORY_FACTOR: f64 = 4.0;
const RESOLVE_MAGIC: &[u8; 8] = b"THRRSLV1";
/// magic + wall + cpu + count
const FIXED_HEADER: usize = 8 + 8 + 8 + 4;

fn scan_key(shard: u32) -> String {
    format!("{WORK_PREFIX}scan/{shard:06}.bin")
}

fn resolve_key(partition: u32) -> String {
    format!("{WORK_PREFIX}resolve/{partition:06}.bin")
}

pub(crate) fn cluster_key() -> String {
    format!("{WORK_PREFIX}cluster/000000.bin")
}

/// The files `apply` reads its verdicts from.
fn verdict_keys(global: &dyn GlobalStage) -> Vec<String> {
    if global.clusters() {
        vec![cluster_key()]
    } else {
        (0..global.partitions()).map(resolve_key).collect()
    }
}

/// A verdict file: verdicts sorted by position, one section per shard.
fn verdict_file(timing: Timing, mut verdicts: Vec<Verdict>) -> Vec<u8> {
    verdicts.sort_by_key(|v| v.position);
    let mut table = Vec::new();
    let mut sections: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<u32> = None;
    for v in &verdicts {
        if current != Some(v.position.shard) {
            current = Some(v.position.shard);
            sections.push(Vec::new());
            table.push(v.position.shard);
        }
        let section = sections.last_mut().unwrap();
        section.extend_from_slice(&v.position.record.to_le_bytes());
        section.extend_from_slice(&(v.bytes.len() as u32).to_le_bytes());
        section.extend_from_slice(&v.bytes);
    }
    let mut offset = (FIXED_HEADER + 20 * table.len()) as u64;
    let table: Vec<Vec<u8>> = table
        .iter()
        .zip(&sections)
        .map(|(shard, section)| {
            let mut entry = shard.to_le_bytes().to_vec();
            entry.extend_from_slice(&offset.to_le_bytes());
            entry.extend_from_slice(&(section.len() as u64).to_le_bytes());
            offset += section.len() as u64;
            entry
        })
        .collect();
    work_file(RESOLVE_MAGIC, timing, &table, &sections)
}

/// The `(shard, offset, len)` table of a verdict file.
fn verdict_table(storage: &dyn Storage, key: &str) -> Result<Vec<(u32, u64, u64)>> {
    let header = read_header(storage, key, RESOLVE_MAGIC, 20)?;
    Ok((0..header.count)
        .map(|i| {
            (
                u32_at(&header.table, 20 * i),
                u64_at(&header.table, 20 * i + 4),
                u64_at(&header.table, 20 * i + 12),
            )
        })
        .collect())
}

/// Parses one section of a verdict file: `(record, bytes)` in order.
fn parse_verdicts(section: &[u8], url: &str) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = section;
    while !rest.is_empty() {
        if rest.len() < 12 || rest.len() < 12 + u32_at(rest, 8) as usize {
            return Err(Error::Input(format!(
                "{url}: truncated verdict; delete it and rerun the step that wrote it"
            )));
        }
        let len = u32_at(rest, 8) as usize;
        out.push((u64_at(rest, 0), rest[12..12 + len].to_vec()));
        rest = &rest[12 + len..];
    }
    Ok(out)
}

/// Builds a work file: fixed header, table, then the sections.
fn work_file(magic: &[u8; 8], timing: Timing, table: &[Vec<u8>], sections: &[Vec<u8>]) -> Vec<u8> {
    let table_len: usize = table.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(FIXED_HEADER + table_len + sections.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(magic);
    out.extend_from_slice(&timing.wall_seconds.to_le_bytes());
    out.extend_from_slice(&timing.cpu_seconds.to_le_bytes());
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for entry in table {
        out.extend_from_slice(entry);
    }
    for section in sections {
        out.extend_from_slice(section);
    }
    out
}

/// The fixed header and table of a work file.
struct WorkHeader {
    timing: Timing,
    table: Vec<u8>,
    count: usize,
}

fn read_header(storage: &dyn Storage, key: &str, magic: &[u8; 8], entry_len: usize) -> Result<WorkHeader> {
    let corrupt = |what: &str| {
        Error::Input(format!(
            "{}: corrupt work file ({what}); delete it and rerun its step",
            storage.url_of(key)
        ))
    };
    let fixed = storage.read_range(key, 0, FIXED_HEADER as u64)?;
    if &fixed[..8] != magic {
        return Err(corrupt("bad magic"));
    }
    let f64_at = |i: usize| f64::from_le_bytes(fixed[i..i + 8].try_into().unwrap());
    let count = u32::from_le_bytes(fixed[24..28].try_into().unwrap()) as usize;
    let table = storage.read_range(key, FIXED_HEADER as u64, (count * entry_len) as u64)?;
    Ok(WorkHeader {
        timing: Timing {
            wall_seconds: f64_at(8),
            cpu_seconds: f64_at(16),
        },
        table,
        count,
    })
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

/// Splits `(len:u32 pass:u32 bytes)*` framing, keeping the records of pass
/// `pass` of `passes`.
fn split_framed(mut bytes: &[u8], key: &str, pass: u32, passes: u32, out: &mut Vec<Vec<u8>>) -> Result<()> {
    while !bytes.is_empty() {
        if bytes.len() < 8 {
            return Err(Error::Input(format!("{key}: truncated record frame")));
        }
        let len = u32_at(bytes, 0) as usize;
        if bytes.len() < 8 + len {
            return Err(Error::Input(format!("{key}: truncated record")));
        }
        if u32_at(bytes, 4) % passes == pass {
            out.push(bytes[8..8 + len].to_vec());
        }
        bytes = &bytes[8 + len..];
    }
    Ok(())
}

impl Pipeline {
    pub(crate) fn scan_step(
        &self,
        stage: &StagePlan,
        global: &dyn GlobalStage,
        shards: &[InputShard],
        tasks: Tasks,
    ) -> Result<(usize, usize)> {
        let input = self.input_storage(stage);
        let partitions = global.partitions() as usize;
        self.for_each_unit(
            stage,
            "scan",
            shards,
            tasks,
            |shard| stage.output.exists(&scan_key(shard.index)),
            |shard, progress| {
                let clock = Stopwatch::start();
                let mut sections = vec![Vec::new(); partitions];
                let records = ShardRecords::open(input.as_ref(), shard, self.policy(stage), Some(progress.clone()))?;
                for (index, item) in records {
                    if let Item::Document(doc) = item {
                        let position = Position {
                            shard: shard.index,
                            record: index,
                        };
                        global.scan(&doc, position, &mut |record| {
                            let section = &mut sections[(record.route % partitions as u64) as usize];
                            section.extend_from_slice(&(record.bytes.len() as u32).to_le_bytes());
                            section.extend_from_slice(&((record.route / partitions as u64) as u32).to_le_bytes());
                            section.extend_from_slice(&record.bytes);
                        });
                    }
                }
                let mut offset = (FIXED_HEADER + 16 * partitions) as u64;
                let table: Vec<Vec<u8>> = sections
                    .iter()
                    .map(|s| {
                        let mut entry = offset.to_le_bytes().to_vec();
                        entry.extend_from_slice(&(s.len() as u64).to_le_bytes());
                        offset += s.len() as u64;
                        entry
                    })
                    .collect();
                stage.output.write_all(
                    &scan_key(shard.index),
                    &work_file(SCAN_MAGIC, clock.stop(), &table, &sections),
                )
            },
        )
    }

    /// Keys present under a prefix, as a set.
    fn keys_under(&self, storage: &dyn Storage, prefix: &str) -> Result<BTreeSet<String>> {
        Ok(storage.list(prefix)?.into_iter().map(|o| o.key).collect())
    }

    fn require_all(&self, stage: &StagePlan, step: &str, needs: &str, expected: &[String]) -> Result<()> {
        let present = self.keys_under(stage.output.as_ref(), &format!("{WORK_PREFIX}{needs}/"))?;
        let missing = expected.iter().filter(|k| !present.contains(*k)).count();
        if missing > 0 {
            return Err(Error::NotReady(format!(
                "stage '{}' step {step} needs the {needs} step finished for all {} unit(s), but {missing} are missing; \
                 run `--step {needs}` for every task first (on Slurm: afterok of the {needs} array)",
                stage.name,
                expected.len()
            )));
        }
        Ok(())
    }

    pub(crate) fn resolve_step(
        &self,
        stage: &StagePlan,
        global: &dyn GlobalStage,
        shards: &[InputShard],
        tasks: Tasks,
    ) -> Result<(usize, usize)> {
        let expected: Vec<String> = shards.iter().map(|s| scan_key(s.index)).collect();
        self.require_all(stage, "resolve", "scan", &expected)?;
        let partitions: Vec<u32> = (0..global.partitions()).collect();
        let out = stage.output.as_ref();
        self.for_each_unit(
            stage,
            "resolve",
            &partitions,
            tasks,
            |p| out.exists(&resolve_key(*p)),
            |&p, progress| {
                let clock = Stopwatch::start();
                let mut sections = Vec::with_capacity(shards.len());
                for shard in shards {
                    let key = scan_key(shard.index);
                    let header = read_header(out, &key, SCAN_MAGIC, 16)?;
                    if p as usize >= header.count {
                        return Err(Error::Input(format!(
                            "{}: has {} partitions, expected {}",
                            out.url_of(&key),
                            header.count,
                            partitions.len()
                        )));
                    }
                    let (offset, len) = (
                        u64_at(&header.table, 16 * p as usize),
                        u64_at(&header.table, 16 * p as usize + 8),
                    );
                    sections.push((key, offset, len));
                }
                let bytes: u64 = sections.iter().map(|s| s.2).sum();
                let budget = self.config.run.resolve_memory_mb * 1e6;
                let passes = ((bytes as f64 * RESOLVE_MEMORY_FACTOR / budget).ceil() as u32).max(1);
                if passes > 1 {
                    tracing::info!(
                        "stage '{}' resolve {p}: {:.0} MB of scan records, in {passes} passes to stay within \
                         resolve_memory_mb = {}",
                        stage.name,
                        bytes as f64 / 1e6,
                        self.config.run.resolve_memory_mb
                    );
                }
                let mut verdicts = Vec::new();
                for pass in 0..passes {
                    let mut records = Vec::new();
                    for (key, offset, len) in &sections {
                        split_framed(&out.read_range(key, *offset, *len)?, key, pass, passes, &mut records)?;
                    }
                    verdicts.extend(global.resolve(p, records)?);
                }
                progress.inc_bytes(1);
                out.write_all(&resolve_key(p), &verdict_file(clock.stop(), verdicts))
            },
        )
    }

    /// The `cluster` step: one unit over every partition's verdicts.
    pub(crate) fn cluster_step(
        &self,
        stage: &StagePlan,
        global: &dyn GlobalStage,
        tasks: Tasks,
    ) -> Result<(usize, usize)> {
        let expected: Vec<String> = (0..global.partitions()).map(resolve_key).collect();
        self.require_all(stage, "cluster", "resolve", &expected)?;
        let out = stage.output.as_ref();
        self.for_each_unit(
            stage,
            "cluster",
            &[0u32],
            tasks,
            |_| out.exists(&cluster_key()),
            |_, progress| {
                let clock = Stopwatch::start();
                let mut sections = Vec::new();
                for key in &expected {
                    for (shard, offset, len) in verdict_table(out, key)? {
                        sections.push((key, shard, offset, len));
                    }
                }
                let mut sections = sections.into_iter();
                // A failed read stops the stage's loop with a placeholder
                // error; the real one is returned below.
                let mut read_error = None;
                let mut next_batch = || -> thresher_stages::Result<Option<Vec<Verdict>>> {
                    let Some((key, shard, offset, len)) = sections.next() else {
                        return Ok(None);
                    };
                    let read = || -> Result<Vec<Verdict>> {
                        let section = out.read_range(key, offset, len)?;
                        Ok(parse_verdicts(&section, &out.url_of(key))?
                            .into_iter()
                            .map(|(record, bytes)| Verdict {
                                position: Position { shard, record },
                                bytes,
                            })
                            .collect())
                    };
                    match read() {
                        Ok(batch) => Ok(Some(batch)),
                        Err(e) => {
                            read_error = Some(e);
                            Err(thresher_stages::Error::CorruptRecord {
                                step: "resolve",
                                message: "its verdicts could not be read".into(),
                            })
                        }
                    }
                };
                let clustered = global.cluster(&mut next_batch);
                if let Some(e) = read_error {
                    return Err(e);
                }
                let verdicts = clustered?;
                progress.inc_bytes(1);
                out.write_all(&cluster_key(), &verdict_file(clock.stop(), verdicts))
            },
        )
    }

    pub(crate) fn require_resolved(&self, stage: &StagePlan, global: &dyn GlobalStage) -> Result<()> {
        let needs = if global.clusters() { "cluster" } else { "resolve" };
        self.require_all(stage, "apply", needs, &verdict_keys(global))
    }

    /// Every verdict about one shard's documents, by record index.
    pub(crate) fn verdicts_for(
        &self,
        stage: &StagePlan,
        global: &dyn GlobalStage,
        shard: &InputShard,
    ) -> Result<HashMap<u64, Vec<Vec<u8>>>> {
        let out = stage.output.as_ref();
        let mut verdicts: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for key in verdict_keys(global) {
            let entries = verdict_table(out, &key)?;
            let Ok(found) = entries.binary_search_by_key(&shard.index, |e| e.0) else {
                continue;
            };
            let (_, offset, len) = entries[found];
            let section = out.read_range(&key, offset, len)?;
            for (record, bytes) in parse_verdicts(&section, &out.url_of(&key))? {
                verdicts.entry(record).or_default().push(bytes);
            }
        }
        Ok(verdicts)
    }

    /// Time spent in the global steps, from their work files.
    fn work_timing(&self, stage: &StagePlan) -> Result<Timing> {
        let mut total = Timing::default();
        let out = stage.output.as_ref();
        for object in out.list(WORK_PREFIX)? {
            let (magic, entry) = if object.key.contains("/scan/") {
                (SCAN_MAGIC, 16)
            } else {
                (RESOLVE_MAGIC, 20)
            };
            total += read_header(out, &object.key, magic, entry)?.timing;
        }
        Ok(total)
    }

    /// When every shard is done: checks the error budget over the whole
    /// stage, writes the stage summary and removes scratch files. Returns
    /// whether the stage is complete.
    pub(crate) fn finalize(&self, stage: &StagePlan, shards: &[InputShard], options: &RunOptions) -> Result<bool> {
        let out = stage.output.as_ref();
        let present = self.keys_under(out, MANIFEST_PREFIX)?;
        let mut counts = Counts::default();
        let mut stats = StageStats::default();
        let mut timing = Timing::default();
        let mut done = 0;
        // A partitioned stage's data files, which the next stage reads.
        let mut partitioned = Vec::new();
        for shard in shards {
            let key = shard_manifest_key(&shard.output_name);
            if !present.contains(&key) {
                continue;
            }
            let manifest = ShardManifest::from_json(&out.url_of(&key), &out.read_all(&key)?)?;
            if manifest.config_hash != stage.config_hash {
                continue;
            }
            done += 1;
            if stage.partition_by.is_some() {
                partitioned.extend(manifest.outputs.iter().filter(|o| !o.name.starts_with('_')).cloned());
            }
            counts += &manifest.counts;
            stats += &manifest.stats;
            timing += manifest.timing;
        }
        counts
            .check()
            .map_err(|e| Error::Input(format!("stage '{}': manifests do not add up: {e}", stage.name)))?;
        if done < shards.len() {
            tracing::info!(
                "stage '{}': {done} of {} shards done; it completes when the other tasks finish theirs",
                stage.name,
                shards.len()
            );
            return Ok(false);
        }
        // The budget is judged on the whole stage only: a task that finishes
        // first has seen a share of the records, and the rate over a share
        // says nothing about the rate over all of them.
        let max_rate = options.max_error_rate.unwrap_or(self.config.run.max_error_rate);
        if counts.documents_in > 0 && counts.quarantined as f64 > max_rate * counts.documents_in as f64 {
            return Err(Error::TooManyErrors(format!(
                "stage '{}': {} of {} records ({:.2}%) could not be read and were quarantined, above max_error_rate \
                 ({:.2}%). They are kept with file, line and reason in {}/_quarantine/. Fix the input, or accept \
                 them with --max-error-rate {:.2} (or [run] max_error_rate) and rerun: finished shards are not redone.",
                stage.name,
                counts.quarantined,
                counts.documents_in,
                100.0 * counts.quarantined as f64 / counts.documents_in as f64,
                100.0 * max_rate,
                stage.output_url,
                (counts.quarantined as f64 / counts.documents_in as f64 + 0.005).min(1.0),
            )));
        }
        let outputs = match &stage.config {
            thresher_stages::registry::StageConfig::Pack(_) => match self.stage_outputs(stage)? {
                Some(outputs) => outputs,
                None => {
                    tracing::info!(
                        "stage '{}': every shard is tokenized; the pack step is next",
                        stage.name
                    );
                    return Ok(false);
                }
            },
            _ => {
                partitioned.sort_by(|a, b| a.name.cmp(&b.name));
                partitioned
            }
        };
        match self.work_timing(stage) {
            Ok(work) => timing += work,
            // Another task finishing at the same moment wrote the summary and
            // removed the work files first.
            Err(_) if self.completed(stage)?.is_some() => return Ok(true),
            Err(e) => return Err(e),
        }
        let summary = StageManifest {
            stage: stage.name.clone(),
            kind: stage.kind.to_string(),
            position: stage.position,
            config_hash: stage.config_hash.clone(),
            config: stage.config_json.clone(),
            version: TOOL_VERSION.into(),
            input: stage.input_url.clone(),
            shards: shards.iter().map(|s| s.output_name.clone()).collect(),
            counts,
            stats,
            outputs,
            timing,
        };
        if let Err(e) = out.write_all(STAGE_MANIFEST_KEY, &serde_json::to_vec_pretty(&summary).expect("json")) {
            // Tasks finishing their last shards at the same moment all write
            // the (identical) summary; the first to finish removes `_tmp/`,
            // and with it the others' unpublished copies.
            if self.completed(stage)?.is_some() {
                return Ok(true);
            }
            return Err(e);
        }
        self.clean_scratch(stage)?;
        let c = &summary.counts;
        tracing::info!(
            "stage '{}' complete: {} in, {} out, {} rejected, {} quarantined",
            stage.name,
            c.documents_in,
            c.documents_out,
            c.rejected_total(),
            c.quarantined
        );
        Ok(true)
    }
}
