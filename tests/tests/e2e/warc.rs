//! WARC captures as input: real Common Crawl and wget WARC files become
//! documents of the pages' main text; what is not a page is counted, broken
//! records are quarantined with their offset, and the counts add up.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::util::*;

fn ingest(dir: &TestDir, input: &Path, extra: &str) -> Value {
    let config = write_config(&dir.path, input, extra, "[[stages]]\nkind = \"ingest\"\n");
    let out = run_expect(
        thresher(&dir.path, &["run", config.to_str().unwrap(), "--max-error-rate", "1"]),
        0,
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // `inspect` checks every manifest's accounting (in = out + rejected + quarantined).
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);
    read_json(&dir.join("out/ingest/_manifest/stage.json"))
}

fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// Common Crawl's own capture of one page, as WARC (plain and gzipped) and
/// as the WET text Common Crawl extracted from it: thresher's main text of
/// the WARC page must be a part of that page's text (Common Crawl's keeps the
/// menus and footers too), and the same from either file.
#[test]
fn a_common_crawl_page_becomes_its_main_text() {
    let dir = TestDir::new("warc-cc");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let whirlwind = testdata().join("webcrawl/commoncrawl-whirlwind");
    for (name, copy) in [
        ("whirlwind.warc", "page.warc"),
        ("whirlwind.warc.gz", "page-gz.warc.gz"),
        ("whirlwind.warc.wet.gz", "text.warc.wet.gz"),
        // Link metadata, no page text: passed over by name.
        ("whirlwind.warc.wat.gz", "links.warc.wat.gz"),
    ] {
        std::fs::copy(whirlwind.join(name), input.join(copy)).unwrap();
    }
    let summary = ingest(&dir, &input, "");
    let out = dir.join("out/ingest");
    let plain = read_zst(&out.join("page.jsonl.zst"));
    let gz = read_zst(&out.join("page-gz.jsonl.zst"));
    assert_eq!(plain, gz, "the plain and the gzipped WARC give the same documents");
    assert_eq!(plain.len(), 1, "one response record: {plain:?}");
    let page = &plain[0];
    let wet = read_zst(&out.join("text.jsonl.zst"));
    assert_eq!(wet.len(), 1);
    assert_eq!(page["url"], wet[0]["url"]);
    assert!(page["id"].as_str().unwrap().starts_with("urn:uuid:"));
    assert_ne!(
        page["id"], wet[0]["id"],
        "the response record's id, not the conversion's"
    );
    assert_eq!(page["metadata"]["http_status"], 200);
    assert_eq!(page["metadata"]["content_type"], "text/html");
    let text = page["text"].as_str().unwrap();
    let wet_text = wet[0]["text"].as_str().unwrap();
    let (main, all) = (words(text), words(wet_text));
    assert!(main.len() > 50, "too little main text: {text}");
    let shared = main.intersection(&all).count();
    assert!(
        shared * 100 >= main.len() * 90,
        "only {shared} of {} words of the main text are in Common Crawl's text of the page:\n{text}",
        main.len()
    );
    assert!(text.len() < wet_text.len(), "the main text leaves the page's menus out");
    assert_eq!(summary["counts"]["quarantined"], 0, "{summary}");
}

/// Real wget captures (allenai/dolma's test WARCs): chunked bodies, several
/// charsets, request and metadata records around the responses.
#[test]
fn wget_captures_give_one_document_per_page() {
    let dir = TestDir::new("warc-wget");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let dolma = testdata().join("webcrawl/dolma");
    let mut responses = 0;
    for (folder, name) in [
        ("warc", "sample-0000"),
        ("warc", "sample-0001"),
        ("science", "0"),
        ("science", "1"),
    ] {
        let from = dolma.join(folder).join(format!("{name}.warc.gz"));
        std::fs::copy(&from, input.join(format!("{folder}-{name}.warc.gz"))).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(&from).unwrap()),
            &mut text,
        )
        .unwrap_or_default();
        responses += text.matches("WARC-Type: response").count();
    }
    let summary = ingest(&dir, &input, "");
    let counts = &summary["counts"];
    assert_eq!(counts["documents_in"], responses, "one record per response: {summary}");
    assert_eq!(counts["quarantined"], 0, "{summary}");
    let docs = stage_documents(&dir.join("out/ingest"));
    assert!(
        docs.len() * 10 >= responses * 8,
        "{} of {responses} pages have text",
        docs.len()
    );
    for doc in &docs {
        let text = doc["text"].as_str().unwrap();
        assert!(
            !text.contains("<div") && !text.contains("<p>") && !text.contains("</"),
            "markup left in {}: {text}",
            doc["url"]
        );
        assert!(!text.contains('\u{fffd}'), "mis-decoded text in {}", doc["url"]);
        assert!(doc["url"].as_str().unwrap().starts_with("http"), "{doc}");
    }
    // Documents are unique pages (ids are WARC-Record-IDs).
    let ids: BTreeSet<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), docs.len());
}

fn warc_record(kind: &str, uri: &str, block: &[u8]) -> Vec<u8> {
    let mut record = format!(
        "WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:uuid:{uri}>\r\nWARC-Target-URI: {uri}\r\n\
         WARC-Date: 2024-05-01T00:00:00Z\r\nContent-Type: application/http; msgtype={kind}\r\nContent-Length: {}\r\n\r\n",
        block.len()
    )
    .into_bytes();
    record.extend_from_slice(block);
    record.extend_from_slice(b"\r\n\r\n");
    record
}

/// What is not a page is counted by reason; a broken page is quarantined
/// with its offset; a body holding a line that reads like a WARC header does
/// not cut its record; a record cut short by the end of the file is kept.
#[test]
fn records_that_are_not_pages_are_counted_and_broken_ones_quarantined() {
    let dir = TestDir::new("warc-mixed");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let page = |title: &str| {
        format!(
            "<html><head><title>{title}</title></head><body><article><h1>{title}</h1>\
             <p>Rivers carry water from the mountains to the sea, shaping valleys over thousands of years, and {title} is no exception.</p>\
             <p>Their floods bring silt that makes the plains fertile, which is why the oldest cities grew along their banks.</p>\
             </article></body></html>"
        )
    };
    let ok = |title: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}",
            page(title)
        )
    };
    let mut file = Vec::new();
    file.extend(warc_record(
        "request",
        "https://a.example/1",
        b"GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
    ));
    file.extend(warc_record(
        "response",
        "https://a.example/1",
        ok("The Danube").as_bytes(),
    ));
    file.extend(warc_record(
        "response",
        "https://a.example/old",
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: /1\r\n\r\n",
    ));
    file.extend(warc_record(
        "response",
        "https://a.example/logo.png",
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\0\0",
    ));
    // A PDF whose bytes hold a line that reads like a WARC version line.
    file.extend(warc_record(
        "response",
        "https://a.example/doc.pdf",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\nWARC/1.0\r\nnot a header\r\n",
    ));
    file.extend(warc_record(
        "response",
        "https://a.example/broken",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\nthis is not gzip",
    ));
    file.extend(warc_record(
        "response",
        "https://a.example/2",
        ok("The Rhine").as_bytes(),
    ));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&file).unwrap();
    std::fs::write(input.join("crawl.warc.gz"), gz.finish().unwrap()).unwrap();

    let summary = ingest(&dir, &input, "");
    let shown = stdout(&run_expect(
        thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]),
        0,
    ));
    assert!(shown.contains("ingest: http_redirect 1, not_html_or_text 2"), "{shown}");
    let docs = stage_documents(&dir.join("out/ingest"));
    let urls: Vec<&str> = docs.iter().map(|d| d["url"].as_str().unwrap()).collect();
    assert_eq!(urls, ["https://a.example/1", "https://a.example/2"]);
    assert!(docs[0]["text"].as_str().unwrap().contains("The Danube is no exception"));
    assert_eq!(docs[1]["metadata"]["title"], "The Rhine");
    let skipped = &summary["stats"]["input_records_skipped"];
    assert_eq!(skipped["http_redirect"], 1, "{summary}");
    assert_eq!(skipped["not_html_or_text"], 2, "{summary}");
    let counts = &summary["counts"];
    assert_eq!(counts["documents_in"], 3, "{summary}");
    assert_eq!(counts["quarantined"], 1, "{summary}");
    let quarantined = read_zst(&dir.join("out/ingest/_quarantine/crawl.jsonl.zst"));
    let reason = quarantined[0]["reason"].as_str().unwrap();
    assert!(reason.contains("not valid gzip"), "{reason}");
    assert!(quarantined[0]["file"].as_str().unwrap().ends_with("crawl.warc.gz"));
    assert!(quarantined[0]["offset"].as_u64().unwrap() > 0);
}
