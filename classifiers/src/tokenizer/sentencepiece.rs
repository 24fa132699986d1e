//! A SentencePiece BPE `tokenizer.model` (Meta's Llama 2 file, Mistral's),
//! read from its protobuf and encoded with SentencePiece's own rule, id for
//! id: tests hold it to the `sentencepiece` library itself.
//!
//! SentencePiece's BPE (`bpe_model.cc`): the normalized text starts as one
//! symbol per character; then, repeatedly, of the neighbouring pairs whose
//! joined text is a piece, the one whose piece has the highest score is
//! merged, the leftmost on a tie (pieces of equal score tie too). That is
//! [`MergeListBpe`]'s rule with a pair's rank taken from its piece's score.
//! A character that is no piece becomes its UTF-8 bytes' `<0xXX>` pieces
//! under byte fallback, else the unknown id (one per run of such
//! characters, as SentencePiece fuses them).
//!
//! The text is one piece (SentencePiece has no pre-tokenizer), cut where no
//! merge can cross ([`CutPoints`]), so that encoding stops at a limit.
//!
//! Taken: BPE models with the `identity` normalization (Llama 2, Mistral),
//! with or without the dummy prefix. Refused, with a message that names the
//! setting: Unigram models, other normalization rules, removing extra
//! white space, white space as a suffix, unused pieces.
//! A checkpoint's `tokenizer.json` reads those.

use std::borrow::Cow;

use rustc_hash::FxHashMap;

use super::huggingface::{AddedTokenFinder, CutPoints, TextPiece};
use super::merges::{self, MergeListBpe};

/// SentencePiece's piece types (`sentencepiece_model.proto`).
const NORMAL: u64 = 1;
const UNKNOWN: u64 = 2;
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;
const UNUSED: u64 = 5;
const BYTE: u64 = 6;
/// `TrainerSpec.model_type`.
const BPE: u64 = 2;

pub struct SentencePieceEncoder {
    /// User-defined pieces, matched before any merge.
    user_defined: Option<AddedTokenFinder>,
    bpe: MergeListBpe,
    /// Also which characters are pieces; the others are unknown.
    cuts: CutPoints,
    /// `add_dummy_prefix`: a space before a non-empty text.
    dummy_prefix: bool,
    /// `escape_whitespaces`: spaces written as `▁`.
    escape_whitespaces: bool,
    byte_fallback: bool,
    unk_id: u32,
    /// Every piece's text and type, by id.
    pieces: Vec<(String, u64)>,
    /// Control and unknown pieces: name → id.
    pub specials: Vec<(String, u32)>,
    pub vocab_size: usize,
}

/// One field of a protobuf message.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

/// The fields of a protobuf message, in order.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or("truncated varint")?;
            self.bytes = rest;
            value |= ((byte & 0x7F) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("truncated field".into());
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()? as usize;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            wire => return Err(format!("unsupported protobuf wire type {wire}")),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn each_field<'a>(bytes: &'a [u8], mut f: impl FnMut(u64, Field<'a>) -> Result<(), String>) -> Result<(), String> {
    let mut fields = Fields { bytes };
    while let Some((number, field)) = fields.next_field()? {
        f(number, field)?;
    }
    Ok(())
}

/// Whether `bytes` open as a SentencePiece `ModelProto`: its first field is
/// a piece (field 1, a message) whose own first field is the piece's text
/// (field 1 again).
pub fn looks_like_model(bytes: &[u8]) -> bool {
    let first = |bytes| match (Fields { bytes }).next_field() {
        Ok(Some((1, Field::Bytes(message)))) => Some(message),
        _ => None,
    };
    first(bytes).and_then(first).is_some()
}

struct Piece {
    text: String,
    score: f32,
    kind: u64,
}

impl SentencePieceEncoder {
    /// Reads a `ModelProto`; an error says what is not supported or broken.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut pieces = Vec::new();
        // Defaults of sentencepiece_model.proto.
        let (mut model_type, mut byte_fallback, mut unk_id, mut suffix) = (1u64, false, 0u64, false);
        let (mut rule, mut charsmap_len) = (String::new(), 0usize);
        let (mut dummy_prefix, mut remove_extra, mut escape) = (true, true, true);
        each_field(bytes, |number, field| {
            match (number, field) {
                (1, Field::Bytes(message)) => {
                    let mut piece = Piece {
                        text: String::new(),
                        score: 0.0,
                        kind: NORMAL,
                    };
                    each_field(message, |number, field| {
                        match (number, field) {
                            (1, Field::Bytes(text)) => {
                                piece.text = String::from_utf8(text.to_vec()).map_err(|_| "a piece is not UTF-8")?
                            }
                            (2, Field::Fixed32(bits)) => piece.score = f32::from_bits(bits),
                            (3, Field::Varint(kind)) => piece.kind = kind,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    pieces.push(piece);
                }
                (2, Field::Bytes(trainer)) => each_field(trainer, |number, field| {
                    match (number, field) {
                        (3, Field::Varint(v)) => model_type = v,
                        (24, Field::Varint(v)) => suffix = v != 0,
                        (35, Field::Varint(v)) => byte_fallback = v != 0,
                        (40, Field::Varint(v)) => unk_id = v,
                        _ => {}
                    }
                    Ok(())
                })?,
                (3, Field::Bytes(normalizer)) => each_field(normalizer, |number, field| {
                    match (number, field) {
                        (1, Field::Bytes(name)) => rule = String::from_utf8_lossy(name).into_owned(),
                        (2, Field::Bytes(map)) => charsmap_len = map.len(),
                        (3, Field::Varint(v)) => dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => remove_extra = v != 0,
                        (5, Field::Varint(v)) => escape = v != 0,
                        _ => {}
                    }
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })
        .map_err(|e| format!("not a readable SentencePiece model: {e}"))?;
        if pieces.is_empty() {
            return Err("not a SentencePiece model: no pieces".into());
        }
        let refuse = |what: &str| {
            Err(format!(
                "a SentencePiece model with {what}, which thresher does not read; use the checkpoint's \
                 tokenizer.json (transformers' save_pretrained writes one)"
            ))
        };
        if model_type != BPE {
            return refuse(&format!("model type {model_type} (only BPE, 2, is read)"));
        }
        if (!rule.is_empty() && rule != "identity") || charsmap_len > 0 {
            return refuse(&format!("the normalization rule '{rule}'"));
        }
        if remove_extra {
            return refuse("remove_extra_whitespaces");
        }
        if suffix {
            return refuse("treat_whitespace_as_suffix");
        }
        if let Some(piece) = pieces.iter().find(|p| p.kind == UNUSED) {
            return refuse(&format!("unused pieces ('{}')", piece.text));
        }
        // (text, id) of the pieces of one type.
        let of_kind = |kind: u64| {
            pieces
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.kind == kind)
                .map(|(i, p)| (p.text.as_str(), i as u32))
        };
        let normal: FxHashMap<&str, u32> = of_kind(NORMAL).collect();
        let single = merges::single_chars(normal.iter().map(|(&text, &id)| (text, id)));
        // A character that is no piece goes to bytes or the unknown id
        // before merging here; SentencePiece keeps it as a symbol, which
        // could merge only into a piece holding it. None may.
        if let Some(piece) = normal.keys().find(|t| t.chars().any(|c| !single.contains_key(&c))) {
            return refuse(&format!("a piece ('{piece}') holding a character that is no piece"));
        }
        let byte_ids = if byte_fallback {
            let by_text: FxHashMap<&str, u32> = of_kind(BYTE).collect();
            Some(
                merges::byte_fallback_ids(|text| by_text.get(text).copied())
                    .ok_or("byte fallback without all 256 byte pieces")?,
            )
        } else {
            None
        };
        // Ranks: pieces by score, highest first; equal scores share a rank.
        let mut scores: Vec<f32> = pieces.iter().filter(|p| p.kind == NORMAL).map(|p| p.score).collect();
        scores.sort_by(|a, b| b.total_cmp(a));
        scores.dedup();
        let rank_of = |score: f32| scores.partition_point(|s| s.total_cmp(&score).is_gt()) as u32;
        let mut merges = Vec::new();
        for (&text, &merged) in &normal {
            let rank = rank_of(pieces[merged as usize].score);
            for (at, _) in text.char_indices().skip(1) {
                if let (Some(&left), Some(&right)) = (normal.get(&text[..at]), normal.get(&text[at..])) {
                    merges.push((left, right, rank, merged));
                }
            }
        }
        let specials = of_kind(UNKNOWN)
            .chain(of_kind(CONTROL))
            .map(|(text, id)| (text.to_string(), id))
            .collect();
        // User-defined pieces: SentencePiece's prefix matcher takes the
        // longest one wherever one starts, left to right (leftmost-longest),
        // and they never merge. Nor can a merge make one: its first
        // character would have been matched there already.
        let user_defined = of_kind(USER_DEFINED)
            .map(|(text, id)| (text.to_string(), Some(id)))
            .collect::<Vec<_>>();
        let user_defined = match user_defined.is_empty() {
            true => None,
            false => Some(AddedTokenFinder::new(user_defined).ok_or("user-defined pieces empty or repeated")?),
        };
        Ok(Self {
            user_defined,
            bpe: MergeListBpe::of_ranked_merges(merges.into_iter(), single, byte_ids),
            cuts: CutPoints::of_tokens(normal.keys().copied()),
            dummy_prefix,
            escape_whitespaces: escape,
            byte_fallback,
            unk_id: unk_id as u32,
            specials,
            vocab_size: pieces.len(),
            pieces: pieces.iter().map(|p| (p.text.clone(), p.kind)).collect(),
        })
    }

    /// Which code runs each part (all of it thresher's), for `thresher eval
    /// tokenizer`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let user_defined = match &self.user_defined {
            Some(_) => "thresher (matched first, the longest where several start)",
            None => "none",
        };
        vec![
            ("normalizer", "thresher (SentencePiece's identity rule)".to_string()),
            ("user-defined", user_defined.to_string()),
            (
                "pre-tokenizer",
                "none (each document one piece, cut where no merge crosses)".to_string(),
            ),
            ("model", "thresher (SentencePiece's BPE)".to_string()),
        ]
    }

    /// The `identity` normalization: the dummy prefix, spaces escaped.
    fn normalize<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if text.is_empty() {
            return Cow::Borrowed(text);
        }
        let prefixed = match self.dummy_prefix {
            true => Cow::Owned(format!(" {text}")),
            false => Cow::Borrowed(text),
        };
        match self.escape_whitespaces && prefixed.contains(' ') {
            true => Cow::Owned(prefixed.replace(' ', "▁")),
            false => prefixed,
        }
    }

    /// The first `limit` ids of `text`'s encoding, exactly.
    pub fn encode_first(&self, text: &str, limit: usize) -> Vec<u32> {
        let normalized = self.normalize(text);
        let mut ids = Vec::with_capacity(limit.min(normalized.len() / 3 + 16));
        let mut take = |piece: TextPiece| -> bool {
            match piece {
                TextPiece::Text(segment) => self.cuts.for_each_piece(segment, |part| {
                    self.encode_part(part, &mut ids);
                    ids.len() < limit
                }),
                TextPiece::Added(id) => ids.push(id),
            }
            ids.len() < limit
        };
        match &self.user_defined {
            Some(user_defined) => user_defined.for_each_piece(&normalized, take),
            None => {
                take(TextPiece::Text(&normalized));
            }
        }
        ids.truncate(limit);
        ids
    }

    /// The text of `ids`: pieces joined, `▁` back to spaces, the dummy
    /// prefix dropped, bytes pieces as their bytes (lossy where they split
    /// a character); control pieces write nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            match self.pieces.get(id as usize) {
                Some((text, BYTE)) => {
                    bytes.extend(u8::from_str_radix(text.trim_start_matches("<0x").trim_end_matches('>'), 16).ok())
                }
                Some((_, CONTROL | UNKNOWN)) | None => {}
                Some((text, _)) => bytes.extend_from_slice(text.as_bytes()),
            }
        }
        let text = String::from_utf8_lossy(&bytes).replace('▁', " ");
        match self.dummy_prefix {
            true => text.strip_prefix(' ').map(str::to_string).unwrap_or(text),
            false => text,
        }
    }

    fn encode_part(&self, part: &str, ids: &mut Vec<u32>) {
        if self.bpe.encode(part.as_bytes(), ids) {
            return;
        }
        // Unknown characters, no byte fallback: each run of them is one
        // unknown id; the known runs between merge on their own, since no
        // piece holds an unknown character.
        debug_assert!(!self.byte_fallback);
        let mut rest = part;
        while let Some(c) = rest.chars().next() {
            let known = self.cuts.is_token(c);
            let end = rest
                .char_indices()
                .find(|&(_, next)| self.cuts.is_token(next) != known)
                .map_or(rest.len(), |(i, _)| i);
            match known {
                true => {
                    self.bpe.encode(&rest.as_bytes()[..end], ids);
                }
                false => ids.push(self.unk_id),
            }
            rest = &rest[end..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
    }

    /// The `tokenizer.json` tests' real text (75 languages, code, crawl
    /// records), and edge cases of SentencePiece's own.
    fn texts() -> Vec<String> {
        let mut texts = super::super::huggingface::tests::texts();
        texts.extend(
            [
                "",
                " ",
                "  two  spaces  ",
                "▁ already ▁▁ there",
                "\t\ttabs\n\nnewlines\r\n",
                "<s> </s> <unk> <0x41>",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ]
            .map(String::from),
        );
        texts
    }

    fn llama2() -> SentencePieceEncoder {
        SentencePieceEncoder::from_bytes(&std::fs::read(testdata().join("tokenizer/llama2-tokenizer.model")).unwrap())
            .unwrap()
    }

    fn assert_encodes_as(encoder: &SentencePieceEncoder, texts: &[String], expected: &[Vec<u32>]) {
        for (text, expected) in texts.iter().zip(expected) {
            assert_eq!(&encoder.encode_first(text, usize::MAX), expected, "{text:.60}");
            for limit in [0, 1, 2, 7, 127, 512, expected.len().saturating_sub(1)] {
                assert_eq!(
                    encoder.encode_first(text, limit),
                    expected[..limit.min(expected.len())],
                    "limit {limit}: {text:.60}"
                );
            }
        }
    }

    /// Runs `script` with Python's `sentencepiece` (`scripts/test` installs
    /// it) and `args`, then the texts' JSON as the last argument; returns
    /// what it prints, parsed.
    fn by_library(script: &str, args: &[&str], texts: &[String]) -> serde_json::Value {
        let dir = std::env::temp_dir().join(format!("thresher-sp-{}-{:x}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("texts.json");
        std::fs::write(&input, serde_json::to_vec(texts).unwrap()).unwrap();
        let python = std::env::var("THRESHER_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .args(args)
            .arg(&input)
            .current_dir(&dir)
            .output()
            .expect("python runs");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "the reference needs Python's sentencepiece ({python}; scripts/test installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    /// Meta's Llama 2 `tokenizer.model` against the `sentencepiece` library
    /// itself, whole and cut.
    #[test]
    fn llama2_encodes_as_the_sentencepiece_library() {
        let texts = texts();
        let model = testdata().join("tokenizer/llama2-tokenizer.model");
        let script = "import json, sys, sentencepiece as spm\n\
                      sp = spm.SentencePieceProcessor(model_file=sys.argv[1])\n\
                      print(json.dumps([sp.encode(t) for t in json.load(open(sys.argv[2]))]))";
        let expected: Vec<Vec<u32>> =
            serde_json::from_value(by_library(script, &[model.to_str().unwrap()], &texts)).unwrap();
        assert_eq!(expected.len(), texts.len());
        let encoder = llama2();
        assert_encodes_as(&encoder, &texts, &expected);
        // Decoding gives the text back (what Llama 2 can spell).
        assert_eq!(
            encoder.decode(&encoder.encode_first("Hello  world 🦀", usize::MAX)),
            "Hello  world 🦀"
        );
    }

    /// A BPE model the library trains here, unlike Llama 2's: user-defined
    /// pieces (one a prefix of another, one inside common words, one not a
    /// word at all), no dummy prefix, a small vocabulary (much byte
    /// fallback). thresher against the library on the same texts.
    #[test]
    fn a_trained_model_with_user_defined_pieces_encodes_as_the_library() {
        let mut corpus = String::new();
        for language in ["en", "de", "ru", "es"] {
            corpus += &std::fs::read_to_string(testdata().join(format!("langid/sentences/{language}.txt"))).unwrap();
        }
        let script = r#"
import json, sys, sentencepiece as spm
texts = json.load(open(sys.argv[1]))
open("corpus.txt", "w").write(texts[0])
spm.SentencePieceTrainer.train(input="corpus.txt", model_prefix="m", vocab_size=900, model_type="bpe",
    byte_fallback=True, user_defined_symbols=["<mask>", "ab", "abc", "ing", "der"],
    normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
    minloglevel=2)
sp = spm.SentencePieceProcessor(model_file="m.model")
print(json.dumps({"model": list(open("m.model", "rb").read()), "ids": [sp.encode(t) for t in texts[1:]]}))
"#;
        let mut texts = vec![corpus];
        texts.extend(self::texts());
        texts.push("abc ab abcd xabcab <mask>ing derdering  <mask> der".repeat(3));
        let out = by_library(script, &[], &texts);
        let model: Vec<u8> = serde_json::from_value(out["model"].clone()).unwrap();
        let expected: Vec<Vec<u32>> = serde_json::from_value(out["ids"].clone()).unwrap();
        let encoder = SentencePieceEncoder::from_bytes(&model).unwrap();
        assert!(encoder.user_defined.is_some() && !encoder.dummy_prefix);
        assert_encodes_as(&encoder, &texts[1..], &expected);
        let user_defined: Vec<u32> = ["<mask>", "ab", "abc", "ing", "der"]
            .iter()
            .map(|piece| encoder.pieces.iter().position(|(text, _)| text == piece).unwrap() as u32)
            .collect();
        let found = expected
            .last()
            .unwrap()
            .iter()
            .filter(|id| user_defined.contains(id))
            .count();
        assert!(found > 20, "the text must hold user-defined pieces: {found}");
    }

    /// Settings this reader does not implement are refused by name.
    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let bytes = std::fs::read(testdata().join("tokenizer/llama2-tokenizer.model")).unwrap();
        // The normalizer spec is field 3; appending a second one overrides
        // the first's `remove_extra_whitespaces` (field 4) with true, and a
        // trainer spec (field 2) with model type (field 3) Unigram (1).
        let mut extra = bytes.clone();
        extra.extend([0x1A, 0x02, 0x20, 0x01]);
        let error = SentencePieceEncoder::from_bytes(&extra).err().unwrap();
        assert!(
            error.contains("remove_extra_whitespaces") && error.contains("tokenizer.json"),
            "{error}"
        );
        let mut unigram = bytes.clone();
        unigram.extend([0x12, 0x02, 0x18, 0x01]);
        let error = SentencePieceEncoder::from_bytes(&unigram).err().unwrap();
        assert!(error.contains("model type 1"), "{error}");
        let error = SentencePieceEncoder::from_bytes(&bytes[..1000]).err().unwrap();
        assert!(error.contains("not a readable SentencePiece model"), "{error}");
    }
}
