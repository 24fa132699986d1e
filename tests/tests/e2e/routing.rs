//! `partition_by = "lang"` on the langid stage: its output splits into
//! `lang=<code>/` folders, the next stage reads every one and keeps the
//! folders, the manifests count languages, and `inspect` verifies it all.

use std::collections::BTreeMap;

use crate::util::*;

/// (folder, ids) of every data file under a stage folder, counted by folder.
fn documents_by_folder(stage: &std::path::Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for entry in std::fs::read_dir(stage).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() && name.starts_with("lang=") {
            for file in std::fs::read_dir(&path).unwrap() {
                out.entry(name.clone())
                    .or_default()
                    .extend(read_zst(&file.unwrap().path()));
            }
        }
    }
    out
}

#[test]
fn langid_routes_documents_into_language_folders() {
    let dir = TestDir::new("routing");
    let input = dir.join("input");
    multilingual_corpus(&input, 3, 40, 9);
    let stages = "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"langid\"\npartition_by = \"lang\"\n\n\
                  [[stages]]\nkind = \"exact_dedup\"\npartitions = 4\n";
    let config = write_config(&dir.path, &input, "", stages);
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 0);
    let out = dir.join("out");

    let langid = documents_by_folder(&out.join("langid"));
    assert!(langid.len() >= 5, "{:?}", langid.keys());
    let manifest = read_json(&out.join("langid/_manifest/stage.json"));
    let by_lang = &manifest["stats"]["documents_by_lang"];
    let mut total = 0;
    for (folder, docs) in &langid {
        let lang = folder.trim_start_matches("lang=");
        // Every document sits in the folder of its own tag, and the manifest
        // counts each folder's documents.
        assert!(docs.iter().all(|d| d["metadata"]["lang"] == lang), "{folder}");
        assert_eq!(by_lang[lang].as_u64().unwrap(), docs.len() as u64, "{folder}");
        total += docs.len();
    }
    assert_eq!(manifest["counts"]["documents_out"].as_u64().unwrap(), total as u64);
    // The stage summary lists the files the next stage reads.
    let listed: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        listed.iter().all(|n| n.starts_with("lang=")) && listed.len() >= langid.len(),
        "{listed:?}"
    );

    // exact_dedup read all of them and kept the folders.
    let dedup = read_json(&out.join("exact_dedup/_manifest/stage.json"));
    assert_eq!(dedup["counts"]["documents_in"].as_u64().unwrap(), total as u64);
    let kept = documents_by_folder(&out.join("exact_dedup"));
    assert_eq!(kept.keys().collect::<Vec<_>>(), langid.keys().collect::<Vec<_>>());
    let kept_total: usize = kept.values().map(Vec::len).sum();
    assert_eq!(dedup["counts"]["documents_out"].as_u64().unwrap(), kept_total as u64);
    assert!(dedup["counts"]["rejected"]["duplicate"].as_u64().unwrap() > 0);

    run_expect(thresher(&dir.path, &["inspect", out.to_str().unwrap()]), 0);
}

#[test]
fn partition_by_is_checked() {
    let dir = TestDir::new("routing-config");
    let input = dir.join("input");
    multilingual_corpus(&input, 1, 5, 1);
    let stages = "[[stages]]\nkind = \"langid\"\npartition_by = \"_lang\"\n";
    let config = write_config(&dir.path, &input, "", stages);
    let out = run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("partition_by"));
}
