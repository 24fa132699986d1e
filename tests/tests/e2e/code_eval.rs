//! `thresher classifier train-code` and `thresher eval code` on this
//! repository's own files: trained on every other file of each kind,
//! judged on the rest.

use std::path::{Path, PathBuf};

use crate::util::*;

fn repo_files(ext: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() && !name.starts_with('.') && name != "target" && name != "gpu-run" {
                walk(&path, ext, out);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    walk(&root, ext, &mut out);
    out.sort();
    out
}

#[test]
fn code_classifier_trains_and_is_measured() {
    let dir = TestDir::new("code-eval");
    for (label, ext) in [("Rust", "rs"), ("Python", "py"), ("Markdown", "md")] {
        let files = repo_files(ext);
        assert!(files.len() >= 4, "{label}: {} files", files.len());
        for (i, file) in files.iter().enumerate() {
            let split = if i % 2 == 0 { "train" } else { "test" };
            let target = dir.join(&format!("{split}/{label}/{i:04}.{ext}"));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(file, target).unwrap();
        }
    }
    let model = dir.join("code.bin");
    run_expect(
        thresher(
            &dir.path,
            &[
                "classifier",
                "train-code",
                "--data",
                dir.join("train").to_str().unwrap(),
                "--out",
                model.to_str().unwrap(),
            ],
        ),
        0,
    );
    let out = run_expect(
        thresher(
            &dir.path,
            &[
                "eval",
                "code",
                "--model",
                model.to_str().unwrap(),
                "--data",
                dir.join("test").to_str().unwrap(),
                "--sentences",
                testdata().join("langid/sentences").to_str().unwrap(),
                "--json",
            ],
        ),
        0,
    );
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let classes = e["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 3);
    // Markdown is prose, Rust and Python are code; files of one repository
    // are easy, so the figures must be high, and they must be consistent.
    assert!(e["code_f1"].as_f64().unwrap() > 0.9, "{e}");
    assert!(e["language_accuracy"].as_f64().unwrap() > 0.9, "{e}");
    // Every file whose language was judged wrong is listed, by its path.
    let wrong = e["misjudged"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["truth"] == "Rust" || m["truth"] == "Python")
        .inspect(|m| assert!(Path::new(m["path"].as_str().unwrap()).is_file(), "{m}"))
        .count() as f64;
    let files = e["language_files"].as_f64().unwrap();
    assert_eq!(
        wrong,
        (files * (1.0 - e["language_accuracy"].as_f64().unwrap())).round(),
        "{e}"
    );
    let rust = classes.iter().find(|c| c["label"] == "Rust").unwrap();
    assert_eq!(
        e["language_files"].as_u64().unwrap(),
        rust["files"].as_u64().unwrap()
            + classes.iter().find(|c| c["label"] == "Python").unwrap()["files"]
                .as_u64()
                .unwrap()
    );
}
