//! `minhash_dedup` on real sentences with planted near-duplicates: exact
//! copies, copies with 1-5% of their words replaced, copies with boilerplate
//! added. With the high-recall setting every planted copy is found, nothing
//! unrelated is merged, and 1, 3 and 8 tasks, and resolving in passes, give
//! the same bytes.

use std::collections::BTreeMap;
use std::io::Write;

use crate::util::*;

/// The README's high-recall preset: 40 bands × 3 rows, candidates verified
/// at estimated Jaccard 0.55.
const HIGH_RECALL: &str = "bands = 40\nrows = 3\nverify_threshold = 0.55\npartitions = 4\n";

/// 120 originals (10-14 real sentences each, 6 languages, no sentence used
/// twice) in shards 0-2, and 40 planted copies in shards 3-5. Returns
/// (copy id → original id, every text by id).
fn corpus(dir: &std::path::Path) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut sentences = Vec::new();
    for lang in ["en", "de", "fr", "es", "ru", "pt"] {
        let text = std::fs::read_to_string(testdata().join(format!("langid/sentences/{lang}.txt"))).unwrap();
        sentences.extend(text.lines().map(str::to_string));
    }
    let mut rng = Rng(5);
    for i in (1..sentences.len()).rev() {
        sentences.swap(i, rng.below(i + 1));
    }
    let words: Vec<String> = sentences
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_string))
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    let mut texts = BTreeMap::new();
    let mut files: Vec<std::fs::File> = (0..6)
        .map(|s| std::fs::File::create(dir.join(format!("part-{s}.jsonl"))).unwrap())
        .collect();
    let mut write = |shard: usize, id: String, text: String, texts: &mut BTreeMap<String, String>| {
        writeln!(files[shard], "{}", serde_json::json!({"id": id, "text": text})).unwrap();
        texts.insert(id, text);
    };
    let mut originals = Vec::new();
    for n in 0..120 {
        let take = 10 + rng.below(5);
        let text = sentences.drain(..take).collect::<Vec<_>>().join(" ");
        let id = format!("orig-{n:03}");
        write(n % 3, id.clone(), text.clone(), &mut texts);
        originals.push((id, text));
    }
    let mut planted = BTreeMap::new();
    for k in 0..40 {
        let (orig_id, orig) = &originals[k * 3];
        let mut copy: Vec<String> = orig.split_whitespace().map(str::to_string).collect();
        // Kinds: exact; 1-2%; 3-5% of words replaced; boilerplate and 2%.
        let percent = [0, 2, 5, 2][k % 4];
        for _ in 0..copy.len() * percent / 100 {
            let i = rng.below(copy.len());
            copy[i] = words[rng.below(words.len())].clone();
        }
        let mut text = copy.join(" ");
        if k % 4 == 3 {
            text =
                format!("Home | News | Sport | Contact us\n{text}\nShare this article. Subscribe to our newsletter.");
        }
        let id = format!("copy-{k:03}");
        write(3 + k % 3, id.clone(), text, &mut texts);
        planted.insert(id, orig_id.clone());
    }
    (planted, texts)
}

#[test]
fn planted_near_duplicates_are_found_for_any_task_count() {
    let dir = TestDir::new("minhash");
    let input = dir.join("input");
    let (planted, texts) = corpus(&input);
    let stages = format!("[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"minhash_dedup\"\n{HIGH_RECALL}");
    let mut reference = None;
    // The last run resolves each partition in about 40 passes (a 50 KB
    // memory budget): the same bytes again.
    for (tasks, run) in [(1usize, ""), (3, ""), (8, ""), (3, "[run]\nresolve_memory_mb = 0.05\n")] {
        let run_dir = dir.join(&format!("tasks-{tasks}-{}", run.len()));
        std::fs::create_dir_all(&run_dir).unwrap();
        let config = write_config(&run_dir, &input, run, &stages);
        let log = run_steps_as_tasks_logged(
            &run_dir,
            &config,
            &[
                ("ingest", &["apply"][..]),
                ("minhash_dedup", &["scan", "resolve", "cluster", "apply"][..]),
            ],
            tasks,
            "info",
        );
        assert_eq!(log.contains("passes to stay within"), !run.is_empty(), "{log}");
        let outputs = outputs_masked(&run_dir);
        match &reference {
            None => {
                let mut removed = BTreeMap::new();
                for shard in 0..6 {
                    let path = run_dir.join(format!("out/minhash_dedup/_rejected/part-{shard}.jsonl.zst"));
                    if path.exists() {
                        for doc in read_zst(&path) {
                            assert_eq!(doc["rejection"]["reason"], "near_duplicate");
                            removed.insert(
                                doc["id"].as_str().unwrap().to_string(),
                                doc["rejection"]["detail"]["kept_id"].as_str().unwrap().to_string(),
                            );
                        }
                    }
                }
                // Every planted copy found, with its original kept; nothing else removed.
                assert_eq!(removed, planted, "removed (left) vs planted (right)");
                let manifest = read_json(&run_dir.join("out/minhash_dedup/_manifest/stage.json"));
                assert_eq!(manifest["stats"]["minhash"]["clusters"], 40);
                assert_eq!(manifest["counts"]["documents_out"], (texts.len() - 40) as u64);
                reference = Some(outputs);
            }
            Some(expected) => assert_same_outputs(expected, &outputs, &format!("{tasks} tasks {run}")),
        }
    }
}
