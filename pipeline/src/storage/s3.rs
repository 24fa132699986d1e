//! `s3://bucket/prefix`: Amazon S3 and S3-compatible stores, with `aws-sdk-s3`.
//!
//! Configuration is the standard AWS chain (environment variables, shared
//! config and credentials files with profiles, web identity, instance and
//! container roles; `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3` for another
//! server), plus a few `THRESHER_S3_*` variables documented in the README.
//!
//! How it behaves on a real network:
//! - **Retries**: the SDK's standard mode, exponential backoff with full
//!   jitter, on throttling (503 SlowDown, 429), 5xx, timeouts and connection
//!   errors; `THRESHER_S3_MAX_ATTEMPTS` attempts per request (default 10).
//!   A streaming GET that breaks midway resumes with a ranged GET from the
//!   byte it reached. The SDK's retry quota (which stops all retries after a
//!   burst of failures) is off: a batch job must ride out a storm.
//! - **Timeouts**: connecting (5 s) and each attempt (120 s) are bounded, so a
//!   stopped server fails the run with a message instead of hanging it.
//! - **Concurrency**: at most `THRESHER_S3_CONCURRENCY` requests in flight per
//!   process (default 64); each writer uploads up to 4 parts at a time.
//! - **Atomic publish**: an object is written with one PutObject (small) or a
//!   multipart upload (large, parts of 8 MiB, doubling every 1,000 parts so
//!   that 10,000 parts reach 8 TiB). S3 makes neither visible before it
//!   completes, so the upload in progress is the temporary object and
//!   completing it is the publish: readers never see half a shard, and a
//!   writer dropped without commit aborts its upload. No copy is needed.
//! - **Secrets**: credentials live in the SDK's types, whose `Debug` redacts
//!   them; messages name the bucket, key, operation and the service's error
//!   code only.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::retry::{RetryConfig, RetryPartition, TokenBucket};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use super::{crash_test_hook, ObjectMeta, ObjectWriter, Storage};
use crate::error::{Error, Result};

/// Smallest part of a multipart upload (S3 requires 5 MiB for all but the last).
const FIRST_PART_BYTES: usize = 8 << 20;
/// Parts per writer uploading at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Everything requests share: one runtime, one client, one limit.
struct Shared {
    runtime: Runtime,
    client: Client,
    limit: Semaphore,
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| Error::Storage(format!("{name}={value:?}: expected a positive whole number"))),
        Err(_) => Ok(default),
    }
}

/// One client per process: building one reads the credential chain, and
/// its connection pool is what keeps requests cheap.
fn shared() -> Result<&'static Shared> {
    static SHARED: OnceLock<std::result::Result<Shared, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| build_shared().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Storage(e.clone()))
}

fn build_shared() -> Result<Shared> {
    let max_attempts = env_number("THRESHER_S3_MAX_ATTEMPTS", 10)?;
    let concurrency = env_number("THRESHER_S3_CONCURRENCY", 64)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("thresher-s3")
        .enable_all()
        .build()
        .map_err(|e| Error::Storage(format!("cannot start the S3 client's runtime: {e}")))?;
    let sdk_config = runtime.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(max_attempts as u32)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            )
            .load(),
    );
    let custom_endpoint = sdk_config.endpoint_url().is_some();
    let mut builder = aws_sdk_s3::config::Builder::from(&sdk_config)
        // Checksums beyond S3's own are optional; some S3-compatible servers
        // reject the new default ones. Shards carry xxh3 in their manifests.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // The SDK's default retry quota (a token bucket shared by the
        // process) stops retrying altogether after a burst of failures: right
        // for an interactive service, wrong for a batch job that must ride
        // out a throttling storm. Each request still has its attempts, its
        // backoff and the process its concurrency limit.
        .retry_partition(
            RetryPartition::custom("thresher")
                .token_bucket(TokenBucket::unlimited())
                .build(),
        )
        // Servers other than AWS are mostly reached by path.
        .force_path_style(match std::env::var("THRESHER_S3_PATH_STYLE") {
            Ok(v) => matches!(v.as_str(), "1" | "true" | "yes"),
            Err(_) => custom_endpoint,
        });
    if sdk_config.region().is_none() {
        // Signing needs a region; S3-compatible servers accept this one.
        builder = builder.region(Region::new("us-east-1"));
    }
    Ok(Shared {
        runtime,
        client: Client::from_conf(builder.build()),
        limit: Semaphore::new(concurrency),
    })
}

/// Objects below `s3://bucket/prefix`.
#[derive(Clone)]
pub struct S3Storage {
    shared: &'static Shared,
    bucket: String,
    /// Key prefix of the root: empty, or ending in `/`.
    prefix: String,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Storage({})", self.url())
    }
}

/// What a failed request says: the operation, the object, and the error
/// chain (service code and message, or the connection problem).
fn request_error<E, R>(operation: &str, url: &str, error: SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let hint = match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            " (is the server reachable? AWS_ENDPOINT_URL sets another one)"
        }
        _ => "",
    };
    Error::Storage(format!(
        "{url}: {operation} failed: {}{hint}",
        DisplayErrorContext(&error)
    ))
}

impl S3Storage {
    /// `url` is `s3://bucket` or `s3://bucket/prefix`.
    pub fn new(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Storage(format!("'{url}' is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Storage(format!("'{url}': no bucket name")));
        }
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            shared: shared()?,
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Runs one request under the concurrency limit.
    fn run<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        self.shared.runtime.block_on(async {
            let _permit = self.shared.limit.acquire().await.expect("the limit is never closed");
            request.await
        })
    }

    fn get(&self, key: &str, range: Option<String>) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        let client = &self.shared.client;
        self.run(
            client
                .get_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .set_range(range)
                .send(),
        )
        .map_err(|e| request_error("GET", &self.url_of(key), e))
    }
}

impl Storage for S3Storage {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = self.full_key(prefix);
        let mut pages = self
            .shared
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = self.run(pages.next()) {
            let page = page.map_err(|e| request_error("LIST", &self.url_of(prefix), e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        // S3 lists in UTF-8 byte order already; sorting keeps the contract
        // for servers that do not.
        out.sort();
        Ok(out)
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let output = self.get(key, None)?;
        let end = output.content_length().unwrap_or(0).max(0) as u64;
        Ok(Box::new(S3Reader {
            storage: self.clone(),
            key: key.to_string(),
            offset: 0,
            end,
            body: Some(output.body),
            chunk: bytes::Bytes::new(),
            resumes_left: 5,
        }))
    }

    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let output = self.get(key, Some(format!("bytes={}-{}", offset, offset + len - 1)))?;
        let bytes = self
            .run(output.body.collect())
            .map_err(|e| Error::Storage(format!("{}: reading a ranged GET failed: {e}", self.url_of(key))))?
            .into_bytes();
        if bytes.len() as u64 != len {
            return Err(Error::Storage(format!(
                "{}: asked for {len} bytes at {offset}, got {}",
                self.url_of(key),
                bytes.len()
            )));
        }
        Ok(bytes.to_vec())
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(S3Writer {
            storage: self.clone(),
            key: key.to_string(),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            in_flight: Vec::new(),
            done: false,
        }))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let result = self.run(
            self.shared
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .send(),
        );
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(false),
            Err(e) => Err(request_error("HEAD", &self.url_of(key), e)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.run(
            self.shared
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .send(),
        )
        .map_err(|e| request_error("DELETE", &self.url_of(key), e))?;
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let keys: Vec<String> = self.list(prefix)?.into_iter().map(|o| o.key).collect();
        // DeleteObjects takes at most 1,000 keys.
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.full_key(k)).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Storage(format!("{}: {e}", self.url_of(prefix))))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::Storage(format!("{}: {e}", self.url_of(prefix))))?;
            let output = self
                .run(
                    self.shared
                        .client
                        .delete_objects()
                        .bucket(&self.bucket)
                        .delete(delete)
                        .send(),
                )
                .map_err(|e| request_error("DELETE (batch)", &self.url_of(prefix), e))?;
            if let Some(error) = output.errors().first() {
                return Err(Error::Storage(format!(
                    "{}: DELETE (batch) failed for {}: {}",
                    self.url_of(prefix),
                    error.key().unwrap_or("?"),
                    error.code().unwrap_or("?")
                )));
            }
        }
        Ok(())
    }
}

/// A streaming GET that resumes with a ranged GET when the connection breaks.
struct S3Reader {
    storage: S3Storage,
    key: String,
    /// Bytes of the object consumed so far.
    offset: u64,
    /// Object size.
    end: u64,
    body: Option<ByteStream>,
    chunk: bytes::Bytes,
    resumes_left: u32,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.offset >= self.end {
                return Ok(0);
            }
            let body = match self.body.as_mut() {
                Some(body) => body,
                None => {
                    let output = self
                        .storage
                        .get(&self.key, Some(format!("bytes={}-", self.offset)))
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    self.body.insert(output.body)
                }
            };
            match self.storage.shared.runtime.block_on(body.try_next()) {
                Ok(Some(chunk)) => {
                    self.offset += chunk.len() as u64;
                    self.chunk = chunk;
                }
                // Early end or a broken connection: ask again from here.
                Ok(None) | Err(_) if self.resumes_left > 0 => {
                    self.resumes_left -= 1;
                    self.body = None;
                }
                Ok(None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: the object ended at byte {} of {}",
                            self.storage.url_of(&self.key),
                            self.offset,
                            self.end
                        ),
                    ))
                }
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "{}: reading failed at byte {}: {e}",
                        self.storage.url_of(&self.key),
                        self.offset
                    )))
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// Buffers a part, uploads parts in the background, publishes on commit.
struct S3Writer {
    storage: S3Storage,
    key: String,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    in_flight: Vec<tokio::task::JoinHandle<Result<CompletedPart>>>,
    /// Committed, or failed and cleaned up.
    done: bool,
}

/// Part `number` (from 1) is 8 MiB, doubling every 1,000 parts.
fn part_bytes(number: usize) -> usize {
    FIRST_PART_BYTES << ((number.saturating_sub(1)) / 1000).min(9)
}

impl S3Writer {
    fn next_part_number(&self) -> usize {
        self.parts.len() + self.in_flight.len() + 1
    }

    fn upload_id(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let storage = &self.storage;
        let output = storage
            .run(
                storage
                    .shared
                    .client
                    .create_multipart_upload()
                    .bucket(&storage.bucket)
                    .key(storage.full_key(&self.key))
                    .send(),
            )
            .map_err(|e| request_error("CreateMultipartUpload", &storage.url_of(&self.key), e))?;
        let id = output
            .upload_id()
            .ok_or_else(|| Error::Storage(format!("{}: no upload id returned", storage.url_of(&self.key))))?
            .to_string();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let handle = self.in_flight.remove(0);
        let part =
            self.storage.shared.runtime.block_on(handle).map_err(|e| {
                Error::Storage(format!("{}: part upload stopped: {e}", self.storage.url_of(&self.key)))
            })??;
        self.parts.push(part);
        Ok(())
    }

    /// Sends the buffer as the next part.
    fn send_part(&mut self) -> Result<()> {
        let upload_id = self.upload_id()?;
        if self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        let number = self.next_part_number() as i32;
        let body = ByteStream::from(std::mem::take(&mut self.buffer));
        let storage = self.storage.clone();
        let key = self.key.clone();
        self.in_flight.push(self.storage.shared.runtime.spawn(async move {
            let _permit = storage.shared.limit.acquire().await.expect("the limit is never closed");
            let output = storage
                .shared
                .client
                .upload_part()
                .bucket(&storage.bucket)
                .key(storage.full_key(&key))
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| request_error(&format!("UploadPart {number}"), &storage.url_of(&key), e))?;
            Ok(CompletedPart::builder()
                .set_e_tag(output.e_tag().map(str::to_string))
                .part_number(number)
                .build())
        }));
        Ok(())
    }

    fn publish(&mut self) -> Result<()> {
        let storage = self.storage.clone();
        let url = storage.url_of(&self.key);
        if self.upload_id.is_none() {
            // Small object: one request.
            let body = ByteStream::from(std::mem::take(&mut self.buffer));
            storage
                .run(
                    storage
                        .shared
                        .client
                        .put_object()
                        .bucket(&storage.bucket)
                        .key(storage.full_key(&self.key))
                        .body(body)
                        .send(),
                )
                .map_err(|e| request_error("PUT", &url, e))?;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        self.parts.sort_by_key(|p| p.part_number());
        let upload_id = self.upload_id.clone().expect("checked above");
        storage
            .run(
                storage
                    .shared
                    .client
                    .complete_multipart_upload()
                    .bucket(&storage.bucket)
                    .key(storage.full_key(&self.key))
                    .upload_id(upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(std::mem::take(&mut self.parts)))
                            .build(),
                    )
                    .send(),
            )
            .map_err(|e| request_error("CompleteMultipartUpload", &url, e))?;
        Ok(())
    }

    /// Drops the upload in progress, if any: nothing becomes visible.
    fn abort(&mut self) {
        for handle in self.in_flight.drain(..) {
            handle.abort();
        }
        if let Some(upload_id) = self.upload_id.take() {
            let storage = &self.storage;
            // Best effort: a bucket lifecycle rule cleans up what a killed
            // process leaves (see the README).
            let _ = storage.run(
                storage
                    .shared
                    .client
                    .abort_multipart_upload()
                    .bucket(&storage.bucket)
                    .key(storage.full_key(&self.key))
                    .upload_id(upload_id)
                    .send(),
            );
        }
        self.done = true;
    }
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= part_bytes(self.next_part_number()) {
            self.send_part().map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<()> {
        match self.publish() {
            Ok(()) => {
                self.done = true;
                crash_test_hook();
                Ok(())
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if !self.done {
            self.abort();
        }
    }
}

/// The storage and key of an `s3://` URL naming one object, when it does.
pub fn single_object(url: &str) -> Result<Option<(Arc<dyn Storage>, String)>> {
    // `s3://bucket/key`: a bucket alone (`s3://bucket`) names no object.
    let Some((bucket, key)) = url
        .strip_prefix("s3://")
        .and_then(|rest| rest.trim_end_matches('/').split_once('/'))
    else {
        return Ok(None);
    };
    let (parent, name) = match key.rsplit_once('/') {
        Some((dir, name)) => (format!("s3://{bucket}/{dir}"), name),
        None => (format!("s3://{bucket}"), key),
    };
    let storage = S3Storage::new(&parent)?;
    Ok(storage
        .exists(name)?
        .then(|| (Arc::new(storage) as Arc<dyn Storage>, name.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_under_ten_thousand_for_terabytes() {
        assert_eq!(part_bytes(1), 8 << 20);
        assert_eq!(part_bytes(1000), 8 << 20);
        assert_eq!(part_bytes(1001), 16 << 20);
        let total: u64 = (1..=10_000).map(|n| part_bytes(n) as u64).sum();
        assert!(total > 5 << 40, "10,000 parts hold {total} bytes");
        assert!(part_bytes(10_000) <= 5 << 30, "S3's largest part is 5 GiB");
    }
}
