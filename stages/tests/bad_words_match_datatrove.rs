//! The `bad_words` stage against datatrove 0.10.1's `C4BadWordsFilter`:
//! `fixtures/bad-words-datatrove.jsonl.zst` holds its decision for 838
//! documents (those of the heuristics fixture, named by id, each in the
//! language of its sentence file or English, and paragraphs of Chinese,
//! Japanese, Thai, German, Russian, Spanish and Hindi sentences) under
//! made-up lists of words that hit real text: phrases, words with regex
//! characters and punctuation, numbers, other scripts, and Devanagari, whose
//! vowel signs are word boundaries to Python's `\W`. Made by
//! `scripts/datatrove_bad_words.py`.

mod common;

use std::collections::HashMap;

use serde_json::{json, Value};
use thresher_stages::registry::StageConfig;
use thresher_stages::{Decision, Document, Stage, StageStats};

#[test]
fn decisions_match_datatrove() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bad-words-datatrove.jsonl.zst"
    );
    let raw = zstd::decode_all(std::fs::File::open(path).expect("fixture")).expect("zstd");
    let text = String::from_utf8(raw).unwrap();
    let mut lines = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap());
    let lists = lines.next().unwrap()["lists"].clone();
    let texts: HashMap<String, String> = common::heuristics_fixture()
        .into_iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let config: StageConfig = serde_json::from_value(json!({"kind": "bad_words", "words": lists})).unwrap();
    let Stage::Document(stage) = config.build().unwrap() else {
        panic!("bad_words is a document stage")
    };
    let (mut checked, mut removed, mut differ) = (0, 0, Vec::new());
    for record in lines {
        let id = record["id"].as_str().unwrap();
        let text = match record["text"].as_str() {
            Some(text) => text.to_string(),
            None => texts
                .get(id)
                .unwrap_or_else(|| panic!("{id} is not in the heuristics fixture"))
                .clone(),
        };
        let mut doc = Document::new(id, &text);
        doc.metadata.insert("lang".into(), record["lang"].clone());
        let dropped = matches!(
            stage.process(&mut doc, &mut StageStats::default()),
            Decision::Drop { .. }
        );
        let want = record["removed"].as_bool().unwrap();
        if dropped != want {
            differ.push(format!(
                "{id} ({}): thresher {dropped}, datatrove {want}",
                record["lang"]
            ));
        }
        checked += 1;
        removed += want as usize;
    }
    assert!(
        differ.is_empty(),
        "{} of {checked} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
    // Both decisions occur often enough to mean something.
    assert!(
        checked > 800 && removed > 100 && checked - removed > 100,
        "{checked} {removed}"
    );
}
