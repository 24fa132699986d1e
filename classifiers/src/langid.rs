//! Language identification over a bounded prefix of each document.

use whatlang::Detector;

use crate::ngram_langid::{NgramError, NgramLangid};

/// One language judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    /// ISO 639-3 code (`eng`, `nob`, ...; whatlang names Chinese `cmn`).
    pub iso639_3: &'static str,
    /// ISO 639-1 code where the language has one (`en`, `zh`, …).
    pub iso639_1: Option<&'static str>,
    /// Writing system, e.g. `Latin`, `Cyrillic`, `Mandarin`.
    pub script: &'static str,
    /// Confidence in [0, 1].
    pub score: f64,
    /// Which model decided: `ngram` or `whatlang`.
    pub model: &'static str,
}

/// The character n-gram model bundled with thresher: trained by
/// `thresher classifier train-langid` on the 75-language development split
/// (see `classifiers/models/README.md`).
static BUNDLED_NGRAM: &[u8] = include_bytes!("../models/langid-ngram.bin");

/// Below this share of a text's n-grams known to the n-gram model, the text
/// is in a script or language the model was not trained on (Amharic,
/// Khmer, ...), and whatlang judges it instead.
const MIN_KNOWN_NGRAMS: f64 = 0.3;

/// Which model judges.
enum Model {
    Whatlang,
    /// The n-gram model, its languages' ISO 639-3 and 639-1 codes, and
    /// whatlang for texts it does not know.
    Ngram(Box<NgramLangid>, Vec<(&'static str, Option<&'static str>)>),
}

/// Identifies the language of the first `sample_bytes` of a text.
///
/// Only a prefix is read because language rarely changes within a page while
/// cost grows with length: a web page's first few KB decide its language as
/// well as the whole page does, at a bounded cost per document.
pub struct LanguageIdentifier {
    detector: Detector,
    model: Model,
    sample_bytes: usize,
}

impl LanguageIdentifier {
    /// whatlang alone.
    pub fn new(sample_bytes: usize) -> Self {
        Self {
            detector: Detector::new(),
            model: Model::Whatlang,
            sample_bytes: sample_bytes.max(1),
        }
    }

    /// The n-gram model `model` (its language codes ISO 639-1 or 639-3),
    /// with whatlang for texts in scripts it does not know.
    pub fn with_ngram(sample_bytes: usize, model: NgramLangid) -> Result<Self, NgramError> {
        let codes = model
            .languages
            .iter()
            .map(|code| {
                let lang = if code.len() == 2 {
                    isolang::Language::from_639_1(code)
                } else {
                    isolang::Language::from_639_3(code)
                };
                lang.map(|l| (l.to_639_3(), l.to_639_1()))
                    .ok_or_else(|| NgramError::Model {
                        path: "the n-gram model".into(),
                        message: format!("{code:?} is not an ISO 639-1 or 639-3 code"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            detector: Detector::new(),
            model: Model::Ngram(Box::new(model), codes),
            sample_bytes: sample_bytes.max(1),
        })
    }

    /// The bundled n-gram model (75 languages), whatlang for other scripts.
    pub fn bundled(sample_bytes: usize) -> Self {
        let model =
            NgramLangid::from_bytes(BUNDLED_NGRAM, "bundled langid-ngram.bin").expect("the bundled model loads");
        Self::with_ngram(sample_bytes, model).expect("the bundled model's codes are ISO 639")
    }

    /// ISO 639-3 codes of every language it can name.
    pub fn languages(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = whatlang::Lang::all().iter().map(|l| l.code()).collect();
        if let Model::Ngram(_, codes) = &self.model {
            out.extend(codes.iter().map(|c| c.0));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The language of `text`'s prefix, or `None` when the text has no letters
    /// to judge (numbers, punctuation, empty).
    pub fn identify(&self, text: &str) -> Option<Language> {
        let sample = prefix_at_char_boundary(text, self.sample_bytes);
        if let Model::Ngram(model, codes) = &self.model {
            let judged = model.identify(sample)?;
            if judged.known_share >= MIN_KNOWN_NGRAMS {
                let (iso639_3, iso639_1) = codes[judged.language];
                return Some(Language {
                    iso639_3,
                    iso639_1,
                    script: whatlang::detect_script(sample).map_or("Unknown", script_name),
                    score: judged.confidence,
                    model: "ngram",
                });
            }
        }
        let info = self.detector.detect(sample)?;
        let lang = info.lang();
        Some(Language {
            iso639_3: lang.code(),
            iso639_1: iso639_1(lang.code()),
            script: script_name(info.script()),
            score: info.confidence(),
            model: "whatlang",
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
    fn bundled_model_separates_close_languages_and_falls_back_for_other_scripts() {
        let id = LanguageIdentifier::bundled(4096);
        // Sentences written for this test (not in the training data).
        let nb = id
            .identify("Jeg har ikke hørt noe fra henne siden i fjor, men hun skal visst flytte tilbake til Bergen.")
            .unwrap();
        assert_eq!((nb.iso639_3, nb.model), ("nob", "ngram"));
        let da = id
            .identify("Jeg har ikke hørt noget fra hende siden sidste år, men hun skal efter sigende flytte tilbage til Aarhus.")
            .unwrap();
        assert_eq!(da.iso639_3, "dan");
        assert_eq!(da.iso639_1, Some("da"));
        assert_eq!(da.script, "Latin");
        // Amharic (Ethiopic script) is not in the model: whatlang judges it.
        let am = id.identify("ሰላም ነው? እንዴት ነህ? ኢትዮጵያ ውብ አገር ናት። ቡና መጠጣት እወዳለሁ።").unwrap();
        assert_eq!((am.iso639_3, am.model), ("amh", "whatlang"));
        assert!(id.identify("1234 5678 !!!").is_none());
        assert!(id.languages().contains(&"bos") && id.languages().contains(&"amh"));
    }

    #[test]
    fn prefix_respects_char_boundaries() {
        let s = "ééé"; // 2 bytes each
        assert_eq!(prefix_at_char_boundary(s, 3), "é");
        assert_eq!(prefix_at_char_boundary(s, 100), s);
    }
}
