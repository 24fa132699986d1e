//! The same stages with 1, 3 and 8 tasks give identical outputs.

use std::path::Path;

use crate::util::*;

/// Runs every step of every stage as `tasks` separate processes, in the order a
/// scheduler would (all tasks of a step, then the next step).
fn run_as_tasks(dir: &Path, config: &Path, tasks: usize, via_slurm_env: bool) {
    let steps: &[(&str, &[&str])] = &[
        ("ingest", &["apply"]),
        ("exact_dedup", &["scan", "resolve", "apply"]),
        ("langid", &["apply"]),
        ("pack", &["tokenize", "pack"]),
    ];
    for (stage, stage_steps) in steps {
        for step in *stage_steps {
            for index in 0..tasks {
                let mut cmd = thresher(
                    dir,
                    &["run", config.to_str().unwrap(), "--stage", stage, "--step", step],
                );
                if via_slurm_env {
                    cmd.env("SLURM_ARRAY_TASK_ID", (index + 1).to_string())
                        .env("SLURM_ARRAY_TASK_MIN", "1")
                        .env("SLURM_ARRAY_TASK_COUNT", tasks.to_string());
                } else {
                    cmd.args(["--task-index", &index.to_string(), "--tasks", &tasks.to_string()]);
                }
                run_expect(&mut cmd, 0);
            }
        }
    }
}

#[test]
fn one_three_and_eight_tasks_agree() {
    let dir = TestDir::new("tasks");
    let input = dir.join("input");
    let planted = multilingual_corpus(&input, 10, 60, 7);
    assert!(planted.len() > 20, "the corpus must plant duplicates");
    let mut reference = None;
    for (tasks, via_env) in [(1, false), (3, false), (8, true)] {
        let run_dir = dir.join(&format!("tasks-{tasks}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let config = write_config(&run_dir, &input, "", &all_stages());
        run_as_tasks(&run_dir, &config, tasks, via_env);
        run_expect(
            thresher(&run_dir, &["inspect", run_dir.join("out").to_str().unwrap()]),
            0,
        );
        let outputs = outputs_masked(&run_dir);
        match &reference {
            None => {
                // Every planted copy was found.
                let dedup = read_json(&run_dir.join("out/exact_dedup/_manifest/stage.json"));
                assert_eq!(dedup["counts"]["rejected"]["duplicate"], planted.len() as u64);
                reference = Some(outputs);
            }
            Some(expected) => assert_same_outputs(expected, &outputs, &format!("{tasks} tasks")),
        }
    }
}

#[test]
fn a_step_before_its_barrier_is_refused() {
    let dir = TestDir::new("barrier");
    let input = dir.join("input");
    multilingual_corpus(&input, 4, 10, 1);
    let config = write_config(&dir.path, &input, "", &all_stages());
    run_expect(
        thresher(&dir.path, &["run", config.to_str().unwrap(), "--stage", "ingest"]),
        0,
    );
    let c = config.to_str().unwrap();
    run_expect(
        thresher(
            &dir.path,
            &[
                "run",
                c,
                "--stage",
                "exact_dedup",
                "--step",
                "scan",
                "--task-index",
                "0",
                "--tasks",
                "2",
            ],
        ),
        0,
    );
    let out = run_expect(
        thresher(&dir.path, &["run", c, "--stage", "exact_dedup", "--step", "resolve"]),
        2,
    );
    assert!(
        stderr(&out).contains("needs the scan step finished"),
        "{}",
        stderr(&out)
    );
    let out = run_expect(thresher(&dir.path, &["run", c, "--stage", "langid"]), 2);
    assert!(
        stderr(&out).contains("reads the output of stage 'exact_dedup'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn whole_pipeline_per_task_waits_at_barriers_and_converges() {
    let dir = TestDir::new("tasks-rounds");
    let input = dir.join("input");
    multilingual_corpus(&input, 5, 40, 9);
    let reference_dir = dir.join("reference");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let config = write_config(&reference_dir, &input, "", &all_stages());
    run_expect(thresher(&reference_dir, &["run", config.to_str().unwrap()]), 0);

    // Each of 3 tasks runs the whole pipeline; a task that reaches a barrier
    // other tasks have not passed stops cleanly (exit 0). Rounds of all tasks
    // (as a requeueing scheduler would do) finish the pipeline.
    let run_dir = dir.join("rounds");
    std::fs::create_dir_all(&run_dir).unwrap();
    let config = write_config(&run_dir, &input, "", &all_stages());
    let mut rounds = 0;
    while !run_dir.join("out/pack/_manifest/stage.json").exists() {
        rounds += 1;
        assert!(rounds <= 8, "the pipeline did not finish in 8 rounds of 3 tasks");
        for index in 0..3 {
            let c = config.to_str().unwrap();
            run_expect(
                thresher(
                    &run_dir,
                    &["run", c, "--task-index", &index.to_string(), "--tasks", "3"],
                ),
                0,
            );
        }
    }
    // ingest, then scan, resolve and apply of exact_dedup, then langid: one
    // round per barrier.
    assert!(rounds >= 4, "finished in {rounds} rounds: barriers were not respected");
    assert_same_outputs(
        &outputs_masked(&reference_dir),
        &outputs_masked(&run_dir),
        "3 tasks in rounds",
    );
}
