//! Shared helpers: temp folders, the `thresher` command, configs, corpora
//! made from the real test data, and output comparison with readable diffs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Documents of a stage's data shards (not its `_` sidecars).
pub fn stage_documents(stage_dir: &Path) -> Vec<Value> {
    files_under(stage_dir)
        .into_iter()
        .filter(|p| {
            let rel = p.strip_prefix(stage_dir).unwrap().to_string_lossy().to_string();
            !rel.starts_with('_') && rel.ends_with(".jsonl.zst") && !rel.starts_with("tokens/")
        })
        .flat_map(|p| read_zst(&p))
        .collect()
}

/// The repository root (the tests crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `../shared/testdata` beside the repository.
pub fn testdata() -> PathBuf {
    let dir = repo_root().join("../shared/testdata");
    assert!(dir.is_dir(), "test data not found at {}", dir.display());
    dir
}

/// The `thresher` binary of the same build profile as this test
/// (`scripts/test` builds it first), or `$THRESHER_BIN`.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("THRESHER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("thresher");
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p thresher` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A temporary folder, removed when the test passes (kept on failure for a look).
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("thresher-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `thresher ARGS` run in `cwd`, logs quiet unless RUST_LOG says otherwise.
pub fn thresher(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.current_dir(cwd).args(args);
    if std::env::var("RUST_LOG").is_err() {
        cmd.env("RUST_LOG", "warn");
    }
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "JOB_COMPLETION_INDEX",
        "THRESHER_KILL_AFTER_COMMITS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs and returns the output; panics with stderr when the exit code differs.
pub fn run_expect(mut cmd: impl std::borrow::BorrowMut<Command>, code: i32) -> Output {
    let out = cmd.borrow_mut().output().expect("thresher runs");
    if out.status.code() != Some(code) {
        panic!(
            "expected exit code {code}, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `<dir>/pipeline.toml` reading `input` and writing `<dir>/out`.
pub fn write_config(dir: &Path, input: &Path, extra: &str, stages: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    let text = format!(
        "[input]\npath = {:?}\n{extra}\n[output]\npath = {:?}\n\n{stages}",
        input.to_string_lossy(),
        dir.join("out").to_string_lossy()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Every stage, small enough for tests: 4 dedup partitions, rows of 512
/// tokens packed in windows of 4096 tokens (so that windows matter).
pub fn all_stages() -> String {
    format!(
        "[[stages]]\nkind = \"ingest\"\n\n[[stages]]\nkind = \"exact_dedup\"\npartitions = 4\n\n\
         [[stages]]\nkind = \"langid\"\n\n[[stages]]\nkind = \"pack\"\ntokenizer = {:?}\nseq_len = 512\nwindow_tokens = 4096\n",
        llama3_tokenizer().to_string_lossy()
    )
}

/// Meta's Llama 3 tokenizer (tiktoken format) from the shared test data.
pub fn llama3_tokenizer() -> PathBuf {
    testdata().join("tokenizer/llama3-tokenizer.model")
}

/// The Python that has numpy (`scripts/test` sets up one and exports it).
pub fn python() -> String {
    std::env::var("THRESHER_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `tests/python/check_packed.py` on a pack folder; panics with its output on failure.
pub fn check_packed(pack_dir: &Path) -> String {
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/check_packed.py"))
        .arg(pack_dir)
        .output()
        .expect("python runs (set THRESHER_PYTHON to a Python with numpy; scripts/test does)");
    assert!(
        out.status.success(),
        "check_packed.py failed on {}:\n{}{}",
        pack_dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every line of a `jsonl.zst` file as JSON.
pub fn read_zst(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if entry.path().is_dir() {
            walk(&entry.path(), &rel, out);
        } else {
            out.push(rel);
        }
    }
}

/// What must be identical between two runs: every data file byte for byte,
/// and every manifest without its timings.
pub fn outputs(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = Vec::new();
    walk(root, "", &mut files);
    let mut out = BTreeMap::new();
    for rel in files {
        let bytes = std::fs::read(root.join(&rel)).unwrap();
        if rel.contains("/_manifest/") {
            let mut value: Value = serde_json::from_slice(&bytes).unwrap();
            if let Some(obj) = value.as_object_mut() {
                obj.remove("timing");
            }
            out.insert(rel, serde_json::to_vec_pretty(&value).unwrap());
        } else {
            out.insert(rel, bytes);
        }
    }
    out
}

/// Asserts two output trees are identical, naming the first differences.
pub fn assert_same_outputs(expected: &BTreeMap<String, Vec<u8>>, actual: &BTreeMap<String, Vec<u8>>, what: &str) {
    let mut problems = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => problems.push(format!("missing: {k}")),
            Some(a) if a != v => problems.push(format!("differs: {k}")),
            _ => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            problems.push(format!("unexpected: {k}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: outputs differ from the reference run:\n  {}",
        problems.join("\n  ")
    );
    assert!(!expected.is_empty(), "{what}: no outputs at all");
}

/// splitmix64, for corpora that are the same on every run.
pub use thresher_stages::SplitMix64 as Rng;

/// A corpus of real sentences (75 languages) in `shards` files of mixed
/// formats (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`), with exact copies planted
/// across shards: returns the ids of the planted copies.
pub fn multilingual_corpus(dir: &Path, shards: usize, docs_per_shard: usize, seed: u64) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut languages = Vec::new();
    for entry in std::fs::read_dir(testdata().join("langid/sentences")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(&path).unwrap();
            languages.push(text.lines().map(str::to_string).collect::<Vec<_>>());
        }
    }
    languages.sort();
    let mut rng = Rng(seed);
    let mut texts: Vec<String> = Vec::new();
    let mut planted = Vec::new();
    for s in 0..shards {
        let mut body = Vec::new();
        for d in 0..docs_per_shard {
            let id = format!("doc-{s}-{d}");
            let text = if !texts.is_empty() && rng.below(10) == 0 {
                planted.push(id.clone());
                // A copy that differs only in whitespace.
                texts[rng.below(texts.len())].replace(' ', "  ")
            } else {
                let lines = &languages[rng.below(languages.len())];
                let n = 2 + rng.below(12);
                (0..n)
                    .map(|_| lines[rng.below(lines.len())].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            texts.push(text.clone());
            body.extend_from_slice(serde_json::json!({"id": id, "text": text}).to_string().as_bytes());
            body.push(b'\n');
        }
        let path = dir.join(format!("shard-{s:02}"));
        match s % 3 {
            0 => std::fs::write(path.with_extension("jsonl"), &body).unwrap(),
            1 => {
                let mut gz = flate2::write::GzEncoder::new(
                    std::fs::File::create(path.with_extension("jsonl.gz")).unwrap(),
                    flate2::Compression::default(),
                );
                gz.write_all(&body).unwrap();
                gz.finish().unwrap();
            }
            _ => std::fs::write(
                path.with_extension("jsonl.zst"),
                zstd::encode_all(body.as_slice(), 3).unwrap(),
            )
            .unwrap(),
        }
    }
    planted
}

/// [`outputs`] of `<run_dir>/out`, with `run_dir` masked in manifests (they
/// name where each stage read from), so that runs in different folders compare.
pub fn outputs_masked(run_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let prefix = run_dir.to_string_lossy().to_string();
    outputs(&run_dir.join("out"))
        .into_iter()
        .map(|(k, v)| {
            if k.contains("/_manifest/") {
                let text = String::from_utf8(v).unwrap().replace(&prefix, "<RUN>");
                (k, text.into_bytes())
            } else {
                (k, v)
            }
        })
        .collect()
}

/// Runs `steps` (stage, its steps) as `tasks` processes per step, in the
/// order a scheduler would: every task of a step, then the next step.
pub fn run_steps_as_tasks(dir: &Path, config: &Path, steps: &[(&str, &[&str])], tasks: usize) {
    run_steps_as_tasks_logged(dir, config, steps, tasks, "warn");
}

/// [`run_steps_as_tasks`] at log level `level`, returning what they logged.
pub fn run_steps_as_tasks_logged(
    dir: &Path,
    config: &Path,
    steps: &[(&str, &[&str])],
    tasks: usize,
    level: &str,
) -> String {
    let mut log = String::new();
    for (stage, stage_steps) in steps {
        for step in *stage_steps {
            for index in 0..tasks {
                let mut cmd = thresher(
                    dir,
                    &[
                        "run",
                        config.to_str().unwrap(),
                        "--stage",
                        stage,
                        "--step",
                        step,
                        "--task-index",
                        &index.to_string(),
                        "--tasks",
                        &tasks.to_string(),
                    ],
                );
                cmd.env("RUST_LOG", level);
                let out = run_expect(cmd, 0);
                log.push_str(&String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    log
}
