//! `thresher inspect OUTPUT_ROOT`: a per-stage table, and a full check of what
//! the manifests claim: every listed object exists with its size and xxh3,
//! every shard and stage adds up (`in = out + rejected + quarantined`), the
//! stage summary equals the sum of its shards, each stage read what the one
//! before it wrote, and no data file lies outside every manifest.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use thresher_manifests::{
    shard_manifest_key, Counts, ShardManifest, StageLock, StageManifest, STAGE_LOCK_KEY, STAGE_MANIFEST_KEY,
};

use crate::error::Result;
use crate::storage::{open_url, Storage};

#[derive(Debug, Serialize)]
pub struct StageSummary {
    pub stage: String,
    pub kind: String,
    pub position: Option<usize>,
    /// `complete`, or why not.
    pub status: String,
    pub shards: usize,
    pub counts: Counts,
    /// Input records that were not documents (WARC captures of images,
    /// redirects), by reason: outside `counts`, which are of documents.
    pub skipped: BTreeMap<String, u64>,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub root: String,
    pub stages: Vec<StageSummary>,
    /// Everything found wrong; empty means every check passed.
    pub problems: Vec<String>,
    pub objects_verified: usize,
}

/// Inspects every stage folder under `root` (those holding a stage lock).
pub fn inspect(root: &str) -> Result<Inspection> {
    let storage = open_url(root)?;
    let all = storage.list("")?;
    let suffix = format!("/{STAGE_LOCK_KEY}");
    let stage_dirs: Vec<String> = all
        .iter()
        .filter_map(|o| o.key.strip_suffix(&suffix).map(str::to_string))
        .collect();
    let mut inspection = Inspection {
        root: root.to_string(),
        stages: Vec::new(),
        problems: Vec::new(),
        objects_verified: 0,
    };
    if stage_dirs.is_empty() {
        inspection.problems.push(format!(
            "no thresher stage folders under '{root}' (none holds {STAGE_LOCK_KEY})"
        ));
        return Ok(inspection);
    }
    let sizes: BTreeMap<&str, u64> = all.iter().map(|o| (o.key.as_str(), o.size)).collect();
    for dir in &stage_dirs {
        let summary = inspect_stage(storage.as_ref(), dir, &all, &sizes, &mut inspection)?;
        inspection.stages.push(summary);
    }
    inspection
        .stages
        .sort_by_key(|s| (s.position.unwrap_or(usize::MAX), s.stage.clone()));
    // Each stage must have read exactly what the stage before it wrote.
    for pair in inspection.stages.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.status == "complete" && b.status == "complete" && b.counts.documents_in != a.counts.documents_out {
            inspection.problems.push(format!(
                "stage '{}' read {} documents but stage '{}' before it wrote {}",
                b.stage, b.counts.documents_in, a.stage, a.counts.documents_out
            ));
        }
    }
    Ok(inspection)
}

fn inspect_stage(
    storage: &dyn Storage,
    dir: &str,
    all: &[crate::storage::ObjectMeta],
    sizes: &BTreeMap<&str, u64>,
    inspection: &mut Inspection,
) -> Result<StageSummary> {
    let key = |k: &str| format!("{dir}/{k}");
    let problems = &mut inspection.problems;
    let lock: Option<StageLock> = serde_json::from_slice(&storage.read_all(&key(STAGE_LOCK_KEY))?).ok();
    let mut summary = StageSummary {
        stage: dir.to_string(),
        kind: String::new(),
        position: None,
        status: String::new(),
        shards: 0,
        counts: Counts::default(),
        skipped: Default::default(),
        wall_seconds: 0.0,
        cpu_seconds: 0.0,
    };
    let stage_key = key(STAGE_MANIFEST_KEY);
    if !sizes.contains_key(stage_key.as_str()) {
        let shard_manifests = all
            .iter()
            .filter(|o| o.key.starts_with(&key("_manifest/")) && o.key != key(STAGE_LOCK_KEY))
            .count();
        summary.status = format!("incomplete ({shard_manifests} shard manifests, no stage.json)");
        problems.push(format!("stage folder '{dir}' is incomplete: run its remaining tasks"));
        return Ok(summary);
    }
    let manifest = StageManifest::from_json(&storage.url_of(&stage_key), &storage.read_all(&stage_key)?)?;
    summary.stage = manifest.stage.clone();
    summary.kind = manifest.kind.clone();
    summary.position = Some(manifest.position);
    summary.shards = manifest.shards.len();
    summary.wall_seconds = manifest.timing.wall_seconds;
    summary.cpu_seconds = manifest.timing.cpu_seconds;
    summary.counts = manifest.counts.clone();
    summary.skipped = manifest
        .stats
        .0
        .get("input_records_skipped")
        .cloned()
        .unwrap_or_default();
    if let Some(lock) = &lock {
        if lock.config_hash != manifest.config_hash {
            problems.push(format!(
                "stage '{dir}': stage.json and config.json disagree on the config hash"
            ));
        }
    }
    if let Err(e) = manifest.counts.check() {
        problems.push(format!("stage '{dir}': {e}"));
    }
    let mut sum = Counts::default();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for shard in &manifest.shards {
        let mkey = key(&shard_manifest_key(shard));
        if !sizes.contains_key(mkey.as_str()) {
            problems.push(format!("stage '{dir}': shard manifest {mkey} is missing"));
            continue;
        }
        let shard_manifest = ShardManifest::from_json(&storage.url_of(&mkey), &storage.read_all(&mkey)?)?;
        if shard_manifest.config_hash != manifest.config_hash {
            problems.push(format!(
                "{mkey}: config hash {} differs from the stage's {}",
                shard_manifest.config_hash, manifest.config_hash
            ));
        }
        if let Err(e) = shard_manifest.counts.check() {
            problems.push(format!("{mkey}: {e}"));
        }
        sum += &shard_manifest.counts;
        for object in &shard_manifest.outputs {
            let okey = key(&object.name);
            verify_object(
                storage,
                &okey,
                object,
                &mkey,
                sizes,
                problems,
                &mut listed,
                &mut inspection.objects_verified,
            )?;
        }
    }
    for object in &manifest.outputs {
        let okey = key(&object.name);
        verify_object(
            storage,
            &okey,
            object,
            &stage_key,
            sizes,
            problems,
            &mut listed,
            &mut inspection.objects_verified,
        )?;
    }
    if sum != manifest.counts {
        problems.push(format!(
            "stage '{dir}': stage.json counts differ from the sum of its shard manifests"
        ));
    }
    // Data files nobody vouches for: leftovers, or files put there by hand.
    for object in all {
        let Some(rel) = object.key.strip_prefix(&format!("{dir}/")) else {
            continue;
        };
        let is_data = rel.ends_with(".jsonl.zst") && !rel.starts_with("_tmp/") && !rel.starts_with("_work/");
        if is_data && !listed.contains(&object.key) {
            problems.push(format!("{}: not listed in any manifest of stage '{dir}'", object.key));
        }
    }
    summary.status = "complete".into();
    Ok(summary)
}

/// Checks one object against its manifest entry (present, same size, same
/// xxh3) and records it as vouched for.
#[allow(clippy::too_many_arguments)]
fn verify_object(
    storage: &dyn Storage,
    okey: &str,
    object: &thresher_manifests::ObjectInfo,
    listed_in: &str,
    sizes: &BTreeMap<&str, u64>,
    problems: &mut Vec<String>,
    listed: &mut BTreeSet<String>,
    verified: &mut usize,
) -> Result<()> {
    listed.insert(okey.to_string());
    match sizes.get(okey) {
        None => problems.push(format!("{okey}: listed in {listed_in} but missing")),
        Some(&size) if size != object.size => problems.push(format!(
            "{okey}: size {size} differs from the manifest's {}",
            object.size
        )),
        Some(_) => {
            let bytes = storage.read_all(okey)?;
            let actual = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
            if actual != object.xxh3 {
                problems.push(format!(
                    "{okey}: xxh3 {actual} differs from the manifest's {}",
                    object.xxh3
                ));
            }
            *verified += 1;
        }
    }
    Ok(())
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

/// The human-readable table.
pub fn render(inspection: &Inspection) -> String {
    let header = [
        "stage",
        "kind",
        "shards",
        "docs in",
        "out",
        "rejected",
        "quarantined",
        "MB in",
        "MB out",
        "wall s",
        "cpu s",
        "status",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for s in &inspection.stages {
        let c = &s.counts;
        rows.push(vec![
            s.stage.clone(),
            s.kind.clone(),
            s.shards.to_string(),
            c.documents_in.to_string(),
            c.documents_out.to_string(),
            c.rejected_total().to_string(),
            c.quarantined.to_string(),
            mb(c.text_bytes_in),
            mb(c.text_bytes_out),
            format!("{:.2}", s.wall_seconds),
            format!("{:.2}", s.cpu_seconds),
            s.status.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i < 2 || i == row.len() - 1 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
            out.push('\n');
        }
    }
    reason_section(&mut out, "rejected by reason", &inspection.stages, |s| {
        &s.counts.rejected
    });
    reason_section(
        &mut out,
        "input records that are not documents, by reason (not in docs in)",
        &inspection.stages,
        |s| &s.skipped,
    );
    out.push('\n');
    if inspection.problems.is_empty() {
        out.push_str(&format!(
            "OK: {} objects verified against their manifests; every count adds up.\n",
            inspection.objects_verified
        ));
    } else {
        out.push_str(&format!("{} problem(s):\n", inspection.problems.len()));
        for p in &inspection.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

/// A titled section with one line per stage that has any of `counts`.
fn reason_section(
    out: &mut String,
    title: &str,
    stages: &[StageSummary],
    counts: impl Fn(&StageSummary) -> &BTreeMap<String, u64>,
) {
    let lines: Vec<String> = stages
        .iter()
        .filter(|s| !counts(s).is_empty())
        .map(|s| {
            let list: Vec<String> = counts(s).iter().map(|(r, n)| format!("{r} {n}")).collect();
            format!("  {}: {}", s.stage, list.join(", "))
        })
        .collect();
    if !lines.is_empty() {
        out.push_str(&format!("\n{title}:\n"));
        out.push_str(&lines.join("\n"));
        out.push('\n');
    }
}

/// Text shown of each sampled document.
const SAMPLE_TEXT_CHARS: usize = 200;

/// One rejected (or quarantined) record, as `inspect --samples` shows it.
#[derive(Debug, Serialize)]
pub struct RejectedSample {
    pub id: Option<String>,
    /// The start of the text (quarantined: of the raw record), one line.
    pub text_start: String,
    /// What the stage recorded about its decision.
    pub detail: serde_json::Value,
    /// The sidecar file it is in.
    pub file: String,
}

/// Every rejection reason of a stage, how many records it took, and the
/// first `k` of them (sidecar files in key order, records in file order).
#[derive(Debug, Serialize)]
pub struct ReasonSamples {
    pub reason: String,
    pub records: u64,
    pub samples: Vec<RejectedSample>,
}

/// Reads the stage's `_rejected/` and `_quarantine/` sidecars under `root`
/// (through the storage trait): `k` samples per reason, quarantined records
/// under `quarantined: <why>`.
pub fn rejected_samples(root: &str, stage: &str, k: usize) -> Result<Vec<ReasonSamples>> {
    use std::io::BufRead;
    let storage = open_url(root)?;
    if !storage.exists(&format!("{stage}/{STAGE_LOCK_KEY}"))? {
        return Err(crate::error::Error::Input(format!(
            "no stage '{stage}' under '{root}' (no {stage}/{STAGE_LOCK_KEY})"
        )));
    }
    let mut by_reason: BTreeMap<String, ReasonSamples> = BTreeMap::new();
    for prefix in [crate::runner::REJECTED_PREFIX, crate::runner::QUARANTINE_PREFIX] {
        for object in storage.list(&format!("{stage}/{prefix}"))? {
            let url = storage.url_of(&object.key);
            let decoder = zstd::stream::read::Decoder::new(storage.open(&object.key)?)
                .map_err(|e| crate::error::Error::Storage(format!("{url}: cannot decompress: {e}")))?;
            for (n, line) in std::io::BufReader::new(decoder).lines().enumerate() {
                let line = line.map_err(|e| crate::error::Error::Storage(format!("{url}: line {}: {e}", n + 1)))?;
                let record: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| crate::error::Error::Input(format!("{url}: line {}: not JSON: {e}", n + 1)))?;
                let (reason, id, text, detail) = if prefix == crate::runner::REJECTED_PREFIX {
                    (
                        record["rejection"]["reason"].as_str().unwrap_or("unknown").to_string(),
                        record["id"].as_str().map(str::to_string),
                        record["text"].as_str().unwrap_or("").to_string(),
                        record["rejection"]["detail"].clone(),
                    )
                } else {
                    (
                        format!("quarantined: {}", record["reason"].as_str().unwrap_or("unknown")),
                        None,
                        record["raw"].as_str().unwrap_or("(binary: raw_base64)").to_string(),
                        serde_json::json!({ "file": record["file"], "record": record["record"], "line": record["line"] }),
                    )
                };
                let entry = by_reason.entry(reason.clone()).or_insert_with(|| ReasonSamples {
                    reason,
                    records: 0,
                    samples: Vec::new(),
                });
                entry.records += 1;
                if entry.samples.len() < k {
                    let start: String = text.chars().take(SAMPLE_TEXT_CHARS).collect();
                    entry.samples.push(RejectedSample {
                        id,
                        text_start: start.split_whitespace().collect::<Vec<_>>().join(" "),
                        detail,
                        file: url.clone(),
                    });
                }
            }
        }
    }
    Ok(by_reason.into_values().collect())
}

/// The samples as text: a block per reason.
pub fn render_samples(stage: &str, reasons: &[ReasonSamples]) -> String {
    if reasons.is_empty() {
        return format!("stage '{stage}' rejected and quarantined nothing\n");
    }
    let mut out = String::new();
    for r in reasons {
        out.push_str(&format!("{stage}: {} ({} records)\n", r.reason, r.records));
        for s in &r.samples {
            out.push_str(&format!(
                "  {}  {}\n    {}\n",
                s.id.as_deref().unwrap_or("-"),
                if s.detail.is_null() {
                    String::new()
                } else {
                    s.detail.to_string()
                },
                s.text_start
            ));
        }
    }
    out
}
