//! `thresher eval langid`: accuracy of the `langid` stage's identifier per
//! language, on labelled sentences and on pseudo-documents made of several
//! sentences of one language, and its speed.
//!
//! The data is a folder of `<code>.txt` files, one sentence per line, the
//! code being ISO 639-1 or 639-3 (`../shared/testdata/langid/sentences/`,
//! 75 languages). A prediction is right when it names the same language:
//! both codes go through ISO 639-3, with the macrolanguages whatlang reports
//! by an individual code (`cmn` for Chinese, `pes` for Persian, `nob` for
//! Norwegian Bokmål) mapped to the file's code.
//!
//! Accuracy is reported over every language and over the languages the
//! identifier can name at all ("supported"): a language it cannot name is
//! always wrong, which says something about coverage, not accuracy.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use thresher_classifiers::LanguageIdentifier;

/// Results for one language.
#[derive(Debug, Serialize)]
pub struct LanguageResult {
    /// ISO 639-3.
    pub lang: String,
    pub supported: bool,
    pub sentences: usize,
    pub sentence_accuracy: f64,
    pub documents: usize,
    pub document_accuracy: f64,
    /// The most frequent wrong answer at sentence level, and its share.
    pub top_confusion: Option<(String, f64)>,
}

#[derive(Debug, Serialize)]
pub struct LangidEvaluation {
    pub sentences_per_document: usize,
    pub languages: Vec<LanguageResult>,
    /// Mean of the per-language accuracies (every language weighs the same).
    pub sentence_accuracy_supported: f64,
    pub document_accuracy_supported: f64,
    pub sentence_accuracy_all: f64,
    pub document_accuracy_all: f64,
    /// Precision of each predicted language at sentence level (supported
    /// languages): of the sentences given that label, the share that are it.
    pub sentence_precision: BTreeMap<String, f64>,
    /// Identification speed, one thread: MB of text per second.
    pub sentence_mb_per_s: f64,
    pub document_mb_per_s: f64,
}

/// ISO 639-3 of a file name's code or of a prediction, with individual
/// languages folded into the macrolanguage the data names.
fn normalize(code: &str) -> String {
    let three = if code.len() == 2 {
        isolang::Language::from_639_1(code).map(|l| l.to_639_3().to_string())
    } else {
        Some(code.to_string())
    };
    let three = three.unwrap_or_else(|| code.to_string());
    match three.as_str() {
        "cmn" => "zho".into(),
        "pes" => "fas".into(),
        "zsm" => "msa".into(),
        _ => three,
    }
}

/// Evaluates `identifier` on the sentence files in `data`.
pub fn evaluate_langid(
    identifier: &LanguageIdentifier,
    data: &Path,
    sentences_per_document: usize,
) -> anyhow::Result<LangidEvaluation> {
    if sentences_per_document == 0 {
        bail!("--doc-sentences must be at least 1");
    }
    let mut files: Vec<_> = std::fs::read_dir(data)
        .with_context(|| format!("cannot read {}", data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no <language>.txt files", data.display());
    }
    let supported: std::collections::BTreeSet<String> =
        identifier.languages().iter().map(|code| normalize(code)).collect();
    let mut languages = Vec::new();
    let mut predicted_as: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut sentence_bytes, mut sentence_seconds) = (0usize, 0.0f64);
    let (mut document_bytes, mut document_seconds) = (0usize, 0.0f64);
    for path in &files {
        let code = path.file_stem().unwrap().to_string_lossy().to_string();
        let lang = normalize(&code);
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let sentences: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let predict = |t: &str| identifier.identify(t).map(|l| normalize(l.iso639_3));
        let start = Instant::now();
        let answers: Vec<Option<String>> = sentences.iter().map(|s| predict(s)).collect();
        sentence_seconds += start.elapsed().as_secs_f64();
        sentence_bytes += sentences.iter().map(|s| s.len()).sum::<usize>();
        let documents: Vec<String> = sentences
            .chunks(sentences_per_document)
            .filter(|c| c.len() == sentences_per_document)
            .map(|c| c.join(" "))
            .collect();
        let start = Instant::now();
        let document_answers: Vec<Option<String>> = documents.iter().map(|d| predict(d)).collect();
        document_seconds += start.elapsed().as_secs_f64();
        document_bytes += documents.iter().map(String::len).sum::<usize>();

        let mut wrong: BTreeMap<String, usize> = BTreeMap::new();
        let mut right = 0;
        for answer in &answers {
            let name = answer.clone().unwrap_or_else(|| "und".into());
            if supported.contains(&name) {
                let entry = predicted_as.entry(name.clone()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(name == lang);
            }
            if name == lang {
                right += 1;
            } else {
                *wrong.entry(name).or_default() += 1;
            }
        }
        let document_right = document_answers
            .iter()
            .filter(|a| a.as_deref() == Some(lang.as_str()))
            .count();
        let top_confusion = wrong
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(name.clone())))
            .map(|(name, n)| (name, n as f64 / answers.len().max(1) as f64));
        languages.push(LanguageResult {
            supported: supported.contains(&lang),
            lang,
            sentences: answers.len(),
            sentence_accuracy: right as f64 / answers.len().max(1) as f64,
            documents: documents.len(),
            document_accuracy: document_right as f64 / documents.len().max(1) as f64,
            top_confusion,
        });
    }
    let mean = |only_supported: bool, f: fn(&LanguageResult) -> f64| {
        let chosen: Vec<f64> = languages
            .iter()
            .filter(|l| l.supported || !only_supported)
            .map(f)
            .collect();
        chosen.iter().sum::<f64>() / chosen.len().max(1) as f64
    };
    Ok(LangidEvaluation {
        sentences_per_document,
        sentence_accuracy_supported: mean(true, |l| l.sentence_accuracy),
        document_accuracy_supported: mean(true, |l| l.document_accuracy),
        sentence_accuracy_all: mean(false, |l| l.sentence_accuracy),
        document_accuracy_all: mean(false, |l| l.document_accuracy),
        sentence_precision: predicted_as
            .into_iter()
            .map(|(name, (n, right))| (name, right as f64 / n as f64))
            .collect(),
        sentence_mb_per_s: sentence_bytes as f64 / 1e6 / sentence_seconds.max(1e-9),
        document_mb_per_s: document_bytes as f64 / 1e6 / document_seconds.max(1e-9),
        languages,
    })
}

/// The evaluation as a table: languages worst first, then the summary.
pub fn render_langid(e: &LangidEvaluation) -> String {
    let mut rows: Vec<&LanguageResult> = e.languages.iter().collect();
    rows.sort_by(|a, b| {
        (!a.supported, a.sentence_accuracy)
            .partial_cmp(&(!b.supported, b.sentence_accuracy))
            .unwrap()
    });
    let mut out = format!(
        "{:<5} {:>9} {:>9} {:>10} {:>9}  {:<18} {:>9}\n",
        "lang", "supported", "sentences", "accuracy", "documents", "accuracy", "confused with"
    );
    let precision = |lang: &str| e.sentence_precision.get(lang).copied();
    for l in rows {
        out.push_str(&format!(
            "{:<5} {:>9} {:>9} {:>9.1}% {:>9}  {:>7.1}%{:>11}  {}\n",
            l.lang,
            if l.supported { "yes" } else { "no" },
            l.sentences,
            100.0 * l.sentence_accuracy,
            l.documents,
            100.0 * l.document_accuracy,
            precision(&l.lang).map_or("".into(), |p| format!("p {:.1}%", 100.0 * p)),
            l.top_confusion
                .as_ref()
                .map_or(String::new(), |(name, share)| format!("{name} {:.1}%", 100.0 * share)),
        ));
    }
    let supported = e.languages.iter().filter(|l| l.supported).count();
    out.push_str(&format!(
        "\n{supported} supported languages: sentence accuracy {:.2}%, document accuracy ({} sentences) {:.2}%\n\
         all {} languages: sentence accuracy {:.2}%, document accuracy {:.2}%\n\
         speed, one thread: {:.1} MB/s on sentences, {:.1} MB/s on documents\n\
         (accuracies are means over languages; p = precision of the label at sentence level)\n",
        100.0 * e.sentence_accuracy_supported,
        e.sentences_per_document,
        100.0 * e.document_accuracy_supported,
        e.languages.len(),
        100.0 * e.sentence_accuracy_all,
        100.0 * e.document_accuracy_all,
        e.sentence_mb_per_s,
        e.document_mb_per_s,
    ));
    out
}
