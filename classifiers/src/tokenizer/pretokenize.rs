//! The split patterns of byte-level tokenizers, written out by hand.
//!
//! OpenAI's cl100k pattern (Llama 3's; Qwen2's differs only in taking one
//! digit at a time, `\p{N}` for `\p{N}{1,3}`):
//!
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! and GPT-2's, the regex of the `tokenizers` crate's `ByteLevel` (GPT-2,
//! GPT-NeoX, Pythia, StarCoder, SmolLM):
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! and GPT-4o's o200k, which splits words before an upper-case run and keeps
//! a contraction with its word:
//!
//! ```text
//! [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! A regex engine needs backtracking for the `(?!\S)` lookahead (fancy-regex,
//! onig) and pays for generality on every byte. This splitter applies the
//! alternatives in the same order with the same leftmost-first semantics, with
//! a table lookup per ASCII byte. Tests hold each pattern to the `tokenizers`
//! crate's regex engine (onig) on every Unicode code point, and on real text in
//! 75 languages and code.

use super::LLAMA3_PATTERN;
use unicode_general_category::{get_general_category, GeneralCategory as G};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    /// White space other than `\r` and `\n`.
    Space,
    /// `\r` or `\n` (also white space).
    Newline,
    Other,
}

const fn ascii_class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Number,
        b'\r' | b'\n' => Class::Newline,
        b' ' | b'\t' | 0x0b | 0x0c => Class::Space,
        _ => Class::Other,
    }
}

static ASCII: [Class; 128] = {
    let mut table = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        table[i] = ascii_class(i as u8);
        i += 1;
    }
    table
};

fn class(c: char) -> Class {
    if (c as u32) < 128 {
        return ASCII[c as usize];
    }
    match get_general_category(c) {
        G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter => {
            Class::Letter
        }
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ if c.is_whitespace() => Class::Space,
        _ => Class::Other,
    }
}

/// What o200k asks of a letter or mark: `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`
/// ("upper-like") and `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` ("lower-like") overlap in
/// modifier and other letters and in marks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    /// `Lu`, `Lt`: upper-like only.
    Upper,
    /// `Ll`: lower-like only.
    Lower,
    /// `Lm`, `Lo`, `M`: both.
    Both,
    /// Neither (numbers, white space, symbols, punctuation, ...).
    None,
}

impl Case {
    fn upper_like(self) -> bool {
        matches!(self, Self::Upper | Self::Both)
    }

    fn lower_like(self) -> bool {
        matches!(self, Self::Lower | Self::Both)
    }
}

fn case_of(c: char) -> Case {
    if c.is_ascii() {
        return match c {
            'A'..='Z' => Case::Upper,
            'a'..='z' => Case::Lower,
            _ => Case::None,
        };
    }
    match get_general_category(c) {
        G::UppercaseLetter | G::TitlecaseLetter => Case::Upper,
        G::LowercaseLetter => Case::Lower,
        G::ModifierLetter | G::OtherLetter | G::NonspacingMark | G::SpacingMark | G::EnclosingMark => Case::Both,
        _ => Case::None,
    }
}

/// A split pattern that thresher runs by hand, recognized by its text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SplitPattern {
    /// cl100k's, with numbers in groups of at most `max_digits` (Llama 3: 3,
    /// Qwen2: 1; `usize::MAX` for `\p{N}+`).
    Cl100k { max_digits: usize },
    /// GPT-2's: contractions in lower case only, a leading space joins
    /// letters, numbers or symbols, and `\r\n` are plain white space.
    Gpt2,
    /// o200k's (GPT-4o), with numbers in groups of at most `max_digits`;
    /// without the contractions after words when `contractions` is false
    /// (Mistral's Tekken spells it so, with `\p{N}`).
    O200k { max_digits: usize, contractions: bool },
}

/// GPT-2's pattern, as the `tokenizers` crate's `ByteLevel` spells it.
pub const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// How Llama 3's and o200k's patterns spell their number group.
const LLAMA3_NUMBERS: &str = r"\p{N}{1,3}";

/// GPT-4o's pattern (tiktoken's o200k_base).
pub const O200K_PATTERN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// o200k's optional contraction after a word.
const O200K_CONTRACTIONS: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?";

/// The largest group a number spelling allows: `\p{N}` 1, `\p{N}+`
/// unbounded, `\p{N}{1,K}` K.
fn max_digits(numbers: &str) -> Option<usize> {
    match numbers {
        r"\p{N}" => Some(1),
        r"\p{N}+" => Some(usize::MAX),
        _ => {
            let k = numbers.strip_prefix(r"\p{N}{1,")?.strip_suffix('}')?;
            // Digits only: `parse` would also take "+3".
            k.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            k.parse().ok().filter(|&k| k > 0)
        }
    }
}

/// The number group of `text` when it is `pattern` but for that group.
fn numbers_of<'t>(pattern: &str, text: &'t str) -> Option<&'t str> {
    let (head, tail) = pattern.split_once(LLAMA3_NUMBERS)?;
    text.strip_prefix(head)?.strip_suffix(tail)
}

impl SplitPattern {
    pub const LLAMA3: Self = Self::Cl100k { max_digits: 3 };

    /// The pattern a regex `text` is, when thresher has it by hand: GPT-2's,
    /// or cl100k's or o200k's with its number group spelt `\p{N}`, `\p{N}+`
    /// or `\p{N}{1,K}` (o200k's also without its contractions). Only the
    /// exact text: anything else is a regex's job.
    pub fn recognize(text: &str) -> Option<Self> {
        if text == GPT2_PATTERN {
            return Some(Self::Gpt2);
        }
        if let Some(numbers) = numbers_of(LLAMA3_PATTERN, text) {
            return Some(Self::Cl100k {
                max_digits: max_digits(numbers)?,
            });
        }
        let without_contractions = O200K_PATTERN.replace(O200K_CONTRACTIONS, "");
        for (pattern, contractions) in [(O200K_PATTERN, true), (without_contractions.as_str(), false)] {
            if let Some(numbers) = numbers_of(pattern, text) {
                return Some(Self::O200k {
                    max_digits: max_digits(numbers)?,
                    contractions,
                });
            }
        }
        None
    }

    /// What the pattern is, for people.
    pub fn name(self) -> String {
        let numbers = |max_digits| match max_digits {
            1 => "one digit at a time".to_string(),
            usize::MAX => "numbers whole".to_string(),
            k => format!("numbers by up to {k} digits"),
        };
        match self {
            Self::Cl100k { max_digits } => format!("cl100k's pattern ({})", numbers(max_digits)),
            Self::Gpt2 => "GPT-2's pattern".to_string(),
            Self::O200k {
                max_digits,
                contractions,
            } => format!(
                "o200k's pattern ({}{})",
                numbers(max_digits),
                if contractions { "" } else { ", no contractions" }
            ),
        }
    }

    /// Splits `text` into pre-tokens; every byte of `text` is in exactly one.
    pub fn split(self, text: &str) -> Pretokens<'_> {
        Pretokens {
            text,
            pos: 0,
            pattern: self,
        }
    }
}

/// Splits `text` by Llama 3's pattern.
pub fn pretokenize(text: &str) -> Pretokens<'_> {
    SplitPattern::LLAMA3.split(text)
}

/// The pre-tokens of a text, left to right.
pub struct Pretokens<'a> {
    text: &'a str,
    pos: usize,
    pattern: SplitPattern,
}

/// Char and class at a byte offset.
#[inline]
fn at(text: &str, i: usize) -> Option<(char, Class)> {
    let b = *text.as_bytes().get(i)?;
    if b < 128 {
        return Some((b as char, ASCII[b as usize]));
    }
    let c = text[i..].chars().next()?;
    Some((c, class(c)))
}

/// End of the run of chars from `i` whose class satisfies `keep`.
#[inline]
fn run_end(text: &str, mut i: usize, keep: impl Fn(Class) -> bool) -> usize {
    while let Some((c, k)) = at(text, i) {
        if !keep(k) {
            break;
        }
        i += c.len_utf8();
    }
    i
}

fn is_space(k: Class) -> bool {
    matches!(k, Class::Space | Class::Newline)
}

/// `'s|'t|'re|'ve|'m|'ll|'d`: the end of the contraction starting at `i`.
/// cl100k's is case-insensitive (with Unicode simple case folding, `ſ`
/// matches `s`), GPT-2's is not.
fn contraction(text: &str, i: usize, fold_case: bool) -> Option<usize> {
    let rest = &text[i + 1..];
    let mut chars = rest.chars();
    let first = chars.next()?;
    let second = chars.next();
    let lower = |c: char| match c {
        _ if !fold_case => c,
        'ſ' => 's',
        _ => c.to_ascii_lowercase(),
    };
    let one = |c: char| i + 1 + c.len_utf8();
    match lower(first) {
        's' | 't' | 'm' | 'd' => Some(one(first)),
        'r' | 'v' | 'l' => {
            let second = second?;
            let want = match lower(first) {
                'r' | 'v' => 'e',
                _ => 'l',
            };
            (lower(second) == want).then(|| one(first) + second.len_utf8())
        }
        _ => None,
    }
}

impl<'a> Iterator for Pretokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (text, start) = (self.text, self.pos);
        let (c0, k0) = at(text, start)?;
        let end = match self.pattern {
            SplitPattern::Cl100k { max_digits } => cl100k_end(text, start, c0, k0, max_digits),
            SplitPattern::Gpt2 => gpt2_end(text, start, c0, k0),
            SplitPattern::O200k {
                max_digits,
                contractions,
            } => o200k_end(text, start, c0, k0, max_digits, contractions),
        };
        self.pos = end;
        Some(&text[start..end])
    }
}

/// The end of cl100k's match at `start`, whose char is `c0` of class `k0`.
fn cl100k_end(text: &str, start: usize, c0: char, k0: Class, max_digits: usize) -> usize {
    let after0 = start + c0.len_utf8();
    // 1. contractions
    if c0 == '\'' {
        if let Some(end) = contraction(text, start, true) {
            return end;
        }
    }
    // 2. [^\r\n\p{L}\p{N}]?\p{L}+
    if k0 == Class::Letter {
        return run_end(text, after0, |k| k == Class::Letter);
    }
    if k0 != Class::Newline && k0 != Class::Number {
        if let Some((_, Class::Letter)) = at(text, after0) {
            return run_end(text, after0, |k| k == Class::Letter);
        }
    }
    // 3. \p{N}{1,max_digits}
    if k0 == Class::Number {
        return number_group_end(text, after0, max_digits);
    }
    // 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let symbols_from = if c0 == ' ' { after0 } else { start };
    if let Some((_, Class::Other)) = at(text, symbols_from) {
        let end = run_end(text, symbols_from, |k| k == Class::Other);
        return run_end(text, end, |k| k == Class::Newline);
    }
    // The rest all start with white space.
    if !is_space(k0) {
        // Unreachable for valid classes (Other is taken by 4), kept total.
        return after0;
    }
    newline_or_space_run_end(text, start)
}

/// `\s*[\r\n]+|\s+(?!\S)|\s+` at `start`, which is white space.
fn newline_or_space_run_end(text: &str, start: usize) -> usize {
    let run = run_end(text, start, is_space);
    // 5. \s*[\r\n]+ : up to the last newline of the white-space run.
    let mut last_newline = None;
    let mut i = start;
    while i < run {
        let (c, k) = at(text, i).expect("inside the run");
        if k == Class::Newline {
            last_newline = Some(i + 1);
        }
        i += c.len_utf8();
    }
    last_newline.unwrap_or_else(|| space_run_end(text, start, run))
}

/// `\p{N}{1,max_digits}` after its first digit, which ends at `after0`.
fn number_group_end(text: &str, after0: usize, max_digits: usize) -> usize {
    let mut end = after0;
    for _ in 1..max_digits {
        match at(text, end) {
            Some((c, Class::Number)) => end += c.len_utf8(),
            _ => break,
        }
    }
    end
}

/// The end of o200k's match at `start`, whose char is `c0` of class `k0`.
fn o200k_end(text: &str, start: usize, c0: char, k0: Class, max_digits: usize, contractions: bool) -> usize {
    let after0 = start + c0.len_utf8();
    // 1 and 2, each first with the optional `[^\r\n\p{L}\p{N}]` before the
    // word, then without it.
    let prefix = k0 == Class::Other || k0 == Class::Space;
    let starts = [prefix.then_some(after0), Some(start)];
    for word_end in [o200k_lower_word_end, o200k_upper_word_end] {
        for from in starts.into_iter().flatten() {
            if let Some(end) = word_end(text, from) {
                let with_contraction = contractions.then(|| contraction_at(text, end)).flatten();
                return with_contraction.unwrap_or(end);
            }
        }
    }
    // 3. \p{N}{1,max_digits}
    if k0 == Class::Number {
        return number_group_end(text, after0, max_digits);
    }
    // 4. ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let symbols_from = if c0 == ' ' { after0 } else { start };
    if let Some((_, Class::Other)) = at(text, symbols_from) {
        let end = run_end(text, symbols_from, |k| k == Class::Other);
        return run_end_chars(text, end, |c| matches!(c, '\r' | '\n' | '/'));
    }
    if !is_space(k0) {
        // Unreachable: letters, marks and numbers are taken above, the
        // rest of Other by 4.
        return after0;
    }
    newline_or_space_run_end(text, start)
}

/// The end of the run of `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` from `from`, and
/// the end of the last char in it that is lower-like too.
fn o200k_upper_run(text: &str, from: usize) -> (usize, Option<usize>) {
    let (mut i, mut last_both) = (from, None);
    while let Some(c) = text[i..].chars().next() {
        let case = case_of(c);
        if !case.upper_like() {
            break;
        }
        i += c.len_utf8();
        if case == Case::Both {
            last_both = Some(i);
        }
    }
    (i, last_both)
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` from `from`,
/// as a backtracking engine finds it: the longest upper-like run that a
/// lower-like char follows, then the longest lower-like run.
fn o200k_lower_word_end(text: &str, from: usize) -> Option<usize> {
    let (upper_end, last_both) = o200k_upper_run(text, from);
    match text[upper_end..].chars().next() {
        Some(c) if case_of(c).lower_like() => Some(run_end_chars(text, upper_end, |c| case_of(c).lower_like())),
        // Give back the run's last char that is lower-like too; what came
        // after it in the run is upper-like only, so the lower run is it.
        _ => last_both,
    }
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` from `from`.
fn o200k_upper_word_end(text: &str, from: usize) -> Option<usize> {
    let (upper_end, _) = o200k_upper_run(text, from);
    (upper_end > from).then(|| run_end_chars(text, upper_end, |c| case_of(c).lower_like()))
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `i`: its end.
fn contraction_at(text: &str, i: usize) -> Option<usize> {
    (text.as_bytes().get(i) == Some(&b'\'')).then(|| contraction(text, i, true))?
}

/// End of the run of chars from `i` that satisfy `keep`.
fn run_end_chars(text: &str, i: usize, keep: impl Fn(char) -> bool) -> usize {
    text[i..]
        .char_indices()
        .find(|&(_, c)| !keep(c))
        .map_or(text.len(), |(j, _)| i + j)
}

/// The end of GPT-2's match at `start`, whose char is `c0` of class `k0`.
fn gpt2_end(text: &str, start: usize, c0: char, k0: Class) -> usize {
    // 1. contractions
    if c0 == '\'' {
        if let Some(end) = contraction(text, start, false) {
            return end;
        }
    }
    // 2-4. ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: a run of one class,
    // after one optional space.
    let from = if c0 == ' ' { start + 1 } else { start };
    if let Some((_, k)) = at(text, from) {
        if !is_space(k) {
            return run_end(text, from, |next| next == k);
        }
    }
    if !is_space(k0) {
        // Unreachable: a char that is not white space starts a run above.
        return start + c0.len_utf8();
    }
    space_run_end(text, start, run_end(text, start, is_space))
}

/// `\s+(?!\S)|\s+` over the white-space run `start..run`: the run, less its
/// last char when text follows and the run has more than one.
fn space_run_end(text: &str, start: usize, run: usize) -> usize {
    // 6. \s+(?!\S)
    if run == text.len() {
        return run;
    }
    let last_char_start = text[..run]
        .char_indices()
        .next_back()
        .map(|(i, _)| start.max(i))
        .unwrap_or(start);
    if last_char_start > start {
        return last_char_start;
    }
    // 7. \s+
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        pretokenize(s).collect()
    }

    #[test]
    fn follows_the_pattern() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(
            split("I'm here, they'LL go"),
            ["I", "'m", " here", ",", " they", "'LL", " go"]
        );
        assert_eq!(split("12345 x"), ["123", "45", " x"]);
        assert_eq!(split("a  b"), ["a", " ", " b"]);
        assert_eq!(split("a \n\n b"), ["a", " \n\n", " b"]);
        assert_eq!(split("end   "), ["end", "   "]);
        assert_eq!(split(" 1"), [" ", "1"]);
        assert_eq!(split("(hello) ..."), ["(hello", ")", " ..."]);
        assert_eq!(split("x!!\n\ny"), ["x", "!!\n\n", "y"]);
        assert_eq!(split("\tword"), ["\tword"]);
        assert_eq!(split(""), Vec::<&str>::new());
    }

    #[test]
    fn gpt2_follows_its_pattern() {
        let split = |s| SplitPattern::Gpt2.split(s).collect::<Vec<_>>();
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(
            split("I'm here, they'LL go"),
            ["I", "'m", " here", ",", " they", "'", "LL", " go"]
        );
        assert_eq!(split("12345 x 678"), ["12345", " x", " 678"]);
        assert_eq!(split("a  b"), ["a", " ", " b"]);
        assert_eq!(split("a \n\n b"), ["a", " \n\n", " b"]);
        assert_eq!(split("\tword 'quoted'"), ["\t", "word", " '", "quoted", "'"]);
        // No newline alternative: the run less its last char, then that char.
        assert_eq!(split("x!!\n\ny"), ["x", "!!", "\n", "\n", "y"]);
        assert_eq!(split("end   "), ["end", "   "]);
    }

    #[test]
    fn o200k_follows_its_pattern() {
        let split = |s| {
            SplitPattern::recognize(O200K_PATTERN)
                .unwrap()
                .split(s)
                .collect::<Vec<_>>()
        };
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(split("don't DON'T they'LL"), ["don't", " DON'T", " they'LL"]);
        assert_eq!(split("camelCase HTTPServer"), ["camel", "Case", " HTTPServer"]);
        assert_eq!(split("12345 x"), ["123", "45", " x"]);
        assert_eq!(split("a/b//\n/c"), ["a", "/b", "//\n/", "c"]);
        assert_eq!(split("(hello) ..."), ["(hello", ")", " ..."]);
    }

    #[test]
    fn recognizes_exact_patterns_only() {
        let numbers = |group: &str| LLAMA3_PATTERN.replace(LLAMA3_NUMBERS, group);
        assert_eq!(SplitPattern::recognize(LLAMA3_PATTERN), Some(SplitPattern::LLAMA3));
        assert_eq!(SplitPattern::recognize(GPT2_PATTERN), Some(SplitPattern::Gpt2));
        let qwen2 = SplitPattern::recognize(&numbers(r"\p{N}"));
        assert_eq!(qwen2, Some(SplitPattern::Cl100k { max_digits: 1 }));
        assert_eq!(
            SplitPattern::recognize(&numbers(r"\p{N}+")),
            Some(SplitPattern::Cl100k { max_digits: usize::MAX })
        );
        assert_eq!(
            SplitPattern::recognize(&numbers(r"\p{N}{1,12}")),
            Some(SplitPattern::Cl100k { max_digits: 12 })
        );
        for other in [r"\p{N}{1,0}", r"\p{N}{1,+3}", r"\p{N}{2,3}", r"\p{N}*", r"\d{1,3}"] {
            assert_eq!(SplitPattern::recognize(&numbers(other)), None, "{other}");
        }
        assert_eq!(SplitPattern::recognize(&format!("{LLAMA3_PATTERN}|x")), None);
        assert_eq!(SplitPattern::recognize(&GPT2_PATTERN.replace("'s|", "")), None);
        assert_eq!(
            SplitPattern::recognize(&numbers(r"\p{N}{1,5}")).map(|p| p.split("1234567").count()),
            Some(2)
        );
        let o200k = |group: &str| O200K_PATTERN.replace(LLAMA3_NUMBERS, group);
        assert_eq!(
            SplitPattern::recognize(O200K_PATTERN),
            Some(SplitPattern::O200k {
                max_digits: 3,
                contractions: true
            })
        );
        assert_eq!(
            SplitPattern::recognize(&o200k(r"\p{N}").replace(O200K_CONTRACTIONS, "")),
            Some(SplitPattern::O200k {
                max_digits: 1,
                contractions: false
            })
        );
        assert_eq!(SplitPattern::recognize(&o200k(r"\p{N}{2,3}")), None);
        assert_eq!(
            SplitPattern::recognize(&O200K_PATTERN.replacen(O200K_CONTRACTIONS, "", 1)),
            None
        );
    }
}

#[cfg(test)]
mod class_tests {
    use super::*;
    use tokenizers::utils::SysRegex;

    /// The classes must be the regex engine's own, for every code point:
    /// the tokenizers crate (onig) is the reference a `tokenizer.json` is
    /// held to, and a rare letter classed otherwise would split differently.
    #[test]
    fn every_code_point_is_classed_as_the_regex_engine_does() {
        let letter = SysRegex::new(r"\A\p{L}\z").unwrap();
        let number = SysRegex::new(r"\A\p{N}\z").unwrap();
        let space = SysRegex::new(r"\A\s\z").unwrap();
        let upper_like = SysRegex::new(r"\A[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]\z").unwrap();
        let lower_like = SysRegex::new(r"\A[\p{Ll}\p{Lm}\p{Lo}\p{M}]\z").unwrap();
        let mut differing = Vec::new();
        let mut differing_case = Vec::new();
        let mut buf = [0u8; 4];
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let s = c.encode_utf8(&mut buf);
            let matches = |re: &SysRegex| re.find_iter(s).next().is_some();
            let expected = if matches(&letter) {
                Class::Letter
            } else if matches(&number) {
                Class::Number
            } else if matches(&space) {
                if c == '\r' || c == '\n' {
                    Class::Newline
                } else {
                    Class::Space
                }
            } else {
                Class::Other
            };
            if class(c) != expected {
                differing.push((c as u32, class(c), expected));
            }
            let expected_case = match (matches(&upper_like), matches(&lower_like)) {
                (true, true) => Case::Both,
                (true, false) => Case::Upper,
                (false, true) => Case::Lower,
                (false, false) => Case::None,
            };
            if case_of(c) != expected_case {
                differing_case.push((c as u32, case_of(c), expected_case));
            }
        }
        assert!(
            differing_case.is_empty(),
            "{} code points differ in case, first: {:x?}",
            differing_case.len(),
            &differing_case[..differing_case.len().min(20)]
        );
        assert!(
            differing.is_empty(),
            "{} code points differ, first: {:x?}",
            differing.len(),
            &differing[..differing.len().min(20)]
        );
    }

    /// The whole split against the regex engine's, for every pattern
    /// thresher has by hand, on every code point in the places where the
    /// patterns' alternatives meet: after an apostrophe (cl100k's
    /// contractions fold case: `ſ` is `s`; GPT-2's do not), before and after
    /// letters, digits, spaces and newlines; for o200k's also between upper-
    /// and lower-case letters and marks, and before a contraction.
    #[test]
    fn every_code_point_splits_as_the_regex_engine_does() {
        let qwen2 = LLAMA3_PATTERN.replace(LLAMA3_NUMBERS, r"\p{N}");
        let tekken = O200K_PATTERN
            .replace(O200K_CONTRACTIONS, "")
            .replace(LLAMA3_NUMBERS, r"\p{N}");
        for (pattern, by_case) in [
            (LLAMA3_PATTERN, false),
            (GPT2_PATTERN, false),
            (&qwen2, false),
            (O200K_PATTERN, true),
            (&tekken, true),
        ] {
            let split = SplitPattern::recognize(pattern).unwrap();
            let regex = SysRegex::new(pattern).unwrap();
            let by_regex =
                |text: &str| -> Vec<String> { regex.find_iter(text).map(|(a, b)| text[a..b].to_string()).collect() };
            let mut checked = 0;
            for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
                let mut texts = vec![
                    format!("'{c}"),
                    format!("'{c}e"),
                    format!("'{c}L"),
                    format!("'l{c}"),
                    format!("a{c}1"),
                    format!(" {c}b"),
                    format!("1{c}\n"),
                    format!("x \t{c} 22"),
                ];
                if by_case {
                    texts.extend([
                        format!("A{c}b"),
                        format!("{c}AB's"),
                        format!("\u{301}{c}B\u{2b0}"),
                        format!("/{c}\n/x"),
                    ]);
                }
                for text in texts {
                    let ours: Vec<&str> = split.split(&text).collect();
                    assert_eq!(ours, by_regex(&text), "{split:?}: {text:?} (U+{:04X})", c as u32);
                    checked += 1;
                }
            }
            assert!(checked > 8_000_000);
        }
    }
}
