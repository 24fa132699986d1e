//! `heuristics`: the rule-based quality filters of Gopher, C4 and FineWeb,
//! in one pass over the documents, each decision the one datatrove 0.10
//! makes (held to it by `tests/heuristics_match_datatrove.rs`).
//!
//! Llama 3 filtered its web data with such heuristics (duplicated n-gram
//! coverage, Rae et al. 2021) before any model-based scoring; FineWeb runs
//! these four rule sets in this order. Each rule set is a table in the
//! stage's config and runs only when present:
//!
//! ```toml
//! [[stages]]
//! kind = "heuristics"
//! [stages.gopher_repetition]
//! [stages.gopher_quality]
//! [stages.c4_quality]
//! filter_no_terminal_punct = false   # as FineWeb ran it
//! [stages.fineweb_quality]
//! ```
//!
//! Words are English words as datatrove splits them (a port of spaCy's
//! tokenizer, [`words`]), so the rules are meant for English: documents that
//! `langid` tagged with another language pass untouched unless `languages`
//! lists it.

mod c4;
mod fineweb;
mod gopher;
pub mod words;

use std::cell::OnceCell;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use c4::C4QualityConfig;
pub use fineweb::FinewebQualityConfig;
pub use gopher::{GopherQualityConfig, GopherRepetitionConfig};

use crate::{Decision, Document, DocumentStage, Error, Result, StageStats};

/// Configuration of `heuristics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeuristicsConfig {
    /// Languages judged (ISO 639-1 or 639-3, as `langid` tags them; `"*"`:
    /// all). Documents tagged with another language are kept unjudged;
    /// documents without a `lang` tag are judged.
    pub languages: Vec<String>,
    pub gopher_repetition: Option<GopherRepetitionConfig>,
    pub gopher_quality: Option<GopherQualityConfig>,
    pub c4_quality: Option<C4QualityConfig>,
    pub fineweb_quality: Option<FinewebQualityConfig>,
}

impl Default for HeuristicsConfig {
    fn default() -> Self {
        Self {
            languages: vec!["en".into()],
            gopher_repetition: None,
            gopher_quality: None,
            c4_quality: None,
            fineweb_quality: None,
        }
    }
}

/// Why a rule dropped a document: a stable reason and the measured value
/// against the configured bound, so that a rejected document explains itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: Value,
}

impl Rejection {
    fn new(reason: &'static str, detail: Value) -> Self {
        Self { reason, detail }
    }
}

type Judged = std::result::Result<(), Rejection>;

/// Rejects when `value` is above `max` (0: the rule is off).
fn above(reason: &'static str, value: f64, max: f64) -> Judged {
    match max > 0.0 && value > max {
        true => Err(Rejection::new(reason, json!({"value": value, "max": max}))),
        false => Ok(()),
    }
}

/// Rejects when `value` is below `min` (0: the rule is off).
fn below(reason: &'static str, value: f64, min: f64) -> Judged {
    match min > 0.0 && value < min {
        true => Err(Rejection::new(reason, json!({"value": value, "min": min}))),
        false => Ok(()),
    }
}

/// A document's text with its words, split once when a rule first asks.
struct Text<'a> {
    text: &'a str,
    words: OnceCell<Vec<&'a str>>,
}

impl<'a> Text<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            words: OnceCell::new(),
        }
    }

    fn words(&self) -> &[&'a str] {
        self.words.get_or_init(|| words::English::get().words(self.text))
    }
}

pub struct Heuristics {
    config: HeuristicsConfig,
}

impl Heuristics {
    pub fn new(config: HeuristicsConfig) -> Result<Self> {
        let invalid = |message: String| Error::Config {
            kind: "heuristics",
            message,
        };
        let c = &config;
        if c.gopher_repetition.is_none()
            && c.gopher_quality.is_none()
            && c.c4_quality.is_none()
            && c.fineweb_quality.is_none()
        {
            return Err(invalid(
                "no rule set: add at least one of the tables gopher_repetition, gopher_quality, c4_quality, fineweb_quality (an empty table takes datatrove's defaults)".into(),
            ));
        }
        if c.languages.is_empty() {
            return Err(invalid(
                r#"languages is empty: list languages, or ["*"] for all"#.into(),
            ));
        }
        for (n, max) in c
            .gopher_repetition
            .iter()
            .flat_map(|r| r.top_n_grams.iter().chain(&r.dup_n_grams))
        {
            if *n == 0 || !(0.0..=1.0).contains(max) {
                return Err(invalid(format!(
                    "gopher_repetition n-gram bound [{n}, {max}]: n must be at least 1 and the share within 0..1"
                )));
            }
        }
        // Build the tokenizer now, so a broken rules file fails the config
        // check, not the first document.
        words::English::get();
        Ok(Self { config })
    }

    /// Whether a document's language is one the rules judge.
    fn judges(&self, doc: &Document) -> bool {
        let languages = &self.config.languages;
        if languages.iter().any(|l| l == "*") {
            return true;
        }
        let Some(lang) = doc.metadata.get("lang").and_then(Value::as_str) else {
            return true;
        };
        let iso639_1 = doc.metadata.get("lang_iso639_1").and_then(Value::as_str);
        languages.iter().any(|l| l == lang || Some(l.as_str()) == iso639_1)
    }

    fn judge(&self, doc: &mut Document, stats: &mut StageStats) -> Judged {
        let c = &self.config;
        let text = Text::new(&doc.text);
        if let Some(rules) = &c.gopher_repetition {
            rules.judge(&text)?;
        }
        if let Some(rules) = &c.gopher_quality {
            rules.judge(&text)?;
        }
        // C4's text, when it removed lines; otherwise the words already split
        // serve FineWeb too.
        let trimmed = match &c.c4_quality {
            Some(rules) => Some(rules.judge(text.text, stats)?).filter(|kept| kept != text.text),
            None => None,
        };
        let verdict = match (&c.fineweb_quality, &trimmed) {
            (Some(rules), Some(kept)) => rules.judge(&Text::new(kept)),
            (Some(rules), None) => rules.judge(&text),
            (None, _) => Ok(()),
        };
        // A document FineWeb drops goes to the sidecar as C4 left it.
        if let Some(kept) = trimmed {
            stats.add("heuristics_documents", "c4_changed", 1);
            stats.add(
                "heuristics_bytes",
                "c4_removed",
                doc.text.len().saturating_sub(kept.len()) as u64,
            );
            doc.text = kept;
        }
        verdict
    }
}

impl DocumentStage for Heuristics {
    fn process(&self, doc: &mut Document, stats: &mut StageStats) -> Decision {
        if !self.judges(doc) {
            let lang = doc.metadata.get("lang").and_then(Value::as_str).unwrap_or("und");
            stats.add("heuristics_not_judged_by_lang", lang, 1);
            return Decision::Keep;
        }
        stats.add("heuristics_documents", "judged", 1);
        match self.judge(doc, stats) {
            Ok(()) => Decision::Keep,
            Err(Rejection { reason, detail }) => Decision::Drop { reason, detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// English prose written for these tests: over 50 words, stop words,
    /// terminal punctuation on every line.
    const PROSE: &str = "The committee will publish its final report on the new railway line next spring, after the public consultation closes.\n\
        Residents have raised concerns about noise and the loss of green space along the route, and the council has promised to answer each of them.\n\
        Engineers expect the first trains to run within five years if the funding from the regional government is confirmed.\n\
        The plan also includes two new stations and a cycle path that will connect the villages to the town centre.\n\
        A further meeting with the operators of the existing bus services is planned for the autumn.";

    fn stage(config: Value) -> Result<Heuristics> {
        Heuristics::new(serde_json::from_value(config).unwrap())
    }

    fn judge(stage: &Heuristics, doc: &mut Document) -> (Decision, StageStats) {
        let mut stats = StageStats::default();
        (stage.process(doc, &mut stats), stats)
    }

    #[test]
    fn prose_passes_every_rule_set() {
        let all =
            stage(json!({"gopher_repetition": {}, "gopher_quality": {}, "c4_quality": {}, "fineweb_quality": {}}))
                .unwrap();
        let mut doc = Document::new("1", PROSE);
        let (decision, stats) = judge(&all, &mut doc);
        assert_eq!(decision, Decision::Keep);
        assert_eq!(doc.text, PROSE, "C4 removed nothing");
        assert_eq!(stats.0["heuristics_documents"]["judged"], 1);
    }

    #[test]
    fn rejections_name_the_rule_and_the_measure() {
        let gopher = stage(json!({"gopher_quality": {}})).unwrap();
        let mut short = Document::new("1", "Too short to be a page of prose.");
        match judge(&gopher, &mut short).0 {
            Decision::Drop { reason, detail } => {
                assert_eq!(reason, "gopher_short_doc");
                assert_eq!(detail, json!({"value": 8, "min": 50}));
            }
            other => panic!("kept: {other:?}"),
        }
        let repetition = stage(json!({"gopher_repetition": {}})).unwrap();
        let repeated = format!("{PROSE}\n{PROSE}");
        match judge(&repetition, &mut Document::new("2", &repeated)).0 {
            Decision::Drop { reason, detail } => {
                assert_eq!(reason, "gopher_dup_line_frac");
                assert_eq!(detail["value"], 0.5);
            }
            other => panic!("kept: {other:?}"),
        }
        // Turning the failing rules off lets the same text through.
        let lenient = stage(json!({"gopher_repetition": {
            "dup_line_frac": 0, "dup_line_char_frac": 0, "dup_n_grams": [], "top_n_grams": []}}))
        .unwrap();
        assert_eq!(judge(&lenient, &mut Document::new("3", &repeated)).0, Decision::Keep);
    }

    #[test]
    fn c4_removes_lines_and_counts_why() {
        let c4 = stage(json!({"c4_quality": {}})).unwrap();
        let text = format!(
            "{PROSE}\nPlease enable JavaScript to see the comments.\nHome | About\nWe use cookies on this site."
        );
        let mut doc = Document::new("1", &text);
        let (decision, stats) = judge(&c4, &mut doc);
        assert_eq!(decision, Decision::Keep);
        assert_eq!(doc.text, PROSE);
        let removed = &stats.0["c4_lines_removed"];
        assert_eq!(
            (
                removed["javascript"],
                removed["no_terminal_punctuation"],
                removed["policy"]
            ),
            (1, 1, 1)
        );
        assert_eq!(stats.0["heuristics_documents"]["c4_changed"], 1);
        let mut code = Document::new("2", format!("{PROSE}\nThe function is fn main() {{ run(); }} here."));
        match judge(&c4, &mut code).0 {
            Decision::Drop { reason, .. } => assert_eq!(reason, "c4_curly_bracket"),
            other => panic!("kept: {other:?}"),
        }
    }

    #[test]
    fn other_languages_pass_unjudged() {
        let gopher = stage(json!({"gopher_quality": {}})).unwrap();
        let mut french = Document::new("1", "Une phrase courte.");
        french.metadata.insert("lang".into(), json!("fra"));
        french.metadata.insert("lang_iso639_1".into(), json!("fr"));
        let (decision, stats) = judge(&gopher, &mut french);
        assert_eq!(decision, Decision::Keep);
        assert_eq!(stats.0["heuristics_not_judged_by_lang"]["fra"], 1);
        let mut english = Document::new("2", "A short line.");
        english.metadata.insert("lang".into(), json!("eng"));
        english.metadata.insert("lang_iso639_1".into(), json!("en"));
        assert!(matches!(judge(&gopher, &mut english).0, Decision::Drop { .. }));
        let everything = stage(json!({"languages": ["*"], "gopher_quality": {}})).unwrap();
        assert!(matches!(judge(&everything, &mut french).0, Decision::Drop { .. }));
        let french_too = stage(json!({"languages": ["en", "fra"], "gopher_quality": {}})).unwrap();
        assert!(matches!(judge(&french_too, &mut french).0, Decision::Drop { .. }));
    }

    #[test]
    fn configs_that_cannot_work_are_refused() {
        for (config, says) in [
            (json!({}), "no rule set"),
            (json!({"languages": [], "c4_quality": {}}), "languages is empty"),
            (
                json!({"gopher_repetition": {"top_n_grams": [[0, 0.2]]}}),
                "n must be at least 1",
            ),
            (json!({"gopher_repetition": {"dup_n_grams": [[5, 1.5]]}}), "within 0..1"),
        ] {
            let err = stage(config.clone()).err().expect("refused").to_string();
            assert!(err.contains(says), "{config}: {err}");
        }
        assert!(serde_json::from_value::<HeuristicsConfig>(json!({"c4_quality": {"min_sentences": 3}})).is_err());
    }
}
