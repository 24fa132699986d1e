//! FineWeb's own rules (Penedo et al. 2024), as datatrove 0.10's
//! `FineWebQualityFilter` applies them: made to catch what Gopher and C4
//! leave, lists of short lines and boilerplate repeated within a page.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::gopher::duplicates;
use super::words::{py_len, English};
use super::{above, Judged, Rejection, Text};

/// `fineweb_quality`. A threshold of 0 turns its rule off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinewebQualityConfig {
    /// Least share of non-blank lines ending in terminal punctuation (of any
    /// script, datatrove's list).
    pub line_punct_thr: f64,
    /// A document with no such line at all passes the rule above.
    pub line_punct_exclude_zero: bool,
    /// Most share of non-blank lines of at most `short_line_length` characters.
    pub short_line_thr: f64,
    pub short_line_length: usize,
    /// Most share of the characters (newlines aside) in repeated lines.
    pub char_duplicates_ratio: f64,
    /// Most newlines per word.
    pub new_line_ratio: f64,
}

impl Default for FinewebQualityConfig {
    fn default() -> Self {
        Self {
            line_punct_thr: 0.12,
            line_punct_exclude_zero: false,
            short_line_thr: 0.67,
            short_line_length: 30,
            char_duplicates_ratio: 0.01,
            new_line_ratio: 0.3,
        }
    }
}

impl FinewebQualityConfig {
    pub(super) fn judge(&self, text: &Text<'_>) -> Judged {
        let t = text.text;
        let lines: Vec<&str> = t
            .split('\n')
            .filter(|l| !l.trim_matches(super::words::is_py_space).is_empty())
            .collect();
        if lines.is_empty() {
            return Err(Rejection::new("heuristics_empty_text", serde_json::Value::Null));
        }
        let n = lines.len() as f64;
        let terminal = &English::get().terminal_punctuation;
        let ended = lines
            .iter()
            .filter(|l| l.chars().last().is_some_and(|c| terminal.contains(&c)))
            .count() as f64
            / n;
        if self.line_punct_thr > 0.0 && ended < self.line_punct_thr && !(ended == 0.0 && self.line_punct_exclude_zero) {
            return Err(Rejection::new(
                "fineweb_line_punct_ratio",
                json!({"value": ended, "min": self.line_punct_thr}),
            ));
        }
        let short = lines.iter().filter(|l| py_len(l) <= self.short_line_length).count() as f64 / n;
        above("fineweb_short_line_ratio", short, self.short_line_thr)?;
        let newlines = t.matches('\n').count();
        let chars = py_len(t) - newlines;
        above(
            "fineweb_char_dup_ratio",
            duplicates(lines.iter().copied()).1 as f64 / chars as f64,
            self.char_duplicates_ratio,
        )?;
        let words = text.words().len();
        if words > 0 {
            above(
                "fineweb_list_ratio",
                newlines as f64 / words as f64,
                self.new_line_ratio,
            )?;
        }
        Ok(())
    }
}
