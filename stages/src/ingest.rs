//! `ingest`: reads any supported input into thresher shards, unchanged.
//!
//! It judges nothing; what it does is the runner's shared work on the way in:
//! every format becomes `jsonl.zst` shards, documents get stable unique ids,
//! unreadable records go to quarantine and empty texts to the rejected
//! sidecar. Put it first when later stages should start from clean shards, or
//! use it alone to convert a corpus.

use serde::{Deserialize, Serialize};

use crate::{Decision, Document, DocumentStage, StageStats};

/// Configuration of `ingest` (it has no options).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {}

pub struct Ingest;

impl DocumentStage for Ingest {
    fn process(&self, doc: &mut Document, stats: &mut StageStats) -> Decision {
        if let Some(source) = &doc.source {
            stats.add("documents_by_source", source, 1);
        }
        Decision::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_and_counts_sources() {
        let mut stats = StageStats::default();
        let mut doc = Document::new("1", "text");
        doc.source = Some("cc".into());
        assert_eq!(Ingest.process(&mut doc, &mut stats), Decision::Keep);
        assert_eq!(stats.0["documents_by_source"]["cc"], 1);
    }
}
