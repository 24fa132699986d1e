// Fused kernels for the quality classifier's Llama layers on the GPU (bf16).
//
// Why: candle's attention is matmul -> mask -> softmax -> matmul, with the
// b x heads x t x t scores written to and read from memory four times, plus
// transposes, grouped-query expansion and RoPE as separate passes, all over
// right-padded rows. Here one kernel reads q, k and v straight from the fused
// QKV projection, applies RoPE while loading, and keeps scores on chip
// (flash-attention's online softmax), so nothing of size t^2 is written to
// memory. Documents are packed end to end with no padding (flash-attention's
// "varlen"): a table of tiles says where each document starts, and attention
// stops at its boundaries, as the pack stage's masks do.
//
// The same source is compiled for the host by `fused_test.cpp`, with
// `emulate_cuda.h` standing in for the CUDA runtime, so CI checks the index
// arithmetic, masking and online softmax without a GPU.
#ifdef THRESHER_EMULATE_CUDA
#include "emulate_cuda.h"
#else
#include <cuda_bf16.h>
#endif

typedef __nv_bfloat16 bf16;

// Four warps per block, 16 query rows each, share every key/value tile they
// load. Tiles of 64 keys at head_dim 64 and 32 at 128 keep a block's shared
// memory (q, k and v^T tiles) under 48 KB: 27.6 KB and 35.8 KB.
#define WARPS 4
#define BQ (16 * WARPS)

// The tensor-core instruction the kernel is built on:
// d (16x8, f32) += a (16x16, bf16, row-major) * b (16x8, bf16, column-major).
// Fragment layouts (PTX ISA, "mma.m16n8k16"), with g = lane / 4 and
// c = lane % 4, two bf16 per register (the lower column in the low half):
//   a[0]: row g,     columns 2c, 2c+1      a[2]: row g,     columns 2c+8, 2c+9
//   a[1]: row g + 8, columns 2c, 2c+1      a[3]: row g + 8, columns 2c+8, 2c+9
//   b[0]: rows 2c, 2c+1 of column g        b[1]: rows 2c+8, 2c+9 of column g
//   d[0], d[1]: row g, columns 2c, 2c+1    d[2], d[3]: row g + 8, the same
// So a score tile's accumulators (d) are, pairwise, the probability tile's
// A fragments: the softmax never leaves registers.
__device__ inline void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#ifdef THRESHER_EMULATE_CUDA
    emulate::mma_16x8x16(d, a, b);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Two bf16 (p[0], p[1]) as one register.
__device__ inline unsigned load_pair(const bf16* p) {
#ifdef THRESHER_EMULATE_CUDA
    unsigned v;
    std::memcpy(&v, p, 4);
    return v;
#else
    return *reinterpret_cast<const unsigned*>(p);
#endif
}

// lo and hi rounded to bf16, as one register (lo in the low half).
__device__ inline unsigned pack_pair(float lo, float hi) {
#ifdef THRESHER_EMULATE_CUDA
    return __float2bfloat16(lo).bits | (static_cast<unsigned>(__float2bfloat16(hi).bits) << 16);
#else
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
#endif
}

// 8 bf16 (16 bytes, both ends 16-byte aligned) in one load and one store.
__device__ inline void copy8(bf16* dst, const bf16* src) {
#ifdef THRESHER_EMULATE_CUDA
    std::memcpy(dst, src, 16);
#else
    *reinterpret_cast<int4*>(dst) = *reinterpret_cast<const int4*>(src);
#endif
}

// dst[e] = f(a[e], b[e]) for 8 neighbours, in f32, rounded to bf16; one
// 16-byte load of each input and one store.
template <typename F>
__device__ inline void map8(bf16* dst, const bf16* a, const bf16* b, F f) {
    bf16 x[8], y[8], z[8];
    copy8(x, a);
    copy8(y, b);
#pragma unroll
    for (int e = 0; e < 8; ++e) z[e] = __float2bfloat16(f(__bfloat162float(x[e]), __bfloat162float(y[e])));
    copy8(dst, z);
}

// Elements i..i+8 and i+D/2..i+D/2+8 (rotate-half RoPE pairs) of the head
// vector of token `pos` of a document in `src` (rows `row_stride` apart),
// rotated and rounded to bf16 into `tile_row`; zeros past the document's end
// `t`. `rope` row `pos` holds D/2 cosines, then D/2 sines.
template <int D>
__device__ void store_roped8(const bf16* __restrict__ src, const bf16* __restrict__ rope, long row_stride, int pos,
                             int t, int i, bf16* tile_row) {
    constexpr int half = D / 2;
    bf16 x1[8], x2[8], cs[8], sn[8], a[8], b[8];
    if (pos < t) {
        copy8(x1, src + pos * row_stride + i);
        copy8(x2, src + pos * row_stride + i + half);
        copy8(cs, rope + (long)pos * D + i);
        copy8(sn, rope + (long)pos * D + half + i);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            const float u = __bfloat162float(x1[e]), w = __bfloat162float(x2[e]);
            const float c = __bfloat162float(cs[e]), s = __bfloat162float(sn[e]);
            a[e] = __float2bfloat16(u * c - w * s);
            b[e] = __float2bfloat16(u * s + w * c);
        }
    } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) a[e] = b[e] = __float2bfloat16(0.f);
    }
    copy8(tile_row + i, a);
    copy8(tile_row + i + half, b);
}

// Causal self-attention of one (tile, head): BQ queries of one document.
//   qkv: (tokens, (hq + 2 * hkv) * D), the output of the fused q/k/v
//        projection for documents packed end to end: q heads first, then k
//        heads, then v heads (how the weights are stacked).
//   rope: (positions, D), RoPE cosines then sines per position (rotate-half
//        layout, as transformers' Llama uses); positions count from each
//        document's start.
//   tiles: 3 ints per tile: the document's first token, its length, and the
//        tile's first query within it. Every query of every document is in
//        exactly one tile; their order is free (the longest first is best).
//   out: (tokens, hq * D), ready for o_proj.
// A query sees the keys of its own document up to itself, nothing else.
//
// flash-attention 2's shape: each warp keeps its 16 queries (A fragments),
// their running max and sum, and their 16 x D output in registers; shared
// memory holds only the tiles the block's warps share. All row pointers
// into global memory are 16-byte aligned (D a multiple of 8, the caller
// checks the base pointers).
template <int D, int BK>
__device__ void causal_attention(const bf16* __restrict__ qkv, const bf16* __restrict__ rope,
                                 const unsigned* __restrict__ tiles, bf16* __restrict__ out, int hq, int hkv,
                                 float scale_log2) {
    // Rows padded by 16 bytes: the 8 rows one fragment load reads (4 lanes
    // each) then start 4 banks apart, so a warp's 32 loads hit 32 banks.
    constexpr int LD = D + 8;    // q and k tiles: a row per token
    constexpr int LDV = BK + 8;  // v^T tile: a row per dimension
    constexpr int half = D / 2;
    __shared__ __align__(16) bf16 q_tile[BQ * LD];
    __shared__ __align__(16) bf16 k_tile[BK * LD];
    __shared__ __align__(16) bf16 vt_tile[D * LDV];

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, c = lane % 4;
    const unsigned* tile = tiles + 3 * blockIdx.x;
    const long doc_start = tile[0];
    const int t = tile[1], q0 = tile[2], head = blockIdx.y;
    const int kv_head = head / (hq / hkv);
    const long row_stride = (long)(hq + 2 * hkv) * D;
    const bf16* rows = qkv + doc_start * row_stride;
    const bf16* q_src = rows + head * D;
    const bf16* k_src = rows + (long)(hq + kv_head) * D;
    const bf16* v_src = rows + (long)(hq + hkv + kv_head) * D;

    for (int idx = tid; idx < BQ * (half / 8); idx += WARPS * 32) {
        const int r = idx / (half / 8), i = idx % (half / 8) * 8;
        store_roped8<D>(q_src, rope, row_stride, q0 + r, t, i, q_tile + r * LD);
    }
    __syncthreads();
    unsigned q_frag[D / 16][4];
    const bf16* my_q = q_tile + warp * 16 * LD;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        q_frag[kk][0] = load_pair(my_q + g * LD + kk * 16 + 2 * c);
        q_frag[kk][1] = load_pair(my_q + (g + 8) * LD + kk * 16 + 2 * c);
        q_frag[kk][2] = load_pair(my_q + g * LD + kk * 16 + 8 + 2 * c);
        q_frag[kk][3] = load_pair(my_q + (g + 8) * LD + kk * 16 + 8 + 2 * c);
    }

    // This lane's rows are g and g + 8 of the warp's 16 ([0] and [1] below);
    // its running sums cover only its own columns until the end.
    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float running_max[2] = {-INFINITY, -INFINITY}, running_sum[2] = {0.f, 0.f};
    const int query[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    const int warp_last_query = q0 + warp * 16 + 15;
    const int key_end = min(t, q0 + BQ);

    for (int k0 = 0; k0 < key_end; k0 += BK) {
        __syncthreads();  // the previous tiles are no longer read
        for (int idx = tid; idx < BK * (half / 8); idx += WARPS * 32) {
            const int kr = idx / (half / 8), i = idx % (half / 8) * 8;
            store_roped8<D>(k_src, rope, row_stride, k0 + kr, t, i, k_tile + kr * LD);
        }
        for (int idx = tid; idx < BK * (D / 8); idx += WARPS * 32) {
            const int kr = idx / (D / 8), i = idx % (D / 8) * 8;
            bf16 v[8];
            if (k0 + kr < t) {
                copy8(v, v_src + (k0 + kr) * row_stride + i);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) v[e] = __float2bfloat16(0.f);
            }
#pragma unroll
            for (int e = 0; e < 8; ++e) vt_tile[(i + e) * LDV + kr] = v[e];
        }
        __syncthreads();
        // A tile wholly after this warp's last query is masked for all its
        // rows: skip it (the condition is the same for the whole warp).
        if (k0 > warp_last_query) continue;

        // s = q k^T: BK / 8 tiles of 16 x 8.
        float s[BK / 8][4];
#pragma unroll
        for (int n = 0; n < BK / 8; ++n) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
            const bf16* k_row = k_tile + (n * 8 + g) * LD + 2 * c;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const unsigned b[2] = {load_pair(k_row + kk * 16), load_pair(k_row + kk * 16 + 8)};
                mma_16x8x16(s[n], q_frag[kk], b);
            }
        }

        // Online softmax: mask, the new row maxima (over the 4 lanes of a
        // row), rescale what was accumulated by exp(old max - new max), add
        // this tile's probabilities.
        float tile_max[2] = {running_max[0], running_max[1]};
#pragma unroll
        for (int n = 0; n < BK / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = k0 + n * 8 + 2 * c + (e & 1), row = e >> 1;
                s[n][e] = (key <= query[row] && key < t) ? s[n][e] * scale_log2 : -INFINITY;
                tile_max[row] = fmaxf(tile_max[row], s[n][e]);
            }
        float rescale[2], tile_sum[2] = {0.f, 0.f};
#pragma unroll
        for (int row = 0; row < 2; ++row) {
            tile_max[row] = fmaxf(tile_max[row], __shfl_xor_sync(0xffffffffu, tile_max[row], 1));
            tile_max[row] = fmaxf(tile_max[row], __shfl_xor_sync(0xffffffffu, tile_max[row], 2));
            rescale[row] = tile_max[row] == -INFINITY ? 1.f : exp2f(running_max[row] - tile_max[row]);
        }
#pragma unroll
        for (int n = 0; n < BK / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = e >> 1;
                s[n][e] = s[n][e] == -INFINITY ? 0.f : exp2f(s[n][e] - tile_max[row]);
                tile_sum[row] += s[n][e];
            }
#pragma unroll
        for (int row = 0; row < 2; ++row) {
            running_sum[row] = running_sum[row] * rescale[row] + tile_sum[row];
            running_max[row] = tile_max[row];
        }
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            o[n][0] *= rescale[0];
            o[n][1] *= rescale[0];
            o[n][2] *= rescale[1];
            o[n][3] *= rescale[1];
        }

        // o += p v, 16 keys at a time: two score tiles make one A fragment.
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            const unsigned p[4] = {pack_pair(s[2 * kk][0], s[2 * kk][1]), pack_pair(s[2 * kk][2], s[2 * kk][3]),
                                   pack_pair(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack_pair(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                const bf16* v_row = vt_tile + (n * 8 + g) * LDV + kk * 16 + 2 * c;
                const unsigned b[2] = {load_pair(v_row), load_pair(v_row + 8)};
                mma_16x8x16(o[n], p, b);
            }
        }
    }

    const long out_stride = (long)hq * D;
    bf16* out_rows = out + doc_start * out_stride + head * D;
#pragma unroll
    for (int row = 0; row < 2; ++row) {
        float sum = running_sum[row];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int pos = query[row];
        if (pos < t)
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                const unsigned pair = pack_pair(o[n][2 * row] / sum, o[n][2 * row + 1] / sum);
#ifdef THRESHER_EMULATE_CUDA
                std::memcpy(out_rows + pos * out_stride + n * 8 + 2 * c, &pair, 4);
#else
                *reinterpret_cast<unsigned*>(out_rows + pos * out_stride + n * 8 + 2 * c) = pair;
#endif
            }
    }
}

// grid (tiles, hq), block WARPS * 32 threads. At head_dim 64, at most 128
// registers a thread (ptxas wants 129 unbounded, spilling nothing at 128):
// four blocks per SM instead of three, to hide the tiles' load latency.
extern "C" __global__ void __launch_bounds__(WARPS * 32, 4) causal_attention_d64(const bf16* qkv, const bf16* rope, const unsigned* tiles, bf16* out,
                                                int hq, int hkv, float scale_log2) {
    causal_attention<64, 64>(qkv, rope, tiles, out, hq, hkv, scale_log2);
}

extern "C" __global__ void causal_attention_d128(const bf16* qkv, const bf16* rope, const unsigned* tiles,
                                                 bf16* out, int hq, int hkv, float scale_log2) {
    causal_attention<128, 32>(qkv, rope, tiles, out, hq, hkv, scale_log2);
}

// SwiGLU of the fused gate/up projection: (rows, 2 * width) -> (rows, width),
// silu(gate) * up in one pass instead of three. A thread takes 8 neighbours
// (16-byte loads and stores) when the width allows; the pass is bound by
// memory, and 2-byte accesses leave most of each transaction unused.
__device__ inline float silu_times(float gate, float up) { return gate / (1.f + expf(-gate)) * up; }

extern "C" __global__ void swiglu_bf16(const bf16* gate_up, bf16* out, long rows, int width) {
    const long stride = (long)gridDim.x * blockDim.x;
    if (width % 8 == 0) {
        const int chunks = width / 8;
        const long n = rows * chunks;
        for (long idx = (long)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
            const long r = idx / chunks;
            const int col = idx % chunks * 8;
            const bf16* row = gate_up + r * 2 * width;
            map8(out + r * width + col, row + col, row + width + col, silu_times);
        }
        return;
    }
    const long n = rows * width;
    for (long idx = (long)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const long r = idx / width;
        const int c = idx % width;
        out[idx] = __float2bfloat16(
            silu_times(__bfloat162float(gate_up[r * 2 * width + c]), __bfloat162float(gate_up[r * 2 * width + width + c])));
    }
}

// The residual add and the RMSNorm after it, in one pass: (rows, width) each
// of x and delta -> sum = x + delta (rounded to bf16, the residual stream)
// and norm = sum * rsqrt(mean(sum^2) + eps) * weight, as candle's add and
// rms_norm compute them. Writes sum, then reads it back for the second pass
// (the same thread wrote it: no barrier, and it is in L1/L2). Separately,
// the two ops read 3 and write 2 rows; together 2 and 2, in one launch.
// grid-stride over rows, a warp per row.
extern "C" __global__ void add_rms_norm_bf16(const bf16* x, const bf16* delta, const bf16* weight, bf16* sum,
                                             bf16* norm, long rows, int width, float eps) {
    const int lane = threadIdx.x % 32;
    const long warps = (long)gridDim.x * (blockDim.x / 32);
    const bool wide = width % 8 == 0;
    for (long r = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
        const bf16* xr = x + r * width;
        const bf16* dr = delta + r * width;
        bf16* sr = sum + r * width;
        bf16* nr = norm + r * width;
        float squares = 0.f;
        if (wide) {
            for (int col = lane * 8; col < width; col += 32 * 8)
                map8(sr + col, xr + col, dr + col, [&](float a, float b) {
                    const float v = __bfloat162float(__float2bfloat16(a + b));  // as the stream holds it
                    squares += v * v;
                    return v;
                });
        } else {
            for (int col = lane; col < width; col += 32) {
                const bf16 s = __float2bfloat16(__bfloat162float(xr[col]) + __bfloat162float(dr[col]));
                const float v = __bfloat162float(s);
                squares += v * v;
                sr[col] = s;
            }
        }
#pragma unroll
        for (int m = 16; m >= 1; m /= 2) squares += __shfl_xor_sync(0xffffffffu, squares, m);
        const float scale = rsqrtf(squares / width + eps);
        if (wide) {
            for (int col = lane * 8; col < width; col += 32 * 8)
                map8(nr + col, sr + col, weight + col, [&](float v, float w) { return scale * v * w; });
        } else {
            for (int col = lane; col < width; col += 32)
                nr[col] = __float2bfloat16(scale * __bfloat162float(sr[col]) * __bfloat162float(weight[col]));
        }
    }
}
