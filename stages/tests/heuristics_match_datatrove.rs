//! The `heuristics` stage against datatrove 0.10.1 and spaCy 3.8 themselves:
//! `fixtures/heuristics-datatrove.jsonl.zst` holds, for 810 documents (real
//! ones from ../shared/testdata: web pages, 260 source files, sentences of 19
//! languages; and copies of the pages and sentences changed to trip each
//! rule), the words spaCy splits them into and the decision of each of
//! datatrove's four filters. It is made by
//! `scripts/datatrove_heuristics.py fixture`. Source files are named there,
//! not copied (their licenses vary): they are read from ../shared/testdata.

mod common;

use common::heuristics_fixture as fixture;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use thresher_stages::heuristics::words::English;
use thresher_stages::registry::StageConfig;
use thresher_stages::{Decision, Document, Stage, StageStats};

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// datatrove's name for each of thresher's reasons (thresher's say which
/// way a bound failed; the n of an n-gram rule is in the detail).
fn datatrove_reason(reason: &str, detail: &Value) -> String {
    let n = detail.get("n").and_then(Value::as_u64).unwrap_or(0);
    match reason {
        "heuristics_empty_text" => "empty".into(),
        "gopher_top_ngram" => format!("top_{n}_gram"),
        "gopher_duplicated_ngrams" => format!("duplicated_{n}_n_grams"),
        "gopher_short_words" => "gopher_below_avg_threshold".into(),
        "gopher_long_words" => "gopher_above_avg_threshold".into(),
        "gopher_too_many_ellipses" => "gopher_too_many_ellipsis".into(),
        "gopher_too_many_bullet_lines" => "gopher_too_many_bullets".into(),
        "gopher_too_many_ellipsis_lines" => "gopher_too_many_end_ellipsis".into(),
        "gopher_too_few_alpha_words" => "gopher_below_alpha_threshold".into(),
        "gopher_too_few_stop_words" => "gopher_enough_stop_words".into(),
        r if r.starts_with("gopher_short_doc") || r.starts_with("gopher_long_doc") || r == "gopher_too_many_hashes" => {
            r.into()
        }
        r => r
            .strip_prefix("gopher_")
            .or_else(|| r.strip_prefix("c4_"))
            .or_else(|| r.strip_prefix("fineweb_"))
            .unwrap_or(r)
            .into(),
    }
}

fn stage(rule_set: &str) -> Box<dyn thresher_stages::DocumentStage> {
    let config: StageConfig =
        serde_json::from_value(json!({"kind": "heuristics", "languages": ["*"], rule_set: {}})).unwrap();
    match config.build().unwrap() {
        Stage::Document(stage) => stage,
        _ => unreachable!(),
    }
}

#[test]
fn words_match_spacy() {
    let english = English::get();
    let (mut docs, mut same, mut words_total, mut words_off) = (0, 0, 0, 0usize);
    let mut shown = 0;
    for record in fixture() {
        let text = record["text"].as_str().unwrap();
        let ours = english.words(text);
        let equal = match &record["words"] {
            Value::Array(theirs) => {
                let theirs: Vec<&str> = theirs.iter().map(|w| w.as_str().unwrap()).collect();
                words_total += theirs.len();
                words_off += theirs.len().abs_diff(ours.len());
                if ours != theirs && shown < 5 {
                    shown += 1;
                    let at = ours
                        .iter()
                        .zip(&theirs)
                        .position(|(a, b)| a != b)
                        .unwrap_or(ours.len().min(theirs.len()));
                    eprintln!(
                        "{}: words differ at {at}: ours {:?} spaCy {:?}",
                        record["id"],
                        &ours[at..(at + 6).min(ours.len())],
                        &theirs[at..(at + 6).min(theirs.len())]
                    );
                }
                ours == theirs
            }
            count => {
                let same_count = count.as_u64() == Some(ours.len() as u64);
                match record["words_sha256"].as_str() {
                    Some(digest) => same_count && sha256(&ours.join("\0")) == digest,
                    None => same_count,
                }
            }
        };
        docs += 1;
        same += usize::from(equal);
        let sentences = record["sentences"].as_u64().unwrap() as usize;
        if !text.trim().is_empty() {
            assert_eq!(english.sentence_count(text), sentences, "{}: sentences", record["id"]);
        }
    }
    eprintln!("words: {same}/{docs} documents split exactly as spaCy does; {words_off} of {words_total} words off");
    assert_eq!(same, docs, "every document splits into spaCy's words");
}

#[test]
fn decisions_match_datatrove() {
    let records = fixture();
    let mut failures = Vec::new();
    for rule_set in ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"] {
        let stage = stage(rule_set);
        let mut agree = 0;
        for record in &records {
            let mut doc = Document::new("x", record["text"].as_str().unwrap());
            let ours = match stage.process(&mut doc, &mut StageStats::default()) {
                Decision::Keep => Value::Null,
                Decision::Drop { reason, detail } => Value::from(datatrove_reason(reason, &detail)),
            };
            let theirs = &record["datatrove"][rule_set];
            let mut equal = ours == *theirs;
            if rule_set == "c4_quality" && equal && ours.is_null() {
                equal = match record["c4_text_sha256"].as_str() {
                    Some(digest) => sha256(&doc.text) == digest,
                    None => record["c4_text"].as_str() == Some(doc.text.as_str()),
                };
                if !equal {
                    failures.push(format!("{}: c4 text differs", record["id"]));
                }
            } else if !equal {
                failures.push(format!("{} {rule_set}: ours {ours} datatrove {theirs}", record["id"]));
            }
            agree += usize::from(equal);
        }
        eprintln!("{rule_set}: {agree}/{} decisions as datatrove's", records.len());
    }
    for f in failures.iter().take(20) {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} decisions differ from datatrove's",
        failures.len()
    );
}
