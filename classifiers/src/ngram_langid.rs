//! A character n-gram language model (multinomial naive Bayes over 1- to
//! 4-grams), trained from `<language>.txt` files of sentences.
//!
//! whatlang judges a text by the 300 most frequent trigrams of each language:
//! it confuses close languages (Danish and Bokmål, Czech and Slovak, Catalan
//! and Spanish) on sentences. This model keeps every n-gram seen in training
//! with its count, so rarer but telling n-grams ("ø" next to "hv", "ň", "ny")
//! weigh in, and it names languages whatlang does not know (Bosnian, Icelandic,
//! Swahili, ...).
//!
//! Text is lower-cased, runs of anything that is not a letter become one space,
//! and the text is padded with a space on each side, so n-grams at word edges
//! are their own features. Each n-gram's probability in a language is
//! `(count + α) / (total + α·V)` (add-α smoothing, `V` the distinct n-grams
//! of all languages); the model stores, per n-gram, the languages that have
//! it and `ln((count + α) / α)`, the gain over an unseen n-gram, so judging
//! costs one hash lookup per n-gram whatever the number of languages.

use std::io::{Read, Write};
use std::path::Path;

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64;

/// Longest n-gram, in characters.
pub const MAX_ORDER: usize = 4;
/// Chosen by 5-fold cross-validation on the 75-language development split
/// (`thresher eval langid --identifier ngram --folds 5`): 0.5 → 97.2% at
/// sentence level on whatlang's languages, 0.1 and 0.05 → 98.3%, 0.02 → 98.3%;
/// orders up to 3 → 97.7%, 5 → 98.4% for a larger model.
const ALPHA: f64 = 0.05;
/// n-grams seen fewer times in a language are left out of its profile: half
/// the model's size and 1.4× its speed for 0.15 points of sentence accuracy
/// (98.1% instead of 98.3%, same cross-validation).
const MIN_COUNT: u32 = 2;
/// File magic.
const MAGIC: &[u8; 8] = b"THRLID01";

/// Gains are stored in thousandths: plenty for a sum over hundreds of n-grams.
const GAIN_SCALE: f32 = 1000.0;

#[derive(Debug, thiserror::Error)]
pub enum NgramError {
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    #[error("{path}: not a thresher language model ({message})")]
    Model { path: String, message: String },
}

/// The trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramLangid {
    /// Language codes (or labels) as the training files named them.
    pub languages: Vec<String>,
    /// `ln(α / (total + α·V))` per language: an unseen n-gram's log-probability.
    unseen: Vec<f32>,
    /// n-gram hash → (first entry, entry count) in `entries`: one flat array
    /// rather than a list per n-gram, one cache miss fewer per lookup.
    index: FxHashMap<u64, (u32, u16)>,
    /// (language index, gain in thousandths).
    entries: Vec<(u8, u16)>,
}

/// A judgement of [`NgramLangid::identify`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    /// Index into `languages`.
    pub language: usize,
    /// In [0, 1].
    pub confidence: f64,
    /// Share of the text's n-grams the model has seen in training: low for
    /// a script or language it does not know.
    pub known_share: f64,
}

/// Calls `f` with the hash of every n-gram of `text` (see the module docs),
/// ending at each character in turn, until `f` returns false.
pub fn for_each_ngram(text: &str, mut f: impl FnMut(u64) -> bool) {
    // The last MAX_ORDER normalized chars, newest last.
    let mut window = [' '; MAX_ORDER];
    let mut filled = 1; // the leading space
    let mut space = true;
    let mut push = |c: char, window: &mut [char; MAX_ORDER], filled: &mut usize| -> bool {
        window.rotate_left(1);
        window[MAX_ORDER - 1] = c;
        *filled = (*filled + 1).min(MAX_ORDER);
        let mut buf = [0u8; 4 * MAX_ORDER];
        for n in 1..=*filled {
            if n == 1 && c == ' ' {
                continue; // a lone space says nothing about a language
            }
            let mut len = 0;
            for &w in &window[MAX_ORDER - n..] {
                len += w.encode_utf8(&mut buf[len..]).len();
            }
            if !f(xxh3_64(&buf[..len])) {
                return false;
            }
        }
        true
    };
    for c in text.chars() {
        if c.is_alphabetic() {
            for l in c.to_lowercase() {
                if !push(l, &mut window, &mut filled) {
                    return;
                }
            }
            space = false;
        } else if !space {
            if !push(' ', &mut window, &mut filled) {
                return;
            }
            space = true;
        }
    }
    if !space {
        push(' ', &mut window, &mut filled);
    }
}

/// Judging stops early once the best language leads the second by this
/// much log-likelihood (after [`MAX_ORDER`]'s correction, odds of e^25:1):
/// most documents are decided within their first sentences.
const DECIDED_MARGIN: f64 = 100.0;
/// How often (in n-grams) the margin is checked.
const CHECK_EVERY: usize = 256;

impl NgramLangid {
    /// Trains on `(language, sentences)` pairs.
    pub fn train<'a>(data: impl IntoIterator<Item = (String, Vec<&'a str>)>) -> Self {
        let mut languages = Vec::new();
        let mut counts: Vec<FxHashMap<u64, u32>> = Vec::new();
        for (lang, sentences) in data {
            let mut c: FxHashMap<u64, u32> = FxHashMap::default();
            for s in sentences {
                for_each_ngram(s, |h| {
                    *c.entry(h).or_default() += 1;
                    true
                });
            }
            languages.push(lang);
            counts.push(c);
        }
        assert!(languages.len() <= 256, "at most 256 languages");
        let mut grams: FxHashMap<u64, Vec<(u8, u16)>> = FxHashMap::default();
        for (l, c) in counts.iter().enumerate() {
            for (&h, &n) in c {
                if n < MIN_COUNT {
                    continue;
                }
                let gain = ((n as f64 + ALPHA) / ALPHA).ln() as f32 * GAIN_SCALE;
                grams
                    .entry(h)
                    .or_default()
                    .push((l as u8, gain.round().min(u16::MAX as f32) as u16));
            }
        }
        let distinct = grams.len() as f64;
        let unseen = counts
            .iter()
            .map(|c| {
                let total: f64 = c.values().map(|&n| n as f64).sum();
                (ALPHA / (total + ALPHA * distinct)).ln() as f32
            })
            .collect();
        let mut grams: Vec<(u64, Vec<(u8, u16)>)> = grams.into_iter().collect();
        grams.sort_unstable();
        Self::from_parts(languages, unseen, grams)
    }

    fn from_parts(languages: Vec<String>, unseen: Vec<f32>, grams: Vec<(u64, Vec<(u8, u16)>)>) -> Self {
        let mut index = FxHashMap::with_capacity_and_hasher(grams.len(), Default::default());
        let mut entries = Vec::new();
        for (h, mut list) in grams {
            list.sort_unstable();
            index.insert(h, (entries.len() as u32, list.len() as u16));
            entries.extend(list);
        }
        Self {
            languages,
            unseen,
            index,
            entries,
        }
    }

    /// Distinct n-grams in the model.
    pub fn ngram_count(&self) -> usize {
        self.index.len()
    }

    /// Trains on a folder of `<language>.txt` files, one sentence per line.
    pub fn train_folder(folder: &Path) -> Result<Self, NgramError> {
        let data = read_sentence_folder(folder)?;
        Ok(Self::train(
            data.iter().map(|(lang, text)| (lang.clone(), text.lines().collect())),
        ))
    }

    fn totals(&self, gains: &[u64], n: usize) -> Vec<f64> {
        gains
            .iter()
            .zip(&self.unseen)
            .map(|(&g, &u)| g as f64 / GAIN_SCALE as f64 + n as f64 * u as f64)
            .collect()
    }

    /// Log-likelihood of `text` per language (same order as `languages`),
    /// how many n-grams were read (all, or fewer once one language leads by
    /// [`DECIDED_MARGIN`]) and how many of those the model knows.
    pub fn scores(&self, text: &str) -> (Vec<f64>, usize, usize) {
        let mut gains = vec![0u64; self.languages.len()];
        let (mut n, mut known) = (0usize, 0usize);
        for_each_ngram(text, |h| {
            n += 1;
            if let Some(&(start, len)) = self.index.get(&h) {
                known += 1;
                for &(l, g) in &self.entries[start as usize..start as usize + len as usize] {
                    gains[l as usize] += g as u64;
                }
            }
            !(n % CHECK_EVERY == 0 && margin(&self.totals(&gains, n)) > DECIDED_MARGIN * MAX_ORDER as f64)
        });
        (self.totals(&gains, n), n, known)
    }

    /// The most likely language, or `None` for a text without letters.
    ///
    /// The confidence is the softmax of the log-likelihoods divided by
    /// [`MAX_ORDER`]: every character is in up to four overlapping n-grams,
    /// which are far from independent, so the raw naive-Bayes posterior is
    /// overconfident.
    pub fn identify(&self, text: &str) -> Option<Judged> {
        let (scores, n, known) = self.scores(text);
        if n == 0 {
            return None;
        }
        let (best, &top) = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))?;
        let total: f64 = scores.iter().map(|s| ((s - top) / MAX_ORDER as f64).exp()).sum();
        Some(Judged {
            language: best,
            confidence: 1.0 / total,
            known_share: known as f64 / n as f64,
        })
    }

    /// The model as bytes (zstd-compressed; see [`NgramLangid::from_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&(self.languages.len() as u32).to_le_bytes());
        for (lang, unseen) in self.languages.iter().zip(&self.unseen) {
            raw.push(lang.len() as u8);
            raw.extend_from_slice(lang.as_bytes());
            raw.extend_from_slice(&unseen.to_le_bytes());
        }
        // Sorted, so the same model is the same bytes.
        let mut grams: Vec<(&u64, &(u32, u16))> = self.index.iter().collect();
        grams.sort_unstable_by_key(|(h, _)| **h);
        raw.extend_from_slice(&(grams.len() as u64).to_le_bytes());
        for (h, &(start, len)) in grams {
            raw.extend_from_slice(&h.to_le_bytes());
            raw.push(len as u8);
            for &(l, g) in &self.entries[start as usize..start as usize + len as usize] {
                raw.push(l);
                raw.extend_from_slice(&g.to_le_bytes());
            }
        }
        let mut out = Vec::new();
        let mut encoder = zstd::Encoder::new(&mut out, 19).expect("zstd encoder");
        encoder.write_all(&raw).expect("write to memory");
        encoder.finish().expect("write to memory");
        out
    }

    /// Reads [`NgramLangid::to_bytes`]'s format; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self, NgramError> {
        let bad = |message: &str| NgramError::Model {
            path: path.into(),
            message: message.into(),
        };
        let mut raw = Vec::new();
        zstd::Decoder::new(bytes)
            .and_then(|mut d| d.read_to_end(&mut raw))
            .map_err(|e| bad(&format!("not zstd: {e}")))?;
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], NgramError> {
            let slice = raw.get(at..at + n).ok_or_else(|| bad("truncated"))?;
            at += n;
            Ok(slice)
        };
        if take(8)? != MAGIC {
            return Err(bad("bad magic"));
        }
        let count = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
        let mut languages = Vec::with_capacity(count);
        let mut unseen = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take(1)?[0] as usize;
            languages.push(String::from_utf8(take(len)?.to_vec()).map_err(|_| bad("a language code is not UTF-8"))?);
            unseen.push(f32::from_le_bytes(take(4)?.try_into().unwrap()));
        }
        let n = u64::from_le_bytes(take(8)?.try_into().unwrap()) as usize;
        let mut grams = Vec::with_capacity(n);
        for _ in 0..n {
            let h = u64::from_le_bytes(take(8)?.try_into().unwrap());
            let k = take(1)?[0] as usize;
            let mut entries = Vec::with_capacity(k);
            for _ in 0..k {
                let e = take(3)?;
                if e[0] as usize >= count {
                    return Err(bad("an n-gram names a language the model does not have"));
                }
                entries.push((e[0], u16::from_le_bytes([e[1], e[2]])));
            }
            grams.push((h, entries));
        }
        Ok(Self::from_parts(languages, unseen, grams))
    }
}

/// Best score minus the second best.
fn margin(scores: &[f64]) -> f64 {
    let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for &s in scores {
        if s > first {
            second = first;
            first = s;
        } else if s > second {
            second = s;
        }
    }
    first - second
}

/// `(label, texts)` of a folder of labelled files: every subfolder is a
/// label and each file in it (recursively) one text, of which the first
/// `max_bytes` count (cut at a char boundary). Files that are not UTF-8 are
/// skipped. Labels sorted, files by path.
pub fn read_labelled_files(folder: &Path, max_bytes: usize) -> Result<Vec<(String, Vec<String>)>, NgramError> {
    Ok(read_labelled_paths(folder, max_bytes)?
        .into_iter()
        .map(|(label, files)| (label, files.into_iter().map(|(_, text)| text).collect()))
        .collect())
}

/// A label and its files' paths and texts.
pub type LabelledPaths = (String, Vec<(std::path::PathBuf, String)>);

/// [`read_labelled_files`] with each text's path, for reports that name
/// the files.
pub fn read_labelled_paths(folder: &Path, max_bytes: usize) -> Result<Vec<LabelledPaths>, NgramError> {
    let err = |path: &Path, message: String| NgramError::Data {
        path: path.display().to_string(),
        message,
    };
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                files(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut labels = Vec::new();
    let entries = std::fs::read_dir(folder).map_err(|e| err(folder, format!("cannot read the folder: {e}")))?;
    for entry in entries {
        let path = entry.map_err(|e| err(folder, e.to_string()))?.path();
        if !path.is_dir() {
            continue;
        }
        let mut paths = Vec::new();
        files(&path, &mut paths).map_err(|e| err(&path, format!("cannot read: {e}")))?;
        paths.sort();
        let mut texts = Vec::new();
        for file in paths {
            let bytes = std::fs::read(&file).map_err(|e| err(&file, format!("cannot read: {e}")))?;
            if let Ok(text) = String::from_utf8(bytes) {
                let cut = crate::langid::prefix_at_char_boundary(&text, max_bytes).len();
                let text = text[..cut].to_string();
                texts.push((file, text));
            }
        }
        labels.push((path.file_name().unwrap().to_string_lossy().to_string(), texts));
    }
    if labels.is_empty() {
        return Err(err(folder, "no label folders".into()));
    }
    labels.sort();
    Ok(labels)
}

/// `(language code, file text)` of every `<code>.txt` in `folder`, by code.
pub fn read_sentence_folder(folder: &Path) -> Result<Vec<(String, String)>, NgramError> {
    let err = |message: String| NgramError::Data {
        path: folder.display().to_string(),
        message,
    };
    let mut out = Vec::new();
    let entries = std::fs::read_dir(folder).map_err(|e| err(format!("cannot read the folder: {e}")))?;
    for entry in entries {
        let path = entry.map_err(|e| err(e.to_string()))?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            let code = path.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| NgramError::Data {
                path: path.display().to_string(),
                message: format!("cannot read: {e}"),
            })?;
            out.push((code, text));
        }
    }
    if out.is_empty() {
        return Err(err("no <language>.txt files".into()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every n-gram hash of `text`, in order.
    fn ngram_hashes(text: &str, mut f: impl FnMut(u64)) {
        for_each_ngram(text, |h| {
            f(h);
            true
        });
    }

    #[test]
    fn ngrams_are_normalized_and_padded() {
        let mut a = Vec::new();
        ngram_hashes("Ab, 12 c", |h| a.push(h));
        let mut b = Vec::new();
        ngram_hashes("ab c", |h| b.push(h));
        assert_eq!(a, b);
        // " ab c ": 6 chars; 1-grams without the spaces (3), 2-grams (5),
        // 3-grams (4), 4-grams (3).
        assert_eq!(a.len(), 3 + 5 + 4 + 3);
        let mut none = 0;
        ngram_hashes(" 123 ... ", |_| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn learns_and_round_trips() {
        let model = NgramLangid::train([
            ("en".to_string(), vec!["the cat sat on the mat", "where is the house"]),
            (
                "de".to_string(),
                vec!["die katze sitzt auf der matte", "wo ist das haus"],
            ),
        ]);
        assert_eq!(
            model.languages[model.identify("the house is there").unwrap().language],
            "en"
        );
        assert_eq!(
            model.languages[model.identify("das haus der katze").unwrap().language],
            "de"
        );
        assert!(model.identify("42 !!").is_none());
        let back = NgramLangid::from_bytes(&model.to_bytes(), "memory").unwrap();
        assert_eq!(back, model);
        assert!(NgramLangid::from_bytes(b"nonsense", "x.bin").is_err());
    }
}
