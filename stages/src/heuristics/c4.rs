//! C4's rules (Raffel et al. 2020, section 2.2) as datatrove 0.10's
//! `C4QualityFilter` applies them line by line: lines that fail are removed
//! from the text, and a few findings drop the whole document.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::words::{is_py_space, py_len, py_splitlines, English};
use super::Rejection;
use crate::StageStats;

/// `c4_quality`. Lines are judged stripped; a removed line's reason is
/// counted in the manifest (`c4_lines_removed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C4QualityConfig {
    /// Remove Wikipedia-style citations (`[1]`, `[edit]`, `[citation needed]`).
    pub remove_citations: bool,
    /// Remove lines that do not end in `.`, `?`, `!`, `"` or `'` (or end in
    /// `...`). FineWeb turned this off.
    pub filter_no_terminal_punct: bool,
    /// Fewest sentences left in the document (0: no minimum).
    pub min_num_sentences: usize,
    /// Remove lines with fewer words (split at white space; 0: off).
    pub min_words_per_line: usize,
    /// Remove lines with a longer word, in characters (0: off).
    pub max_word_length: usize,
    /// Drop documents that contain "lorem ipsum".
    pub filter_lorem_ipsum: bool,
    /// Remove lines that mention "javascript".
    pub filter_javascript: bool,
    /// Drop documents with a `{`.
    pub filter_curly_bracket: bool,
    /// Remove lines about cookies, terms of use and privacy policies.
    pub filter_policy: bool,
}

impl Default for C4QualityConfig {
    fn default() -> Self {
        Self {
            remove_citations: true,
            filter_no_terminal_punct: true,
            min_num_sentences: 5,
            min_words_per_line: 3,
            max_word_length: 1000,
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
        }
    }
}

const END_PUNCTUATION: [char; 5] = ['.', '?', '!', '"', '\''];
const POLICY: [&str; 6] = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
];

/// Removes `\[\d*]|\[edit]|\[citation needed]` (Python's `\d`: any decimal digit).
fn remove_citations(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('[') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('[') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.find(|c: char| !is_decimal(c)).unwrap_or(after.len());
        let skip = if after[digits..].starts_with(']') {
            Some(digits + 1)
        } else if after.starts_with("edit]") {
            Some(5)
        } else if after.starts_with("citation needed]") {
            Some(16)
        } else {
            None
        };
        match skip {
            Some(n) => rest = &after[n..],
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.into()
}

/// Python's `\d` in a `str` pattern: general category Nd.
fn is_decimal(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory};
    get_general_category(c) == GeneralCategory::DecimalNumber
}

impl C4QualityConfig {
    /// The text with the failing lines removed, or the document's rejection.
    pub(super) fn judge(&self, text: &str, stats: &mut StageStats) -> Result<String, Rejection> {
        let english = English::get();
        let mut sentences = 0;
        let mut kept: Vec<String> = Vec::new();
        let mut removed = |reason: &str| stats.add("c4_lines_removed", reason, 1);
        for line in py_splitlines(text) {
            let line = line.trim_matches(is_py_space);
            let words: Vec<&str> = line.split(is_py_space).filter(|w| !w.is_empty()).collect();
            if self.max_word_length > 0 && words.iter().any(|w| py_len(w) > self.max_word_length) {
                removed("too_long_word");
                continue;
            }
            let line = if self.remove_citations {
                remove_citations(line)
            } else {
                line.into()
            };
            if self.filter_no_terminal_punct && (!line.ends_with(END_PUNCTUATION) || line.ends_with("...")) {
                removed("no_terminal_punctuation");
                continue;
            }
            if words.len() < self.min_words_per_line {
                removed("too_few_words");
                continue;
            }
            let lower = line.to_lowercase();
            if self.filter_lorem_ipsum && lower.contains("lorem ipsum") {
                return Err(Rejection::new("c4_lorem_ipsum", json!({ "line": line })));
            }
            if self.filter_javascript && lower.contains("javascript") {
                removed("javascript");
                continue;
            }
            if self.filter_curly_bracket && line.contains('{') {
                return Err(Rejection::new("c4_curly_bracket", json!({ "line": line })));
            }
            if self.filter_policy && POLICY.iter().any(|p| lower.contains(p)) {
                removed("policy");
                continue;
            }
            if self.min_num_sentences > 0 {
                sentences += english.sentence_count(&line);
            }
            kept.push(line.into_owned());
        }
        if sentences < self.min_num_sentences {
            return Err(Rejection::new(
                "c4_too_few_sentences",
                json!({"value": sentences, "min": self.min_num_sentences}),
            ));
        }
        Ok(kept.join("\n").trim_matches(is_py_space).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_go() {
        assert_eq!(
            remove_citations("A fact.[1] More[edit] [x] [citation needed]."),
            "A fact. More [x] ."
        );
        assert_eq!(remove_citations("[]a[12"), "a[12");
    }
}
