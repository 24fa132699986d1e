//! English words and sentences as datatrove counts them: a port of spaCy's
//! tokenizer (`spacy.blank("en")`, the word splitter of datatrove 0.10 for
//! English) and of spaCy's rule-based sentencizer.
//!
//! The rules themselves (prefix, suffix, infix and URL patterns, 1,347
//! special cases such as `don't` → `do` `n't`) are spaCy's own, dumped by
//! `scripts/datatrove_heuristics.py rules` into `spacy_en_rules.json`
//! (spaCy is MIT-licensed: `LICENSE.spacy.txt`); this
//! file is the algorithm of spaCy's `tokenizer.pyx` over them. Python's
//! notions of white space, `len` (code points) and `str.split` are kept where
//! the filters use them, so a ratio here is the ratio datatrove computes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use fancy_regex::Regex;
use rustc_hash::FxHashMap;
use serde::Deserialize;

/// Chunks a thread keeps split before it starts over (spaCy keeps 10,000).
const CACHE_CHUNKS: usize = 100_000;

/// A token of a cached chunk: a span of the chunk, or a special case's token.
enum Piece {
    Span(u32, u32),
    Special(&'static str),
}

/// One of spaCy's patterns, with a quick test before it: the pattern without
/// its lookarounds, which matches wherever the pattern does (and in a few
/// more places), on the `regex` crate's automata. Most chunks are plain words
/// that no pattern matches, and the quick test is all they cost.
struct Pattern {
    full: Regex,
    quick: regex::Regex,
}

impl Pattern {
    fn new(pattern: &str) -> Self {
        Self {
            full: Regex::new(pattern).expect("bundled spaCy pattern compiles"),
            quick: regex::Regex::new(&without_lookarounds(pattern)).expect("pattern without lookarounds compiles"),
        }
    }

    /// The leftmost match, as Python's `re.search` finds it.
    fn find<'s>(&self, s: &'s str) -> Option<fancy_regex::Match<'s>> {
        match self.quick.is_match(s) {
            true => self.full.find(s).ok().flatten(),
            false => None,
        }
    }

    fn is_match(&self, s: &str) -> bool {
        self.quick.is_match(s) && matches!(self.full.is_match(s), Ok(true))
    }

    fn find_iter<'r, 's>(&'r self, s: &'s str) -> impl Iterator<Item = fancy_regex::Match<'s>> + use<'r, 's> {
        let any = self.quick.is_match(s);
        any.then(|| self.full.find_iter(s).map_while(Result::ok))
            .into_iter()
            .flatten()
    }
}

/// A pattern less its lookahead and lookbehind groups (`(?=…)`, `(?!…)`,
/// `(?<=…)`, `(?<!…)`): a pattern that matches wherever the original does.
fn without_lookarounds(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.extend(&chars[i..(i + 2).min(chars.len())]);
            i += 2;
            continue;
        }
        if in_class {
            in_class = c != ']';
            out.push(c);
            i += 1;
            continue;
        }
        let rest: String = chars[i..(i + 4).min(chars.len())].iter().collect();
        if ["(?=", "(?!", "(?<=", "(?<!"].iter().any(|p| rest.starts_with(p)) {
            // Skip to the matching parenthesis.
            let (mut depth, mut class) = (0, false);
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 1,
                    '[' if !class => class = true,
                    ']' if class => class = false,
                    '(' if !class => depth += 1,
                    ')' if !class => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '[' {
            in_class = true;
            // A `]` right after `[` or `[^` is a member, not the end.
            out.push(c);
            i += 1;
            if chars.get(i) == Some(&'^') {
                out.push('^');
                i += 1;
            }
            if chars.get(i) == Some(&']') {
                out.push(']');
                i += 1;
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// spaCy's English tokenizer rules and datatrove's punctuation sets.
pub struct English {
    prefix: Pattern,
    suffix: Pattern,
    infix: Pattern,
    url: Pattern,
    specials: HashMap<String, Vec<String>>,
    /// Special cases that contain an affix, by the first of the tokens they
    /// split into without special cases: found again after splitting, as
    /// spaCy's `_special_matcher` does.
    matched: HashMap<String, Vec<(Vec<String>, String)>>,
    sentence_punct: HashSet<char>,
    punctuation: HashSet<char>,
    pub terminal_punctuation: HashSet<char>,
    pub stop_words: Vec<String>,
}

#[derive(Deserialize)]
struct RulesFile {
    prefix: String,
    suffix: String,
    infix: String,
    url: String,
    specials: HashMap<String, Vec<String>>,
    matched_specials: HashMap<String, Vec<String>>,
    sentence_punct: Vec<String>,
    punctuation: Vec<String>,
    terminal_punctuation: Vec<String>,
    stop_words: Vec<String>,
}

fn chars(strings: Vec<String>) -> HashSet<char> {
    strings.iter().flat_map(|s| s.chars()).collect()
}

impl English {
    /// The rules, parsed once per process.
    pub fn get() -> &'static English {
        static RULES: OnceLock<English> = OnceLock::new();
        RULES.get_or_init(|| {
            let file: RulesFile =
                serde_json::from_str(include_str!("spacy_en_rules.json")).expect("bundled spaCy rules parse");
            let mut matched: HashMap<String, Vec<(Vec<String>, String)>> = HashMap::new();
            for (special, bare) in file.matched_specials {
                if let Some(first) = bare.first() {
                    matched.entry(first.clone()).or_default().push((bare, special));
                }
            }
            English {
                prefix: Pattern::new(&file.prefix),
                suffix: Pattern::new(&file.suffix),
                infix: Pattern::new(&file.infix),
                url: Pattern::new(&file.url),
                specials: file.specials,
                matched,
                sentence_punct: chars(file.sentence_punct),
                punctuation: chars(file.punctuation),
                terminal_punctuation: chars(file.terminal_punctuation),
                stop_words: file.stop_words,
            }
        })
    }

    /// Whether a word has a character outside datatrove's punctuation set.
    pub fn is_not_symbol(&self, word: &str) -> bool {
        word.chars().any(|c| !self.punctuation.contains(&c))
    }

    /// spaCy's tokens, white-space tokens included (a run of white space
    /// other than one plain space after a word is a token of its own).
    pub fn tokens<'a>(&'static self, text: &'a str) -> Vec<&'a str> {
        let mut tokens = Vec::new();
        // Whether a token is followed by one plain space (spaCy's `spacy`).
        let mut spaced = Vec::new();
        let mut start = 0;
        let mut in_space = text.chars().next().is_some_and(is_py_space);
        for (i, c) in text.char_indices() {
            if is_py_space(c) != in_space {
                if start < i {
                    self.chunk(&text[start..i], &mut tokens);
                    spaced.resize(tokens.len(), false);
                }
                // One plain space after a word belongs to it.
                start = if c == ' ' && !in_space {
                    if let Some(last) = spaced.last_mut() {
                        *last = true;
                    }
                    i + 1
                } else {
                    i
                };
                in_space = !in_space;
            }
        }
        if start < text.len() {
            self.chunk(&text[start..], &mut tokens);
            spaced.resize(tokens.len(), false);
        }
        self.apply_matched_specials(tokens, &spaced)
    }

    /// datatrove's words: spaCy's tokens without the white-space ones.
    pub fn words<'a>(&'static self, text: &'a str) -> Vec<&'a str> {
        let mut tokens = self.tokens(text);
        tokens.retain(|t| !t.chars().all(is_py_space));
        tokens
    }

    /// Sentences by spaCy's sentencizer: a sentence starts at the first token
    /// after a sentence-ending mark that is neither such a mark nor
    /// punctuation.
    pub fn sentence_count(&'static self, text: &str) -> usize {
        let tokens = self.tokens(text);
        if tokens.is_empty() {
            return 0;
        }
        let mut sentences = 1;
        let mut seen_period = false;
        for token in tokens {
            let is_end_mark = token.chars().count() == 1 && token.chars().all(|c| self.sentence_punct.contains(&c));
            if seen_period && !is_end_mark && !is_punct(token) {
                sentences += 1;
                seen_period = false;
            } else if is_end_mark {
                seen_period = true;
            }
        }
        sentences
    }

    fn find_prefix(&self, s: &str) -> usize {
        self.prefix.find(s).map_or(0, |m| m.end() - m.start())
    }

    fn find_suffix(&self, s: &str) -> usize {
        self.suffix.find(s).map_or(0, |m| m.end() - m.start())
    }

    /// `Tokenizer._tokenize` of one chunk without white space, through a
    /// per-thread cache of chunks seen before (as spaCy caches them: words
    /// repeat, and splitting one runs several regular expressions).
    fn chunk<'a>(&'static self, chunk: &'a str, tokens: &mut Vec<&'a str>) {
        thread_local! {
            static CACHE: RefCell<FxHashMap<Box<str>, Box<[Piece]>>> = RefCell::new(FxHashMap::default());
        }
        CACHE.with_borrow_mut(|cache| {
            if !cache.contains_key(chunk) {
                if cache.len() >= CACHE_CHUNKS {
                    cache.clear();
                }
                let mut pieces = Vec::new();
                self.split_chunk(chunk, &mut pieces);
                cache.insert(chunk.into(), pieces.into());
            }
            tokens.extend(cache[chunk].iter().map(|piece| match *piece {
                Piece::Span(start, end) => &chunk[start as usize..end as usize],
                Piece::Special(text) => text,
            }));
        });
    }

    /// The pieces of one chunk, computed.
    fn split_chunk(&'static self, chunk: &str, pieces: &mut Vec<Piece>) {
        let span = |sub: &str| {
            let start = sub.as_ptr() as usize - chunk.as_ptr() as usize;
            Piece::Span(start as u32, (start + sub.len()) as u32)
        };
        let special = |tokens: &'static [String]| tokens.iter().map(|t| Piece::Special(t.as_str()));
        if let Some(tokens) = self.specials.get(chunk) {
            pieces.extend(special(tokens));
            return;
        }
        if chunk.chars().all(is_py_space) {
            pieces.push(span(chunk));
            return;
        }
        // `_split_affixes`
        let mut prefixes = Vec::new();
        let mut suffixes = Vec::new();
        let mut s = chunk;
        let mut last_len = usize::MAX;
        while !s.is_empty() && s.len() != last_len {
            if self.specials.contains_key(s) {
                break;
            }
            last_len = s.len();
            let pre_len = self.find_prefix(s);
            if pre_len != 0 {
                let minus_pre = &s[pre_len..];
                if !minus_pre.is_empty() && self.specials.contains_key(minus_pre) {
                    prefixes.push(&s[..pre_len]);
                    s = minus_pre;
                    break;
                }
            }
            let suf_len = self.find_suffix(&s[pre_len..]);
            if suf_len != 0 {
                let minus_suf = &s[..s.len() - suf_len];
                if !minus_suf.is_empty() && self.specials.contains_key(minus_suf) {
                    suffixes.push(&s[s.len() - suf_len..]);
                    s = minus_suf;
                    break;
                }
            }
            if pre_len != 0 && suf_len != 0 && pre_len + suf_len <= s.len() {
                prefixes.push(&s[..pre_len]);
                suffixes.push(&s[s.len() - suf_len..]);
                s = &s[pre_len..s.len() - suf_len];
            } else if pre_len != 0 {
                prefixes.push(&s[..pre_len]);
                s = &s[pre_len..];
            } else if suf_len != 0 {
                suffixes.push(&s[s.len() - suf_len..]);
                s = &s[..s.len() - suf_len];
            }
        }
        // `_attach_tokens`
        pieces.extend(prefixes.into_iter().map(span));
        if !s.is_empty() {
            if let Some(tokens) = self.specials.get(s) {
                pieces.extend(special(tokens));
            } else if self.url.is_match(s) {
                pieces.push(span(s));
            } else {
                let mut start = 0;
                for m in self.infix.find_iter(s) {
                    if m.start() == 0 {
                        continue;
                    }
                    if m.start() != start {
                        pieces.push(span(&s[start..m.start()]));
                    }
                    if m.start() != m.end() {
                        pieces.push(span(m.as_str()));
                    }
                    start = m.end();
                }
                if start < s.len() {
                    pieces.push(span(&s[start..]));
                }
            }
        }
        pieces.extend(suffixes.into_iter().rev().map(span));
    }

    /// `_apply_special_cases`: special cases with affixes, found as the
    /// tokens they split into, become their own tokens. Longer matches win,
    /// then earlier ones; a match overlapping a better one is dropped, and a
    /// match with a space inside (`: (`) is not the special case's text, so
    /// it stays as it is (but still takes its tokens from others).
    fn apply_matched_specials<'a>(&'static self, tokens: Vec<&'a str>, spaced: &[bool]) -> Vec<&'a str> {
        let mut found = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            for (bare, special) in self.matched.get(*token).into_iter().flatten() {
                if tokens.len() - i >= bare.len() && tokens[i..i + bare.len()].iter().zip(bare).all(|(a, b)| a == b) {
                    found.push((i, i + bare.len(), special));
                }
            }
        }
        if found.is_empty() {
            return tokens;
        }
        found.sort_by(|a, b| (b.1 - b.0).cmp(&(a.1 - a.0)).then(a.0.cmp(&b.0)));
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for (start, end, special) in found {
            let joined = !spaced[start..end - 1].iter().any(|&s| s);
            if !seen.contains(&start) && !seen.contains(&(end - 1)) && joined {
                kept.push((start, end, special));
            }
            seen.extend(start..end);
        }
        kept.sort_by_key(|k| k.0);
        let mut out = Vec::with_capacity(tokens.len());
        let mut i = 0;
        for (start, end, special) in kept {
            out.extend_from_slice(&tokens[i..start]);
            out.extend(self.specials[special.as_str()].iter().map(String::as_str));
            i = end;
        }
        out.extend_from_slice(&tokens[i..]);
        out
    }
}

/// Python's `str.isspace` (Rust's `char::is_whitespace` lacks U+001C..U+001F).
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.isalpha` for one character: a letter (general category L).
pub fn is_py_alpha(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    matches!(
        get_general_category(c),
        G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter
    )
}

/// spaCy's `is_punct`: every character is punctuation (general category P).
fn is_punct(token: &str) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    token.chars().all(|c| {
        matches!(
            get_general_category(c),
            G::ConnectorPunctuation
                | G::DashPunctuation
                | G::OpenPunctuation
                | G::ClosePunctuation
                | G::InitialPunctuation
                | G::FinalPunctuation
                | G::OtherPunctuation
        )
    })
}

/// Python's `str.splitlines()`: lines end at `\n`, `\r`, `\r\n`, U+000B,
/// U+000C, U+001C..U+001E, U+0085, U+2028 and U+2029.
pub fn py_splitlines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(
            c,
            '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        ) {
            lines.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Python's `len`: code points.
pub fn py_len(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_spacy() {
        let english = English::get();
        let words = english.words(
            "Hello, world! Don't stop-believing... it's 3.5% at e.g. http://x.com/a?b=1 #tag — well-known U.S. costs $5.",
        );
        // spaCy 3.8's own output for this line.
        let expected = [
            "Hello",
            ",",
            "world",
            "!",
            "Do",
            "n't",
            "stop",
            "-",
            "believing",
            "...",
            "it",
            "'s",
            "3.5",
            "%",
            "at",
            "e.g.",
            "http://x.com/a?b=1",
            "#",
            "tag",
            "—",
            "well",
            "-",
            "known",
            "U.S.",
            "costs",
            "$",
            "5",
            ".",
        ];
        assert_eq!(words, expected);
    }

    #[test]
    fn lookarounds_come_out_whole() {
        assert_eq!(
            without_lookarounds(r"(?<=[0-9])[+\-](?=[0-9-])|x(?!\))y|[(?=]"),
            r"[+\-]|xy|[(?=]"
        );
        assert_eq!(without_lookarounds(r"(?<=[a-z(?:'])\.$"), r"\.$");
    }

    #[test]
    fn python_lines_and_spaces() {
        assert_eq!(
            py_splitlines("a\r\nb\rc\n\nd\u{2028}e\n"),
            ["a", "b", "c", "", "d", "e"]
        );
        assert!(is_py_space('\u{1f}') && !'\u{1f}'.is_whitespace());
        assert!(is_py_alpha('é') && !is_py_alpha('\u{301}') && !is_py_alpha('5'));
    }
}
