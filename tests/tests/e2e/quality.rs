//! The `quality` stage end to end, on CPU, with the tiny parity checkpoint
//! (random weights: the scores mean nothing, the plumbing is what is tested).

use crate::util::*;

#[test]
fn scores_tag_filter_and_count() {
    let dir = TestDir::new("quality");
    let input = dir.join("input");
    multilingual_corpus(&input, 3, 40, 5);
    let fixtures = repo_root().join("classifiers/tests/fixtures/tiny-llama-cls");
    let stages = format!(
        "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"quality\"\nmodel = {:?}\ntokenizer = {:?}\n\
         device = \"cpu\"\nmax_tokens = 128\nbatch_tokens = 1024\nmin_score = 1.0\nhistogram_width = 0.25\n",
        fixtures.join("classes").to_string_lossy(),
        fixtures.join("byte-tokenizer.model").to_string_lossy()
    );
    let config = write_config(&dir.path, &input, "", &stages);
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 0);
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);

    let stage = read_json(&dir.join("out/quality/_manifest/stage.json"));
    let counts = &stage["counts"];
    let histogram: u64 = stage["stats"]["quality_histogram"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(histogram, counts["documents_in"].as_u64().unwrap());
    let kept = counts["documents_out"].as_u64().unwrap();
    let dropped = counts["rejected"]["quality_below_min_score"].as_u64().unwrap_or(0);
    assert_eq!(kept + dropped, counts["documents_in"].as_u64().unwrap());
    assert!(
        kept > 0 && dropped > 0,
        "min_score 1.0 should split this corpus: {counts}"
    );
    // Every kept document carries a score of at least min_score and label probabilities.
    for doc in read_zst(&dir.join("out/quality/shard-00.jsonl.zst")) {
        let quality = &doc["metadata"]["quality"];
        assert!(quality["score"].as_f64().unwrap() >= 1.0 - 1e-4, "{quality}");
        assert_eq!(quality["probabilities"].as_object().unwrap().len(), 3);
    }
    let rejected = read_zst(&dir.join("out/quality/_rejected/shard-00.jsonl.zst"));
    assert!(rejected
        .iter()
        .all(|d| d["rejection"]["reason"] == "quality_below_min_score"));
}

#[test]
fn trained_head_filters_what_it_was_taught() {
    let dir = TestDir::new("quality-train");
    let fixtures = repo_root().join("classifiers/tests/fixtures/tiny-llama-cls");
    // Teach a head on the tiny backbone: texts led by many 'z's are "good".
    let mut train = String::new();
    let mut docs = String::new();
    for i in 0..120 {
        let zs = i % 7;
        let text = format!("{}{}", "z".repeat(zs * 3), "the quick brown fox ".repeat(1 + i % 3));
        let label = if zs >= 3 { "good" } else { "bad" };
        train.push_str(&serde_json::json!({"text": text, "label": label}).to_string());
        train.push('\n');
        docs.push_str(
            &serde_json::json!({"id": format!("d{i}"), "text": text, "metadata": {"truth": label}}).to_string(),
        );
        docs.push('\n');
    }
    std::fs::write(dir.join("train.jsonl"), train).unwrap();
    std::fs::create_dir_all(dir.join("input")).unwrap();
    std::fs::write(dir.join("input/docs.jsonl"), docs).unwrap();
    let checkpoint = dir.join("checkpoint");
    let out = run_expect(
        thresher(
            &dir.path,
            &[
                "classifier",
                "train",
                "--backbone",
                fixtures.join("regression").to_str().unwrap(),
                "--tokenizer",
                fixtures.join("byte-tokenizer.model").to_str().unwrap(),
                "--data",
                dir.join("train.jsonl").to_str().unwrap(),
                "--out",
                checkpoint.to_str().unwrap(),
                "--max-tokens",
                "128",
            ],
        ),
        0,
    );
    assert!(
        stdout(&out).contains("classification head on 120 examples"),
        "{}",
        stdout(&out)
    );
    // The quality stage with the trained checkpoint keeps "good" documents:
    // a two-label head's score is the probability of the second label.
    let stages = format!(
        "[[stages]]\nkind = \"quality\"\nmodel = {:?}\ndevice = \"cpu\"\nmax_tokens = 128\nmin_score = 0.5\n",
        checkpoint.to_string_lossy()
    );
    let config = write_config(&dir.path, &dir.join("input"), "", &stages);
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 0);
    let kept = read_zst(&dir.join("out/quality/docs.jsonl.zst"));
    let rejected = read_zst(&dir.join("out/quality/_rejected/docs.jsonl.zst"));
    let right = kept.iter().filter(|d| d["metadata"]["truth"] == "good").count()
        + rejected.iter().filter(|d| d["metadata"]["truth"] == "bad").count();
    assert!(right as f64 >= 0.9 * 120.0, "{right} of 120 filtered as taught");
}

/// A pipeline whose `quality` stage names a GPU: the tasks of the other
/// stages, and `thresher submit` on a login node, never build that stage (no
/// model is loaded, no GPU opened); the stage's own task fails naming the
/// device; and a whole run fails before its first stage, not after it.
#[test]
fn a_stage_on_a_gpu_is_built_only_by_its_own_tasks() {
    let dir = TestDir::new("quality-gpu-stage");
    let input = dir.join("input");
    multilingual_corpus(&input, 2, 10, 9);
    let fixtures = repo_root().join("classifiers/tests/fixtures/tiny-llama-cls");
    // No machine running the tests has a hundredth GPU.
    let stages = format!(
        "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"quality\"\nmodel = {:?}\ntokenizer = {:?}\n\
         device = \"cuda:99\"\n\n[stages.submit]\ntasks = 1\nsbatch = [\"--gres=gpu:1\", \"--partition=gpu\"]\n\
         k8s_limits = {{ \"nvidia.com/gpu\" = 1 }}\nk8s_requests = {{ cpu = \"8\" }}\n\
         k8s_node_selector = {{ pool = \"gpu\" }}\n\
         k8s_tolerations = [{{ key = \"nvidia.com/gpu\", operator = \"Exists\", effect = \"NoSchedule\" }}]\n",
        fixtures.join("classes").to_string_lossy(),
        fixtures.join("byte-tokenizer.model").to_string_lossy()
    );
    let config = write_config(&dir.path, &input, "", &stages);
    let config = config.to_str().unwrap();

    let jobs = dir.join("jobs");
    let plan = stdout(&run_expect(
        thresher(
            &dir.path,
            &[
                "submit",
                config,
                "--slurm",
                "--dry-run",
                "--tasks",
                "2",
                "--script-dir",
                jobs.to_str().unwrap(),
                "--",
                "--partition=cpu",
            ],
        ),
        0,
    ));
    assert!(
        plan.contains("sbatch --parsable --partition=cpu --gres=gpu:1 --partition=gpu --dependency"),
        "quality's own options come after the command line's:\n{plan}"
    );
    assert!(
        plan.contains("sbatch --parsable --partition=cpu /"),
        "ingest keeps the command line's:\n{plan}"
    );
    let rows: Vec<Vec<&str>> = plan
        .lines()
        .skip_while(|l| !l.starts_with("#    stage"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{plan}");
    assert_eq!((rows[0][1], rows[0][3]), ("ingest", "2"), "{plan}");
    assert_eq!(
        (rows[1][1], rows[1][3]),
        ("quality", "1"),
        "submit.tasks replaces --tasks:\n{plan}"
    );
    let yaml = stdout(&run_expect(
        thresher(
            &dir.path,
            &["submit", config, "--k8s", "--image", "thresher:1", "--tasks", "2"],
        ),
        0,
    ));
    // PyYAML (installed with moto) reads the Jobs: only quality's pods ask
    // for a GPU and its nodes.
    let yaml_path = dir.join("jobs.yaml");
    std::fs::write(&yaml_path, &yaml).unwrap();
    let parsed = std::process::Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml\n\
             for job in yaml.safe_load_all(open(sys.argv[1])):\n\
             \x20   pod = job['spec']['template']['spec']\n\
             \x20   print(job['metadata']['labels']['thresher/stage'], json.dumps(pod['containers'][0].get('resources')), json.dumps(pod.get('nodeSelector')), json.dumps(pod.get('tolerations')))",
            yaml_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout),
        "ingest null null null\n\
         quality {\"limits\": {\"nvidia.com/gpu\": \"1\"}, \"requests\": {\"cpu\": \"8\"}} {\"pool\": \"gpu\"} \
         [{\"effect\": \"NoSchedule\", \"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\"}]\n"
    );

    run_expect(thresher(&dir.path, &["run", config, "--stage", "ingest"]), 0);
    let out = run_expect(thresher(&dir.path, &["run", config, "--stage", "quality"]), 2);
    let err = stderr(&out);
    assert!(
        err.contains("stage 'quality'") && err.contains("cuda:99"),
        "the error names the stage and the device: {err}"
    );
    assert!(!dir.join("out/quality/_manifest/stage.json").exists());

    // A whole run checks every stage it will run before starting the first.
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    let err = stderr(&run_expect(thresher(&dir.path, &["run", config]), 2));
    assert!(err.contains("cuda:99"), "{err}");
    assert!(
        !dir.join("out/ingest/_manifest/stage.json").exists(),
        "ingest ran before a stage that cannot start"
    );
}

/// Two classifiers in one pipeline: each writes its own `field`, the second
/// leaves the first's tag alone, pack buckets tokens by the field it is
/// told, and the report's histogram is that stage's.
#[test]
fn two_classifiers_keep_both_tags_and_pack_buckets_by_the_chosen_one() {
    let dir = TestDir::new("quality-two-fields");
    let input = dir.join("input");
    multilingual_corpus(&input, 2, 15, 4);
    let fixtures = repo_root().join("classifiers/tests/fixtures/tiny-llama-cls");
    let tokenizer = fixtures.join("byte-tokenizer.model");
    let stages = format!(
        "[[stages]]\nkind = \"ingest\"\n\n\
         [[stages]]\nkind = \"quality\"\nname = \"edu\"\nfield = \"edu\"\nmodel = {regression:?}\ntokenizer = {tokenizer:?}\n\
         device = \"cpu\"\nhistogram_width = 0.1\n\n\
         [[stages]]\nkind = \"quality\"\nmodel = {classes:?}\ntokenizer = {tokenizer:?}\ndevice = \"cpu\"\nhistogram_width = 0.1\n\n\
         [[stages]]\nkind = \"pack\"\ntokenizer = {llama3:?}\nseq_len = 512\nwindow_tokens = 4096\nquality_field = \"edu\"\n",
        classes = fixtures.join("classes").to_string_lossy(),
        regression = fixtures.join("regression").to_string_lossy(),
        tokenizer = tokenizer.to_string_lossy(),
        llama3 = llama3_tokenizer().to_string_lossy(),
    );
    let config = write_config(&dir.path, &input, "", &stages);
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 0);

    // `edu` runs first; `quality` after it must keep its tag.
    let first: std::collections::BTreeMap<String, serde_json::Value> = stage_documents(&dir.join("out/edu"))
        .into_iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d["metadata"]["edu"].clone()))
        .collect();
    let both = stage_documents(&dir.join("out/quality"));
    assert_eq!(both.len(), first.len());
    let mut buckets = std::collections::BTreeSet::new();
    for doc in &both {
        assert_eq!(doc["metadata"]["edu"], first[doc["id"].as_str().unwrap()], "{doc}");
        assert!(doc["metadata"]["quality"]["probabilities"].is_object(), "{doc}");
        let edu = doc["metadata"]["edu"]["score"].as_f64().expect("an edu score");
        let low = (edu / 0.1).floor() * 0.1;
        buckets.insert(format!("[{low:.2}, {:.2})", low + 0.1));
    }
    let pack = read_json(&dir.join("out/pack/manifest.json"));
    let packed: std::collections::BTreeSet<String> = pack["tokens_by_quality_bucket"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(packed, buckets, "pack buckets the edu scores");

    let report: serde_json::Value = serde_json::from_slice(
        &run_expect(
            thresher(
                &dir.path,
                &["report", dir.join("out").to_str().unwrap(), "--format", "json"],
            ),
            0,
        )
        .stdout,
    )
    .unwrap();
    let histogram: std::collections::BTreeSet<String> = report["tables"]["quality_histogram"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|row| row["bucket"].as_str().unwrap().to_string())
        .collect();
    // The last quality stage is `quality`, whose bins differ: the report
    // must pick the stage pack buckets by.
    assert_eq!(histogram, buckets, "the report shows the edu stage's histogram");
}

/// Scoring once and choosing the threshold after: `quality` without
/// `min_score`, then `filter` on `quality.score`, keeps exactly what
/// `min_score` keeps; a new threshold reruns the filter alone (the scores,
/// the expensive part, stay complete).
#[test]
fn a_filter_after_scoring_keeps_what_min_score_keeps_and_reruns_alone() {
    let dir = TestDir::new("quality-then-filter");
    let input = dir.join("input");
    multilingual_corpus(&input, 3, 40, 5);
    let fixtures = repo_root().join("classifiers/tests/fixtures/tiny-llama-cls");
    let quality = format!(
        "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"quality\"\nmodel = {:?}\ntokenizer = {:?}\n\
         device = \"cpu\"\nmax_tokens = 128\nbatch_tokens = 1024\n",
        fixtures.join("classes").to_string_lossy(),
        fixtures.join("byte-tokenizer.model").to_string_lossy()
    );
    let ids = |stage: &std::path::Path| -> std::collections::BTreeSet<String> {
        stage_documents(stage)
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };

    let filtered_dir = dir.join("filtered");
    std::fs::create_dir_all(&filtered_dir).unwrap();
    let with_filter =
        |min: f64| format!("{quality}\n[[stages]]\nkind = \"filter\"\nfield = \"quality.score\"\nmin = {min:?}\n");
    let config = write_config(&filtered_dir, &input, "", &with_filter(1.0));
    run_expect(thresher(&filtered_dir, &["run", config.to_str().unwrap()]), 0);

    let at_once_dir = dir.join("min-score");
    std::fs::create_dir_all(&at_once_dir).unwrap();
    let at_once = write_config(&at_once_dir, &input, "", &format!("{quality}min_score = 1.0\n"));
    run_expect(thresher(&at_once_dir, &["run", at_once.to_str().unwrap()]), 0);

    let kept = ids(&filtered_dir.join("out/filter"));
    assert!(
        !kept.is_empty() && kept.len() < 120,
        "min 1.0 should split: {}",
        kept.len()
    );
    assert_eq!(kept, ids(&at_once_dir.join("out/quality")));
    let filter_counts = &read_json(&filtered_dir.join("out/filter/_manifest/stage.json"))["counts"];
    let quality_counts = &read_json(&at_once_dir.join("out/quality/_manifest/stage.json"))["counts"];
    assert_eq!(
        filter_counts["rejected"]["field_below_min"],
        quality_counts["rejected"]["quality_below_min_score"]
    );

    // A lower threshold: only the filter runs again.
    let scores = std::fs::read(filtered_dir.join("out/quality/_manifest/stage.json")).unwrap();
    std::fs::write(&config, {
        let text = std::fs::read_to_string(&config).unwrap();
        text.replace("min = 1.0", "min = 0.5")
    })
    .unwrap();
    let mut rerun = thresher(&filtered_dir, &["run", config.to_str().unwrap(), "--force"]);
    rerun.env("RUST_LOG", "info");
    let log = stderr(&run_expect(rerun, 0));
    assert!(log.contains("stage 'quality' is already complete"), "{log}");
    assert_eq!(
        std::fs::read(filtered_dir.join("out/quality/_manifest/stage.json")).unwrap(),
        scores
    );
    let more = ids(&filtered_dir.join("out/filter"));
    assert!(
        more.is_superset(&kept) && more.len() > kept.len(),
        "{} then {}",
        kept.len(),
        more.len()
    );
}
