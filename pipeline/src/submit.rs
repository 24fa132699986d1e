//! `thresher submit`: a pipeline as jobs of an existing scheduler, no
//! coordinator of thresher's own.
//!
//! Every step of every stage becomes one array of tasks: a Slurm job array
//! (`--slurm`, chained with `--dependency=afterok`, so a step starts only
//! when every task of the step before has succeeded) or a Kubernetes Indexed
//! Job (`--k8s`, applied in order). A task runs exactly what a person would:
//! `thresher run CONFIG --stage S --step STEP --task-index I --tasks N`.
//! A requeued or failed task, or a resubmission after a failure, resumes
//! through the manifests: committed work is skipped, the rest redone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::StageSubmit;
use crate::error::{Error, Result};
use crate::runner::Pipeline;

/// One array: a step of a stage, how many tasks share it, and the stage's
/// own scheduling settings (`[stages.submit]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskArray {
    pub stage: String,
    pub step: String,
    pub tasks: usize,
    pub settings: StageSubmit,
}

impl TaskArray {
    /// The arguments of every task of this array after the program name,
    /// except the task index, which the scheduler supplies.
    pub fn run_args(&self, config: &str) -> Vec<String> {
        vec![
            "run".into(),
            config.into(),
            "--stage".into(),
            self.stage.clone(),
            "--step".into(),
            self.step.clone(),
            "--tasks".into(),
            self.tasks.to_string(),
        ]
    }
}

/// The arrays of a pipeline in run order, `tasks` tasks each at most (or the
/// stage's own `submit.tasks`): a step with fewer units than that gets fewer
/// (resolve: one per partition; pack's `pack`: one).
pub fn task_arrays(pipeline: &Pipeline, tasks: usize) -> Vec<TaskArray> {
    let mut arrays = Vec::new();
    for (stage, entry) in pipeline.stages.iter().zip(&pipeline.config.stages) {
        let tasks = entry.submit.tasks.unwrap_or(tasks);
        for step in stage.steps() {
            let most = match *step {
                "resolve" => stage.config.partitions().unwrap_or(1) as usize,
                "pack" | "cluster" => 1,
                _ => usize::MAX,
            };
            arrays.push(TaskArray {
                stage: stage.name.clone(),
                step: step.to_string(),
                tasks: tasks.clamp(1, most.max(1)),
                settings: entry.submit.clone(),
            });
        }
    }
    arrays
}

/// Single-quotes a word for bash.
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A name Slurm and Kubernetes both accept: lowercase letters, digits, `-`.
fn job_name(parts: &[&str]) -> String {
    let joined = parts.join("-").to_lowercase();
    let mut name: String = joined
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    // Kubernetes names are at most 63 characters and end alphanumeric.
    name.truncate(63);
    name.trim_matches('-').to_string()
}

/// What `submit --slurm` needs besides the pipeline.
pub struct SlurmOptions {
    /// The config file, absolute.
    pub config: PathBuf,
    /// The thresher binary the tasks run, absolute.
    pub program: PathBuf,
    /// Folder the tasks start in (relative paths in the config are relative to it).
    pub workdir: PathBuf,
    /// Where the batch scripts and the task logs go.
    pub script_dir: PathBuf,
    /// Passed to every `sbatch` (partition, time, account, ...).
    pub sbatch_args: Vec<String>,
}

impl SlurmOptions {
    /// The options of one array's `sbatch`, before the dependency and the
    /// script: the command line's, then the stage's own (sbatch keeps the
    /// last value of an option, so the stage's win).
    pub fn sbatch_args_of(&self, array: &TaskArray) -> Vec<String> {
        let mut args = vec!["--parsable".to_string()];
        args.extend(self.sbatch_args.iter().cloned());
        args.extend(array.settings.sbatch.iter().cloned());
        args
    }
}

/// The batch script of one array.
pub fn slurm_script(array: &TaskArray, options: &SlurmOptions) -> String {
    let stem = options
        .config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = job_name(&["thresher", &stem, &array.stage, &array.step]);
    let mut command: Vec<String> = vec![shell_quote(&options.program.to_string_lossy())];
    command.extend(
        array
            .run_args(&options.config.to_string_lossy())
            .iter()
            .map(|a| shell_quote(a)),
    );
    command.push("--task-index".into());
    command.push("\"$SLURM_ARRAY_TASK_ID\"".into());
    format!(
        "#!/bin/bash\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --output={logs}/%x-%A_%a.log\n\
         # A failed step cancels the steps after it instead of leaving them pending.\n\
         #SBATCH --kill-on-invalid-dep=yes\n\
         # Written by `thresher submit`: stage '{stage}', step '{step}', {tasks} task(s).\n\
         # A rerun of any task skips what is committed and redoes the rest.\n\
         {stage_options}\
         set -euo pipefail\n\
         cd {workdir}\n\
         exec {command}\n",
        last = array.tasks - 1,
        logs = shell_quote(&options.script_dir.to_string_lossy()),
        stage = array.stage,
        step = array.step,
        tasks = array.tasks,
        workdir = shell_quote(&options.workdir.to_string_lossy()),
        command = command.join(" "),
        stage_options = match array.settings.sbatch.is_empty() {
            true => String::new(),
            false => format!(
                "# This stage's own sbatch options ([stages.submit]), given after the command line's: {}\n",
                array
                    .settings
                    .sbatch
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        },
    )
}

/// One submitted (or, in a dry run, planned) array.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub array: TaskArray,
    pub script: PathBuf,
    /// Slurm's job id; `None` in a dry run.
    pub job_id: Option<String>,
}

/// Writes every array's script and, unless `dry_run`, submits them in order,
/// each depending on the one before.
pub fn submit_slurm(arrays: &[TaskArray], options: &SlurmOptions, dry_run: bool) -> Result<Vec<Submitted>> {
    std::fs::create_dir_all(&options.script_dir)
        .map_err(|e| Error::io("cannot create folder", options.script_dir.display(), e))?;
    let mut submitted: Vec<Submitted> = Vec::new();
    for (position, array) in arrays.iter().enumerate() {
        let script = options
            .script_dir
            .join(format!("{:02}-{}-{}.sbatch", position + 1, array.stage, array.step));
        std::fs::write(&script, slurm_script(array, options))
            .map_err(|e| Error::io("cannot write", script.display(), e))?;
        let job_id = if dry_run {
            None
        } else {
            let mut sbatch = Command::new("sbatch");
            sbatch.args(options.sbatch_args_of(array));
            if let Some(previous) = submitted.last().and_then(|s| s.job_id.as_ref()) {
                sbatch.arg(format!("--dependency=afterok:{previous}"));
            }
            let out = sbatch.arg(&script).output().map_err(|e| {
                Error::Storage(format!(
                    "cannot run sbatch ({e}): is Slurm installed here? `--dry-run` writes the scripts only"
                ))
            })?;
            if !out.status.success() {
                return Err(Error::Storage(format!(
                    "sbatch refused {}: {}{}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    match submitted.last().and_then(|s| s.job_id.as_ref()) {
                        Some(_) => " (the arrays submitted before it stay queued; `scancel` them or let them run)",
                        None => "",
                    }
                )));
            }
            // `--parsable` prints `jobid` or `jobid;cluster`.
            let text = String::from_utf8_lossy(&out.stdout);
            Some(text.trim().split(';').next().unwrap_or_default().to_string())
        };
        submitted.push(Submitted {
            array: array.clone(),
            script,
            job_id,
        });
    }
    Ok(submitted)
}

/// What `submit --k8s` needs besides the pipeline.
pub struct K8sOptions {
    /// The config path inside the container (mount it there, e.g. from a ConfigMap).
    pub config: String,
    pub image: String,
    pub namespace: Option<String>,
    /// Stem of the job names.
    pub name: String,
}

/// A YAML string scalar: JSON's quoting is valid YAML.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// One Indexed Job per array, as a multi-document YAML stream in run order.
/// Kubernetes has no dependencies between Jobs: apply them one at a time,
/// waiting for each to complete (the README shows a loop).
pub fn k8s_manifests(arrays: &[TaskArray], options: &K8sOptions) -> String {
    let mut out = String::new();
    for (position, array) in arrays.iter().enumerate() {
        let name = job_name(&[
            "thresher",
            &options.name,
            &format!("{:02}", position + 1),
            &array.stage,
            &array.step,
        ]);
        let mut command = vec![yaml_string("thresher")];
        command.extend(array.run_args(&options.config).iter().map(|a| yaml_string(a)));
        out.push_str("---\n");
        out.push_str(&format!(
            "# stage '{stage}', step '{step}': {tasks} task(s); each reads its index from\n\
             # JOB_COMPLETION_INDEX. Apply after the job before it has completed.\n\
             apiVersion: batch/v1\n\
             kind: Job\n\
             metadata:\n\
             \x20 name: {name}\n{namespace}\
             \x20 labels:\n\
             \x20   app.kubernetes.io/name: thresher\n\
             \x20   thresher/stage: {stage_label}\n\
             \x20   thresher/step: {step_label}\n\
             spec:\n\
             \x20 completionMode: Indexed\n\
             \x20 completions: {tasks}\n\
             \x20 parallelism: {tasks}\n\
             \x20 # A failed index is retried alone; reruns skip committed work.\n\
             \x20 backoffLimitPerIndex: 3\n\
             \x20 template:\n\
             \x20   metadata:\n\
             \x20     labels:\n\
             \x20       app.kubernetes.io/name: thresher\n\
             \x20   spec:\n\
             \x20     restartPolicy: Never\n\
             \x20     containers:\n\
             \x20       - name: thresher\n\
             \x20         image: {image}\n\
             \x20         command: [{command}]\n{resources}",
            stage = array.stage,
            step = array.step,
            tasks = array.tasks,
            namespace = options
                .namespace
                .as_ref()
                .map(|ns| format!("  namespace: {}\n", yaml_string(ns)))
                .unwrap_or_default(),
            stage_label = yaml_string(&job_name(&[&array.stage])),
            step_label = yaml_string(&array.step),
            image = yaml_string(&options.image),
            command = command.join(", "),
            resources = k8s_placement(&array.settings),
        ));
    }
    out
}

/// A stage's container resources, node selector and tolerations
/// (`[stages.submit]` `k8s_*`), as YAML lines under its container; empty
/// when it sets none.
fn k8s_placement(settings: &StageSubmit) -> String {
    /// A YAML flow mapping, `{"k": "v", ...}`, every value a string.
    fn flow<K: AsRef<str>, V: ToString>(pairs: impl IntoIterator<Item = (K, V)>) -> String {
        let pairs: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| format!("{}: {}", yaml_string(k.as_ref()), yaml_string(&v.to_string())))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }
    let mut out = String::new();
    if !settings.k8s_limits.is_empty() || !settings.k8s_requests.is_empty() {
        out.push_str("          resources:\n");
        for (name, map) in [("limits", &settings.k8s_limits), ("requests", &settings.k8s_requests)] {
            if !map.is_empty() {
                out.push_str(&format!("            {name}: {}\n", flow(map)));
            }
        }
    }
    // Pod-level keys, after the containers list.
    if !settings.k8s_node_selector.is_empty() {
        out.push_str(&format!("      nodeSelector: {}\n", flow(&settings.k8s_node_selector)));
    }
    if !settings.k8s_tolerations.is_empty() {
        let items: Vec<String> = settings.k8s_tolerations.iter().map(flow).collect();
        out.push_str(&format!("      tolerations: [{}]\n", items.join(", ")));
    }
    out
}

/// The absolute form of a path, without resolving links.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("cannot resolve", path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert_eq!(
            job_name(&["thresher", "My Crawl", "exact_dedup", "scan"]),
            "thresher-my-crawl-exact-dedup-scan"
        );
        assert_eq!(job_name(&["x"; 40]).len(), 63);
        assert_eq!(shell_quote("/a/b.toml"), "/a/b.toml");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(yaml_string("a\"b"), "\"a\\\"b\"");
    }
}
