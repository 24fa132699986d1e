// Just enough of the CUDA runtime to run `fused.cu` on the host, for tests on
// machines without a GPU. Each block's threads are real threads that meet at
// real barriers (`__syncthreads` for the block, `__syncwarp` for 32 lanes);
// blocks run one after another, so `__shared__` arrays can be plain statics.
// WMMA operations are collective: every lane computes the whole 16x16 tile,
// with warp barriers around each one, as the hardware runs them in step.
#pragma once
#include <barrier>
#include <math.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __shared__ static
#define __restrict__
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;

namespace emulate {
inline std::unique_ptr<std::barrier<>> block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
}  // namespace emulate

inline void __syncthreads() { emulate::block_barrier->arrive_and_wait(); }
inline void __syncwarp() { emulate::warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }

namespace emulate {
// One slot per thread of the block, for shuffles.
inline std::vector<float> exchange;
}  // namespace emulate

// Every lane of the warp must call it (full mask), as on the hardware.
inline float __shfl_xor_sync(unsigned mask, float value, int lane_mask) {
    (void)mask;
    const unsigned me = threadIdx.x, warp_base = me / 32 * 32;
    __syncwarp();
    emulate::exchange[me] = value;
    __syncwarp();
    const float other = emulate::exchange[warp_base + ((me % 32) ^ static_cast<unsigned>(lane_mask))];
    __syncwarp();
    return other;
}

struct __nv_bfloat16 {
    uint16_t bits;
};
// Round to nearest even, as __float2bfloat16 does (no NaNs in these tests).
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return __nv_bfloat16{static_cast<uint16_t>(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = static_cast<uint32_t>(b.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
using std::min;

namespace nvcuda::wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    float x[16][16];  // element (row, col) of the tile, as a float
};

inline void warp_sync() { __syncwarp(); }

template <typename Use, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout>& f, const __nv_bfloat16* p, unsigned ldm) {
    warp_sync();
    constexpr bool row = std::is_same_v<Layout, row_major>;
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c) f.x[r][c] = __bfloat162float(row ? p[r * ldm + c] : p[c * ldm + r]);
    warp_sync();
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
    warp_sync();
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c) f.x[r][c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    warp_sync();
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
    warp_sync();
    if (threadIdx.x % 32 == 0)
        for (int r = 0; r < 16; ++r)
            for (int c = 0; c < 16; ++c) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r][c];
    warp_sync();
}
inline void fill_fragment(fragment<accumulator, 16, 16, 16, float>& f, float v) {
    for (auto& row : f.x)
        for (float& e : row) e = v;
}
template <typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA>& a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
    float result[16][16];
    for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col) {
            float s = c.x[r][col];
            for (int k = 0; k < 16; ++k) s += a.x[r][k] * b.x[k][col];
            result[r][col] = s;
        }
    std::memcpy(d.x, result, sizeof result);
}
}  // namespace nvcuda::wmma

namespace emulate {
// Runs `kernel(args...)` over the grid: blocks in order, each block's
// threads in parallel.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
    gridDim = grid;
    blockDim = block;
    const unsigned threads = block.x;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = dim3{x, y, z};
                block_barrier = std::make_unique<std::barrier<>>(threads);
                warp_barriers.clear();
                exchange.assign(threads, 0.f);
                for (unsigned w = 0; w < (threads + 31) / 32; ++w)
                    warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads - w * 32)));
                std::vector<std::thread> pool;
                for (unsigned i = 0; i < threads; ++i)
                    pool.emplace_back([&, i] {
                        threadIdx = dim3{i, 0, 0};
                        kernel(args...);
                    });
                for (auto& th : pool) th.join();
            }
}
}  // namespace emulate
