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
