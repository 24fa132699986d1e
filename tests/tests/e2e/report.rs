//! `thresher report` on the quickstart run: every figure checked against
//! counts made here from the output files themselves; the HTML page
//! rendered in headless Chromium; `inspect --stage --samples`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

fn sidecar_records(stage_dir: &Path, folder: &str) -> Vec<Value> {
    files_under(&stage_dir.join(folder))
        .iter()
        .flat_map(|p| read_zst(p))
        .collect()
}

/// The rows of a report table, as JSON objects.
fn table<'a>(report: &'a Value, name: &str) -> &'a Vec<Value> {
    report["tables"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no table {name}: {report}"))
}

fn quickstart_run(dir: &TestDir) -> PathBuf {
    let mut config = std::fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
    config = config.replace(
        "\"out/quickstart\"",
        &format!("{:?}", dir.join("out").to_string_lossy()),
    );
    let config_path = dir.join("quickstart.toml");
    std::fs::write(&config_path, config).unwrap();
    run_expect(thresher(&repo_root(), &["run", config_path.to_str().unwrap()]), 0);
    dir.join("out")
}

#[test]
fn report_totals_equal_counts_of_the_output_files() {
    let dir = TestDir::new("report");
    let root = quickstart_run(&dir);
    let out = run_expect(
        thresher(&repo_root(), &["report", root.to_str().unwrap(), "--format", "json"]),
        0,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The funnel: every stage's documents out, rejected and quarantined are
    // the records of its output files and sidecars; text bytes likewise.
    let funnel = table(&report, "funnel");
    let stage_names: Vec<&str> = funnel.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stage_names,
        [
            "ingest",
            "url_filter",
            "url_dedup",
            "exact_dedup",
            "minhash_dedup",
            "line_dedup",
            "langid",
            "code",
            "heuristics",
            "bad_words",
            "quality",
            "filter",
            "pack"
        ]
    );
    let mut final_documents = Vec::new();
    for row in funnel {
        let name = row["stage"].as_str().unwrap();
        let stage_dir = root.join(name);
        let rejected = sidecar_records(&stage_dir, "_rejected");
        let quarantined = sidecar_records(&stage_dir, "_quarantine");
        assert_eq!(row["rejected"], rejected.len() as u64, "{name}");
        assert_eq!(row["quarantined"], quarantined.len() as u64, "{name}");
        if name == "pack" {
            // The packed output lists its documents with their token counts.
            let documents = read_zst(&stage_dir.join("documents.jsonl.zst"));
            assert_eq!(row["documents_out"], documents.len() as u64);
            let tokens: u64 = documents.iter().map(|d| d["tokens"].as_u64().unwrap()).sum();
            assert_eq!(row["tokens_out"], tokens);
            assert_eq!(row["tokens_in"], tokens);
            final_documents = documents;
        } else {
            let documents = stage_documents(&stage_dir);
            assert_eq!(row["documents_out"], documents.len() as u64, "{name}");
            let bytes: u64 = documents.iter().map(|d| d["text"].as_str().unwrap().len() as u64).sum();
            assert_eq!(row["text_bytes_out"], bytes, "{name}");
            // Tokens are not known before pack, and the report says so.
            assert!(
                row["tokens_out"].is_null() && row["tokens_in"].is_null(),
                "{name}: {row}"
            );
        }
        assert_eq!(
            row["documents_in"].as_u64().unwrap(),
            row["documents_out"].as_u64().unwrap() + rejected.len() as u64 + quarantined.len() as u64,
            "{name}"
        );
    }
    assert!(report["notes"]
        .to_string()
        .contains("tokens are counted by the pack stage"));
    assert!(!final_documents.is_empty());

    // Rejections by reason: each reason's records in the sidecars.
    for row in table(&report, "rejected") {
        let name = row["stage"].as_str().unwrap();
        let reason = row["reason"].as_str().unwrap();
        let stage_dir = root.join(name);
        let n = if let Some(why) = reason.strip_prefix("(quarantined)") {
            assert!(why.is_empty());
            sidecar_records(&stage_dir, "_quarantine").len()
        } else {
            sidecar_records(&stage_dir, "_rejected")
                .iter()
                .filter(|r| r["rejection"]["reason"] == reason)
                .count()
        };
        assert_eq!(row["documents"], n as u64, "{name} {reason}");
    }

    // Tokens by language, code language and quality bucket: the packed
    // documents' token counts joined with the tags the stages before pack
    // wrote into the documents.
    let tagged: BTreeMap<String, Value> = stage_documents(&root.join("quality"))
        .into_iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d))
        .collect();
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for packed in &final_documents {
        let n = packed["tokens"].as_u64().unwrap();
        let doc = &tagged[packed["id"].as_str().unwrap()];
        let meta = &doc["metadata"];
        let language = meta["lang"].as_str().unwrap().to_string();
        let code_language = meta["code"]["language"].as_str().unwrap_or("none").to_string();
        let kind = if meta["code"]["is_code"].as_bool().unwrap() {
            "code"
        } else {
            "prose"
        };
        let score = meta["quality"]["score"].as_f64().unwrap();
        let low = (score / 0.1).floor() * 0.1;
        let bucket = format!("[{low:.2}, {:.2})", low + 0.1);
        for key in [
            ("language", language),
            ("code_language", code_language),
            ("kind", kind.to_string()),
            ("quality_bucket", bucket),
            ("source", doc["source"].as_str().unwrap().to_string()),
        ] {
            *expected.entry((key.0.to_string(), key.1)).or_default() += n;
        }
    }
    let reported: BTreeMap<(String, String), u64> = table(&report, "tokens")
        .iter()
        .map(|r| {
            (
                (
                    r["dimension"].as_str().unwrap().to_string(),
                    r["value"].as_str().unwrap().to_string(),
                ),
                r["tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reported, expected);
    let total: u64 = final_documents.iter().map(|d| d["tokens"].as_u64().unwrap()).sum();
    let language_percent: f64 = table(&report, "tokens")
        .iter()
        .filter(|r| r["dimension"] == "language")
        .map(|r| r["percent"].as_f64().unwrap())
        .sum();
    assert!((language_percent - 100.0).abs() < 0.1, "{language_percent}");
    assert!(total > 0);

    // Per-language survival: from langid on, each stage's documents by
    // language in and out are its input's and output's.
    let survival = table(&report, "language_survival");
    for stage in ["langid", "code", "quality"] {
        let mut out_by_lang: BTreeMap<String, u64> = BTreeMap::new();
        for d in stage_documents(&root.join(stage)) {
            *out_by_lang
                .entry(d["metadata"]["lang"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let reported: BTreeMap<String, u64> = survival
            .iter()
            .filter(|r| r["stage"] == stage)
            .filter(|r| r["documents_out"].as_u64().unwrap() > 0)
            .map(|r| {
                (
                    r["lang"].as_str().unwrap().to_string(),
                    r["documents_out"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(reported, out_by_lang, "{stage}");
    }
    assert!(report["notes"]
        .to_string()
        .contains("no language before stage 'langid'"));

    // The quality histogram counts every scored document; code languages
    // every document the code stage judged.
    let histogram: u64 = table(&report, "quality_histogram")
        .iter()
        .map(|r| r["documents_scored"].as_u64().unwrap())
        .sum();
    let quality_in = funnel.iter().find(|r| r["stage"] == "quality").unwrap()["documents_in"]
        .as_u64()
        .unwrap();
    assert_eq!(histogram, quality_in);
    let mut code_documents: BTreeMap<String, u64> = BTreeMap::new();
    for d in stage_documents(&root.join("code")) {
        let language = d["metadata"]["code"]["language"].as_str().unwrap_or("none").to_string();
        *code_documents.entry(language).or_default() += 1;
    }
    let reported: BTreeMap<String, u64> = table(&report, "code_languages")
        .iter()
        .map(|r| {
            (
                r["language"].as_str().unwrap().to_string(),
                r["documents"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reported, code_documents);

    // Packing figures are the packed output's manifest.
    let pack_manifest = read_json(&root.join("pack/manifest.json"));
    let packing: BTreeMap<String, Value> = table(&report, "packing")
        .iter()
        .map(|r| (r["metric"].as_str().unwrap().to_string(), r["value"].clone()))
        .collect();
    assert_eq!(
        packing["rows"].as_f64().unwrap(),
        pack_manifest["rows"].as_f64().unwrap()
    );
    assert_eq!(packing["tokens"].as_f64().unwrap(), total as f64);

    // The other formats carry the same tables.
    let markdown = stdout(&run_expect(
        thresher(
            &repo_root(),
            &["report", root.to_str().unwrap(), "--format", "markdown"],
        ),
        0,
    ));
    assert!(
        markdown.contains("## funnel") && markdown.contains("| stage | kind | documents_in"),
        "{markdown}"
    );
    let terminal = stdout(&run_expect(
        thresher(&repo_root(), &["report", root.to_str().unwrap()]),
        0,
    ));
    assert!(
        terminal.contains("language_survival") && terminal.contains("pack"),
        "{terminal}"
    );
    for format in ["csv", "parquet"] {
        let folder = dir.join(format);
        run_expect(
            thresher(
                &repo_root(),
                &[
                    "report",
                    root.to_str().unwrap(),
                    "--format",
                    format,
                    "--out",
                    folder.to_str().unwrap(),
                ],
            ),
            0,
        );
        for name in [
            "funnel",
            "rejected",
            "tokens",
            "packing",
            "language_survival",
            "quality_histogram",
            "code_languages",
        ] {
            let path = folder.join(format!("{name}.{format}"));
            assert!(std::fs::metadata(&path).unwrap().len() > 0, "{}", path.display());
        }
    }
    let csv = std::fs::read_to_string(dir.join("csv/funnel.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + stage_names.len(), "{csv}");
    // A report of a folder without a run is an error that says so.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run_expect(thresher(&repo_root(), &["report", empty.to_str().unwrap()]), 2);
    assert!(stderr(&out).contains("no completed stage"), "{}", stderr(&out));
}

/// The HTML page in headless Chromium: scripts/check-report-html takes a
/// screenshot and checks from the rendered page that each of the four
/// charts has bars of non-zero size, and from the screenshot's pixels that
/// they are drawn.
#[test]
fn html_report_renders_in_chromium_with_its_charts() {
    let dir = TestDir::new("report-html");
    let root = quickstart_run(&dir);
    let html = dir.join("report.html");
    run_expect(
        thresher(
            &repo_root(),
            &[
                "report",
                root.to_str().unwrap(),
                "--html",
                html.to_str().unwrap(),
                "--format",
                "markdown",
            ],
        ),
        0,
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("<script"),
        "not self-contained"
    );
    let screenshot = dir.join("report.png");
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/check-report-html"))
        .arg(&html)
        .arg(&screenshot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-report-html failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    for chart in ["funnel", "tokens-by-language", "quality-histogram", "code-languages"] {
        assert!(summary["charts"][chart]["bars"].as_u64().unwrap() > 0, "{summary}");
    }
    assert!(summary["bar_pixels"].as_u64().unwrap() > 1000, "{summary}");
}

#[test]
fn inspect_samples_show_rejected_documents_per_reason() {
    let dir = TestDir::new("inspect-samples");
    let root = quickstart_run(&dir);
    let out = run_expect(
        thresher(
            &repo_root(),
            &[
                "inspect",
                root.to_str().unwrap(),
                "--stage",
                "url_dedup",
                "--samples",
                "1",
                "--json",
            ],
        ),
        0,
    );
    let reasons: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rejected = sidecar_records(&root.join("url_dedup"), "_rejected");
    let listed: u64 = reasons
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["records"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, rejected.len() as u64);
    let first = &reasons[0];
    assert_eq!(first["reason"], "duplicate_url");
    let sample = &first["samples"][0];
    let source = rejected.iter().find(|r| r["id"] == sample["id"]).unwrap();
    assert!(source["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .starts_with(sample["text_start"].as_str().unwrap()));
    assert!(sample["detail"]["kept_id"].is_string());
    // The quarantined record of ingest appears with its reason.
    let text = stdout(&run_expect(
        thresher(
            &repo_root(),
            &["inspect", root.to_str().unwrap(), "--stage", "ingest", "--samples", "2"],
        ),
        0,
    ));
    assert!(
        text.contains("quarantined: ") && text.contains("duplicate id"),
        "{text}"
    );
    let out = run_expect(
        thresher(
            &repo_root(),
            &["inspect", root.to_str().unwrap(), "--stage", "nope", "--samples", "2"],
        ),
        2,
    );
    assert!(stderr(&out).contains("no stage 'nope'"), "{}", stderr(&out));
}
