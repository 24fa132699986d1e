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
pub fn normalize(code: &str) -> String {
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

/// The most frequent wrong answer (ties: the first name) and its share of
/// `total` answers.
fn top_confusion(wrong: BTreeMap<String, usize>, total: usize) -> Option<(String, f64)> {
    wrong
        .into_iter()
        .max_by_key(|(name, n)| (*n, std::cmp::Reverse(name.clone())))
        .map(|(name, n)| (name, n as f64 / total.max(1) as f64))
}

/// A language judgement under evaluation: text → ISO 639-3 (as
/// [`normalize`] gives it), or `None` for "no language".
pub type Predictor<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Labelled sentences for training a predictor: (file code, sentences).
pub type Training<'t> = [(String, Vec<&'t str>)];

/// Evaluates predictors on the sentence files in `data`.
///
/// With `folds` ≥ 2, sentence `i` of every language belongs to fold
/// `i % folds`; `make` gets the other folds' sentences and its predictor is
/// judged on the fold's own (cross-validation: a model trained on the data
/// is never judged on what it saw). With `folds` ≤ 1, `make` gets `None` and
/// its predictor is judged on everything. Pseudo-documents are made of
/// consecutive held-out sentences. `supported`: the ISO 639-3 codes the
/// predictor can name.
pub fn evaluate_langid<'m>(
    data: &Path,
    sentences_per_document: usize,
    folds: usize,
    supported: &std::collections::BTreeSet<String>,
    make: &dyn Fn(Option<&Training<'_>>) -> anyhow::Result<Predictor<'m>>,
) -> anyhow::Result<LangidEvaluation> {
    if sentences_per_document == 0 {
        bail!("--doc-sentences must be at least 1");
    }
    let files = thresher_classifiers::ngram_langid::read_sentence_folder(data)?;
    let all: Vec<(String, Vec<&str>)> = files
        .iter()
        .map(|(code, text)| {
            (
                code.clone(),
                text.lines().map(str::trim).filter(|l| !l.is_empty()).collect(),
            )
        })
        .collect();
    let folds = folds.max(1);
    // Per language: answers at sentence level, and on documents.
    type Answers = Vec<Option<String>>;
    let mut answers: Vec<(Answers, Answers)> = vec![Default::default(); all.len()];
    let (mut sentence_bytes, mut sentence_seconds) = (0usize, 0.0f64);
    let (mut document_bytes, mut document_seconds) = (0usize, 0.0f64);
    for fold in 0..folds {
        let held_out = |i: usize| folds == 1 || i % folds == fold;
        let predict = if folds == 1 {
            make(None)?
        } else {
            let training: Vec<(String, Vec<&str>)> = all
                .iter()
                .map(|(code, sentences)| {
                    let kept = sentences
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !held_out(*i))
                        .map(|(_, s)| *s);
                    (code.clone(), kept.collect())
                })
                .collect();
            make(Some(&training))?
        };
        for (l, (_, sentences)) in all.iter().enumerate() {
            let test: Vec<&str> = sentences
                .iter()
                .enumerate()
                .filter(|(i, _)| held_out(*i))
                .map(|(_, s)| *s)
                .collect();
            let start = Instant::now();
            answers[l].0.extend(test.iter().map(|s| predict(s)));
            sentence_seconds += start.elapsed().as_secs_f64();
            sentence_bytes += test.iter().map(|s| s.len()).sum::<usize>();
            let documents: Vec<String> = test
                .chunks(sentences_per_document)
                .filter(|c| c.len() == sentences_per_document)
                .map(|c| c.join(" "))
                .collect();
            let start = Instant::now();
            answers[l].1.extend(documents.iter().map(|d| predict(d)));
            document_seconds += start.elapsed().as_secs_f64();
            document_bytes += documents.iter().map(String::len).sum::<usize>();
        }
    }
    let mut languages = Vec::new();
    let mut predicted_as: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for ((code, _), (answers, document_answers)) in all.iter().zip(answers) {
        let lang = normalize(code);
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
        let top_confusion = top_confusion(wrong, answers.len());
        languages.push(LanguageResult {
            supported: supported.contains(&lang),
            lang,
            sentences: answers.len(),
            sentence_accuracy: right as f64 / answers.len().max(1) as f64,
            documents: document_answers.len(),
            document_accuracy: document_right as f64 / document_answers.len().max(1) as f64,
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

/// `thresher eval langid`: builds the predictor `identifier` names and
/// evaluates it (see [`evaluate_langid`]).
pub fn run_langid_eval(
    data: &Path,
    sentences_per_document: usize,
    sample_bytes: usize,
    identifier: &str,
    folds: usize,
    model: Option<&Path>,
) -> anyhow::Result<LangidEvaluation> {
    use thresher_classifiers::ngram_langid::NgramLangid;
    use thresher_classifiers::LanguageIdentifier;
    // The reference set of the accuracy goals: the languages whatlang names.
    let whatlang = LanguageIdentifier::new(sample_bytes);
    let supported = whatlang.languages().iter().map(|c| normalize(c)).collect();
    let judge = |id: &LanguageIdentifier, t: &str| id.identify(t).map(|l| normalize(l.iso639_3));
    match identifier {
        "whatlang" => evaluate_langid(data, sentences_per_document, 1, &supported, &|_| {
            Ok(Box::new(|t: &str| judge(&whatlang, t)))
        }),
        "ngram" => {
            // The stage's rule: the n-gram model, whatlang for scripts it
            // does not know. Without folds, one model: --model or the bundled.
            let fixed = match (folds > 1, model) {
                (true, _) => None,
                (false, Some(path)) => Some(LanguageIdentifier::with_ngram(
                    sample_bytes,
                    NgramLangid::from_bytes(
                        &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
                        &path.display().to_string(),
                    )?,
                )?),
                (false, None) => Some(LanguageIdentifier::bundled(sample_bytes)),
            };
            evaluate_langid(
                data,
                sentences_per_document,
                folds,
                &supported,
                &|training| match training {
                    Some(training) => {
                        let id =
                            LanguageIdentifier::with_ngram(sample_bytes, NgramLangid::train(training.iter().cloned()))?;
                        Ok(Box::new(move |t: &str| judge(&id, t)))
                    }
                    None => {
                        let id = fixed.as_ref().expect("a model when not cross-validating");
                        Ok(Box::new(move |t: &str| judge(id, t)))
                    }
                },
            )
        }
        other => bail!("unknown --identifier {other:?}: whatlang or ngram"),
    }
}

/// The 20 programming languages the code classifier's accuracy is judged on.
pub const PROGRAMMING_LANGUAGES: [&str; 20] = [
    "C",
    "C++",
    "C#",
    "Java",
    "JavaScript",
    "TypeScript",
    "Python",
    "Go",
    "Rust",
    "Ruby",
    "PHP",
    "Shell",
    "Kotlin",
    "Swift",
    "Scala",
    "Haskell",
    "Lua",
    "Perl",
    "R",
    "SQL",
];

/// Labels of documents meant to be read, not run: the prose side of code vs
/// prose. Everything else (programming languages, data and markup formats)
/// is code.
pub const PROSE_LABELS: [&str; 8] = [
    "Text",
    "Markdown",
    "reStructuredText",
    "Org",
    "AsciiDoc",
    "Wikitext",
    "RMarkdown",
    "Pod",
];

/// Dialects that count as their language.
fn code_label(label: &str) -> &str {
    match label {
        "PLpgSQL" | "TSQL" | "PLSQL" => "SQL",
        other => other,
    }
}

#[derive(Debug, Serialize)]
pub struct ClassResult {
    pub label: String,
    pub files: usize,
    /// Share of this label's files given this label.
    pub recall: f64,
    /// Share of the files given this label that have it (None: never given).
    pub precision: Option<f64>,
    pub top_confusion: Option<(String, f64)>,
}

#[derive(Debug, Serialize)]
pub struct CodeEvaluation {
    pub files: usize,
    /// Code (positive) vs prose, over every file.
    pub code_precision: f64,
    pub code_recall: f64,
    pub code_f1: f64,
    pub prose_f1: f64,
    /// Top-1 accuracy over the files of the 20 programming languages.
    pub language_accuracy: f64,
    pub language_files: usize,
    pub classes: Vec<ClassResult>,
    pub mb_per_s: f64,
    pub mixed: MixedEvaluation,
    /// Files of the 20 programming languages whose language was judged
    /// wrong, and other files judged code when prose or prose when code:
    /// path, truth, and what was said (None: no language).
    pub misjudged: Vec<Misjudged>,
}

#[derive(Debug, Serialize)]
pub struct Misjudged {
    pub path: String,
    pub truth: String,
    pub judged: Option<String>,
    pub confidence: f64,
}

/// The line judgement on prose with code snippets: documents made of
/// paragraphs of real sentences (the second half of each file of the
/// 75-language sentence set; the training data takes its sentences from the
/// first half) around a snippet (3 to 15 lines) of one of the data's files
/// in the 20 programming languages, so each line's truth is known.
#[derive(Debug, Serialize)]
pub struct MixedEvaluation {
    pub documents: usize,
    pub lines: usize,
    /// Of the lines judged code, the share that are.
    pub code_line_precision: f64,
    /// Of the code lines, the share judged code.
    pub code_line_recall: f64,
    /// Mean of |code_fraction - true fraction| over the documents.
    pub fraction_mean_abs_error: f64,
    /// Documents judged prose (is_code false), as they should be.
    pub prose_documents: f64,
    /// Top-1 language of the snippet (snippet_language, or the label of a
    /// document judged code).
    pub snippet_language_accuracy: f64,
}

/// Evaluates a code model on a folder of labelled files.
pub fn evaluate_code(
    model: &Path,
    data: &Path,
    sentences: &Path,
    sample_bytes: usize,
) -> anyhow::Result<CodeEvaluation> {
    use thresher_classifiers::code_classifier::CodeClassifier;
    use thresher_classifiers::ngram_langid::read_labelled_paths;
    let bytes = std::fs::read(model).with_context(|| format!("cannot read {}", model.display()))?;
    let model = CodeClassifier::from_bytes(&bytes, &model.display().to_string())?;
    let with_paths = read_labelled_paths(data, sample_bytes)?;
    let mut misjudged = Vec::new();
    let mixed = evaluate_mixed(&model, &with_paths, sentences)?;
    let is_code = |label: &str| !PROSE_LABELS.contains(&label);
    let (mut tp, mut fp, mut fn_, mut tn) = (0usize, 0usize, 0usize, 0usize);
    let mut per_label: BTreeMap<String, (usize, usize, BTreeMap<String, usize>)> = BTreeMap::new();
    let mut given: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut judged_bytes, mut seconds) = (0usize, 0.0f64);
    let (mut language_files, mut language_right) = (0usize, 0usize);
    for (label, files) in &with_paths {
        let truth = code_label(label);
        for (path, text) in files {
            let start = Instant::now();
            let judged = model.classify(text);
            let (language, language_confidence) = judged
                .language()
                .map_or((None, 0.0), |(name, p)| (Some(name.to_string()), p));
            let predicted = judged.label.unwrap_or_else(|| "Text".into());
            seconds += start.elapsed().as_secs_f64();
            judged_bytes += text.len();
            match (is_code(truth), judged.is_code) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fn_ += 1,
                (false, false) => tn += 1,
            }
            if PROGRAMMING_LANGUAGES.contains(&truth) {
                language_files += 1;
                if language.as_deref() == Some(truth) {
                    language_right += 1;
                } else {
                    misjudged.push(Misjudged {
                        path: path.display().to_string(),
                        truth: truth.to_string(),
                        confidence: language_confidence,
                        judged: language,
                    });
                }
            } else if is_code(truth) != judged.is_code {
                misjudged.push(Misjudged {
                    path: path.display().to_string(),
                    truth: truth.to_string(),
                    confidence: judged.confidence,
                    judged: Some(format!(
                        "{} ({})",
                        predicted,
                        if judged.is_code { "code" } else { "prose" }
                    )),
                });
            }
            let entry = per_label.entry(truth.to_string()).or_default();
            entry.0 += 1;
            if predicted == truth {
                entry.1 += 1;
            } else {
                *entry.2.entry(predicted.clone()).or_default() += 1;
            }
            let g = given.entry(predicted.clone()).or_default();
            g.0 += 1;
            g.1 += usize::from(predicted == truth);
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let f1 = |p: f64, r: f64| if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
    let (code_precision, code_recall) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
    let (prose_precision, prose_recall) = (ratio(tn, tn + fn_), ratio(tn, tn + fp));
    let classes = per_label
        .into_iter()
        .map(|(label, (files, right, wrong))| ClassResult {
            precision: given.get(&label).map(|&(n, r)| ratio(r, n)),
            recall: ratio(right, files),
            top_confusion: top_confusion(wrong, files),
            label,
            files,
        })
        .collect();
    Ok(CodeEvaluation {
        files: tp + fp + fn_ + tn,
        code_precision,
        code_recall,
        code_f1: f1(code_precision, code_recall),
        prose_f1: f1(prose_precision, prose_recall),
        language_accuracy: ratio(language_right, language_files),
        language_files,
        classes,
        mb_per_s: judged_bytes as f64 / 1e6 / seconds.max(1e-9),
        mixed,
        misjudged,
    })
}

/// Documents in [`MixedEvaluation`]: as many as there are snippets to take,
/// at most this.
const MIXED_DOCUMENTS: usize = 400;

fn evaluate_mixed(
    model: &thresher_classifiers::code_classifier::CodeClassifier,
    labelled: &[thresher_classifiers::ngram_langid::LabelledPaths],
    sentences: &Path,
) -> anyhow::Result<MixedEvaluation> {
    let non_blank = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let prose: Vec<Vec<String>> = thresher_classifiers::ngram_langid::read_sentence_folder(sentences)?
        .into_iter()
        .map(|(_, text)| {
            let lines = non_blank(&text);
            lines[lines.len() / 2..].to_vec()
        })
        .filter(|lines| lines.len() >= 8)
        .collect();
    let mut code: Vec<(String, Vec<String>)> = Vec::new();
    for (label, files) in labelled {
        for (_, text) in files {
            let lines = non_blank(text);
            if PROGRAMMING_LANGUAGES.contains(&code_label(label)) && lines.len() >= 3 {
                code.push((code_label(label).to_string(), lines));
            }
        }
    }
    if prose.is_empty() || code.is_empty() {
        bail!("the mixed-document check needs sentences and files of the 20 programming languages");
    }
    let mut rng = thresher_stages::SplitMix64(11);
    let (mut tp, mut fp, mut fn_, mut lines, mut error, mut prose_right, mut language_right) =
        (0usize, 0usize, 0usize, 0usize, 0.0f64, 0usize, 0usize);
    let documents = MIXED_DOCUMENTS.min(code.len() * 4);
    for d in 0..documents {
        let (language, snippet_source) = &code[d % code.len()];
        // 2 to 6 lines of one to three sentences of one language.
        let paragraph = |rng: &mut thresher_stages::SplitMix64| {
            let source = &prose[rng.below(prose.len())];
            (0..rng.range(2, 6))
                .map(|_| {
                    let n = rng.range(1, 3);
                    let start = rng.below(source.len() - n + 1);
                    source[start..start + n].join(" ")
                })
                .collect::<Vec<_>>()
        };
        let before = paragraph(&mut rng);
        let len = rng.range(3, 15.min(snippet_source.len()));
        let start = rng.below(snippet_source.len() - len + 1);
        let snippet = &snippet_source[start..start + len];
        let after = paragraph(&mut rng);
        let truth: Vec<bool> = std::iter::repeat_n(false, before.len())
            .chain(std::iter::repeat_n(true, snippet.len()))
            .chain(std::iter::repeat_n(false, after.len()))
            .collect();
        let text = [before.as_slice(), snippet, after.as_slice()].concat().join("\n");
        let judged = model.code_lines(&text);
        let judgement = model.classify(&text);
        // Lines the model saw no feature in (a line of one symbol it skips)
        // are left out of both sides.
        if judged.len() != truth.len() {
            continue;
        }
        for (&j, &t) in judged.iter().zip(&truth) {
            match (j, t) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
        lines += truth.len();
        error += (judgement.code_fraction - snippet.len() as f64 / truth.len() as f64).abs();
        prose_right += usize::from(!judgement.is_code);
        let named = judgement.language().map(|(name, _)| name);
        language_right += usize::from(named == Some(language.as_str()));
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(MixedEvaluation {
        documents,
        lines,
        code_line_precision: ratio(tp, tp + fp),
        code_line_recall: ratio(tp, tp + fn_),
        fraction_mean_abs_error: error / documents.max(1) as f64,
        prose_documents: ratio(prose_right, documents),
        snippet_language_accuracy: ratio(language_right, documents),
    })
}

/// The files judged wrong (see [`CodeEvaluation::misjudged`]), one line each.
pub fn render_misjudged(e: &CodeEvaluation) -> String {
    e.misjudged
        .iter()
        .map(|m| {
            format!(
                "{:<11} judged {:<11} {:.2}  {}\n",
                m.truth,
                m.judged.as_deref().unwrap_or("(none)"),
                m.confidence,
                m.path
            )
        })
        .collect()
}

/// The code evaluation as a table.
pub fn render_code(e: &CodeEvaluation) -> String {
    let mut out = format!(
        "{:<18} {:>5} {:>8} {:>10}  confused with\n",
        "label", "files", "recall", "precision"
    );
    for c in &e.classes {
        out.push_str(&format!(
            "{:<18} {:>5} {:>7.1}% {:>10}  {}\n",
            c.label,
            c.files,
            100.0 * c.recall,
            c.precision.map_or("-".into(), |p| format!("{:.1}%", 100.0 * p)),
            c.top_confusion
                .as_ref()
                .map_or(String::new(), |(name, share)| format!("{name} {:.0}%", 100.0 * share)),
        ));
    }
    out.push_str(&format!(
        "\n{} files: code vs prose: code precision {:.3}, recall {:.3}, F1 {:.3}; prose F1 {:.3}\n\
         top-1 language over the 20 programming languages: {:.1}% of {} files\n\
         speed, one thread: {:.1} MB/s\n\
         prose with a code snippet ({} documents, {} lines): code lines precision {:.3}, recall {:.3}; \
         code_fraction mean abs error {:.3}; judged prose {:.1}%; snippet language right {:.1}%\n",
        e.files,
        e.code_precision,
        e.code_recall,
        e.code_f1,
        e.prose_f1,
        100.0 * e.language_accuracy,
        e.language_files,
        e.mb_per_s,
        e.mixed.documents,
        e.mixed.lines,
        e.mixed.code_line_precision,
        e.mixed.code_line_recall,
        e.mixed.fraction_mean_abs_error,
        100.0 * e.mixed.prose_documents,
        100.0 * e.mixed.snippet_language_accuracy,
    ));
    out
}

/// `thresher eval tokenizer`: which code runs each part of a tokenizer,
/// whether its ids equal the reference's (the `tokenizers` crate's own
/// `encode` of a `tokenizer.json`) on the user's documents, whole and cut at
/// `max_tokens`, and how fast each side is. A user with an unusual
/// tokenizer checks exactness on their own data before a run.
#[derive(Debug, Serialize)]
pub struct TokenizerEvaluation {
    pub tokenizer: String,
    pub kind: String,
    /// (part, what runs it), in the order the text goes through them.
    pub parts: Vec<(String, String)>,
    /// The `tokenizer.json` the ids are held to; `None`: no check.
    pub reference: Option<String>,
    pub documents: usize,
    pub text_bytes: u64,
    pub max_tokens: usize,
    /// Documents whose ids differ from the reference's: whole, and in their
    /// first `max_tokens`.
    pub whole_differing: Option<usize>,
    pub first_differing: Option<usize>,
    /// The first document that differs: its id and the first position.
    pub first_difference: Option<(String, usize)>,
    /// One thread, whole documents.
    pub thresher_mb_per_s: f64,
    pub reference_mb_per_s: Option<f64>,
    /// One thread, the first `max_tokens` of each document.
    pub thresher_first_docs_per_s: f64,
}

pub fn evaluate_tokenizer(
    tokenizer_path: &Path,
    reference_path: Option<&Path>,
    input: &Path,
    max_docs: usize,
    max_tokens: usize,
) -> anyhow::Result<TokenizerEvaluation> {
    use thresher_classifiers::TextTokenizer;
    let tokenizer = TextTokenizer::load(tokenizer_path)?;
    let reference = match reference_path {
        Some(path) => Some((path, TextTokenizer::load(path)?)),
        None => None,
    };
    if let Some((path, reference)) = &reference {
        if reference.kind() != "huggingface" {
            bail!("the reference {} must be a tokenizer.json", path.display());
        }
    }
    let docs = crate::readers::read_documents(input, max_docs)?;
    let text_bytes: u64 = docs.iter().map(|(_, text)| text.len() as u64).sum();
    let mb = text_bytes as f64 / 1e6;
    // The reference's ids: the crate's own encode of the reference file, or
    // of the tokenizer itself when it is a tokenizer.json.
    let by_reference = |text: &str| match &reference {
        Some((_, reference)) => reference.encode_by_crate(text),
        None => tokenizer.encode_by_crate(text),
    };
    let timed = |encode: &dyn Fn(&str) -> Option<Vec<u32>>| -> (Option<Vec<Vec<u32>>>, f64) {
        let start = Instant::now();
        let ids: Option<Vec<Vec<u32>>> = docs.iter().map(|(_, text)| encode(text)).collect();
        (ids, start.elapsed().as_secs_f64())
    };
    let (whole, whole_seconds) = timed(&|text| Some(tokenizer.encode(text)));
    let whole = whole.expect("thresher always encodes");
    let (first, first_seconds) = timed(&|text| Some(tokenizer.encode_first(text, max_tokens)));
    let first = first.expect("thresher always encodes");
    let (expected, reference_seconds) = timed(&by_reference);
    let reference_name = match (&reference, &expected) {
        (Some((path, _)), _) => Some(path.display().to_string()),
        (None, Some(_)) => Some(format!("{} (the tokenizers crate)", tokenizer_path.display())),
        (None, None) => None,
    };
    let mut evaluation = TokenizerEvaluation {
        tokenizer: tokenizer_path.display().to_string(),
        kind: tokenizer.kind().to_string(),
        parts: tokenizer
            .describe()
            .into_iter()
            .map(|(part, what)| (part.to_string(), what))
            .collect(),
        reference: reference_name,
        documents: docs.len(),
        text_bytes,
        max_tokens,
        whole_differing: None,
        first_differing: None,
        first_difference: None,
        thresher_mb_per_s: mb / whole_seconds,
        reference_mb_per_s: expected.as_ref().map(|_| mb / reference_seconds),
        thresher_first_docs_per_s: docs.len() as f64 / first_seconds,
    };
    if let Some(expected) = expected {
        let mut whole_differing = 0;
        let mut first_differing = 0;
        for (((id, _), ours), (theirs, ours_first)) in docs.iter().zip(&whole).zip(expected.iter().zip(&first)) {
            if ours != theirs {
                whole_differing += 1;
                if evaluation.first_difference.is_none() {
                    let at = ours.iter().zip(theirs).take_while(|(a, b)| a == b).count();
                    evaluation.first_difference = Some((id.clone(), at));
                }
            }
            if ours_first.as_slice() != &theirs[..max_tokens.min(theirs.len())] {
                first_differing += 1;
            }
        }
        evaluation.whole_differing = Some(whole_differing);
        evaluation.first_differing = Some(first_differing);
    }
    Ok(evaluation)
}

pub fn render_tokenizer(e: &TokenizerEvaluation) -> String {
    let mut out = format!("tokenizer: {} ({})\n", e.tokenizer, e.kind);
    for (part, what) in &e.parts {
        out += &format!("  {part:<14} {what}\n");
    }
    out += &format!(
        "documents: {} ({:.1} MB of text)\n",
        e.documents,
        e.text_bytes as f64 / 1e6
    );
    match (&e.reference, e.whole_differing, e.first_differing) {
        (Some(reference), Some(whole), Some(first)) => {
            out += &format!("ids against {reference}:\n");
            out += &format!("  whole documents: {} of {} equal\n", e.documents - whole, e.documents);
            out += &format!(
                "  first {} tokens: {} of {} equal\n",
                e.max_tokens,
                e.documents - first,
                e.documents
            );
            if let Some((id, at)) = &e.first_difference {
                out += &format!("  first difference: document {id}, at token {at}\n");
            }
        }
        _ => out += "ids: no reference to check against (give --reference tokenizer.json)\n",
    }
    out += &format!("speed, one thread: whole documents {:.1} MB/s", e.thresher_mb_per_s);
    if let Some(reference) = e.reference_mb_per_s {
        out += &format!(
            " (the reference {reference:.1} MB/s: {:.1}x)",
            e.thresher_mb_per_s / reference
        );
    }
    out += &format!(
        "; the first {} tokens {:.0} documents/s\n",
        e.max_tokens, e.thresher_first_docs_per_s
    );
    out
}
