//! Parquet inputs, read as they stream: one row group in memory at a time.
//!
//! A Parquet file says where its row groups are only in its footer, at the
//! end. So the footer is fetched first with one ranged read, and then the
//! file streams from its first byte to its last, exactly once, like every
//! other input (its size and xxh3 in the manifest come from that stream): the
//! bytes of each row group are held while its rows are decoded and dropped
//! before the next. A FineWeb file of 2 GB is then never 2 GB in memory.
//! Compressed files (`.parquet.zst`) cannot be read from the end and are read
//! whole ([`crate::readers`]).

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Row;
use serde::de::DeserializeSeed;
use serde_json::{Map, Value};
use thresher_stages::FieldNames;

use crate::error::Result;
use crate::readers::{stream_error, BadRecord, Compression, Record};
use crate::storage::Storage;

/// The end of a Parquet file, holding its footer.
pub struct ParquetTail {
    pub file_size: u64,
    /// The file's last `bytes.len()` bytes.
    pub bytes: Bytes,
}

/// Footer: metadata length (u32 LE) and `PAR1`.
const FOOTER_SIZE: u64 = 8;

/// Fetches the end of `key` (`size` bytes long) with the whole footer in it:
/// one ranged read of up to 64 KiB, and a second when the metadata is longer.
/// `None` when the object is not a Parquet file at all: the streaming reader
/// then reports it as the whole-file reader would.
pub fn fetch_tail(storage: &dyn Storage, key: &str, size: u64) -> Result<Option<ParquetTail>> {
    if size < FOOTER_SIZE + 4 {
        return Ok(None);
    }
    let first = size.min(64 << 10);
    let mut bytes = storage.read_range(key, size - first, first)?;
    let footer = &bytes[bytes.len() - FOOTER_SIZE as usize..];
    if &footer[4..] != b"PAR1" {
        return Ok(None);
    }
    let metadata_len = u32::from_le_bytes(footer[..4].try_into().expect("4 bytes")) as u64;
    let needed = metadata_len + FOOTER_SIZE;
    if needed > size {
        return Ok(None);
    }
    if needed > first {
        bytes = storage.read_range(key, size - needed, needed)?;
    }
    Ok(Some(ParquetTail {
        file_size: size,
        bytes: Bytes::from(bytes),
    }))
}

/// The bytes the decoder may ask for: the tail, and the row group now held.
struct Window {
    start: u64,
    bytes: Bytes,
}

struct StreamedFile {
    size: u64,
    tail_start: u64,
    tail: Bytes,
    window: Arc<Mutex<Window>>,
}

impl StreamedFile {
    fn slice(&self, start: u64, len: Option<usize>) -> parquet::errors::Result<Bytes> {
        let cut = |bytes: &Bytes, base: u64| -> Option<Bytes> {
            let from = start.checked_sub(base)? as usize;
            let to = match len {
                Some(len) => from.checked_add(len)?,
                None => bytes.len(),
            };
            (from <= to && to <= bytes.len()).then(|| bytes.slice(from..to))
        };
        if start >= self.tail_start {
            if let Some(bytes) = cut(&self.tail, self.tail_start) {
                return Ok(bytes);
            }
        }
        let window = self.window.lock().unwrap();
        cut(&window.bytes, window.start).ok_or_else(|| {
            ParquetError::General(format!(
                "bytes {start}+{len:?} lie outside the row group being read ({}+{})",
                window.start,
                window.bytes.len()
            ))
        })
    }
}

impl Length for StreamedFile {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for StreamedFile {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// Rows of a Parquet file as it streams by; see the module's comment.
pub fn read_streamed(
    stream: Box<dyn Read + Send>,
    tail: ParquetTail,
    fields: FieldNames,
) -> Box<dyn Iterator<Item = Record> + Send> {
    let window = Arc::new(Mutex::new(Window {
        start: 0,
        bytes: Bytes::new(),
    }));
    let file = StreamedFile {
        size: tail.file_size,
        tail_start: tail.file_size - tail.bytes.len() as u64,
        tail: tail.bytes,
        window: window.clone(),
    };
    let reader = match SerializedFileReader::new(file) {
        Ok(reader) => reader,
        Err(e) => return Box::new(std::iter::once(not_parquet(e))),
    };
    // Row groups in the order their bytes come.
    let mut groups: Vec<(usize, u64, u64)> = reader
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let ranges = group.columns().iter().map(|c| c.byte_range());
            let start = ranges.clone().map(|(s, _)| s).min().unwrap_or(0);
            let end = ranges.map(|(s, l)| s + l).max().unwrap_or(0);
            (i, start, end)
        })
        .collect();
    groups.sort_by_key(|&(_, start, _)| start);
    Box::new(StreamedRows {
        stream,
        position: 0,
        reader,
        window,
        groups: groups.into(),
        pending: VecDeque::new(),
        next_row: 0,
        fields,
        done: false,
    })
}

struct StreamedRows {
    stream: Box<dyn Read + Send>,
    /// Bytes of the stream consumed so far.
    position: u64,
    reader: SerializedFileReader<StreamedFile>,
    window: Arc<Mutex<Window>>,
    /// (row group, first byte, end) still to read, in file order.
    groups: VecDeque<(usize, u64, u64)>,
    pending: VecDeque<Record>,
    next_row: u64,
    fields: FieldNames,
    done: bool,
}

impl StreamedRows {
    /// Reads the next row group's bytes off the stream and decodes its rows
    /// into `pending`; or the bad record that ends the file.
    fn read_group(&mut self, group: usize, start: u64, end: u64) -> Option<Record> {
        let stream_error = |position: u64, e| stream_error(Compression::None, position, None, e, Vec::new());
        if start < self.position {
            return Some(Record::Bad(BadRecord {
                line: None,
                offset: start,
                reason: format!(
                    "Parquet row group {group} overlaps the one before it; the input object itself is left in place"
                ),
                raw: Vec::new(),
            }));
        }
        let skip = start - self.position;
        let skipped = match std::io::copy(&mut (&mut self.stream).take(skip), &mut std::io::sink()) {
            Ok(n) => n,
            Err(e) => return Some(stream_error(self.position, e)),
        };
        self.position += skipped;
        let mut bytes = Vec::with_capacity((end - start) as usize);
        if let Err(e) = (&mut self.stream).take(end - start).read_to_end(&mut bytes) {
            return Some(stream_error(self.position, e));
        }
        self.position += bytes.len() as u64;
        *self.window.lock().unwrap() = Window {
            start,
            bytes: Bytes::from(bytes),
        };
        let rows = self
            .reader
            .get_row_group(group)
            .and_then(|g| RowIter::from_row_group(None, g.as_ref()).map(|rows| rows.collect::<Vec<_>>()));
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => vec![Err(e)],
        };
        for row in rows {
            let (record, fatal) = row_record(row, self.next_row, &self.fields);
            self.next_row += 1;
            self.pending.push_back(record);
            if fatal {
                self.groups.clear();
                break;
            }
        }
        None
    }
}

impl Iterator for StreamedRows {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(record);
            }
            if self.done {
                return None;
            }
            match self.groups.pop_front() {
                Some((group, start, end)) => {
                    if let Some(bad) = self.read_group(group, start, end) {
                        self.done = true;
                        return Some(bad);
                    }
                }
                None => {
                    // The footer still streams by, for the input's size and checksum.
                    self.done = true;
                    *self.window.lock().unwrap() = Window {
                        start: 0,
                        bytes: Bytes::new(),
                    };
                    if let Err(e) = std::io::copy(&mut self.stream, &mut std::io::sink()) {
                        return Some(stream_error(Compression::None, self.position, None, e, Vec::new()));
                    }
                }
            }
        }
    }
}

pub fn not_parquet(e: ParquetError) -> Record {
    Record::Bad(BadRecord {
        line: None,
        offset: 0,
        reason: format!("not a readable Parquet file: {e}; the input object itself is left in place"),
        raw: Vec::new(),
    })
}

/// One row as a record (its index as the offset), and whether reading must
/// stop there (the row could not be decoded at all).
pub fn row_record(row: parquet::errors::Result<Row>, index: u64, fields: &FieldNames) -> (Record, bool) {
    let bad = |reason: String, raw: Vec<u8>| {
        Record::Bad(BadRecord {
            line: None,
            offset: index,
            reason,
            raw,
        })
    };
    let row = match row {
        Ok(row) => row,
        Err(e) => {
            return (
                bad(format!("Parquet row {index} cannot be read: {e}"), Vec::new()),
                true,
            )
        }
    };
    let mut object = Map::new();
    for (name, field) in row.get_column_iter() {
        let value = match field {
            parquet::record::Field::Str(s) => Value::from(s.as_str()),
            parquet::record::Field::Bytes(b) => match std::str::from_utf8(b.data()) {
                Ok(s) => Value::from(s),
                Err(_) => field.to_json_value(),
            },
            other => other.to_json_value(),
        };
        object.insert(name.clone(), value);
    }
    // A `metadata` column stored as a JSON string becomes an object.
    if let Some(Value::String(m)) = object.get("metadata") {
        if let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(m) {
            object.insert("metadata".into(), parsed);
        }
    }
    let value = Value::Object(object);
    let record = match fields.deserialize(value.clone()) {
        Ok(mut doc) => {
            if doc.url.is_none() {
                if let Some(Value::String(url)) = doc.metadata.get("url") {
                    doc.url = Some(url.clone());
                }
            }
            Record::Document {
                doc,
                line: None,
                offset: index,
            }
        }
        Err(e) => bad(
            format!("invalid document in Parquet row {index}: {e}"),
            value.to_string().into_bytes(),
        ),
    };
    (record, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::{read_records, Format, ReadOptions};
    use crate::storage::LocalStorage;

    /// `groups` row groups of `rows` rows each; the second row of the second
    /// group has a null text. Long texts, so that the tail fetch of 64 KiB
    /// holds no row group whole.
    fn write_file(path: &std::path::Path, groups: usize, rows: usize) {
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;

        let schema = Arc::new(
            parse_message_type("message doc { OPTIONAL BYTE_ARRAY id (UTF8); OPTIONAL BYTE_ARRAY text (UTF8); }")
                .unwrap(),
        );
        let props = Arc::new(WriterProperties::builder().set_dictionary_enabled(false).build());
        let mut writer = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
        for g in 0..groups {
            let mut group = writer.next_row_group().unwrap();
            let ids: Vec<ByteArray> = (0..rows)
                .map(|r| ByteArray::from(format!("g{g}r{r}").as_str()))
                .collect();
            let mut col = group.next_column().unwrap().unwrap();
            col.typed::<ByteArrayType>()
                .write_batch(&ids, Some(&vec![1; rows]), None)
                .unwrap();
            col.close().unwrap();
            let levels: Vec<i16> = (0..rows).map(|r| i16::from(!(g == 1 && r == 1))).collect();
            let texts: Vec<ByteArray> = (0..rows)
                .filter(|&r| !(g == 1 && r == 1))
                .map(|r| ByteArray::from(format!("row {r} of group {g}: {}", "water ".repeat(3000 + r)).as_str()))
                .collect();
            let mut col = group.next_column().unwrap().unwrap();
            col.typed::<ByteArrayType>()
                .write_batch(&texts, Some(&levels), None)
                .unwrap();
            col.close().unwrap();
            group.close().unwrap();
        }
        writer.close().unwrap();
    }

    #[test]
    fn streamed_rows_equal_the_whole_file_read() {
        let dir = std::env::temp_dir().join(format!("thresher-parquet-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_file(&dir.join("docs.parquet"), 3, 20);
        let storage = LocalStorage::new(&dir);
        let bytes = std::fs::read(dir.join("docs.parquet")).unwrap();
        let whole: Vec<Record> = read_records(
            Box::new(std::io::Cursor::new(bytes.clone())),
            "docs.parquet",
            Format::Parquet,
            ReadOptions::new(1 << 30),
        )
        .collect();
        let tail = fetch_tail(&storage, "docs.parquet", bytes.len() as u64)
            .unwrap()
            .expect("a Parquet file");
        assert!(
            tail.bytes.len() < bytes.len() / 4,
            "the tail is the footer's end, not the file"
        );
        let streamed: Vec<Record> =
            read_streamed(Box::new(std::io::Cursor::new(bytes)), tail, FieldNames::default()).collect();
        assert_eq!(whole.len(), 60);
        assert_eq!(streamed, whole);
        assert!(matches!(&streamed[21], Record::Bad(b) if b.reason.contains("text") && b.offset == 21));
        assert!(matches!(&streamed[59], Record::Document { doc, .. } if doc.id == "g2r19"));
        // Not Parquet at all: no tail, and the whole-file reader says so.
        std::fs::write(dir.join("fake.parquet"), b"this is not a parquet file at all").unwrap();
        assert!(fetch_tail(&storage, "fake.parquet", 33).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
