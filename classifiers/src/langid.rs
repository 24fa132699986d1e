//! Language identification over a bounded prefix of each document.

use whatlang::Detector;

/// One language judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    /// ISO 639-3 code (`eng`, `cmn`, …), as whatlang names its languages.
    pub iso639_3: &'static str,
    /// ISO 639-1 code where the language has one (`en`, `zh`, …).
    pub iso639_1: Option<&'static str>,
    /// Writing system, e.g. `Latin`, `Cyrillic`, `Mandarin`.
    pub script: &'static str,
    /// whatlang's confidence in [0, 1].
    pub score: f64,
}

/// Identifies the language of the first `sample_bytes` of a text.
///
/// Only a prefix is read because language rarely changes within a page while
/// cost grows with length: a web page's first few KB decide its language as
/// well as the whole page does, at a bounded cost per document.
pub struct LanguageIdentifier {
    detector: Detector,
    sample_bytes: usize,
}

impl LanguageIdentifier {
    pub fn new(sample_bytes: usize) -> Self {
        Self {
            detector: Detector::new(),
            sample_bytes: sample_bytes.max(1),
        }
    }

    /// ISO 639-3 codes of every language it can name.
    pub fn languages(&self) -> Vec<&'static str> {
        whatlang::Lang::all().iter().map(|l| l.code()).collect()
    }

    /// The language of `text`'s prefix, or `None` when the text has no letters
    /// whatlang can judge (numbers, punctuation, empty).
    pub fn identify(&self, text: &str) -> Option<Language> {
        let sample = prefix_at_char_boundary(text, self.sample_bytes);
        let info = self.detector.detect(sample)?;
        let lang = info.lang();
        Some(Language {
            iso639_3: lang.code(),
            iso639_1: iso639_1(lang.code()),
            script: script_name(info.script()),
            score: info.confidence(),
        })
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a
/// character boundary.
pub fn prefix_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// ISO 639-1 for an ISO 639-3 code, from isolang's tables.
fn iso639_1(code: &str) -> Option<&'static str> {
    isolang::Language::from_639_3(code).and_then(|l| l.to_639_1())
}

fn script_name(script: whatlang::Script) -> &'static str {
    // `Script::name` ties its result to `&self`; borrowing from whatlang's own
    // static table of scripts makes the name 'static without allocating.
    whatlang::Script::all()
        .iter()
        .find(|s| **s == script)
        .map(|s| s.name())
        .unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_real_sentences() {
        let id = LanguageIdentifier::new(4096);
        let ru = id
            .identify("Москва является столицей Российской Федерации и крупнейшим городом страны.")
            .unwrap();
        assert_eq!(ru.iso639_3, "rus");
        assert_eq!(ru.iso639_1, Some("ru"));
        assert_eq!(ru.script, "Cyrillic");
        assert!(ru.score > 0.5);
        assert!(id.identify("1234 5678 !!!").is_none());
    }

    #[test]
    fn prefix_respects_char_boundaries() {
        let s = "ééé"; // 2 bytes each
        assert_eq!(prefix_at_char_boundary(s, 3), "é");
        assert_eq!(prefix_at_char_boundary(s, 100), s);
    }
}
