//! The pipeline configuration file (TOML).
//!
//! ```toml
//! [input]
//! path = "examples/data"        # folder, file, or file:// URL
//!
//! [output]
//! path = "out/quickstart"       # each stage writes <path>/<stage name>/
//!
//! [[stages]]
//! kind = "exact_dedup"
//!
//! [[stages]]
//! kind = "langid"
//! keep = ["en", "de"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thresher_stages::registry::StageConfig;

use crate::error::{Error, Result};
use crate::readers::Format;
use crate::web_page::HtmlFocus;
use thresher_stages::FieldNames;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// A folder (read recursively), one file, or a `file://` URL.
    pub path: String,
    /// `auto` picks each file's format from its name (`.jsonl`, `.json`,
    /// `.ndjson`, `.parquet`, `.wet`, `.warc.wet`, `.warc`, each optionally `.gz` or
    /// `.zst`) and skips files with other names; a fixed format reads every file.
    #[serde(default)]
    pub format: InputFormat,
    /// `source` given to documents that have none.
    #[serde(default)]
    pub source: Option<String>,
    /// Records longer than this are quarantined instead of held in memory.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// WARC inputs: how much of an HTML page becomes the document's text
    /// (`precision`, FineWeb's choice; `balanced`; `recall`).
    #[serde(default)]
    pub html_focus: HtmlFocus,
    /// JSONL and Parquet inputs: the field holding the text (RedPajama's
    /// `raw_content`, The Stack's `content`); default `text`.
    #[serde(default)]
    pub text_field: Option<String>,
    /// The field holding the document id; default `id`.
    #[serde(default)]
    pub id_field: Option<String>,
}

fn default_max_record_bytes() -> usize {
    256 << 20
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    #[default]
    Auto,
    Jsonl,
    Parquet,
    Wet,
    Warc,
}

impl InputConfig {
    /// The text and id fields, when either is not the default.
    pub fn field_names(&self) -> Option<FieldNames> {
        if self.text_field.is_none() && self.id_field.is_none() {
            return None;
        }
        let default = FieldNames::default();
        Some(FieldNames {
            text: self.text_field.clone().unwrap_or(default.text),
            id: self.id_field.clone().unwrap_or(default.id),
        })
    }
}

impl InputFormat {
    pub fn fixed(self) -> Option<Format> {
        match self {
            InputFormat::Auto => None,
            InputFormat::Jsonl => Some(Format::Jsonl),
            InputFormat::Parquet => Some(Format::Parquet),
            InputFormat::Wet => Some(Format::Wet),
            InputFormat::Warc => Some(Format::Warc),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Root of all stage outputs: a folder or `file://` URL.
    pub path: String,
    /// zstd level of output shards and sidecars (1 = fastest, 19 = smallest).
    #[serde(default = "default_compression_level")]
    pub compression_level: i32,
}

fn default_compression_level() -> i32 {
    3
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// A stage fails when more than this fraction of the records it read had
    /// to be quarantined (0.01 = 1%). Its outputs stay for inspection.
    pub max_error_rate: f64,
    /// Worker threads per task; 0 = one per core.
    pub threads: usize,
    /// Documents whose text is empty or only whitespace are rejected
    /// (`empty_text`) by the first stage that reads them.
    pub reject_empty_text: bool,
    /// Memory one `resolve` unit of a global stage may use (MB, counted as
    /// 4× its scan records' bytes); a larger partition is resolved in passes.
    /// Changes nothing in the results.
    pub resolve_memory_mb: f64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            max_error_rate: 0.01,
            threads: 0,
            reject_empty_text: true,
            resolve_memory_mb: 4096.0,
        }
    }
}

/// One stage as configured: its unique name (its output folder) and its kind's config.
#[derive(Debug, Clone)]
pub struct StageEntry {
    pub name: String,
    /// A metadata field (dotted path, e.g. `lang`) whose value splits the
    /// stage's output into `<field>=<value>/` folders.
    pub partition_by: Option<String>,
    /// How `thresher submit` schedules this stage (`[stages.submit]`).
    pub submit: StageSubmit,
    pub config: StageConfig,
}

/// `[stages.submit]`: where and how wide `thresher submit` runs one stage's
/// tasks, so that one pipeline can send `quality` to GPU nodes and the rest
/// to CPU nodes. Never part of the stage's config hash: where a task runs
/// does not change what it writes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSubmit {
    /// Tasks for each step of this stage instead of `--tasks` (a step with
    /// fewer units of work still gets fewer), e.g. one per GPU.
    pub tasks: Option<usize>,
    /// Slurm: options for this stage's `sbatch`, after those given after
    /// `--` on the command line, so that these win where both set one.
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Kubernetes: the container's resource limits (`"nvidia.com/gpu" = 1`).
    #[serde(default)]
    pub k8s_limits: BTreeMap<String, Quantity>,
    /// Kubernetes: the container's resource requests (`cpu = "8"`).
    #[serde(default)]
    pub k8s_requests: BTreeMap<String, Quantity>,
    /// Kubernetes: the pod's `nodeSelector` (labels of the nodes it may run on).
    #[serde(default)]
    pub k8s_node_selector: BTreeMap<String, String>,
    /// Kubernetes: the pod's `tolerations`, for nodes tainted for GPU work
    /// (`{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }`).
    #[serde(default)]
    pub k8s_tolerations: Vec<BTreeMap<String, String>>,
}

/// A Kubernetes resource quantity, written as a number (`1`) or a string
/// (`"500m"`, `"32Gi"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Integer(u64),
    Text(String),
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quantity::Integer(n) => write!(f, "{n}"),
            Quantity::Text(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    pub input: InputConfig,
    pub output: OutputConfig,
    pub run: RunConfig,
    pub stages: Vec<StageEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    input: InputConfig,
    output: OutputConfig,
    #[serde(default)]
    run: RunConfig,
    #[serde(default)]
    stages: Vec<toml::Table>,
}

impl PipelineConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read config", path.display(), e))?;
        Self::parse(path, &text)
    }

    /// Parses and validates; every problem found is reported at once.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let config_error = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| config_error(e.to_string()))?;
        let mut problems = Vec::new();
        let mut stages = Vec::new();
        let mut names = BTreeSet::new();
        for (i, mut table) in raw.stages.into_iter().enumerate() {
            let kind = table.get("kind").and_then(|k| k.as_str()).map(str::to_string);
            let Some(kind) = kind else {
                problems.push(format!(
                    "stages[{i}]: missing `kind` (one of: {})",
                    StageConfig::KINDS.join(", ")
                ));
                continue;
            };
            let name = match table.remove("name") {
                None => kind.clone(),
                Some(toml::Value::String(name)) => name,
                Some(other) => {
                    problems.push(format!(
                        "stages[{i}]: `name` must be a string, found {}",
                        other.type_str()
                    ));
                    continue;
                }
            };
            let partition_by = match table.remove("partition_by") {
                None => None,
                Some(toml::Value::String(field))
                    if !field.starts_with('_')
                        && field.split('.').all(|p| !p.is_empty())
                        && !field.contains(['/', '=']) =>
                {
                    Some(field)
                }
                Some(other) => {
                    problems.push(format!(
                        "stages[{i}]: `partition_by` must name a metadata field such as \"lang\", found {other:?}"
                    ));
                    continue;
                }
            };
            let submit = match table.remove("submit") {
                None => StageSubmit::default(),
                Some(value) => match StageSubmit::deserialize(value) {
                    Ok(submit) if submit.tasks == Some(0) => {
                        problems.push(format!("stage '{name}': submit.tasks must be at least 1"));
                        submit
                    }
                    Ok(submit) => submit,
                    Err(e) => {
                        problems.push(format!(
                            "stage '{name}': [stages.submit]: {} (keys: tasks, sbatch, k8s_limits, k8s_requests, k8s_node_selector, k8s_tolerations)",
                            e.to_string().trim()
                        ));
                        StageSubmit::default()
                    }
                },
            };
            if partition_by.is_some() && kind == "pack" {
                problems.push(format!(
                    "stages[{i}]: `partition_by` does not apply to pack, whose output is token rows"
                ));
            }
            if name.is_empty() || name.starts_with(['_', '.']) || name.contains(['/', '\\']) {
                problems.push(format!(
                    "stages[{i}]: name '{name}' must be non-empty, contain no '/' and not start with '_' or '.'"
                ));
            }
            if !names.insert(name.clone()) {
                problems.push(format!(
                    "stages[{i}]: a stage named '{name}' already exists; give one of them another `name`"
                ));
            }
            match StageConfig::deserialize(toml::Value::Table(table)) {
                Ok(config) => {
                    if let Err(e) = config.validate() {
                        problems.push(format!("stage '{name}': {e}"));
                    }
                    stages.push(StageEntry {
                        name,
                        partition_by,
                        submit,
                        config,
                    });
                }
                Err(e) => problems.push(format!(
                    "stage '{name}': {} (kinds: {})",
                    e.to_string().trim(),
                    StageConfig::KINDS.join(", ")
                )),
            }
        }
        if let Some(i) = stages.iter().position(|s| s.config.kind() == "pack") {
            if i + 1 != stages.len() {
                problems.push(format!(
                    "stage '{}' (pack) must be the last stage: its output is token rows, not documents",
                    stages[i].name
                ));
            }
        }
        if stages.is_empty() && problems.is_empty() {
            problems.push("no [[stages]]: add at least one".into());
        }
        if raw.run.resolve_memory_mb.is_nan() || raw.run.resolve_memory_mb <= 0.0 {
            problems.push(format!(
                "run.resolve_memory_mb must be above 0, got {}",
                raw.run.resolve_memory_mb
            ));
        }
        if !(0.0..=1.0).contains(&raw.run.max_error_rate) {
            problems.push(format!(
                "run.max_error_rate must be within 0..1, got {}",
                raw.run.max_error_rate
            ));
        }
        if !(1..=22).contains(&raw.output.compression_level) {
            problems.push(format!(
                "output.compression_level must be within 1..22, got {}",
                raw.output.compression_level
            ));
        }
        if raw.input.max_record_bytes == 0 {
            problems.push("input.max_record_bytes must be positive".into());
        }
        if let Some(fields) = raw.input.field_names() {
            if fields.text.is_empty() || fields.id.is_empty() || fields.text == fields.id {
                problems.push(format!(
                    "input.text_field ({:?}) and input.id_field ({:?}) must be two different, non-empty field names",
                    fields.text, fields.id
                ));
            }
        }
        if !problems.is_empty() {
            return Err(config_error(format!(
                "{} problem(s):\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            input: raw.input,
            output: raw.output,
            run: raw.run,
            stages,
        })
    }

    /// Position of the stage named `name`; the error lists the stage names.
    pub fn stage_index(&self, name: &str) -> Result<usize> {
        self.stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Error::Config {
                path: self.path.clone(),
                message: format!(
                    "no stage named '{name}'; stages are: {}",
                    self.stages
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineConfig> {
        PipelineConfig::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn parses_with_defaults() {
        let c = parse(
            r#"
            [input]
            path = "in"
            [output]
            path = "out"
            [[stages]]
            kind = "exact_dedup"
            [[stages]]
            kind = "langid"
            name = "lang"
            keep = ["en"]
            "#,
        )
        .unwrap();
        assert_eq!(c.stages.len(), 2);
        assert_eq!(c.stages[0].name, "exact_dedup");
        assert_eq!(c.stages[1].name, "lang");
        assert_eq!(c.output.compression_level, 3);
        assert_eq!(c.run.max_error_rate, 0.01);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err = parse(
            r#"
            [input]
            path = "in"
            [output]
            path = "out"
            compression_level = 40
            [[stages]]
            kind = "langid"
            sample_byte = 10
            [[stages]]
            kind = "nope"
            [[stages]]
            kind = "exact_dedup"
            name = "langid"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("sample_byte"), "{err}");
        assert!(err.contains("nope"), "{err}");
        assert!(err.contains("already exists"), "{err}");
        assert!(err.contains("compression_level"), "{err}");
    }

    #[test]
    fn stage_submit_settings_parse_and_are_checked() {
        let c = parse(
            r#"
            [input]
            path = "in"
            [output]
            path = "out"
            [[stages]]
            kind = "exact_dedup"
            [[stages]]
            kind = "langid"
            [stages.submit]
            tasks = 2
            sbatch = ["--partition=gpu", "--gres=gpu:1"]
            k8s_limits = { "nvidia.com/gpu" = 1, memory = "32Gi" }
            k8s_node_selector = { "gpu-type" = "h100" }
            "#,
        )
        .unwrap();
        assert_eq!(c.stages[0].submit, StageSubmit::default());
        let submit = &c.stages[1].submit;
        assert_eq!(submit.tasks, Some(2));
        assert_eq!(submit.sbatch, ["--partition=gpu", "--gres=gpu:1"]);
        let limits: Vec<String> = submit.k8s_limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(limits, ["memory=32Gi", "nvidia.com/gpu=1"]);
        assert_eq!(submit.k8s_node_selector["gpu-type"], "h100");

        let err = parse(
            r#"
            [input]
            path = "in"
            [output]
            path = "out"
            [[stages]]
            kind = "langid"
            [stages.submit]
            tasks = 0
            [[stages]]
            kind = "exact_dedup"
            [stages.submit]
            gpus = 1
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("stage 'langid': submit.tasks must be at least 1"), "{err}");
        assert!(err.contains("stage 'exact_dedup'") && err.contains("gpus"), "{err}");
    }
}
