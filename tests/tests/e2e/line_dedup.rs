//! `line_dedup` on real sentences with planted boilerplate: every line
//! repeated more than `max_repeats` times goes, nothing else does, and 1, 3
//! and 8 tasks give the same bytes.

use std::collections::BTreeMap;
use std::io::Write;

use crate::util::*;

const FOOTERS: [&str; 3] = [
    "Share this article on Facebook",
    "© 2024 Example News. All rights reserved.",
    "Subscribe to our newsletter!",
];
/// A fragment of each footer that survives its variants (case, year).
fn is_footer(line: &str) -> Option<usize> {
    let line = line.to_lowercase();
    ["share this article", "example news", "subscribe to our newsletter"]
        .iter()
        .position(|m| line.contains(m))
}

/// Planted into 4 documents only: at most max_repeats (6), so it stays.
const RARE: &str = "Read the full interview in our print edition.";

/// 6 shards × 25 documents of 2-4 real sentences each (several languages),
/// footers planted into 30 documents each (varying digits and case, which
/// normalization ignores) and the rare line into 4.
fn corpus(dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut sentences = Vec::new();
    for lang in ["en", "de", "fr", "es", "ru", "zh"] {
        let text = std::fs::read_to_string(testdata().join(format!("langid/sentences/{lang}.txt"))).unwrap();
        sentences.extend(text.lines().take(100).map(str::to_string));
    }
    let mut rng = Rng(11);
    // A fixed shuffle, so documents mix languages.
    for i in (1..sentences.len()).rev() {
        sentences.swap(i, rng.below(i + 1));
    }
    let mut texts = BTreeMap::new();
    std::fs::create_dir_all(dir).unwrap();
    let mut n = 0;
    for shard in 0..6 {
        let mut file = std::fs::File::create(dir.join(format!("part-{shard}.jsonl"))).unwrap();
        for _ in 0..25 {
            // Each sentence is used once, so no real line repeats.
            let take = 2 + rng.below(3);
            let mut lines: Vec<String> = sentences.drain(..take).collect();
            for (f, footer) in FOOTERS.iter().enumerate() {
                if (n + f * 3) % 10 < 2 {
                    let variant = footer.replace("2024", &format!("{}", 2000 + n % 20));
                    lines.push(if n % 2 == 0 { variant.to_uppercase() } else { variant });
                }
            }
            if n % 37 == 5 {
                lines.insert(0, RARE.to_string());
            }
            let id = format!("doc-{n:03}");
            let text = lines.join("\n");
            writeln!(file, "{}", serde_json::json!({"id": id, "text": text})).unwrap();
            texts.insert(id, text);
            n += 1;
        }
    }
    texts
}

#[test]
fn boilerplate_goes_everything_else_stays_for_any_task_count() {
    let dir = TestDir::new("line-dedup");
    let input = dir.join("input");
    let texts = corpus(&input);
    let planted: Vec<usize> = (0..FOOTERS.len())
        .map(|f| {
            texts
                .values()
                .flat_map(|t| t.lines())
                .filter(|l| is_footer(l) == Some(f))
                .count()
        })
        .collect();
    assert!(
        planted.iter().all(|&c| c > 6),
        "each footer must be planted more than 6 times: {planted:?}"
    );
    let rare = texts.values().filter(|t| t.contains(RARE)).count();
    assert!((2..=6).contains(&rare), "the rare line is planted {rare} times");

    let stages = "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"line_dedup\"\npartitions = 4\n";
    let mut reference = None;
    for tasks in [1usize, 3, 8] {
        let run_dir = dir.join(&format!("tasks-{tasks}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let config = write_config(&run_dir, &input, "", stages);
        run_steps_as_tasks(
            &run_dir,
            &config,
            &[
                ("ingest", &["apply"][..]),
                ("line_dedup", &["scan", "resolve", "apply"][..]),
            ],
            tasks,
        );
        let outputs = outputs_masked(&run_dir);
        match &reference {
            None => {
                let mut kept = BTreeMap::new();
                for shard in 0..6 {
                    for doc in read_zst(&run_dir.join(format!("out/line_dedup/part-{shard}.jsonl.zst"))) {
                        kept.insert(
                            doc["id"].as_str().unwrap().to_string(),
                            doc["text"].as_str().unwrap().to_string(),
                        );
                    }
                }
                assert_eq!(kept.len(), texts.len(), "no document is left too short here");
                for (id, original) in &texts {
                    // Expected: the original without any footer line.
                    let expected: Vec<&str> = original.lines().filter(|l| is_footer(l).is_none()).collect();
                    assert_eq!(kept[id], expected.join("\n"), "{id}");
                }
                let manifest = read_json(&run_dir.join("out/line_dedup/_manifest/stage.json"));
                assert_eq!(
                    manifest["stats"]["line_dedup"]["lines_removed"],
                    planted.iter().sum::<usize>() as u64
                );
                reference = Some(outputs);
            }
            Some(expected) => assert_same_outputs(expected, &outputs, &format!("{tasks} tasks")),
        }
    }
}
