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
#include <mma.h>
#endif

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

// Two warps per block, 16 query rows each: small enough for the tiles to fit
// in 48 KB of static shared memory at head_dim 128 (47.5 KB there).
#define WARPS 2
#define BQ (16 * WARPS)

// One RoPE pair (rotate-half: elements i and i + D/2) of the head vector of
// token `pos` of a document in `src` (rows `row_stride` apart), rotated and
// rounded to bf16 into `tile_row`; zeros past the document's end `t`.
// `rope` row `pos` holds D/2 cosines, then D/2 sines.
template <int D>
__device__ void store_roped(const bf16* __restrict__ src, const bf16* __restrict__ rope, long row_stride, int pos,
                            int t, int i, bf16* tile_row) {
    constexpr int half = D / 2;
    float a = 0.f, b = 0.f;
    if (pos < t) {
        const float x1 = __bfloat162float(src[pos * row_stride + i]);
        const float x2 = __bfloat162float(src[pos * row_stride + i + half]);
        const float c = __bfloat162float(rope[pos * D + i]);
        const float s = __bfloat162float(rope[pos * D + half + i]);
        a = x1 * c - x2 * s;
        b = x1 * s + x2 * c;
    }
    tile_row[i] = __float2bfloat16(a);
    tile_row[i + half] = __float2bfloat16(b);
}

// Causal self-attention of one (tile, head): 32 queries of one document.
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
template <int D, int BK>
__device__ void causal_attention(const bf16* __restrict__ qkv, const bf16* __restrict__ rope,
                                 const unsigned* __restrict__ tiles, bf16* __restrict__ out, int hq, int hkv,
                                 float scale_log2) {
    // bf16 tile rows padded by 16 bytes, so that the 16 rows a WMMA load
    // reads start in different shared-memory banks.
    constexpr int LD = D + 8;
    __shared__ __align__(128) bf16 q_tile[BQ * LD];
    __shared__ __align__(128) bf16 k_tile[BK * LD];
    __shared__ __align__(128) bf16 v_tile[BK * LD];
    __shared__ __align__(128) float scores[WARPS * 16 * BK];
    __shared__ __align__(128) bf16 probs[WARPS * 16 * BK];
    __shared__ __align__(128) float acc[WARPS * 16 * D];

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const unsigned* tile = tiles + 3 * blockIdx.x;
    const long doc_start = tile[0];
    const int t = tile[1], q0 = tile[2], head = blockIdx.y;
    const int kv_head = head / (hq / hkv);
    const long row_stride = (long)(hq + 2 * hkv) * D;
    const bf16* rows = qkv + doc_start * row_stride;
    const bf16* q_src = rows + head * D;
    const bf16* k_src = rows + (long)(hq + kv_head) * D;
    const bf16* v_src = rows + (long)(hq + hkv + kv_head) * D;
    const int half = D / 2;

    for (int idx = tid; idx < BQ * half; idx += WARPS * 32) {
        const int r = idx / half, i = idx % half;
        store_roped<D>(q_src, rope, row_stride, q0 + r, t, i, q_tile + r * LD);
    }
    float* my_scores = scores + warp * 16 * BK;
    bf16* my_probs = probs + warp * 16 * BK;
    float* my_acc = acc + warp * 16 * D;
    for (int idx = lane; idx < 16 * D; idx += 32) my_acc[idx] = 0.f;
    // Two lanes per query row: lane 2r + j takes every other column of row
    // r, starting at column 2r + j, so the 32 lanes hit 32 different banks.
    const int r = lane / 2, j = lane % 2;
    const int my_query = q0 + warp * 16 + r;
    float running_max = -INFINITY, running_sum = 0.f;  // the same in both lanes of a row
    const int warp_last_query = q0 + warp * 16 + 15;
    const int key_end = min(t, q0 + BQ);

    for (int k0 = 0; k0 < key_end; k0 += BK) {
        __syncthreads();  // the previous tile is no longer read
        for (int idx = tid; idx < BK * half; idx += WARPS * 32) {
            const int kr = idx / half, i = idx % half, pos = k0 + kr;
            store_roped<D>(k_src, rope, row_stride, pos, t, i, k_tile + kr * LD);
            const bf16 zero = __float2bfloat16(0.f);
            v_tile[kr * LD + i] = pos < t ? v_src[pos * row_stride + i] : zero;
            v_tile[kr * LD + i + half] = pos < t ? v_src[pos * row_stride + i + half] : zero;
        }
        __syncthreads();
        // A tile wholly after this warp's last query is masked for all its
        // rows: skip it (the condition is the same for the whole warp).
        if (k0 > warp_last_query) continue;

        // scores = q k^T for this warp's 16 rows and the tile's BK keys.
        for (int n = 0; n < BK / 16; ++n) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
            wmma::fill_fragment(s_frag, 0.f);
            for (int kk = 0; kk < D / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> q_frag;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> k_frag;
                wmma::load_matrix_sync(q_frag, q_tile + warp * 16 * LD + kk * 16, LD);
                wmma::load_matrix_sync(k_frag, k_tile + n * 16 * LD + kk * 16, LD);
                wmma::mma_sync(s_frag, q_frag, k_frag, s_frag);
            }
            wmma::store_matrix_sync(my_scores + n * 16, s_frag, BK, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax: rescale what was accumulated by exp(old max - new
        // max), then add this tile's probabilities.
        // This lane's half row stays in registers between the two passes.
        const float* s_row = my_scores + r * BK;
        float s[BK / 2];
        float tile_max = running_max;
#pragma unroll
        for (int m = 0; m < BK / 2; ++m) {
            const int c = (2 * m + 2 * r + j) % BK, key = k0 + c;
            s[m] = (key <= my_query && key < t) ? s_row[c] * scale_log2 : -INFINITY;
            tile_max = fmaxf(tile_max, s[m]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        const float rescale = tile_max == -INFINITY ? 1.f : exp2f(running_max - tile_max);
        float tile_sum = 0.f;
#pragma unroll
        for (int m = 0; m < BK / 2; ++m) {
            const int c = (2 * m + 2 * r + j) % BK;
            const float p = s[m] == -INFINITY ? 0.f : exp2f(s[m] - tile_max);
            my_probs[r * BK + c] = __float2bfloat16(p);
            tile_sum += p;
        }
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
        running_sum = running_sum * rescale + tile_sum;
        running_max = tile_max;
        // Both lanes of a row see the same rescale; 1 (the max held) needs no pass.
        if (rescale != 1.f)
            for (int m = 0; m < D / 2; ++m) my_acc[r * D + (2 * m + 2 * r + j) % D] *= rescale;
        __syncwarp();

        // acc += probs v
        for (int n = 0; n < D / 16; ++n) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
            wmma::load_matrix_sync(o_frag, my_acc + n * 16, D, wmma::mem_row_major);
            for (int kk = 0; kk < BK / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> p_frag;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> v_frag;
                wmma::load_matrix_sync(p_frag, my_probs + kk * 16, BK);
                wmma::load_matrix_sync(v_frag, v_tile + kk * 16 * LD + n * 16, LD);
                wmma::mma_sync(o_frag, p_frag, v_frag, o_frag);
            }
            wmma::store_matrix_sync(my_acc + n * 16, o_frag, D, wmma::mem_row_major);
        }
        __syncwarp();
    }

    // The row sums go where the scores were (no longer read), to leave
    // shared memory for the tiles.
    __syncwarp();
    if (j == 0) my_scores[r] = running_sum;
    __syncwarp();
    const long out_stride = (long)hq * D;
    bf16* out_rows = out + doc_start * out_stride + head * D;
    for (int idx = lane; idx < 16 * D; idx += 32) {
        const int row = idx / D, c = idx % D, pos = q0 + warp * 16 + row;
        if (pos < t) out_rows[pos * out_stride + c] = __float2bfloat16(my_acc[idx] / my_scores[row]);
    }
}

// grid (tiles, hq), block 64 threads.
extern "C" __global__ void causal_attention_d64(const bf16* qkv, const bf16* rope, const unsigned* tiles, bf16* out,
                                                int hq, int hkv, float scale_log2) {
    causal_attention<64, 64>(qkv, rope, tiles, out, hq, hkv, scale_log2);
}

extern "C" __global__ void causal_attention_d128(const bf16* qkv, const bf16* rope, const unsigned* tiles,
                                                 bf16* out, int hq, int hkv, float scale_log2) {
    causal_attention<128, 32>(qkv, rope, tiles, out, hq, hkv, scale_log2);
}

// SwiGLU of the fused gate/up projection: (rows, 2 * width) -> (rows, width),
// silu(gate) * up in one pass instead of three.
extern "C" __global__ void swiglu_bf16(const bf16* gate_up, bf16* out, long rows, int width) {
    const long n = rows * width;
    for (long idx = (long)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (long)gridDim.x * blockDim.x) {
        const long r = idx / width;
        const int c = idx % width;
        const float g = __bfloat162float(gate_up[r * 2 * width + c]);
        const float u = __bfloat162float(gate_up[r * 2 * width + width + c]);
        out[idx] = __float2bfloat16(g / (1.f + expf(-g)) * u);
    }
}
