//! The steps of the `pack` stage: `tokenize` (per input shard) and `pack`
//! (one unit, after every shard is tokenized).
//!
//! Layout of the stage folder, beside the usual `_manifest/`, `_rejected/`
//! and `_quarantine/`:
//!
//! ```text
//! tokens/<shard>.u32             the shard's documents as token ids (BOS/EOS added), little-endian u32
//! tokens/<shard>.docs.jsonl.zst  one line per document: id, tokens, lang, source
//! tokens.u32                     rows of exactly seq_len tokens (np.memmap(..., "<u4").reshape(-1, seq_len))
//! row_ptr.u64                    rows + 1 offsets into the segment arrays
//! seg_len.u32                    tokens of each segment; cumsum per row = cu_seqlens
//! seg_doc.u32                    each segment's document, an index into documents.jsonl.zst
//! seg_chunk.u32                  which chunk of its document a segment is (0 unless split)
//! documents.jsonl.zst            every packed document in input order: id, tokens, lang, source
//! manifest.json                  tokenizer (path, sha256), special ids, seq_len, rows, fill, padding, splits, tokens by lang and source
//! ```
//!
//! Windows of documents are taken in input order, so the rows never depend
//! on the number of tasks that tokenized the shards.

use std::io::{Read, Write};

use serde_json::{json, Value};
use thresher_manifests::{shard_manifest_key, ObjectInfo, ShardManifest, StageStats};
use thresher_stages::pack::{pack_window, windows, Pack, PackStats};
use thresher_stages::{Decision, Document};

use crate::error::{Error, Result};
use crate::runner::{KeptSink, Pipeline, StagePlan, Tasks};
use crate::shard::InputShard;
use crate::storage::Storage;
use crate::writer::{HashingWriter, JsonlZstWriter};

pub const PACK_MANIFEST_KEY: &str = "manifest.json";
const PACKED_FILES: [&str; 5] = [
    "tokens.u32",
    "row_ptr.u64",
    "seg_len.u32",
    "seg_doc.u32",
    "seg_chunk.u32",
];
const DOCUMENTS_KEY: &str = "documents.jsonl.zst";

fn tokens_key(shard: &InputShard) -> String {
    format!("tokens/{}.u32", shard.output_name.trim_end_matches(".jsonl.zst"))
}

fn docs_key(shard: &InputShard) -> String {
    format!(
        "tokens/{}.docs.jsonl.zst",
        shard.output_name.trim_end_matches(".jsonl.zst")
    )
}

/// Width of the quality-score buckets of `tokens_by_quality_bucket`.
pub const QUALITY_BUCKET_WIDTH: f64 = 0.1;

/// The bucket of a quality score, named like the `quality` stage's
/// histogram bins: `[0.30, 0.40)`; `unscored` without a score.
pub fn quality_bucket(score: Option<f64>) -> String {
    match score {
        Some(score) => thresher_stages::quality::histogram_bin(score, QUALITY_BUCKET_WIDTH),
        None => "unscored".into(),
    }
}

/// Writes a shard's kept documents as token ids plus a document index.
struct TokenSink<'a> {
    pack: &'a Pack,
    tokens: HashingWriter,
    docs: JsonlZstWriter,
    bytes: Vec<u8>,
}

impl KeptSink for TokenSink<'_> {
    fn keep(&mut self, doc: &Document, stats: &mut StageStats) -> Result<()> {
        let ids = self.pack.tokenize(doc);
        self.bytes.clear();
        for id in &ids {
            self.bytes.extend_from_slice(&id.to_le_bytes());
        }
        self.tokens
            .write_all(&self.bytes)
            .map_err(|e| Error::Storage(format!("cannot write tokens: {e}")))?;
        let lang = doc.metadata.get("lang").and_then(Value::as_str).unwrap_or("unknown");
        let source = doc.source.as_deref().unwrap_or("unknown");
        let n = ids.len() as u64;
        stats.add("tokens_by_lang", lang, n);
        stats.add("tokens_by_source", source, n);
        // Code and quality as the `code` and `quality` stages tagged them
        // ("unknown" / "unscored" when they did not run or could not judge;
        // quality under the key `quality_field` names).
        let code = doc.metadata.get("code").filter(|c| c.is_object());
        let kind = match code.and_then(|c| c["is_code"].as_bool()) {
            Some(true) => "code",
            Some(false) => "prose",
            None => "unknown",
        };
        let code_language = match code {
            Some(c) => c["language"].as_str().unwrap_or("none"),
            None => "unknown",
        };
        stats.add("tokens_by_kind", kind, n);
        stats.add("tokens_by_code_language", code_language, n);
        let quality = doc
            .metadata
            .get(&self.pack.config.quality_field)
            .and_then(|q| q["score"].as_f64());
        stats.add("tokens_by_quality_bucket", &quality_bucket(quality), n);
        stats.add("tokens", "total", n);
        self.docs
            .write_value(&json!({"id": doc.id, "tokens": n, "lang": lang, "source": source}))
    }

    fn commit(self: Box<Self>) -> Result<Vec<ObjectInfo>> {
        Ok(vec![self.tokens.commit()?, self.docs.commit()?])
    }
}

/// Reads u32 tokens from the shard token files, one after the other.
struct TokenStream<'a> {
    storage: &'a dyn Storage,
    keys: std::vec::IntoIter<String>,
    current: Option<Box<dyn Read + Send>>,
}

impl TokenStream<'_> {
    /// Reads exactly `n` tokens into `out`.
    fn read(&mut self, n: usize, out: &mut Vec<u32>) -> Result<()> {
        let mut buf = vec![0u8; n * 4];
        let mut filled = 0;
        while filled < buf.len() {
            let reader = match &mut self.current {
                Some(r) => r,
                None => {
                    let key = self.keys.next().ok_or_else(|| {
                        Error::Input("token files end before the document index does; rerun the tokenize step".into())
                    })?;
                    self.current = Some(self.storage.open(&key)?);
                    self.current.as_mut().unwrap()
                }
            };
            let got = reader
                .read(&mut buf[filled..])
                .map_err(|e| Error::Storage(format!("cannot read token files: {e}")))?;
            if got == 0 {
                self.current = None;
            }
            filled += got;
        }
        out.extend(buf.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())));
        Ok(())
    }
}

impl Pipeline {
    pub(crate) fn tokenize_step(
        &self,
        stage: &StagePlan,
        pack: &Pack,
        shards: &[InputShard],
        tasks: Tasks,
    ) -> Result<(usize, usize)> {
        let input = self.input_storage(stage);
        let level = self.config.output.compression_level;
        let out = stage.output.as_ref();
        self.for_each_unit(
            stage,
            "tokenize",
            shards,
            tasks,
            |shard| self.shard_done(stage, shard),
            |shard, progress| {
                let sink = TokenSink {
                    pack,
                    tokens: HashingWriter::create(out, &tokens_key(shard))?,
                    docs: JsonlZstWriter::create(out, &docs_key(shard), level)?,
                    bytes: Vec::new(),
                };
                self.process_shard(
                    stage,
                    input.as_ref(),
                    shard,
                    &Default::default(),
                    &|docs, _, _| Ok(vec![Decision::Keep; docs.len()]),
                    Box::new(sink),
                    progress,
                )
            },
        )
    }

    /// Whether the packed rows are written (with the current config).
    pub(crate) fn packed(&self, stage: &StagePlan) -> Result<Option<Value>> {
        if !stage.output.exists(PACK_MANIFEST_KEY)? {
            return Ok(None);
        }
        let manifest: Value = serde_json::from_slice(&stage.output.read_all(PACK_MANIFEST_KEY)?)
            .map_err(|e| Error::Input(format!("{}: {e}", stage.output.url_of(PACK_MANIFEST_KEY))))?;
        Ok((manifest["config_hash"] == stage.config_hash.as_str()).then_some(manifest))
    }

    pub(crate) fn pack_step(
        &self,
        stage: &StagePlan,
        pack: &Pack,
        shards: &[InputShard],
        tasks: Tasks,
    ) -> Result<(usize, usize)> {
        let out = stage.output.as_ref();
        let mut missing = 0;
        for shard in shards {
            missing += usize::from(!self.shard_done(stage, shard)?);
        }
        if missing > 0 {
            return Err(Error::NotReady(format!(
                "stage '{}' step pack needs the tokenize step finished for all {} shard(s), but {missing} are missing; \
                 run `--step tokenize` for every task first",
                stage.name,
                shards.len()
            )));
        }
        self.for_each_unit(
            stage,
            "pack",
            &[0u32],
            tasks,
            |_| Ok(self.packed(stage)?.is_some()),
            |_, _| self.write_packed(stage, pack, shards, out),
        )
    }

    fn write_packed(&self, stage: &StagePlan, pack: &Pack, shards: &[InputShard], out: &dyn Storage) -> Result<()> {
        let config = &pack.config;
        let seq_len = config.seq_len;
        // Every document's length, in input order, and the document index file.
        let mut lengths: Vec<u32> = Vec::new();
        let mut documents = JsonlZstWriter::create(out, DOCUMENTS_KEY, self.config.output.compression_level)?;
        let mut stats = StageStats::default();
        for shard in shards {
            for line in crate::writer::read_jsonl_zst(out, &docs_key(shard))? {
                let n = line["tokens"].as_u64().unwrap_or(0);
                lengths.push(u32::try_from(n).map_err(|_| {
                    Error::Input(format!(
                        "document {} has {n} tokens; thresher packs documents of up to 2^32 tokens",
                        line["id"]
                    ))
                })?);
                documents.write_value(&line)?;
            }
            let key = shard_manifest_key(&shard.output_name);
            stats += &ShardManifest::from_json(&out.url_of(&key), &out.read_all(&key)?)?.stats;
        }
        let mut files: Vec<HashingWriter> = PACKED_FILES
            .iter()
            .map(|name| HashingWriter::create(out, name))
            .collect::<Result<_>>()?;
        let mut tokens = TokenStream {
            storage: out,
            keys: shards.iter().map(tokens_key).collect::<Vec<_>>().into_iter(),
            current: None,
        };
        let mut totals = PackStats::default();
        let mut segment_count: u64 = 0;
        let write = |file: &mut HashingWriter, bytes: &[u8]| {
            file.write_all(bytes)
                .map_err(|e| Error::Storage(format!("cannot write packed rows: {e}")))
        };
        write(&mut files[1], &0u64.to_le_bytes())?;
        let mut window_count = 0u64;
        let mut row_bytes = Vec::with_capacity(seq_len as usize * 4);
        for range in windows(&lengths, config.window_tokens) {
            let window_start = range.start;
            let window = &lengths[range];
            let window_tokens: u64 = window.iter().map(|&l| l as u64).sum();
            let mut window_ids = Vec::with_capacity(window_tokens as usize);
            let mut offsets = Vec::with_capacity(window.len() + 1);
            offsets.push(0usize);
            tokens.read(window_tokens as usize, &mut window_ids)?;
            for &len in window {
                offsets.push(offsets.last().unwrap() + len as usize);
            }
            let rows = pack_window(window, seq_len, config.shuffle_seed.wrapping_add(window_count));
            window_count += 1;
            totals += &PackStats::of(&rows, window, seq_len);
            for row in &rows {
                row_bytes.clear();
                for segment in row {
                    let doc_start = offsets[segment.doc as usize] + (segment.chunk as usize) * seq_len as usize;
                    for id in &window_ids[doc_start..doc_start + segment.len as usize] {
                        row_bytes.extend_from_slice(&id.to_le_bytes());
                    }
                    write(&mut files[2], &segment.len.to_le_bytes())?;
                    write(&mut files[3], &((window_start as u32) + segment.doc).to_le_bytes())?;
                    write(&mut files[4], &segment.chunk.to_le_bytes())?;
                }
                while row_bytes.len() < seq_len as usize * 4 {
                    row_bytes.extend_from_slice(&pack.pad.to_le_bytes());
                }
                write(&mut files[0], &row_bytes)?;
                segment_count += row.len() as u64;
                write(&mut files[1], &segment_count.to_le_bytes())?;
            }
        }
        let mut outputs = vec![documents.commit()?];
        for file in files {
            outputs.push(file.commit()?);
        }
        if config.megatron {
            outputs.extend(self.write_megatron(out, shards, &lengths)?);
        }
        let by = |group: &str| json!(stats.0.get(group).cloned().unwrap_or_default());
        let manifest = json!({
            "config_hash": stage.config_hash,
            "tokenizer": {
                // As configured (a URL stays a URL), not the local copy
                // the stage was built from.
                "path": stage.config_json["tokenizer"],
                "sha256": pack.tokenizer_sha256,
                "kind": pack.tokenizer.kind(),
                "vocab_size": pack.tokenizer.vocab_size(),
            },
            "special_ids": {"bos": pack.bos, "eos": pack.eos, "pad": pack.pad},
            "seq_len": seq_len,
            "dtype": "<u4",
            "rows": totals.rows,
            "segments": totals.segments,
            "documents": lengths.len(),
            "tokens": totals.tokens,
            "padding_tokens": totals.padding,
            "fill_percent": totals.fill_percent(),
            "padding_percent": 100.0 - totals.fill_percent(),
            "documents_split": totals.documents_split,
            "documents_split_that_fit_a_row": totals.documents_split_that_fit,
            "window_tokens": config.window_tokens,
            "windows": window_count,
            "shuffle_seed": config.shuffle_seed,
            "tokens_by_lang": by("tokens_by_lang"),
            "tokens_by_source": by("tokens_by_source"),
            "tokens_by_kind": by("tokens_by_kind"),
            "tokens_by_code_language": by("tokens_by_code_language"),
            "tokens_by_quality_bucket": by("tokens_by_quality_bucket"),
            "files": outputs,
        });
        tracing::info!(
            "stage '{}': {} rows of {seq_len} tokens, fill {:.3}%, {} of {} documents split ({} that would have fit a row)",
            stage.name,
            totals.rows,
            totals.fill_percent(),
            totals.documents_split,
            lengths.len(),
            totals.documents_split_that_fit
        );
        out.write_all(PACK_MANIFEST_KEY, &serde_json::to_vec_pretty(&manifest).expect("json"))
    }

    /// Megatron-LM's indexed dataset of the same documents: `megatron.bin`
    /// holds every document's tokens (int32), `megatron.idx` the `MMIDIDX`
    /// index (one sequence per document).
    fn write_megatron(&self, out: &dyn Storage, shards: &[InputShard], lengths: &[u32]) -> Result<Vec<ObjectInfo>> {
        let mut bin = HashingWriter::create(out, "megatron.bin")?;
        for shard in shards {
            // Token ids < 2^31 have the same bytes as u32 and as int32.
            let mut reader = out.open(&tokens_key(shard))?;
            std::io::copy(&mut reader, &mut bin)
                .map_err(|e| Error::Storage(format!("cannot write megatron.bin: {e}")))?;
        }
        let n = lengths.len() as u64;
        let mut idx = Vec::with_capacity(34 + lengths.len() * 20 + 8);
        idx.extend_from_slice(b"MMIDIDX\x00\x00");
        idx.extend_from_slice(&1u64.to_le_bytes()); // version
        idx.push(4); // dtype code: int32
        idx.extend_from_slice(&n.to_le_bytes()); // sequences
        idx.extend_from_slice(&(n + 1).to_le_bytes()); // document boundaries
        for &len in lengths {
            idx.extend_from_slice(&(len as i32).to_le_bytes());
        }
        let mut pointer = 0i64;
        for &len in lengths {
            idx.extend_from_slice(&pointer.to_le_bytes());
            pointer += len as i64 * 4;
        }
        for i in 0..=n {
            idx.extend_from_slice(&(i as i64).to_le_bytes());
        }
        let mut idx_writer = HashingWriter::create(out, "megatron.idx")?;
        idx_writer
            .write_all(&idx)
            .map_err(|e| Error::Storage(format!("cannot write megatron.idx: {e}")))?;
        Ok(vec![bin.commit()?, idx_writer.commit()?])
    }

    /// The packed files, for the stage summary (empty for other stages).
    pub(crate) fn stage_outputs(&self, stage: &StagePlan) -> Result<Option<Vec<ObjectInfo>>> {
        match self.packed(stage)? {
            None => Ok(None),
            Some(manifest) => {
                let mut files: Vec<ObjectInfo> = serde_json::from_value(manifest["files"].clone()).map_err(|e| {
                    Error::Input(format!(
                        "{}: bad files list: {e}",
                        stage.output.url_of(PACK_MANIFEST_KEY)
                    ))
                })?;
                let bytes = stage.output.read_all(PACK_MANIFEST_KEY)?;
                files.push(ObjectInfo {
                    name: PACK_MANIFEST_KEY.into(),
                    size: bytes.len() as u64,
                    xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
                });
                Ok(Some(files))
            }
        }
    }
}
