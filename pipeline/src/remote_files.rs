//! Models, tokenizers and block lists named by URL (`model = "s3://bucket/classifier"`,
//! `tokenizer = "s3://bucket/tokenizer.model"`), so that a job with its data in
//! object storage needs nothing else mounted.
//!
//! The stages read local files, so building such a stage first copies the
//! files into a folder of its own under the temporary directory, builds the
//! stage from a config pointing there, and deletes the folder: by then the
//! tokenizer is in memory and the weights are read or mapped (a mapped file
//! stays readable after its name is gone). Each task copies what it builds,
//! once; nothing is cached between runs, so a checkpoint replaced under the
//! same URL is never scored with the old weights. The stage's config, and
//! so its hash and manifests, keep the URL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thresher_stages::is_url;
use thresher_stages::registry::StageConfig;

use crate::error::{Error, Result};
use crate::storage::open_url;

/// A folder deleted with everything in it when dropped.
pub struct TempFolder(PathBuf);

impl TempFolder {
    fn new() -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "thresher-fetch-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|e| Error::io("cannot create folder", path.display(), e))?;
        Ok(Self(path))
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stage config whose URLs point at local copies, and the folder holding
/// them (`None` when the config named no URL). Drop it once the stage is built.
pub struct Localized {
    pub config: StageConfig,
    pub folder: Option<TempFolder>,
    /// Each local copy and the URL it came from.
    copies: Vec<(PathBuf, String)>,
}

impl Localized {
    /// A message about the copies (an error building the stage) with each
    /// copy's path replaced by its URL: the user never named the copy.
    pub fn with_urls(&self, message: &str) -> String {
        self.copies.iter().fold(message.to_string(), |text, (copy, url)| {
            text.replace(&*copy.to_string_lossy(), url)
        })
    }
}

/// Which files of a checkpoint folder the quality stage reads: the config,
/// the weights (one file or shards with their index) and the tokenizer. The
/// rest (PyTorch `.bin` weights, ONNX exports, READMEs) is not copied.
fn is_checkpoint_file(name: &str) -> bool {
    matches!(name, "config.json" | "tokenizer.json" | "tokenizer.model")
        || name.ends_with(".safetensors")
        || name.ends_with(".safetensors.index.json")
}

/// Copies one object to `to`.
fn copy_object(url: &str, to: &Path) -> Result<()> {
    let (parent, name) = url
        .rsplit_once('/')
        .filter(|(_, name)| !name.is_empty())
        .ok_or_else(|| Error::Input(format!("'{url}' does not name a file")))?;
    let storage = open_url(parent)?;
    let mut reader = storage.open(name)?;
    let mut file = std::fs::File::create(to).map_err(|e| Error::io("cannot create", to.display(), e))?;
    std::io::copy(&mut reader, &mut file).map_err(|e| Error::io("cannot copy", url, e))?;
    Ok(())
}

/// Copies a checkpoint folder's files (see [`is_checkpoint_file`]) into `to`.
fn copy_checkpoint(url: &str, to: &Path) -> Result<()> {
    let storage = open_url(url)?;
    let keys: Vec<String> = storage
        .list("")?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.contains('/') && is_checkpoint_file(k))
        .collect();
    if !keys.iter().any(|k| k == "config.json") {
        return Err(Error::Input(format!(
            "'{url}' holds no config.json: `model` must be a Hugging Face checkpoint folder \
             (config.json, model.safetensors or its shards, tokenizer.json or tokenizer.model)"
        )));
    }
    std::fs::create_dir_all(to).map_err(|e| Error::io("cannot create folder", to.display(), e))?;
    for key in keys {
        copy_object(&crate::storage::join_url(url, &key), &to.join(&key))?;
    }
    Ok(())
}

/// The config with every model or tokenizer URL replaced by a local copy.
pub fn localize(config: &StageConfig) -> Result<Localized> {
    let mut config = config.clone();
    let mut folder: Option<TempFolder> = None;
    let mut copies = Vec::new();
    let mut local = |url: &Path, checkpoint: bool| -> Result<PathBuf> {
        if folder.is_none() {
            folder = Some(TempFolder::new()?);
        }
        let root = &folder.as_ref().expect("just made").0;
        let text = url.to_string_lossy();
        let folder_url = text.trim_end_matches('/');
        let name = folder_url.rsplit('/').next().unwrap_or("file");
        let to = root.join(format!("{}-{name}", copies.len()));
        tracing::info!("copying {text} to {}", to.display());
        match checkpoint {
            true => copy_checkpoint(folder_url, &to)?,
            false => copy_object(&text, &to)?,
        }
        copies.push((to.clone(), folder_url.to_string()));
        Ok(to)
    };
    match &mut config {
        StageConfig::Quality(c) => {
            if is_url(&c.model) {
                c.model = local(&c.model, true)?;
            }
            if let Some(tokenizer) = c.tokenizer.as_mut().filter(|t| is_url(t)) {
                *tokenizer = local(tokenizer, false)?;
            }
        }
        StageConfig::Pack(c) if is_url(&c.tokenizer) => {
            c.tokenizer = local(&c.tokenizer, false)?;
        }
        other => {
            for list in other.list_files_mut().into_iter().filter(|f| is_url(f)) {
                *list = local(list, false)?;
            }
        }
    }
    Ok(Localized { config, folder, copies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_the_stage_reads_are_copied() {
        for name in [
            "config.json",
            "model.safetensors",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
            "tokenizer.model",
        ] {
            assert!(is_checkpoint_file(name), "{name}");
        }
        for name in ["pytorch_model.bin", "README.md", "model.onnx", "training_args.bin"] {
            assert!(!is_checkpoint_file(name), "{name}");
        }
    }

    /// `file://` URLs go through the same copy as `s3://`: the copy is what
    /// the stage builds from, and the folder goes when it is dropped.
    #[test]
    fn a_checkpoint_url_is_copied_and_removed() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../classifiers/tests/fixtures/tiny-llama-cls");
        let fixtures = std::fs::canonicalize(fixtures).unwrap();
        let config: StageConfig = serde_json::from_value(serde_json::json!({
            "kind": "quality",
            "model": format!("file://{}/classes", fixtures.display()),
            "tokenizer": format!("file://{}/byte-tokenizer.model", fixtures.display()),
            "device": "cpu",
        }))
        .unwrap();
        let localized = localize(&config).unwrap();
        let StageConfig::Quality(c) = &localized.config else {
            unreachable!()
        };
        assert!(c.model.join("config.json").is_file());
        assert!(c.model.join("model.safetensors").is_file());
        assert!(!c.model.join("expected.json").exists(), "not a file the stage reads");
        let tokenizer = c.tokenizer.clone().unwrap();
        assert_eq!(
            std::fs::read(&tokenizer).unwrap(),
            std::fs::read(fixtures.join("byte-tokenizer.model")).unwrap()
        );
        localized.config.build().unwrap();
        let message = format!("{} has no `score` head", c.model.display());
        assert_eq!(
            localized.with_urls(&message),
            format!("file://{}/classes has no `score` head", fixtures.display())
        );
        let folder = localized.folder.as_ref().unwrap().0.clone();
        drop(localized);
        assert!(!folder.exists());

        // Without `tokenizer`, the stage takes the checkpoint's own, copied
        // with it; its README is not copied.
        let demo = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/demo-quality"))
            .unwrap();
        let config: StageConfig = serde_json::from_value(serde_json::json!({
            "kind": "quality",
            "model": format!("file://{}/", demo.display()),
            "device": "cpu",
        }))
        .unwrap();
        let localized = localize(&config).unwrap();
        let StageConfig::Quality(c) = &localized.config else {
            unreachable!()
        };
        assert!(c.tokenizer.is_none());
        assert!(c.model.join("tokenizer.json").is_file());
        assert!(!c.model.join("README.md").exists());
        localized.config.build().unwrap();

        let missing: StageConfig = serde_json::from_value(serde_json::json!({
            "kind": "quality",
            "model": format!("file://{}", fixtures.display()),
            "tokenizer": format!("file://{}/byte-tokenizer.model", fixtures.display()),
        }))
        .unwrap();
        let err = localize(&missing).err().expect("no config.json there").to_string();
        assert!(err.contains("holds no config.json"), "{err}");
    }
}
