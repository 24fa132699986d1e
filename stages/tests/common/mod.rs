//! What the tests against datatrove share: the heuristics fixture's
//! documents, which the bad-words fixture names by id.

use serde_json::Value;

/// The fixture's records, each with its `text` (a source file's read from
/// ../shared/testdata as the generator read it).
pub fn heuristics_fixture() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/heuristics-datatrove.jsonl.zst"
    );
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
    let raw = zstd::decode_all(std::fs::File::open(path).expect("fixture")).expect("zstd");
    String::from_utf8(raw)
        .unwrap()
        .lines()
        .map(|l| {
            let mut record: Value = serde_json::from_str(l).unwrap();
            if let Some(file) = record["path"].as_str() {
                let bytes = std::fs::read(testdata.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
                let max = record["max_bytes"].as_u64().unwrap() as usize;
                let text = String::from_utf8_lossy(&bytes[..max.min(bytes.len())]).into_owned();
                record["text"] = Value::from(text);
            }
            record
        })
        .collect()
}
