//! `thresher submit`: the quickstart on a real one-node Slurm cluster
//! (`scripts/slurm-local`, started by `scripts/test`), and the Kubernetes
//! manifests next to the Slurm scripts.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// The test cluster's config; the tests fail (not skip) without one.
fn slurm_conf() -> String {
    std::env::var("SLURM_CONF").expect(
        "SLURM_CONF is not set: run the tests with scripts/test, which starts a one-node Slurm (scripts/slurm-local)",
    )
}

fn slurm_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("SLURM_CONF", slurm_conf());
    cmd
}

/// The quickstart config writing to `<dir>/<name>`.
fn quickstart(dir: &TestDir, name: &str) -> std::path::PathBuf {
    let config = std::fs::read_to_string(repo_root().join("examples/quickstart.toml"))
        .unwrap()
        .replace("\"out/quickstart\"", &format!("{:?}", dir.join(name).to_string_lossy()));
    let path = dir.join(&format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

/// One submitted array: its row of `submit`'s table and the final state of
/// each of its tasks.
struct ArrayRun {
    stage: String,
    step: String,
    tasks: usize,
    states: Vec<String>,
    /// Each task's `Comment` (the last `--comment` sbatch was given).
    comments: Vec<String>,
}

/// `thresher submit CONFIG --slurm --tasks 3`, with `env` for every task,
/// then waits until Slurm has finished or cancelled every array.
fn submit_and_wait(config: &std::path::Path, jobs: &std::path::Path, env: &[(&str, &str)]) -> Vec<ArrayRun> {
    let mut submit = thresher(
        &repo_root(),
        &[
            "submit",
            config.to_str().unwrap(),
            "--slurm",
            "--tasks",
            "3",
            "--script-dir",
            jobs.to_str().unwrap(),
            "--",
            "--time=15",
            "--comment=every-stage",
        ],
    );
    submit.env("SLURM_CONF", slurm_conf());
    // sbatch passes the submitting environment to the tasks.
    submit.envs(env.iter().copied());
    let table = stdout(&run_expect(submit, 0));
    // Rows: `#  stage  step  tasks  job  script`.
    let rows: Vec<Vec<String>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    // ingest 1, url_filter 1, url_dedup 3, exact_dedup 3, minhash_dedup 4,
    // line_dedup 3, langid 1, code 1, heuristics 1, bad_words 1, quality 1,
    // filter 1, pack 2.
    assert_eq!(rows.len(), 23, "one array per step of the quickstart:\n{table}");
    let job_ids: Vec<String> = rows.iter().map(|r| r[4].clone()).collect();
    assert!(job_ids.iter().all(|j| j.parse::<u64>().is_ok()), "{table}");

    let start = Instant::now();
    loop {
        let out = slurm_command("squeue")
            .args(["-h", "-o", "%i %T %r", "-j", &job_ids.join(",")])
            .output()
            .unwrap();
        let queued = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if queued.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "jobs still queued after 10 minutes:\n{queued}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Finished jobs stay visible to scontrol for MinJobAge (300 s by default).
    rows.iter()
        .zip(&job_ids)
        .map(|(row, id)| {
            let out = slurm_command("scontrol").args(["show", "job", id]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            ArrayRun {
                stage: row[1].clone(),
                step: row[2].clone(),
                tasks: row[3].parse().unwrap(),
                states: text
                    .split_whitespace()
                    .filter_map(|w| w.strip_prefix("JobState="))
                    .map(str::to_string)
                    .collect(),
                comments: text
                    .split_whitespace()
                    .filter_map(|w| w.strip_prefix("Comment="))
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect()
}

/// Every task of every array ended COMPLETED.
fn assert_all_completed(runs: &[ArrayRun]) {
    for run in runs {
        assert!(
            run.states.iter().all(|s| s == "COMPLETED"),
            "{} {}: {:?}",
            run.stage,
            run.step,
            run.states
        );
    }
}

/// Outputs with each run's root masked in the manifests (they name their
/// input folder, which is under the run's own root).
fn masked(dir: &TestDir, name: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let root = dir.join(name).to_string_lossy().into_owned();
    outputs(&dir.join(name))
        .into_iter()
        .map(|(k, v)| match k.contains("/_manifest/") {
            true => (k, String::from_utf8(v).unwrap().replace(&root, "<ROOT>").into_bytes()),
            false => (k, v),
        })
        .collect()
}

#[test]
fn quickstart_on_slurm_equals_the_local_run() {
    let dir = TestDir::new("slurm");
    let local = quickstart(&dir, "local");
    run_expect(thresher(&repo_root(), &["run", local.to_str().unwrap()]), 0);

    // The quality stage as a GPU stage would be sent elsewhere: its own
    // task count and sbatch options ([stages.submit]), which must not change
    // a byte of the output.
    let config = quickstart(&dir, "slurm");
    let text = std::fs::read_to_string(&config).unwrap();
    let quality_line = text.lines().find(|l| l.starts_with("histogram_width")).unwrap();
    let text = text.replacen(
        quality_line,
        &format!("{quality_line}\n[stages.submit]\ntasks = 2\nsbatch = [\"--comment=quality-nodes\"]"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let jobs = dir.join("jobs");
    let runs = submit_and_wait(&config, &jobs, &[]);
    for run in &runs {
        assert_eq!(
            run.states.len(),
            run.tasks,
            "{} {}: {:?}",
            run.stage,
            run.step,
            run.states
        );
        let (tasks, comment) = match run.stage.as_str() {
            "quality" => (2, "quality-nodes"),
            _ => (run.tasks, "every-stage"),
        };
        assert_eq!(run.tasks, tasks, "{}", run.stage);
        assert_eq!(run.comments, vec![comment; tasks], "{} {}", run.stage, run.step);
    }
    assert_all_completed(&runs);
    let logs = std::fs::read_dir(&jobs)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    assert_eq!(logs, runs.iter().map(|r| r.tasks).sum::<usize>(), "one log per task");
    assert_same_outputs(&masked(&dir, "local"), &masked(&dir, "slurm"), "quickstart on Slurm");
}

#[test]
fn failed_slurm_tasks_resume_when_the_pipeline_is_submitted_again() {
    let dir = TestDir::new("slurm-retry");
    let local = quickstart(&dir, "local");
    run_expect(thresher(&repo_root(), &["run", local.to_str().unwrap()]), 0);

    // Every task kills itself (SIGKILL) right after its 3rd commit: the
    // first arrays fail midway and the rest are cancelled.
    let config = quickstart(&dir, "slurm");
    let runs = submit_and_wait(&config, &dir.join("jobs-1"), &[("THRESHER_KILL_AFTER_COMMITS", "3")]);
    let states: Vec<&String> = runs.iter().flat_map(|r| &r.states).collect();
    assert!(states.iter().any(|s| *s == "FAILED"), "{states:?}");
    assert!(
        !dir.join("slurm/pack/manifest.json").exists(),
        "the pipeline should not have finished"
    );

    // Submitted again, the tasks skip what was committed and finish the rest.
    let runs = submit_and_wait(&config, &dir.join("jobs-2"), &[]);
    assert_all_completed(&runs);
    assert_same_outputs(
        &masked(&dir, "local"),
        &masked(&dir, "slurm"),
        "resubmitted after failures",
    );
}

#[test]
fn k8s_jobs_parse_and_run_the_slurm_task_commands() {
    let dir = TestDir::new("k8s");
    let config = quickstart(&dir, "out");
    let config_abs = config.to_str().unwrap();
    let jobs = dir.join("jobs");
    let out = run_expect(
        thresher(
            &repo_root(),
            &[
                "submit",
                config_abs,
                "--slurm",
                "--dry-run",
                "--tasks",
                "4",
                "--script-dir",
                jobs.to_str().unwrap(),
            ],
        ),
        0,
    );
    assert!(
        stdout(&out).contains("--dependency=afterok:<job of #1>"),
        "{}",
        stdout(&out)
    );
    let mut scripts: Vec<_> = std::fs::read_dir(&jobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sbatch"))
        .collect();
    scripts.sort();
    // The task command of each Slurm script, without the program and the index.
    let slurm: Vec<Vec<String>> = scripts
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let exec = text.lines().find(|l| l.starts_with("exec ")).unwrap();
            let words: Vec<String> = exec.split_whitespace().skip(2).map(str::to_string).collect();
            assert_eq!(&words[words.len() - 2..], ["--task-index", "\"$SLURM_ARRAY_TASK_ID\""]);
            words[..words.len() - 2].to_vec()
        })
        .collect();

    let yaml = stdout(&run_expect(
        thresher(
            &repo_root(),
            &[
                "submit",
                config_abs,
                "--k8s",
                "--image",
                "registry.example/thresher:1",
                "--tasks",
                "4",
                "--namespace",
                "data",
            ],
        ),
        0,
    ));
    let yaml_path = dir.join("jobs.yaml");
    std::fs::write(&yaml_path, &yaml).unwrap();
    // PyYAML (installed with moto) is the parser.
    let parsed = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            yaml_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    let docs: Vec<Value> = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(docs.len(), slurm.len(), "one Job per Slurm array");
    for (doc, slurm_args) in docs.iter().zip(&slurm) {
        assert_eq!(doc["kind"], "Job");
        assert_eq!(doc["metadata"]["namespace"], "data");
        assert_eq!(doc["spec"]["completionMode"], "Indexed");
        let container = &doc["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.example/thresher:1");
        let command: Vec<String> = container["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(command[0], "thresher");
        assert_eq!(&command[1..], &slurm_args[..], "task commands differ");
        let tasks = slurm_args.last().unwrap().parse::<u64>().unwrap();
        assert_eq!(doc["spec"]["completions"], tasks);
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert!(
            name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
    }
}
