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
    std::vector<int> lengths;  // documents packed end to end
    int hq, hkv, d;
};

// Max |kernel - reference| for one set of packed documents; also checks that
// references which see too much (no causal mask; the documents before this
// one, with positions counted from the first) are far from the kernel, so
// the test can fail.
bool check_attention(const Case& cs) {
    int tokens = 0, longest = 0;
    std::vector<int> starts;
    for (int len : cs.lengths) {
        starts.push_back(tokens);
        tokens += len;
        longest = std::max(longest, len);
    }
    const int row = (cs.hq + 2 * cs.hkv) * cs.d, half = cs.d / 2, positions = tokens + 3;
    std::vector<__nv_bfloat16> qkv(static_cast<size_t>(tokens) * row), rope(positions * cs.d),
        out(static_cast<size_t>(tokens) * cs.hq * cs.d, __float2bfloat16(0.f));
    // Scaled like real activations after a norm: scores of a few units.
    for (auto& x : qkv) x = __float2bfloat16(uniform() * 2.f);
    for (int p = 0; p < positions; ++p)
        for (int i = 0; i < half; ++i) {
            const double freq = std::pow(10000.0, -2.0 * i / cs.d);
            rope[p * cs.d + i] = __float2bfloat16(static_cast<float>(std::cos(p * freq)));
            rope[p * cs.d + half + i] = __float2bfloat16(static_cast<float>(std::sin(p * freq)));
        }
    // Tiles of BQ queries, last document first and its last tile first: the
    // kernel must not depend on their order.
    std::vector<unsigned> tiles;
    for (int doc = static_cast<int>(cs.lengths.size()) - 1; doc >= 0; --doc)
        for (int q0 = (cs.lengths[doc] - 1) / BQ * BQ; q0 >= 0; q0 -= BQ)
            tiles.insert(tiles.end(), {static_cast<unsigned>(starts[doc]), static_cast<unsigned>(cs.lengths[doc]),
                                       static_cast<unsigned>(q0)});
    const float scale_log2 = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(cs.d)));
    auto kernel = cs.d == 64 ? causal_attention_d64 : causal_attention_d128;
    emulate::launch(kernel, dim3{static_cast<unsigned>(tiles.size() / 3), static_cast<unsigned>(cs.hq), 1},
                    dim3{WARPS * 32, 1, 1}, qkv.data(), rope.data(), tiles.data(), out.data(), cs.hq, cs.hkv,
                    scale_log2);

    auto at = [&](int token, int col) { return __bfloat162float(qkv[static_cast<size_t>(token) * row + col]); };
    // Token `token` at position `pos`, RoPE'd and rounded to bf16, as the
    // kernel stores its tiles.
    auto roped = [&](int token, int pos, int col0, int i) {
        const float c = __bfloat162float(rope[pos * cs.d + i % half]);
        const float s = __bfloat162float(rope[pos * cs.d + half + i % half]);
        const float x1 = at(token, col0 + i % half), x2 = at(token, col0 + i % half + half);
        return round_bf16(i < half ? x1 * c - x2 * s : x1 * s + x2 * c);
    };
    // 0: the document's own keys up to the query (the truth); 1: all of the
    // document's keys; 2: the whole stream up to the query, one long sequence.
    double worst = 0, worst_vs_noncausal = 0, worst_vs_stream = 0, largest = 0;
    for (size_t doc = 0; doc < cs.lengths.size(); ++doc)
        for (int h = 0; h < cs.hq; ++h) {
            const int kvh = h / (cs.hq / cs.hkv), start = starts[doc], len = cs.lengths[doc];
            for (int qi = 0; qi < len; ++qi)
                for (int variant = 0; variant < 3; ++variant) {
                    const int first = variant == 2 ? 0 : start;
                    const int last = variant == 1 ? start + len - 1 : start + qi;
                    auto pos = [&](int token) { return variant == 2 ? token : token - start; };
                    std::vector<double> w(last - first + 1);
                    double mx = -1e300, sum = 0;
                    for (int kj = first; kj <= last; ++kj) {
                        double s = 0;
                        for (int i = 0; i < cs.d; ++i)
                            s += static_cast<double>(roped(start + qi, pos(start + qi), h * cs.d, i)) *
                                 roped(kj, pos(kj), (cs.hq + kvh) * cs.d, i);
                        w[kj - first] = s / std::sqrt(static_cast<double>(cs.d));
                        mx = std::max(mx, w[kj - first]);
                    }
                    for (double& x : w) sum += (x = std::exp(x - mx));
                    for (int i = 0; i < cs.d; ++i) {
                        double o = 0;
                        for (int kj = first; kj <= last; ++kj)
                            o += w[kj - first] / sum * at(kj, (cs.hq + cs.hkv + kvh) * cs.d + i);
                        const double got =
                            __bfloat162float(out[(static_cast<size_t>(start + qi) * cs.hq + h) * cs.d + i]);
                        const double err = std::fabs(got - o);
                        double& slot = variant == 0 ? worst : variant == 1 ? worst_vs_noncausal : worst_vs_stream;
                        slot = std::max(slot, err);
                        if (variant == 0) largest = std::max(largest, std::fabs(o));
                    }
                }
        }
    // bf16 probabilities (8 bits of mantissa) and a bf16 output bound the error.
    const bool causal_shows = longest == 1 || worst_vs_noncausal > 0.1;
    const bool boundary_shows = cs.lengths.size() == 1 || worst_vs_stream > 0.1;
    const bool ok = worst < 2e-2 && causal_shows && boundary_shows && largest > 0.3;
    std::printf("attention, documents of");
    for (int len : cs.lengths) std::printf(" %d", len);
    std::printf(" tokens, hq=%d hkv=%d d=%d: max error %.5f (vs non-causal %.3f, vs one stream %.3f, largest %.3f) %s\n",
                cs.hq, cs.hkv, cs.d, worst, worst_vs_noncausal, worst_vs_stream, largest, ok ? "ok" : "FAIL");
    return ok;
}

// A width of 8k takes the kernel's 8-wide path, any other its scalar one.
bool check_swiglu(int width) {
    const long rows = 37;
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
// Both paths (a width of 8k, and any other), and more rows than the grid
// has warps. The sums must be exactly the bf16 rounding of x + delta.
bool check_add_rms_norm(int width) {
    const long rows = 37;
    const float eps = 1e-5f;
    std::vector<__nv_bfloat16> x(rows * width), delta(rows * width), weight(width), sum(rows * width),
        norm(rows * width);
    for (auto& v : x) v = __float2bfloat16(uniform() * 3.f);
    for (auto& v : delta) v = __float2bfloat16(uniform());
    for (auto& v : weight) v = __float2bfloat16(1.f + uniform() / 2.f);
    emulate::launch(add_rms_norm_bf16, dim3{3, 1, 1}, dim3{128, 1, 1}, x.data(), delta.data(), weight.data(),
                    sum.data(), norm.data(), rows, width, eps);
    bool sums_exact = true;
    double worst = 0, largest = 0;
    for (long r = 0; r < rows; ++r) {
        double squares = 0;
        for (int c = 0; c < width; ++c) {
            const float want = round_bf16(__bfloat162float(x[r * width + c]) + __bfloat162float(delta[r * width + c]));
            sums_exact &= __bfloat162float(sum[r * width + c]) == want;
            squares += static_cast<double>(want) * want;
        }
        const double scale = 1 / std::sqrt(squares / width + eps);
        for (int c = 0; c < width; ++c) {
            const double want = round_bf16(__bfloat162float(x[r * width + c]) + __bfloat162float(delta[r * width + c])) *
                                scale * __bfloat162float(weight[c]);
            worst = std::max(worst, std::fabs(__bfloat162float(norm[r * width + c]) - want) / (1 + std::fabs(want)));
            largest = std::max(largest, std::fabs(want));
        }
    }
    const bool ok = sums_exact && worst < 1e-2 && largest > 1;
    std::printf("add + rms_norm %ldx%d: sums %s, norm max relative error %.5f %s\n", rows, width,
                sums_exact ? "exact" : "WRONG", worst, ok ? "ok" : "FAIL");
    return ok;
}
}  // namespace

int main() {
    bool ok = true;
    // Lengths off the 64-query and 64/32-key tiles, grouped-query and plain
    // multi-head, one-token documents, several tiles of keys, and documents
    // that start inside a tile's span of the stream.
    for (const Case& cs : {Case{{70, 45}, 4, 2, 64}, Case{{45, 75}, 2, 1, 128}, Case{{16, 1, 33}, 3, 3, 64},
                           Case{{1}, 2, 1, 64}, Case{{131, 7}, 3, 1, 64}})
        ok &= check_attention(cs);
    ok &= check_swiglu(53);
    ok &= check_swiglu(64);
    ok &= check_add_rms_norm(576);
    ok &= check_add_rms_norm(53);
    return ok ? 0 : 1;
}
