//! The quality classifier's fused GPU kernels (`kernels/fused.cu`) as candle
//! custom ops: causal attention straight from the fused q/k/v projection
//! (RoPE applied while loading, scores kept on chip), and SwiGLU of the fused
//! gate/up projection.
//!
//! Each op also has a CPU implementation with the same inputs and meaning.
//! It is not fast; it lets CPU tests check everything around the kernels
//! (stacked weights, head layout, RoPE tables, grouped-query heads) against
//! transformers, while `kernels/fused_test.cpp` checks the CUDA source itself
//! on the host.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, WithDType};

/// Head sizes the CUDA attention kernel is compiled for.
pub const FUSED_HEAD_DIMS: [usize; 2] = [64, 128];

#[cfg(feature = "cuda")]
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));

/// Causal self-attention over `(qkv, cos, sin)`: `qkv` is `(b, t, (hq + 2 hkv)
/// * head_dim)` (query heads, then key heads, then value heads), `cos` and
/// `sin` are `(positions, head_dim / 2)` RoPE tables (rotate-half). The result
/// is `(b, t, hq * head_dim)`, ready for `o_proj`.
pub struct CausalAttention {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl CausalAttention {
    fn check(&self, qkv: &Layout, cos: &Layout, sin: &Layout) -> candle_core::Result<(usize, usize)> {
        let (b, t, width) = qkv.shape().dims3()?;
        let want = (self.heads + 2 * self.kv_heads) * self.head_dim;
        if width != want {
            candle_core::bail!("fused attention: qkv has width {width}, expected {want}");
        }
        let (positions, half) = cos.shape().dims2()?;
        if sin.shape() != cos.shape() || half * 2 != self.head_dim || positions < t {
            candle_core::bail!(
                "fused attention: RoPE tables {:?}/{:?} do not fit {t} positions of head_dim {}",
                cos.shape(),
                sin.shape(),
                self.head_dim
            );
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            candle_core::bail!("fused attention: {} heads over {} kv heads", self.heads, self.kv_heads);
        }
        Ok((b, t))
    }
}

/// The contiguous elements of a CPU tensor as f32.
fn cpu_f32(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Vec<f32>> {
    fn take<T: WithDType>(data: &[T], layout: &Layout) -> candle_core::Result<Vec<f32>> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("fused op: input is not contiguous".into()))?;
        Ok(data[start..end].iter().map(|x| x.to_f64() as f32).collect())
    }
    match storage {
        CpuStorage::F32(d) => take(d, layout),
        CpuStorage::BF16(d) => take(d, layout),
        CpuStorage::F16(d) => take(d, layout),
        other => candle_core::bail!(
            "fused op: unsupported dtype {:?}",
            candle_core::backend::BackendStorage::dtype(other)
        ),
    }
}

/// `values` back in the storage's dtype.
fn cpu_like(storage: &CpuStorage, values: Vec<f32>) -> CpuStorage {
    match storage {
        CpuStorage::BF16(_) => CpuStorage::BF16(values.into_iter().map(half::bf16::from_f32).collect()),
        CpuStorage::F16(_) => CpuStorage::F16(values.into_iter().map(half::f16::from_f32).collect()),
        _ => CpuStorage::F32(values),
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "thresher-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s_qkv: &CpuStorage,
        l_qkv: &Layout,
        s_cos: &CpuStorage,
        l_cos: &Layout,
        s_sin: &CpuStorage,
        l_sin: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, t) = self.check(l_qkv, l_cos, l_sin)?;
        let (qkv, cos, sin) = (cpu_f32(s_qkv, l_qkv)?, cpu_f32(s_cos, l_cos)?, cpu_f32(s_sin, l_sin)?);
        let (hq, hkv, d) = (self.heads, self.kv_heads, self.head_dim);
        let (half, row) = (d / 2, (hq + 2 * hkv) * d);
        let scale = 1.0 / (d as f32).sqrt();
        // The head vector at `col` of token `pos`, rotated by RoPE.
        let roped = |batch: usize, pos: usize, col: usize| -> Vec<f32> {
            let x = &qkv[(batch * t + pos) * row + col..][..d];
            let (c, s) = (&cos[pos * half..][..half], &sin[pos * half..][..half]);
            let mut y = vec![0f32; d];
            for i in 0..half {
                y[i] = x[i] * c[i] - x[i + half] * s[i];
                y[i + half] = x[i] * s[i] + x[i + half] * c[i];
            }
            y
        };
        let mut out = vec![0f32; b * t * hq * d];
        for batch in 0..b {
            for kvh in 0..hkv {
                let keys: Vec<Vec<f32>> = (0..t).map(|p| roped(batch, p, (hq + kvh) * d)).collect();
                for h in kvh * (hq / hkv)..(kvh + 1) * (hq / hkv) {
                    for qi in 0..t {
                        let q = roped(batch, qi, h * d);
                        let scores: Vec<f32> = keys[..=qi]
                            .iter()
                            .map(|k| q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale)
                            .collect();
                        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                        let sum: f32 = weights.iter().sum();
                        let o = &mut out[((batch * t + qi) * hq + h) * d..][..d];
                        for (kj, w) in weights.iter().enumerate() {
                            let v = &qkv[(batch * t + kj) * row + (hq + hkv + kvh) * d..][..d];
                            for (o, v) in o.iter_mut().zip(v) {
                                *o += w / sum * v;
                            }
                        }
                    }
                }
            }
        }
        Ok((cpu_like(s_qkv, out), Shape::from((b, t, hq * d))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s_qkv: &candle_core::CudaStorage,
        l_qkv: &Layout,
        s_cos: &candle_core::CudaStorage,
        l_cos: &Layout,
        s_sin: &candle_core::CudaStorage,
        l_sin: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        let (b, t) = self.check(l_qkv, l_cos, l_sin)?;
        let name = match self.head_dim {
            64 => "causal_attention_d64",
            128 => "causal_attention_d128",
            d => candle_core::bail!("fused attention: no kernel for head_dim {d} (64 and 128 have one)"),
        };
        let dev = s_qkv.device().clone();
        let qkv = cuda_bf16(s_qkv, l_qkv)?;
        let cos = cuda_bf16(s_cos, l_cos)?;
        let sin = cuda_bf16(s_sin, l_sin)?;
        let func = dev.get_or_load_custom_func(name, "thresher_fused", PTX)?;
        // SAFETY: every element is written by the kernel below.
        let out = unsafe { dev.alloc::<half::bf16>(b * t * self.heads * self.head_dim)? };
        let (t_arg, hq, hkv) = (t as i32, self.heads as i32, self.kv_heads as i32);
        let scale_log2 = std::f32::consts::LOG2_E / (self.head_dim as f32).sqrt();
        let mut builder = func.builder();
        builder.arg(&qkv);
        builder.arg(&cos);
        builder.arg(&sin);
        builder.arg(&out);
        builder.arg(&t_arg);
        builder.arg(&hq);
        builder.arg(&hkv);
        builder.arg(&scale_log2);
        // 32 queries (two warps) per block; see kernels/fused.cu.
        let config = LaunchConfig {
            grid_dim: (t.div_ceil(32) as u32, self.heads as u32, b as u32),
            block_dim: (64, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's signature; sizes were checked.
        unsafe { builder.launch(config) }.w()?;
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((b, t, self.heads * self.head_dim)),
        ))
    }
}

/// The contiguous bf16 elements of a CUDA tensor.
#[cfg(feature = "cuda")]
fn cuda_bf16<'a>(
    storage: &'a candle_core::CudaStorage,
    layout: &Layout,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, half::bf16>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused op: input is not contiguous".into()))?;
    Ok(storage.as_cuda_slice::<half::bf16>()?.slice(start..end))
}

/// SwiGLU of a fused gate/up projection: `(.., 2 * width)` (gate, then up)
/// to `(.., width)`, `silu(gate) * up`.
pub struct SwiGlu;

impl SwiGlu {
    fn split(layout: &Layout) -> candle_core::Result<(usize, usize, Shape)> {
        let dims = layout.shape().dims();
        let (&last, lead) = dims
            .split_last()
            .ok_or_else(|| candle_core::Error::Msg("swiglu: a scalar has no gate and up".into()))?;
        if last % 2 != 0 {
            candle_core::bail!("swiglu: last dimension {last} is not gate and up of equal width");
        }
        let rows = lead.iter().product();
        let mut out = lead.to_vec();
        out.push(last / 2);
        Ok((rows, last / 2, Shape::from(out)))
    }
}

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "thresher-swiglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, width, shape) = Self::split(layout)?;
        let x = cpu_f32(storage, layout)?;
        let out = x
            .chunks_exact(2 * width)
            .flat_map(|row| {
                let (gate, up) = row.split_at(width);
                gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            })
            .collect();
        Ok((cpu_like(storage, out), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        let (rows, width, shape) = Self::split(layout)?;
        let dev = storage.device().clone();
        let gate_up = cuda_bf16(storage, layout)?;
        let func = dev.get_or_load_custom_func("swiglu_bf16", "thresher_fused", PTX)?;
        // SAFETY: every element is written by the kernel below.
        let out = unsafe { dev.alloc::<half::bf16>(rows * width)? };
        let (rows_arg, width_arg) = (rows as i64, width as i32);
        let mut builder = func.builder();
        builder.arg(&gate_up);
        builder.arg(&out);
        builder.arg(&rows_arg);
        builder.arg(&width_arg);
        let blocks = (rows * width).div_ceil(256).min(65_535) as u32;
        let config = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's signature.
        unsafe { builder.launch(config) }.w()?;
        Ok((candle_core::CudaStorage::wrap_cuda_slice(out, dev), shape))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    /// Compiles `kernels/fused_test.cpp` (fused.cu under emulate_cuda.h) with
    /// the host's C++ compiler and runs it: the CUDA source's arithmetic,
    /// masking and online softmax against double-precision references.
    #[test]
    fn fused_kernels_match_reference_on_the_host() {
        let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let binary = std::env::temp_dir().join(format!("thresher-fused-test-{}", std::process::id()));
        let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let built = Command::new(&compiler)
            .args(["-std=c++20", "-O2", "-pthread", "-o"])
            .arg(&binary)
            .arg(kernels.join("fused_test.cpp"))
            .output()
            .unwrap_or_else(|e| panic!("running {compiler} (set CXX to a C++20 compiler): {e}"));
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let run = Command::new(&binary).output().unwrap();
        let _ = std::fs::remove_file(&binary);
        let report = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{report}");
        assert_eq!(report.matches(" ok").count(), 6, "{report}");
    }
}
