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

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Device, Layout, Shape, Tensor, WithDType};

/// Head sizes the CUDA attention kernel is compiled for.
pub const FUSED_HEAD_DIMS: [usize; 2] = [64, 128];

#[cfg(feature = "cuda")]
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));

/// Documents packed end to end for the fused attention, with no padding
/// (flash-attention's "varlen"): where each starts, and the kernel's tiles
/// (32 queries of one document each) on the device.
pub struct PackedDocuments {
    /// First token of each document in the packed stream, then the total.
    pub starts: Vec<usize>,
    /// 3 × u32 per tile: the document's first token, its length, the tile's
    /// first query within it; on the device of the model.
    tiles: Tensor,
    longest: usize,
}

/// Queries per tile of the attention kernel (`BQ` in kernels/fused.cu).
const TILE_QUERIES: usize = 32;

impl PackedDocuments {
    /// Packs documents of `lengths` tokens (each at least 1) in this order.
    pub fn new(lengths: &[usize], device: &Device) -> candle_core::Result<Self> {
        let mut starts = Vec::with_capacity(lengths.len() + 1);
        let mut tiles: Vec<[u32; 3]> = Vec::new();
        let mut total = 0usize;
        for &len in lengths {
            if len == 0 {
                candle_core::bail!("fused attention: a document of no tokens");
            }
            starts.push(total);
            for q0 in (0..len).step_by(TILE_QUERIES) {
                tiles.push([total as u32, len as u32, q0 as u32]);
            }
            total += len;
        }
        if u32::try_from(total).is_err() {
            candle_core::bail!("fused attention: {total} tokens in one batch");
        }
        starts.push(total);
        // The tiles that see the most keys first: the GPU starts the long
        // blocks early instead of finishing on them.
        tiles.sort_by_key(|&[_, len, q0]| std::cmp::Reverse(len.min(q0 + TILE_QUERIES as u32)));
        let count = tiles.len();
        Ok(Self {
            tiles: Tensor::from_vec(tiles.concat(), (count, 3), device)?,
            longest: lengths.iter().copied().max().unwrap_or(0),
            starts,
        })
    }

    /// Tokens in all documents.
    pub fn tokens(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }

    /// Tokens of the longest document.
    pub fn longest(&self) -> usize {
        self.longest
    }
}

/// Causal self-attention of packed documents ([`PackedDocuments`]) from the
/// fused q/k/v projection: `qkv` is `(tokens, (heads + 2 kv_heads) *
/// head_dim)` (query heads, then key heads, then value heads); `rope` is
/// `(positions, head_dim)`, each row `head_dim / 2` cosines then as many
/// sines (rotate-half RoPE), positions counting from each document's start.
/// The result is `(tokens, heads * head_dim)`, ready for `o_proj`; a query
/// sees the keys of its own document up to itself.
pub fn causal_attention(
    qkv: &Tensor,
    rope: &Tensor,
    documents: &PackedDocuments,
    shape: &CausalAttention,
) -> candle_core::Result<Tensor> {
    let (tokens, _) = qkv.dims2()?;
    if tokens != documents.tokens() {
        candle_core::bail!(
            "fused attention: {tokens} tokens of q/k/v for {} packed tokens",
            documents.tokens()
        );
    }
    if rope.dim(0)? < documents.longest {
        candle_core::bail!(
            "fused attention: RoPE table of {} positions for a document of {}",
            rope.dim(0)?,
            documents.longest
        );
    }
    qkv.apply_op3_no_bwd(rope, &documents.tiles, &TiledAttention(*shape))
}

/// The shape of one model's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CausalAttention {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// The attention kernel as a candle op over `(qkv, rope, tiles)`. Private:
/// only [`causal_attention`] applies it, after checking that the tiles stay
/// inside `qkv` and `rope` (the GPU kernel trusts them).
struct TiledAttention(CausalAttention);

impl TiledAttention {
    /// Tokens and tiles, after checking the inputs' shapes.
    fn check(&self, qkv: &Layout, rope: &Layout, tiles: &Layout) -> candle_core::Result<(usize, usize)> {
        let (tokens, width) = qkv.shape().dims2()?;
        let want = (self.0.heads + 2 * self.0.kv_heads) * self.0.head_dim;
        if width != want {
            candle_core::bail!("fused attention: qkv has width {width}, expected {want}");
        }
        if rope.shape().dims2()?.1 != self.0.head_dim {
            candle_core::bail!(
                "fused attention: RoPE table {:?} for head_dim {}",
                rope.shape(),
                self.0.head_dim
            );
        }
        let (count, three) = tiles.shape().dims2()?;
        if three != 3 {
            candle_core::bail!("fused attention: tiles {:?}, expected (n, 3)", tiles.shape());
        }
        if !self.0.heads.is_multiple_of(self.0.kv_heads) {
            candle_core::bail!(
                "fused attention: {} heads over {} kv heads",
                self.0.heads,
                self.0.kv_heads
            );
        }
        Ok((tokens, count))
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

impl CustomOp3 for TiledAttention {
    fn name(&self) -> &'static str {
        "thresher-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s_qkv: &CpuStorage,
        l_qkv: &Layout,
        s_rope: &CpuStorage,
        l_rope: &Layout,
        s_tiles: &CpuStorage,
        l_tiles: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (tokens, _) = self.check(l_qkv, l_rope, l_tiles)?;
        let (qkv, rope) = (cpu_f32(s_qkv, l_qkv)?, cpu_f32(s_rope, l_rope)?);
        let tiles = match (s_tiles, l_tiles.contiguous_offsets()) {
            (CpuStorage::U32(t), Some((start, end))) => &t[start..end],
            _ => candle_core::bail!("fused attention: tiles must be contiguous u32"),
        };
        let (hq, hkv, d) = (self.0.heads, self.0.kv_heads, self.0.head_dim);
        let (half, row) = (d / 2, (hq + 2 * hkv) * d);
        let scale = 1.0 / (d as f32).sqrt();
        // The head vector at `col` of token `token`, rotated by RoPE for position `pos`.
        let roped = |token: usize, pos: usize, col: usize| -> Vec<f32> {
            let x = &qkv[token * row + col..][..d];
            let (c, s) = (&rope[pos * d..][..half], &rope[pos * d + half..][..half]);
            let mut y = vec![0f32; d];
            for i in 0..half {
                y[i] = x[i] * c[i] - x[i + half] * s[i];
                y[i + half] = x[i] * s[i] + x[i + half] * c[i];
            }
            y
        };
        // Queries no tile covers stay zero (a broken tile table shows).
        let mut out = vec![0f32; tokens * hq * d];
        for tile in tiles.chunks_exact(3) {
            let [start, len, q0] = [tile[0] as usize, tile[1] as usize, tile[2] as usize];
            let queries = q0..(q0 + TILE_QUERIES).min(len);
            for kvh in 0..hkv {
                let keys: Vec<Vec<f32>> = (0..queries.end).map(|p| roped(start + p, p, (hq + kvh) * d)).collect();
                for h in kvh * (hq / hkv)..(kvh + 1) * (hq / hkv) {
                    for qi in queries.clone() {
                        let q = roped(start + qi, qi, h * d);
                        let scores: Vec<f32> = keys[..=qi]
                            .iter()
                            .map(|k| q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale)
                            .collect();
                        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                        let sum: f32 = weights.iter().sum();
                        let o = &mut out[((start + qi) * hq + h) * d..][..d];
                        for (kj, w) in weights.iter().enumerate() {
                            let v = &qkv[(start + kj) * row + (hq + hkv + kvh) * d..][..d];
                            for (o, v) in o.iter_mut().zip(v) {
                                *o += w / sum * v;
                            }
                        }
                    }
                }
            }
        }
        Ok((cpu_like(s_qkv, out), Shape::from((tokens, hq * d))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s_qkv: &candle_core::CudaStorage,
        l_qkv: &Layout,
        s_rope: &candle_core::CudaStorage,
        l_rope: &Layout,
        s_tiles: &candle_core::CudaStorage,
        l_tiles: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        let (tokens, tile_count) = self.check(l_qkv, l_rope, l_tiles)?;
        let name = match self.0.head_dim {
            64 => "causal_attention_d64",
            128 => "causal_attention_d128",
            d => candle_core::bail!("fused attention: no kernel for head_dim {d} (64 and 128 have one)"),
        };
        let dev = s_qkv.device().clone();
        let qkv = cuda_bf16(s_qkv, l_qkv)?;
        let rope = cuda_bf16(s_rope, l_rope)?;
        let (start, end) = l_tiles
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("fused attention: tiles are not contiguous".into()))?;
        let tiles = s_tiles.as_cuda_slice::<u32>()?.slice(start..end);
        let func = dev.get_or_load_custom_func(name, "thresher_fused", PTX)?;
        // SAFETY: every element is written by the kernel below (the tiles
        // cover every query of every document: PackedDocuments).
        let out = unsafe { dev.alloc::<half::bf16>(tokens * self.0.heads * self.0.head_dim)? };
        let (hq, hkv) = (self.0.heads as i32, self.0.kv_heads as i32);
        let scale_log2 = std::f32::consts::LOG2_E / (self.0.head_dim as f32).sqrt();
        let mut builder = func.builder();
        builder.arg(&qkv);
        builder.arg(&rope);
        builder.arg(&tiles);
        builder.arg(&out);
        builder.arg(&hq);
        builder.arg(&hkv);
        builder.arg(&scale_log2);
        // One block (two warps, 32 queries) per tile and head; see kernels/fused.cu.
        let config = LaunchConfig {
            grid_dim: (tile_count as u32, self.0.heads as u32, 1),
            block_dim: (64, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's signature; shapes were
        // checked here and the tiles against them in `causal_attention`.
        unsafe { builder.launch(config) }.w()?;
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((tokens, self.0.heads * self.0.head_dim)),
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
    use super::*;
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn packed_documents_tile_every_query_once_longest_first() {
        let lengths = [70, 1, 32, 33];
        let packed = PackedDocuments::new(&lengths, &Device::Cpu).unwrap();
        assert_eq!(packed.starts, [0, 70, 71, 103, 136]);
        assert_eq!((packed.tokens(), packed.longest()), (136, 70));
        let tiles = packed.tiles.to_vec2::<u32>().unwrap();
        let mut covered = vec![0; packed.tokens()];
        for tile in &tiles {
            let [start, len, q0] = [tile[0] as usize, tile[1] as usize, tile[2] as usize];
            let doc = packed.starts.iter().position(|&s| s == start).unwrap();
            assert_eq!(len, lengths[doc], "{tile:?}");
            for q in q0..(q0 + TILE_QUERIES).min(len) {
                covered[start + q] += 1;
            }
        }
        assert!(covered.iter().all(|&c| c == 1), "{covered:?}");
        // Keys each tile sees, in launch order: never increasing.
        let keys: Vec<u32> = tiles.iter().map(|t| t[1].min(t[2] + TILE_QUERIES as u32)).collect();
        assert!(keys.windows(2).all(|w| w[0] >= w[1]), "{keys:?}");
        assert_eq!(keys[0], 70);
        assert!(PackedDocuments::new(&[3, 0], &Device::Cpu).is_err());
    }

    #[test]
    fn causal_attention_refuses_tiles_that_do_not_fit() {
        let shape = CausalAttention {
            heads: 2,
            kv_heads: 1,
            head_dim: 64,
        };
        let qkv = Tensor::zeros((10, 4 * 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let rope = Tensor::zeros((8, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let fits = PackedDocuments::new(&[6, 4], &Device::Cpu).unwrap();
        assert_eq!(causal_attention(&qkv, &rope, &fits, &shape).unwrap().dims(), [10, 128]);
        let too_many = PackedDocuments::new(&[6, 5], &Device::Cpu).unwrap();
        let err = causal_attention(&qkv, &rope, &too_many, &shape)
            .unwrap_err()
            .to_string();
        assert!(err.contains("11 packed tokens"), "{err}");
        let too_long = PackedDocuments::new(&[9, 1], &Device::Cpu).unwrap();
        let err = causal_attention(&qkv, &rope, &too_long, &shape)
            .unwrap_err()
            .to_string();
        assert!(err.contains("RoPE table of 8 positions"), "{err}");
    }

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
