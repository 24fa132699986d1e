//! The runner: picks this task's shards, runs a stage's steps over them,
//! commits outputs atomically, writes manifests and skips finished work.
//!
//! Layout of a stage's folder `<output>/<stage>/`:
//!
//! ```text
//! <shard>.jsonl.zst               documents the stage kept
//! _rejected/<shard>.jsonl.zst     documents it dropped, with the reason
//! _quarantine/<shard>.jsonl.zst   records that could not be read, raw bytes kept
//! _manifest/config.json           the configuration the folder was made with
//! _manifest/<shard>.json          one per output shard, committed last
//! _manifest/stage.json            the summary, once every shard is done
//! _work/                          artifacts of global steps (removed at the end)
//! _tmp/                           objects being written (never read)
//! ```
//!
//! A shard is done when its manifest exists; everything it lists was committed
//! before it. Rerunning therefore resumes, and because every output is a
//! deterministic function of the input and the config, a resumed run writes
//! the same bytes as an uninterrupted one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{json, Value};
use thresher_manifests::{
    shard_manifest_key, Counts, ObjectInfo, ShardManifest, StageLock, StageManifest, StageStats, Timing,
    STAGE_LOCK_KEY, STAGE_MANIFEST_KEY, TOOL_VERSION,
};
use thresher_stages::registry::StageConfig;
use thresher_stages::{Decision, Document, GlobalStage, Position, Stage};

use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::readers::{format_of, shard_stem, Format, ReadOptions};
use crate::shard::{InputShard, Item, ReadPolicy, ShardRecords};
use crate::storage::{join_url, open_url, LocalStorage, ObjectMeta, Storage, TEMP_PREFIX};
use crate::web_page::HtmlFocus;
use crate::writer::{quarantine_line, rejected_line, JsonlZstWriter};

pub const REJECTED_PREFIX: &str = "_rejected/";
pub const QUARANTINE_PREFIX: &str = "_quarantine/";
pub(crate) const WORK_PREFIX: &str = "_work/";
pub(crate) const MANIFEST_PREFIX: &str = "_manifest/";

/// Which share of the work this process does: items `i` with `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tasks {
    pub index: usize,
    pub count: usize,
}

impl Tasks {
    pub const ALL: Tasks = Tasks { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Input(format!(
                "task index {index} is out of range for {count} task(s): it must be below the task count"
            )));
        }
        Ok(Self { index, count })
    }

    pub fn owns(&self, item: usize) -> bool {
        item % self.count == self.index
    }
}

/// Options of `thresher run` beyond the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run only this stage (else every stage in order).
    pub stage: Option<String>,
    /// Run only this step of the stage (`scan`, `resolve`, `apply`).
    pub step: Option<String>,
    pub tasks: Tasks,
    /// Delete outputs made with another configuration and rebuild them.
    pub force: bool,
    /// Overrides `run.max_error_rate`.
    pub max_error_rate: Option<f64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            stage: None,
            step: None,
            tasks: Tasks::ALL,
            force: false,
            max_error_rate: None,
        }
    }
}

/// Where a stage reads from.
pub(crate) enum StageInput {
    /// The pipeline's input files.
    Raw {
        storage: Arc<dyn Storage>,
        single_key: Option<String>,
    },
    /// The committed output of the previous stage.
    Upstream { position: usize },
}

/// One configured stage, resolved: its storage and config hash, and the
/// stage itself, built when it first runs.
pub struct StagePlan {
    pub position: usize,
    pub name: String,
    pub kind: &'static str,
    pub config_json: Value,
    pub config_hash: String,
    pub output_url: String,
    pub output: Arc<dyn Storage>,
    pub config: StageConfig,
    /// Built on first use ([`StagePlan::stage`]): a task of another stage
    /// never loads this stage's model or tokenizer, nor opens its GPU.
    built: OnceLock<Stage>,
    /// See `StageEntry::partition_by`.
    pub partition_by: Option<String>,
    pub(crate) input: StageInput,
    pub(crate) input_url: String,
}

/// A pipeline ready to run: the config plus every stage's plan.
pub struct Pipeline {
    pub config: PipelineConfig,
    pub stages: Vec<StagePlan>,
    policy_raw: ReadPolicy,
    policy_upstream: ReadPolicy,
}

impl StagePlan {
    /// The built stage: the first call builds it (loads its model or
    /// tokenizer); a stage that fails to build names itself.
    pub fn stage(&self) -> Result<&Stage> {
        if let Some(stage) = self.built.get() {
            return Ok(stage);
        }
        let failed = |e: &dyn std::fmt::Display| Error::Input(format!("stage '{}' ({}): {e}", self.name, self.kind));
        // Models and tokenizers named by URL are copied to local disk for
        // the build, and the copies deleted after it.
        let localized = crate::remote_files::localize(&self.config).map_err(|e| failed(&e))?;
        let stage = localized
            .config
            .build()
            .map_err(|e| failed(&localized.with_urls(&e.to_string())))?;
        drop(localized);
        // Tasks build a stage from one thread, before its units start; a
        // second build racing this one would only be dropped.
        Ok(self.built.get_or_init(|| stage))
    }

    /// Step names in order, known without building the stage.
    pub fn steps(&self) -> &'static [&'static str] {
        self.config.steps()
    }
}

fn hash_hex(value: &Value) -> String {
    // serde_json maps are ordered by key, so equal configs give equal bytes.
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(value).expect("json"))
    )
}

/// Opens the pipeline's input: a folder, or one file (its folder becomes the root).
fn open_input(url: &str) -> Result<(Arc<dyn Storage>, Option<String>)> {
    let local = url.strip_prefix("file://").unwrap_or(url);
    if !url.contains("://") || url.starts_with("file://") {
        let path = std::path::Path::new(local);
        if !path.exists() {
            return Err(Error::Input(format!(
                "input path '{url}' does not exist; set [input] path to a folder or file of documents"
            )));
        }
        if path.is_file() {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let key = path
                .file_name()
                .expect("a file has a name")
                .to_string_lossy()
                .into_owned();
            return Ok((Arc::new(LocalStorage::new(parent)), Some(key)));
        }
    }
    if url.starts_with("s3://") {
        if let Some((storage, key)) = crate::storage::s3::single_object(url)? {
            return Ok((storage, Some(key)));
        }
    }
    Ok((open_url(url)?, None))
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Result<Self> {
        let (raw_storage, single_key) = open_input(&config.input.path)?;
        let mut raw = Some(StageInput::Raw {
            storage: raw_storage,
            single_key,
        });
        let mut stages = Vec::new();
        // The first stage's hash covers how the input is read; each later
        // stage's hash covers its upstream's, so a change anywhere upstream
        // marks everything after it as changed.
        let mut input_json = json!({
            "input": config.input.path,
            "format": config.input.format,
            "source": config.input.source,
            "max_record_bytes": config.input.max_record_bytes,
            "reject_empty_text": config.run.reject_empty_text,
        });
        // Only when set: hashes of configs written before the key stay.
        if config.input.html_focus != HtmlFocus::default() {
            input_json["html_focus"] = json!(config.input.html_focus);
        }
        let fields = config.input.field_names();
        if let Some(fields) = &fields {
            input_json["text_field"] = json!(fields.text);
            input_json["id_field"] = json!(fields.id);
        }
        let read = ReadOptions {
            max_record_bytes: config.input.max_record_bytes,
            html_focus: config.input.html_focus,
            fields: fields.unwrap_or_default(),
        };
        let mut upstream_hash = hash_hex(&input_json);
        let mut input_url = config.input.path.clone();
        for (position, entry) in config.stages.iter().enumerate() {
            let config_json = serde_json::to_value(&entry.config).expect("configs serialize");
            let config_hash = hash_hex(&json!({
                "name": entry.name,
                "config": config_json,
                "partition_by": entry.partition_by,
                "upstream": upstream_hash,
                "compression_level": config.output.compression_level,
            }));
            let output_url = join_url(&config.output.path, &entry.name);
            let input = match raw.take() {
                Some(raw) => raw,
                None => StageInput::Upstream { position: position - 1 },
            };
            stages.push(StagePlan {
                position,
                name: entry.name.clone(),
                kind: entry.config.kind(),
                output: open_url(&output_url)?,
                output_url: output_url.clone(),
                config: entry.config.clone(),
                built: OnceLock::new(),
                partition_by: entry.partition_by.clone(),
                config_json,
                config_hash: config_hash.clone(),
                input,
                input_url: input_url.clone(),
            });
            upstream_hash = config_hash;
            input_url = output_url;
        }
        let policy_raw = ReadPolicy {
            read,
            default_source: config.input.source.clone(),
            reject_empty_text: config.run.reject_empty_text,
        };
        // Upstream shards were written by thresher: their records can be as
        // long as anything it accepted.
        let policy_upstream = ReadPolicy {
            read: ReadOptions::new(usize::MAX),
            default_source: None,
            reject_empty_text: config.run.reject_empty_text,
        };
        Ok(Self {
            config,
            stages,
            policy_raw,
            policy_upstream,
        })
    }

    pub(crate) fn input_storage(&self, stage: &StagePlan) -> Arc<dyn Storage> {
        match &stage.input {
            StageInput::Raw { storage, .. } => storage.clone(),
            StageInput::Upstream { position } => self.stages[*position].output.clone(),
        }
    }

    pub(crate) fn policy(&self, stage: &StagePlan) -> &ReadPolicy {
        match stage.input {
            StageInput::Raw { .. } => &self.policy_raw,
            StageInput::Upstream { .. } => &self.policy_upstream,
        }
    }

    /// The stage summary, if the stage is complete with its current config.
    pub fn completed(&self, stage: &StagePlan) -> Result<Option<StageManifest>> {
        if !stage.output.exists(STAGE_MANIFEST_KEY)? {
            return Ok(None);
        }
        let bytes = stage.output.read_all(STAGE_MANIFEST_KEY)?;
        let manifest = StageManifest::from_json(&stage.output.url_of(STAGE_MANIFEST_KEY), &bytes)?;
        Ok((manifest.config_hash == stage.config_hash).then_some(manifest))
    }

    /// The stage's input shards, sorted; their positions never depend on tasks.
    pub fn input_shards(&self, stage: &StagePlan) -> Result<Vec<InputShard>> {
        match &stage.input {
            StageInput::Upstream { position } => {
                let upstream = &self.stages[*position];
                let Some(summary) = self.completed(upstream)? else {
                    return Err(Error::NotReady(format!(
                        "stage '{}' reads the output of stage '{}', which is not complete with the current config; \
                         run `thresher run {} --stage {}` first",
                        stage.name,
                        upstream.name,
                        self.config.path.display(),
                        upstream.name
                    )));
                };
                let sizes: HashMap<String, u64> =
                    upstream.output.list("")?.into_iter().map(|o| (o.key, o.size)).collect();
                // A partitioned stage's files are `<field>=<value>/<shard>`:
                // each is a shard of the next stage, which keeps the folders.
                let names: Vec<String> = match upstream.partition_by {
                    Some(_) => summary.outputs.iter().map(|o| o.name.clone()).collect(),
                    None => summary.shards.clone(),
                };
                Ok(names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| InputShard {
                        index: i as u32,
                        key: name.clone(),
                        size: sizes.get(name).copied().unwrap_or(0),
                        format: Format::Jsonl,
                        output_name: name.clone(),
                    })
                    .collect())
            }
            StageInput::Raw { storage, single_key } => {
                let objects = match single_key {
                    Some(key) => storage.list(key)?.into_iter().filter(|o| &o.key == key).collect(),
                    None => storage.list("")?,
                };
                raw_input_shards(objects, self.config.input.format.fixed(), &stage.input_url)
            }
        }
    }
}

/// Chooses the input files and names their outputs. Files under `_` or `.`
/// folders are never data; files of unknown format are skipped with a warning.
fn raw_input_shards(objects: Vec<ObjectMeta>, fixed: Option<Format>, url: &str) -> Result<Vec<InputShard>> {
    let mut skipped = Vec::new();
    let mut shards = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for object in objects {
        if object.key.split('/').any(|part| part.starts_with(['_', '.'])) {
            continue;
        }
        let Some(format) = fixed.or_else(|| format_of(&object.key)) else {
            skipped.push(object.key);
            continue;
        };
        let output_name = format!("{}.jsonl.zst", shard_stem(&object.key));
        if let Some(other) = names.insert(output_name.clone(), object.key.clone()) {
            return Err(Error::Input(format!(
                "input files '{other}' and '{}' would both be written as '{output_name}'; rename one of them",
                object.key
            )));
        }
        shards.push(InputShard {
            index: 0,
            key: object.key,
            size: object.size,
            format,
            output_name,
        });
    }
    if !skipped.is_empty() {
        tracing::warn!(
            "skipping {} input file(s) whose names have no known format (set [input] format to read them): {}",
            skipped.len(),
            skipped.join(", ")
        );
    }
    if shards.is_empty() {
        return Err(Error::Input(format!(
            "no input files found at '{url}' (looked for .jsonl, .json, .ndjson, .parquet, .wet, .warc.wet, \
             optionally .gz or .zst)"
        )));
    }
    shards.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, shard) in shards.iter_mut().enumerate() {
        shard.index = i as u32;
    }
    Ok(shards)
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer it is given.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Measures wall and CPU time of work done on the current thread.
pub(crate) struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: thread_cpu_seconds(),
        }
    }
    pub(crate) fn stop(&self) -> Timing {
        Timing {
            wall_seconds: self.wall.elapsed().as_secs_f64(),
            cpu_seconds: thread_cpu_seconds() - self.cpu,
        }
    }
}

/// What one `thresher run` did, for the closing log line and for tests.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub stages: Vec<StageReport>,
}

#[derive(Debug, Default, Clone)]
pub struct StageReport {
    pub stage: String,
    /// Per step: (step, units done now, units skipped as already done).
    pub steps: Vec<(String, usize, usize)>,
    pub complete: bool,
}

impl Pipeline {
    /// Runs the stages (or the one stage / step) the options name.
    pub fn run(&self, options: &RunOptions) -> Result<RunReport> {
        let selected: Vec<&StagePlan> = match &options.stage {
            Some(name) => vec![&self.stages[self.config.stage_index(name)?]],
            None => {
                if options.step.is_some() {
                    return Err(Error::Input("--step needs --stage: a step belongs to one stage".into()));
                }
                self.stages.iter().collect()
            }
        };
        // Build every selected stage that has work left before running the
        // first: a checkpoint or tokenizer that cannot load fails now, not
        // after hours of earlier stages. Stages not selected are never built,
        // so a task of `ingest` neither loads the quality model nor needs
        // the GPU that `quality`'s tasks run on.
        for stage in &selected {
            // An output folder that cannot be read is reported by the stage's
            // own run below, with its name.
            if !matches!(self.completed(stage), Ok(Some(_))) {
                stage.stage()?;
            }
        }
        let mut report = RunReport::default();
        for stage in selected {
            let stage_report = self.run_stage(stage, options)?;
            let complete = stage_report.complete;
            report.stages.push(stage_report);
            if !complete {
                // This task did its share; the stages after it start once the
                // other tasks have done theirs.
                tracing::info!(
                    "stage '{}' is waiting for other tasks; later stages were not started by this task",
                    stage.name
                );
                break;
            }
        }
        Ok(report)
    }

    fn run_stage(&self, stage: &StagePlan, options: &RunOptions) -> Result<StageReport> {
        let steps = stage.steps();
        if let Some(step) = &options.step {
            if !steps.contains(&step.as_str()) {
                return Err(Error::Input(format!(
                    "stage '{}' ({}) has no step '{step}'; its steps are: {}",
                    stage.name,
                    stage.kind,
                    steps.join(", ")
                )));
            }
        }
        let mut report = StageReport {
            stage: stage.name.clone(),
            ..Default::default()
        };
        self.ensure_lock(stage, options.force).map_err(|e| match e {
            Error::Io { .. } | Error::Storage(_) => Error::Storage(format!(
                "stage '{}': cannot use its output folder {}: {e}",
                stage.name, stage.output_url
            )),
            other => other,
        })?;
        if self.completed(stage)?.is_some() {
            tracing::info!(
                "stage '{}' is already complete with this config; skipping it",
                stage.name
            );
            // A run killed right after the summary was written may have left these.
            self.clean_scratch(stage)?;
            report.complete = true;
            return Ok(report);
        }
        let shards = self.input_shards(stage)?;
        for step in steps {
            if options.step.as_ref().is_some_and(|s| s != step) {
                continue;
            }
            let result = match (stage.stage()?, *step) {
                (Stage::Document(doc_stage), "apply") => self.apply_step(
                    stage,
                    &shards,
                    options.tasks,
                    &|docs, _, stats| Ok(docs.iter_mut().map(|doc| doc_stage.process(doc, stats)).collect()),
                    None,
                ),
                (Stage::Batch(batch_stage), "apply") => self.apply_step(
                    stage,
                    &shards,
                    options.tasks,
                    &|docs, _, stats| Ok(batch_stage.process_batch(docs, stats)?),
                    None,
                ),
                (Stage::Global(global), "scan") => self.scan_step(stage, global.as_ref(), &shards, options.tasks),
                (Stage::Global(global), "resolve") => self.resolve_step(stage, global.as_ref(), &shards, options.tasks),
                (Stage::Global(global), "cluster") => self.cluster_step(stage, global.as_ref(), options.tasks),
                (Stage::Global(global), "apply") => self.require_resolved(stage, global.as_ref()).and_then(|()| {
                    let global = global.as_ref();
                    self.apply_step(
                        stage,
                        &shards,
                        options.tasks,
                        &|docs, contexts, stats| {
                            Ok(docs
                                .iter_mut()
                                .zip(contexts)
                                .map(|(doc, context)| global.apply(doc, context.verdicts, stats))
                                .collect())
                        },
                        Some(global),
                    )
                }),
                (Stage::Pack(pack), "tokenize") => self.tokenize_step(stage, pack, &shards, options.tasks),
                (Stage::Pack(pack), "pack") => self.pack_step(stage, pack, &shards, options.tasks),
                _ => unreachable!("steps() lists only these"),
            };
            let (done, skipped) = match result {
                // Running all steps as one of several tasks: a barrier that
                // other tasks have not passed yet is a wait, not a failure.
                Err(Error::NotReady(why)) if options.step.is_none() && options.tasks.count > 1 => {
                    tracing::info!("{why}");
                    return Ok(report);
                }
                other => other?,
            };
            report.steps.push((step.to_string(), done, skipped));
        }
        report.complete = self.finalize(stage, &shards, options)?;
        Ok(report)
    }

    /// Writes or checks `_manifest/config.json`, so that no folder ever mixes
    /// outputs of two configurations.
    fn ensure_lock(&self, stage: &StagePlan, force: bool) -> Result<()> {
        let out = &stage.output;
        if out.exists(STAGE_LOCK_KEY)? {
            let bytes = out.read_all(STAGE_LOCK_KEY)?;
            let lock: StageLock = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Input(format!(
                    "{}: not a thresher stage lock: {e}",
                    out.url_of(STAGE_LOCK_KEY)
                ))
            })?;
            if lock.config_hash == stage.config_hash {
                return Ok(());
            }
            if !force {
                return Err(Error::ConfigChanged(format!(
                    "stage '{}' at {} was built with another configuration (config hash {}, now {}): \
                     its config or an earlier stage's changed. Rerun with --force to delete its outputs and \
                     rebuild it, or restore the previous config.",
                    stage.name, stage.output_url, lock.config_hash, stage.config_hash
                )));
            }
            tracing::warn!(
                "--force: deleting the outputs of stage '{}' at {}",
                stage.name,
                stage.output_url
            );
            out.delete_prefix("")?;
        } else {
            let foreign: Vec<_> = out
                .list("")?
                .into_iter()
                .filter(|o| !o.key.starts_with(TEMP_PREFIX))
                .collect();
            if !foreign.is_empty() {
                // Another task of the same step may have written the lock
                // (and started writing) between our two looks.
                if out.exists(STAGE_LOCK_KEY)? {
                    return self.ensure_lock(stage, force);
                }
                if !force {
                    return Err(Error::ConfigChanged(format!(
                        "stage '{}': folder {} holds {} file(s) but no thresher stage lock ({}); \
                         choose another [output] path, or rerun with --force to delete them",
                        stage.name,
                        stage.output_url,
                        foreign.len(),
                        STAGE_LOCK_KEY
                    )));
                }
                out.delete_prefix("")?;
            }
        }
        let lock = StageLock {
            stage: stage.name.clone(),
            config_hash: stage.config_hash.clone(),
            config: stage.config_json.clone(),
            version: TOOL_VERSION.into(),
        };
        out.write_all(STAGE_LOCK_KEY, &serde_json::to_vec_pretty(&lock).expect("json"))
    }

    pub(crate) fn clean_scratch(&self, stage: &StagePlan) -> Result<()> {
        stage.output.delete_prefix(WORK_PREFIX)?;
        stage.output.delete_prefix(TEMP_PREFIX)
    }

    /// Runs `work` over this task's units in parallel; returns (done, skipped).
    pub(crate) fn for_each_unit<T: WorkUnit>(
        &self,
        stage: &StagePlan,
        step: &str,
        units: &[T],
        tasks: Tasks,
        is_done: impl Fn(&T) -> Result<bool> + Sync,
        work: impl Fn(&T, &Progress) -> Result<()> + Sync,
    ) -> Result<(usize, usize)> {
        let mut todo = Vec::new();
        let mut skipped = 0;
        for (i, unit) in units.iter().enumerate() {
            if !tasks.owns(i) {
                continue;
            }
            if is_done(unit)? {
                skipped += 1;
            } else {
                todo.push(unit);
            }
        }
        let progress = Progress::new(
            &format!("{} {}", stage.name, step),
            todo.iter().map(|u| u.progress_size()).sum(),
        );
        tracing::info!(
            "stage '{}' step {step}: {} unit(s) to do, {skipped} already done (task {} of {})",
            stage.name,
            todo.len(),
            tasks.index,
            tasks.count
        );
        let results: Vec<Result<()>> = todo.par_iter().map(|unit| work(unit, &progress)).collect();
        progress.finish();
        for result in results {
            result?;
        }
        Ok((todo.len(), skipped))
    }
}

/// A unit of a step's work: an input shard, or a partition of `resolve`.
pub(crate) trait WorkUnit: Sync {
    /// How much of the progress bar the unit fills (bytes for shards).
    fn progress_size(&self) -> u64;
}

impl WorkUnit for InputShard {
    fn progress_size(&self) -> u64 {
        self.size
    }
}

impl WorkUnit for u32 {
    fn progress_size(&self) -> u64 {
        1
    }
}

/// Where a shard's kept documents go: a `jsonl.zst` shard for document
/// stages, token files for `pack`.
pub(crate) trait KeptSink {
    fn keep(&mut self, doc: &Document, stats: &mut StageStats) -> Result<()>;
    /// Publishes what was written; the manifest lists the returned objects.
    fn commit(self: Box<Self>) -> Result<Vec<ObjectInfo>>;
}

impl KeptSink for JsonlZstWriter {
    fn keep(&mut self, doc: &Document, _stats: &mut StageStats) -> Result<()> {
        self.write_document(doc)
    }
    fn commit(self: Box<Self>) -> Result<Vec<ObjectInfo>> {
        Ok(vec![JsonlZstWriter::commit(*self)?])
    }
}

/// Kept documents split by a metadata field: `<field>=<value>/<shard name>`,
/// one writer per value met. The value is the field's string (other JSON
/// values as JSON text; `none` when missing), with anything but letters,
/// digits, `-`, `_` and `.` replaced by `_` so it is a safe folder name.
struct PartitionedSink<'a> {
    storage: &'a dyn Storage,
    field: &'a str,
    output_name: &'a str,
    level: i32,
    writers: BTreeMap<String, JsonlZstWriter>,
}

/// The folder of a document under `partition_by = field`.
fn partition_folder(field: &str, metadata: &serde_json::Map<String, Value>) -> String {
    let text = match thresher_stages::filter::metadata_value(metadata, field) {
        None | Some(Value::Null) => "none".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let safe: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{field}={safe}")
}

impl KeptSink for PartitionedSink<'_> {
    fn keep(&mut self, doc: &Document, _stats: &mut StageStats) -> Result<()> {
        let folder = partition_folder(self.field, &doc.metadata);
        let writer = match self.writers.entry(folder) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let key = format!("{}/{}", e.key(), self.output_name);
                e.insert(JsonlZstWriter::create(self.storage, &key, self.level)?)
            }
        };
        writer.write_document(doc)
    }

    fn commit(self: Box<Self>) -> Result<Vec<ObjectInfo>> {
        self.writers.into_values().map(JsonlZstWriter::commit).collect()
    }
}

/// Per-document context given to the apply closure.
pub struct DocContext<'v> {
    pub position: Position,
    /// The verdicts of a global stage's `resolve` step about this document
    /// (none, one, or one per partition that had something to say), in
    /// partition order.
    pub verdicts: &'v [Vec<u8>],
}

/// Decides about a batch of documents (in order), with one context each.
type Decide<'a> = dyn Fn(&mut [Document], &[DocContext<'_>], &mut StageStats) -> Result<Vec<Decision>> + Sync + 'a;

/// Records per batch handed to a stage, and the text bytes that end a batch
/// early (a few huge documents must not make a huge batch).
const BATCH_RECORDS: usize = 1024;
const BATCH_TEXT_BYTES: usize = 64 << 20;

/// A batch of records with the stage's decisions about its documents (in
/// order) and the stage's stats for them.
type DecidedBatch = (Vec<(u64, Item)>, Vec<Document>, Vec<Decision>, StageStats);

/// Writes one shard's batches as the stage decided about them: kept
/// documents to the output, rejected ones and bad records to their sidecars,
/// counting everything.
struct ShardWriter<'a> {
    out: &'a dyn Storage,
    stage_name: &'a str,
    output_name: &'a str,
    level: i32,
    input_url: &'a str,
    progress: &'a Progress,
    output: Box<dyn KeptSink + Send + 'a>,
    rejected: Option<JsonlZstWriter>,
    quarantine: Option<JsonlZstWriter>,
    counts: Counts,
    stats: StageStats,
}

impl ShardWriter<'_> {
    fn write_batch(&mut self, (batch, docs, decisions, stage_stats): DecidedBatch) -> Result<()> {
        self.stats += &stage_stats;
        let mut decided = docs.into_iter().zip(decisions);
        for (index, item) in batch {
            self.counts.documents_in += 1;
            match item {
                Item::Bad(bad) => {
                    if self.quarantine.is_none() {
                        let key = format!("{QUARANTINE_PREFIX}{}", self.output_name);
                        self.quarantine = Some(JsonlZstWriter::create(self.out, &key, self.level)?);
                    }
                    self.counts.quarantined += 1;
                    self.counts.quarantined_bytes += bad.raw.len() as u64;
                    tracing::debug!("{}: record {index} quarantined: {}", self.input_url, bad.reason);
                    let line = quarantine_line(self.input_url, index, &bad);
                    self.quarantine.as_mut().unwrap().write_value(&line)?;
                }
                Item::Empty(doc) => {
                    self.counts.text_bytes_in += doc.text.len() as u64;
                    self.reject(&doc, "empty_text", &Value::Null)?;
                }
                Item::Document(_) => {
                    let (doc, decision) = decided.next().expect("one decision per document");
                    self.counts.text_bytes_in += doc.text.len() as u64;
                    // Per-language counts for every stage once documents
                    // carry a language: what `thresher report` shows as
                    // survival per language.
                    let lang = doc.metadata.get("lang").and_then(Value::as_str);
                    if let Some(lang) = lang {
                        self.stats.add("documents_in_by_lang", lang, 1);
                        self.stats.add("text_bytes_in_by_lang", lang, doc.text.len() as u64);
                    }
                    match decision {
                        Decision::Keep => {
                            self.counts.documents_out += 1;
                            self.counts.text_bytes_out += doc.text.len() as u64;
                            if let Some(lang) = lang {
                                self.stats.add("documents_out_by_lang", lang, 1);
                                self.stats.add("text_bytes_out_by_lang", lang, doc.text.len() as u64);
                            }
                            self.output.keep(&doc, &mut self.stats)?;
                        }
                        Decision::Drop { reason, detail } => self.reject(&doc, reason, &detail)?,
                    }
                }
            }
            if index % 1024 == 1023 {
                self.progress.add_documents(1024);
            }
        }
        Ok(())
    }

    fn reject(&mut self, doc: &Document, reason: &'static str, detail: &Value) -> Result<()> {
        if self.rejected.is_none() {
            let key = format!("{REJECTED_PREFIX}{}", self.output_name);
            self.rejected = Some(JsonlZstWriter::create(self.out, &key, self.level)?);
        }
        self.counts.reject(reason, 1, doc.text.len() as u64);
        let line = rejected_line(doc, self.stage_name, reason, detail);
        self.rejected.as_mut().unwrap().write_value(&line)
    }
}

/// Sends `records` in batches of [`BATCH_RECORDS`] (or [`BATCH_TEXT_BYTES`])
/// until they end or the receiver hangs up (the shard failed); returns the
/// CPU seconds this took.
fn read_batches(mut records: ShardRecords, sender: std::sync::mpsc::SyncSender<Vec<(u64, Item)>>) -> f64 {
    let start = thread_cpu_seconds();
    loop {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        while batch.len() < BATCH_RECORDS && batch_bytes < BATCH_TEXT_BYTES {
            let Some((index, item)) = records.next() else { break };
            if let Item::Document(doc) | Item::Empty(doc) = &item {
                batch_bytes += doc.text.len();
            }
            batch.push((index, item));
        }
        if batch.is_empty() || sender.send(batch).is_err() {
            return thread_cpu_seconds() - start;
        }
    }
}

impl Pipeline {
    fn apply_step(
        &self,
        stage: &StagePlan,
        shards: &[InputShard],
        tasks: Tasks,
        decide: &Decide,
        global: Option<&dyn GlobalStage>,
    ) -> Result<(usize, usize)> {
        let input = self.input_storage(stage);
        self.for_each_unit(
            stage,
            "apply",
            shards,
            tasks,
            |shard| self.shard_done(stage, shard),
            |shard, progress| {
                let verdicts = match global {
                    Some(g) => self.verdicts_for(stage, g, shard)?,
                    None => HashMap::new(),
                };
                let level = self.config.output.compression_level;
                let output: Box<dyn KeptSink + Send> = match &stage.partition_by {
                    None => Box::new(JsonlZstWriter::create(
                        stage.output.as_ref(),
                        &shard.output_name,
                        level,
                    )?),
                    Some(field) => Box::new(PartitionedSink {
                        storage: stage.output.as_ref(),
                        field,
                        output_name: &shard.output_name,
                        level,
                        writers: BTreeMap::new(),
                    }),
                };
                self.process_shard(stage, input.as_ref(), shard, &verdicts, decide, output, progress)
            },
        )
    }

    pub(crate) fn shard_done(&self, stage: &StagePlan, shard: &InputShard) -> Result<bool> {
        let key = shard_manifest_key(&shard.output_name);
        if !stage.output.exists(&key)? {
            return Ok(false);
        }
        let manifest = ShardManifest::from_json(&stage.output.url_of(&key), &stage.output.read_all(&key)?)?;
        Ok(manifest.config_hash == stage.config_hash)
    }

    /// Reads one shard, applies the stage, writes kept documents to `output`,
    /// the sidecars and, last, the shard manifest.
    #[allow(clippy::too_many_arguments)] // one call site per stage shape
    pub(crate) fn process_shard(
        &self,
        stage: &StagePlan,
        input: &dyn Storage,
        shard: &InputShard,
        verdicts: &HashMap<u64, Vec<Vec<u8>>>,
        decide: &Decide,
        output: Box<dyn KeptSink + Send + '_>,
        progress: &Progress,
    ) -> Result<()> {
        let clock = Stopwatch::start();
        let out = stage.output.as_ref();
        let input_url = input.url_of(&shard.key);
        let records = ShardRecords::open(input, shard, self.policy(stage), Some(progress.clone()))?;
        let digest = records.digest.clone();
        let skipped = records.skipped.clone();
        let mut writer = ShardWriter {
            out,
            stage_name: &stage.name,
            output_name: &shard.output_name,
            level: self.config.output.compression_level,
            input_url: &input_url,
            progress,
            output,
            rejected: None,
            quarantine: None,
            counts: Counts::default(),
            stats: StageStats::default(),
        };
        // Three threads per shard, one batch of records (bounded in count and
        // text bytes) apart: one reads and parses, this one has the stage
        // decide about a batch's documents at once, one writes them in order.
        // Reading and writing overlap the stage's work (for `quality`, the
        // GPU's).
        let (batch_sender, batches) = std::sync::mpsc::sync_channel::<Vec<(u64, Item)>>(1);
        let (decided_sender, decided_batches) = std::sync::mpsc::sync_channel::<DecidedBatch>(1);
        let (mut writer, helpers_cpu_seconds) = std::thread::scope(|scope| -> Result<(ShardWriter, f64)> {
            let reader = scope.spawn(move || read_batches(records, batch_sender));
            let writing = scope.spawn(move || -> Result<(ShardWriter, f64)> {
                let start = thread_cpu_seconds();
                for decided in decided_batches {
                    writer.write_batch(decided)?;
                }
                Ok((writer, thread_cpu_seconds() - start))
            });
            for mut batch in batches {
                let mut docs = Vec::new();
                let mut contexts = Vec::new();
                for (index, item) in &mut batch {
                    if let Item::Document(doc) = item {
                        contexts.push(DocContext {
                            position: Position {
                                shard: shard.index,
                                record: *index,
                            },
                            verdicts: verdicts.get(index).map(Vec::as_slice).unwrap_or(&[]),
                        });
                        docs.push(std::mem::take(doc));
                    }
                }
                let mut stats = StageStats::default();
                let decisions = decide(&mut docs, &contexts, &mut stats)?;
                assert_eq!(
                    decisions.len(),
                    docs.len(),
                    "a stage must decide about every document of a batch"
                );
                // A closed channel means the writer stopped on an error, which
                // its join below returns.
                if decided_sender.send((batch, docs, decisions, stats)).is_err() {
                    break;
                }
            }
            drop(decided_sender);
            let (writer, writing_cpu) = writing.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            let reading_cpu = reader.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            // The reader's and writer's CPU time belong to the shard's too.
            Ok((writer, writing_cpu + reading_cpu))
        })?;
        let (counts, mut stats) = (std::mem::take(&mut writer.counts), std::mem::take(&mut writer.stats));
        for (reason, n) in skipped.lock().unwrap().iter() {
            stats.add("input_records_skipped", reason, *n);
        }
        if counts.quarantined > 0 {
            tracing::warn!(
                "{input_url}: {} record(s) quarantined to {}",
                counts.quarantined,
                out.url_of(&format!("{QUARANTINE_PREFIX}{}", shard.output_name))
            );
        }
        let mut outputs = writer.output.commit()?;
        for sidecar in [writer.rejected, writer.quarantine].into_iter().flatten() {
            outputs.push(sidecar.commit()?);
        }
        let mut timing = clock.stop();
        timing.cpu_seconds += helpers_cpu_seconds;
        let manifest = ShardManifest {
            stage: stage.name.clone(),
            config_hash: stage.config_hash.clone(),
            version: TOOL_VERSION.into(),
            shard: shard.output_name.clone(),
            inputs: vec![ObjectInfo {
                name: shard.key.clone(),
                size: digest.bytes(),
                xxh3: digest.xxh3_hex(),
            }],
            outputs,
            counts,
            stats,
            timing,
        };
        out.write_all(
            &shard_manifest_key(&shard.output_name),
            &serde_json::to_vec_pretty(&manifest).expect("json"),
        )
    }
}

/// One row of `thresher plan`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedStep {
    pub stage: String,
    pub kind: String,
    pub step: String,
    /// Units of work (shards, or partitions for `resolve`); `None` while the
    /// stage's input is not ready.
    pub units: Option<usize>,
    pub done: usize,
    pub tasks: Option<usize>,
    pub status: String,
}

impl Pipeline {
    /// What `thresher plan` shows: every stage's steps, their units of work,
    /// how many are done, and how many tasks would run them.
    pub fn plan(&self, tasks: usize) -> Result<Vec<PlannedStep>> {
        let mut rows = Vec::new();
        for stage in &self.stages {
            let complete = self.completed(stage)?.is_some();
            let lock_changed = match stage.output.exists(thresher_manifests::STAGE_LOCK_KEY)? {
                false => false,
                true => {
                    let lock: Option<StageLock> =
                        serde_json::from_slice(&stage.output.read_all(thresher_manifests::STAGE_LOCK_KEY)?).ok();
                    lock.is_none_or(|l| l.config_hash != stage.config_hash)
                }
            };
            let shards = if complete { None } else { self.input_shards(stage).ok() };
            let present: std::collections::BTreeSet<String> = if complete || lock_changed {
                Default::default()
            } else {
                stage.output.list("")?.into_iter().map(|o| o.key).collect()
            };
            for step in stage.steps() {
                // Step names tell the kind: only global stages scan, resolve
                // and cluster; only pack packs.
                let (units, done) = match (*step, &shards) {
                    (_, None) => (None, 0),
                    ("resolve", Some(_)) => {
                        let n = stage.config.partitions().unwrap_or(1) as usize;
                        (
                            Some(n),
                            present
                                .iter()
                                .filter(|k| k.starts_with(&format!("{WORK_PREFIX}resolve/")))
                                .count(),
                        )
                    }
                    ("pack", Some(_)) => (Some(1), usize::from(self.packed(stage)?.is_some())),
                    ("cluster", Some(_)) => (
                        Some(1),
                        usize::from(present.contains(&crate::global_steps::cluster_key())),
                    ),
                    ("scan", Some(s)) => (
                        Some(s.len()),
                        present
                            .iter()
                            .filter(|k| k.starts_with(&format!("{WORK_PREFIX}scan/")))
                            .count(),
                    ),
                    (_, Some(s)) => (
                        Some(s.len()),
                        s.iter()
                            .filter(|sh| present.contains(&shard_manifest_key(&sh.output_name)))
                            .count(),
                    ),
                };
                let status = if complete {
                    "complete".to_string()
                } else if lock_changed {
                    "config changed: needs --force".to_string()
                } else if units.is_none() {
                    match &stage.input {
                        StageInput::Upstream { position } => format!("waits for '{}'", self.stages[*position].name),
                        StageInput::Raw { .. } => "input not found".to_string(),
                    }
                } else if units == Some(done) {
                    "done".to_string()
                } else {
                    "to do".to_string()
                };
                rows.push(PlannedStep {
                    stage: stage.name.clone(),
                    kind: stage.kind.to_string(),
                    step: step.to_string(),
                    units,
                    done,
                    tasks: units.map(|u| u.min(tasks).max(1)),
                    status,
                });
            }
        }
        Ok(rows)
    }
}

/// The plan as a table.
pub fn render_plan(rows: &[PlannedStep]) -> String {
    let mut out = format!(
        "{:<16} {:<14} {:<8} {:>6} {:>6} {:>6}  {}\n",
        "stage", "kind", "step", "units", "done", "tasks", "status"
    );
    for r in rows {
        let opt = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
        out.push_str(&format!(
            "{:<16} {:<14} {:<8} {:>6} {:>6} {:>6}  {}\n",
            r.stage,
            r.kind,
            r.step,
            opt(r.units),
            r.done,
            opt(r.tasks),
            r.status
        ));
    }
    out
}
