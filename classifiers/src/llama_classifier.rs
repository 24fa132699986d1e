//! A Llama-architecture sequence classifier on candle, read like Hugging
//! Face's `LlamaForSequenceClassification`: `config.json`, `model.safetensors`
//! (or a sharded index), the `score` head applied to the hidden state of each
//! sequence's last real token.
//!
//! Two ways to run a layer ([`Kernels`]):
//! - candle's plain ops (matmul, mask, softmax, matmul) over right-padded
//!   batches. Under a causal mask a real token never attends to a later
//!   position, so padding is invisible to every real token and needs no mask
//!   of its own; the last real token of row `i` is `lengths[i] - 1`.
//! - fused kernels ([`crate::fused_ops`]; on the GPU, and the CPU's default
//!   through their CPU implementation) over documents packed end to end with
//!   no padding at all: q/k/v and gate/up each become one stacked
//!   projection, attention runs in one kernel that stops at document
//!   boundaries and never writes the t x t scores, and SwiGLU in one pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, linear_b, linear_no_bias, Embedding, Linear, RmsNorm, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::fused_ops::{add_rms_norm, causal_attention, CausalAttention, PackedDocuments, SwiGlu, FUSED_HEAD_DIMS};

pub type Result<T> = std::result::Result<T, ClassifierError>;

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Which kernels run the layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// Fused on the CPU, and on a GPU computing in bf16 when the head size
    /// has a kernel (64 or 128); plain otherwise.
    #[default]
    Auto,
    /// The fused kernels (on the CPU, their CPU implementation).
    Fused,
    /// candle's own ops.
    Plain,
}

/// RoPE settings, from either `rope_scaling` (transformers 4) or
/// `rope_parameters` (transformers 5).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeParameters {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    pub rope_theta: Option<f64>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
}

/// The parts of a Hugging Face `config.json` the classifier uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ClassifierConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<RopeParameters>,
    pub rope_parameters: Option<RopeParameters>,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<serde_json::Value>,
    /// Label names by index; their count is `num_labels` (1 = regression).
    pub id2label: Option<BTreeMap<String, String>>,
    pub num_labels: Option<usize>,
}

impl ClassifierConfig {
    pub fn num_labels(&self) -> usize {
        self.id2label.as_ref().map(|m| m.len()).or(self.num_labels).unwrap_or(2)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Heads, KV heads and head size, as the attention op takes them.
    fn attention_shape(&self) -> CausalAttention {
        CausalAttention {
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads(),
            head_dim: self.head_dim(),
        }
    }

    /// Labels in index order (`LABEL_i` where the config has none).
    pub fn labels(&self) -> Vec<String> {
        (0..self.num_labels())
            .map(|i| {
                self.id2label
                    .as_ref()
                    .and_then(|m| m.get(&i.to_string()).cloned())
                    .unwrap_or_else(|| format!("LABEL_{i}"))
            })
            .collect()
    }

    fn rope(&self) -> RopeParameters {
        let mut rope = self
            .rope_parameters
            .clone()
            .or(self.rope_scaling.clone())
            .unwrap_or_default();
        if rope.rope_theta.is_none() {
            rope.rope_theta = Some(self.rope_theta.unwrap_or(10_000.0));
        }
        rope
    }

    /// RoPE inverse frequencies, with Llama 3's frequency scaling when configured.
    fn inv_freq(&self) -> std::result::Result<Vec<f32>, String> {
        let rope = self.rope();
        let theta = rope.rope_theta.unwrap_or(10_000.0);
        let dim = self.head_dim();
        let base: Vec<f64> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / theta.powf(i as f64 / dim as f64))
            .collect();
        match rope.rope_type.as_deref() {
            None | Some("default") => Ok(base.into_iter().map(|f| f as f32).collect()),
            Some("llama3") => {
                let missing = |k: &str| format!("rope_type llama3 needs `{k}`");
                let factor = rope.factor.ok_or_else(|| missing("factor"))?;
                let low = rope.low_freq_factor.ok_or_else(|| missing("low_freq_factor"))?;
                let high = rope.high_freq_factor.ok_or_else(|| missing("high_freq_factor"))?;
                let original = rope
                    .original_max_position_embeddings
                    .ok_or_else(|| missing("original_max_position_embeddings"))? as f64;
                let (low_wavelen, high_wavelen) = (original / low, original / high);
                Ok(base
                    .into_iter()
                    .map(|freq| {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        let scaled = if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / factor
                        } else {
                            let smooth = (original / wavelen - low) / (high - low);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        };
                        scaled as f32
                    })
                    .collect())
            }
            Some(other) => Err(format!("rope_type '{other}' is not supported (default and llama3 are)")),
        }
    }
}

/// q, k and v as three projections, or stacked into one (fused kernels).
enum QkvProjection {
    Separate { q: Linear, k: Linear, v: Linear },
    Stacked(Linear),
}

/// Stacks projections of the same input into one (rows concatenated), so one
/// matmul computes them all.
fn stack(parts: &[&Linear]) -> candle_core::Result<Linear> {
    let weights: Vec<Tensor> = parts.iter().map(|l| l.weight().clone()).collect();
    let bias = match parts.iter().map(|l| l.bias().cloned()).collect::<Option<Vec<_>>>() {
        Some(biases) => Some(Tensor::cat(&biases, 0)?),
        None => None,
    };
    Ok(Linear::new(Tensor::cat(&weights, 0)?, bias))
}

struct Attention {
    qkv: QkvProjection,
    o_proj: Linear,
    /// Heads, KV heads and head size: also the fused kernel's op.
    shape: CausalAttention,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &ClassifierConfig, fused: bool) -> candle_core::Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads());
        let bias = cfg.attention_bias;
        let q = linear_b(h, heads * hd, bias, vb.pp("q_proj"))?;
        let k = linear_b(h, kv_heads * hd, bias, vb.pp("k_proj"))?;
        let v = linear_b(h, kv_heads * hd, bias, vb.pp("v_proj"))?;
        Ok(Self {
            qkv: if fused {
                QkvProjection::Stacked(stack(&[&q, &k, &v])?)
            } else {
                QkvProjection::Separate { q, k, v }
            },
            o_proj: linear_b(heads * hd, h, bias, vb.pp("o_proj"))?,
            shape: cfg.attention_shape(),
        })
    }

    fn forward(&self, x: &Tensor, layout: &TokenLayout) -> candle_core::Result<Tensor> {
        let y = match (&self.qkv, layout) {
            (QkvProjection::Stacked(qkv), TokenLayout::Packed { rope, documents }) => {
                causal_attention(&qkv.forward(x)?, rope, documents, &self.shape)?
            }
            (QkvProjection::Separate { q, k, v }, TokenLayout::Padded { cos, sin, mask }) => plain_attention(
                &q.forward(x)?,
                &k.forward(x)?,
                &v.forward(x)?,
                cos,
                sin,
                mask,
                &self.shape,
            )?,
            _ => candle_core::bail!("the fused kernels take packed documents, candle's ops padded rows"),
        };
        self.o_proj.forward(&y)
    }
}

/// How a batch's tokens are laid out, and what attention needs to know of it.
enum TokenLayout<'a> {
    /// Right-padded rows `(b, t, hidden)` (candle's ops): RoPE tables of `t`
    /// positions and the additive causal mask `(t, t)`.
    Padded {
        cos: &'a Tensor,
        sin: &'a Tensor,
        mask: &'a Tensor,
    },
    /// Documents packed end to end, `(tokens, hidden)` (fused kernels):
    /// RoPE rows of cosines then sines, and where each document starts.
    Packed {
        rope: &'a Tensor,
        documents: &'a PackedDocuments,
    },
}

/// Causal attention with candle's own ops, from the q, k and v projections
/// (`(b, t, heads * head_dim)` and `(b, t, kv_heads * head_dim)`) to
/// `(b, t, heads * head_dim)`.
fn plain_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    mask: &Tensor,
    shape: &CausalAttention,
) -> candle_core::Result<Tensor> {
    let (b, t, _) = q.dims3()?;
    let hd = shape.head_dim;
    let split = |y: &Tensor, heads: usize| y.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous();
    let q = candle_nn::rotary_emb::rope(&split(q, shape.heads)?, cos, sin)?;
    let k = candle_nn::rotary_emb::rope(&split(k, shape.kv_heads)?, cos, sin)?;
    let v = split(v, shape.kv_heads)?;
    // Grouped-query attention: each KV head serves `heads / kv_heads` query heads.
    let repeat = shape.heads / shape.kv_heads;
    let (k, v) = if repeat == 1 {
        (k, v)
    } else {
        let expand = |y: Tensor| {
            y.unsqueeze(2)?
                .expand((b, shape.kv_heads, repeat, t, hd))?
                .reshape((b, shape.heads, t, hd))
        };
        (expand(k)?, expand(v)?)
    };
    // Scaling q (t × head_dim) instead of the scores (t × t) saves a
    // pass over the largest tensor of the layer.
    let q = (q * (1.0 / (hd as f64).sqrt()))?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let y = probs.matmul(&v.contiguous()?)?;
    y.transpose(1, 2)?.reshape((b, t, shape.heads * hd))
}

/// How far the fused kernels may stray from candle's ops in the load-time
/// check ([`relative_difference`]): bf16 rounding gives about 0.01 (0.010 and
/// 0.013 for the CPU implementation against candle's bf16 ops); a wrong head, mask
/// or RoPE gives 0.3 and more.
const FUSED_TOLERANCE: f32 = 0.05;

/// The largest [`relative_difference`] between the fused kernels and candle's own ops on
/// random inputs of a model's attention shape, hidden and MLP widths, on the device
/// and in the dtype of its RoPE tables `cos`/`sin`. Loading onto a GPU runs
/// it before trusting the fused kernels.
fn fused_kernels_disagreement(
    shape: &CausalAttention,
    hidden: usize,
    intermediate: usize,
    cos: &Tensor,
    sin: &Tensor,
) -> candle_core::Result<f32> {
    let (device, dtype) = (cos.device(), cos.dtype());
    // Two documents packed: the first longer than one 64-key tile, neither a
    // multiple of 64 queries, the second starting inside a tile's span.
    let lengths = [77.min(cos.dim(0)?), 30.min(cos.dim(0)?)];
    let (qkv, [q, k, v]) = random_qkv(shape, lengths.iter().sum(), device, dtype)?;
    let documents = PackedDocuments::new(&lengths, device)?;
    let fused = causal_attention(&qkv, &Tensor::cat(&[cos, sin], 1)?, &documents, shape)?;
    // candle's ops, one document at a time.
    let mut plain = Vec::new();
    for (&start, &len) in documents.starts.iter().zip(&lengths) {
        let row = |y: &Tensor| y.narrow(0, start, len)?.unsqueeze(0);
        let (cos, sin) = (cos.narrow(0, 0, len)?, sin.narrow(0, 0, len)?);
        let mask = causal_mask(len, dtype, device)?;
        plain.push(plain_attention(&row(&q)?, &row(&k)?, &row(&v)?, &cos, &sin, &mask, shape)?.squeeze(0)?);
    }
    let attention = relative_difference(&fused, &Tensor::cat(&plain, 0)?)?;
    let gate_up = Tensor::randn(0f32, 2.0, (2, 7, 2 * intermediate), device)?.to_dtype(dtype)?;
    let fused = gate_up.apply_op1_no_bwd(&SwiGlu)?;
    let (gate, up) = (
        gate_up.narrow(2, 0, intermediate)?,
        gate_up.narrow(2, intermediate, intermediate)?,
    );
    let plain = (candle_nn::ops::silu(&gate.contiguous()?)? * up)?;
    let swiglu = relative_difference(&fused, &plain)?;
    let random = |scale: f32, dims: (usize, usize)| Tensor::randn(0f32, scale, dims, device)?.to_dtype(dtype);
    let (x, delta) = (random(3.0, (7, hidden))?, random(1.0, (7, hidden))?);
    let norm = RmsNorm::new((random(0.5, (1, hidden))?.squeeze(0)? + 1.0)?, 1e-5);
    let (sum, normed) = add_rms_norm(&x, &delta, &norm)?;
    let plain_sum = (&x + &delta)?;
    let add_norm =
        relative_difference(&sum, &plain_sum)?.max(relative_difference(&normed, &norm.forward(&plain_sum)?)?);
    Ok(attention.max(swiglu).max(add_norm))
}

/// A random stacked q/k/v projection output `(tokens, (heads + 2 kv_heads) *
/// head_dim)` for the fused op, and its q, k and v as separate contiguous
/// tensors, as the plain path gets them from its three projections.
fn random_qkv(
    shape: &CausalAttention,
    tokens: usize,
    device: &Device,
    dtype: DType,
) -> candle_core::Result<(Tensor, [Tensor; 3])> {
    let (q_width, kv_width) = (shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim);
    let qkv = Tensor::randn(0f32, 1.0, (tokens, q_width + 2 * kv_width), device)?.to_dtype(dtype)?;
    let q = qkv.narrow(1, 0, q_width)?.contiguous()?;
    let k = qkv.narrow(1, q_width, kv_width)?.contiguous()?;
    let v = qkv.narrow(1, q_width + kv_width, kv_width)?.contiguous()?;
    Ok((qkv, [q, k, v]))
}

/// max |a - b| / (1 + |b|): relative where values are large (bf16's last bit
/// is 0.016 at 3 and 0.125 at 20), absolute near zero.
fn relative_difference(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    let (a, b) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
    ((a - &b)?.abs()? / (b.abs()? + 1.0)?)?.max_all()?.to_scalar::<f32>()
}

/// gate and up as two projections, or stacked into one (fused kernels).
enum GateUpProjection {
    Separate { gate: Linear, up: Linear },
    Stacked(Linear),
}

struct Mlp {
    gate_up: GateUpProjection,
    down_proj: Linear,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &ClassifierConfig, fused: bool) -> candle_core::Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        let gate = linear_b(h, i, bias, vb.pp("gate_proj"))?;
        let up = linear_b(h, i, bias, vb.pp("up_proj"))?;
        Ok(Self {
            gate_up: if fused {
                GateUpProjection::Stacked(stack(&[&gate, &up])?)
            } else {
                GateUpProjection::Separate { gate, up }
            },
            down_proj: linear_b(i, h, bias, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = match &self.gate_up {
            GateUpProjection::Separate { gate, up } => (candle_nn::ops::silu(&gate.forward(x)?)? * up.forward(x)?)?,
            GateUpProjection::Stacked(gate_up) => gate_up.forward(x)?.apply_op1_no_bwd(&SwiGlu)?,
        };
        self.down_proj.forward(&hidden)
    }
}

struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn load(vb: VarBuilder, cfg: &ClassifierConfig, fused: bool) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            input_layernorm: candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::load(vb.pp("self_attn"), cfg, fused)?,
            post_attention_layernorm: candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::load(vb.pp("mlp"), cfg, fused)?,
        })
    }

    /// candle's ops over padded rows (the fused kernels' packed documents
    /// go through [`Block::forward_packed`]).
    fn forward(&self, x: &Tensor, layout: &TokenLayout) -> candle_core::Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.input_layernorm.forward(x)?, layout)?)?;
        &x + self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?
    }

    /// The fused kernels' layer: each residual add and the norm after it
    /// are one pass ([`add_rms_norm`]), the last one with the next layer's
    /// input norm. `normed` is this layer's input norm of `x` (from the
    /// previous layer's last pass); returns the layer's output and, when
    /// `next_norm` is given, that norm of it.
    fn forward_packed(
        &self,
        x: &Tensor,
        normed: &Tensor,
        layout: &TokenLayout,
        next_norm: Option<&RmsNorm>,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let attention = self.self_attn.forward(normed, layout)?;
        let (x, normed) = add_rms_norm(x, &attention, &self.post_attention_layernorm)?;
        let mlp = self.mlp.forward(&normed)?;
        match next_norm {
            Some(norm) => add_rms_norm(&x, &mlp, norm).map(|(x, normed)| (x, Some(normed))),
            None => Ok(((x + mlp)?, None)),
        }
    }
}

/// `LlamaForSequenceClassification`, loaded for inference.
pub struct LlamaClassifier {
    pub config: ClassifierConfig,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    /// `None` for a backbone without a head (e.g. `LlamaForCausalLM`), which
    /// gives features for training one.
    score: Option<Linear>,
    /// RoPE tables for every position up to `max_position_embeddings`.
    cos: Tensor,
    sin: Tensor,
    /// The same as the fused kernel reads them, each row `cos` then `sin`;
    /// `Some` exactly when the layers run the fused kernels (resolved from
    /// [`Kernels`]).
    rope: Option<Tensor>,
    device: Device,
    dtype: DType,
}

/// The safetensors files of a checkpoint folder: `model.safetensors`, or the
/// shards named by `model.safetensors.index.json`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    let bad = |message: String| ClassifierError::Checkpoint {
        path: dir.to_path_buf(),
        message,
    };
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&index_path).map_err(|e| bad(format!("no model.safetensors and no readable index: {e}")))?,
    )
    .map_err(|e| bad(format!("model.safetensors.index.json: {e}")))?;
    let mut files: Vec<String> = index["weight_map"]
        .as_object()
        .ok_or_else(|| bad("model.safetensors.index.json has no weight_map".into()))?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

impl LlamaClassifier {
    /// Loads a checkpoint folder onto `device`, computing in `dtype` (f32 on
    /// CPU, bf16 on GPU); weights stored in any float type are converted.
    /// Layers run [`Kernels::Auto`].
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_kernels(dir, device, dtype, Kernels::Auto)
    }

    /// [`Self::load`] with the layers' kernels chosen.
    pub fn load_with_kernels(dir: &Path, device: &Device, dtype: DType, kernels: Kernels) -> Result<Self> {
        let bad = |message: String| ClassifierError::Checkpoint {
            path: dir.to_path_buf(),
            message,
        };
        let config_bytes = std::fs::read(dir.join("config.json")).map_err(|e| bad(format!("config.json: {e}")))?;
        let config: ClassifierConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| bad(format!("config.json: {e}")))?;
        if !config.num_attention_heads.is_multiple_of(config.num_key_value_heads()) {
            return Err(bad(
                "num_attention_heads must be a multiple of num_key_value_heads".into()
            ));
        }
        let inv_freq = config.inv_freq().map_err(bad)?;
        let has_kernel = device.is_cuda() && dtype == DType::BF16 && FUSED_HEAD_DIMS.contains(&config.head_dim());
        let mut fused = match kernels {
            Kernels::Auto => device.is_cpu() || has_kernel,
            Kernels::Plain => false,
            Kernels::Fused if device.is_cpu() || has_kernel => true,
            Kernels::Fused => {
                return Err(bad(format!(
                    "kernels = \"fused\" on a GPU needs bf16 and a head size of 64 or 128 (this model's is {})",
                    config.head_dim()
                )))
            }
        };
        let positions = config.max_position_embeddings;
        let freqs = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?
            .matmul(&Tensor::new(inv_freq.as_slice(), device)?.reshape((1, inv_freq.len()))?)?;
        let (cos, sin) = (freqs.cos()?.to_dtype(dtype)?, freqs.sin()?.to_dtype(dtype)?);
        if fused && !device.is_cpu() {
            // The kernels are checked against candle's ops on this device
            // before they are trusted: `auto` falls back to the plain ops,
            // `fused` refuses.
            let shape = config.attention_shape();
            match fused_kernels_disagreement(&shape, config.hidden_size, config.intermediate_size, &cos, &sin) {
                Ok(worst) if worst <= FUSED_TOLERANCE => {
                    tracing::info!("fused kernels agree with candle's ops on this device (max difference {worst:.4})")
                }
                outcome => {
                    let why = match outcome {
                        Ok(worst) => format!("they differ from candle's ops by {worst} (more than {FUSED_TOLERANCE})"),
                        Err(e) => format!("they failed: {e}"),
                    };
                    if kernels == Kernels::Fused {
                        return Err(bad(format!("the fused kernels cannot be used on this device: {why}")));
                    }
                    tracing::warn!(
                        "{}: fused kernels not used, {why}; running candle's plain ops",
                        dir.display()
                    );
                    fused = false;
                }
            }
        }
        let files = safetensors_files(dir)?;
        // SAFETY: the files are memory-mapped read-only; thresher never writes
        // checkpoint files while they are loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
        let model = vb.pp("model");
        let layers = (0..config.num_hidden_layers)
            .map(|i| Block::load(model.pp(format!("layers.{i}")), &config, fused))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|e| bad(format!("loading layers: {e}")))?;
        let embed_tokens = embedding(config.vocab_size, config.hidden_size, model.pp("embed_tokens"))
            .map_err(|e| bad(format!("embed_tokens: {e}")))?;
        let norm = candle_nn::rms_norm(config.hidden_size, config.rms_norm_eps, model.pp("norm"))?;
        let score = if vb.contains_tensor("score.weight") {
            Some(
                linear_no_bias(config.hidden_size, config.num_labels(), vb.pp("score"))
                    .map_err(|e| bad(format!("score head: {e}")))?,
            )
        } else {
            None
        };
        let model = Self {
            rope: if fused {
                Some(Tensor::cat(&[&cos, &sin], 1)?)
            } else {
                None
            },
            cos,
            sin,
            config,
            embed_tokens,
            layers,
            norm,
            score,
            device: device.clone(),
            dtype,
        };
        if !device.is_cpu() {
            // A GPU loads (and JIT-compiles) each of candle's kernel modules
            // on first use: do it now, not inside the first batch scored.
            model.pooled_tensor(&[vec![0, 0, 0], vec![0]])?;
            device.synchronize()?;
        }
        Ok(model)
    }

    /// The kernels the layers run: [`Kernels::Fused`] or [`Kernels::Plain`].
    pub fn kernels(&self) -> Kernels {
        if self.rope.is_some() {
            Kernels::Fused
        } else {
            Kernels::Plain
        }
    }

    /// Whether the checkpoint has a `score` head (else it is a backbone).
    pub fn has_head(&self) -> bool {
        self.score.is_some()
    }

    /// Where one layer's time goes with this model's kernels: seconds per
    /// call of each op of its first layer, in order, then of the whole layer
    /// (`"layer"`), on `rows` × `width` random tokens on its device. The
    /// profile to choose the next optimisation from.
    pub fn layer_profile(&self, rows: usize, width: usize) -> Result<Vec<(&'static str, f64)>> {
        let Some(layer) = self.layers.first() else {
            return Ok(Vec::new());
        };
        let (device, dtype) = (&self.device, self.dtype);
        let (tokens, hidden) = (rows * width, self.config.hidden_size);
        let shape = self.config.attention_shape();
        let random = |dims: (usize, usize)| Tensor::randn(0f32, 1.0, dims, device)?.to_dtype(dtype);
        let x = random((tokens, hidden))?;
        let time = |run: &dyn Fn() -> candle_core::Result<Tensor>| seconds_per_call(device, run);
        // The fused layer's norms come out of its residual adds (one pass
        // each, the second giving the next layer's input norm).
        let fused = matches!(layer.self_attn.qkv, QkvProjection::Stacked(_));
        let mut ops = Vec::new();
        if !fused {
            ops.push(("input norm", time(&|| layer.input_layernorm.forward(&x))?));
        }
        let (cos, sin) = (self.cos.narrow(0, 0, width)?, self.sin.narrow(0, 0, width)?);
        let mask = causal_mask(width, dtype, device)?;
        let documents = PackedDocuments::new(&vec![width; rows], device)?;
        let layout = match (&layer.self_attn.qkv, &self.rope) {
            (QkvProjection::Stacked(qkv), Some(rope)) => {
                ops.push(("q/k/v projection", time(&|| qkv.forward(&x))?));
                let qkv_out = qkv.forward(&x)?;
                ops.push((
                    "attention",
                    time(&|| causal_attention(&qkv_out, rope, &documents, &shape))?,
                ));
                TokenLayout::Packed {
                    rope,
                    documents: &documents,
                }
            }
            (QkvProjection::Separate { q, k, v }, _) => {
                ops.push((
                    "q/k/v projection",
                    time(&|| {
                        q.forward(&x)?;
                        k.forward(&x)?;
                        v.forward(&x)
                    })?,
                ));
                let by_row = |y: Tensor| y.reshape((rows, width, ()));
                let (q, k, v) = (
                    by_row(q.forward(&x)?)?,
                    by_row(k.forward(&x)?)?,
                    by_row(v.forward(&x)?)?,
                );
                ops.push((
                    "attention",
                    time(&|| plain_attention(&q, &k, &v, &cos, &sin, &mask, &shape))?,
                ));
                TokenLayout::Padded {
                    cos: &cos,
                    sin: &sin,
                    mask: &mask,
                }
            }
            (QkvProjection::Stacked(_), None) => unreachable!("stacked projections come with the fused kernels' table"),
        };
        let attention_out = random((tokens, shape.heads * shape.head_dim))?;
        ops.push(("o_proj", time(&|| layer.self_attn.o_proj.forward(&attention_out))?));
        if fused {
            ops.push((
                "residual add + norm",
                time(&|| Ok(add_rms_norm(&x, &x, &layer.post_attention_layernorm)?.0))?,
            ));
        } else {
            ops.push(("residual add", time(&|| &x + &x)?));
            ops.push((
                "post-attention norm",
                time(&|| layer.post_attention_layernorm.forward(&x))?,
            ));
        }
        let intermediate = self.config.intermediate_size;
        match &layer.mlp.gate_up {
            GateUpProjection::Stacked(gate_up) => {
                ops.push(("gate/up projection", time(&|| gate_up.forward(&x))?));
                let both = gate_up.forward(&x)?;
                ops.push(("SwiGLU", time(&|| both.apply_op1_no_bwd(&SwiGlu))?));
            }
            GateUpProjection::Separate { gate, up } => {
                ops.push((
                    "gate/up projection",
                    time(&|| {
                        gate.forward(&x)?;
                        up.forward(&x)
                    })?,
                ));
                let (g, u) = (gate.forward(&x)?, up.forward(&x)?);
                ops.push(("SwiGLU", time(&|| candle_nn::ops::silu(&g)? * &u)?));
            }
        }
        let activation = random((tokens, intermediate))?;
        ops.push(("down_proj", time(&|| layer.mlp.down_proj.forward(&activation))?));
        let whole_layer = if fused {
            ops.push((
                "residual add + norm",
                time(&|| Ok(add_rms_norm(&x, &x, &layer.input_layernorm)?.0))?,
            ));
            // A layer between two others: its input norm comes with x.
            let normed = layer.input_layernorm.forward(&x)?;
            time(&|| {
                Ok(layer
                    .forward_packed(&x, &normed, &layout, Some(&layer.input_layernorm))?
                    .0)
            })?
        } else {
            ops.push(("residual add", time(&|| &x + &x)?));
            let x_rows = x.reshape((rows, width, hidden))?;
            time(&|| layer.forward(&x_rows, &layout))?
        };
        ops.push(("layer", whole_layer));
        Ok(ops)
    }

    /// Logits (f32) of each sequence, in input order: `[batch][num_labels]`.
    /// The sequences form one batch (packed, or right-padded for candle's
    /// ops); each is scored at its last token.
    pub fn logits(&self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        rows_of(self.logits_on_device(sequences)?)
    }

    /// [`LlamaClassifier::logits`], left on the device as f32 (`None` for no
    /// sequences): a GPU may still be computing it.
    pub fn logits_on_device(&self, sequences: &[Vec<u32>]) -> Result<Option<Tensor>> {
        let Some(score) = &self.score else {
            return Err(ClassifierError::Checkpoint {
                path: PathBuf::new(),
                message: "this checkpoint has no `score` head; train one with `thresher classifier train`".into(),
            });
        };
        let Some(pooled) = self.pooled_tensor(sequences)? else {
            return Ok(None);
        };
        Ok(Some(score.forward(&pooled)?.to_dtype(DType::F32)?))
    }

    /// The features the head sees: the final-normed hidden state of each
    /// sequence's last token, `[batch][hidden_size]`.
    pub fn pooled(&self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        rows_of(self.pooled_on_device(sequences)?)
    }

    /// [`LlamaClassifier::pooled`], left on the device as f32 (`None` for no
    /// sequences): a GPU may still be computing it.
    pub fn pooled_on_device(&self, sequences: &[Vec<u32>]) -> Result<Option<Tensor>> {
        Ok(self
            .pooled_tensor(sequences)?
            .map(|p| p.to_dtype(DType::F32))
            .transpose()?)
    }

    fn pooled_tensor(&self, sequences: &[Vec<u32>]) -> Result<Option<Tensor>> {
        if sequences.is_empty() {
            return Ok(None);
        }
        let width = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 || sequences.iter().any(Vec::is_empty) {
            return Err(ClassifierError::Checkpoint {
                path: PathBuf::new(),
                message: "every sequence needs at least one token".into(),
            });
        }
        if width > self.config.max_position_embeddings {
            return Err(ClassifierError::Checkpoint {
                path: PathBuf::new(),
                message: format!(
                    "a sequence of {width} tokens exceeds max_position_embeddings ({}); truncate first",
                    self.config.max_position_embeddings
                ),
            });
        }
        let (x, last) = match &self.rope {
            Some(rope) => self.packed_hidden_states(sequences, rope)?,
            None => self.padded_hidden_states(sequences, width)?,
        };
        // Only the last real token of each sequence matters: gather it before
        // the final norm and head, in one op (one per sequence would be a
        // kernel launch per document on a GPU).
        let last = Tensor::from_vec(last, sequences.len(), &self.device)?;
        Ok(Some(self.norm.forward(&x.index_select(&last, 0)?)?))
    }

    /// The last layer's hidden states `(tokens, hidden)` of sequences packed
    /// end to end (fused kernels), and where each sequence's last token is.
    fn packed_hidden_states(&self, sequences: &[Vec<u32>], rope: &Tensor) -> Result<(Tensor, Vec<u32>)> {
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let documents = PackedDocuments::new(&lengths, &self.device)?;
        let ids = Tensor::from_vec(sequences.concat(), documents.tokens(), &self.device)?;
        let layout = TokenLayout::Packed {
            rope,
            documents: &documents,
        };
        let mut x = self.embed_tokens.forward(&ids)?;
        // Each layer hands the next its input norm, taken in its last pass.
        let mut normed = match self.layers.first() {
            Some(first) => Some(first.input_layernorm.forward(&x)?),
            None => None,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let next_norm = self.layers.get(i + 1).map(|next| &next.input_layernorm);
            let this_normed = normed.take().expect("each layer gets its input norm");
            (x, normed) = layer.forward_packed(&x, &this_normed, &layout, next_norm)?;
        }
        let last = documents.starts[1..].iter().map(|&end| end as u32 - 1).collect();
        Ok((x, last))
    }

    /// The last layer's hidden states of sequences right-padded to `width`
    /// (candle's ops), as `(rows * width, hidden)`, and where each
    /// sequence's last real token is.
    fn padded_hidden_states(&self, sequences: &[Vec<u32>], width: usize) -> Result<(Tensor, Vec<u32>)> {
        let pad = self.config.pad_token_id.unwrap_or(0);
        let mut ids = Vec::with_capacity(sequences.len() * width);
        for s in sequences {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(pad, width - s.len()));
        }
        let ids = Tensor::from_vec(ids, (sequences.len(), width), &self.device)?;
        let (cos, sin) = (self.cos.narrow(0, 0, width)?, self.sin.narrow(0, 0, width)?);
        let mask = causal_mask(width, self.dtype, &self.device)?;
        let layout = TokenLayout::Padded {
            cos: &cos,
            sin: &sin,
            mask: &mask,
        };
        let mut x = self.embed_tokens.forward(&ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, &layout)?;
        }
        let last = sequences
            .iter()
            .enumerate()
            .map(|(i, s)| (i * width + s.len() - 1) as u32)
            .collect();
        Ok((x.reshape((sequences.len() * width, self.config.hidden_size))?, last))
    }

    /// Runs `f` (`logits_on_device` or `pooled_on_device`) over many
    /// sequences in batches of at most `batch_tokens` tokens, and returns the
    /// rows in input order. Empty sequences give empty rows. With the fused
    /// kernels, sequences are packed end to end in input order (no padding to
    /// avoid); with candle's ops, they are sorted by length so that each
    /// right-padded batch wastes little, and `batch_tokens` counts the
    /// padding too.
    ///
    /// A batch's rows are copied back only after the next batch is queued:
    /// the copy waits for the GPU, and meanwhile the GPU has the next batch
    /// to work on instead of idling while the host prepares it.
    pub fn batched(
        &self,
        sequences: &[Vec<u32>],
        batch_tokens: usize,
        f: impl Fn(&Self, &[Vec<u32>]) -> Result<Option<Tensor>>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..sequences.len()).filter(|&i| !sequences[i].is_empty()).collect();
        let packed = self.rope.is_some();
        if !packed {
            // Longest first: each batch is as wide as its first sequence.
            order.sort_by(|&a, &b| sequences[b].len().cmp(&sequences[a].len()).then(a.cmp(&b)));
        }
        let mut rows = vec![Vec::new(); sequences.len()];
        let mut queued: Option<(&[usize], Tensor)> = None;
        let mut collect = |queued: Option<(&[usize], Tensor)>| -> Result<()> {
            if let Some((batch, output)) = queued {
                for (&i, row) in batch.iter().zip(output.to_vec2::<f32>()?) {
                    rows[i] = row;
                }
            }
            Ok(())
        };
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            if packed {
                let mut tokens = sequences[order[start]].len();
                while end < order.len() && tokens + sequences[order[end]].len() <= batch_tokens {
                    tokens += sequences[order[end]].len();
                    end += 1;
                }
            } else {
                let width = sequences[order[start]].len();
                end = (start + (batch_tokens / width).max(1)).min(order.len());
            }
            let batch = &order[start..end];
            let input: Vec<Vec<u32>> = batch.iter().map(|&i| sequences[i].clone()).collect();
            let output = f(self, &input)?.map(|output| (batch, output));
            collect(std::mem::replace(&mut queued, output))?;
            start = end;
        }
        collect(queued)?;
        Ok(rows)
    }
}

/// The rows of a `(rows, columns)` f32 tensor (none for `None`).
fn rows_of(tensor: Option<Tensor>) -> Result<Vec<Vec<f32>>> {
    Ok(tensor.map(|t| t.to_vec2::<f32>()).transpose()?.unwrap_or_default())
}

/// Seconds per call of `run` on `device`: one call to warm up, then at least
/// three calls and 0.2 s. Calls queue up on a GPU: the time is taken after
/// waiting for them all.
fn seconds_per_call(device: &Device, run: &dyn Fn() -> candle_core::Result<Tensor>) -> Result<f64> {
    run()?;
    device.synchronize()?;
    let start = std::time::Instant::now();
    let mut calls = 0;
    while calls < 3 || start.elapsed().as_secs_f64() < 0.2 {
        run()?;
        calls += 1;
    }
    device.synchronize()?;
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

fn causal_mask(t: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)?.to_dtype(dtype)
}

/// The tokenizer file beside a checkpoint: `tokenizer.json`, else `tokenizer.model`.
pub fn checkpoint_tokenizer(dir: &Path) -> Option<PathBuf> {
    ["tokenizer.json", "tokenizer.model"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// How a classifier's input is made from a text, the same for scoring
/// (`quality`) and for training a head: BOS, then the text's tokens, cut at
/// `max_tokens` or the model's `max_position_embeddings`, whichever is less.
pub struct ClassifierInput {
    pub bos: Option<u32>,
    pub max_tokens: usize,
}

impl ClassifierInput {
    /// BOS from the tokenizer's special tokens (`<|begin_of_text|>`, `<s>`,
    /// `<bos>`), else the model config's `bos_token_id`.
    pub fn new(tokenizer: &crate::TextTokenizer, config: &ClassifierConfig, add_bos: bool, max_tokens: usize) -> Self {
        let bos = add_bos
            .then(|| {
                ["<|begin_of_text|>", "<s>", "<bos>"]
                    .iter()
                    .find_map(|name| tokenizer.special_id(name))
                    .or_else(|| config.bos_token_id.as_ref().and_then(|v| v.as_u64()).map(|v| v as u32))
            })
            .flatten();
        // Positions past the model's trained context are ones it never saw:
        // scores there mean little, so the input stops there.
        let max_tokens = max_tokens.min(config.max_position_embeddings);
        Self { bos, max_tokens }
    }

    pub fn ids(&self, tokenizer: &crate::TextTokenizer, text: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        let room = self.max_tokens.saturating_sub(ids.len());
        ids.extend(tokenizer.encode_first(text, room));
        ids
    }
}

/// What a classifier says about one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The regression output, or the expected value of the label scores.
    pub score: f32,
    /// Softmax probabilities by label, for classification heads.
    pub probabilities: Option<Vec<(String, f32)>>,
}

/// Turns logits into a score: regression heads give it directly;
/// classification heads give probabilities and their expected value, where a
/// label's value is its name when that is a number (e.g. "0".."5") and its
/// index otherwise.
pub fn judge(logits: &[f32], labels: &[String]) -> Judgement {
    if logits.len() == 1 {
        return Judgement {
            score: logits[0],
            probabilities: None,
        };
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    let probs: Vec<f32> = exps.iter().map(|e| e / sum).collect();
    let score = probs
        .iter()
        .enumerate()
        .map(|(i, p)| p * labels.get(i).and_then(|l| l.parse::<f32>().ok()).unwrap_or(i as f32))
        .sum();
    Judgement {
        score,
        probabilities: Some(labels.iter().cloned().zip(probs).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-llama-cls")
            .join(name)
    }

    /// transformers' logits on padded batches, from `scripts/make_tiny_classifier.py`.
    /// Both kernel sets: the fused ones run their CPU implementation here,
    /// which checks the stacked projections, head layout, RoPE tables and
    /// packing they get.
    fn check_parity(name: &str) {
        for kernels in [Kernels::Plain, Kernels::Fused] {
            check_parity_with(name, kernels);
        }
    }

    fn check_parity_with(name: &str, kernels: Kernels) {
        let dir = fixture(name);
        let model = LlamaClassifier::load_with_kernels(&dir, &Device::Cpu, DType::F32, kernels).unwrap();
        assert_eq!(model.kernels(), kernels);
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let mut worst = 0f32;
        let mut checked = 0;
        for case in expected["cases"].as_array().unwrap() {
            let sequences: Vec<Vec<u32>> = serde_json::from_value(case["input_ids"].clone()).unwrap();
            let want: Vec<Vec<f32>> = serde_json::from_value(case["logits"].clone()).unwrap();
            let got = model.logits(&sequences).unwrap();
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                worst = worst.max((g - w).abs());
                checked += 1;
            }
            // Scored one at a time, each sequence gives the same logits: padding is invisible.
            for (s, w) in sequences.iter().zip(&want) {
                let alone = model.logits(std::slice::from_ref(s)).unwrap();
                for (g, w) in alone[0].iter().zip(w) {
                    worst = worst.max((g - w).abs());
                }
            }
        }
        assert!(checked >= 8, "{checked}");
        assert!(
            worst < 1e-4,
            "{name} ({kernels:?}): max |rust - transformers| = {worst}"
        );
        let max_logit = expected["cases"][0]["logits"][0][0].as_f64().unwrap().abs();
        assert!(
            max_logit > 1e-2,
            "fixture logits are too close to zero to test anything"
        );
    }

    #[test]
    fn regression_head_matches_transformers() {
        check_parity("regression");
    }

    #[test]
    fn classification_head_with_llama3_rope_matches_transformers() {
        check_parity("classes");
        let model = LlamaClassifier::load(&fixture("classes"), &Device::Cpu, DType::F32).unwrap();
        assert_eq!(model.config.labels(), vec!["low", "medium", "high"]);
    }

    #[test]
    fn sharded_checkpoint_loads_like_a_single_file() {
        // Split the regression fixture into two shards with an index, as
        // save_pretrained does for large models.
        let src = fixture("regression");
        let dir = std::env::temp_dir().join(format!("thresher-sharded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
        let (mut first, mut second) = (std::collections::HashMap::new(), std::collections::HashMap::new());
        let mut weight_map = serde_json::Map::new();
        for (i, (name, tensor)) in tensors.into_iter().enumerate() {
            let (shard, file) = if i % 2 == 0 {
                (&mut first, "model-00001-of-00002.safetensors")
            } else {
                (&mut second, "model-00002-of-00002.safetensors")
            };
            weight_map.insert(name.clone(), serde_json::json!(file));
            shard.insert(name, tensor);
        }
        candle_core::safetensors::save(&first, dir.join("model-00001-of-00002.safetensors")).unwrap();
        candle_core::safetensors::save(&second, dir.join("model-00002-of-00002.safetensors")).unwrap();
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::json!({"weight_map": weight_map}).to_string(),
        )
        .unwrap();
        let sharded = LlamaClassifier::load(&dir, &Device::Cpu, DType::F32).unwrap();
        let single = LlamaClassifier::load(&src, &Device::Cpu, DType::F32).unwrap();
        let input = vec![vec![5, 6, 7, 8], vec![9]];
        assert_eq!(sharded.logits(&input).unwrap(), single.logits(&input).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The load-time check of the fused kernels, on their CPU implementation: it
    /// passes at SmolLM's shape (9 heads over 3 KV heads of 64) and a
    /// 128-wide one, in f32 and bf16.
    #[test]
    fn the_fused_kernel_check_passes_on_the_cpu_implementation() {
        for (heads, kv_heads, head_dim) in [(9, 3, 64), (4, 4, 128)] {
            for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::BF16, FUSED_TOLERANCE)] {
                let half = head_dim / 2;
                let freqs: Vec<f32> = (0..100 * half)
                    .map(|i| (i / half) as f32 * 10_000f32.powf(-2.0 * (i % half) as f32 / head_dim as f32))
                    .collect();
                let freqs = Tensor::from_vec(freqs, (100, half), &Device::Cpu).unwrap();
                let (cos, sin) = (
                    freqs.cos().unwrap().to_dtype(dtype).unwrap(),
                    freqs.sin().unwrap().to_dtype(dtype).unwrap(),
                );
                let shape = CausalAttention {
                    heads,
                    kv_heads,
                    head_dim,
                };
                let worst = fused_kernels_disagreement(&shape, 72, 96, &cos, &sin).unwrap();
                assert!(worst < tolerance, "{heads}/{kv_heads}x{head_dim} {dtype:?}: {worst}");
            }
        }
    }

    /// With the fused kernels, `batched` packs sequences in input order up
    /// to the token budget (no padding counted), and each scores as alone.
    #[test]
    fn fused_batches_pack_documents_up_to_the_budget() {
        let model =
            LlamaClassifier::load_with_kernels(&fixture("regression"), &Device::Cpu, DType::F32, Kernels::Fused)
                .unwrap();
        let sequences: Vec<Vec<u32>> = [5, 1, 9, 0, 3, 7, 2, 4]
            .iter()
            .map(|&n| (0..n).map(|i| 3 + i as u32 * 7 % 50).collect())
            .collect();
        let batches = std::cell::RefCell::new(Vec::new());
        let rows = model
            .batched(&sequences, 10, |m, batch| {
                batches
                    .borrow_mut()
                    .push(batch.iter().map(Vec::len).collect::<Vec<_>>());
                m.logits_on_device(batch)
            })
            .unwrap();
        assert_eq!(*batches.borrow(), [vec![5, 1], vec![9], vec![3, 7], vec![2, 4]]);
        for (s, row) in sequences.iter().zip(&rows) {
            if s.is_empty() {
                assert!(row.is_empty());
                continue;
            }
            let alone = &model.logits(std::slice::from_ref(s)).unwrap()[0];
            for (a, b) in row.iter().zip(alone) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    /// The profile times every op of a layer with the model's own kernels,
    /// then the whole layer.
    #[test]
    fn layer_profile_times_each_op_of_both_kernel_sets() {
        for kernels in [Kernels::Plain, Kernels::Fused] {
            let model =
                LlamaClassifier::load_with_kernels(&fixture("regression"), &Device::Cpu, DType::F32, kernels).unwrap();
            let profile = model.layer_profile(2, 40).unwrap();
            let names: Vec<&str> = profile.iter().map(|op| op.0).collect();
            let want: &[&str] = match kernels {
                Kernels::Fused => &[
                    "q/k/v projection",
                    "attention",
                    "o_proj",
                    "residual add + norm",
                    "gate/up projection",
                    "SwiGLU",
                    "down_proj",
                    "residual add + norm",
                    "layer",
                ],
                _ => &[
                    "input norm",
                    "q/k/v projection",
                    "attention",
                    "o_proj",
                    "residual add",
                    "post-attention norm",
                    "gate/up projection",
                    "SwiGLU",
                    "down_proj",
                    "residual add",
                    "layer",
                ],
            };
            assert_eq!(names, want, "{kernels:?}");
            assert!(
                profile.iter().all(|op| op.1 > 0.0 && op.1 < 1.0),
                "{kernels:?}: {profile:?}"
            );
        }
    }

    #[test]
    fn auto_kernels_are_fused_on_the_cpu() {
        let model = LlamaClassifier::load(&fixture("regression"), &Device::Cpu, DType::F32).unwrap();
        assert_eq!(model.kernels(), Kernels::Fused);
    }

    #[test]
    fn judgement_from_logits() {
        let regression = judge(&[2.5], &["LABEL_0".into()]);
        assert_eq!(regression.score, 2.5);
        let labels: Vec<String> = ["0", "1", "2"].iter().map(|s| s.to_string()).collect();
        let j = judge(&[0.0, 0.0, 0.0], &labels);
        assert!((j.score - 1.0).abs() < 1e-6);
        assert_eq!(j.probabilities.unwrap().len(), 3);
    }

    #[test]
    fn missing_checkpoint_names_the_folder() {
        let err = LlamaClassifier::load(Path::new("/nonexistent/ckpt"), &Device::Cpu, DType::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("/nonexistent/ckpt") && err.contains("config.json"),
            "{err}"
        );
    }
}
