//! `s3://` against a real S3-compatible server: moto's server (from PyPI,
//! installed by `scripts/test`), one per test on a free loopback port, with
//! `tests/python/s3_fault_proxy.py` in front where a test needs S3's bad
//! days (503 SlowDown, reset connections, the server going away).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// A secret that must never appear in any output, log or error.
const SECRET: &str = "SECRETkeyNEVERtoBEprinted0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// moto's S3 server, state in memory.
    fn moto() -> Self {
        let port = free_port();
        let mut child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto runs (scripts/test installs moto[server] into THRESHER_PYTHON's venv)");
        wait_listening(port, &mut child, "moto_server");
        Self { child, port }
    }

    /// The fault proxy in front of `upstream`, listening on `port`.
    fn proxy(upstream: u16, port: u16, faults: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/s3_fault_proxy.py"))
            .args([upstream.to_string(), port.to_string()])
            .args(faults)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child, "s3_fault_proxy.py");
        Self { child, port }
    }

    /// Stops the process (SIGTERM) and returns what it printed.
    fn stop(mut self) -> String {
        // SAFETY: sending a signal to our own child has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of every command talking to the test server.
fn s3_env(cmd: &mut Command, port: u16) {
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "AKIATESTTHRESHER")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
}

fn s3_tool(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/python/s3_tool.py")).args(args);
    s3_env(&mut cmd, port);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "s3_tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The quickstart config with its input and output replaced.
fn quickstart_config(dir: &TestDir, name: &str, input: &str, output: &str) -> std::path::PathBuf {
    let config = std::fs::read_to_string(repo_root().join("examples/quickstart.toml"))
        .unwrap()
        .replace("\"examples/data\"", &format!("{input:?}"))
        .replace("\"out/quickstart\"", &format!("{output:?}"));
    let path = dir.join(&format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

/// A run's outputs with what must differ between storages masked: the
/// roots' URLs (in quarantine records and the stage lock) and the config
/// hashes, which cover the input URL on purpose.
fn normalized(root: &Path, input: &str, output: &str) -> BTreeMap<String, Vec<u8>> {
    fn strip_hashes(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|k, _| k != "config_hash" && k != "upstream_hash");
                // Files this normalization rewrites are compared rewritten,
                // not by their recorded size and hash.
                let name = map.get("name").and_then(Value::as_str).unwrap_or("");
                if name.contains("_quarantine/") || name == "manifest.json" {
                    map.retain(|k, _| k != "size" && k != "xxh3");
                }
                map.values_mut().for_each(strip_hashes);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_hashes),
            _ => {}
        }
    }
    outputs(root)
        .into_iter()
        .map(|(key, bytes)| {
            let bytes = if key.contains("/_quarantine/") {
                let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
                text.replace(input, "<INPUT>").into_bytes()
            } else {
                bytes
            };
            let bytes = if key.contains("/_manifest/") || key.ends_with("manifest.json") {
                let mut value: Value = serde_json::from_slice(&bytes).unwrap();
                strip_hashes(&mut value);
                let text = serde_json::to_string_pretty(&value).unwrap();
                text.replace(input, "<INPUT>").replace(output, "<OUTPUT>").into_bytes()
            } else {
                bytes
            };
            (key, bytes)
        })
        .collect()
}

/// The quickstart on local disk: the reference every S3 run must equal.
fn local_reference(dir: &TestDir) -> BTreeMap<String, Vec<u8>> {
    let input = repo_root().join("examples/data").to_string_lossy().into_owned();
    let output = dir.join("local").to_string_lossy().into_owned();
    let config = quickstart_config(dir, "local", &input, &output);
    run_expect(thresher(&repo_root(), &["run", config.to_str().unwrap()]), 0);
    normalized(&dir.join("local"), &input, &output)
}

/// Uploads the quickstart's input to `s3://thresher-in/data` and makes `out`.
fn upload_input(port: u16) {
    s3_tool(port, &["mkbucket", "thresher-in"]);
    s3_tool(port, &["mkbucket", "thresher-out"]);
    let data = repo_root().join("examples/data");
    s3_tool(port, &["upload", data.to_str().unwrap(), "s3://thresher-in/data"]);
}

/// Downloads `s3://thresher-out/<name>` and normalizes it like the local run.
fn downloaded(dir: &TestDir, port: u16, name: &str) -> BTreeMap<String, Vec<u8>> {
    let local = dir.join(&format!("download-{name}"));
    s3_tool(
        port,
        &[
            "download",
            &format!("s3://thresher-out/{name}"),
            local.to_str().unwrap(),
        ],
    );
    normalized(&local, "s3://thresher-in/data", &format!("s3://thresher-out/{name}"))
}

fn assert_no_secret(text: &str, what: &str) {
    assert!(!text.contains(SECRET), "{what} contains the secret key:\n{text}");
}

#[test]
fn quickstart_s3_to_s3_equals_the_local_run() {
    let dir = TestDir::new("s3-quickstart");
    let reference = local_reference(&dir);
    let moto = Server::moto();
    upload_input(moto.port);
    let config = quickstart_config(&dir, "s3", "s3://thresher-in/data", "s3://thresher-out/quickstart");
    let mut cmd = thresher(&repo_root(), &["run", config.to_str().unwrap()]);
    s3_env(&mut cmd, moto.port);
    cmd.env("RUST_LOG", "info");
    let out = run_expect(cmd, 0);
    assert_no_secret(&stderr(&out), "the run's log");
    let remote = downloaded(&dir, moto.port, "quickstart");
    assert_same_outputs(&reference, &remote, "s3:// -> s3:// quickstart");
    for (key, bytes) in &remote {
        assert_no_secret(&String::from_utf8_lossy(bytes), key);
    }

    // inspect reads the bucket and verifies every object.
    let mut cmd = thresher(&repo_root(), &["inspect", "s3://thresher-out/quickstart"]);
    s3_env(&mut cmd, moto.port);
    let table = stdout(&run_expect(cmd, 0));
    assert!(table.contains("OK: "), "{table}");

    // report reads the manifests from the bucket: the same tables as the
    // local run's.
    let report_of = |root: &str, s3: bool| -> serde_json::Value {
        let mut cmd = thresher(&repo_root(), &["report", root, "--format", "json"]);
        if s3 {
            s3_env(&mut cmd, moto.port);
        }
        let mut value: serde_json::Value = serde_json::from_slice(&run_expect(cmd, 0).stdout).unwrap();
        value.as_object_mut().unwrap().remove("root");
        value
    };
    let remote_report = report_of("s3://thresher-out/quickstart", true);
    assert!(
        remote_report["tables"]["funnel"].as_array().unwrap().len() >= 8,
        "{remote_report}"
    );
    assert_eq!(remote_report, report_of(dir.join("local").to_str().unwrap(), false));

    // A rerun finds everything done and changes nothing.
    let mut cmd = thresher(&repo_root(), &["run", config.to_str().unwrap()]);
    s3_env(&mut cmd, moto.port);
    run_expect(cmd, 0);
    assert_same_outputs(&remote, &downloaded(&dir, moto.port, "quickstart"), "rerun on s3://");
    assert_eq!(
        s3_tool(moto.port, &["uploads", "thresher-out"]).trim(),
        "0",
        "unfinished multipart uploads"
    );
}

#[test]
fn s3_runs_ride_through_slowdowns_and_resets() {
    let dir = TestDir::new("s3-faults");
    let reference = local_reference(&dir);
    let moto = Server::moto();
    upload_input(moto.port);
    let proxy = Server::proxy(moto.port, free_port(), &["--slowdown-every", "5", "--reset-every", "7"]);
    let config = quickstart_config(&dir, "s3", "s3://thresher-in/data", "s3://thresher-out/faults");
    let mut cmd = thresher(&repo_root(), &["run", config.to_str().unwrap()]);
    s3_env(&mut cmd, proxy.port);
    let out = run_expect(cmd, 0);
    assert_no_secret(&stderr(&out), "the run's log");
    let report = proxy.stop();
    let count = |word: &str| -> u64 {
        report
            .split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {word} count in the proxy's report: {report}"))
    };
    assert!(
        count("slowdowns") >= 10 && count("resets") >= 5,
        "too few faults: {report}"
    );
    assert_same_outputs(&reference, &downloaded(&dir, moto.port, "faults"), "run through faults");
}

#[test]
fn a_server_gone_midway_fails_the_run_clearly_and_a_rerun_completes_it() {
    let dir = TestDir::new("s3-outage");
    let reference = local_reference(&dir);
    let moto = Server::moto();
    upload_input(moto.port);
    let port = free_port();
    let config = quickstart_config(&dir, "s3", "s3://thresher-in/data", "s3://thresher-out/outage");
    // The endpoint answers 60 requests, then disappears: connections refused
    // from then on, in the middle of the first stages.
    let proxy = Server::proxy(moto.port, port, &["--stop-after", "60"]);
    let start = Instant::now();
    let mut cmd = thresher(&repo_root(), &["run", config.to_str().unwrap()]);
    s3_env(&mut cmd, port);
    cmd.env("THRESHER_S3_MAX_ATTEMPTS", "3");
    let out = run_expect(cmd, 2);
    let message = stderr(&out);
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "failing took {:?}",
        start.elapsed()
    );
    assert!(
        message.contains("s3://") && message.contains("failed") && message.contains("reachable"),
        "{message}"
    );
    assert_no_secret(&message, "the error");
    drop(proxy);

    // Some work was committed before the outage; the rerun keeps it.
    let before = s3_tool(moto.port, &["uploads", "thresher-out"]);
    assert_eq!(before.trim(), "0", "an unfinished multipart upload was left behind");
    let _proxy = Server::proxy(moto.port, port, &[]);
    let mut cmd = thresher(&repo_root(), &["run", config.to_str().unwrap()]);
    s3_env(&mut cmd, port);
    run_expect(cmd, 0);
    assert_same_outputs(
        &reference,
        &downloaded(&dir, moto.port, "outage"),
        "rerun after an outage",
    );
}

#[test]
fn large_objects_go_up_in_parts_and_listing_pages() {
    use thresher::storage::open_url;
    let moto = Server::moto();
    s3_tool(moto.port, &["mkbucket", "big"]);
    // The library reads its configuration from the environment, as the
    // binary does; no other test uses S3 inside this process.
    let mut probe = Command::new("true");
    s3_env(&mut probe, moto.port);
    for (key, value) in probe.get_envs() {
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
    let storage = open_url("s3://big/root").unwrap();

    // 21 MB: three parts (8 MiB, 8 MiB, the rest), published on commit only.
    let data: Vec<u8> = (0..21_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut writer = storage.create("a/large.bin").unwrap();
    for chunk in data.chunks(1 << 20) {
        writer.write_all(chunk).unwrap();
    }
    assert!(!storage.exists("a/large.bin").unwrap(), "visible before commit");
    writer.commit().unwrap();
    let mut read = Vec::new();
    storage.open("a/large.bin").unwrap().read_to_end(&mut read).unwrap();
    assert!(read == data, "the object read back differs");
    assert_eq!(
        storage.read_range("a/large.bin", 8_388_600, 20).unwrap(),
        data[8_388_600..8_388_620]
    );

    // An input URL naming one object is read as that object; a prefix or a
    // bucket is not one.
    use thresher::storage::s3::single_object;
    let (parent, key) = single_object("s3://big/root/a/large.bin").unwrap().unwrap();
    assert_eq!((parent.url().as_str(), key.as_str()), ("s3://big/root/a", "large.bin"));
    assert!(single_object("s3://big/root/a").unwrap().is_none());
    assert!(single_object("s3://big").unwrap().is_none());

    // A writer dropped mid-way leaves no object and no unfinished upload.
    let mut writer = storage.create("a/dropped.bin").unwrap();
    writer.write_all(&data).unwrap();
    drop(writer);
    assert!(!storage.exists("a/dropped.bin").unwrap());
    assert_eq!(s3_tool(moto.port, &["uploads", "big"]).trim(), "0");

    // More keys than one LIST page (1,000) come back complete and sorted.
    std::thread::scope(|scope| {
        for t in 0..8 {
            let storage = &storage;
            scope.spawn(move || {
                for i in (t..1_050).step_by(8) {
                    storage.write_all(&format!("many/{i:05}"), b"x").unwrap();
                }
            });
        }
    });
    let listed = storage.list("many/").unwrap();
    assert_eq!(listed.len(), 1_050);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
    storage.delete_prefix("many/").unwrap();
    assert!(storage.list("many/").unwrap().is_empty());
}

/// `model` and `tokenizer` may be `s3://` URLs: the classifier and both
/// tokenizers are copied from the bucket when their stage is built, the
/// output is byte for byte the local files' (manifests keep the URLs), and
/// the copies are gone after the run.
#[test]
fn models_and_tokenizers_in_s3_give_the_outputs_of_local_files() {
    let dir = TestDir::new("s3-models");
    let input = dir.join("input");
    multilingual_corpus(&input, 2, 20, 11);
    let fixtures = repo_root().join("classifiers/tests/fixtures/tiny-llama-cls");
    let tokenizers = dir.join("tokenizers");
    std::fs::create_dir_all(&tokenizers).unwrap();
    std::fs::copy(llama3_tokenizer(), tokenizers.join("llama3.model")).unwrap();
    // Block and word lists travel the same way (url_filter, bad_words).
    // Untagged documents take bad_words' default language, en: this list's
    // common words of a few languages drop some of the 75 languages' texts.
    std::fs::write(tokenizers.join("domains.txt"), "# blocked\nexample.com\n").unwrap();
    std::fs::write(tokenizers.join("words-en.txt"), "# a word list\nthe\nde\nla\nund\nи\n").unwrap();
    let stages = |model: &str, byte_tokenizer: &str, llama3: &str, domains: &str| {
        let words = domains.replace("domains.txt", "words-en.txt");
        format!(
            "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"url_filter\"\ndomain_files = [{domains:?}]\n\n\
             [[stages]]\nkind = \"bad_words\"\nfiles = {{ en = {words:?} }}\n\n\
             [[stages]]\nkind = \"quality\"\nmodel = {model:?}\n\
             tokenizer = {byte_tokenizer:?}\ndevice = \"cpu\"\nmax_tokens = 128\nbatch_tokens = 1024\n\n\
             [[stages]]\nkind = \"pack\"\ntokenizer = {llama3:?}\nseq_len = 512\nwindow_tokens = 4096\n"
        )
    };
    let local_dir = dir.join("local");
    std::fs::create_dir_all(&local_dir).unwrap();
    let local = write_config(
        &local_dir,
        &input,
        "",
        &stages(
            fixtures.join("classes").to_str().unwrap(),
            fixtures.join("byte-tokenizer.model").to_str().unwrap(),
            tokenizers.join("llama3.model").to_str().unwrap(),
            tokenizers.join("domains.txt").to_str().unwrap(),
        ),
    );
    run_expect(thresher(&local_dir, &["run", local.to_str().unwrap()]), 0);

    let moto = Server::moto();
    s3_tool(moto.port, &["mkbucket", "models"]);
    s3_tool(moto.port, &["upload", fixtures.to_str().unwrap(), "s3://models/tiny"]);
    s3_tool(
        moto.port,
        &["upload", tokenizers.to_str().unwrap(), "s3://models/tokenizers"],
    );
    let remote_dir = dir.join("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let temp = dir.join("tmp");
    std::fs::create_dir_all(&temp).unwrap();
    let remote = write_config(
        &remote_dir,
        &input,
        "",
        &stages(
            "s3://models/tiny/classes",
            "s3://models/tiny/byte-tokenizer.model",
            "s3://models/tokenizers/llama3.model",
            "s3://models/tokenizers/domains.txt",
        ),
    );
    let mut cmd = thresher(&remote_dir, &["run", remote.to_str().unwrap()]);
    s3_env(&mut cmd, moto.port);
    cmd.env("TMPDIR", &temp).env("RUST_LOG", "info");
    let log = stderr(&run_expect(cmd, 0));
    assert!(log.contains("copying s3://models/tiny/classes"), "{log}");
    assert!(log.contains("copying s3://models/tokenizers/domains.txt"), "{log}");
    assert!(log.contains("copying s3://models/tokenizers/words-en.txt"), "{log}");
    let bad_words: Value =
        serde_json::from_slice(&std::fs::read(local_dir.join("out/bad_words/_manifest/stage.json")).unwrap()).unwrap();
    let dropped = bad_words["counts"]["rejected"]["bad_words"].as_u64().unwrap_or(0);
    let kept = bad_words["counts"]["documents_out"].as_u64().unwrap();
    assert!(dropped > 0 && kept > 0, "{bad_words}");

    let data = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        outputs(root)
            .into_iter()
            .filter(|(k, _)| !k.contains("_manifest/") && !k.ends_with("manifest.json"))
            .collect()
    };
    let expected = data(&local_dir.join("out"));
    assert!(
        expected.keys().any(|k| k.starts_with("quality/shard-")),
        "{:?}",
        expected.keys()
    );
    assert!(expected.keys().any(|k| k.starts_with("pack/")), "{:?}", expected.keys());
    assert_same_outputs(&expected, &data(&remote_dir.join("out")), "models from s3://");
    let pack = std::fs::read_to_string(remote_dir.join("out/pack/manifest.json")).unwrap();
    assert!(pack.contains("s3://models/tokenizers/llama3.model"), "{pack}");
    let left: Vec<_> = std::fs::read_dir(&temp).unwrap().collect();
    assert!(left.is_empty(), "copies left behind: {left:?}");

    // A folder that is not a checkpoint is named in the error.
    let wrong = write_config(
        &remote_dir,
        &input,
        "",
        &stages(
            "s3://models/tiny",
            "s3://models/tiny/byte-tokenizer.model",
            "s3://models/tokenizers/llama3.model",
            "s3://models/tokenizers/domains.txt",
        ),
    );
    std::fs::remove_dir_all(remote_dir.join("out")).unwrap();
    let mut cmd = thresher(&remote_dir, &["run", wrong.to_str().unwrap()]);
    s3_env(&mut cmd, moto.port);
    cmd.env("TMPDIR", &temp);
    let err = stderr(&run_expect(cmd, 2));
    assert!(
        err.contains("s3://models/tiny") && err.contains("holds no config.json"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&temp).unwrap().count(), 0);
}
