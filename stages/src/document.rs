//! The document every stage reads and writes: Dolma/datatrove-compatible JSON.
//!
//! `{"id", "text", "source"?, "url"?, "metadata": {...}, ...}`. Top-level fields
//! thresher does not know (Dolma's `added`, `created`, …) are kept in
//! [`Document::extra`] and written back unchanged, so a pipeline never loses
//! what its input carried.
//!
//! (De)serialization is written by hand rather than derived with
//! `#[serde(flatten)]`: flatten buffers every field through an intermediate
//! tree, which costs a copy of every text on the hottest path of the pipeline.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    /// Unique within its input shard. Readers give documents without one a
    /// stable id: `<input key>#<record index>`.
    pub id: String,
    pub text: String,
    pub source: Option<String>,
    /// From `url`, or from `metadata.url` when the top level has none.
    pub url: Option<String>,
    /// Tags added by stages live here (`lang`, `lang_score`, …).
    pub metadata: Map<String, Value>,
    /// Every other top-level field, written back as read.
    pub extra: Map<String, Value>,
}

impl Document {
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            text: text.into(),
            ..Default::default()
        }
    }

    /// Parses one JSON object. Fills `url` from `metadata.url` when missing.
    pub fn from_json(line: &[u8]) -> serde_json::Result<Self> {
        Self::from_json_with(line, &FieldNames::default())
    }

    /// [`Document::from_json`] for inputs whose text or id field has another
    /// name (RedPajama's `raw_content`, The Stack's `content`).
    pub fn from_json_with(line: &[u8], names: &FieldNames) -> serde_json::Result<Self> {
        // One SIMD pass validates the whole line; serde_json then parses it as
        // `str`, skipping its own validation of every string.
        let text = match simdutf8::basic::from_utf8(line) {
            Ok(text) => text,
            Err(_) => {
                let at = std::str::from_utf8(line)
                    .map_err(|e| e.valid_up_to())
                    .err()
                    .unwrap_or(0);
                return Err(de::Error::custom(format!("invalid UTF-8 at byte {at} of the line")));
            }
        };
        let mut doc = names.deserialize(&mut serde_json::Deserializer::from_str(text))?;
        if doc.url.is_none() {
            if let Some(Value::String(url)) = doc.metadata.get("url") {
                doc.url = Some(url.clone());
            }
        }
        Ok(doc)
    }

    /// Appends the document as one JSON line (with the trailing newline).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("serializing to a Vec cannot fail");
        out.push(b'\n');
    }
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("text", &self.text)?;
        if let Some(source) = &self.source {
            map.serialize_entry("source", source)?;
        }
        if let Some(url) = &self.url {
            map.serialize_entry("url", url)?;
        }
        map.serialize_entry("metadata", &self.metadata)?;
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A map key borrowed from the input where it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// `id` may be a string or a number in the wild; numbers become their decimal text.
struct Id(Option<String>);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Id(Some(s))),
            Value::Number(n) => Ok(Id(Some(n.to_string()))),
            Value::Null => Ok(Id(None)),
            other => Err(de::Error::custom(format!(
                "field `id` must be a string or a number, found {}",
                json_type_name(&other)
            ))),
        }
    }
}

/// A string field that tolerates `null` (as absent) and names what it found otherwise.
fn optional_string<'de, A: MapAccess<'de>>(map: &mut A, field: &str) -> Result<Option<String>, A::Error> {
    match map.next_value::<Value>()? {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        other => Err(de::Error::custom(format!(
            "field `{field}` must be a string, found {}",
            json_type_name(&other)
        ))),
    }
}

pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `text` field: only a JSON string is accepted, and the error names what came instead.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("field `text` to be a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
        }
        deserializer.deserialize_string(TextVisitor)
    }
}

/// The input fields that hold a document's text and id (`text` and `id`
/// unless the input says otherwise). A field named `text` or `id` that is
/// not the configured one is kept as `text_original` / `id_original`, so
/// that the document written never has two fields of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldNames {
    pub text: String,
    pub id: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        Self {
            text: "text".into(),
            id: "id".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FieldNames::default().deserialize(deserializer)
    }
}

impl<'de> de::DeserializeSeed<'de> for &FieldNames {
    type Value = Document;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Document, D::Error> {
        struct DocumentVisitor<'a>(&'a FieldNames);
        impl<'de> Visitor<'de> for DocumentVisitor<'_> {
            type Value = Document;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a JSON object with a string field `{}`", self.0.text)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
                let names = self.0;
                let mut doc = Document::default();
                let mut text = None;
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    let field = if key == names.text.as_str() {
                        "text"
                    } else if key == names.id.as_str() {
                        "id"
                    } else {
                        match key.as_ref() {
                            "text" | "id" => {
                                let value = map.next_value::<Value>()?;
                                doc.extra.insert(format!("{key}_original"), value);
                                continue;
                            }
                            other => other,
                        }
                    };
                    match field {
                        "id" => doc.id = map.next_value::<Id>()?.0.unwrap_or_default(),
                        "text" => text = Some(map.next_value::<Text>()?.0),
                        "source" => doc.source = optional_string(&mut map, "source")?,
                        "url" => doc.url = optional_string(&mut map, "url")?,
                        "metadata" => match map.next_value::<Value>()? {
                            Value::Object(m) => doc.metadata = m,
                            Value::Null => {}
                            other => {
                                return Err(de::Error::custom(format!(
                                    "field `metadata` must be an object, found {}",
                                    json_type_name(&other)
                                )))
                            }
                        },
                        _ => {
                            let value = map.next_value::<Value>()?;
                            doc.extra.insert(key.into_owned(), value);
                        }
                    }
                }
                doc.text = text.ok_or_else(|| de::Error::custom(format!("missing field `{}`", names.text)))?;
                Ok(doc)
            }
        }
        deserializer.deserialize_map(DocumentVisitor(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_unknown_fields_and_metadata_url() {
        let line = br#"{"added":"2023","id":7,"metadata":{"url":"http://a.b/","x":[1,2]},"text":"hi \"there\"\n"}"#;
        let doc = Document::from_json(line).unwrap();
        assert_eq!(doc.id, "7");
        assert_eq!(doc.url.as_deref(), Some("http://a.b/"));
        assert_eq!(doc.text, "hi \"there\"\n");
        let mut out = Vec::new();
        doc.write_json_line(&mut out);
        let again = Document::from_json(&out).unwrap();
        assert_eq!(again, doc);
        assert_eq!(again.extra["added"], "2023");
    }

    #[test]
    fn text_and_id_can_come_from_other_fields() {
        let names = FieldNames {
            text: "raw_content".into(),
            id: "doc_id".into(),
        };
        let line = br#"{"doc_id":"d1","raw_content":"body","text":"a title","id":3,"meta":"{}"}"#;
        let doc = Document::from_json_with(line, &names).unwrap();
        assert_eq!((doc.id.as_str(), doc.text.as_str()), ("d1", "body"));
        assert_eq!(doc.extra["text_original"], "a title");
        assert_eq!(doc.extra["id_original"], 3);
        assert_eq!(doc.extra["meta"], "{}");
        // Written back with one `text` and one `id`: thresher's own shards.
        let mut out = Vec::new();
        doc.write_json_line(&mut out);
        assert_eq!(Document::from_json(&out).unwrap(), doc);
        let err = Document::from_json_with(br#"{"text":"x"}"#, &names)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `raw_content`"), "{err}");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = Document::from_json(br#"{"id":"a"}"#).unwrap_err().to_string();
        assert!(err.contains("missing field `text`"), "{err}");
        let err = Document::from_json(br#"{"id":"a","text":5}"#).unwrap_err().to_string();
        assert!(err.contains("text"), "{err}");
        let err = Document::from_json(br#"{"id":"a","text":"x","metadata":3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metadata"), "{err}");
        let err = Document::from_json(b"{\"text\":\"\xff\"}").unwrap_err().to_string();
        assert!(err.contains("invalid UTF-8 at byte 9"), "{err}");
        assert!(Document::from_json(b"[1]").is_err());
    }
}
