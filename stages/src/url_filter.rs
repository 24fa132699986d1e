//! `url_filter`: drops documents by their URL, against block lists: the
//! first filter of Llama 3 (domains of adult or harmful content) and of
//! FineWeb (datatrove's `URLFilter` over the UT1 lists).
//!
//! Lists are files (one entry per line, `#` comments) or inline entries.
//! The checks, in order, each with its own rejection reason:
//! 1. `url_blocked_domain`: the host, or any domain above it (`a.b.example.com`
//!    is blocked by `example.com` and by `b.example.com`), is listed;
//! 2. `url_blocked_url`: the URL, without its scheme, `www.` and fragment, is a
//!    listed URL or lies under one (`example.com/forum` blocks
//!    `https://www.example.com/forum/t/1`);
//! 3. `url_banned_word`: a word of the URL (runs of ASCII letters and digits,
//!    lower-cased) is banned;
//! 4. `url_soft_banned_words`: at least `soft_word_threshold` distinct words
//!    of the URL are "soft" banned;
//! 5. `url_banned_subword`: a banned string occurs in the URL lower-cased
//!    with everything but letters and digits removed (`sexshop` in
//!    `sex-shop.example`).
//!
//! Where this is not datatrove's `URLFilter`: datatrove checks the
//! registered domain and the full host only (a listed `b.example.com` does
//! not block `a.b.example.com` there), compares listed URLs with the whole
//! URL as written (scheme included, so UT1's scheme-less `urls` list never
//! matches), and compares URL words case-sensitively to lower-case lists.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{is_url, Decision, Document, DocumentStage, Error, Result, StageStats};

/// Configuration of `url_filter`. Every list is the union of its inline
/// entries and its files' lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlFilterConfig {
    pub domains: Vec<String>,
    pub domain_files: Vec<PathBuf>,
    pub urls: Vec<String>,
    pub url_files: Vec<PathBuf>,
    pub banned_words: Vec<String>,
    pub banned_word_files: Vec<PathBuf>,
    pub soft_banned_words: Vec<String>,
    pub soft_banned_word_files: Vec<PathBuf>,
    /// Distinct soft-banned words a URL needs to be dropped (datatrove: 2).
    pub soft_word_threshold: Option<usize>,
    pub banned_subwords: Vec<String>,
    pub banned_subword_files: Vec<PathBuf>,
    /// A document without a URL: `keep` (counted) or `reject` (`url_missing`).
    pub missing: crate::filter::Missing,
}

impl Default for UrlFilterConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            domain_files: Vec::new(),
            urls: Vec::new(),
            url_files: Vec::new(),
            banned_words: Vec::new(),
            banned_word_files: Vec::new(),
            soft_banned_words: Vec::new(),
            soft_banned_word_files: Vec::new(),
            soft_word_threshold: None,
            banned_subwords: Vec::new(),
            banned_subword_files: Vec::new(),
            // A page without a URL cannot be judged by it: kept and counted.
            missing: crate::filter::Missing::Keep,
        }
    }
}

pub struct UrlFilter {
    domains: HashSet<String>,
    urls: HashSet<String>,
    banned_words: HashSet<String>,
    soft_banned_words: HashSet<String>,
    soft_word_threshold: usize,
    subwords: Option<(AhoCorasick, Vec<String>)>,
    missing: crate::filter::Missing,
}

/// The lines of a list file, without comments and blank lines; errors name
/// the stage `kind` that reads it.
pub(crate) fn read_list(path: &PathBuf, kind: &'static str) -> Result<Vec<String>> {
    let text = std::fs::read(path).map_err(|e| Error::Config {
        kind,
        message: format!("cannot read list {}: {e}", path.display()),
    })?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// A listed or crawled host, as compared: lower case, no trailing dot, IDNA
/// to ASCII (`bücher.de` and `xn--bcher-kva.de` are one domain).
fn normalize_host(host: &str) -> String {
    let host = host
        .trim()
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.');
    match url::Host::parse(host) {
        Ok(url::Host::Domain(d)) => d,
        Ok(other) => other.to_string(),
        Err(_) => host.to_lowercase(),
    }
}

/// A URL as compared with the URL list: no scheme, no `www.`, no fragment,
/// host normalized, and no trailing `/` (`example.com/forum`).
fn url_key(url: &str) -> String {
    let (host, rest) = match url::Url::parse(url) {
        Ok(parsed) if parsed.host_str().is_some() => {
            let host = parsed.host_str().unwrap_or_default().to_string();
            let mut rest = parsed.path().to_string();
            if let Some(q) = parsed.query() {
                rest.push('?');
                rest.push_str(q);
            }
            (host, rest)
        }
        // A listed entry is usually written without a scheme.
        _ => {
            let bare = url.split_once("://").map_or(url, |(_, rest)| rest);
            let bare = bare.split('#').next().unwrap_or_default();
            let cut = bare.find(['/', '?']).unwrap_or(bare.len());
            (normalize_host(&bare[..cut]), bare[cut..].to_string())
        }
    };
    let host = host.strip_prefix("www.").unwrap_or(&host);
    format!("{host}{}", rest.trim_end_matches('/'))
}

/// The URL's words: runs of ASCII letters and digits, lower-cased, in
/// sorted order (the word a rejection names never depends on hashing).
fn url_words(url: &str) -> BTreeSet<String> {
    url.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A listed word or subword as compared: letters and digits, lower-cased.
fn normalize_word(word: &str) -> String {
    word.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl UrlFilterConfig {
    /// Checks the config without reading its lists (files named by URL are
    /// copied only when the stage is built).
    pub fn validate(&self) -> Result<()> {
        let lists = [
            (self.domains.len(), self.domain_files.len()),
            (self.urls.len(), self.url_files.len()),
            (self.banned_words.len(), self.banned_word_files.len()),
            (self.soft_banned_words.len(), self.soft_banned_word_files.len()),
            (self.banned_subwords.len(), self.banned_subword_files.len()),
        ];
        if lists.iter().all(|(inline, files)| inline + files == 0) {
            return Err(Error::Config {
                kind: "url_filter",
                message:
                    "no list: set domains, urls, banned_words, soft_banned_words or banned_subwords (or their *_files)"
                        .into(),
            });
        }
        if self.soft_word_threshold == Some(0) {
            return Err(Error::Config {
                kind: "url_filter",
                message: "soft_word_threshold must be at least 1".into(),
            });
        }
        for path in self.files() {
            if !is_url(path) && !path.is_file() {
                return Err(Error::Config {
                    kind: "url_filter",
                    message: format!("list {} is not a file", path.display()),
                });
            }
        }
        Ok(())
    }

    /// Every list file the config names.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.domain_files
            .iter()
            .chain(&self.url_files)
            .chain(&self.banned_word_files)
            .chain(&self.soft_banned_word_files)
            .chain(&self.banned_subword_files)
    }

    /// Every list file, mutably (`remote_files` points URLs at local copies).
    pub fn files_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        self.domain_files
            .iter_mut()
            .chain(&mut self.url_files)
            .chain(&mut self.banned_word_files)
            .chain(&mut self.soft_banned_word_files)
            .chain(&mut self.banned_subword_files)
    }
}

impl UrlFilter {
    pub fn new(config: UrlFilterConfig) -> Result<Self> {
        config.validate()?;
        let list = |inline: &[String], files: &[PathBuf]| -> Result<Vec<String>> {
            let mut all = inline.to_vec();
            for file in files {
                all.extend(read_list(file, "url_filter")?);
            }
            Ok(all)
        };
        let domains = list(&config.domains, &config.domain_files)?
            .iter()
            .map(|d| normalize_host(d))
            .collect();
        let urls = list(&config.urls, &config.url_files)?
            .iter()
            .map(|u| url_key(u))
            .collect();
        let words = |inline, files| -> Result<HashSet<String>> {
            Ok(list(inline, files)?
                .iter()
                .map(|w| normalize_word(w))
                .filter(|w| !w.is_empty())
                .collect())
        };
        let banned_words = words(&config.banned_words, &config.banned_word_files)?;
        let soft_banned_words = words(&config.soft_banned_words, &config.soft_banned_word_files)?;
        // Sorted, so which of two overlapping subwords is named never depends
        // on hashing.
        let mut subword_list: Vec<String> = words(&config.banned_subwords, &config.banned_subword_files)?
            .into_iter()
            .collect();
        subword_list.sort();
        let subwords = match subword_list.is_empty() {
            true => None,
            false => Some((
                AhoCorasick::new(&subword_list).map_err(|e| Error::Config {
                    kind: "url_filter",
                    message: format!("banned_subwords: {e}"),
                })?,
                subword_list,
            )),
        };
        Ok(Self {
            domains,
            urls,
            banned_words,
            soft_banned_words,
            soft_word_threshold: config.soft_word_threshold.unwrap_or(2),
            subwords,
            missing: config.missing,
        })
    }

    /// The listed domain that blocks this host: itself or one above it.
    fn blocked_domain(&self, host: &str) -> Option<&str> {
        let mut rest = host;
        loop {
            if let Some(d) = self.domains.get(rest) {
                return Some(d);
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// The listed URL this URL is, or lies under.
    fn blocked_url(&self, url: &str) -> Option<&str> {
        if self.urls.is_empty() {
            return None;
        }
        let key = url_key(url);
        let mut end = key.len();
        loop {
            if let Some(u) = self.urls.get(&key[..end]) {
                return Some(u);
            }
            end = key[..end].rfind(['/', '?'])?;
        }
    }

    fn judge(&self, url: &str) -> Option<(&'static str, serde_json::Value)> {
        let host = match url::Url::parse(url) {
            Ok(parsed) => parsed.host_str().map(normalize_host),
            Err(_) => None,
        }
        .unwrap_or_else(|| {
            let bare = url.split_once("://").map_or(url, |(_, rest)| rest);
            normalize_host(&bare[..bare.find(['/', '?', '#', ':']).unwrap_or(bare.len())])
        });
        if let Some(domain) = self.blocked_domain(&host) {
            return Some(("url_blocked_domain", json!({ "domain": domain })));
        }
        if let Some(listed) = self.blocked_url(url) {
            return Some(("url_blocked_url", json!({ "url": listed })));
        }
        if !self.banned_words.is_empty() || !self.soft_banned_words.is_empty() {
            let words = url_words(url);
            if let Some(word) = words.iter().find(|w| self.banned_words.contains(*w)) {
                return Some(("url_banned_word", json!({ "word": word })));
            }
            let soft: Vec<&String> = words.iter().filter(|w| self.soft_banned_words.contains(*w)).collect();
            if !soft.is_empty() && soft.len() >= self.soft_word_threshold {
                return Some(("url_soft_banned_words", json!({ "words": soft })));
            }
        }
        if let Some((automaton, list)) = &self.subwords {
            if let Some(m) = automaton.find(normalize_word(url).as_str()) {
                return Some(("url_banned_subword", json!({ "subword": list[m.pattern().as_usize()] })));
            }
        }
        None
    }
}

impl DocumentStage for UrlFilter {
    fn process(&self, doc: &mut Document, stats: &mut StageStats) -> Decision {
        let Some(url) = doc.url.as_deref().filter(|u| !u.is_empty()) else {
            stats.add("url_filter", "documents_without_url", 1);
            return match self.missing {
                crate::filter::Missing::Keep => Decision::Keep,
                crate::filter::Missing::Reject => Decision::Drop {
                    reason: "url_missing",
                    detail: serde_json::Value::Null,
                },
            };
        };
        match self.judge(url) {
            None => Decision::Keep,
            Some((reason, detail)) => Decision::Drop { reason, detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(config: serde_json::Value) -> UrlFilter {
        UrlFilter::new(serde_json::from_value(config).unwrap()).unwrap()
    }

    fn reason(stage: &UrlFilter, url: &str) -> &'static str {
        let mut doc = Document::new("1", "text");
        doc.url = Some(url.to_string());
        match stage.process(&mut doc, &mut StageStats::default()) {
            Decision::Keep => "kept",
            Decision::Drop { reason, .. } => reason,
        }
    }

    #[test]
    fn domains_block_their_subdomains_only() {
        let s = stage(json!({"domains": ["example.com", "*.casino.example.org", "BÜCHER.de."]}));
        for (url, expected) in [
            ("https://example.com/a", "url_blocked_domain"),
            ("http://a.b.EXAMPLE.com:8080/x", "url_blocked_domain"),
            ("https://notexample.com/", "kept"),
            ("https://example.com.evil.net/", "kept"),
            ("https://casino.example.org/", "url_blocked_domain"),
            ("https://example.org/", "kept"),
            ("https://xn--bcher-kva.de/buch", "url_blocked_domain"),
            ("https://shop.bücher.de/", "url_blocked_domain"),
        ] {
            assert_eq!(reason(&s, url), expected, "{url}");
        }
    }

    #[test]
    fn urls_block_what_lies_under_them() {
        let s = stage(json!({"urls": ["example.com/forum", "http://www.site.net/page?id=3"]}));
        for (url, expected) in [
            ("https://www.example.com/forum", "url_blocked_url"),
            ("https://example.com/forum/thread/1#top", "url_blocked_url"),
            ("https://example.com/forums", "kept"),
            ("https://example.com/", "kept"),
            ("https://site.net/page?id=3", "url_blocked_url"),
            ("https://site.net/page?id=4", "kept"),
        ] {
            assert_eq!(reason(&s, url), expected, "{url}");
        }
    }

    #[test]
    fn words_soft_words_and_subwords() {
        let s = stage(json!({
            "banned_words": ["xxx"],
            "soft_banned_words": ["hot", "girls", "cams"],
            "banned_subwords": ["sexshop"]
        }));
        for (url, expected) in [
            ("https://a.net/XXX-videos", "url_banned_word"),
            ("https://a.net/xxxl-shirts", "kept"),
            ("https://hot-girls.example/", "url_soft_banned_words"),
            ("https://hot-sauce.example/", "kept"),
            ("https://sex-shop.example/", "url_banned_subword"),
            // Substrings cannot tell words apart (datatrove's rule too).
            ("https://essex-shopping.example/", "url_banned_subword"),
        ] {
            assert_eq!(reason(&s, url), expected, "{url}");
        }
    }

    /// Of several listed words in one URL, the rejection names the same one
    /// on every run (the first in sorted order), never one hashing picked.
    #[test]
    fn the_word_named_does_not_depend_on_hashing() {
        let s = stage(json!({"banned_words": ["zeta", "alpha", "mid"]}));
        for _ in 0..20 {
            let mut doc = Document::new("1", "text");
            doc.url = Some("https://zeta.example/mid/alpha".into());
            match s.process(&mut doc, &mut StageStats::default()) {
                Decision::Drop { detail, .. } => assert_eq!(detail, json!({"word": "alpha"})),
                Decision::Keep => panic!("kept"),
            }
        }
    }

    #[test]
    fn documents_without_url_are_kept_or_rejected_as_configured() {
        let keep = stage(json!({"domains": ["a.com"]}));
        let mut doc = Document::new("1", "text");
        let mut stats = StageStats::default();
        assert_eq!(keep.process(&mut doc, &mut stats), Decision::Keep);
        assert_eq!(stats.0["url_filter"]["documents_without_url"], 1);
        let reject = stage(json!({"domains": ["a.com"], "missing": "reject"}));
        assert!(matches!(
            reject.process(&mut doc, &mut stats),
            Decision::Drop {
                reason: "url_missing",
                ..
            }
        ));
    }

    #[test]
    fn lists_come_from_files_and_bad_configs_are_refused() {
        let dir = std::env::temp_dir().join(format!("thresher-url-filter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("domains");
        std::fs::write(&file, "# adult\nexample.com\n\n  blocked.org  \n").unwrap();
        let s = stage(json!({"domain_files": [file]}));
        assert_eq!(reason(&s, "https://blocked.org/"), "url_blocked_domain");
        assert_eq!(reason(&s, "https://adult/"), "kept", "comments are not entries");
        for (config, says) in [
            (json!({}), "no list"),
            (json!({"domain_files": [dir.join("missing")]}), "is not a file"),
            (
                json!({"soft_banned_words": ["a"], "soft_word_threshold": 0}),
                "at least 1",
            ),
        ] {
            let config: UrlFilterConfig = serde_json::from_value(config).unwrap();
            let err = UrlFilter::new(config).err().expect("refused").to_string();
            assert!(err.contains(says), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
