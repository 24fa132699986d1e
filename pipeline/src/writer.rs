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

/// An object being written whose bytes are counted and hashed as they reach
/// storage, so that committing it yields its manifest entry.
pub struct HashingWriter {
    key: String,
    inner: Box<dyn ObjectWriter>,
    hasher: Xxh3,
    size: u64,
}

impl HashingWriter {
    pub fn create(storage: &dyn Storage, key: &str) -> Result<Self> {
        Ok(Self {
            key: key.to_string(),
            inner: storage.create(key)?,
            hasher: Xxh3::new(),
            size: 0,
        })
    }

    /// Publishes the object and describes it.
    pub fn commit(self) -> Result<ObjectInfo> {
        let info = ObjectInfo {
            name: self.key,
            size: self.size,
            xxh3: format!("{:016x}", self.hasher.digest()),
        };
        self.inner.commit()?;
        Ok(info)
    }
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
///
/// Lines are compressed in independent zstd frames of [`FRAME_BYTES`] each,
/// one-shot rather than streamed: zstd's streaming mode wraps its window and
/// falls back to its slower external-dictionary match finder, while one-shot
/// frames stay in its fast path. Frames concatenate into one valid zstd stream
/// that every decoder reads; at 8 MiB (4× level 3's window) the ratio loss at
/// frame edges is negligible.
pub struct JsonlZstWriter {
    url: String,
    sink: HashingWriter,
    compressor: zstd::bulk::Compressor<'static>,
    pending: Vec<u8>,
    /// Reused between frames: a fresh multi-MB buffer per frame costs page faults.
    frame: Vec<u8>,
}

/// Uncompressed bytes per zstd frame.
pub const FRAME_BYTES: usize = 8 << 20;

impl JsonlZstWriter {
    pub fn create(storage: &dyn Storage, key: &str, level: i32) -> Result<Self> {
        let url = storage.url_of(key);
        let compressor = zstd::bulk::Compressor::new(level).map_err(|e| Error::io("cannot start zstd for", &url, e))?;
        Ok(Self {
            url,
            sink: HashingWriter::create(storage, key)?,
            compressor,
            pending: Vec::new(),
            frame: Vec::new(),
        })
    }

    /// Compresses what is pending into one frame.
    fn write_frame(&mut self) -> Result<()> {
        self.frame.clear();
        self.frame.reserve(zstd::zstd_safe::compress_bound(self.pending.len()));
        self.compressor
            .compress_to_buffer(&self.pending, &mut self.frame)
            .map_err(|e| Error::io("cannot compress", &self.url, e))?;
        self.sink
            .write_all(&self.frame)
            .map_err(|e| Error::io("cannot write", &self.url, e))?;
        self.pending.clear();
        Ok(())
    }

    fn line_added(&mut self) -> Result<()> {
        if self.pending.len() >= FRAME_BYTES {
            self.write_frame()?;
        }
        Ok(())
    }

    pub fn write_document(&mut self, doc: &Document) -> Result<()> {
        doc.write_json_line(&mut self.pending);
        self.line_added()
    }

    /// Writes any JSON value as one line.
    pub fn write_value(&mut self, value: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.pending, value).expect("serializing to a Vec cannot fail");
        self.pending.push(b'\n');
        self.line_added()
    }

    /// Writes the last frame (an empty object still gets one frame, so that
    /// it is a valid zstd file), publishes the object and describes it.
    pub fn commit(mut self) -> Result<ObjectInfo> {
        if !self.pending.is_empty() || self.sink.size == 0 {
            self.write_frame()?;
        }
        self.sink.commit()
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
