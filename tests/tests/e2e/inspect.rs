//! `inspect` verifies what the manifests claim and exits 1 on any mismatch.

use crate::util::*;

fn finished_run(dir: &TestDir) -> std::path::PathBuf {
    let input = dir.join("input");
    multilingual_corpus(&input, 3, 30, 2);
    let config = write_config(&dir.path, &input, "", &all_stages());
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 0);
    dir.join("out")
}

#[test]
fn detects_a_changed_output_file() {
    let dir = TestDir::new("inspect-tamper");
    let out = finished_run(&dir);
    let shard = out.join("langid/shard-01.jsonl.zst");
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let report = stdout(&run_expect(thresher(&dir.path, &["inspect", out.to_str().unwrap()]), 1));
    assert!(report.contains("langid/shard-01.jsonl.zst: xxh3"), "{report}");
}

#[test]
fn detects_counts_that_do_not_add_up_and_stray_files() {
    let dir = TestDir::new("inspect-counts");
    let out = finished_run(&dir);
    let manifest_path = out.join("exact_dedup/_manifest/shard-00.jsonl.zst.json");
    let mut manifest = read_json(&manifest_path);
    manifest["counts"]["documents_out"] = serde_json::json!(manifest["counts"]["documents_out"].as_u64().unwrap() + 1);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    std::fs::write(out.join("langid/stray.jsonl.zst"), b"").unwrap();
    let report = stdout(&run_expect(thresher(&dir.path, &["inspect", out.to_str().unwrap()]), 1));
    assert!(report.contains("shard-00.jsonl.zst.json: documents in"), "{report}");
    assert!(report.contains("stray.jsonl.zst: not listed"), "{report}");
    let json = stdout(&run_expect(
        thresher(&dir.path, &["inspect", out.to_str().unwrap(), "--json"]),
        1,
    ));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(parsed["problems"].as_array().unwrap().len() >= 2);
}
