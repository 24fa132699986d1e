//! Readers for input shards: JSONL (plain, `.gz`, `.zst`), Parquet, Common
//! Crawl WET, and WARC captures of web pages (main text extracted by
//! [`crate::web_page`]).
//!
//! A reader never fails a whole file for one bad record: it yields
//! [`Record::Bad`] with the line or byte offset, the reason and the raw bytes,
//! and goes on where it can. A broken stream (truncated compression, I/O error)
//! yields one last bad record holding the bytes of the partial record and ends.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use thresher_stages::{Document, FieldNames};
use xxhash_rust::xxh3::Xxh3;

use crate::progress::Progress;
use crate::web_page::{self, holds_page, HtmlFocus, PageOutcome, PageReader};

/// How records are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Parquet,
    Wet,
    Warc,
}

/// How a file's bytes are compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn of(key: &str) -> Self {
        if key.ends_with(".gz") {
            Compression::Gzip
        } else if key.ends_with(".zst") || key.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Name endings of each format (after any compression ending is removed).
const JSONL_ENDINGS: &[&str] = &[".jsonl", ".json", ".ndjson"];
const PARQUET_ENDINGS: &[&str] = &[".parquet"];
const WET_ENDINGS: &[&str] = &[".warc.wet", ".wet"];
/// (`.warc.wat`, Common Crawl's link metadata, has no page text: not read.)
const WARC_ENDINGS: &[&str] = &[".warc"];

/// Strips a compression ending (`.gz`, `.zst`, `.zstd`).
pub fn strip_compression(key: &str) -> &str {
    for ending in [".gz", ".zstd", ".zst"] {
        if let Some(stem) = key.strip_suffix(ending) {
            return stem;
        }
    }
    key
}

/// The format a file name says, if any.
pub fn format_of(key: &str) -> Option<Format> {
    let stem = strip_compression(key);
    let ends = |endings: &[&str]| endings.iter().any(|e| stem.ends_with(e));
    if ends(JSONL_ENDINGS) {
        Some(Format::Jsonl)
    } else if ends(PARQUET_ENDINGS) {
        Some(Format::Parquet)
    } else if ends(WET_ENDINGS) {
        Some(Format::Wet)
    } else if ends(WARC_ENDINGS) {
        Some(Format::Warc)
    } else {
        None
    }
}

/// The key without its compression and format endings: `a/b.jsonl.gz` → `a/b`.
pub fn shard_stem(key: &str) -> &str {
    let stem = strip_compression(key);
    for ending in JSONL_ENDINGS
        .iter()
        .chain(PARQUET_ENDINGS)
        .chain(WET_ENDINGS)
        .chain(WARC_ENDINGS)
        .chain(&[".txt"])
    {
        if let Some(s) = stem.strip_suffix(ending) {
            return s;
        }
    }
    stem
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// 1-based line number, for line-based formats.
    pub line: Option<u64>,
    /// Byte offset of the record in the decompressed stream (row index for Parquet).
    pub offset: u64,
    pub reason: String,
    /// The record's bytes as read (possibly partial, see `reason`).
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A readable document, with where it starts (as in [`BadRecord`]).
    Document {
        doc: Document,
        line: Option<u64>,
        offset: u64,
    },
    Bad(BadRecord),
    /// A record that is not a document (a WARC capture of an image, a
    /// redirect): counted by `reason` in the manifest, not numbered.
    Skipped {
        reason: &'static str,
    },
}

/// Limits and choices applied while reading.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// A record longer than this is quarantined (its first bytes kept) rather
    /// than held in memory.
    pub max_record_bytes: usize,
    /// How much of an HTML page (WARC inputs) becomes the document's text.
    pub html_focus: HtmlFocus,
    /// The fields of JSONL and Parquet records that hold the text and id.
    pub fields: FieldNames,
}

impl ReadOptions {
    /// These limits, and every choice at its default.
    pub fn new(max_record_bytes: usize) -> Self {
        Self {
            max_record_bytes,
            html_focus: HtmlFocus::default(),
            fields: FieldNames::default(),
        }
    }
}

/// Size and xxh3 of the raw bytes of an input, gathered while it streams.
#[derive(Default)]
pub struct InputDigest {
    hasher: Mutex<Xxh3>,
    bytes: AtomicU64,
}

impl InputDigest {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub fn xxh3_hex(&self) -> String {
        format!("{:016x}", self.hasher.lock().unwrap().digest())
    }
}

/// Passes bytes through while feeding an [`InputDigest`] (and progress).
pub struct DigestingReader<R> {
    inner: R,
    digest: Arc<InputDigest>,
    progress: Option<Progress>,
}

impl<R> DigestingReader<R> {
    pub fn new(inner: R, digest: Arc<InputDigest>, progress: Option<Progress>) -> Self {
        Self {
            inner,
            digest,
            progress,
        }
    }
}

impl<R: Read> Read for DigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.hasher.lock().unwrap().update(&buf[..n]);
        self.digest.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(p) = &self.progress {
            p.inc_bytes(n as u64);
        }
        Ok(n)
    }
}

type RecordIter = Box<dyn Iterator<Item = Record> + Send>;

/// Decompresses `raw` as its name says and yields its records.
pub fn read_records(raw: Box<dyn Read + Send>, key: &str, format: Format, options: ReadOptions) -> RecordIter {
    let compression = Compression::of(key);
    let decompressed: Box<dyn Read + Send> = match compression {
        Compression::None => raw,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            raw,
        ))),
        Compression::Zstd => match zstd::stream::read::Decoder::new(raw) {
            Ok(d) => Box::new(d),
            Err(e) => return Box::new(std::iter::once(stream_error(compression, 0, None, e, Vec::new()))),
        },
    };
    let buffered = BufReader::with_capacity(1 << 20, decompressed);
    match format {
        Format::Jsonl => Box::new(JsonlRecords {
            reader: buffered,
            compression,
            options,
            line: 0,
            offset: 0,
            done: false,
            buf: Vec::new(),
        }),
        Format::Wet | Format::Warc => Box::new(WarcRecords {
            content: match format {
                Format::Wet => WarcContent::Wet,
                _ => WarcContent::Pages(Box::new(PageReader::new(options.html_focus, options.max_record_bytes))),
            },
            reader: buffered,
            compression,
            options,
            offset: 0,
            done: false,
            pending_header: None,
            length_mismatches: 0,
        }),
        Format::Parquet => read_parquet(buffered, compression, options.fields),
    }
}

pub(crate) fn stream_error(
    compression: Compression,
    offset: u64,
    line: Option<u64>,
    e: io::Error,
    raw: Vec<u8>,
) -> Record {
    let what = match compression {
        Compression::None => "read failed".to_string(),
        c => format!("{} stream is truncated or corrupt", c.name()),
    };
    let partial = if raw.is_empty() {
        String::new()
    } else {
        format!("; the {} bytes of the partial record are kept", raw.len())
    };
    Record::Bad(BadRecord {
        line,
        offset,
        reason: format!("{what} after {offset} decompressed bytes ({e}){partial}"),
        raw,
    })
}

/// Reads one line (including its `\n`) into `buf`, keeping at most `max`
/// bytes of it. Returns the line's full length and whether it was cut.
/// On error, `buf` holds the bytes read so far.
fn read_line_capped(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<(usize, bool)> {
    let mut total = 0;
    let mut cut = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((total, cut));
        }
        let (chunk, found) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let len = chunk.len();
        let room = max.saturating_sub(buf.len());
        if room >= len {
            buf.extend_from_slice(chunk);
        } else {
            buf.extend_from_slice(&chunk[..room]);
            cut = true;
        }
        total += len;
        r.consume(len);
        if found {
            return Ok((total, cut));
        }
    }
}

fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

struct JsonlRecords<R> {
    reader: R,
    compression: Compression,
    options: ReadOptions,
    line: u64,
    offset: u64,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> Iterator for JsonlRecords<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        while !self.done {
            // Fast path: a whole line inside the read buffer is parsed in
            // place, saving a copy of every byte (most lines fit the 1 MiB buffer).
            if let Ok(available) = self.reader.fill_buf() {
                if let Some(end) = memchr::memchr(b'\n', available) {
                    let line = trim_line_end(&available[..end]);
                    if line.len() <= self.options.max_record_bytes && !line.iter().all(u8::is_ascii_whitespace) {
                        if let Ok(doc) = Document::from_json_with(line, &self.options.fields) {
                            let start = self.offset;
                            self.reader.consume(end + 1);
                            self.line += 1;
                            self.offset += end as u64 + 1;
                            return Some(Record::Document {
                                doc,
                                line: Some(self.line),
                                offset: start,
                            });
                        }
                        // Anything else takes the general path below, which
                        // reports it with its raw bytes.
                    }
                }
            }
            self.buf.clear();
            let start = self.offset;
            let (len, cut) = match read_line_capped(&mut self.reader, &mut self.buf, self.options.max_record_bytes) {
                Ok((0, _)) => return None,
                Ok(read) => read,
                Err(e) => {
                    self.done = true;
                    let raw = std::mem::take(&mut self.buf);
                    let offset = start + raw.len() as u64;
                    let line = (!raw.is_empty()).then_some(self.line + 1);
                    return Some(stream_error(self.compression, offset, line, e, raw));
                }
            };
            self.line += 1;
            self.offset += len as u64;
            let line = trim_line_end(&self.buf);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue; // blank lines separate nothing and hold nothing
            }
            let bad = |reason: String, raw: &[u8]| {
                Record::Bad(BadRecord {
                    line: Some(self.line),
                    offset: start,
                    reason,
                    raw: raw.to_vec(),
                })
            };
            if cut {
                return Some(bad(
                    format!(
                        "record of {len} bytes exceeds max_record_bytes ({}); its first {} bytes are kept",
                        self.options.max_record_bytes,
                        line.len()
                    ),
                    line,
                ));
            }
            return Some(match Document::from_json_with(line, &self.options.fields) {
                Ok(doc) => Record::Document {
                    doc,
                    line: Some(self.line),
                    offset: start,
                },
                Err(e) => bad(format!("invalid document: {e}"), line),
            });
        }
        None
    }
}

/// WARC files: Common Crawl WET, whose `conversion` records hold page text,
/// or captures whose `response` records hold pages. Other record types
/// (`warcinfo`, `request`, …) are passed over: they describe the crawl.
struct WarcRecords<R> {
    content: WarcContent,
    reader: R,
    compression: Compression,
    options: ReadOptions,
    offset: u64,
    done: bool,
    /// Offset of a `WARC/` line already consumed while skipping garbage.
    pending_header: Option<u64>,
    /// Records whose Content-Length disagreed with their body (see `next_record`).
    length_mismatches: u64,
}

/// Longest header line kept; longer header lines are cut.
const MAX_HEADER_LINE: usize = 64 * 1024;

/// What a WARC file's documents are made of.
enum WarcContent {
    /// WET: text already extracted, in `conversion` records.
    Wet,
    /// Captures: pages in `response` and `resource` records.
    Pages(Box<PageReader>),
}

const OUTSIDE_RECORD: &str = "text outside any WARC record (expected a 'WARC/1.x' line)";

impl<R: BufRead> WarcRecords<R> {
    fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        let (len, _) = read_line_capped(&mut self.reader, buf, MAX_HEADER_LINE)?;
        self.offset += len as u64;
        Ok(len)
    }

    /// Finds the next `WARC/` version line. Returns its offset, or the garbage
    /// met before it (the header is then remembered for the next call).
    fn find_header(&mut self) -> io::Result<Result<Option<u64>, BadRecord>> {
        if let Some(start) = self.pending_header.take() {
            return Ok(Ok(Some(start)));
        }
        let mut line = Vec::new();
        let mut garbage = Vec::new();
        let mut garbage_start = None;
        loop {
            let start = self.offset;
            let at_end = self.read_line(&mut line)? == 0;
            if at_end || is_version_line(&line) {
                return Ok(match garbage_start {
                    None if at_end => Ok(None),
                    None => Ok(Some(start)),
                    Some(offset) => {
                        if !at_end {
                            self.pending_header = Some(start);
                        }
                        Err(BadRecord {
                            line: None,
                            offset,
                            reason: OUTSIDE_RECORD.into(),
                            raw: garbage,
                        })
                    }
                });
            }
            if !trim_line_end(&line).is_empty() {
                garbage_start.get_or_insert(start);
                if garbage.len() < self.options.max_record_bytes {
                    garbage.extend_from_slice(&line);
                }
            }
        }
    }

    /// Reads one WARC record; `Ok(None)` at a clean end of file.
    ///
    /// The body runs to the next version line (`WARC/1.0` alone on a line) or
    /// the end of the file. Content-Length is checked, not trusted: some WET
    /// writers count characters instead of bytes, and trusting a wrong length
    /// would swallow the next record's header or cut a character in two.
    fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            let start = match self.find_header()? {
                Ok(Some(start)) => start,
                Ok(None) => return Ok(None),
                Err(bad) => return Ok(Some(Record::Bad(bad))),
            };
            let mut headers = Vec::new();
            let mut raw_headers = Vec::new();
            let mut line = Vec::new();
            loop {
                if self.read_line(&mut line)? == 0 {
                    return Ok(Some(Record::Bad(BadRecord {
                        line: None,
                        offset: start,
                        reason: "file ends inside a WARC header".into(),
                        raw: raw_headers,
                    })));
                }
                raw_headers.extend_from_slice(&line);
                let text = trim_line_end(&line);
                if text.is_empty() {
                    break;
                }
                if let Some(colon) = text.iter().position(|&b| b == b':') {
                    let name = String::from_utf8_lossy(&text[..colon]).trim().to_ascii_lowercase();
                    let value = String::from_utf8_lossy(&text[colon + 1..]).trim().to_string();
                    headers.push((name, value));
                }
            }
            let header = |name: &str| web_page::header(&headers, name);
            let content_length = header("content-length").and_then(|v| v.parse::<usize>().ok());
            let bad = |reason: String, raw: Vec<u8>| {
                Ok(Some(Record::Bad(BadRecord {
                    line: None,
                    offset: start,
                    reason,
                    raw,
                })))
            };
            let warc_type = header("warc-type").unwrap_or_default();
            let (mut body, too_long, at_eof) = match (&self.content, content_length) {
                // Captured pages are bytes of any kind (a PDF may hold a line
                // that reads `WARC/1.0`): their length is the only boundary.
                (WarcContent::Pages(_), Some(len)) => self.read_exact_body(len)?,
                _ => self.read_body()?,
            };
            let pages = match &self.content {
                WarcContent::Pages(pages) => Some(pages),
                WarcContent::Wet => None,
            };
            if too_long {
                // A video or an archive past the limit is not a page: passed
                // over like any other, not quarantined.
                if let Some(pages) = pages {
                    if !holds_page(&headers) {
                        continue;
                    }
                    if !pages.is_page_type(&headers, &body) {
                        return Ok(Some(Record::Skipped {
                            reason: "not_html_or_text",
                        }));
                    }
                }
                return bad(
                    format!(
                        "WARC record body exceeds max_record_bytes ({}); its header and first bytes are kept",
                        self.options.max_record_bytes
                    ),
                    [raw_headers, body].concat(),
                );
            }
            match content_length {
                Some(len) if at_eof && body.len() < len => {
                    return bad(
                        format!(
                            "file ends inside a WARC record: {} of {len} body bytes present",
                            body.len()
                        ),
                        [raw_headers, body].concat(),
                    );
                }
                // The body and the blank separator lines: exactly as specified.
                Some(len) if len <= body.len() && body[len..].iter().all(u8::is_ascii_whitespace) => body.truncate(len),
                _ => {
                    while let [rest @ .., b'\n' | b'\r'] = body.as_slice() {
                        body.truncate(rest.len());
                    }
                    self.length_mismatches += 1;
                }
            }
            let document = match pages {
                Some(pages) if holds_page(&headers) => match pages.page(&headers, &body) {
                    PageOutcome::Document(doc) => doc,
                    PageOutcome::Skipped(reason) => return Ok(Some(Record::Skipped { reason })),
                    PageOutcome::Bad(reason) => return bad(reason, [raw_headers, body].concat()),
                },
                Some(_) => continue,
                None if warc_type != "conversion" => continue,
                None => {
                    let text = match String::from_utf8(body) {
                        Ok(text) => text,
                        Err(e) => {
                            let valid = e.utf8_error().valid_up_to();
                            return bad(
                                format!("WARC record body is not valid UTF-8 (first bad byte at body offset {valid})"),
                                [raw_headers, e.into_bytes()].concat(),
                            );
                        }
                    };
                    let mut doc = Document::new(
                        header("warc-record-id")
                            .unwrap_or_default()
                            .trim_start_matches('<')
                            .trim_end_matches('>'),
                        text,
                    );
                    doc.url = header("warc-target-uri").map(str::to_string);
                    let mut metadata = Map::new();
                    for (name, key) in [
                        ("warc-date", "warc_date"),
                        ("warc-identified-content-language", "warc_content_language"),
                        ("warc-refers-to", "warc_refers_to"),
                        ("warc-block-digest", "warc_block_digest"),
                    ] {
                        if let Some(v) = header(name) {
                            metadata.insert(key.into(), Value::from(v));
                        }
                    }
                    doc.metadata = metadata;
                    doc
                }
            };
            return Ok(Some(Record::Document {
                doc: document,
                line: None,
                offset: start,
            }));
        }
    }

    /// Reads a body of `len` bytes, keeping at most `max_record_bytes` of it.
    /// Returns (body, cut at max_record_bytes, reached EOF before `len`).
    fn read_exact_body(&mut self, len: usize) -> io::Result<(Vec<u8>, bool, bool)> {
        let keep = len.min(self.options.max_record_bytes);
        let mut body = Vec::with_capacity(keep.min(1 << 24));
        let kept = (&mut self.reader).take(keep as u64).read_to_end(&mut body)?;
        let skipped = io::copy(&mut (&mut self.reader).take((len - keep) as u64), &mut io::sink())? as usize;
        self.offset += (kept + skipped) as u64;
        Ok((body, len > keep, kept + skipped < len))
    }

    /// Reads body lines up to the next version line (left pending) or EOF.
    /// Returns (body, cut at max_record_bytes, reached EOF).
    fn read_body(&mut self) -> io::Result<(Vec<u8>, bool, bool)> {
        let mut body = Vec::new();
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let start = self.offset;
            if self.read_line(&mut line)? == 0 {
                return Ok((body, too_long, true));
            }
            if is_version_line(&line) {
                self.pending_header = Some(start);
                return Ok((body, too_long, false));
            }
            if body.len() + line.len() > self.options.max_record_bytes {
                too_long = true;
                continue;
            }
            body.extend_from_slice(&line);
        }
    }
}

/// `WARC/1.0` (any version) alone on a line: where a record starts.
fn is_version_line(line: &[u8]) -> bool {
    let Some(version) = trim_line_end(line).strip_prefix(b"WARC/") else {
        return false;
    };
    let mut parts = version.splitn(2, |&b| b == b'.');
    let digits = |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    digits(parts.next()) && digits(parts.next())
}

impl<R: BufRead> Iterator for WarcRecords<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(None) => {
                self.done = true;
                if self.length_mismatches > 0 {
                    tracing::warn!(
                        "{} WARC record(s) had a Content-Length that disagrees with their body; each body was read up to the next record",
                        self.length_mismatches
                    );
                }
                None
            }
            Ok(record) => record,
            Err(e) => {
                self.done = true;
                Some(stream_error(self.compression, self.offset, None, e, Vec::new()))
            }
        }
    }
}

/// A Parquet file read whole into memory first: compressed files, and
/// readers without ranged access to the object. Inputs of a pipeline stream
/// instead ([`crate::parquet_rows`]). Columns `id` and `text` are required;
/// `source`, `url` and `metadata` map to the document's fields and every
/// other column is kept as a top-level field.
fn read_parquet(mut reader: impl Read, compression: Compression, fields: FieldNames) -> RecordIter {
    use parquet::file::reader::SerializedFileReader;
    use parquet::record::reader::RowIter;

    let mut bytes = Vec::new();
    if let Err(e) = reader.read_to_end(&mut bytes) {
        return Box::new(std::iter::once(stream_error(
            compression,
            bytes.len() as u64,
            None,
            e,
            Vec::new(),
        )));
    }
    let file = match SerializedFileReader::new(bytes::Bytes::from(bytes)) {
        Ok(file) => file,
        Err(e) => return Box::new(std::iter::once(crate::parquet_rows::not_parquet(e))),
    };
    let rows = RowIter::from_file_into(Box::new(file));
    let mut done = false;
    Box::new(rows.enumerate().map_while(move |(index, row)| {
        if done {
            return None;
        }
        let (record, fatal) = crate::parquet_rows::row_record(row, index as u64, &fields);
        done = fatal;
        Some(record)
    }))
}

/// Every file under `dir`, in name order, depth first.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Reads the documents of `input` (a file or a folder of any format the
/// pipeline reads), at most `max_docs`, as (id, text).
pub fn read_documents(input: &Path, max_docs: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    if input.is_dir() {
        walk(input, &mut files);
    } else {
        files.push(input.to_path_buf());
    }
    let mut docs = Vec::new();
    for path in files {
        let name = path.to_string_lossy().to_string();
        let Some(format) = format_of(&name) else {
            continue;
        };
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {name}"))?;
        let limits = ReadOptions::new(1 << 30);
        for record in read_records(Box::new(file), &name, format, limits) {
            if docs.len() >= max_docs {
                return Ok(docs);
            }
            if let Record::Document { doc, .. } = record {
                docs.push((doc.id, doc.text));
            }
        }
    }
    if docs.is_empty() {
        bail!(
            "no documents in {} (JSONL, Parquet or WET, plain or compressed)",
            input.display()
        );
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ReadOptions {
        ReadOptions::new(1 << 20)
    }

    fn records(bytes: &[u8], key: &str, format: Format, options: ReadOptions) -> Vec<Record> {
        read_records(Box::new(io::Cursor::new(bytes.to_vec())), key, format, options).collect()
    }

    #[test]
    fn names() {
        assert_eq!(format_of("a/b.jsonl.gz"), Some(Format::Jsonl));
        assert_eq!(format_of("x.warc.wet.gz"), Some(Format::Wet));
        assert_eq!(format_of("x.parquet"), Some(Format::Parquet));
        assert_eq!(format_of("LICENSE.txt"), None);
        assert_eq!(shard_stem("a/b.json.zst"), "a/b");
        assert_eq!(shard_stem("c.warc.wet.gz"), "c");
    }

    #[test]
    fn jsonl_bad_lines_do_not_stop_the_file() {
        let input = b"{\"id\":\"a\",\"text\":\"one\"}\n\n{broken\r\n{\"id\":\"c\",\"text\":\"three\"}";
        let out = records(input, "x.jsonl", Format::Jsonl, limits());
        assert_eq!(out.len(), 3);
        match &out[1] {
            Record::Bad(b) => {
                assert_eq!(b.line, Some(3));
                assert_eq!(b.offset, 25);
                assert_eq!(b.raw, b"{broken");
                assert!(b.reason.starts_with("invalid document"), "{}", b.reason);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&out[2], Record::Document { doc: d, .. } if d.text == "three"));
    }

    #[test]
    fn long_records_are_cut_and_quarantined() {
        let input = format!("{{\"text\":\"{}\"}}\n{{\"text\":\"ok\"}}\n", "x".repeat(100));
        let out = records(input.as_bytes(), "x.jsonl", Format::Jsonl, ReadOptions::new(20));
        assert!(matches!(&out[0], Record::Bad(b) if b.raw.len() == 20 && b.reason.contains("max_record_bytes")));
        assert!(matches!(&out[1], Record::Document { doc: d, .. } if d.text == "ok"));
    }

    #[test]
    fn truncated_gzip_keeps_earlier_records_and_the_partial_one() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut gz, b"{\"text\":\"first\"}\n{\"text\":\"second is long enough\"}\n").unwrap();
        let full = gz.finish().unwrap();
        let out = records(&full[..full.len() - 12], "x.jsonl.gz", Format::Jsonl, limits());
        assert!(matches!(&out[0], Record::Document { doc: d, .. } if d.text == "first"));
        let last = out.last().unwrap();
        assert!(
            matches!(last, Record::Bad(b) if b.reason.contains("gzip stream is truncated")),
            "{last:?}"
        );
    }

    #[test]
    fn wet_records_and_garbage() {
        let body = "Hello world";
        let wet = format!(
            "junk line\r\n\
             WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 3\r\n\r\nabc\r\n\r\n\
             WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: http://x.org/\r\nWARC-Record-ID: <urn:uuid:1>\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n\
             WARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: 500\r\n\r\nshort",
            body.len()
        );
        let out = records(wet.as_bytes(), "x.warc.wet", Format::Wet, limits());
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(&out[0], Record::Bad(b) if b.raw == b"junk line\r\n"));
        match &out[1] {
            Record::Document { doc: d, .. } => {
                assert_eq!(d.id, "urn:uuid:1");
                assert_eq!(d.text, body);
                assert_eq!(d.url.as_deref(), Some("http://x.org/"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&out[2], Record::Bad(b) if b.reason.contains("5 of 500")));
    }

    #[test]
    fn wet_short_content_length_keeps_the_whole_body() {
        // "héllo wörld" is 11 characters but 13 bytes: a writer that counted
        // characters leaves 2 bytes, and a split character, after the body.
        let wet = "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Record-ID: <a>\r\nContent-Length: 11\r\n\r\nhéllo wörld\nnext line\r\n\r\n\
                   WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Record-ID: <b>\r\nContent-Length: 2\r\n\r\nok\r\n\r\n";
        let out = records(wet.as_bytes(), "x.wet", Format::Wet, limits());
        let texts: Vec<_> = out
            .iter()
            .map(|r| match r {
                Record::Document { doc, .. } => doc.text.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, vec!["héllo wörld\nnext line", "ok"]);
    }
}
