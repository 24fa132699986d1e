//! The quality classifier's fused GPU kernels (`kernels/fused.cu`) as candle
//! custom ops: causal attention straight from the fused q/k/v projection
//! (RoPE applied while loading, scores kept on chip), and SwiGLU of the fused
//! gate/up projection.
//!
//! Each op also has a CPU implementation with the same inputs and meaning,
//! which the CPU runs by default: packed documents and scores one query at a
//! time beat candle's padded matmul/mask/softmax there too (1.49x the
//! stage's speed at SmolLM-135M's shape, 1.1x with the small demo model).
//! Through it the CPU tests check everything around the kernels (stacked
//! weights, head layout, RoPE tables, grouped-query heads, packing) against
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

/// e^x within 3e-7 (relative) for x in [-87, 88], clamped outside: written
/// so that loops over it vectorize, which calls to libm's `expf` do not
/// (they were half of the CPU attention's time).
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    // e^x = 2^n * e^f with n = round(x log2 e) and |f| <= ln 2 / 2; f is
    // taken in two steps (ln 2 split in a short high part and the rest) so
    // that it stays exact for large n; e^f by its Taylor series to the 6th
    // power (error 1.2e-7 at |f| = ln 2 / 2).
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    const LN_2_HIGH: f32 = 0.693_359_4;
    const LN_2_LOW: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let f = (x - n * LN_2_HIGH) - n * LN_2_LOW;
    let p = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The sum of `x` in eight lanes, so that the compiler vectorizes it.
fn sum8(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            lanes[i] += c[i];
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// `a · b` in eight lanes, so that the compiler vectorizes it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + rest
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

    /// The CPU kernel: the same tiles, in parallel (rayon), scores of one
    /// query at a time in a buffer of the document's length (never t × t),
    /// keys and values RoPE'd once and laid out per head.
    fn cpu_fwd(
        &self,
        s_qkv: &CpuStorage,
        l_qkv: &Layout,
        s_rope: &CpuStorage,
        l_rope: &Layout,
        s_tiles: &CpuStorage,
        l_tiles: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (tokens, _) = self.check(l_qkv, l_rope, l_tiles)?;
        let (qkv, rope) = (cpu_f32(s_qkv, l_qkv)?, cpu_f32(s_rope, l_rope)?);
        let tiles = match (s_tiles, l_tiles.contiguous_offsets()) {
            (CpuStorage::U32(t), Some((start, end))) => &t[start..end],
            _ => candle_core::bail!("fused attention: tiles must be contiguous u32"),
        };
        let (hq, hkv, d) = (self.0.heads, self.0.kv_heads, self.0.head_dim);
        let (half, row, group) = (d / 2, (hq + 2 * hkv) * d, hq / hkv);
        // Each token's position in its document, from the tiles.
        let mut position = vec![usize::MAX; tokens];
        for tile in tiles.chunks_exact(3) {
            let [start, len, q0] = [tile[0] as usize, tile[1] as usize, tile[2] as usize];
            if start + len > tokens || q0 >= len || len * d > rope.len() {
                candle_core::bail!("fused attention: tile {tile:?} outside {tokens} tokens or the RoPE table");
            }
            for q in q0..(q0 + TILE_QUERIES).min(len) {
                position[start + q] = q;
            }
        }
        // q (scaled), k and v of every head, `[head][token][d]`: each head's
        // rows contiguous, RoPE'd once.
        let scale = 1.0 / (d as f32).sqrt();
        let per_head = |heads: usize, first_col: usize, roped: bool, scale: f32| -> Vec<f32> {
            let mut out = vec![0f32; heads * tokens * d];
            out.par_chunks_mut(tokens * d).enumerate().for_each(|(h, head)| {
                for (token, y) in head.chunks_exact_mut(d).enumerate() {
                    let x = &qkv[token * row + first_col + h * d..][..d];
                    let pos = position[token];
                    if !roped || pos == usize::MAX {
                        y.iter_mut().zip(x).for_each(|(y, x)| *y = x * scale);
                        continue;
                    }
                    let (c, s) = (&rope[pos * d..][..half], &rope[pos * d + half..][..half]);
                    for i in 0..half {
                        y[i] = (x[i] * c[i] - x[i + half] * s[i]) * scale;
                        y[i + half] = (x[i] * s[i] + x[i + half] * c[i]) * scale;
                    }
                }
            });
            out
        };
        let queries = per_head(hq, 0, true, scale);
        let keys = per_head(hkv, hq * d, true, 1.0);
        let values = per_head(hkv, (hq + hkv) * d, false, 1.0);
        let outputs: Vec<(usize, Vec<f32>)> = tiles
            .par_chunks_exact(3)
            .map(|tile| {
                let [start, len, q0] = [tile[0] as usize, tile[1] as usize, tile[2] as usize];
                let q_end = (q0 + TILE_QUERIES).min(len);
                let mut out = vec![0f32; (q_end - q0) * hq * d];
                let mut weights = vec![0f32; q_end];
                // The document's rows of one head.
                fn doc(y: &[f32], head: usize, tokens: usize, start: usize, len: usize, d: usize) -> &[f32] {
                    &y[(head * tokens + start) * d..][..len * d]
                }
                for h in 0..hq {
                    let k = doc(&keys, h / group, tokens, start, len, d);
                    let v = doc(&values, h / group, tokens, start, len, d);
                    for qi in q0..q_end {
                        let q = &doc(&queries, h, tokens, start, len, d)[qi * d..][..d];
                        let mut max = f32::NEG_INFINITY;
                        for (w, k) in weights[..=qi].iter_mut().zip(k.chunks_exact(d)) {
                            *w = dot(q, k);
                            max = max.max(*w);
                        }
                        for w in &mut weights[..=qi] {
                            *w = fast_exp(*w - max);
                        }
                        let sum = sum8(&weights[..=qi]);
                        let o = &mut out[((qi - q0) * hq + h) * d..][..d];
                        for (w, v) in weights[..=qi].iter().zip(v.chunks_exact(d)) {
                            o.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
                        }
                        o.iter_mut().for_each(|o| *o /= sum);
                    }
                }
                (start + q0, out)
            })
            .collect();
        // Queries no tile covers stay zero (a broken tile table shows).
        let mut out = vec![0f32; tokens * hq * d];
        for (first, rows) in outputs {
            out[first * hq * d..][..rows.len()].copy_from_slice(&rows);
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
        let mut out = vec![0f32; x.len() / 2];
        for (row, y) in x.chunks_exact(2 * width).zip(out.chunks_exact_mut(width)) {
            let (gate, up) = row.split_at(width);
            for ((y, g), u) in y.iter_mut().zip(gate).zip(up) {
                *y = g / (1.0 + fast_exp(-g)) * u;
            }
        }
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
    fn fast_exp_is_within_3e7_of_exp() {
        let mut worst = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let want = (x as f64).exp();
            worst = worst.max(((fast_exp(x) as f64) - want).abs() / want);
        }
        assert!(worst < 3e-7, "{worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(-1e9) < 1e-37 && fast_exp(-1e9) >= 0.0);
        assert!(fast_exp(1e9).is_finite());
        let x: Vec<f32> = (0..21).map(|i| i as f32).collect();
        assert_eq!(sum8(&x), 210.0);
        assert_eq!(dot(&x, &x), (0..21).map(|i| (i * i) as f32).sum::<f32>());
    }

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
