//! `bad_words`: drops documents that use words of a per-language list: C4's
//! "badwords" filter (Raffel et al. 2020; datatrove's `C4BadWordsFilter` over
//! the LDNOOBW lists) and Llama 3's "dirty word counting", which caught
//! adult sites that the domain block lists missed.
//!
//! A document's language is its `lang` tag (ISO 639-3) or `lang_iso639_1`,
//! as `langid` writes them, so lists may be keyed by either code (LDNOOBW's
//! files are named by ISO 639-1: `en`, `de`, ...); untagged documents take
//! `default_language`. The text is lower-cased and every listed word or
//! phrase is found in one pass (Aho-Corasick). A match counts when it stands
//! alone: the characters either side are not letters, digits or `_`
//! (datatrove's `(?:\W|^)word(?:\W|$)`), except in languages written without
//! spaces (Chinese, Japanese, Thai), where any occurrence counts, as in
//! datatrove. Matches are counted without overlaps. More than `max_count`
//! drops the document (`bad_words`, naming the words found); C4 drops at the
//! first (`max_count = 0`), and `keep_fraction` keeps that share of them
//! anyway (datatrove's option), chosen by a hash of the document id, so
//! reruns keep the same ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aho_corasick::{AhoCorasick, MatchKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::filter::Missing;
use crate::{Decision, Document, DocumentStage, Error, Result, StageStats};

/// Configuration of `bad_words`. A language's list is the union of its
/// inline `words` and the lines of its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BadWordsConfig {
    /// Language → list file (one word or phrase per line, `#` comments),
    /// local or `s3://`.
    pub files: BTreeMap<String, PathBuf>,
    /// Language → words or phrases.
    pub words: BTreeMap<String, Vec<String>>,
    /// Matches a document may have and stay (C4: 0, none).
    pub max_count: usize,
    /// Share of documents over `max_count` kept anyway (datatrove's
    /// `keep_fraction`), by a hash of the id and `seed`.
    pub keep_fraction: f64,
    pub seed: u64,
    /// The language of documents without a `lang` tag (datatrove: `en`).
    pub default_language: String,
    /// A document whose language has no list: `keep` (counted) or `reject`
    /// (`bad_words_no_list`).
    pub missing_language: Missing,
}

impl Default for BadWordsConfig {
    fn default() -> Self {
        Self {
            files: BTreeMap::new(),
            words: BTreeMap::new(),
            max_count: 0,
            keep_fraction: 0.0,
            seed: 0,
            default_language: "en".into(),
            // Lists exist for some languages only; the rest cannot be judged.
            missing_language: Missing::Keep,
        }
    }
}

impl BadWordsConfig {
    /// Checks what needs no file.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Error::Config {
            kind: "bad_words",
            message,
        };
        if self.files.is_empty() && self.words.is_empty() {
            return Err(invalid(
                "no list: set files (language → file) or words (language → list)".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.keep_fraction) {
            return Err(invalid(format!(
                "keep_fraction {} is not in [0, 1)",
                self.keep_fraction
            )));
        }
        Ok(())
    }

    /// The list files, for copying remote ones before the stage is built.
    pub fn files_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        self.files.values_mut()
    }
}

/// One language's list.
struct WordList {
    automaton: AhoCorasick,
    words: Vec<String>,
    /// Written without spaces between words: any occurrence counts.
    unspaced: bool,
}

pub struct BadWords {
    lists: BTreeMap<String, WordList>,
    max_count: usize,
    keep_fraction: f64,
    seed: u64,
    default_language: String,
    missing_language: Missing,
}

/// Languages written without spaces between words, by ISO 639-1 and 639-3
/// code (datatrove: ja, th, zh).
const UNSPACED: &[&str] = &["ja", "jpn", "th", "tha", "zh", "zho", "cmn", "yue", "wuu"];

/// Python's `\w` in a `str` pattern: `_` and what `str.isalnum` accepts,
/// letters (category L) and numbers (N). Not Rust's `is_alphanumeric`, which
/// also takes combining vowel signs (Devanagari's, Thai's) that Python's
/// `\W` matches.
fn is_word_char(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    c == '_'
        || crate::heuristics::words::is_py_alpha(c)
        || matches!(
            get_general_category(c),
            G::DecimalNumber | G::LetterNumber | G::OtherNumber
        )
}

impl BadWords {
    pub fn new(config: BadWordsConfig) -> Result<Self> {
        config.validate()?;
        let languages: BTreeSet<&String> = config.files.keys().chain(config.words.keys()).collect();
        let mut lists = BTreeMap::new();
        for lang in languages {
            let mut words: Vec<String> = config.words.get(lang).cloned().unwrap_or_default();
            if let Some(file) = config.files.get(lang) {
                words.extend(crate::url_filter::read_list(file, "bad_words")?);
            }
            // Sorted and deduplicated: the words a rejection names never
            // depend on the order of the file.
            let words: Vec<String> = words
                .iter()
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if words.is_empty() {
                return Err(Error::Config {
                    kind: "bad_words",
                    message: format!("the list of '{lang}' has no words"),
                });
            }
            // Every match, overlapping ones too: a longer word that does not
            // stand alone must not hide a shorter one that does.
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&words)
                .map_err(|e| Error::Config {
                    kind: "bad_words",
                    message: format!("the list of '{lang}': {e}"),
                })?;
            let unspaced = UNSPACED.contains(&lang.as_str());
            lists.insert(
                lang.clone(),
                WordList {
                    automaton,
                    words,
                    unspaced,
                },
            );
        }
        Ok(Self {
            lists,
            max_count: config.max_count,
            keep_fraction: config.keep_fraction,
            seed: config.seed,
            default_language: config.default_language,
            missing_language: config.missing_language,
        })
    }

    /// The document's language and its list, if there is one.
    fn list_for(&self, doc: &Document) -> (String, Option<&WordList>) {
        let tag = |key: &str| doc.metadata.get(key).and_then(Value::as_str);
        match tag("lang") {
            Some(lang) => {
                let list = self
                    .lists
                    .get(lang)
                    .or_else(|| tag("lang_iso639_1").and_then(|l| self.lists.get(l)));
                (lang.to_string(), list)
            }
            None => (self.default_language.clone(), self.lists.get(&self.default_language)),
        }
    }

    /// Matches that stand alone, without overlaps (the earliest-ending
    /// first, which counts the most), and the distinct words among them.
    fn count(list: &WordList, text: &str) -> (usize, BTreeSet<usize>) {
        let lower = text.to_lowercase();
        let alone = |start: usize, end: usize| {
            list.unspaced
                || (!lower[..start].chars().next_back().is_some_and(is_word_char)
                    && !lower[end..].chars().next().is_some_and(is_word_char))
        };
        let (mut count, mut last_end, mut found) = (0, 0, BTreeSet::new());
        // Overlapping matches come in order of their end.
        for m in list.automaton.find_overlapping_iter(lower.as_str()) {
            if m.start() >= last_end && alone(m.start(), m.end()) {
                count += 1;
                last_end = m.end();
                found.insert(m.pattern().as_usize());
            }
        }
        (count, found)
    }

    /// Whether `keep_fraction` keeps this document: a uniform draw from its id.
    fn kept_by_fraction(&self, id: &str) -> bool {
        if self.keep_fraction <= 0.0 {
            return false;
        }
        let mut rng = crate::splitmix::SplitMix64(xxhash_rust::xxh3::xxh3_64(id.as_bytes()) ^ self.seed);
        let uniform = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        uniform < self.keep_fraction
    }
}

impl DocumentStage for BadWords {
    fn process(&self, doc: &mut Document, stats: &mut StageStats) -> Decision {
        let (lang, list) = self.list_for(doc);
        let Some(list) = list else {
            stats.add("bad_words_no_list", &lang, 1);
            return match self.missing_language {
                Missing::Keep => Decision::Keep,
                Missing::Reject => Decision::Drop {
                    reason: "bad_words_no_list",
                    detail: json!({ "lang": lang }),
                },
            };
        };
        stats.add("bad_words_documents", "judged", 1);
        let (count, found) = Self::count(list, &doc.text);
        if count == 0 {
            return Decision::Keep;
        }
        stats.add("bad_words_documents", "with_matches", 1);
        stats.add("bad_words_matches", &lang, count as u64);
        if count <= self.max_count {
            return Decision::Keep;
        }
        if self.kept_by_fraction(&doc.id) {
            stats.add("bad_words_documents", "kept_by_fraction", 1);
            return Decision::Keep;
        }
        // The first few, enough to audit without copying a list into every rejection.
        let words: Vec<&str> = found.iter().take(5).map(|&i| list.words[i].as_str()).collect();
        Decision::Drop {
            reason: "bad_words",
            detail: json!({ "count": count, "max": self.max_count, "lang": lang, "words": words }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(config: Value) -> Result<BadWords> {
        BadWords::new(serde_json::from_value(config).unwrap())
    }

    fn doc(text: &str, lang: Option<(&str, &str)>) -> Document {
        let mut doc = Document::new("d1", text);
        if let Some((lang3, lang1)) = lang {
            doc.metadata.insert("lang".into(), json!(lang3));
            doc.metadata.insert("lang_iso639_1".into(), json!(lang1));
        }
        doc
    }

    fn judge(stage: &BadWords, doc: &mut Document) -> (&'static str, Value, StageStats) {
        let mut stats = StageStats::default();
        match stage.process(doc, &mut stats) {
            Decision::Keep => ("kept", Value::Null, stats),
            Decision::Drop { reason, detail } => (reason, detail, stats),
        }
    }

    #[test]
    fn words_count_only_where_they_stand_alone() {
        let s = stage(json!({"words": {"en": ["ass", "hell", "bad word"]}})).unwrap();
        for (text, want) in [
            ("a class in passing, shell and hello", "kept"),
            ("What the Hell.", "bad_words"),
            ("(ass)", "bad_words"),
            ("a BAD  WORD", "kept"),
            ("a Bad Word here", "bad_words"),
            ("hell_fire and hell2", "kept"),
            ("", "kept"),
        ] {
            assert_eq!(judge(&s, &mut doc(text, None)).0, want, "{text:?}");
        }
        let (_, detail, stats) = judge(&s, &mut doc("hell, hell and a bad word", Some(("eng", "en"))));
        assert_eq!(
            detail,
            json!({"count": 3, "max": 0, "lang": "eng", "words": ["bad word", "hell"]})
        );
        assert_eq!(stats.0["bad_words_matches"]["eng"], 3);
    }

    #[test]
    fn a_longer_word_that_does_not_stand_alone_hides_nothing() {
        // Every overlapping match is checked: in "sexy!" only the longer
        // word stands alone, in "sex yx" only the shorter, in "sexyx" neither.
        let s = stage(json!({"words": {"en": ["sex", "sexy"], "ja": ["エロ"]}})).unwrap();
        assert_eq!(judge(&s, &mut doc("sexyx", None)).0, "kept");
        assert_eq!(judge(&s, &mut doc("sexy!", None)).1["words"], json!(["sexy"]));
        assert_eq!(judge(&s, &mut doc("sex yx", None)).1["words"], json!(["sex"]));
        // Japanese is written without spaces: any occurrence counts.
        assert_eq!(
            judge(&s, &mut doc("これはエロです", Some(("jpn", "ja")))).0,
            "bad_words"
        );
    }

    #[test]
    fn max_count_keep_fraction_and_languages() {
        let s = stage(json!({"words": {"en": ["damn"]}, "max_count": 2})).unwrap();
        assert_eq!(judge(&s, &mut doc("damn damn", None)).0, "kept");
        assert_eq!(judge(&s, &mut doc("damn damn damn", None)).1["count"], 3);
        // Keyed by ISO 639-3 works too; other languages are kept and counted.
        let s = stage(json!({"words": {"deu": ["mist"]}})).unwrap();
        assert_eq!(judge(&s, &mut doc("so ein Mist", Some(("deu", "de")))).0, "bad_words");
        let (reason, _, stats) = judge(&s, &mut doc("so ein Mist", Some(("fra", "fr"))));
        assert_eq!((reason, stats.0["bad_words_no_list"]["fra"]), ("kept", 1));
        // Untagged documents take default_language (en), which has no list here.
        assert_eq!(judge(&s, &mut doc("Mist", None)).0, "kept");
        let strict = stage(json!({"words": {"deu": ["mist"]}, "missing_language": "reject"})).unwrap();
        assert_eq!(judge(&strict, &mut doc("Mist", None)).0, "bad_words_no_list");
        // keep_fraction keeps about that share, the same ones every run.
        let s = stage(json!({"words": {"en": ["damn"]}, "keep_fraction": 0.3, "seed": 7})).unwrap();
        let decisions = || -> Vec<bool> {
            (0..2000)
                .map(|i| {
                    let mut d = Document::new(format!("doc-{i}"), "damn");
                    matches!(s.process(&mut d, &mut StageStats::default()), Decision::Keep)
                })
                .collect()
        };
        let kept = decisions();
        let share = kept.iter().filter(|k| **k).count() as f64 / kept.len() as f64;
        assert!((0.26..0.34).contains(&share), "{share}");
        let again = decisions();
        assert_eq!(kept, again);
    }

    #[test]
    fn lists_come_from_files_and_bad_configs_are_named() {
        let dir = std::env::temp_dir().join(format!("thresher-bad-words-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("en.txt");
        std::fs::write(&file, "# LDNOOBW-style list\nDamn\n\nbloody hell\n").unwrap();
        let s = stage(json!({"files": {"en": file}})).unwrap();
        assert_eq!(
            judge(&s, &mut doc("Bloody hell, damn.", None)).1["words"],
            json!(["bloody hell", "damn"])
        );
        std::fs::remove_dir_all(&dir).unwrap();
        for (config, message) in [
            (json!({}), "no list"),
            (json!({"words": {"en": ["a"]}, "keep_fraction": 1.0}), "keep_fraction 1"),
            (json!({"words": {"en": [" "]}}), "'en' has no words"),
            (json!({"files": {"en": "/nonexistent/en.txt"}}), "/nonexistent/en.txt"),
        ] {
            let err = stage(config.clone()).err().unwrap().to_string();
            assert!(err.contains(message), "{config}: {err}");
        }
    }
}
