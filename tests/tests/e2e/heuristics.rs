//! `heuristics` in a pipeline, on real crawl documents (Dolma's CCNet
//! sample, CCNet's WET sample, Spanish sentences) and on real pages
//! changed to trip the rules: each dropped document names its rule and the
//! measure, C4 removes lines from kept ones, other languages pass unjudged,
//! and the counts add up. (Every decision is held to datatrove's own in
//! `stages/tests/heuristics_match_datatrove.rs`.)

use std::io::{Read, Write};

use serde_json::Value;

use crate::util::*;

#[test]
fn rules_drop_what_they_name_and_c4_trims_the_rest() {
    let dir = TestDir::new("heuristics");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let web = testdata().join("webcrawl");
    for name in ["cc_en_head-0091.jsonl.gz", "cc_en_head-0174.jsonl.gz"] {
        std::fs::copy(web.join("dolma/cc_en_head").join(name), input.join(name)).unwrap();
    }
    std::fs::copy(web.join("cc_net/sample.warc.wet.txt"), input.join("cc_net.warc.wet")).unwrap();
    // A real English page (the sample's first), changed.
    let mut sample = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(web.join("dolma/cc_en_head/cc_en_head-0174.jsonl.gz")).unwrap())
        .read_to_string(&mut sample)
        .unwrap();
    let first: Value = serde_json::from_str(sample.lines().next().unwrap()).unwrap();
    let base = first["text"].as_str().unwrap().to_string();
    let repeated = format!("{base}\n{base}");
    let lorem = format!("{base}\nLorem ipsum dolor sit amet, consectetur adipiscing elit.");
    let trimmed = format!("{base}\nPlease enable JavaScript to view the comments.\nThis site uses cookies.");
    // Real Spanish sentences: English stop words would reject them, were
    // they judged.
    let spanish: String = std::fs::read_to_string(testdata().join("langid/sentences/es.txt"))
        .unwrap()
        .lines()
        .take(12)
        .collect::<Vec<_>>()
        .join("\n");
    let mut planted = std::fs::File::create(input.join("planted.jsonl")).unwrap();
    for (id, text) in [
        ("repeated", &repeated),
        ("lorem", &lorem),
        ("trimmed", &trimmed),
        ("spanish", &spanish),
    ] {
        writeln!(planted, "{}", serde_json::json!({"id": id, "text": text})).unwrap();
    }
    drop(planted);

    let stages = "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"langid\"\n\n\
        [[stages]]\nkind = \"heuristics\"\n[stages.gopher_repetition]\n[stages.gopher_quality]\n\
        [stages.c4_quality]\nfilter_no_terminal_punct = false\n[stages.fineweb_quality]\n";
    // The CCNet sample reuses a record id in one of its 5 records (see
    // examples/SOURCES.md): quarantined, which the default 1% budget refuses.
    let config = write_config(&dir.path, &input, "[run]\nmax_error_rate = 0.05\n", stages);
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 0);
    // Accounting of every manifest: in = out + rejected + quarantined.
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);

    let stage_dir = dir.join("out/heuristics");
    let kept = stage_documents(&stage_dir);
    let rejected: Vec<Value> = files_under(&stage_dir.join("_rejected"))
        .iter()
        .flat_map(|p| read_zst(p))
        .collect();
    let by_id = |docs: &[Value], id: &str| docs.iter().find(|d| d["id"] == id).cloned();
    let reason = |id: &str| by_id(&rejected, id).map(|d| d["rejection"]["reason"].as_str().unwrap().to_string());

    assert!(
        reason("repeated").unwrap().starts_with("gopher_dup_"),
        "{:?}",
        reason("repeated")
    );
    assert_eq!(reason("lorem").as_deref(), Some("c4_lorem_ipsum"));
    let trimmed_out = by_id(&kept, "trimmed").expect("the page with boilerplate lines is kept");
    let text = trimmed_out["text"].as_str().unwrap();
    assert!(!text.contains("JavaScript") && !text.contains("cookies"), "{text}");
    assert!(text.len() < trimmed.len());
    assert!(by_id(&kept, "spanish").is_some(), "Spanish passes unjudged");

    for doc in &rejected {
        let rejection = &doc["rejection"];
        let reason = rejection["reason"].as_str().unwrap();
        assert!(
            ["gopher_", "c4_", "fineweb_"].iter().any(|p| reason.starts_with(p)),
            "{reason}"
        );
        // Every rule says what it measured against which bound.
        let detail = &rejection["detail"];
        assert!(
            detail.get("value").is_some() || detail.get("line").is_some(),
            "{reason}: {detail}"
        );
        assert_eq!(doc["metadata"]["lang"], "eng", "only English is judged: {doc}");
    }

    let langid = stage_documents(&dir.join("out/langid"));
    let other_languages = langid.iter().filter(|d| d["metadata"]["lang"] != "eng").count();
    assert!(
        other_languages >= 2,
        "a Russian record (CCNet) and the Spanish sentences"
    );
    let manifest = read_json(&stage_dir.join("_manifest/stage.json"));
    let stats = &manifest["stats"];
    let unjudged: u64 = stats["heuristics_not_judged_by_lang"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(unjudged as usize, other_languages, "{stats}");
    assert_eq!(
        stats["heuristics_documents"]["judged"].as_u64().unwrap() as usize,
        langid.len() - other_languages
    );
    assert!(
        stats["c4_lines_removed"]["javascript"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(stats["c4_lines_removed"]["policy"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(kept.len() + rejected.len(), langid.len());
}
