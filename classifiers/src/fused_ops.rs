//! The quality classifier's fused GPU kernels (`kernels/fused.cu`) as candle
//! custom ops: causal attention straight from the fused q/k/v projection
//! (RoPE applied while loading, scores kept on chip), and SwiGLU of the fused
//! gate/up projection.
//!
//! Each op also has a CPU implementation with the same inputs and meaning,
//! which the CPU runs by default: packed documents and scores one query at a
//! time beat candle's padded matmul/mask/softmax there too (1.68x the
//! stage's speed at SmolLM-135M's shape, 1.4x with the small demo model).
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
/// (64 queries of one document each) on the device.
pub struct PackedDocuments {
    /// First token of each document in the packed stream, then the total.
    pub starts: Vec<usize>,
    /// 3 × u32 per tile: the document's first token, its length, the tile's
    /// first query within it; on the device of the model.
    tiles: Tensor,
}

/// Queries per tile of the attention kernel (`BQ` in kernels/fused.cu).
const TILE_QUERIES: usize = 64;

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
            starts,
        })
    }

    /// Tokens in all documents.
    pub fn tokens(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }

    /// Tokens of the longest document.
    pub fn longest(&self) -> usize {
        self.starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
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
    if rope.dim(0)? < documents.longest() {
        candle_core::bail!(
            "fused attention: RoPE table of {} positions for a document of {}",
            rope.dim(0)?,
            documents.longest()
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
#[inline(always)]
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

/// The largest of `x` (at least one element) in eight lanes, so that the
/// compiler vectorizes it.
#[inline(always)]
fn max8(x: &[f32]) -> f32 {
    let mut lanes = [x[0]; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder().iter().fold(x[0], |m, &v| if v > m { v } else { m });
    for c in chunks {
        for i in 0..8 {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    lanes.iter().fold(rest, |m, &v| if v > m { v } else { m })
}

/// `a · b` in eight lanes, so that the compiler vectorizes it.
#[inline(always)]
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

/// The attention kernel on the CPU, over the same tiles as the GPU's:
/// q/k/v RoPE'd once per token (one pass over `qkv`, in parallel over
/// tokens and documents), then the tiles in parallel, each query's scores in
/// a buffer of its document's length (never t × t). Keys and values are
/// transposed within each document, `[kv head][d][its tokens]`, so that the
/// loops over a document's keys run along contiguous memory and vectorize
/// (head sizes are short: 16 to 128); on x86 with AVX2 they are compiled
/// for it too, chosen at run time.
fn cpu_attention(
    shape: &CausalAttention,
    tokens: usize,
    qkv: &[f32],
    rope: &[f32],
    tiles: &[u32],
) -> candle_core::Result<Vec<f32>> {
    use rayon::prelude::*;
    let (hq, hkv, d) = (shape.heads, shape.kv_heads, shape.head_dim);
    let (half, row) = (d / 2, (hq + 2 * hkv) * d);
    // The documents (first token, length), from their first tiles.
    let mut documents: Vec<(usize, usize)> = Vec::new();
    let mut covered = 0;
    for tile in tiles.chunks_exact(3) {
        let [start, len, q0] = [tile[0] as usize, tile[1] as usize, tile[2] as usize];
        if start + len > tokens || q0 >= len || len * d > rope.len() {
            candle_core::bail!("fused attention: tile {tile:?} outside {tokens} tokens or the RoPE table");
        }
        covered += (q0 + TILE_QUERIES).min(len) - q0;
        if q0 == 0 {
            documents.push((start, len));
        }
    }
    documents.sort_unstable();
    let contiguous = documents.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0);
    if covered != tokens || documents.first().is_some_and(|d| d.0 != 0) || !contiguous {
        candle_core::bail!("fused attention: the tiles do not cover the {tokens} tokens once each");
    }
    // One head vector of token `token` at `col`, RoPE'd for `pos` and scaled.
    let roped = |token: usize, pos: usize, col: usize, scale: f32, y: &mut [f32]| {
        let x = &qkv[token * row + col..][..d];
        let (c, s) = (&rope[pos * d..][..half], &rope[pos * d + half..][..half]);
        for i in 0..half {
            y[i] = (x[i] * c[i] - x[i + half] * s[i]) * scale;
            y[i + half] = (x[i] * s[i] + x[i + half] * c[i]) * scale;
        }
    };
    // Queries, scaled, `[token][head][d]`.
    let scale = 1.0 / (d as f32).sqrt();
    let mut queries = vec![0f32; tokens * hq * d];
    let mut position = vec![0usize; tokens];
    for &(start, len) in &documents {
        position[start..start + len]
            .iter_mut()
            .enumerate()
            .for_each(|(p, slot)| *slot = p);
    }
    queries.par_chunks_mut(hq * d).enumerate().for_each(|(token, heads)| {
        for (h, y) in heads.chunks_exact_mut(d).enumerate() {
            roped(token, position[token], h * d, scale, y);
        }
    });
    // Keys and values, each document's block `[kv head][d][its tokens]`.
    let mut keys = vec![0f32; tokens * hkv * d];
    let mut values = vec![0f32; tokens * hkv * d];
    let mut blocks = Vec::with_capacity(documents.len());
    let (mut keys_rest, mut values_rest) = (keys.as_mut_slice(), values.as_mut_slice());
    for &(start, len) in &documents {
        let (k, k_rest) = keys_rest.split_at_mut(len * hkv * d);
        let (v, v_rest) = values_rest.split_at_mut(len * hkv * d);
        blocks.push((start, len, k, v));
        (keys_rest, values_rest) = (k_rest, v_rest);
    }
    blocks.into_par_iter().for_each(|(start, len, k_block, v_block)| {
        let mut y = vec![0f32; d];
        for pos in 0..len {
            for kv_head in 0..hkv {
                roped(start + pos, pos, (hq + kv_head) * d, 1.0, &mut y);
                let x = &qkv[(start + pos) * row + (hq + hkv + kv_head) * d..][..d];
                for i in 0..d {
                    k_block[(kv_head * d + i) * len + pos] = y[i];
                    v_block[(kv_head * d + i) * len + pos] = x[i];
                }
            }
        }
    });
    let inputs = TileInputs {
        shape,
        queries: &queries,
        keys: &keys,
        values: &values,
    };
    let outputs: Vec<(usize, Vec<f32>)> = tiles.par_chunks_exact(3).map(|tile| inputs.attend(tile)).collect();
    let mut out = vec![0f32; tokens * hq * d];
    for (first, rows) in outputs {
        out[first * hq * d..][..rows.len()].copy_from_slice(&rows);
    }
    Ok(out)
}

/// What every tile of [`cpu_attention`] reads.
struct TileInputs<'a> {
    shape: &'a CausalAttention,
    queries: &'a [f32],
    keys: &'a [f32],
    values: &'a [f32],
}

impl TileInputs<'_> {
    /// One tile's output rows `[query][head][d]`, and its first token.
    fn attend(&self, tile: &[u32]) -> (usize, Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.attend_avx2(tile) };
        }
        self.attend_portable(tile)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn attend_avx2(&self, tile: &[u32]) -> (usize, Vec<f32>) {
        self.attend_portable(tile)
    }

    #[inline(always)]
    fn attend_portable(&self, tile: &[u32]) -> (usize, Vec<f32>) {
        let (hq, hkv, d) = (self.shape.heads, self.shape.kv_heads, self.shape.head_dim);
        let [start, len, q0] = [tile[0] as usize, tile[1] as usize, tile[2] as usize];
        let q_end = (q0 + TILE_QUERIES).min(len);
        let mut out = vec![0f32; (q_end - q0) * hq * d];
        let mut weights = vec![0f32; q_end];
        let (k_block, v_block) = (&self.keys[start * hkv * d..], &self.values[start * hkv * d..]);
        for h in 0..hq {
            let kv_head = h / (hq / hkv);
            // Row i of the document's transposed keys (values): element i of
            // each of its tokens' vectors.
            let key_row = |i: usize| &k_block[(kv_head * d + i) * len..][..len];
            let value_row = |i: usize| &v_block[(kv_head * d + i) * len..][..len];
            for qi in q0..q_end {
                let q = &self.queries[((start + qi) * hq + h) * d..][..d];
                let w = &mut weights[..=qi];
                w.fill(0.0);
                for (i, &q) in q.iter().enumerate() {
                    w.iter_mut().zip(key_row(i)).for_each(|(w, k)| *w += q * k);
                }
                let max = max8(w);
                w.iter_mut().for_each(|w| *w = fast_exp(*w - max));
                let sum = sum8(w);
                let o = &mut out[((qi - q0) * hq + h) * d..][..d];
                for (i, o) in o.iter_mut().enumerate() {
                    *o = dot(w, &value_row(i)[..=qi]) / sum;
                }
            }
        }
        (start + q0, out)
    }
}

/// The contiguous elements of a CPU tensor as f32: borrowed when they are
/// f32 already (no copy of a large activation), converted otherwise.
fn cpu_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<std::borrow::Cow<'a, [f32]>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused op: input is not contiguous".into()))?;
    fn convert<T: WithDType>(data: &[T]) -> std::borrow::Cow<'static, [f32]> {
        data.iter().map(|x| x.to_f64() as f32).collect::<Vec<f32>>().into()
    }
    Ok(match storage {
        CpuStorage::F32(d) => d[start..end].into(),
        CpuStorage::BF16(d) => convert(&d[start..end]),
        CpuStorage::F16(d) => convert(&d[start..end]),
        other => candle_core::bail!(
            "fused op: unsupported dtype {:?}",
            candle_core::backend::BackendStorage::dtype(other)
        ),
    })
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
        let out = cpu_attention(&self.0, tokens, &qkv, &rope, tiles)?;
        Ok((
            cpu_like(s_qkv, out),
            Shape::from((tokens, self.0.heads * self.0.head_dim)),
        ))
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
        let qkv = cuda_contiguous::<half::bf16>(s_qkv, l_qkv)?;
        let rope = cuda_contiguous::<half::bf16>(s_rope, l_rope)?;
        let tiles = cuda_contiguous::<u32>(s_tiles, l_tiles)?;
        require_16_byte_starts("fused attention", &[("q/k/v tensor", l_qkv), ("RoPE table", l_rope)])?;
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
        // One block (four warps, 64 queries) per tile and head; see kernels/fused.cu.
        let config = LaunchConfig {
            grid_dim: (tile_count as u32, self.0.heads as u32, 1),
            block_dim: (128, 1, 1),
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

/// The contiguous elements of a CUDA tensor of element type `T`.
#[cfg(feature = "cuda")]
fn cuda_contiguous<'a, T: candle_core::cuda_backend::CudaDType>(
    storage: &'a candle_core::CudaStorage,
    layout: &Layout,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused op: input is not contiguous".into()))?;
    Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
}

/// The kernels read bf16 rows 16 bytes (8 elements) at a time: each input
/// must start on such a boundary (candle's fresh tensors always do).
#[cfg(feature = "cuda")]
fn require_16_byte_starts(op: &str, inputs: &[(&str, &Layout)]) -> candle_core::Result<()> {
    for (what, layout) in inputs {
        if !layout.start_offset().is_multiple_of(8) {
            candle_core::bail!("{op}: the {what} starts off a 16-byte boundary");
        }
    }
    Ok(())
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
        let mut out = Vec::with_capacity(x.len() / 2);
        for row in x.chunks_exact(2 * width) {
            let (gate, up) = row.split_at(width);
            out.extend(gate.iter().zip(up).map(|(g, u)| g / (1.0 + fast_exp(-g)) * u));
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
        let gate_up = cuda_contiguous::<half::bf16>(storage, layout)?;
        if width.is_multiple_of(8) {
            require_16_byte_starts("swiglu", &[("input", layout)])?;
        }
        let func = dev.get_or_load_custom_func("swiglu_bf16", "thresher_fused", PTX)?;
        // SAFETY: every element is written by the kernel below.
        let out = unsafe { dev.alloc::<half::bf16>(rows * width)? };
        let (rows_arg, width_arg) = (rows as i64, width as i32);
        let mut builder = func.builder();
        builder.arg(&gate_up);
        builder.arg(&out);
        builder.arg(&rows_arg);
        builder.arg(&width_arg);
        // A thread per 8 outputs when the width allows (the kernel's 8-wide path).
        let per_thread = if width.is_multiple_of(8) { 8 } else { 1 };
        let blocks = (rows * width).div_ceil(256 * per_thread).min(65_535) as u32;
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

/// The residual add and the RMSNorm after it in one pass: `x + delta` (the
/// next residual stream) and `rms_norm(x + delta) * weight`, the norm taken
/// of the sum as rounded to the dtype, as candle's `+` and `rms_norm` give
/// them. `x` and `delta` are `(.., width)` alike.
pub fn add_rms_norm(x: &Tensor, delta: &Tensor, norm: &candle_nn::RmsNorm) -> candle_core::Result<(Tensor, Tensor)> {
    let both = x.apply_op3_no_bwd(delta, norm.weight(), &AddRmsNorm { eps: norm.eps() as f32 })?;
    let shape = x.shape();
    Ok((both.get(0)?.reshape(shape)?, both.get(1)?.reshape(shape)?))
}

/// [`add_rms_norm`] as a candle op over `(x, delta, weight)`: one output
/// `(2, rows, width)`, the sums then the norms (an op has one output; each
/// half is contiguous, so the matmuls after it read them in place).
struct AddRmsNorm {
    eps: f32,
}

impl AddRmsNorm {
    /// Rows and width, after checking the inputs' shapes.
    fn check(x: &Layout, delta: &Layout, weight: &Layout) -> candle_core::Result<(usize, usize)> {
        if x.shape() != delta.shape() {
            candle_core::bail!("add_rms_norm: x {:?} and delta {:?} differ", x.shape(), delta.shape());
        }
        let width = x.shape().dims().last().copied().unwrap_or(0);
        if width == 0 {
            candle_core::bail!("add_rms_norm: rows of no width");
        }
        if weight.shape().dims() != [width] {
            candle_core::bail!("add_rms_norm: weight {:?} for width {width}", weight.shape());
        }
        Ok((x.shape().elem_count() / width, width))
    }
}

/// [`AddRmsNorm`]'s CPU implementation over f32 rows.
struct AddRmsNormRows<'a> {
    x: &'a [f32],
    delta: &'a [f32],
    weight: &'a [f32],
    eps: f32,
}

impl AddRmsNormRows<'_> {
    /// Rows in parallel, as candle's own CPU ops run; `round` gives a sum
    /// as the residual stream's dtype holds it.
    fn run(&self, sums: &mut [f32], norms: &mut [f32], round: impl Fn(f32) -> f32 + Sync) {
        use rayon::prelude::*;
        let width = self.weight.len();
        // 64 rows a task: a row is too little work to hand to a thread.
        let block = 64 * width;
        sums.par_chunks_mut(block)
            .zip(norms.par_chunks_mut(block))
            .zip(self.x.par_chunks(block).zip(self.delta.par_chunks(block)))
            .for_each(|((sums, norms), (x, delta))| {
                for (((sum, norm), x), delta) in sums
                    .chunks_exact_mut(width)
                    .zip(norms.chunks_exact_mut(width))
                    .zip(x.chunks_exact(width))
                    .zip(delta.chunks_exact(width))
                {
                    for ((s, a), b) in sum.iter_mut().zip(x).zip(delta) {
                        *s = round(a + b);
                    }
                    let scale = 1.0 / (dot(sum, sum) / width as f32 + self.eps).sqrt();
                    for ((n, s), w) in norm.iter_mut().zip(sum.iter()).zip(self.weight) {
                        *n = scale * s * w;
                    }
                }
            });
    }
}

impl CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "thresher-add-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_delta: &CpuStorage,
        l_delta: &Layout,
        s_weight: &CpuStorage,
        l_weight: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, width) = Self::check(l_x, l_delta, l_weight)?;
        let (x, delta, weight) = (
            cpu_f32(s_x, l_x)?,
            cpu_f32(s_delta, l_delta)?,
            cpu_f32(s_weight, l_weight)?,
        );
        let mut out = vec![0f32; 2 * rows * width];
        let (sums, norms) = out.split_at_mut(rows * width);
        // The sum as the dtype rounds it: the norm is taken of what the
        // residual stream holds. (One monomorphized loop per dtype, so the
        // f32 one vectorizes.)
        let pass = AddRmsNormRows {
            x: &x,
            delta: &delta,
            weight: &weight,
            eps: self.eps,
        };
        match s_x {
            CpuStorage::BF16(_) => pass.run(sums, norms, |v| half::bf16::from_f32(v).to_f32()),
            CpuStorage::F16(_) => pass.run(sums, norms, |v| half::f16::from_f32(v).to_f32()),
            _ => pass.run(sums, norms, |v| v),
        }
        Ok((cpu_like(s_x, out), Shape::from((2, rows, width))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s_x: &candle_core::CudaStorage,
        l_x: &Layout,
        s_delta: &candle_core::CudaStorage,
        l_delta: &Layout,
        s_weight: &candle_core::CudaStorage,
        l_weight: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        let (rows, width) = Self::check(l_x, l_delta, l_weight)?;
        if width.is_multiple_of(8) {
            require_16_byte_starts("add_rms_norm", &[("x", l_x), ("delta", l_delta), ("weight", l_weight)])?;
        }
        let dev = s_x.device().clone();
        let x = cuda_contiguous::<half::bf16>(s_x, l_x)?;
        let delta = cuda_contiguous::<half::bf16>(s_delta, l_delta)?;
        let weight = cuda_contiguous::<half::bf16>(s_weight, l_weight)?;
        let func = dev.get_or_load_custom_func("add_rms_norm_bf16", "thresher_fused", PTX)?;
        // SAFETY: the kernel writes every element of both halves.
        let mut out = unsafe { dev.alloc::<half::bf16>(2 * rows * width)? };
        {
            let (mut sums, mut norms) = out.split_at_mut(rows * width);
            let (rows_arg, width_arg) = (rows as i64, width as i32);
            let mut builder = func.builder();
            builder.arg(&x);
            builder.arg(&delta);
            builder.arg(&weight);
            builder.arg(&mut sums);
            builder.arg(&mut norms);
            builder.arg(&rows_arg);
            builder.arg(&width_arg);
            builder.arg(&self.eps);
            // Four rows (warps) a block.
            let config = LaunchConfig {
                grid_dim: (rows.div_ceil(4).clamp(1, 65_535) as u32, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments match the kernel's signature; shapes checked above.
            unsafe { builder.launch(config) }.w()?;
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((2, rows, width)),
        ))
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
        assert_eq!(max8(&x), 20.0);
        assert_eq!(max8(&[-3.0]), -3.0);
        let mut shuffled = x.clone();
        shuffled.swap(3, 20);
        assert_eq!(max8(&shuffled), 20.0);
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
        assert_eq!(report.matches(" ok").count(), 9, "{report}");
    }
}
