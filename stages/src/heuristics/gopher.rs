//! Gopher's rules (Rae et al. 2021, appendix A1), as datatrove 0.10 applies
//! them: `GopherRepetitionFilter` and `GopherQualityFilter`.

use rustc_hash::{FxHashMap, FxHashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::words::{is_py_alpha, py_len, py_splitlines, English};
use super::{above, below, Judged, Rejection, Text};

/// `gopher_repetition`: documents that repeat themselves. A threshold of 0
/// turns its rule off (as in datatrove).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherRepetitionConfig {
    /// Share of paragraphs (split at blank lines) that repeat an earlier one.
    pub dup_para_frac: f64,
    /// Share of the characters in repeated paragraphs.
    pub dup_para_char_frac: f64,
    /// Share of lines that repeat an earlier one.
    pub dup_line_frac: f64,
    /// Share of the characters in repeated lines.
    pub dup_line_char_frac: f64,
    /// `[n, max]` pairs: the most frequent word n-gram may cover at most this
    /// share of the characters.
    pub top_n_grams: Vec<(usize, f64)>,
    /// `[n, max]` pairs: word n-grams seen before may cover at most this share.
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for GopherRepetitionConfig {
    fn default() -> Self {
        Self {
            dup_para_frac: 0.3,
            dup_para_char_frac: 0.2,
            dup_line_frac: 0.3,
            dup_line_char_frac: 0.2,
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        }
    }
}

/// How many elements repeat an earlier one, and their characters.
pub(super) fn duplicates<'a>(elements: impl IntoIterator<Item = &'a str>) -> (usize, usize) {
    let mut seen = FxHashSet::default();
    let (mut count, mut chars) = (0, 0);
    for element in elements {
        if !seen.insert(element) {
            count += 1;
            chars += py_len(element);
        }
    }
    (count, chars)
}

/// Splits at runs of two or more `\n` (Python's `re.split(r"\n{2,}")`).
fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' && bytes.get(i + 1) == Some(&b'\n') {
            let mut end = i;
            while end < bytes.len() && bytes[end] == b'\n' {
                end += 1;
            }
            out.push(&text[start..i]);
            start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    out.push(&text[start..]);
    out
}

/// Words joined into one string, with the byte offset where each starts, so
/// that an n-gram is a slice: `joined[at[i]..at[i + n]]` (less the separator).
struct Joined {
    text: String,
    at: Vec<usize>,
    separator_len: usize,
}

impl Joined {
    fn new(words: &[&str], separator: &str) -> Self {
        let mut text = String::new();
        let mut at = Vec::with_capacity(words.len() + 1);
        for word in words {
            at.push(text.len());
            text.push_str(word);
            text.push_str(separator);
        }
        at.push(text.len());
        Self {
            text,
            at,
            separator_len: separator.len(),
        }
    }

    /// Words `i..i + n`, joined.
    fn gram(&self, i: usize, n: usize) -> &str {
        &self.text[self.at[i]..self.at[i + n] - self.separator_len]
    }
}

impl GopherRepetitionConfig {
    pub(super) fn judge(&self, text: &Text<'_>) -> Judged {
        if text.text.is_empty() {
            return Err(Rejection::new("heuristics_empty_text", serde_json::Value::Null));
        }
        let len = py_len(text.text) as f64;
        let paragraphs = paragraphs(text.text.trim_matches(super::words::is_py_space));
        let (dup, dup_chars) = duplicates(paragraphs.iter().copied());
        above(
            "gopher_dup_para_frac",
            dup as f64 / paragraphs.len() as f64,
            self.dup_para_frac,
        )?;
        above(
            "gopher_dup_para_char_frac",
            dup_chars as f64 / len,
            self.dup_para_char_frac,
        )?;
        let lines: Vec<&str> = text.text.split('\n').filter(|l| !l.is_empty()).collect();
        // `re.split("\n+")` keeps an empty first or last piece.
        let edges = usize::from(text.text.starts_with('\n')) + usize::from(text.text.ends_with('\n'));
        let (dup, dup_chars) = duplicates(lines.iter().copied().chain(std::iter::repeat_n("", edges)));
        let line_count = (lines.len() + edges) as f64;
        above("gopher_dup_line_frac", dup as f64 / line_count, self.dup_line_frac)?;
        above(
            "gopher_dup_line_char_frac",
            dup_chars as f64 / len,
            self.dup_line_char_frac,
        )?;
        let words = text.words();
        let spaced = Joined::new(words, " ");
        for &(n, max) in &self.top_n_grams {
            // `Heuristics::new` refuses n = 0.
            if words.len() < n {
                continue;
            }
            // The most frequent n-gram; of equal counts, the first seen.
            let mut counts: FxHashMap<&str, (usize, usize)> = FxHashMap::default();
            for i in 0..=words.len() - n {
                counts.entry(spaced.gram(i, n)).or_insert((0, i)).0 += 1;
            }
            let (gram, (count, _)) = counts
                .iter()
                .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
                .expect("at least one n-gram");
            let share = (py_len(gram) * count) as f64 / len;
            if max > 0.0 && share > max {
                return Err(Rejection::new(
                    "gopher_top_ngram",
                    json!({"n": n, "value": share, "max": max}),
                ));
            }
        }
        let joined = Joined::new(words, "");
        for &(n, max) in &self.dup_n_grams {
            // datatrove joins these n-grams without a separator and, after a
            // repeat, skips the n-gram's words.
            let mut seen = FxHashSet::default();
            let mut repeated = 0;
            let mut i = 0;
            while i + n <= words.len() {
                let gram = joined.gram(i, n);
                if seen.contains(gram) {
                    repeated += py_len(gram);
                    i += n;
                } else {
                    seen.insert(gram);
                    i += 1;
                }
            }
            let share = repeated as f64 / len;
            if max > 0.0 && share > max {
                return Err(Rejection::new(
                    "gopher_duplicated_ngrams",
                    json!({"n": n, "value": share, "max": max}),
                ));
            }
        }
        Ok(())
    }
}

/// `gopher_quality`: documents that do not read as prose. A threshold of 0
/// turns its rule off (as in datatrove).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherQualityConfig {
    /// Fewest words that are not only punctuation.
    pub min_doc_words: usize,
    /// Most words that are not only punctuation.
    pub max_doc_words: usize,
    /// Shortest mean length of those words, in characters.
    pub min_avg_word_length: f64,
    /// Longest mean length of those words.
    pub max_avg_word_length: f64,
    /// Most `#`, and most ellipses (`...` or `…`), per word.
    pub max_symbol_word_ratio: f64,
    /// Most lines starting with a bullet (`•` or `-`), as a share of lines.
    pub max_bullet_lines_ratio: f64,
    /// Most lines ending with an ellipsis, as a share of lines.
    pub max_ellipsis_lines_ratio: f64,
    /// Least share of words with a letter (datatrove's
    /// `max_non_alpha_words_ratio`, which is this minimum).
    pub min_alpha_words_ratio: f64,
    /// Fewest distinct stop words among the words (case-sensitive).
    pub min_stop_words: usize,
    /// The stop words; Gopher's English ones by default.
    pub stop_words: Option<Vec<String>>,
}

impl Default for GopherQualityConfig {
    fn default() -> Self {
        Self {
            min_doc_words: 50,
            max_doc_words: 100_000,
            min_avg_word_length: 3.0,
            max_avg_word_length: 10.0,
            max_symbol_word_ratio: 0.1,
            max_bullet_lines_ratio: 0.9,
            max_ellipsis_lines_ratio: 0.3,
            min_alpha_words_ratio: 0.8,
            min_stop_words: 2,
            stop_words: None,
        }
    }
}

/// Non-overlapping occurrences, as Python's `str.count`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

impl GopherQualityConfig {
    pub(super) fn judge(&self, text: &Text<'_>) -> Judged {
        let english = English::get();
        let words = text.words();
        let n_words = words.len() as f64;
        let (mut n_real, mut real_chars) = (0usize, 0usize);
        for word in words.iter().filter(|w| english.is_not_symbol(w)) {
            n_real += 1;
            real_chars += py_len(word);
        }
        if self.min_doc_words > 0 && n_real < self.min_doc_words {
            return Err(Rejection::new(
                "gopher_short_doc",
                json!({"value": n_real, "min": self.min_doc_words}),
            ));
        }
        if self.max_doc_words > 0 && n_real > self.max_doc_words {
            return Err(Rejection::new(
                "gopher_long_doc",
                json!({"value": n_real, "max": self.max_doc_words}),
            ));
        }
        // NaN (no such words) passes both bounds, as numpy's mean of nothing does.
        let mean = real_chars as f64 / n_real as f64;
        below("gopher_short_words", mean, self.min_avg_word_length)?;
        above("gopher_long_words", mean, self.max_avg_word_length)?;
        let t = text.text;
        if n_words > 0.0 {
            above(
                "gopher_too_many_hashes",
                count(t, "#") as f64 / n_words,
                self.max_symbol_word_ratio,
            )?;
            let ellipses = (count(t, "...") + count(t, "…")) as f64;
            above(
                "gopher_too_many_ellipses",
                ellipses / n_words,
                self.max_symbol_word_ratio,
            )?;
        }
        let lines = py_splitlines(t);
        if !lines.is_empty() {
            let share = |f: &dyn Fn(&str) -> bool| lines.iter().filter(|l| f(l)).count() as f64 / lines.len() as f64;
            let bullets = share(&|l| {
                let l = l.trim_start_matches(super::words::is_py_space);
                l.starts_with('•') || l.starts_with('-')
            });
            above("gopher_too_many_bullet_lines", bullets, self.max_bullet_lines_ratio)?;
            let ellipses = share(&|l| {
                let l = l.trim_end_matches(super::words::is_py_space);
                l.ends_with("...") || l.ends_with('…')
            });
            above(
                "gopher_too_many_ellipsis_lines",
                ellipses,
                self.max_ellipsis_lines_ratio,
            )?;
        }
        if n_words > 0.0 {
            let alpha = words.iter().filter(|w| w.chars().any(is_py_alpha)).count() as f64 / n_words;
            below("gopher_too_few_alpha_words", alpha, self.min_alpha_words_ratio)?;
        }
        if self.min_stop_words > 0 {
            let stop_words: &[String] = self.stop_words.as_deref().unwrap_or(&english.stop_words);
            let present: FxHashSet<&str> = words.iter().copied().collect();
            let found = stop_words
                .iter()
                .filter(|s| present.contains(s.as_str()))
                .collect::<FxHashSet<_>>()
                .len();
            if found < self.min_stop_words {
                return Err(Rejection::new(
                    "gopher_too_few_stop_words",
                    json!({"value": found, "min": self.min_stop_words}),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_at_blank_lines() {
        assert_eq!(paragraphs("a\n\nb\n\n\nc\nd"), ["a", "b", "c\nd"]);
        assert_eq!(paragraphs("a"), ["a"]);
        assert_eq!(duplicates(["ab", "c", "ab", "ab"]), (2, 4));
    }
}
