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
