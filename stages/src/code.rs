//! `code`: tags every document with what code it holds, optionally keeps only
//! some.
//!
//! Tag: `metadata.code`, an object:
//! - `is_code`: the document is source code, markup or data (not prose);
//! - `code_fraction`: share of its non-blank lines judged code (a tutorial
//!   or Q&A page with snippets has `is_code: false` and a fraction above 0);
//! - `label`: what the document is, e.g. `Python`, `JSON`, `Markdown`,
//!   `Text`, or `Other` for code in a language without a label of its own;
//! - `language` and `confidence`: the language of its code (the label of a
//!   code document; for prose, the language of its code lines), or null
//!   when it has none.
//!
//! The judge is the bundled code classifier
//! (`thresher_classifiers::code_classifier`; `thresher eval code` measures
//! it) or a model from `thresher classifier train-code`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thresher_classifiers::code_classifier::CodeClassifier;
use thresher_classifiers::langid::prefix_at_char_boundary;

use crate::{Decision, Document, DocumentStage, Error, Result, StageStats};

/// Which documents the `code` stage keeps, by `is_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeepKind {
    #[default]
    All,
    /// Only documents that are code (`is_code`).
    Code,
    /// Only prose documents (with or without snippets).
    Prose,
}

/// Configuration of `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodeConfig {
    /// Bytes from the start of each document that are judged (cut back to a
    /// character boundary); `code_fraction` is over these bytes.
    pub sample_bytes: usize,
    /// `bundled`, or the path of a model made by `thresher classifier train-code`.
    pub model: String,
    /// `all` (default), `code` or `prose`.
    pub keep: KeepKind,
    /// When set, documents whose `language` is not listed (case does not
    /// matter; `none` for documents without code) are rejected.
    pub languages: Option<Vec<String>>,
    /// With `languages`: a language named with less confidence than this
    /// counts as `none`.
    pub min_language_confidence: f64,
    /// Documents with a smaller `code_fraction` are rejected.
    pub min_code_fraction: f64,
    /// Documents with a larger `code_fraction` are rejected.
    pub max_code_fraction: f64,
}

impl Default for CodeConfig {
    fn default() -> Self {
        Self {
            sample_bytes: 8192,
            model: "bundled".into(),
            keep: KeepKind::All,
            languages: None,
            min_language_confidence: 0.0,
            min_code_fraction: 0.0,
            max_code_fraction: 1.0,
        }
    }
}

pub struct Code {
    config: CodeConfig,
    model: CodeClassifier,
    /// `config.languages`, lower-cased.
    languages: Option<Vec<String>>,
}

const NONE: &str = "none";

impl Code {
    pub fn new(config: CodeConfig) -> Result<Self> {
        let invalid = |message: String| Error::Config { kind: "code", message };
        if config.sample_bytes == 0 {
            return Err(invalid("sample_bytes must be at least 1".into()));
        }
        for (name, value) in [
            ("min_language_confidence", config.min_language_confidence),
            ("min_code_fraction", config.min_code_fraction),
            ("max_code_fraction", config.max_code_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(format!("{name} must be within 0..1, got {value}")));
            }
        }
        if config.min_code_fraction > config.max_code_fraction {
            return Err(invalid(format!(
                "min_code_fraction {} is above max_code_fraction {}: every document would be rejected",
                config.min_code_fraction, config.max_code_fraction
            )));
        }
        let model = match config.model.as_str() {
            "bundled" => CodeClassifier::bundled(),
            path => {
                let bytes = std::fs::read(path).map_err(|e| {
                    invalid(format!(
                        "model {path:?}: cannot read it ({e}); use bundled or a model file"
                    ))
                })?;
                CodeClassifier::from_bytes(&bytes, path).map_err(|e| invalid(e.to_string()))?
            }
        };
        let languages = match &config.languages {
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "languages is empty: it would reject every document; remove it to keep all".into(),
                ))
            }
            Some(list) => {
                let known: Vec<String> = model.labels.iter().map(|l| l.to_lowercase()).collect();
                let wanted: Vec<String> = list.iter().map(|l| l.to_lowercase()).collect();
                if let Some(unknown) = wanted.iter().find(|w| *w != NONE && !known.contains(w)) {
                    return Err(invalid(format!(
                        "languages: {unknown:?} is not a label of the model; it knows {} and none",
                        model.labels.join(", ")
                    )));
                }
                Some(wanted)
            }
            None => None,
        };
        Ok(Self {
            config,
            model,
            languages,
        })
    }
}

impl DocumentStage for Code {
    fn process(&self, doc: &mut Document, stats: &mut StageStats) -> Decision {
        let sample = prefix_at_char_boundary(&doc.text, self.config.sample_bytes);
        let judged = self.model.classify(sample);
        let language = judged.language();
        // Rounded: 4 digits is finer than any threshold anyone sets, and
        // manifests and outputs stay readable.
        let round = |x: f64| (x * 1e4).round() / 1e4;
        let code_fraction = round(judged.code_fraction);
        doc.metadata.insert(
            "code".into(),
            json!({
                "is_code": judged.is_code,
                "code_fraction": code_fraction,
                "label": judged.label,
                "language": language.map(|l| l.0),
                "confidence": language.map(|l| round(l.1)),
            }),
        );
        let name = language.map_or(NONE, |l| l.0);
        stats.add("documents_by_code_language", name, 1);
        stats.add("text_bytes_by_code_language", name, doc.text.len() as u64);
        stats.add("documents_by_kind", if judged.is_code { "code" } else { "prose" }, 1);
        let detail = || Value::clone(&doc.metadata["code"]);
        let rejected_kind = match (self.config.keep, judged.is_code) {
            (KeepKind::Code, false) => Some("prose_not_kept"),
            (KeepKind::Prose, true) => Some("code_not_kept"),
            _ => None,
        };
        if let Some(reason) = rejected_kind {
            return Decision::Drop {
                reason,
                detail: detail(),
            };
        }
        if let Some(wanted) = &self.languages {
            let named = match language {
                Some((l, p)) if p >= self.config.min_language_confidence => l.to_lowercase(),
                _ => NONE.to_string(),
            };
            if !wanted.contains(&named) {
                return Decision::Drop {
                    reason: "code_language_not_kept",
                    detail: detail(),
                };
            }
        }
        if code_fraction < self.config.min_code_fraction || code_fraction > self.config.max_code_fraction {
            return Decision::Drop {
                reason: "code_fraction_out_of_range",
                detail: detail(),
            };
        }
        Decision::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written for these tests, not taken from the training data.
    const PYTHON: &str = "import os\nimport sys\n\n\ndef list_files(root):\n    \"\"\"Every file under root.\"\"\"\n    for dirpath, _, names in os.walk(root):\n        for name in names:\n            yield os.path.join(dirpath, name)\n\n\nif __name__ == \"__main__\":\n    for path in list_files(sys.argv[1]):\n        print(path)\n";
    const PROSE: &str = "The river had risen overnight, and by morning the lower fields were under water.\nFarmers moved their animals to the hills while the council opened the school hall for families who had to leave their homes.\nNobody expected the rain to stop before the weekend.\n";
    const TUTORIAL: &str = "Home\nAbout\nTutorials\nContact\nSearch this site\nHow to read a small file in Go\nPosted in Tutorials, three comments\nMany programs start by reading a file: a list of names, a template, a configuration.\nWhen the file is small, the simplest way is to read all of it at once and work on the bytes.\nThe standard library has a function for exactly this, and it takes only a few lines.\nIt opens the file, reads it to the end and closes it again, even when something goes wrong.\nThe example below prints the whole file, and stops with a message if the file cannot be read.\n\nfunc main() {\n\tdata, err := os.ReadFile(\"notes.txt\")\n\tif err != nil {\n\t\tlog.Fatal(err)\n\t}\n\tfmt.Print(string(data))\n}\n\nThe error matters: a missing file or a folder without permission both end up there.\nDo not use this for files of several gigabytes, since the whole content has to fit in memory.\nFor those, read the file piece by piece with a buffered reader instead.\nThe same function exists for writing, and it creates the file when it is missing.\nIn the next part we will look at reading a file line by line.\nMost readers will want that version for logs, which tend to grow without limit.\nLeave a comment below if something in this example was unclear.\nThanks for reading, and see you next week.\nRelated posts\nWriting files in Go\nReading a file line by line\nWorking with folders\nPrivacy policy\nCopyright 2024 Example Tutorials\nBack to top\n";

    fn run(stage: &Code, text: &str) -> (Decision, Value) {
        let mut doc = Document::new("1", text);
        let decision = stage.process(&mut doc, &mut StageStats::default());
        (decision, doc.metadata["code"].clone())
    }

    #[test]
    fn tags_code_prose_and_snippets() {
        let stage = Code::new(CodeConfig::default()).unwrap();
        let (decision, code) = run(&stage, PYTHON);
        assert_eq!(decision, Decision::Keep);
        assert_eq!(code["is_code"], true);
        assert_eq!(code["language"], "Python");
        assert!(code["code_fraction"].as_f64().unwrap() > 0.8, "{code}");
        let (_, prose) = run(&stage, PROSE);
        assert_eq!(prose["is_code"], false);
        assert_eq!(prose["language"], Value::Null);
        assert_eq!(prose["code_fraction"], 0.0, "{prose}");
        let (_, tutorial) = run(&stage, TUTORIAL);
        assert_eq!(tutorial["is_code"], false, "{tutorial}");
        assert_eq!(tutorial["language"], "Go", "{tutorial}");
        // 7 of the 34 non-blank lines are code; the menu lines are not.
        let fraction = tutorial["code_fraction"].as_f64().unwrap();
        assert!((fraction - 7.0 / 34.0).abs() < 0.15, "{tutorial}");
    }

    #[test]
    fn filters_by_kind_language_and_fraction() {
        let code_only = Code::new(CodeConfig {
            keep: KeepKind::Code,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(run(&code_only, PYTHON).0, Decision::Keep);
        assert!(matches!(
            run(&code_only, PROSE).0,
            Decision::Drop {
                reason: "prose_not_kept",
                ..
            }
        ));
        let go_or_none = Code::new(CodeConfig {
            languages: Some(vec!["go".into(), "None".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(run(&go_or_none, TUTORIAL).0, Decision::Keep);
        assert_eq!(run(&go_or_none, PROSE).0, Decision::Keep);
        assert!(matches!(
            run(&go_or_none, PYTHON).0,
            Decision::Drop {
                reason: "code_language_not_kept",
                ..
            }
        ));
        let mostly_prose = Code::new(CodeConfig {
            max_code_fraction: 0.2,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(run(&mostly_prose, PROSE).0, Decision::Keep);
        assert!(matches!(
            run(&mostly_prose, TUTORIAL).0,
            Decision::Drop {
                reason: "code_fraction_out_of_range",
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_config() {
        for config in [
            CodeConfig {
                languages: Some(vec![]),
                ..Default::default()
            },
            CodeConfig {
                languages: Some(vec!["Klingon".into()]),
                ..Default::default()
            },
            CodeConfig {
                min_code_fraction: 0.6,
                max_code_fraction: 0.5,
                ..Default::default()
            },
            CodeConfig {
                model: "/nonexistent/code.bin".into(),
                ..Default::default()
            },
        ] {
            assert!(Code::new(config).is_err());
        }
    }
}
