//! Training a `score` head on a frozen Llama backbone, as Llama 3's quality
//! classifiers were made: label texts with a large model (or by hand), then
//! fit a small head on the backbone's features.
//!
//! Input: JSON lines with `text` and either `score` (a number: regression,
//! fitted by ridge regression in closed form) or `label` (a string or number:
//! classification, fitted by L2-regularised softmax regression). Output: a
//! Hugging Face `LlamaForSequenceClassification` checkpoint folder (the
//! backbone's weights plus `score.weight`, the config with `id2label`, the
//! tokenizer) that the `quality` stage and transformers load.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::llama_classifier::{ClassifierError, LlamaClassifier, Result};
use crate::TextTokenizer;

/// What `train` needs.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// A Llama checkpoint folder (`LlamaForCausalLM`, `LlamaModel` or
    /// `LlamaForSequenceClassification`; any existing head is replaced).
    pub backbone: PathBuf,
    /// JSON lines: `{"text": ..., "label": ...}` or `{"text": ..., "score": ...}`.
    pub data: PathBuf,
    /// Folder to write the checkpoint to.
    pub out: PathBuf,
    /// Tokenizer file, when it is not in the backbone folder.
    pub tokenizer: Option<PathBuf>,
    pub max_tokens: usize,
    pub batch_tokens: usize,
    /// L2 penalty of the head.
    pub l2: f64,
    /// Held-out examples (same format as `data`) to report the fit on.
    pub eval: Option<PathBuf>,
}

/// How the fitted head does on its training data.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub examples: usize,
    /// `regression` or `classification`.
    pub kind: &'static str,
    pub labels: Vec<String>,
    /// R² (regression) or accuracy (classification) on the training data.
    pub fit: f64,
    /// The same on the held-out examples of [`TrainOptions::eval`].
    pub eval_fit: Option<f64>,
}

enum Targets {
    Scores(Vec<f64>),
    Labels(Vec<usize>, Vec<String>),
}

fn bad(path: &Path, message: String) -> ClassifierError {
    ClassifierError::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

fn read_examples(path: &Path) -> Result<(Vec<String>, Targets)> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let mut texts = Vec::new();
    let mut scores = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| bad(path, format!("line {}: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| bad(path, format!("line {}: {e}", n + 1)))?;
        let text = value["text"]
            .as_str()
            .ok_or_else(|| bad(path, format!("line {}: `text` must be a string", n + 1)))?;
        match (&value["score"], &value["label"]) {
            (Value::Number(s), Value::Null) if labels.is_empty() => scores.push(s.as_f64().unwrap_or(0.0)),
            (Value::Null, label @ (Value::String(_) | Value::Number(_))) if scores.is_empty() => {
                labels.push(label.as_str().map(str::to_string).unwrap_or_else(|| label.to_string()))
            }
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "line {}: needs a numeric `score` or a `label`, the same kind on every line",
                        n + 1
                    ),
                ))
            }
        }
        texts.push(text.to_string());
    }
    if texts.len() < 2 {
        return Err(bad(path, "needs at least two examples".into()));
    }
    if !scores.is_empty() {
        return Ok((texts, Targets::Scores(scores)));
    }
    // Labels in a stable order: numerically when all are numbers, else by name.
    let mut names: Vec<String> = labels.clone();
    names.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
    names.dedup();
    if names.len() < 2 {
        return Err(bad(path, "classification needs at least two distinct labels".into()));
    }
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let ids = labels.iter().map(|l| index[l.as_str()]).collect();
    Ok((texts, Targets::Labels(ids, names)))
}

/// Solves (XᵀX + λI) w = Xᵀy by Cholesky decomposition.
fn ridge(x: &[Vec<f32>], y: &[f64], l2: f64) -> Vec<f64> {
    let d = x[0].len();
    let mut a = vec![0.0f64; d * d];
    let mut b = vec![0.0f64; d];
    for (row, &target) in x.iter().zip(y) {
        for i in 0..d {
            let xi = row[i] as f64;
            b[i] += xi * target;
            for j in 0..=i {
                a[i * d + j] += xi * row[j] as f64;
            }
        }
    }
    for i in 0..d {
        a[i * d + i] += l2 * x.len() as f64;
    }
    // In-place Cholesky: a = L Lᵀ (lower triangle).
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        let diag = diag.max(1e-12).sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / diag;
        }
    }
    // L z = b, then Lᵀ w = z.
    let mut z = vec![0.0; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| a[i * d + k] * z[k]).sum();
        z[i] = (b[i] - s) / a[i * d + i];
    }
    let mut w = vec![0.0; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| a[k * d + i] * w[k]).sum();
        w[i] = (z[i] - s) / a[i * d + i];
    }
    w
}

/// Softmax regression by full-batch gradient descent with a step that
/// shrinks when the loss rises. Returns weights `[classes][dim]`.
fn softmax_regression(x: &[Vec<f32>], y: &[usize], classes: usize, l2: f64) -> Vec<Vec<f64>> {
    let (n, d) = (x.len(), x[0].len());
    let mut w = vec![vec![0.0f64; d]; classes];
    let loss_and_grad = |w: &[Vec<f64>]| {
        let mut grad = vec![vec![0.0f64; d]; classes];
        let mut loss = 0.0;
        for (row, &target) in x.iter().zip(y) {
            let logits: Vec<f64> = w
                .iter()
                .map(|wc| wc.iter().zip(row).map(|(a, b)| a * *b as f64).sum())
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            loss -= (exps[target] / sum).ln();
            for c in 0..classes {
                let p = exps[c] / sum - if c == target { 1.0 } else { 0.0 };
                for (g, xi) in grad[c].iter_mut().zip(row) {
                    *g += p * *xi as f64;
                }
            }
        }
        for c in 0..classes {
            for j in 0..d {
                loss += 0.5 * l2 * n as f64 * w[c][j] * w[c][j];
                grad[c][j] = (grad[c][j] + l2 * n as f64 * w[c][j]) / n as f64;
            }
        }
        (loss / n as f64, grad)
    };
    let mut step = 1.0;
    let (mut loss, mut grad) = loss_and_grad(&w);
    for _ in 0..500 {
        let trial: Vec<Vec<f64>> = w
            .iter()
            .zip(&grad)
            .map(|(wc, gc)| wc.iter().zip(gc).map(|(a, g)| a - step * g).collect())
            .collect();
        let (trial_loss, trial_grad) = loss_and_grad(&trial);
        if trial_loss < loss {
            w = trial;
            loss = trial_loss;
            grad = trial_grad;
            step *= 1.2;
        } else {
            step *= 0.5;
            if step < 1e-9 {
                break;
            }
        }
    }
    w
}

/// Fits a head and writes the checkpoint; see the module docs.
pub fn train(options: &TrainOptions) -> Result<TrainReport> {
    let device = Device::Cpu;
    let backbone = LlamaClassifier::load(&options.backbone, &device, DType::F32)?;
    let tokenizer_path = match &options.tokenizer {
        Some(path) => path.clone(),
        None => crate::checkpoint_tokenizer(&options.backbone).ok_or_else(|| {
            bad(
                &options.backbone,
                "no tokenizer.json or tokenizer.model; pass --tokenizer".into(),
            )
        })?,
    };
    let tokenizer = TextTokenizer::load(&tokenizer_path).map_err(|e| bad(&tokenizer_path, e.to_string()))?;
    let (texts, targets) = read_examples(&options.data)?;
    // Exactly the input the quality stage scores.
    let input = crate::ClassifierInput::new(&tokenizer, &backbone.config, true, options.max_tokens);
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| input.ids(&tokenizer, t)).collect();
    let features = backbone.batched(&ids, options.batch_tokens, LlamaClassifier::pooled_on_device)?;
    if features.iter().any(Vec::is_empty) {
        return Err(bad(&options.data, "an example has no tokens".into()));
    }
    let (weights, labels, kind) = match &targets {
        Targets::Scores(y) => (
            vec![ridge(&features, y, options.l2)],
            vec!["LABEL_0".to_string()],
            "regression",
        ),
        Targets::Labels(y, names) => (
            softmax_regression(&features, y, names.len(), options.l2),
            names.clone(),
            "classification",
        ),
    };
    let fit = fit_of(&weights, &features, &targets);
    // Held-out examples go through exactly the same input and features.
    let eval_fit = match &options.eval {
        None => None,
        Some(path) => {
            let (eval_texts, eval_targets) = read_examples(path)?;
            let eval_targets = match (eval_targets, &targets) {
                (Targets::Scores(y), Targets::Scores(_)) => Targets::Scores(y),
                (Targets::Labels(ids, eval_names), Targets::Labels(_, names)) => {
                    // Map the eval set's label names onto the training set's.
                    let ids = ids
                        .iter()
                        .map(|&i| {
                            names.iter().position(|n| *n == eval_names[i]).ok_or_else(|| {
                                bad(
                                    path,
                                    format!("label {:?} does not occur in the training data", eval_names[i]),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Targets::Labels(ids, names.clone())
                }
                _ => {
                    return Err(bad(
                        path,
                        "needs the same kind of target (score or label) as --data".into(),
                    ))
                }
            };
            let ids: Vec<Vec<u32>> = eval_texts.iter().map(|t| input.ids(&tokenizer, t)).collect();
            let eval_features = backbone.batched(&ids, options.batch_tokens, LlamaClassifier::pooled_on_device)?;
            if eval_features.iter().any(Vec::is_empty) {
                return Err(bad(path, "an example has no tokens".into()));
            }
            Some(fit_of(&weights, &eval_features, &eval_targets))
        }
    };
    write_checkpoint(options, &tokenizer_path, &weights, &labels, kind)?;
    Ok(TrainReport {
        examples: texts.len(),
        kind,
        labels,
        fit,
        eval_fit,
    })
}

/// R² of a regression head, or accuracy of a classification head, on
/// `features` against `targets`.
fn fit_of(weights: &[Vec<f64>], features: &[Vec<f32>], targets: &Targets) -> f64 {
    let outputs = |x: &[f32]| -> Vec<f64> {
        weights
            .iter()
            .map(|w| w.iter().zip(x).map(|(a, b)| a * *b as f64).sum())
            .collect()
    };
    match targets {
        Targets::Scores(y) => {
            let mean = y.iter().sum::<f64>() / y.len() as f64;
            let total: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
            let residual: f64 = y.iter().zip(features).map(|(v, x)| (v - outputs(x)[0]).powi(2)).sum();
            1.0 - residual / total.max(1e-12)
        }
        Targets::Labels(y, _) => {
            let correct = features
                .iter()
                .zip(y)
                .filter(|(x, &target)| {
                    let scores = outputs(x);
                    let best = scores
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i);
                    best == Some(target)
                })
                .count();
            correct as f64 / y.len() as f64
        }
    }
}

fn write_checkpoint(
    options: &TrainOptions,
    tokenizer: &Path,
    weights: &[Vec<f64>],
    labels: &[String],
    kind: &str,
) -> Result<()> {
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| bad(out, e.to_string()))?;
    // The backbone's tensors (any old head dropped), plus the new head.
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for entry in std::fs::read_dir(&options.backbone).map_err(|e| bad(&options.backbone, e.to_string()))? {
        let path = entry.map_err(|e| bad(&options.backbone, e.to_string()))?.path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            for (name, tensor) in candle_core::safetensors::load(&path, &Device::Cpu)? {
                if name.starts_with("model.") {
                    tensors.insert(name, tensor);
                }
            }
        }
    }
    let dim = weights[0].len();
    let flat: Vec<f32> = weights.iter().flatten().map(|&w| w as f32).collect();
    tensors.insert(
        "score.weight".into(),
        Tensor::from_vec(flat, (weights.len(), dim), &Device::Cpu)?,
    );
    candle_core::safetensors::save(&tensors, out.join("model.safetensors"))?;

    let config_path = options.backbone.join("config.json");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&config_path).map_err(|e| bad(&config_path, e.to_string()))?)
            .map_err(|e| bad(&config_path, e.to_string()))?;
    let id2label: BTreeMap<String, String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone()))
        .collect();
    let label2id: BTreeMap<String, usize> = labels.iter().enumerate().map(|(i, l)| (l.clone(), i)).collect();
    config["architectures"] = json!(["LlamaForSequenceClassification"]);
    config["id2label"] = json!(id2label);
    config["label2id"] = json!(label2id);
    config["problem_type"] = json!(if kind == "regression" {
        "regression"
    } else {
        "single_label_classification"
    });
    if config["pad_token_id"].is_null() {
        // transformers needs one to find the last token of padded rows.
        config["pad_token_id"] = config["eos_token_id"].clone();
    }
    let config_out = out.join("config.json");
    std::fs::write(&config_out, serde_json::to_vec_pretty(&config).expect("json"))
        .map_err(|e| bad(&config_out, e.to_string()))?;
    // Under the name loaders look for beside a checkpoint.
    let name = if tokenizer.extension().is_some_and(|e| e == "json") {
        "tokenizer.json"
    } else {
        "tokenizer.model"
    };
    std::fs::copy(tokenizer, out.join(name)).map_err(|e| bad(tokenizer, e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-cls")
    }

    /// Texts of two kinds that a byte-level model can tell apart.
    fn examples(dir: &Path, regression: bool) -> PathBuf {
        let mut lines = String::new();
        for i in 0..120 {
            let zs = i % 7;
            let text = format!("{}{}", "z".repeat(zs * 3), "the quick brown fox ".repeat(1 + i % 3));
            let line = if regression {
                json!({"text": text, "score": zs as f64 / 6.0})
            } else {
                json!({"text": text, "label": if zs >= 3 { "good" } else { "bad" }})
            };
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        let path = dir.join("train.jsonl");
        std::fs::write(&path, lines).unwrap();
        path
    }

    fn run(name: &str, regression: bool) -> (TrainReport, PathBuf) {
        let dir = std::env::temp_dir().join(format!("thresher-train-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = examples(&dir, regression);
        let options = TrainOptions {
            backbone: fixtures().join("regression"),
            // The training data again: the held-out path must report the same fit.
            eval: Some(data.clone()),
            data,
            out: dir.join("checkpoint"),
            tokenizer: Some(fixtures().join("byte-tokenizer.model")),
            max_tokens: 128,
            batch_tokens: 2048,
            l2: 1e-4,
        };
        let report = train(&options).unwrap();
        assert_eq!(report.eval_fit, Some(report.fit));
        (report, options.out)
    }

    #[test]
    fn classification_head_fits_and_the_checkpoint_scores_alike() {
        let (report, checkpoint) = run("classes", false);
        assert_eq!(report.kind, "classification");
        assert_eq!(report.labels, ["bad", "good"]);
        assert!(report.fit > 0.9, "training accuracy {}", report.fit);
        let model = LlamaClassifier::load(&checkpoint, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(model.config.labels(), ["bad", "good"]);
        assert!(checkpoint.join("tokenizer.model").is_file());
        // The written head separates the two kinds.
        let tokenizer = TextTokenizer::load(&checkpoint.join("tokenizer.model")).unwrap();
        let ids = |t: &str| tokenizer.encode_with(t, tokenizer.special_id("<|begin_of_text|>"), None);
        let logits = model
            .logits(&[
                ids(&format!("{}the quick brown fox ", "z".repeat(18))),
                ids("the quick brown fox "),
            ])
            .unwrap();
        assert!(logits[0][1] - logits[0][0] > logits[1][1] - logits[1][0]);
    }

    #[test]
    fn regression_head_fits() {
        let (report, checkpoint) = run("regression", true);
        assert_eq!(report.kind, "regression");
        assert!(report.fit > 0.5, "training R² {}", report.fit);
        let config: Value = serde_json::from_slice(&std::fs::read(checkpoint.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["problem_type"], "regression");
        assert_eq!(config["id2label"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn ridge_solves_a_known_system() {
        let x = vec![vec![1.0f32, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]];
        let y = vec![2.0, 3.0, 5.0];
        let w = ridge(&x, &y, 0.0);
        assert!((w[0] - 2.0).abs() < 1e-6 && (w[1] - 3.0).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn mixed_targets_are_refused_with_the_line() {
        let dir = std::env::temp_dir().join(format!("thresher-train-mixed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mixed.jsonl");
        std::fs::write(
            &path,
            "{\"text\":\"a\",\"score\":1}\n{\"text\":\"b\",\"label\":\"x\"}\n",
        )
        .unwrap();
        let err = read_examples(&path).err().unwrap().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
