//! The README's first command on the bundled sample, then `inspect`.

use crate::util::*;

#[test]
fn quickstart_runs_and_inspects_clean() {
    let dir = TestDir::new("quickstart");
    let mut config = std::fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
    config = config.replace(
        "\"out/quickstart\"",
        &format!("{:?}", dir.join("out").to_string_lossy()),
    );
    let config_path = dir.join("quickstart.toml");
    std::fs::write(&config_path, config).unwrap();
    run_expect(thresher(&repo_root(), &["run", config_path.to_str().unwrap()]), 0);
    let out = run_expect(
        thresher(&repo_root(), &["inspect", dir.join("out").to_str().unwrap()]),
        0,
    );
    let table = stdout(&out);
    // The quickstart shows a new user every kind of stage there is.
    for kind in thresher_stages::registry::StageConfig::KINDS {
        assert!(table.contains(kind), "the quickstart does not run `{kind}`:\n{table}");
    }
    assert!(table.contains("OK: "), "{table}");

    let root = dir.join("out");
    let ingest = read_json(&root.join("ingest/_manifest/stage.json"));
    // 30 Dolma documents + 5 WET conversion records (one of them reusing an
    // id) + the HTML page of one of them from a WARC capture.
    assert_eq!(ingest["counts"]["documents_in"], 36);
    assert_eq!(ingest["counts"]["quarantined"], 1);
    let quarantined = read_zst(&root.join("ingest/_quarantine/commoncrawl/cc_net-sample.jsonl.zst"));
    assert!(
        quarantined[0]["reason"].as_str().unwrap().contains("duplicate id"),
        "{quarantined:?}"
    );
    assert!(quarantined[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("cc_net-sample.warc.wet"));

    // The placeholder block list names no page of the sample.
    let url_filter = read_json(&root.join("url_filter/_manifest/stage.json"));
    assert_eq!(url_filter["counts"]["documents_in"], 35);
    assert_eq!(url_filter["counts"]["documents_out"], 35);

    // The mirrored capture repeats a URL: url_dedup keeps the first copy (the
    // texts are equally long; sorted input order breaks the tie), so
    // exact_dedup has nothing left to find.
    let rejected = read_zst(&root.join("url_dedup/_rejected/mirror/whirlwind.jsonl.zst"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["rejection"]["reason"], "duplicate_url");
    assert_eq!(rejected[0]["rejection"]["detail"]["kept_id"], rejected[0]["id"]);
    let kept = read_zst(&root.join("url_dedup/commoncrawl/whirlwind.jsonl.zst"));
    assert_eq!(kept[0]["id"], rejected[0]["id"]);
    // The same page from the WARC capture: its main text is shorter than the
    // WET text of the whole page, so url_dedup keeps the WET one.
    let html = read_zst(&root.join("ingest/commoncrawl/whirlwind-html.jsonl.zst"));
    assert_eq!(html.len(), 1);
    assert_eq!(html[0]["url"], kept[0]["url"]);
    assert!(html[0]["text"].as_str().unwrap().len() < kept[0]["text"].as_str().unwrap().len());
    let html_rejected = read_zst(&root.join("url_dedup/_rejected/commoncrawl/whirlwind-html.jsonl.zst"));
    assert_eq!(html_rejected[0]["id"], html[0]["id"]);
    assert_eq!(html_rejected[0]["rejection"]["detail"]["kept_id"], kept[0]["id"]);
    // Two Dolma records carry the same `metadata.url` (one of them under
    // another id, as a redirect leaves it): the longer text is kept.
    let dolma = read_zst(&root.join("url_dedup/_rejected/dolma/provided-000.jsonl.zst"));
    assert_eq!(dolma.len(), 1);
    assert_eq!(
        dolma[0]["rejection"]["detail"]["kept_id"],
        "http://advocatesaz.org/tag/antibiotic-resistant-bacteria/"
    );
    let exact = read_json(&root.join("exact_dedup/_manifest/stage.json"));
    assert_eq!(exact["counts"]["documents_in"], 32);
    assert_eq!(exact["counts"]["documents_out"], 32);
    // One page of the sample repeats a line more than 6 times: line_dedup
    // removes those lines and keeps the page.
    let lines = read_json(&root.join("line_dedup/_manifest/stage.json"));
    assert_eq!(lines["counts"]["documents_out"], 32);
    assert!(
        lines["stats"]["line_dedup"]["lines_removed"].as_u64().unwrap() > 6,
        "{lines}"
    );

    // Every document is tagged; the Russian WET record is recognised (the
    // Chinese one is the record quarantined for its reused id).
    let mut langs = std::collections::BTreeSet::new();
    for entry in [
        "langid/dolma/cc_en_head-0091.jsonl.zst",
        "langid/commoncrawl/cc_net-sample.jsonl.zst",
    ] {
        for doc in read_zst(&root.join(entry)) {
            let meta = &doc["metadata"];
            assert!(meta["lang_score"].is_number(), "{doc}");
            assert!(meta["lang_script"].is_string(), "{doc}");
            langs.insert(meta["lang"].as_str().unwrap().to_string());
        }
    }
    assert!(langs.contains("eng") && langs.contains("rus"), "{langs:?}");
    let langid = read_json(&root.join("langid/_manifest/stage.json"));
    assert_eq!(langid["counts"]["documents_in"], 32);
    assert!(langid["stats"]["documents_by_lang"]["eng"].as_u64().unwrap() >= 30);

    // The heuristics judge the English pages only, and each drop names its
    // rule (the rules' decisions are held to datatrove's in the stages crate).
    let heuristics = read_json(&root.join("heuristics/_manifest/stage.json"));
    assert_eq!(heuristics["stats"]["heuristics_documents"]["judged"], 30);
    assert_eq!(heuristics["stats"]["heuristics_not_judged_by_lang"]["spa"], 1);
    assert_eq!(heuristics["stats"]["heuristics_not_judged_by_lang"]["rus"], 1);
    let dropped = heuristics["counts"]["rejected"].as_object().unwrap();
    assert!(
        dropped
            .keys()
            .all(|r| r.starts_with("gopher_") || r.starts_with("c4_") || r.starts_with("fineweb_")),
        "{dropped:?}"
    );
    let kept_after_heuristics = heuristics["counts"]["documents_out"].as_u64().unwrap();
    assert_eq!(kept_after_heuristics, 21);
    // bad_words judges every page: untagged ones and the English ones by the
    // (placeholder) English list; the Spanish and the Russian page have none.
    let bad_words = read_json(&root.join("bad_words/_manifest/stage.json"));
    assert_eq!(bad_words["stats"]["bad_words_documents"]["judged"], 19);
    assert_eq!(bad_words["stats"]["bad_words_no_list"]["spa"], 1);
    assert_eq!(bad_words["counts"]["documents_out"], kept_after_heuristics);

    // The demo classifier scores every document: P(label "1") and both
    // probabilities, and the manifest's histogram counts each once.
    let quality = read_json(&root.join("quality/_manifest/stage.json"));
    let scored = quality["counts"]["documents_in"].as_u64().unwrap();
    assert_eq!(scored, kept_after_heuristics);
    let histogram = quality["stats"]["quality_histogram"].as_object().unwrap();
    assert_eq!(histogram.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), scored);
    for doc in read_zst(&root.join("quality/dolma/cc_en_head-0091.jsonl.zst")) {
        let tag = &doc["metadata"]["quality"];
        let score = tag["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{doc}");
        assert!(
            (tag["probabilities"]["1"].as_f64().unwrap() - score).abs() < 1e-3,
            "{doc}"
        );
    }

    // No page of the sample is source code, and few of their lines are
    // judged code lines: web pages' menus and headings of a few words are
    // the line model's known weakness (README, `code` stage), and this
    // guards against a model that judges them code wholesale.
    let (mut lines, mut code_lines, mut documents) = (0.0, 0.0, 0);
    for doc in stage_documents(&root.join("code")) {
        let tag = &doc["metadata"]["code"];
        assert_eq!(tag["is_code"], false, "{}: {tag}", doc["id"]);
        let text = doc["text"].as_str().unwrap();
        let cut = (0..=8192.min(text.len()))
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap();
        let n = text[..cut].lines().filter(|l| !l.trim().is_empty()).count() as f64;
        lines += n;
        code_lines += n * tag["code_fraction"].as_f64().unwrap();
        documents += 1;
    }
    assert_eq!(documents, 32);
    // Measured: 18% (163 of 925) with the bundled model (13% with an older one,
    // whose top-1 language was 73% instead of 91%).
    assert!(code_lines / lines < 0.2, "{code_lines} of {lines} lines judged code");

    // A second run does nothing and changes nothing.
    let before = outputs(&root);
    run_expect(thresher(&repo_root(), &["run", config_path.to_str().unwrap()]), 0);
    assert_same_outputs(&before, &outputs(&root), "rerun of a finished pipeline");
}

#[test]
fn plan_shows_steps_and_progress() {
    let dir = TestDir::new("plan");
    let config = write_config(&dir.path, &repo_root().join("examples/data"), "", &all_stages());
    let out = run_expect(
        thresher(&dir.path, &["plan", config.to_str().unwrap(), "--tasks", "4"]),
        0,
    );
    let plan = stdout(&out);
    assert!(
        plan.contains("exact_dedup") && plan.contains("resolve") && plan.contains("waits for 'ingest'"),
        "{plan}"
    );
    run_expect(
        thresher(
            &dir.path,
            &[
                "run",
                config.to_str().unwrap(),
                "--stage",
                "ingest",
                "--max-error-rate",
                "0.05",
            ],
        ),
        0,
    );
    let plan = stdout(&run_expect(thresher(&dir.path, &["plan", config.to_str().unwrap()]), 0));
    let ingest_line = plan.lines().find(|l| l.starts_with("ingest")).unwrap();
    assert!(ingest_line.contains("complete"), "{plan}");
    let scan_line = plan.lines().find(|l| l.contains(" scan ")).unwrap();
    assert!(scan_line.contains("to do") && scan_line.contains(" 7 "), "{plan}");
}

/// The first task to finish has seen only its share of the records: a rate
/// over that share must not fail it. Found by the Slurm test, where task 0
/// (holding the sample's one quarantined record: 1 of its 13 records, 7.7%)
/// sometimes finished first under the quickstart's 5% budget.
#[test]
fn the_error_budget_is_judged_on_the_whole_stage() {
    let dir = TestDir::new("budget");
    let config = write_config(
        &dir.path,
        &repo_root().join("examples/data"),
        "[run]\nmax_error_rate = 0.05",
        "[[stages]]\nkind = \"ingest\"\n",
    );
    for index in ["0", "1", "2"] {
        let out = run_expect(
            thresher(
                &dir.path,
                &[
                    "run",
                    config.to_str().unwrap(),
                    "--stage",
                    "ingest",
                    "--task-index",
                    index,
                    "--tasks",
                    "3",
                ],
            ),
            0,
        );
        assert!(!stderr(&out).contains("max_error_rate"), "{}", stderr(&out));
    }
    let stage = read_json(&dir.join("out/ingest/_manifest/stage.json"));
    assert_eq!(stage["counts"]["quarantined"], 1);
    assert_eq!(stage["counts"]["documents_in"], 36);
    // The whole stage over budget still fails, naming the rate.
    let strict = write_config(
        &dir.path,
        &repo_root().join("examples/data"),
        "[run]\nmax_error_rate = 0.01",
        "[[stages]]\nkind = \"ingest\"\nname = \"strict\"\n",
    );
    let out = run_expect(thresher(&dir.path, &["run", strict.to_str().unwrap()]), 2);
    assert!(stderr(&out).contains("1 of 36 records"), "{}", stderr(&out));
}
