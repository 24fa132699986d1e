//! The one list of stage kinds. Adding a stage adds one variant here.

use serde::{Deserialize, Serialize};

use crate::bad_words::{BadWords, BadWordsConfig};
use crate::code::{Code, CodeConfig};
use crate::exact_dedup::{ExactDedup, ExactDedupConfig};
use crate::filter::{Filter, FilterConfig};
use crate::heuristics::{Heuristics, HeuristicsConfig};
use crate::ingest::{Ingest, IngestConfig};
use crate::langid::{Langid, LangidConfig};
use crate::line_dedup::{LineDedup, LineDedupConfig};
use crate::minhash_dedup::{MinhashDedup, MinhashDedupConfig};
use crate::pack::{Pack, PackConfig};
use crate::quality::{Quality, QualityConfig};
use crate::url_dedup::{UrlDedup, UrlDedupConfig};
use crate::url_filter::{UrlFilter, UrlFilterConfig};
use crate::{Result, Stage};

/// A stage's configuration, selected by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageConfig {
    Ingest(IngestConfig),
    UrlFilter(UrlFilterConfig),
    UrlDedup(UrlDedupConfig),
    ExactDedup(ExactDedupConfig),
    MinhashDedup(MinhashDedupConfig),
    LineDedup(LineDedupConfig),
    Langid(LangidConfig),
    Code(CodeConfig),
    Heuristics(HeuristicsConfig),
    BadWords(BadWordsConfig),
    Quality(QualityConfig),
    Filter(FilterConfig),
    Pack(PackConfig),
}

impl StageConfig {
    /// Every kind, for help texts and error messages.
    pub const KINDS: &'static [&'static str] = &[
        "ingest",
        "url_filter",
        "url_dedup",
        "exact_dedup",
        "minhash_dedup",
        "line_dedup",
        "langid",
        "code",
        "heuristics",
        "bad_words",
        "quality",
        "filter",
        "pack",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            StageConfig::Ingest(_) => "ingest",
            StageConfig::UrlFilter(_) => "url_filter",
            StageConfig::UrlDedup(_) => "url_dedup",
            StageConfig::ExactDedup(_) => "exact_dedup",
            StageConfig::MinhashDedup(_) => "minhash_dedup",
            StageConfig::LineDedup(_) => "line_dedup",
            StageConfig::Langid(_) => "langid",
            StageConfig::Code(_) => "code",
            StageConfig::Heuristics(_) => "heuristics",
            StageConfig::BadWords(_) => "bad_words",
            StageConfig::Quality(_) => "quality",
            StageConfig::Filter(_) => "filter",
            StageConfig::Pack(_) => "pack",
        }
    }

    /// Step names in order, known from the config alone, so that a task or
    /// `thresher submit` can plan a stage without building it (loading a
    /// model or a tokenizer). Document and batch stages have the single step
    /// `apply`; a global stage's steps follow [`crate::GlobalStage::clusters`].
    pub fn steps(&self) -> &'static [&'static str] {
        match self {
            StageConfig::Ingest(_)
            | StageConfig::UrlFilter(_)
            | StageConfig::Langid(_)
            | StageConfig::Code(_)
            | StageConfig::Heuristics(_)
            | StageConfig::BadWords(_)
            | StageConfig::Quality(_)
            | StageConfig::Filter(_) => &["apply"],
            StageConfig::UrlDedup(_) | StageConfig::ExactDedup(_) | StageConfig::LineDedup(_) => {
                &["scan", "resolve", "apply"]
            }
            StageConfig::MinhashDedup(_) => &["scan", "resolve", "cluster", "apply"],
            StageConfig::Pack(_) => &["tokenize", "pack"],
        }
    }

    /// A global stage's resolve partitions (part of its config, never the
    /// task count); `None` for other kinds.
    pub fn partitions(&self) -> Option<u32> {
        match self {
            StageConfig::UrlDedup(c) => Some(c.partitions),
            StageConfig::ExactDedup(c) => Some(c.partitions),
            StageConfig::LineDedup(c) => Some(c.partitions),
            StageConfig::MinhashDedup(c) => Some(c.partitions),
            _ => None,
        }
    }

    /// The word and block list files a stage reads (local or `s3://`), for
    /// copying remote ones before it is built; models and tokenizers aside.
    pub fn list_files_mut(&mut self) -> Vec<&mut std::path::PathBuf> {
        match self {
            StageConfig::UrlFilter(c) => c.files_mut().collect(),
            StageConfig::BadWords(c) => c.files_mut().collect(),
            _ => Vec::new(),
        }
    }

    /// Checks the config without the expensive parts of building (loading a
    /// tokenizer or a model): what `thresher` runs on every config it reads.
    pub fn validate(&self) -> Result<()> {
        match self {
            StageConfig::Pack(c) => c.validate(),
            StageConfig::Quality(c) => c.validate(),
            StageConfig::UrlFilter(c) => c.validate(),
            StageConfig::BadWords(c) => c.validate(),
            other => other.build().map(|_| ()),
        }
    }

    /// Builds the stage; errors name the problem in the config.
    pub fn build(&self) -> Result<Stage> {
        Ok(match self {
            StageConfig::Ingest(_) => Stage::Document(Box::new(Ingest)),
            StageConfig::UrlFilter(c) => Stage::Document(Box::new(UrlFilter::new(c.clone())?)),
            StageConfig::UrlDedup(c) => Stage::Global(Box::new(UrlDedup::new(c.clone())?)),
            StageConfig::ExactDedup(c) => Stage::Global(Box::new(ExactDedup::new(c.clone())?)),
            StageConfig::MinhashDedup(c) => Stage::Global(Box::new(MinhashDedup::new(c.clone())?)),
            StageConfig::LineDedup(c) => Stage::Global(Box::new(LineDedup::new(c.clone())?)),
            StageConfig::Langid(c) => Stage::Document(Box::new(Langid::new(c.clone())?)),
            StageConfig::Code(c) => Stage::Document(Box::new(Code::new(c.clone())?)),
            StageConfig::Heuristics(c) => Stage::Document(Box::new(Heuristics::new(c.clone())?)),
            StageConfig::BadWords(c) => Stage::Document(Box::new(BadWords::new(c.clone())?)),
            StageConfig::Quality(c) => Stage::Batch(Box::new(Quality::new(c.clone())?)),
            StageConfig::Filter(c) => Stage::Document(Box::new(Filter::new(c.clone())?)),
            StageConfig::Pack(c) => Stage::Pack(Box::new(Pack::new(c.clone())?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_with_defaults_and_refuse_unknown_fields() {
        let c: StageConfig = serde_json::from_str(r#"{"kind":"exact_dedup"}"#).unwrap();
        assert_eq!(c, StageConfig::ExactDedup(ExactDedupConfig::default()));
        assert!(serde_json::from_str::<StageConfig>(r#"{"kind":"langid","sample_byte":3}"#).is_err());
        assert!(serde_json::from_str::<StageConfig>(r#"{"kind":"nope"}"#).is_err());
        for kind in StageConfig::KINDS
            .iter()
            .filter(|k| !["pack", "quality", "filter", "heuristics", "url_filter", "bad_words"].contains(*k))
        {
            let c: StageConfig = serde_json::from_str(&format!(r#"{{"kind":"{kind}"}}"#)).unwrap();
            assert_eq!(c.kind(), *kind);
            c.build().unwrap();
        }
    }

    /// `steps` and `partitions` describe a stage without building it: they
    /// must say what the built stage does.
    #[test]
    fn steps_and_partitions_match_the_built_stages() {
        let filter: StageConfig = serde_json::from_str(r#"{"kind":"filter","field":"lang","values":["eng"]}"#).unwrap();
        let heuristics: StageConfig = serde_json::from_str(r#"{"kind":"heuristics","gopher_quality":{}}"#).unwrap();
        let url_filter: StageConfig = serde_json::from_str(r#"{"kind":"url_filter","domains":["a.com"]}"#).unwrap();
        let bad_words: StageConfig = serde_json::from_str(r#"{"kind":"bad_words","words":{"en":["x"]}}"#).unwrap();
        for c in StageConfig::KINDS
            .iter()
            .filter(|k| !["pack", "quality", "filter", "heuristics", "url_filter", "bad_words"].contains(*k))
            .map(|kind| serde_json::from_str::<StageConfig>(&format!(r#"{{"kind":"{kind}"}}"#)).unwrap())
            .chain([filter, heuristics, url_filter, bad_words])
        {
            let kind = c.kind();
            match c.build().unwrap() {
                Stage::Global(g) => {
                    let expected: &[&str] = match g.clusters() {
                        true => &["scan", "resolve", "cluster", "apply"],
                        false => &["scan", "resolve", "apply"],
                    };
                    assert_eq!(c.steps(), expected, "{kind}");
                    assert_eq!(c.partitions(), Some(g.partitions()), "{kind}");
                }
                Stage::Document(_) | Stage::Batch(_) => {
                    assert_eq!(c.steps(), ["apply"], "{kind}");
                    assert_eq!(c.partitions(), None, "{kind}");
                }
                Stage::Pack(_) => unreachable!("pack is filtered out"),
            }
        }
        let pack: StageConfig = serde_json::from_str(r#"{"kind":"pack","tokenizer":"t.model"}"#).unwrap();
        assert_eq!(pack.steps(), ["tokenize", "pack"]);
    }
}
