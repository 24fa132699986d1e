//! `thresher eval langid` on the 75-language sentence set, and on data whose
//! labels are known to be wrong, so the evaluator itself is checked.

use crate::util::*;

fn eval_json(dir: &std::path::Path, data: &std::path::Path) -> serde_json::Value {
    let out = run_expect(
        thresher(dir, &["eval", "langid", "--data", data.to_str().unwrap(), "--json"]),
        0,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn langid_evaluation_covers_every_language_and_catches_wrong_labels() {
    let dir = TestDir::new("eval-langid");
    let e = eval_json(&dir.path, &testdata().join("langid/sentences"));
    let languages = e["languages"].as_array().unwrap();
    assert_eq!(languages.len(), 75);
    let get = |lang: &str| languages.iter().find(|l| l["lang"] == lang).unwrap().clone();
    // Two-letter file names and whatlang's individual-language codes meet.
    for lang in ["eng", "zho", "fas", "nob"] {
        assert_eq!(get(lang)["supported"], true, "{lang}");
        assert!(get(lang)["sentence_accuracy"].as_f64().unwrap() > 0.7, "{lang}");
    }
    // A language whatlang cannot name is never right.
    assert_eq!(get("nno")["supported"], false);
    assert_eq!(get("nno")["sentence_accuracy"], 0.0);
    let sentence = e["sentence_accuracy_supported"].as_f64().unwrap();
    let document = e["document_accuracy_supported"].as_f64().unwrap();
    assert!(sentence > 0.9 && document > sentence, "{sentence} {document}");

    // German sentences filed as English: every answer is wrong, and the
    // confusion names German.
    let wrong = dir.join("mislabelled");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(testdata().join("langid/sentences/de.txt"), wrong.join("en.txt")).unwrap();
    let e = eval_json(&dir.path, &wrong);
    let eng = &e["languages"][0];
    assert_eq!(eng["lang"], "eng");
    assert!(eng["sentence_accuracy"].as_f64().unwrap() < 0.05);
    assert_eq!(eng["top_confusion"][0], "deu");
}

fn tokenizer_eval(dir: &std::path::Path, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["eval", "tokenizer", "--json"];
    all.extend_from_slice(args);
    let out = run_expect(thresher(dir, &all), code);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `thresher eval tokenizer`: Llama 3's `tokenizer.model` against its
/// `tokenizer.json` on real crawl text, Llama 2's SentencePiece model
/// against the same vocabulary's `tokenizer.json`, Dolma's Llama 2 file (added tokens
/// that are not special) on text holding them, and a reference that cannot
/// agree, which must fail the command and name the first difference.
#[test]
fn tokenizer_evaluation_checks_ids_against_the_reference() {
    let dir = TestDir::new("eval-tokenizer");
    let tokenizers = testdata().join("tokenizer");
    let crawl = testdata().join("webcrawl");
    let model = tokenizers.join("llama3-tokenizer.model");
    let llama3 = tokenizers.join("llama3-tokenizer.json");
    let e = tokenizer_eval(
        &dir.path,
        &[
            "--tokenizer",
            model.to_str().unwrap(),
            "--reference",
            llama3.to_str().unwrap(),
            "--input",
            crawl.to_str().unwrap(),
            "--max-docs",
            "400",
        ],
        0,
    );
    assert_eq!(e["kind"], "tiktoken");
    assert!(e["documents"].as_u64().unwrap() >= 20, "{e}");
    assert_eq!(
        (e["whole_differing"].as_u64(), e["first_differing"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(e["thresher_mb_per_s"].as_f64().unwrap() > 0.0 && e["reference_mb_per_s"].as_f64().unwrap() > 0.0);

    // Meta's Llama 2 SentencePiece model against the same vocabulary's
    // tokenizer.json (Dolma's), as the crate encodes it.
    let sentencepiece = tokenizers.join("llama2-tokenizer.model");
    let dolma = tokenizers.join("llama2-hf-tokenizer.dolma-test.json");
    let e = tokenizer_eval(
        &dir.path,
        &[
            "--tokenizer",
            sentencepiece.to_str().unwrap(),
            "--reference",
            dolma.to_str().unwrap(),
            "--input",
            crawl.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(e["kind"], "sentencepiece");
    assert_eq!(
        (e["whole_differing"].as_u64(), e["first_differing"].as_u64()),
        (Some(0), Some(0))
    );

    // Placeholders of Dolma's PII masking, between and inside words.
    let masked = dir.join("masked.jsonl");
    let lines: Vec<String> = (0..50)
        .map(|i| {
            let text = format!(
                "Write to |||EMAIL_ADDRESS||| or call|||PHONE_NUMBER|||{i}. Server |||IP_ADDRESS|||,|||IP_ADDRESS||| x{i}"
            );
            serde_json::json!({"id": format!("doc{i}"), "text": text}).to_string()
        })
        .collect();
    std::fs::write(&masked, lines.join("\n")).unwrap();
    let e = tokenizer_eval(
        &dir.path,
        &[
            "--tokenizer",
            dolma.to_str().unwrap(),
            "--input",
            masked.to_str().unwrap(),
            "--max-tokens",
            "20",
        ],
        0,
    );
    assert_eq!(e["documents"], 50);
    assert_eq!(
        (e["whole_differing"].as_u64(), e["first_differing"].as_u64()),
        (Some(0), Some(0))
    );
    let parts = e["parts"].as_array().unwrap();
    assert!(
        parts
            .iter()
            .any(|p| p[0] == "added tokens" && p[1].as_str().unwrap().starts_with("thresher")),
        "{e}"
    );

    // Llama 2's ids are not Llama 3's: every document differs, exit code 1.
    let e = tokenizer_eval(
        &dir.path,
        &[
            "--tokenizer",
            model.to_str().unwrap(),
            "--reference",
            dolma.to_str().unwrap(),
            "--input",
            masked.to_str().unwrap(),
        ],
        1,
    );
    assert_eq!(
        (e["whole_differing"].as_u64(), e["first_differing"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(e["first_difference"][0], "doc0");
}
