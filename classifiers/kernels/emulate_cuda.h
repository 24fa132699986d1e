// Just enough of the CUDA runtime to run `fused.cu` on the host, for tests on
// machines without a GPU. Each block's threads are real threads that meet at
// real barriers (`__syncthreads` for the block, `__syncwarp` for 32 lanes);
// blocks run one after another, so `__shared__` arrays can be plain statics.
// Tensor-core multiplies are collective: the lanes meet at warp barriers
// around each one, as the hardware runs them in step.
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
#define __launch_bounds__(...)
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
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }

namespace emulate {
// One warp's view of an m16n8k16 multiply, gathered from its lanes.
struct MmaTiles {
    float a[16][16], b[16][8];
};
inline std::vector<MmaTiles> mma_tiles;  // one per warp

inline float bf16_half(unsigned pair, int which) { return __bfloat162float({static_cast<uint16_t>(pair >> (16 * which))}); }

// mma.sync.m16n8k16 (bf16 in, f32 accumulate), collectively: each lane
// scatters its fragments by the PTX layout (see fused.cu), then computes its
// own four accumulators from the whole tiles.
inline void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    MmaTiles& m = mma_tiles[threadIdx.x / 32];
    const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    __syncwarp();
    for (int h = 0; h < 2; ++h) {
        m.a[g][2 * c + h] = bf16_half(a[0], h);
        m.a[g + 8][2 * c + h] = bf16_half(a[1], h);
        m.a[g][2 * c + 8 + h] = bf16_half(a[2], h);
        m.a[g + 8][2 * c + 8 + h] = bf16_half(a[3], h);
        m.b[2 * c + h][g] = bf16_half(b[0], h);
        m.b[2 * c + 8 + h][g] = bf16_half(b[1], h);
    }
    __syncwarp();
    for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e >> 1), col = 2 * c + (e & 1);
        float sum = d[e];
        for (int k = 0; k < 16; ++k) sum += m.a[row][k] * m.b[k][col];
        d[e] = sum;
    }
    __syncwarp();
}
}  // namespace emulate

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
                mma_tiles.assign((threads + 31) / 32, MmaTiles{});
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
