//! The Llama 3 (= OpenAI cl100k) pre-tokenizer, written out by hand.
//!
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! A regex engine needs backtracking for the `(?!\S)` lookahead (fancy-regex,
//! onig) and pays for generality on every byte. This splitter applies the
//! alternatives in the same order with the same leftmost-first semantics, with
//! a table lookup per ASCII byte. The parity tests compare it with the
//! `tokenizers` crate (onig) on real text in 75 languages and code.

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

/// Splits `text` into pre-tokens; every byte of `text` is in exactly one.
pub struct Pretokens<'a> {
    text: &'a str,
    pos: usize,
}

pub fn pretokenize(text: &str) -> Pretokens<'_> {
    Pretokens { text, pos: 0 }
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

/// `'s|'t|'re|'ve|'m|'ll|'d`, case-insensitive (with Unicode simple case
/// folding, `ſ` matches `s`): the end of the contraction starting at `i`.
fn contraction(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i + 1..];
    let mut chars = rest.chars();
    let first = chars.next()?;
    let second = chars.next();
    let lower = |c: char| if c == 'ſ' { 's' } else { c.to_ascii_lowercase() };
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
        let text = self.text;
        let start = self.pos;
        let (c0, k0) = at(text, start)?;
        let after0 = start + c0.len_utf8();
        let end = 'matched: {
            // 1. contractions
            if c0 == '\'' {
                if let Some(end) = contraction(text, start) {
                    break 'matched end;
                }
            }
            // 2. [^\r\n\p{L}\p{N}]?\p{L}+
            if k0 == Class::Letter {
                break 'matched run_end(text, after0, |k| k == Class::Letter);
            }
            if k0 != Class::Newline && k0 != Class::Number {
                if let Some((_, Class::Letter)) = at(text, after0) {
                    break 'matched run_end(text, after0, |k| k == Class::Letter);
                }
            }
            // 3. \p{N}{1,3}
            if k0 == Class::Number {
                let mut end = after0;
                for _ in 0..2 {
                    match at(text, end) {
                        Some((c, Class::Number)) => end += c.len_utf8(),
                        _ => break,
                    }
                }
                break 'matched end;
            }
            // 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let symbols_from = if c0 == ' ' { after0 } else { start };
            if let Some((_, Class::Other)) = at(text, symbols_from) {
                let end = run_end(text, symbols_from, |k| k == Class::Other);
                break 'matched run_end(text, end, |k| k == Class::Newline);
            }
            // The rest all start with white space.
            if !is_space(k0) {
                // Unreachable for valid classes (Other is taken by 4), kept total.
                break 'matched after0;
            }
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
            if let Some(end) = last_newline {
                break 'matched end;
            }
            // 6. \s+(?!\S) : the run, less its last char unless text ends there.
            if run == text.len() {
                break 'matched run;
            }
            let last_char_start = text[..run]
                .char_indices()
                .next_back()
                .map(|(i, _)| start.max(i))
                .unwrap_or(start);
            if last_char_start > start {
                break 'matched last_char_start;
            }
            // 7. \s+
            run
        };
        self.pos = end;
        Some(&text[start..end])
    }
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
        let mut differing = Vec::new();
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
        }
        assert!(
            differing.is_empty(),
            "{} code points differ, first: {:x?}",
            differing.len(),
            &differing[..differing.len().min(20)]
        );
    }

    /// The whole split against the regex engine's, on every code point in
    /// the places where the pattern's alternatives meet: after an
    /// apostrophe (contractions fold case: `ſ` is `s`), before and after
    /// letters, digits, spaces and newlines.
    #[test]
    fn every_code_point_splits_as_the_regex_engine_does() {
        let regex = SysRegex::new(crate::tokenizer::LLAMA3_PATTERN).unwrap();
        let by_regex =
            |text: &str| -> Vec<String> { regex.find_iter(text).map(|(a, b)| text[a..b].to_string()).collect() };
        let mut checked = 0;
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            for text in [
                format!("'{c}"),
                format!("'{c}e"),
                format!("'{c}L"),
                format!("'l{c}"),
                format!("a{c}1"),
                format!(" {c}b"),
                format!("1{c}\n"),
                format!("x \t{c} "),
            ] {
                let ours: Vec<&str> = pretokenize(&text).collect();
                assert_eq!(ours, by_regex(&text), "{text:?} (U+{:04X})", c as u32);
                checked += 1;
            }
        }
        assert!(checked > 8_000_000);
    }
}
