//! `url_dedup`: keeps one document per normalized URL, globally.
//!
//! Crawls fetch the same page many times (re-crawls, mirrors, tracking
//! parameters); Llama 3 kept one document per URL. URLs are normalized with
//! the WHATWG parser (the `url` crate: scheme and host lower-cased, IDNA
//! hosts, default ports removed, `.`/`..` segments and percent-encoding
//! resolved), the fragment is dropped, and the query is handled as
//! configured. The kept document is the first in input order, or the longest
//! text (ties: the first); every other one goes to the rejected sidecar as
//! `duplicate_url` with the kept document's id. Documents without a URL are
//! kept and counted; a URL that does not parse is compared as written.
//! Steps: `scan` → `resolve` (per partition) → `apply`, like `exact_dedup`.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::{keep_one, Decision, Document, Error, GlobalStage, Position, Result, ScanRecord, StageStats, Verdict};

/// What to do with a URL's query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryHandling {
    /// Compare queries as written, minus `ignore_params`.
    Keep,
    /// Compare queries with their parameters sorted, minus `ignore_params`.
    Sort,
    /// Ignore the whole query.
    Drop,
}

/// Which document of a URL is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepRule {
    /// The first in input order.
    First,
    /// The longest text (in bytes); ties go to the first.
    Longest,
}

/// Configuration of `url_dedup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlDedupConfig {
    pub query: QueryHandling,
    /// Query parameters that never tell pages apart; a trailing `*` matches
    /// a prefix (`utm_*`).
    pub ignore_params: Vec<String>,
    pub keep: KeepRule,
    /// `http://` and `https://` of the same address are one URL.
    pub ignore_scheme: bool,
    /// `www.example.com` and `example.com` are one host.
    pub ignore_www: bool,
    /// `/a/` and `/a` are one path.
    pub ignore_trailing_slash: bool,
    /// Partitions of the `resolve` step (~50 bytes per document in memory).
    pub partitions: u32,
}

impl Default for UrlDedupConfig {
    fn default() -> Self {
        Self {
            query: QueryHandling::Sort,
            ignore_params: ["utm_*", "fbclid", "gclid", "mc_cid", "mc_eid"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            keep: KeepRule::Longest,
            ignore_scheme: false,
            ignore_www: false,
            ignore_trailing_slash: false,
            partitions: 16,
        }
    }
}

pub struct UrlDedup {
    config: UrlDedupConfig,
}

impl UrlDedup {
    pub fn new(config: UrlDedupConfig) -> Result<Self> {
        if config.partitions == 0 {
            return Err(Error::Config {
                kind: "url_dedup",
                message: "partitions must be at least 1".into(),
            });
        }
        if let Some(bad) = config
            .ignore_params
            .iter()
            .find(|p| p.is_empty() || p[..p.len() - 1].contains('*'))
        {
            return Err(Error::Config {
                kind: "url_dedup",
                message: format!("ignore_params entry {bad:?}: a name, or a prefix ending in one `*`"),
            });
        }
        Ok(Self { config })
    }

    fn ignored(&self, name: &str) -> bool {
        self.config.ignore_params.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        })
    }

    /// The form two URLs must share to count as one; `None` for a URL that
    /// does not parse (then it is compared as written).
    pub fn normalize(&self, raw: &str) -> Option<String> {
        let mut url = url::Url::parse(raw.trim()).ok()?;
        url.set_fragment(None);
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !self.ignored(k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        match (self.config.query, pairs.is_empty()) {
            (QueryHandling::Drop, _) | (_, true) => url.set_query(None),
            (handling, false) => {
                let mut pairs = pairs;
                if handling == QueryHandling::Sort {
                    pairs.sort();
                }
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
        }
        let mut host = url.host_str().unwrap_or("").to_string();
        if self.config.ignore_www {
            if let Some(rest) = host.strip_prefix("www.") {
                host = rest.to_string();
            }
        }
        let scheme = match (self.config.ignore_scheme, url.scheme()) {
            (true, "http" | "https") => "http(s)",
            (_, scheme) => scheme,
        };
        let mut path = url.path().to_string();
        if self.config.ignore_trailing_slash && path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!("{scheme}://{host}{port}{path}{query}"))
    }
}

/// The document's URL, unless it has none (or only whitespace).
fn url_of(doc: &Document) -> Option<&str> {
    doc.url.as_deref().filter(|u| !u.trim().is_empty())
}

impl GlobalStage for UrlDedup {
    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    fn scan(&self, doc: &Document, position: Position, emit: &mut dyn FnMut(ScanRecord)) {
        let Some(raw) = url_of(doc) else {
            return;
        };
        let key = match self.normalize(raw) {
            Some(normal) => xxh3_128(normal.as_bytes()),
            // Kept apart from every parsed URL by a prefix no URL has.
            None => xxh3_128(format!("\0raw:{}", raw.trim()).as_bytes()),
        };
        let rank = match self.config.keep {
            KeepRule::First => 0,
            KeepRule::Longest => u64::MAX - doc.text.len() as u64,
        };
        emit(keep_one::scan_record(key, rank, doc, position))
    }

    fn resolve(&self, _partition: u32, records: Vec<Vec<u8>>) -> Result<Vec<Verdict>> {
        keep_one::resolve(records)
    }

    fn apply(&self, doc: &mut Document, verdicts: &[Vec<u8>], stats: &mut StageStats) -> Decision {
        if url_of(doc).is_none() {
            stats.add("url_dedup", "documents_without_url", 1);
        }
        keep_one::decision(verdicts, "duplicate_url")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage(config: UrlDedupConfig) -> UrlDedup {
        UrlDedup::new(config).unwrap()
    }

    #[test]
    fn normalization() {
        let s = stage(UrlDedupConfig::default());
        let n = |u: &str| s.normalize(u).unwrap();
        assert_eq!(n("HTTP://Example.COM:80/a/./b/../c#frag"), "http://example.com/a/c");
        assert_eq!(n("https://example.com:443/"), "https://example.com/");
        assert_eq!(n("https://example.com:8443/"), "https://example.com:8443/");
        assert_eq!(
            n("https://example.com/p?b=2&a=1&utm_source=x&fbclid=y"),
            "https://example.com/p?a=1&b=2"
        );
        assert_eq!(n("https://example.com/p?utm_medium=x"), "https://example.com/p");
        assert_eq!(n("https://bücher.example/ä"), "https://xn--bcher-kva.example/%C3%A4");
        assert_ne!(n("http://example.com/"), n("https://example.com/"));
        assert_ne!(n("https://www.example.com/"), n("https://example.com/"));
        assert!(s.normalize("not a url").is_none());

        let loose = stage(UrlDedupConfig {
            query: QueryHandling::Drop,
            ignore_scheme: true,
            ignore_www: true,
            ignore_trailing_slash: true,
            ..Default::default()
        });
        let l = |u: &str| loose.normalize(u).unwrap();
        assert_eq!(l("http://www.example.com/a/?x=1"), l("https://example.com/a"));
        let keep_order = stage(UrlDedupConfig {
            query: QueryHandling::Keep,
            ..Default::default()
        });
        assert_ne!(
            keep_order.normalize("https://e.com/?a=1&b=2"),
            keep_order.normalize("https://e.com/?b=2&a=1")
        );
    }

    fn doc(id: &str, url: Option<&str>, text: &str) -> Document {
        let mut d = Document::new(id.to_string(), text);
        d.url = url.map(str::to_string);
        d
    }

    #[test]
    fn keeps_the_longest_or_the_first_deterministically() {
        let shards = || {
            vec![
                vec![
                    doc("a", Some("https://e.com/x?utm_source=1"), "short"),
                    doc("b", None, "no url"),
                    doc("c", Some("https://e.com/y"), "same length"),
                ],
                vec![
                    doc("d", Some("https://E.com/x#top"), "a much longer text"),
                    doc("e", Some("https://e.com/y"), "same length"),
                    doc("f", Some("%%%"), "unparsable"),
                    doc("g", Some("%%%"), "unparsable, again"),
                ],
            ]
        };
        let dropped = |id: &str| Decision::Drop {
            reason: "duplicate_url",
            detail: json!({ "kept_id": id }),
        };
        let longest = crate::testing::run(&stage(UrlDedupConfig::default()), shards());
        assert_eq!(longest[0], [dropped("d"), Decision::Keep, Decision::Keep]);
        assert_eq!(longest[1], [Decision::Keep, dropped("c"), dropped("g"), Decision::Keep]);
        let first = crate::testing::run(
            &stage(UrlDedupConfig {
                keep: KeepRule::First,
                ..Default::default()
            }),
            shards(),
        );
        assert_eq!(first[0], [Decision::Keep, Decision::Keep, Decision::Keep]);
        assert_eq!(first[1], [dropped("a"), dropped("c"), Decision::Keep, dropped("f")]);
    }

    #[test]
    fn bad_config_is_refused() {
        assert!(UrlDedup::new(UrlDedupConfig {
            ignore_params: vec!["a*b".into()],
            ..Default::default()
        })
        .is_err());
    }
}
