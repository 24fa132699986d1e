//! Storage behind one small trait, addressed by URL.
//!
//! A [`Storage`] is rooted at a URL (a plain path, `file://…`, or
//! `s3://bucket/prefix`, see [`s3`]) and addresses objects by `/`-separated
//! keys below that root.
//! The trait assumes nothing an object store lacks: there is no rename and no
//! append. Writing goes through an [`ObjectWriter`] that streams to a temporary
//! object and publishes it only on [`ObjectWriter::commit`], so a reader never
//! sees half of an object, and a writer dropped without commit leaves nothing
//! under the final key.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

pub mod s3;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectMeta {
    /// Key relative to the storage root, `/`-separated.
    pub key: String,
    pub size: u64,
}

/// A stream being written; nothing is visible under its key before `commit`.
pub trait ObjectWriter: Write + Send {
    /// Flushes and publishes the object under its key, replacing any object there.
    fn commit(self: Box<Self>) -> Result<()>;
}

pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The URL of the root, for messages.
    fn url(&self) -> String;
    /// URL of one key, for messages and manifests.
    fn url_of(&self, key: &str) -> String {
        format!("{}/{}", self.url().trim_end_matches('/'), key)
    }
    /// Every object whose key starts with `prefix`, recursively, sorted by key.
    /// A missing root or prefix lists nothing.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Streams an object.
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>>;
    /// Reads `len` bytes from `offset` (S3: a ranged GET).
    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Starts writing an object; see [`ObjectWriter`].
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>>;
    fn exists(&self, key: &str) -> Result<bool>;
    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// Reads a whole object into memory.
    fn read_all(&self, key: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(key)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("cannot read", self.url_of(key), e))?;
        Ok(bytes)
    }

    /// Writes and commits a whole object.
    fn write_all(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let mut writer = self.create(key)?;
        writer
            .write_all(bytes)
            .map_err(|e| Error::io("cannot write", self.url_of(key), e))?;
        writer.commit()
    }

    /// Deletes every object under `prefix`.
    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for object in self.list(prefix)? {
            self.delete(&object.key)?;
        }
        Ok(())
    }
}

/// Opens the storage rooted at `url`: a plain path, `file://` or `s3://` URL.
pub fn open_url(url: &str) -> Result<Arc<dyn Storage>> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Arc::new(LocalStorage::new(path)));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(s3::S3Storage::new(url)?));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::Storage(format!(
            "'{url}': the {scheme}:// scheme is not supported; use a local path, file:// or s3://"
        )));
    }
    Ok(Arc::new(LocalStorage::new(url)))
}

/// Joins a URL (or path) and a relative key with one `/`.
pub fn join_url(base: &str, key: &str) -> String {
    if key.is_empty() {
        return base.to_string();
    }
    format!("{}/{}", base.trim_end_matches('/'), key.trim_start_matches('/'))
}

/// A directory on a local (or network-mounted) file system.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

/// Temporary objects live here, below the root, until they are committed.
/// Keys under a `_`-prefixed folder are never taken for data.
pub const TEMP_PREFIX: &str = "_tmp/";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("cannot list", dir.display(), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list", dir.display(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed between `read_dir` and its stat (another task
                // cleaning the same scratch folder): not there any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("cannot stat", entry.path().display(), e)),
            };
            if meta.is_dir() {
                self.walk(&entry.path(), &key, out)?;
            } else {
                out.push(ObjectMeta { key, size: meta.len() });
            }
        }
        Ok(())
    }
}

impl Storage for LocalStorage {
    fn url(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // Walk from the deepest folder the prefix names, then filter by prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut out = Vec::new();
        self.walk(&self.path(dir_part), dir_part, &mut out)?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(key);
        let file = File::open(&path).map_err(|e| Error::io("cannot open", path.display(), e))?;
        Ok(Box::new(file))
    }

    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path(key);
        let io_err = |e| Error::io("cannot read", path.display(), e);
        let mut file = File::open(&path).map_err(io_err)?;
        file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        let mut buf = vec![0; len as usize];
        file.read_exact(&mut buf).map_err(io_err)?;
        Ok(buf)
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        let temp_name = format!(
            "{}{}.{}.{}",
            TEMP_PREFIX,
            key.replace('/', "%"),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let temp = self.path(&temp_name);
        let parent = temp.parent().expect("temp path has a parent");
        fs::create_dir_all(parent).map_err(|e| Error::io("cannot create folder", parent.display(), e))?;
        let file = File::create(&temp).map_err(|e| Error::io("cannot create", temp.display(), e))?;
        Ok(Box::new(LocalWriter {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            temp,
            target: self.path(key),
        }))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path(key);
        path.try_exists()
            .map_err(|e| Error::io("cannot stat", path.display(), e))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("cannot delete", path.display(), e)),
        }
        // Object stores have no folders: remove the ones this leaves empty,
        // so that a local tree looks like the bucket would.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// Crash testing: with `THRESHER_KILL_AFTER_COMMITS=N` set, the process kills
/// itself with SIGKILL right after its N-th commit, so tests can stop a run at
/// exact points (between an output and its manifest, say) and check that the
/// rerun resumes to the same bytes. Unset, this costs one relaxed load.
pub(crate) fn crash_test_hook() {
    use std::sync::OnceLock;
    static KILL_AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static COMMITS: AtomicU64 = AtomicU64::new(0);
    let limit = KILL_AFTER.get_or_init(|| {
        std::env::var("THRESHER_KILL_AFTER_COMMITS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(limit) = *limit {
        if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 >= limit {
            // SAFETY: raising a signal has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}

struct LocalWriter {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("writer used after commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("writer used after commit").flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let file = self.file.take().expect("commit called once");
        let file = file
            .into_inner()
            .map_err(|e| Error::io("cannot write", self.temp.display(), e.into_error()))?;
        // Data reaches the disk before the name does, so a crash never leaves a
        // committed name pointing at partial data.
        file.sync_all()
            .map_err(|e| Error::io("cannot sync", self.temp.display(), e))?;
        drop(file);
        let parent = self.target.parent().expect("target has a parent");
        fs::create_dir_all(parent).map_err(|e| Error::io("cannot create folder", parent.display(), e))?;
        fs::rename(&self.temp, &self.target).map_err(|e| Error::io("cannot publish", self.target.display(), e))?;
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
        crash_test_hook();
        Ok(())
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Never committed: leave nothing behind.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("thresher-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// Tasks finishing a stage at the same moment each remove its scratch
    /// files: a listing must pass over files another task removes under it
    /// (seen by `read_dir`, gone before their stat).
    #[test]
    fn listing_passes_over_files_deleted_under_it() {
        let dir = temp_dir("concurrent-delete");
        let s = LocalStorage::new(&dir);
        for i in 0..3000 {
            s.write_all(&format!("_work/scan/{i:05}.bin"), b"x").unwrap();
        }
        let listings = std::thread::scope(|scope| {
            let deleting = scope.spawn(|| s.delete_prefix("_work/"));
            let mut listings = 0;
            while !deleting.is_finished() {
                s.list("_work/").unwrap();
                listings += 1;
            }
            deleting.join().unwrap().unwrap();
            listings
        });
        assert!(listings > 0);
        assert!(s.list("_work/").unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn commit_publishes_and_drop_discards() {
        let dir = temp_dir("commit");
        let s = LocalStorage::new(&dir);
        let mut w = s.create("a/b.txt").unwrap();
        w.write_all(b"hello").unwrap();
        assert!(!s.exists("a/b.txt").unwrap());
        w.commit().unwrap();
        assert_eq!(s.read_all("a/b.txt").unwrap(), b"hello");
        assert_eq!(s.read_range("a/b.txt", 1, 3).unwrap(), b"ell");
        let mut w = s.create("c.txt").unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert!(!s.exists("c.txt").unwrap());
        let keys: Vec<_> = s.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["a/b.txt"]);
        assert_eq!(s.list("a/").unwrap().len(), 1);
        assert_eq!(s.list("a/c").unwrap().len(), 0);
        s.delete("a/b.txt").unwrap();
        s.delete("a/b.txt").unwrap();
        assert!(s.list("").unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls() {
        assert!(open_url("gs://bucket/x").unwrap_err().to_string().contains("gs://"));
        assert!(open_url("s3:///x").unwrap_err().to_string().contains("no bucket"));
        assert_eq!(open_url("file:///tmp/x").unwrap().url(), "/tmp/x");
        assert_eq!(join_url("a/", "b"), "a/b");
    }
}
