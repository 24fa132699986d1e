//! `quality`: scores every document with a Llama-architecture sequence
//! classifier (a Hugging Face `LlamaForSequenceClassification` checkpoint) and
//! optionally keeps only documents scoring at least `min_score`.
//!
//! Tags `metadata.quality = {"score": s}` plus `"probabilities": {label: p}`
//! for classification heads. Documents are truncated to `max_tokens` and
//! scored in batches of at most `batch_tokens` tokens (see
//! `LlamaClassifier::batched`: length-sorted and padded, or packed with no
//! padding for the fused kernels); results return in input order. Manifest
//! stats: `quality_histogram` (bins of `histogram_width`) and
//! `quality.tokens_scored`.

use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use thresher_classifiers::candle_core::{DType, Device};
use thresher_classifiers::{
    checkpoint_tokenizer, judge, ClassifierInput, Judgement, Kernels, LlamaClassifier, TextTokenizer,
};

use crate::{BatchStage, Decision, Document, Error, Result, StageStats};

/// Configuration of `quality`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Checkpoint folder: `config.json`, `model.safetensors` (or a sharded
    /// index), and `tokenizer.json` or `tokenizer.model`.
    pub model: PathBuf,
    /// Tokenizer file, when it is not in the model folder.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Tokens scored per document (BOS included); the rest is cut.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Tokens per forward batch: padding included where candle's ops pad;
    /// the fused kernels pack documents with none.
    #[serde(default = "default_batch_tokens")]
    pub batch_tokens: usize,
    /// When set, documents scoring below go to the rejected sidecar.
    #[serde(default)]
    pub min_score: Option<f64>,
    /// `auto` (a GPU when the build has CUDA and one is present), `cpu`,
    /// `cuda` or `cuda:N`. GPUs compute in bf16, CPUs in f32.
    #[serde(default = "default_device")]
    pub device: String,
    /// `auto` (the fused kernels on a CPU, and on a GPU for head sizes 64 and
    /// 128; candle's own ops otherwise), `fused` or `plain`.
    #[serde(default)]
    pub kernels: Kernels,
    /// Put the tokenizer's BOS token first, as Hugging Face tokenizers do.
    #[serde(default = "default_true")]
    pub add_bos: bool,
    /// Width of the score histogram's bins in the manifest.
    #[serde(default = "default_histogram_width")]
    pub histogram_width: f64,
    /// The metadata key of the tag, so that two classifiers in one pipeline
    /// (say an educational-value score and a toxicity score) keep both tags.
    /// Left out of the config hash while it is the default, so configs
    /// written before the key existed keep their outputs.
    #[serde(default = "default_field_name", skip_serializing_if = "is_default_field")]
    pub field: String,
}

/// The metadata key `quality` writes by default, and the one `pack`'s
/// quality buckets read by default.
pub const DEFAULT_FIELD: &str = "quality";

pub fn default_field_name() -> String {
    DEFAULT_FIELD.into()
}

/// Serde's `skip_serializing_if` takes a `&String`.
#[allow(clippy::ptr_arg)]
pub fn is_default_field(field: &String) -> bool {
    field == DEFAULT_FIELD
}

/// A metadata key a stage may write or read (the config key `key` names
/// it): letters, digits, `_` and `-`, not starting with `_` (kept for
/// thresher's own fields).
pub fn check_field(key: &str, field: &str) -> std::result::Result<(), String> {
    let valid = !field.is_empty()
        && !field.starts_with('_')
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match valid {
        true => Ok(()),
        false => Err(format!(
            "{key} '{field}' must be a metadata key of letters, digits, '_' and '-', not starting with '_'"
        )),
    }
}

fn default_max_tokens() -> usize {
    512
}
fn default_batch_tokens() -> usize {
    16384
}
fn default_device() -> String {
    "auto".into()
}
fn default_true() -> bool {
    true
}
/// The name of the histogram bin of `width` holding `score`: `[0.30, 0.40)`.
/// `thresher report` joins the quality stage's bins with pack's token bins
/// on this name, so both use this function.
pub fn histogram_bin(score: f64, width: f64) -> String {
    let low = (score / width).floor() * width;
    format!("[{low:.2}, {:.2})", low + width)
}

fn default_histogram_width() -> f64 {
    0.5
}

impl QualityConfig {
    /// Checks numbers and files without loading the model.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Error::Config {
            kind: "quality",
            message,
        };
        if self.max_tokens == 0 || self.batch_tokens < self.max_tokens {
            return Err(invalid(format!(
                "max_tokens ({}) must be positive and at most batch_tokens ({})",
                self.max_tokens, self.batch_tokens
            )));
        }
        if self.histogram_width <= 0.0 {
            return Err(invalid("histogram_width must be positive".into()));
        }
        check_field("field", &self.field).map_err(invalid)?;
        // A checkpoint in object storage is checked when the stage is built,
        // on the node that fetches it.
        if !crate::is_url(&self.model) {
            if !self.model.join("config.json").is_file() {
                return Err(invalid(format!("{} has no config.json", self.model.display())));
            }
            self.tokenizer_path()?;
        }
        DeviceSetting::parse(&self.device).map(|_| ())
    }

    fn tokenizer_path(&self) -> Result<PathBuf> {
        self.tokenizer
            .clone()
            .or_else(|| checkpoint_tokenizer(&self.model))
            .ok_or_else(|| Error::Config {
                kind: "quality",
                message: format!(
                    "{} has no tokenizer.json or tokenizer.model; set `tokenizer`",
                    self.model.display()
                ),
            })
    }
}

/// A `device` setting, read without opening anything: a config naming a
/// GPU is valid on a machine without one (the login node that submits it,
/// the CPU nodes running the other stages); the GPU is opened when the stage
/// is built, on the node that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSetting {
    /// A GPU when the build has CUDA and one is present, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSetting {
    /// Reads `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
                Some(index) => Ok(Self::Cuda(index)),
                None => Err(Error::Config {
                    kind: "quality",
                    message: format!("device '{other}': expected auto, cpu, cuda or cuda:N"),
                }),
            },
        }
    }

    /// Opens the device (`Auto`: GPU 0 when the build has CUDA and the node
    /// a GPU it can use, else the CPU).
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            // A CUDA build on a node without a GPU (or whose driver fails)
            // scores on the CPU, as `auto` promises, and says why.
            Self::Auto if thresher_classifiers::candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(0)
                .unwrap_or_else(|e| {
                    tracing::warn!("device auto: no usable GPU ({e}); the quality stage scores on the CPU");
                    Device::Cpu
                })),
            Self::Auto => {
                if let Some(file) = gpu_without_cuda_build(&NVIDIA_FILES) {
                    tracing::warn!(
                        "device auto: this node has an NVIDIA GPU ({file}) but this thresher was built \
                         without the `cuda` feature, so the quality stage scores on the CPU, far slower; \
                         build with ../shared/cuda/build-cuda.sh, or set device = \"cpu\" to say it is meant"
                    );
                }
                Ok(Device::Cpu)
            }
            Self::Cuda(index) => Device::new_cuda(index).map_err(|e| Error::Config {
                kind: "quality",
                message: format!(
                    "device cuda:{index}: {e} (a GPU needs a build with the `cuda` feature: \
                     ../shared/cuda/build-cuda.sh, and a GPU on the node running this stage)"
                ),
            }),
        }
    }
}

/// Files that exist on a node with an NVIDIA GPU and its driver.
const NVIDIA_FILES: [&str; 2] = ["/dev/nvidiactl", "/proc/driver/nvidia/version"];

/// The first of `files` that exists, when this build cannot use a GPU:
/// `auto` then falls back to the CPU on a GPU node, which a user running
/// the wrong binary must hear about.
fn gpu_without_cuda_build<'a>(files: &[&'a str]) -> Option<&'a str> {
    if thresher_classifiers::candle_core::utils::cuda_is_available() {
        return None;
    }
    files.iter().copied().find(|f| std::path::Path::new(f).exists())
}

/// The candle device of a `device` setting (`auto`, `cpu`, `cuda`, `cuda:N`), opened.
pub fn parse_device(name: &str) -> Result<Device> {
    DeviceSetting::parse(name)?.open()
}

pub struct Quality {
    config: QualityConfig,
    classifier: LlamaClassifier,
    tokenizer: TextTokenizer,
    labels: Vec<String>,
    input: ClassifierInput,
}

impl Quality {
    pub fn new(config: QualityConfig) -> Result<Self> {
        config.validate()?;
        let invalid = |message: String| Error::Config {
            kind: "quality",
            message,
        };
        let device = parse_device(&config.device)?;
        let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
        let classifier = LlamaClassifier::load_with_kernels(&config.model, &device, dtype, config.kernels)
            .map_err(|e| invalid(e.to_string()))?;
        if !classifier.has_head() {
            return Err(invalid(format!(
                "{} has no `score` head: it is a backbone; train a head with `thresher classifier train`",
                config.model.display()
            )));
        }
        let tokenizer = TextTokenizer::load(&config.tokenizer_path()?).map_err(|e| invalid(e.to_string()))?;
        if tokenizer.vocab_size() > classifier.config.vocab_size {
            return Err(invalid(format!(
                "the tokenizer has {} ids but the model only {}",
                tokenizer.vocab_size(),
                classifier.config.vocab_size
            )));
        }
        let input = ClassifierInput::new(&tokenizer, &classifier.config, config.add_bos, config.max_tokens);
        Ok(Self {
            labels: classifier.config.labels(),
            config,
            classifier,
            tokenizer,
            input,
        })
    }

    /// Token ids scored for a text: BOS, then the text, cut at `max_tokens`.
    fn ids(&self, text: &str) -> Vec<u32> {
        self.input.ids(&self.tokenizer, text)
    }

    /// Scores of `texts`, in input order (`None` for a text with no tokens).
    pub fn score(&self, texts: &[&str]) -> Result<Vec<Option<Judgement>>> {
        Ok(self.score_counting(texts)?.0)
    }

    /// [`Quality::score`], plus the number of tokens scored.
    ///
    /// Tokenizing runs on its own thread (spread over the rayon pool), one
    /// chunk of documents ahead of the model: while the model (asynchronous
    /// on a GPU) scores one chunk, the CPU tokenizes the next. Each chunk is length-sorted and batched on its
    /// own, so chunks are large enough for the sort to pay.
    fn score_counting(&self, texts: &[&str]) -> Result<(Vec<Option<Judgement>>, u64)> {
        let mut logits = Vec::with_capacity(texts.len());
        let mut tokens = 0u64;
        std::thread::scope(|scope| -> Result<()> {
            // One chunk in flight: memory stays at two chunks of ids.
            let (chunks, tokenized) = std::sync::mpsc::sync_channel::<Vec<Vec<u32>>>(1);
            scope.spawn(move || {
                for chunk in texts.chunks(TOKENIZE_AHEAD_DOCUMENTS) {
                    // All cores tokenize: a GPU eats tokens faster than one core makes them.
                    let ids = chunk.par_iter().map(|t| self.ids(t)).collect();
                    // A closed channel means the model side stopped on an error.
                    if chunks.send(ids).is_err() {
                        return;
                    }
                }
            });
            for ids in tokenized {
                tokens += ids.iter().map(|i| i.len() as u64).sum::<u64>();
                let chunk_logits = self
                    .classifier
                    .batched(&ids, self.config.batch_tokens, LlamaClassifier::logits_on_device)
                    .map_err(|e| Error::Config {
                        kind: "quality",
                        message: e.to_string(),
                    })?;
                logits.extend(chunk_logits);
            }
            Ok(())
        })?;
        let judgements = logits
            .iter()
            .map(|l| (!l.is_empty()).then(|| judge(l, &self.labels)))
            .collect();
        Ok((judgements, tokens))
    }
}

/// Documents tokenized per chunk (see [`Quality::score_counting`]).
const TOKENIZE_AHEAD_DOCUMENTS: usize = 256;

impl BatchStage for Quality {
    fn process_batch(&self, docs: &mut [Document], stats: &mut StageStats) -> Result<Vec<Decision>> {
        let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        // A model that fails on a batch is a broken checkpoint or device, not
        // a property of the documents: the error stops the stage.
        let (scores, tokens) = self.score_counting(&texts)?;
        stats.add("quality", "tokens_scored", tokens);
        Ok(docs
            .iter_mut()
            .zip(scores)
            .map(|(doc, scored)| {
                let Some(Judgement { score, probabilities }) = scored else {
                    doc.metadata.insert(self.config.field.clone(), Value::Null);
                    stats.add("quality_histogram", "unscored", 1);
                    return Decision::Keep;
                };
                // The histogram and the filter judge the score as it is
                // written: a later stage (pack's quality buckets) or a user
                // filtering the output reads only the tag, and must agree.
                let written = round4(score);
                let mut tag = Map::new();
                tag.insert("score".into(), json!(written));
                if let Some(probabilities) = probabilities {
                    let probs: Map<String, Value> =
                        probabilities.into_iter().map(|(l, p)| (l, json!(round4(p)))).collect();
                    tag.insert("probabilities".into(), Value::Object(probs));
                }
                doc.metadata.insert(self.config.field.clone(), Value::Object(tag));
                stats.add(
                    "quality_histogram",
                    &histogram_bin(written, self.config.histogram_width),
                    1,
                );
                match self.config.min_score {
                    Some(min) if written < min => Decision::Drop {
                        reason: "quality_below_min_score",
                        detail: json!({ "score": written, "min_score": min }),
                    },
                    _ => Decision::Keep,
                }
            })
            .collect())
    }
}

fn round4(x: f32) -> f64 {
    (x as f64 * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The tiny parity checkpoint (vocabulary 512) and the byte-level
    /// tokenizer beside it: 256 byte tokens plus 256 specials = 512 ids.
    fn tiny_model() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../classifiers/tests/fixtures/tiny-llama-cls/classes")
    }

    fn config(model: PathBuf) -> QualityConfig {
        let tokenizer = model.join("../byte-tokenizer.model");
        serde_json::from_value(
            json!({"model": model, "tokenizer": tokenizer, "device": "cpu", "max_tokens": 64, "batch_tokens": 128}),
        )
        .unwrap()
    }

    /// A config naming a GPU is checked without opening it (the node that
    /// reads it may have none); building the stage opens it and says which.
    #[test]
    fn a_gpu_is_opened_when_the_stage_is_built_not_when_the_config_is_read() {
        let mut cfg = config(tiny_model());
        for (name, setting) in [
            ("auto", DeviceSetting::Auto),
            ("cpu", DeviceSetting::Cpu),
            ("cuda", DeviceSetting::Cuda(0)),
            ("cuda:3", DeviceSetting::Cuda(3)),
        ] {
            assert_eq!(DeviceSetting::parse(name).unwrap(), setting);
        }
        for bad in ["gpu", "cuda:", "cuda:x", "CUDA"] {
            cfg.device = bad.into();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("cuda:N"), "{err}");
        }
        // A GPU node running a build without CUDA is noticed.
        let present = std::env::temp_dir().join(format!("thresher-nvidiactl-{}", std::process::id()));
        std::fs::write(&present, b"").unwrap();
        let files = ["/nonexistent/nvidiactl", present.to_str().unwrap()];
        let noticed = gpu_without_cuda_build(&files);
        std::fs::remove_file(&present).unwrap();
        match thresher_classifiers::candle_core::utils::cuda_is_available() {
            false => assert_eq!(noticed, Some(files[1])),
            true => assert_eq!(noticed, None),
        }
        assert_eq!(gpu_without_cuda_build(&files[..1]), None);

        // No machine running the tests has a hundredth GPU.
        cfg.device = "cuda:99".into();
        cfg.validate().unwrap();
        let err = Quality::new(cfg).err().expect("no GPU 99").to_string();
        assert!(
            err.contains("cuda:99") && err.contains("node running this stage"),
            "{err}"
        );
    }

    #[test]
    fn the_kernels_key_picks_the_kernels_and_both_score_alike() {
        let texts = ["a text about rivers and bridges", "x", "medium length text here"];
        let mut scores = Vec::new();
        for kernels in ["plain", "fused"] {
            let mut cfg = serde_json::to_value(config(tiny_model())).unwrap();
            cfg["kernels"] = json!(kernels);
            let stage = Quality::new(serde_json::from_value(cfg).unwrap()).unwrap();
            assert_eq!(
                serde_json::to_value(stage.classifier.kernels()).unwrap(),
                json!(kernels)
            );
            scores.push(stage.score(&texts).unwrap());
        }
        for (plain, fused) in scores[0].iter().zip(&scores[1]) {
            let (a, b) = (plain.as_ref().unwrap().score, fused.as_ref().unwrap().score);
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let mut cfg = serde_json::to_value(config(tiny_model())).unwrap();
        cfg["kernels"] = json!("flash");
        let err = serde_json::from_value::<QualityConfig>(cfg).unwrap_err().to_string();
        assert!(err.contains("flash") && err.contains("plain"), "{err}");
    }

    #[test]
    fn batched_scores_equal_one_at_a_time_and_come_back_in_order() {
        let stage = Quality::new(config(tiny_model())).unwrap();
        let texts = [
            "short",
            "a somewhat longer text about rivers and bridges",
            "x",
            "medium length text here",
        ];
        let batched = stage.score(&texts).unwrap();
        for (text, scored) in texts.iter().zip(&batched) {
            let alone = stage.score(&[text]).unwrap();
            let (a, b) = (scored.as_ref().unwrap().score, alone[0].as_ref().unwrap().score);
            assert!((a - b).abs() < 1e-5, "{text}: {a} vs {b}");
        }
        let probs = batched[0].clone().unwrap().probabilities.unwrap();
        assert_eq!(
            probs.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["low", "medium", "high"]
        );
        assert!((probs.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-5);
        // A long text is cut at max_tokens (BOS included).
        assert_eq!(stage.ids(&"y".repeat(1000)).len(), 64);
        assert_eq!(stage.ids("ab")[0], 256, "BOS of the byte-level tokenizer");
    }

    #[test]
    fn scores_spanning_several_tokenizer_chunks_come_back_in_order() {
        let stage = Quality::new(config(tiny_model())).unwrap();
        // Lengths vary so that each chunk's length sort reorders its documents.
        let texts: Vec<String> = (0..TOKENIZE_AHEAD_DOCUMENTS * 2 + 7)
            .map(|i| format!("{i} {}", "word ".repeat(i * 7 % 13)))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let all = stage.score(&refs).unwrap();
        assert_eq!(all.len(), texts.len());
        for i in (0..texts.len()).step_by(37).chain([texts.len() - 1]) {
            let alone = stage.score(&[refs[i]]).unwrap()[0].clone().unwrap().score;
            let got = all[i].as_ref().unwrap().score;
            assert!((got - alone).abs() < 1e-5, "text {i}: {got} vs {alone}");
        }
    }

    #[test]
    fn tags_filters_and_counts() {
        let mut cfg = config(tiny_model());
        let stage = Quality::new(cfg.clone()).unwrap();
        let mut docs: Vec<Document> = ["one text", "another text", "a third one"]
            .iter()
            .enumerate()
            .map(|(i, t)| Document::new(i.to_string(), *t))
            .collect();
        let mut stats = StageStats::default();
        let decisions = stage.process_batch(&mut docs, &mut stats).unwrap();
        assert!(decisions.iter().all(|d| *d == Decision::Keep));
        let scores: Vec<f64> = docs
            .iter()
            .map(|d| d.metadata["quality"]["score"].as_f64().unwrap())
            .collect();
        assert_eq!(stats.0["quality_histogram"].values().sum::<u64>(), 3);
        // A threshold between the lowest score and the next drops exactly one.
        let mut sorted = scores.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(sorted[0] < sorted[1], "{sorted:?}");
        cfg.min_score = Some((sorted[0] + sorted[1]) / 2.0);
        let stage = Quality::new(cfg).unwrap();
        let decisions = stage.process_batch(&mut docs, &mut StageStats::default()).unwrap();
        let dropped = decisions
            .iter()
            .filter(|d| {
                matches!(
                    d,
                    Decision::Drop {
                        reason: "quality_below_min_score",
                        ..
                    }
                )
            })
            .count();
        assert_eq!(dropped, 1);
    }

    #[test]
    fn the_histogram_and_the_filter_judge_the_score_as_written() {
        let text = "one text";
        let raw = Quality::new(config(tiny_model())).unwrap().score(&[text]).unwrap()[0]
            .clone()
            .unwrap()
            .score;
        let written = round4(raw);
        assert_ne!(f64::from(raw), written, "the fixture's score has more than 4 digits");
        // A threshold between the raw and the written score, and a bin
        // edge there too: the tag alone must tell which side it is on.
        let mut cfg = config(tiny_model());
        cfg.min_score = Some((f64::from(raw) + written) / 2.0);
        cfg.histogram_width = cfg.min_score.unwrap();
        let stage = Quality::new(cfg.clone()).unwrap();
        let mut docs = vec![Document::new("0", text)];
        let mut stats = StageStats::default();
        let decision = stage.process_batch(&mut docs, &mut stats).unwrap().remove(0);
        let tag = docs[0].metadata["quality"]["score"].as_f64().unwrap();
        assert_eq!(tag, written);
        assert_eq!(
            decision == Decision::Keep,
            tag >= cfg.min_score.unwrap(),
            "{decision:?}"
        );
        let bins: Vec<&String> = stats.0["quality_histogram"].keys().collect();
        assert_eq!(bins, [&histogram_bin(tag, cfg.histogram_width)]);
    }

    #[test]
    fn config_errors_name_the_problem() {
        let mut cfg = config(PathBuf::from("/nonexistent"));
        assert!(cfg.validate().unwrap_err().to_string().contains("config.json"));
        cfg = config(tiny_model());
        cfg.device = "tpu".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("tpu"));
    }

    /// `field` names the tag's key: a second classifier keeps the first's
    /// tag. The default stays out of the serialized config (so out of the
    /// config hash of outputs made before the key existed).
    #[test]
    fn the_field_key_names_the_tag() {
        let mut cfg = config(tiny_model());
        assert!(serde_json::to_value(&cfg).unwrap().get("field").is_none());
        cfg.field = "edu".into();
        assert_eq!(serde_json::to_value(&cfg).unwrap()["field"], "edu");
        let mut docs = vec![Document::new("0", "a text about rivers")];
        docs[0].metadata.insert("quality".into(), json!({"score": 7}));
        Quality::new(cfg.clone())
            .unwrap()
            .process_batch(&mut docs, &mut StageStats::default())
            .unwrap();
        assert_eq!(docs[0].metadata["quality"], json!({"score": 7}), "left alone");
        assert!(docs[0].metadata["edu"]["score"].is_number(), "{:?}", docs[0].metadata);
        for bad in ["", "_quality", "a.b", "edu score"] {
            cfg.field = bad.into();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("field '{bad}'")), "{err}");
        }
    }
}
