//! `filter`: keeps documents by a value another stage tagged, with no model
//! of its own: `field = "quality.score"`, `min = 0.35`.
//!
//! The usual use is choosing a quality threshold after scoring: run
//! `quality` without `min_score`, read its histogram (`thresher report`),
//! then filter here. Changing the threshold reruns only this stage and those
//! after it; the GPU scores stay as they are. The value is judged as it is
//! written in the document (the quality tag's 4 decimals), so the documents
//! themselves always tell which side of a threshold they are on.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{Decision, Document, DocumentStage, Error, Result, StageStats};

/// Configuration of `filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A dotted path into `metadata`: `quality.score`, `lang`, `code.language`.
    pub field: String,
    /// Numbers below are rejected (`field_below_min`).
    #[serde(default)]
    pub min: Option<f64>,
    /// Numbers above are rejected (`field_above_max`).
    #[serde(default)]
    pub max: Option<f64>,
    /// Only these values are kept (`field_value_not_listed`): strings as
    /// they are, other values as JSON text (`true`, `3`).
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// What happens to a document without the field (or with `null`):
    /// `reject` (`field_missing`) or `keep`.
    #[serde(default)]
    pub missing: Missing,
}

/// See [`FilterConfig::missing`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    #[default]
    Reject,
    Keep,
}

pub struct Filter {
    config: FilterConfig,
}

impl Filter {
    pub fn new(config: FilterConfig) -> Result<Self> {
        let invalid = |message: String| Error::Config {
            kind: "filter",
            message,
        };
        if config.field.split('.').any(str::is_empty) {
            return Err(invalid(format!(
                "field '{}' must be a dotted path into metadata such as \"quality.score\"",
                config.field
            )));
        }
        if config.min.is_none() && config.max.is_none() && config.values.is_none() {
            return Err(invalid("set at least one of min, max, values".into()));
        }
        for (name, bound) in [("min", config.min), ("max", config.max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                return Err(invalid(format!("{name} must be a finite number")));
            }
        }
        if let (Some(min), Some(max)) = (config.min, config.max) {
            if min > max {
                return Err(invalid(format!("min ({min}) is above max ({max}): nothing would pass")));
            }
        }
        if (config.min.is_some() || config.max.is_some()) && config.values.is_some() {
            return Err(invalid(
                "min/max judge numbers and values judges names: use two filter stages".into(),
            ));
        }
        Ok(Self { config })
    }
}

/// The value at a dotted path into `metadata` (`quality.score`); `None`
/// when a part is missing. `partition_by` reads its field the same way.
pub fn metadata_value<'a>(metadata: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    let mut parts = field.split('.');
    let first = parts.next().and_then(|p| metadata.get(p));
    parts.fold(first, |v, p| v.and_then(|v| v.get(p)))
}

impl DocumentStage for Filter {
    fn process(&self, doc: &mut Document, _stats: &mut StageStats) -> Decision {
        let config = &self.config;
        let drop = |reason: &'static str, value: &Value| Decision::Drop {
            reason,
            detail: json!({ "field": config.field, "value": value }),
        };
        let Some(value) = metadata_value(&doc.metadata, &config.field).filter(|v| !v.is_null()) else {
            return match config.missing {
                Missing::Keep => Decision::Keep,
                Missing::Reject => drop("field_missing", &Value::Null),
            };
        };
        if let Some(values) = &config.values {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return match values.contains(&text) {
                true => Decision::Keep,
                false => drop("field_value_not_listed", value),
            };
        }
        let Some(number) = value.as_f64() else {
            return drop("field_not_a_number", value);
        };
        if config.min.is_some_and(|min| number < min) {
            return drop("field_below_min", value);
        }
        if config.max.is_some_and(|max| number > max) {
            return drop("field_above_max", value);
        }
        Decision::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(config: Value) -> Result<Filter> {
        Filter::new(serde_json::from_value(config).unwrap())
    }

    fn judge(filter: &Filter, metadata: Value) -> Decision {
        let mut doc = Document::new("1", "text");
        doc.metadata = metadata.as_object().unwrap().clone();
        filter.process(&mut doc, &mut StageStats::default())
    }

    fn reason(decision: Decision) -> &'static str {
        match decision {
            Decision::Keep => "kept",
            Decision::Drop { reason, .. } => reason,
        }
    }

    #[test]
    fn numbers_between_min_and_max_pass() {
        let f = filter(json!({"field": "quality.score", "min": 0.3, "max": 0.9})).unwrap();
        let cases = [
            (json!({"quality": {"score": 0.3}}), "kept"),
            (json!({"quality": {"score": 0.9}}), "kept"),
            (json!({"quality": {"score": 0.2999}}), "field_below_min"),
            (json!({"quality": {"score": 0.9001}}), "field_above_max"),
            (json!({"quality": {"score": "high"}}), "field_not_a_number"),
            (json!({"quality": null}), "field_missing"),
            (json!({"quality": {"score": null}}), "field_missing"),
            (json!({}), "field_missing"),
        ];
        for (metadata, expected) in cases {
            assert_eq!(reason(judge(&f, metadata.clone())), expected, "{metadata}");
        }
        let keep_missing = filter(json!({"field": "quality.score", "min": 0.3, "missing": "keep"})).unwrap();
        assert_eq!(reason(judge(&keep_missing, json!({}))), "kept");
        match judge(&f, json!({"quality": {"score": 0.1}})) {
            Decision::Drop { detail, .. } => assert_eq!(detail, json!({"field": "quality.score", "value": 0.1})),
            Decision::Keep => panic!("0.1 is below 0.3"),
        }
    }

    #[test]
    fn values_keep_listed_names_and_json_text() {
        let f = filter(json!({"field": "code.language", "values": ["Python", "none", "true"]})).unwrap();
        assert_eq!(reason(judge(&f, json!({"code": {"language": "Python"}}))), "kept");
        assert_eq!(
            reason(judge(&f, json!({"code": {"language": "python"}}))),
            "field_value_not_listed"
        );
        assert_eq!(reason(judge(&f, json!({"code": {"language": true}}))), "kept");
        assert_eq!(reason(judge(&f, json!({"code": {}}))), "field_missing");
    }

    #[test]
    fn configs_that_cannot_filter_are_refused() {
        for (config, says) in [
            (json!({"field": "quality.score"}), "at least one"),
            (json!({"field": "quality..score", "min": 1}), "dotted path"),
            (json!({"field": "x", "min": 2, "max": 1}), "nothing would pass"),
            (json!({"field": "x", "min": 1, "values": ["a"]}), "two filter stages"),
        ] {
            let err = filter(config.clone()).err().expect("refused").to_string();
            assert!(err.contains(says), "{config}: {err}");
        }
        assert!(serde_json::from_value::<FilterConfig>(json!({"field": "x", "min": 1, "missing": "drop"})).is_err());
    }
}
