//! `langid`: tags every document with its language, optionally keeps only some.
//!
//! Tags: `metadata.lang` (ISO 639-3, or `und` below `min_score` or when the text
//! has nothing to judge), `metadata.lang_iso639_1` (when the language has a
//! two-letter code), `metadata.lang_script` and `metadata.lang_score`.
//!
//! The judge is the bundled character n-gram model
//! (`thresher_classifiers::ngram_langid`, 98.1% at sentence level on
//! whatlang's languages in cross-validation, where whatlang alone is at
//! 94.9%: `thresher eval langid`), with whatlang for the scripts it was not
//! trained on.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thresher_classifiers::ngram_langid::NgramLangid;
use thresher_classifiers::LanguageIdentifier;

use crate::{Decision, Document, DocumentStage, Error, Result, StageStats};

/// Configuration of `langid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LangidConfig {
    /// Bytes from the start of each document that are judged (cut back to a
    /// character boundary). Bounds the cost of long documents.
    pub sample_bytes: usize,
    /// Below this confidence (0..1) the language is `und`.
    pub min_score: f64,
    /// When set, documents whose language is not listed are rejected. Codes
    /// may be ISO 639-1 (`en`) or 639-3 (`eng`); `und` keeps undetermined ones.
    pub keep: Option<Vec<String>>,
    /// `ngram` (the bundled character n-gram model, 75 languages, with
    /// whatlang for scripts it does not know), `whatlang`, or the path of a
    /// model made by `thresher classifier train-langid`.
    pub model: String,
}

impl Default for LangidConfig {
    fn default() -> Self {
        Self {
            sample_bytes: 4096,
            min_score: 0.5,
            keep: None,
            model: "ngram".into(),
        }
    }
}

pub struct Langid {
    config: LangidConfig,
    identifier: LanguageIdentifier,
}

impl Langid {
    pub fn new(config: LangidConfig) -> Result<Self> {
        let invalid = |message: String| Error::Config {
            kind: "langid",
            message,
        };
        if !(0.0..=1.0).contains(&config.min_score) {
            return Err(invalid(format!(
                "min_score must be within 0..1, got {}",
                config.min_score
            )));
        }
        if config.sample_bytes == 0 {
            return Err(invalid("sample_bytes must be at least 1".into()));
        }
        if let Some(keep) = &config.keep {
            if keep.is_empty() {
                return Err(invalid(
                    "keep is empty: it would reject every document; remove it to keep all".into(),
                ));
            }
        }
        let identifier = match config.model.as_str() {
            "ngram" => LanguageIdentifier::bundled(config.sample_bytes),
            "whatlang" => LanguageIdentifier::new(config.sample_bytes),
            path => {
                let bytes = std::fs::read(path).map_err(|e| {
                    invalid(format!(
                        "model {path:?}: cannot read it ({e}); use ngram, whatlang or a model file"
                    ))
                })?;
                let model = NgramLangid::from_bytes(&bytes, path).map_err(|e| invalid(e.to_string()))?;
                LanguageIdentifier::with_ngram(config.sample_bytes, model).map_err(|e| invalid(e.to_string()))?
            }
        };
        Ok(Self { identifier, config })
    }

    fn is_kept(&self, iso639_3: &str, iso639_1: Option<&str>) -> bool {
        match &self.config.keep {
            None => true,
            Some(keep) => keep.iter().any(|k| k == iso639_3 || Some(k.as_str()) == iso639_1),
        }
    }
}

const UNDETERMINED: &str = "und";

impl DocumentStage for Langid {
    fn process(&self, doc: &mut Document, stats: &mut StageStats) -> Decision {
        let detected = self.identifier.identify(&doc.text);
        let (lang, iso639_1, script, score) = match &detected {
            Some(l) if l.score >= self.config.min_score => (l.iso639_3, l.iso639_1, Some(l.script), l.score),
            Some(l) => (UNDETERMINED, None, Some(l.script), l.score),
            None => (UNDETERMINED, None, None, 0.0),
        };
        let meta = &mut doc.metadata;
        meta.insert("lang".into(), Value::from(lang));
        match iso639_1 {
            Some(code) => meta.insert("lang_iso639_1".into(), Value::from(code)),
            None => meta.remove("lang_iso639_1"),
        };
        meta.insert("lang_script".into(), script.map_or(Value::Null, Value::from));
        // Rounded so that manifests and outputs stay readable; 4 digits is far
        // finer than any threshold anyone sets.
        meta.insert("lang_score".into(), json!((score * 1e4).round() / 1e4));
        stats.add("documents_by_lang", lang, 1);
        stats.add("text_bytes_by_lang", lang, doc.text.len() as u64);
        if self.is_kept(lang, iso639_1) {
            Decision::Keep
        } else {
            Decision::Drop {
                reason: "language_not_kept",
                detail: json!({ "lang": lang, "lang_score": doc.metadata["lang_score"] }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = "The committee will publish its final report on the new railway line next spring, after the public consultation closes.";
    const ES: &str = "El ayuntamiento aprobó ayer el nuevo plan de movilidad, que ampliará los carriles para bicicletas en todo el centro de la ciudad.";

    #[test]
    fn tags_and_counts() {
        let stage = Langid::new(LangidConfig::default()).unwrap();
        let mut stats = StageStats::default();
        let mut doc = Document::new("1", ES);
        assert_eq!(stage.process(&mut doc, &mut stats), Decision::Keep);
        assert_eq!(doc.metadata["lang"], "spa");
        assert_eq!(doc.metadata["lang_iso639_1"], "es");
        assert_eq!(doc.metadata["lang_script"], "Latin");
        assert!(doc.metadata["lang_score"].as_f64().unwrap() > 0.5);
        let mut empty = Document::new("2", "12345 ---");
        stage.process(&mut empty, &mut stats);
        assert_eq!(empty.metadata["lang"], "und");
        assert_eq!(stats.0["documents_by_lang"]["spa"], 1);
        assert_eq!(stats.0["documents_by_lang"]["und"], 1);
    }

    #[test]
    fn keep_list_accepts_both_code_forms() {
        let stage = Langid::new(LangidConfig {
            keep: Some(vec!["en".into(), "deu".into()]),
            ..Default::default()
        })
        .unwrap();
        let mut stats = StageStats::default();
        assert_eq!(stage.process(&mut Document::new("1", EN), &mut stats), Decision::Keep);
        match stage.process(&mut Document::new("2", ES), &mut stats) {
            Decision::Drop { reason, detail } => {
                assert_eq!(reason, "language_not_kept");
                assert_eq!(detail["lang"], "spa");
            }
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    #[test]
    fn high_threshold_gives_und() {
        let stage = Langid::new(LangidConfig {
            min_score: 1.0,
            ..Default::default()
        })
        .unwrap();
        let mut doc = Document::new("1", "short text");
        stage.process(&mut doc, &mut StageStats::default());
        assert_eq!(doc.metadata["lang"], "und");
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Langid::new(LangidConfig {
            min_score: 2.0,
            ..Default::default()
        })
        .is_err());
        assert!(Langid::new(LangidConfig {
            keep: Some(vec![]),
            ..Default::default()
        })
        .is_err());
    }
}
