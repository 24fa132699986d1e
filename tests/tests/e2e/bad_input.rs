//! Every kind of bad input, end to end: no panic, nothing lost, counts add up,
//! and messages that name the file, the line and the reason.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

const GOOD: &str = r#"{"id":"good-1","text":"The river rose overnight and the old bridge was closed to traffic until engineers could inspect it."}"#;
const GOOD_2: &str = r#"{"id":"good-2","text":"Die Stadtbibliothek bleibt wegen Renovierungsarbeiten bis Ende des Monats geschlossen."}"#;

/// Runs ingest + langid over `input` (allowing any error rate) and inspects.
fn run_ok(dir: &TestDir, input: &Path) -> PathBuf {
    let config = write_config(
        &dir.path,
        input,
        "",
        "[[stages]]\nkind = \"ingest\"\n[[stages]]\nkind = \"langid\"\n",
    );
    let out = run_expect(
        thresher(&dir.path, &["run", config.to_str().unwrap(), "--max-error-rate", "1"]),
        0,
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);
    dir.join("out/ingest")
}

fn counts(stage_dir: &Path) -> Value {
    read_json(&stage_dir.join("_manifest/stage.json"))["counts"].clone()
}

fn quarantine(stage_dir: &Path, shard: &str) -> Vec<Value> {
    read_zst(&stage_dir.join("_quarantine").join(shard))
}

#[test]
fn malformed_json_line_is_quarantined_with_its_line() {
    let dir = TestDir::new("bad-json");
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        format!("{GOOD}\n{{\"id\": \"x\", \"text\": \"unterminated\n{GOOD_2}\n"),
    )
    .unwrap();
    let out = run_ok(&dir, &input);
    let c = counts(&out);
    assert_eq!(
        (
            c["documents_in"].as_u64(),
            c["documents_out"].as_u64(),
            c["quarantined"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    let q = quarantine(&out, "in.jsonl.zst");
    assert_eq!(q[0]["line"], 2);
    assert!(q[0]["file"].as_str().unwrap().ends_with("in.jsonl"));
    assert!(q[0]["reason"].as_str().unwrap().contains("invalid document"), "{q:?}");
    assert_eq!(q[0]["raw"], "{\"id\": \"x\", \"text\": \"unterminated");
}

#[test]
fn missing_or_non_string_text_is_quarantined() {
    let dir = TestDir::new("bad-text");
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        format!("{{\"id\":\"a\"}}\n{{\"id\":\"b\",\"text\":42}}\n{{\"id\":\"c\",\"text\":null}}\n{GOOD}\n"),
    )
    .unwrap();
    let out = run_ok(&dir, &input);
    assert_eq!(counts(&out)["quarantined"], 3);
    let q = quarantine(&out, "in.jsonl.zst");
    let reasons: Vec<&str> = q.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(reasons[0].contains("missing field `text`"), "{reasons:?}");
    assert!(reasons[1].contains("text"), "{reasons:?}");
    assert!(reasons[2].contains("text"), "{reasons:?}");
}

#[test]
fn invalid_utf8_keeps_raw_bytes_as_base64() {
    let dir = TestDir::new("bad-utf8");
    let input = dir.join("in.jsonl");
    let mut bytes = b"{\"id\":\"bad\",\"text\":\"caf\xe9 latin-1\"}\n".to_vec();
    bytes.extend_from_slice(GOOD.as_bytes());
    std::fs::write(&input, bytes).unwrap();
    let out = run_ok(&dir, &input);
    let q = quarantine(&out, "in.jsonl.zst");
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(q[0]["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, b"{\"id\":\"bad\",\"text\":\"caf\xe9 latin-1\"}");
    assert_eq!(counts(&out)["documents_out"], 1);
}

fn many_lines(n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(
            format!("{{\"id\":\"d{i}\",\"text\":\"Document number {i} talks about the weather in the mountains.\"}}\n")
                .as_bytes(),
        );
    }
    body
}

#[test]
fn truncated_zstd_keeps_what_precedes_the_cut() {
    let dir = TestDir::new("bad-zst");
    let input = dir.join("in.jsonl.zst");
    // zstd decodes whole blocks (128 KiB): make several, and cut in the middle.
    let full = zstd::encode_all(many_lines(20_000).as_slice(), 3).unwrap();
    std::fs::write(&input, &full[..full.len() * 2 / 3]).unwrap();
    let out = run_ok(&dir, &input);
    let c = counts(&out);
    let kept = c["documents_out"].as_u64().unwrap();
    assert!(kept > 5_000 && kept < 20_000, "kept {kept}");
    assert_eq!(c["quarantined"], 1);
    let q = quarantine(&out, "in.jsonl.zst");
    assert!(
        q[0]["reason"].as_str().unwrap().contains("zstd stream is truncated"),
        "{q:?}"
    );
    // The partial last line is kept, and nothing before it was lost.
    let docs = read_zst(&out.join("in.jsonl.zst"));
    assert!(docs.iter().enumerate().all(|(i, d)| d["id"] == format!("d{i}")));
}

#[test]
fn truncated_gzip_keeps_what_precedes_the_cut() {
    let dir = TestDir::new("bad-gz");
    let input = dir.join("in.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&many_lines(2000)).unwrap();
    let full = gz.finish().unwrap();
    std::fs::write(&input, &full[..full.len() / 2]).unwrap();
    let out = run_ok(&dir, &input);
    let c = counts(&out);
    assert!(c["documents_out"].as_u64().unwrap() > 300);
    let q = quarantine(&out, "in.jsonl.zst");
    assert!(
        q[0]["reason"].as_str().unwrap().contains("gzip stream is truncated"),
        "{q:?}"
    );
    assert!(q[0]["offset"].as_u64().unwrap() > 0);
}

#[test]
fn empty_file_and_empty_text() {
    let dir = TestDir::new("empty");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a-empty.jsonl"), b"").unwrap();
    std::fs::write(
        input.join("b.jsonl"),
        format!("{{\"id\":\"e\",\"text\":\"\"}}\n{{\"id\":\"w\",\"text\":\" \\n\\t \"}}\n{GOOD}\n"),
    )
    .unwrap();
    let out = run_ok(&dir, &input);
    let c = counts(&out);
    assert_eq!(c["documents_in"], 3);
    assert_eq!(c["rejected"]["empty_text"], 2);
    assert_eq!(c["documents_out"], 1);
    let empty = read_json(&out.join("_manifest/a-empty.jsonl.zst.json"));
    assert_eq!(empty["counts"]["documents_in"], 0);
    assert!(read_zst(&out.join("a-empty.jsonl.zst")).is_empty());
    let rejected = read_zst(&out.join("_rejected/b.jsonl.zst"));
    assert_eq!(rejected[0]["rejection"]["reason"], "empty_text");
}

#[test]
fn fifty_megabyte_document_passes_through() {
    let dir = TestDir::new("huge");
    let input = dir.join("in.jsonl");
    let paragraph = "Rain is expected across the northern valleys tomorrow, with snow on the highest peaks. ";
    let text = paragraph.repeat(50_000_000 / paragraph.len() + 1);
    assert!(text.len() >= 50_000_000);
    std::fs::write(
        &input,
        format!("{}\n{GOOD}\n", serde_json::json!({"id": "huge", "text": text})),
    )
    .unwrap();
    run_ok(&dir, &input);
    let docs = read_zst(&dir.join("out/langid/in.jsonl.zst"));
    assert_eq!(docs[0]["text"].as_str().unwrap().len(), text.len());
    assert_eq!(docs[0]["metadata"]["lang"], "eng");
}

#[test]
fn duplicate_ids_in_a_file_quarantine_the_later_record() {
    let dir = TestDir::new("dup-ids");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, format!("{GOOD}\n{}\n{GOOD_2}\n", GOOD.replace("river", "lake"))).unwrap();
    let out = run_ok(&dir, &input);
    let q = quarantine(&out, "in.jsonl.zst");
    assert_eq!(q.len(), 1);
    assert!(
        q[0]["reason"].as_str().unwrap().contains("duplicate id 'good-1'"),
        "{q:?}"
    );
    assert_eq!(q[0]["line"], 2);
    assert!(q[0]["raw"].as_str().unwrap().contains("lake"));
}

#[test]
fn missing_input_path_is_named() {
    let dir = TestDir::new("no-input");
    let config = write_config(&dir.path, &dir.join("does-not-exist"), "", &all_stages());
    let out = run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 2);
    let err = stderr(&out);
    assert!(
        err.contains("does-not-exist") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn unwritable_output_path_is_named() {
    let dir = TestDir::new("no-output");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, GOOD).unwrap();
    // A regular file where the output folder should be: not writable even as root.
    std::fs::write(dir.join("out"), b"a file").unwrap();
    let config = write_config(&dir.path, &input, "", &all_stages());
    let out = run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 2);
    let err = stderr(&out);
    assert!(
        err.contains("stage 'ingest'") && err.contains(&*dir.join("out").to_string_lossy()),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn error_rate_above_the_limit_fails_the_stage_until_accepted() {
    let dir = TestDir::new("error-rate");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, format!("{GOOD}\nnot json\n{GOOD_2}\n")).unwrap();
    let config = write_config(&dir.path, &input, "", &all_stages());
    let out = run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 2);
    let err = stderr(&out);
    assert!(
        err.contains("1 of 3 records") && err.contains("max_error_rate") && err.contains("_quarantine"),
        "{err}"
    );
    // The quarantine is there to look at; the next stage refuses to start.
    assert_eq!(quarantine(&dir.join("out/ingest"), "in.jsonl.zst").len(), 1);
    assert!(!dir.join("out/ingest/_manifest/stage.json").exists());
    run_expect(
        thresher(&dir.path, &["run", config.to_str().unwrap(), "--max-error-rate", "0.5"]),
        0,
    );
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);
}

#[test]
fn config_errors_are_all_reported() {
    let dir = TestDir::new("bad-config");
    let config = write_config(
        &dir.path,
        &dir.path,
        "",
        "[[stages]]\nkind = \"langid\"\nmin_score = 3\n[[stages]]\nkind = \"dedupe\"\n",
    );
    let out = run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 2);
    let err = stderr(&out);
    assert!(
        err.contains("pipeline.toml") && err.contains("min_score") && err.contains("dedupe"),
        "{err}"
    );
}

#[test]
fn parquet_and_wet_inputs() {
    let dir = TestDir::new("formats");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    write_parquet(&input.join("docs.parquet"));
    std::fs::copy(
        testdata().join("webcrawl/commoncrawl-whirlwind/whirlwind.warc.wet.gz"),
        input.join("cc.warc.wet.gz"),
    )
    .unwrap();
    let out = run_ok(&dir, &input);
    let docs = read_zst(&out.join("docs.jsonl.zst"));
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(docs[0]["id"], "p1");
    assert_eq!(docs[0]["url"], "https://example.org/a");
    assert_eq!(docs[0]["year"], 2024);
    // The row without an id gets a stable one: input key and record index.
    assert_eq!(docs[1]["id"], "docs.parquet#2");
    let q = quarantine(&out, "docs.jsonl.zst");
    assert!(q[0]["reason"].as_str().unwrap().contains("text"), "{q:?}");
    let wet = read_zst(&out.join("cc.jsonl.zst"));
    assert_eq!(wet.len(), 1);
    assert!(wet[0]["url"].as_str().unwrap().starts_with("http"));
    assert!(wet[0]["id"].as_str().unwrap().starts_with("urn:uuid:"));
    assert!(wet[0]["text"].as_str().unwrap().len() > 1000);
}

/// Inputs whose text and id have other names (RedPajama's `raw_content`
/// and `doc_id`), as JSONL and as Parquet: `[input] text_field`/`id_field`.
#[test]
fn text_and_id_fields_can_have_other_names() {
    let dir = TestDir::new("field-names");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    write_parquet_named(&input.join("rows.parquet"), "doc_id", "raw_content");
    std::fs::write(
        input.join("rp.jsonl"),
        "{\"doc_id\":\"rp-1\",\"raw_content\":\"The river floods every spring.\",\"text\":\"a title\"}\n\
         {\"doc_id\":\"rp-2\",\"text\":\"only the usual field\"}\n",
    )
    .unwrap();
    let config = write_config(
        &dir.path,
        &input,
        "text_field = \"raw_content\"\nid_field = \"doc_id\"\n",
        "[[stages]]\nkind = \"ingest\"\n",
    );
    run_expect(
        thresher(&dir.path, &["run", config.to_str().unwrap(), "--max-error-rate", "1"]),
        0,
    );
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);
    let out = dir.join("out/ingest");
    let rp = read_zst(&out.join("rp.jsonl.zst"));
    assert_eq!(rp.len(), 1, "{rp:?}");
    assert_eq!(rp[0]["id"], "rp-1");
    assert_eq!(rp[0]["text"], "The river floods every spring.");
    // The input's own `text` field is kept, under another name.
    assert_eq!(rp[0]["text_original"], "a title");
    let q = quarantine(&out, "rp.jsonl.zst");
    assert_eq!(q[0]["line"], 2);
    assert!(
        q[0]["reason"].as_str().unwrap().contains("missing field `raw_content`"),
        "{q:?}"
    );
    let rows = read_zst(&out.join("rows.jsonl.zst"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["id"], "p1");
    assert_eq!(rows[0]["text"], "A short article about tides and the moon.");
    assert_eq!(rows[1]["id"], "rows.parquet#2");

    // One name for both is refused before anything runs.
    let both = write_config(
        &dir.path,
        &input,
        "text_field = \"doc_id\"\nid_field = \"doc_id\"\n",
        "[[stages]]\nkind = \"ingest\"\n",
    );
    let refused = run_expect(thresher(&dir.path, &["run", both.to_str().unwrap()]), 2);
    assert!(stderr(&refused).contains("input.text_field"), "{}", stderr(&refused));
}

/// Three rows: a full one, one with a null text (bad), one without an id.
fn write_parquet(path: &Path) {
    write_parquet_named(path, "id", "text");
}

fn write_parquet_named(path: &Path, id: &str, text: &str) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let schema = Arc::new(
        parse_message_type(&format!(
            "message doc {{ OPTIONAL BYTE_ARRAY {id} (UTF8); OPTIONAL BYTE_ARRAY {text} (UTF8); \
                 OPTIONAL BYTE_ARRAY url (UTF8); REQUIRED INT64 year; }}"
        ))
        .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let strings = |values: &[Option<&str>]| -> (Vec<ByteArray>, Vec<i16>) {
        let present = values.iter().flatten().map(|s| ByteArray::from(*s)).collect();
        let levels = values.iter().map(|v| v.is_some() as i16).collect();
        (present, levels)
    };
    let columns: [&[Option<&str>]; 3] = [
        &[Some("p1"), Some("p2"), None],
        &[
            Some("A short article about tides and the moon."),
            None,
            Some("Another document without an id of its own."),
        ],
        &[Some("https://example.org/a"), None, None],
    ];
    for values in columns {
        let mut col = group.next_column().unwrap().unwrap();
        let (present, levels) = strings(values);
        col.typed::<ByteArrayType>()
            .write_batch(&present, Some(&levels), None)
            .unwrap();
        col.close().unwrap();
    }
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&[2024, 2023, 2022], None, None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}
