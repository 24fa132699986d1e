// Runs fused.cu's kernels on the host (emulate_cuda.h) against plain
// double-precision references. Built and run by the classifiers crate's test
// `fused_kernels_match_reference_on_the_host`; exits non-zero on a mismatch.
#define THRESHER_EMULATE_CUDA
#include "fused.cu"

#include <cstdio>
#include <cstdlib>

namespace {
uint64_t rng_state = 0x9e3779b97f4a7c15ull;
float uniform() {  // in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((rng_state >> 40) & 0xffffff) / 8388608.f - 1.f;
}
float round_bf16(float f) { return __bfloat162float(__float2bfloat16(f)); }

struct Case {
    int b, t, hq, hkv, d;
};

// Max |kernel - reference| for one shape; also checks that a reference
// without the causal mask is far from the kernel, so the test can fail.
bool check_attention(const Case& cs) {
    const int row = (cs.hq + 2 * cs.hkv) * cs.d, half = cs.d / 2, positions = cs.t + 3;
    std::vector<__nv_bfloat16> qkv(static_cast<size_t>(cs.b) * cs.t * row), cos_t(positions * half),
        sin_t(positions * half), out(static_cast<size_t>(cs.b) * cs.t * cs.hq * cs.d, __float2bfloat16(0.f));
    // Scaled like real activations after a norm: scores of a few units.
    for (auto& x : qkv) x = __float2bfloat16(uniform() * 2.f);
    for (int p = 0; p < positions; ++p)
        for (int i = 0; i < half; ++i) {
            const double freq = std::pow(10000.0, -2.0 * i / cs.d);
            cos_t[p * half + i] = __float2bfloat16(static_cast<float>(std::cos(p * freq)));
            sin_t[p * half + i] = __float2bfloat16(static_cast<float>(std::sin(p * freq)));
        }
    const float scale_log2 = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(cs.d)));
    auto kernel = cs.d == 64 ? causal_attention_d64 : causal_attention_d128;
    emulate::launch(kernel, dim3{static_cast<unsigned>((cs.t + BQ - 1) / BQ), static_cast<unsigned>(cs.hq),
                                 static_cast<unsigned>(cs.b)},
                    dim3{WARPS * 32, 1, 1}, qkv.data(), cos_t.data(), sin_t.data(), out.data(), cs.t, cs.hq, cs.hkv,
                    scale_log2);

    auto at = [&](int batch, int pos, int col) { return __bfloat162float(qkv[(batch * cs.t + pos) * row + col]); };
    // RoPE'd and rounded to bf16, as the kernel stores its tiles.
    auto roped = [&](int batch, int pos, int col0, int i) {
        const float c = __bfloat162float(cos_t[pos * half + i % half]);
        const float s = __bfloat162float(sin_t[pos * half + i % half]);
        const float x1 = at(batch, pos, col0 + i % half), x2 = at(batch, pos, col0 + i % half + half);
        return round_bf16(i < half ? x1 * c - x2 * s : x1 * s + x2 * c);
    };
    double worst = 0, worst_vs_noncausal = 0, largest = 0;
    for (int batch = 0; batch < cs.b; ++batch)
        for (int h = 0; h < cs.hq; ++h) {
            const int kvh = h / (cs.hq / cs.hkv);
            for (int qi = 0; qi < cs.t; ++qi) {
                for (int causal = 1; causal >= 0; --causal) {
                    const int keys = causal ? qi + 1 : cs.t;
                    std::vector<double> w(keys);
                    double mx = -1e300, sum = 0;
                    for (int kj = 0; kj < keys; ++kj) {
                        double s = 0;
                        for (int i = 0; i < cs.d; ++i)
                            s += static_cast<double>(roped(batch, qi, h * cs.d, i)) *
                                 roped(batch, kj, (cs.hq + kvh) * cs.d, i);
                        w[kj] = s / std::sqrt(static_cast<double>(cs.d));
                        mx = std::max(mx, w[kj]);
                    }
                    for (double& x : w) sum += (x = std::exp(x - mx));
                    for (int i = 0; i < cs.d; ++i) {
                        double o = 0;
                        for (int kj = 0; kj < keys; ++kj) o += w[kj] / sum * at(batch, kj, (cs.hq + cs.hkv + kvh) * cs.d + i);
                        const double got =
                            __bfloat162float(out[((batch * cs.t + qi) * cs.hq + h) * cs.d + i]);
                        const double err = std::fabs(got - o);
                        if (causal) {
                            worst = std::max(worst, err);
                            largest = std::max(largest, std::fabs(o));
                        } else {
                            worst_vs_noncausal = std::max(worst_vs_noncausal, err);
                        }
                    }
                }
            }
        }
    // bf16 probabilities (8 bits of mantissa) and a bf16 output bound the error.
    const bool ok = worst < 2e-2 && (cs.t == 1 || worst_vs_noncausal > 0.1) && largest > 0.3;
    std::printf("attention b=%d t=%d hq=%d hkv=%d d=%d: max error %.5f (vs non-causal %.3f, largest %.3f) %s\n", cs.b,
                cs.t, cs.hq, cs.hkv, cs.d, worst, worst_vs_noncausal, largest, ok ? "ok" : "FAIL");
    return ok;
}

bool check_swiglu() {
    const long rows = 37;
    const int width = 53;
    std::vector<__nv_bfloat16> gate_up(rows * 2 * width), out(rows * width);
    for (auto& x : gate_up) x = __float2bfloat16(uniform() * 4.f);
    emulate::launch(swiglu_bf16, dim3{3, 1, 1}, dim3{64, 1, 1}, gate_up.data(), out.data(), rows, width);
    double worst = 0;
    for (long r = 0; r < rows; ++r)
        for (int c = 0; c < width; ++c) {
            const double g = __bfloat162float(gate_up[r * 2 * width + c]);
            const double u = __bfloat162float(gate_up[r * 2 * width + width + c]);
            const double want = g / (1 + std::exp(-g)) * u;
            worst = std::max(worst, std::fabs(__bfloat162float(out[r * width + c]) - want) / (1 + std::fabs(want)));
        }
    const bool ok = worst < 1e-2;
    std::printf("swiglu %ldx%d: max relative error %.5f %s\n", rows, width, worst, ok ? "ok" : "FAIL");
    return ok;
}
}  // namespace

int main() {
    bool ok = true;
    // Lengths off the 32-query and 64/32-key tiles, grouped-query and plain
    // multi-head, one token, and several tiles of keys.
    for (const Case& cs : {Case{2, 70, 4, 2, 64}, Case{1, 45, 2, 1, 128}, Case{1, 16, 3, 3, 64}, Case{1, 1, 2, 1, 64},
                           Case{1, 131, 3, 1, 64}})
        ok &= check_attention(cs);
    ok &= check_swiglu();
    return ok ? 0 : 1;
}
