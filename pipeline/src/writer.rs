//! Writers of output shards and sidecars: zstd-compressed JSON lines,
//! committed atomically through the storage trait.

use std::io::{self, Write};

use base64::Engine;
use serde_json::{json, Value};
use thresher_manifests::ObjectInfo;
use thresher_stages::Document;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::readers::BadRecord;
use crate::storage::{ObjectWriter, Storage};

/// Counts and hashes the bytes that reach storage, for the manifest.
struct HashingWriter {
    inner: Box<dyn ObjectWriter>,
    hasher: Xxh3,
    size: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One `jsonl.zst` object being written. Nothing is visible before
/// [`JsonlZstWriter::commit`].
pub struct JsonlZstWriter {
    key: String,
    url: String,
    encoder: zstd::stream::write::Encoder<'static, HashingWriter>,
    line: Vec<u8>,
}

impl JsonlZstWriter {
    pub fn create(storage: &dyn Storage, key: &str, level: i32) -> Result<Self> {
        let url = storage.url_of(key);
        let inner = storage.create(key)?;
        let hashing = HashingWriter {
            inner,
            hasher: Xxh3::new(),
            size: 0,
        };
        let encoder = zstd::stream::write::Encoder::new(hashing, level)
            .map_err(|e| Error::io("cannot start zstd for", &url, e))?;
        Ok(Self {
            key: key.to_string(),
            url,
            encoder,
            line: Vec::with_capacity(1 << 16),
        })
    }

    fn write_line(&mut self) -> Result<()> {
        self.encoder
            .write_all(&self.line)
            .map_err(|e| Error::io("cannot write", &self.url, e))
    }

    pub fn write_document(&mut self, doc: &Document) -> Result<()> {
        self.line.clear();
        doc.write_json_line(&mut self.line);
        self.write_line()
    }

    /// Writes any JSON value as one line.
    pub fn write_value(&mut self, value: &Value) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value).expect("serializing to a Vec cannot fail");
        self.line.push(b'\n');
        self.write_line()
    }

    /// Finishes the zstd frame, publishes the object and describes it.
    pub fn commit(self) -> Result<ObjectInfo> {
        let hashing = self
            .encoder
            .finish()
            .map_err(|e| Error::io("cannot finish", &self.url, e))?;
        let info = ObjectInfo {
            name: self.key,
            size: hashing.size,
            xxh3: format!("{:016x}", hashing.hasher.digest()),
        };
        hashing.inner.commit()?;
        Ok(info)
    }
}

/// A rejected document as the rejected sidecar stores it: the document
/// itself, readable again by thresher, plus a `rejection` field.
pub fn rejected_line(doc: &Document, stage: &str, reason: &str, detail: &Value) -> Value {
    let mut value = serde_json::to_value(doc).expect("documents serialize");
    value["rejection"] = json!({ "stage": stage, "reason": reason, "detail": detail });
    value
}

/// A quarantined record: where it was, why, and its raw bytes (as text when
/// they are valid UTF-8, else base64 in `raw_base64`).
pub fn quarantine_line(input_url: &str, record_index: u64, bad: &BadRecord) -> Value {
    let mut value = json!({
        "file": input_url,
        "record": record_index,
        "offset": bad.offset,
        "reason": bad.reason,
    });
    if let Some(line) = bad.line {
        value["line"] = json!(line);
    }
    match std::str::from_utf8(&bad.raw) {
        Ok(text) => value["raw"] = json!(text),
        Err(_) => value["raw_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&bad.raw)),
    }
    value
}

/// Reads a `jsonl.zst` object back as JSON values (for inspection and tests).
pub fn read_jsonl_zst(storage: &dyn Storage, key: &str) -> Result<Vec<Value>> {
    let url = storage.url_of(key);
    let decoder =
        zstd::stream::read::Decoder::new(storage.open(key)?).map_err(|e| Error::io("cannot read", &url, e))?;
    let mut values = Vec::new();
    for (i, line) in io::BufRead::lines(io::BufReader::new(decoder)).enumerate() {
        let line = line.map_err(|e| Error::io("cannot read", &url, e))?;
        let value = serde_json::from_str(&line)
            .map_err(|e| Error::Input(format!("{url}: line {}: invalid JSON: {e}", i + 1)))?;
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    #[test]
    fn writes_hashes_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("thresher-writer-{}", std::process::id()));
        let storage = LocalStorage::new(&dir);
        let mut w = JsonlZstWriter::create(&storage, "s/a.jsonl.zst", 3).unwrap();
        w.write_document(&Document::new("1", "hello")).unwrap();
        let bad = BadRecord {
            line: Some(2),
            offset: 7,
            reason: "broken".into(),
            raw: vec![0xff, b'{'],
        };
        w.write_value(&quarantine_line("in.jsonl", 1, &bad)).unwrap();
        let info = w.commit().unwrap();
        let bytes = storage.read_all("s/a.jsonl.zst").unwrap();
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(info.xxh3, format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)));
        let values = read_jsonl_zst(&storage, "s/a.jsonl.zst").unwrap();
        assert_eq!(values[0]["text"], "hello");
        assert_eq!(values[1]["raw_base64"], "/3s=");
        assert_eq!(values[1]["line"], 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
