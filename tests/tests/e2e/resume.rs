//! Killing the binary with SIGKILL at any moment, then rerunning, gives output
//! byte-identical to an uninterrupted run.

use std::path::Path;
use std::time::Instant;

use crate::util::*;

fn config_for(dir: &Path, input: &Path) -> std::path::PathBuf {
    write_config(dir, input, "", &all_stages())
}

/// Reruns until the pipeline completes (a rerun is itself never killed).
fn finish(dir: &Path, config: &Path) {
    run_expect(thresher(dir, &["run", config.to_str().unwrap()]), 0);
}

#[test]
fn sigkill_at_exact_commit_points_then_rerun_is_identical() {
    let dir = TestDir::new("resume-commits");
    let input = dir.join("input");
    multilingual_corpus(&input, 6, 150, 11);
    let reference_dir = dir.join("reference");
    std::fs::create_dir_all(&reference_dir).unwrap();
    finish(&reference_dir, &config_for(&reference_dir, &input));
    let reference = outputs_masked(&reference_dir);
    // Commits in a run: 3 stage locks and summaries, 6 shards × (output +
    // manifest) × 3 stages, 6 scans and 4 resolves, sidecars: about 60.
    // Kill after each of these, covering every kind of boundary.
    for kill_after in [1, 2, 3, 5, 8, 13, 14, 15, 21, 27, 34, 40, 47, 55] {
        let run_dir = dir.join(&format!("killed-{kill_after}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let config = config_for(&run_dir, &input);
        let status = thresher(&run_dir, &["run", config.to_str().unwrap()])
            .env("THRESHER_KILL_AFTER_COMMITS", kill_after.to_string())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "run with kill after {kill_after} commits was not killed: {status:?}"
        );
        finish(&run_dir, &config);
        run_expect(
            thresher(&run_dir, &["inspect", run_dir.join("out").to_str().unwrap()]),
            0,
        );
        assert_same_outputs(
            &reference,
            &outputs_masked(&run_dir),
            &format!("killed after {kill_after} commits"),
        );
        std::fs::remove_dir_all(&run_dir).unwrap();
    }
}

#[test]
fn sigkill_from_outside_mid_stage_then_rerun_is_identical() {
    let dir = TestDir::new("resume-signal");
    let input = dir.join("input");
    multilingual_corpus(&input, 8, 1500, 5);
    std::fs::create_dir_all(dir.join("reference")).unwrap();
    let reference_dir = dir.join("reference");
    let start = Instant::now();
    finish(&reference_dir, &config_for(&reference_dir, &input));
    let full = start.elapsed();
    let reference = outputs_masked(&reference_dir);
    let mut killed_mid_run = 0;
    for fraction in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let run_dir = dir.join(&format!("killed-{fraction}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let config = config_for(&run_dir, &input);
        let mut child = thresher(&run_dir, &["run", config.to_str().unwrap()]).spawn().unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        // SIGKILL: no handler runs, nothing is flushed or cleaned up.
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        finish(&run_dir, &config);
        assert_same_outputs(
            &reference,
            &outputs_masked(&run_dir),
            &format!("killed at {:.0}% of a run", fraction * 100.0),
        );
        std::fs::remove_dir_all(&run_dir).unwrap();
    }
    assert!(
        killed_mid_run >= 3,
        "only {killed_mid_run} of 5 kills landed while the run was going ({full:?} per run)"
    );
}

#[test]
fn changed_config_is_refused_until_forced() {
    let dir = TestDir::new("config-change");
    let input = dir.join("input");
    multilingual_corpus(&input, 3, 20, 3);
    let config = config_for(&dir.path, &input);
    finish(&dir.path, &config);
    let dedup_before = outputs(&dir.join("out/exact_dedup"));
    let changed = std::fs::read_to_string(&config)
        .unwrap()
        .replace("kind = \"langid\"", "kind = \"langid\"\nmin_score = 0.9");
    std::fs::write(&config, changed).unwrap();
    let out = run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 2);
    let err = stderr(&out);
    assert!(err.contains("stage 'langid'") && err.contains("--force"), "{err}");
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap(), "--force"]), 0);
    let langid = read_json(&dir.join("out/langid/_manifest/stage.json"));
    assert_eq!(langid["config"]["min_score"], 0.9);
    // Earlier stages were not touched.
    assert_same_outputs(
        &dedup_before,
        &outputs(&dir.join("out/exact_dedup")),
        "exact_dedup after forcing langid",
    );
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);
}
