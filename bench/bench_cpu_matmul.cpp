// CPU matmul speed on the default model's shapes (Qwen2.5-Coder-0.5B Q4_K_M):
// milliseconds per call (median), weight GB/s and GFLOP/s, for one token
// (n=1, bandwidth-bound) and a 128-token prefill (n=128, compute-bound), per
// instruction set; then one whole decode step's matmuls in sequence.
// Weights rotate over enough copies to exceed the last-level cache, so n=1
// reads come from memory as they do in a real decode step.
//   build/dev/bench_cpu_matmul [threads (0 = all cores)] [max seconds per case] [type, e.g. Q4_K, or 'decode']
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/matmul.h"
#include "random_tensors.h"

using namespace orcd;
using gguf::TensorType;

namespace {

struct Shape {
    const char* name;
    TensorType type;
    int64_t rows, cols;
    int per_step;  // how many of these one decode step multiplies
};

// One decode step of the default model: 24 layers (half of the ffn_down and
// attn_v tensors in each of two types) plus the output projection.
const Shape kModel[] = {
    {"attn_q/attn_output", TensorType::Q5_0, 896, 896, 48},
    {"attn_k", TensorType::Q5_0, 128, 896, 24},
    {"attn_v", TensorType::Q5_0, 128, 896, 12},
    {"attn_v", TensorType::Q8_0, 128, 896, 12},
    {"ffn_gate/ffn_up", TensorType::Q5_0, 4864, 896, 48},
    {"ffn_down", TensorType::Q6_K, 896, 4864, 12},
    {"ffn_down", TensorType::Q4_K, 896, 4864, 12},
    {"output", TensorType::Q8_0, 151936, 896, 1},
};

const Shape kShapes[] = {
    {"attn_q", TensorType::Q5_0, 896, 896, 0},
    {"ffn_up", TensorType::Q5_0, 4864, 896, 0},
    {"ffn_down", TensorType::Q6_K, 896, 4864, 0},
    {"ffn_down", TensorType::Q4_K, 896, 4864, 0},
    {"output", TensorType::Q8_0, 151936, 896, 0},
};

constexpr int64_t kColdBytes = 192ll << 20;  // six times the 32 MiB L3 of the machines in use

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int64_t weight_bytes(const Shape& s) { return s.rows * int64_t(gguf::row_bytes(s.type, uint64_t(s.cols))); }

void bench_shape(const Shape& s, int64_t n, cpu::Isa isa, cpu::ThreadPool& pool, double max_seconds,
                 std::mt19937& rng) {
    const int64_t bytes = weight_bytes(s);
    const int copies = int(std::clamp<int64_t>((kColdBytes + bytes - 1) / bytes, 1, 1024));
    std::vector<std::vector<uint8_t>> weights;
    for (int c = 0; c < copies; ++c) weights.push_back(orcd::testing::random_weights(s.type, s.rows, s.cols, rng));
    const auto x = orcd::testing::random_activations(n * s.cols, rng);
    std::vector<float> out(size_t(n * s.rows));

    cpu::matmul(s.type, weights[0].data(), s.rows, s.cols, x.data(), n, out.data(), pool, isa);  // warm-up
    std::vector<double> times;
    const auto start = std::chrono::steady_clock::now();
    for (int rep = 0; rep < 200 && (rep < 3 || seconds_since(start) < max_seconds); ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        cpu::matmul(s.type, weights[size_t(rep % copies)].data(), s.rows, s.cols, x.data(), n, out.data(), pool, isa);
        times.push_back(seconds_since(t0));
    }
    const double t = median(times);
    std::printf("| %-9s | %-5s | %6lldx%-5lld | %3lld | %-6s | %9.3f | %6.2f | %7.1f |\n", s.name,
                gguf::traits(s.type).name, (long long)s.rows, (long long)s.cols, (long long)n, cpu::isa_name(isa),
                t * 1e3, double(bytes) / t / 1e9, 2.0 * double(s.rows * s.cols * n) / t / 1e9);
}

void bench_decode_step(cpu::Isa isa, cpu::ThreadPool& pool, std::mt19937& rng) {
    struct Tensor {
        const Shape* shape;
        std::vector<uint8_t> bytes;
    };
    std::vector<Tensor> tensors;
    int64_t total_bytes = 0;
    for (const Shape& s : kModel)
        for (int i = 0; i < s.per_step; ++i) {
            tensors.push_back({&s, orcd::testing::random_weights(s.type, s.rows, s.cols, rng)});
            total_bytes += int64_t(tensors.back().bytes.size());
        }
    const auto x = orcd::testing::random_activations(4864, rng);
    std::vector<float> out(151936);
    std::vector<double> times;
    for (int rep = 0; rep < 8; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        for (const Tensor& t : tensors)
            cpu::matmul(t.shape->type, t.bytes.data(), t.shape->rows, t.shape->cols, x.data(), 1, out.data(), pool, isa);
        if (rep > 0) times.push_back(seconds_since(t0));  // the first pass is warm-up
    }
    const double t = median(times);
    std::printf("| decode step (%zu matmuls, %.1f MB) | %-6s | %8.1f ms | %6.2f GB/s |\n", tensors.size(),
                double(total_bytes) / 1e6, cpu::isa_name(isa), t * 1e3, double(total_bytes) / t / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
    const double max_seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
    const char* only_type = argc > 3 ? argv[3] : nullptr;
    const bool only_decode = only_type && std::strcmp(only_type, "decode") == 0;
    cpu::ThreadPool pool(threads);
    std::mt19937 rng(1);
    std::vector<cpu::Isa> isas = {cpu::Isa::Scalar};
    if (cpu::cpu_has_avx2()) isas.push_back(cpu::Isa::Avx2);
    std::printf("threads: %d\n\n", pool.size());
    std::printf("| tensor    | type  | rows x cols  |   n | isa    |   ms/call |   GB/s | GFLOP/s |\n");
    std::printf("|-----------|-------|--------------|-----|--------|-----------|--------|---------|\n");
    for (const Shape& s : kShapes) {
        if (only_decode) break;
        if (only_type && std::strcmp(only_type, gguf::traits(s.type).name) != 0) continue;
        for (int64_t n : {1, 128})
            for (cpu::Isa isa : isas) bench_shape(s, n, isa, pool, max_seconds, rng);
    }
    if (only_type && !only_decode) return 0;
    std::printf("\n");
    for (cpu::Isa isa : isas) bench_decode_step(isa, pool, rng);
    return 0;
}
