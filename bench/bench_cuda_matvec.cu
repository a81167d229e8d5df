// CUDA matrix-vector product (one decode token) bandwidth sweep: for every
// tensor type the CUDA backend supports and a set of shapes, the time of one
// orcd::cuda::launch_matvec with n = 1, the weight bytes it reads per second,
// and that as a percent of the device-to-device copy bandwidth measured first
// (cudaMemcpyAsync of 1 GiB, bytes read + written, median of 10); beside it,
// the same bytes read by a kernel that only reads them (read_once): the floor
// of a product of that size, its start and tail included.
//
// Weights come from DRAM, not L2: each (type, shape) rotates over enough copies
// of the weight that together they exceed max(256 MB, 4 x L2). A sample is a
// run of back-to-back products on one stream (launched as the backend launches
// them, with programmatic dependent launch) between two CUDA events, long
// enough to take ~2 ms; the table gives the median of --reps samples. The
// "graph" columns launch the same products as CUDA graphs of 20 products each
// (the way a decode step runs); the time is still per product.
//
// Weights are random valid blocks (random quantised bits, fp16 scales in
// +-[2^-10, 1), plain types uniform in [-1, 1]), the input random floats in
// +-[0.05, 1]. Shapes whose row is not a whole number of the type's blocks
// (896 columns for the 256-element K-quants) are skipped and listed at the end.
//
//   bench_cuda_matvec [--types Q4_K,Q8_0] [--shapes 896x4864,4096x4096] [--reps N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "orcd/gguf.h"
#include "random_tensors.h"

using orcd::Weight;
using orcd::gguf::TensorType;

namespace {

const TensorType kTypes[] = {TensorType::F32,  TensorType::F16,    TensorType::BF16,  TensorType::Q4_0,
                             TensorType::Q4_1, TensorType::Q5_0,   TensorType::Q5_1,  TensorType::Q8_0,
                             TensorType::Q2_K, TensorType::Q3_K,   TensorType::Q4_K,  TensorType::Q5_K,
                             TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS};

struct Shape {
    int64_t rows, cols;
};
// Qwen2.5-0.5B: attention q/o, ffn gate or up, gate+up merged, ffn down, output;
// 7B/8B class: attention, gate or up, down, output.
const Shape kShapes[] = {{896, 896},   {4864, 896},   {9728, 896},   {896, 4864},    {151936, 896},
                         {4096, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};

constexpr int kGraphProducts = 20;       // products per CUDA graph
constexpr double kSampleUs = 2000.0;     // target length of one timed sample
constexpr int64_t kAlign = 256;          // copies start 256-aligned, as tensors in the backend's arena

// --- random valid weights, generated on the device ----------------------------

__device__ __forceinline__ uint64_t mix(uint64_t x) {  // splitmix64
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

__device__ __forceinline__ float uniform_pm1(uint64_t h) {  // [-1, 1)
    return float(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

// A half in +-[2^-10, 1): sign, exponent 5..14, any mantissa (as random_tensors.h).
__device__ __forceinline__ uint16_t random_half(uint64_t h) {
    const uint32_t bits = uint32_t(h);
    return uint16_t((bits & 0x8000u) | ((5 + (bits >> 16) % 10) << 10) | ((bits >> 4) & 0x3ffu));
}

__global__ void fill_bytes(uint32_t* p, int64_t words, uint64_t seed) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += int64_t(gridDim.x) * blockDim.x)
        p[i] = uint32_t(mix(seed ^ uint64_t(i)));
}

// Element i of copy c: F32 uniform, BF16 the top half of a uniform float, F16 a random half.
__global__ void fill_plain(uint8_t* base, int64_t stride, int copies, int64_t elems, int type, uint64_t seed) {
    const int64_t total = elems * copies;
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
        const int64_t c = k / elems, i = k % elems;
        const uint64_t h = mix(seed ^ uint64_t(k));
        uint8_t* w = base + c * stride;
        if (type == int(TensorType::F32)) {
            reinterpret_cast<float*>(w)[i] = uniform_pm1(h);
        } else if (type == int(TensorType::BF16)) {
            reinterpret_cast<uint16_t*>(w)[i] = uint16_t(__float_as_uint(uniform_pm1(h)) >> 16);
        } else {
            reinterpret_cast<uint16_t*>(w)[i] = random_half(h);
        }
    }
}

// Overwrites the fp16 scale fields (byte offsets off0, off1; -1: none) of every block with finite values.
__global__ void fix_scales(uint8_t* base, int64_t stride, int copies, int64_t blocks, int block_bytes, int off0,
                           int off1, uint64_t seed) {
    const int64_t total = blocks * copies;
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
        uint8_t* b = base + (k / blocks) * stride + (k % blocks) * block_bytes;
        const uint64_t h = mix(seed ^ (uint64_t(k) << 1));
        const uint16_t h0 = random_half(h), h1 = random_half(h >> 32);
        if (off0 >= 0) { b[off0] = uint8_t(h0); b[off0 + 1] = uint8_t(h0 >> 8); }
        if (off1 >= 0) { b[off1] = uint8_t(h1); b[off1 + 1] = uint8_t(h1 >> 8); }
    }
}

__global__ void fill_input(float* x, int64_t n, uint64_t seed) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const uint64_t h = mix(seed ^ uint64_t(i));
        const float m = 0.05f + 0.95f * float((h >> 40) & 0xffffff) / 16777216.0f;
        x[i] = (h & 1) ? m : -m;
    }
}

// Reads every 16-byte word of [p, p + 16 words) once, four loads in flight per
// thread, and keeps their XOR where the compiler cannot drop it: what any
// kernel that reads these bytes once costs, its start and its tail included.
__global__ void read_once(const uint4* p, int64_t words, uint32_t* sink) {
    orcd::cuda::pdl_enter();
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    uint32_t acc = 0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += 4 * stride) {
        uint4 v[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) v[k] = i + k * stride < words ? __ldcs(p + i + k * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int k = 0; k < 4; ++k) acc ^= v[k].x ^ v[k].y ^ v[k].z ^ v[k].w;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

// --- helpers --------------------------------------------------------------------

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t end = s.find(sep, start);
        const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (!item.empty()) out.push_back(item);
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return out;
}

[[noreturn]] void usage(const char* msg) {
    if (msg) std::fprintf(stderr, "bench_cuda_matvec: %s\n", msg);
    std::fprintf(msg ? stderr : stdout,
                 "usage: bench_cuda_matvec [--types Q4_K,Q8_0,...] [--shapes ROWSxCOLS,...] [--reps N]\n"
                 "  types: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS (default all)\n"
                 "  shapes: default 896x896,4864x896,9728x896,896x4864,151936x896,4096x4096,14336x4096,\n"
                 "          4096x14336,128256x4096\n"
                 "  reps: timed samples per product, median reported (default 10)\n");
    std::exit(msg ? 2 : 0);
}

// Device-to-device copy bandwidth (read + write bytes), median of 10 copies of 1 GiB.
double copy_bandwidth(cudaStream_t stream) {
    const size_t bytes = size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    ORCD_CUDA_CHECK(cudaMalloc(&a, bytes));
    ORCD_CUDA_CHECK(cudaMalloc(&b, bytes));
    ORCD_CUDA_CHECK(cudaMemsetAsync(a, 1, bytes, stream));
    cudaEvent_t e0, e1;
    ORCD_CUDA_CHECK(cudaEventCreate(&e0));
    ORCD_CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i) ORCD_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
    std::vector<double> gbs;
    for (int i = 0; i < 10; ++i) {
        ORCD_CUDA_CHECK(cudaEventRecord(e0, stream));
        ORCD_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
        ORCD_CUDA_CHECK(cudaEventRecord(e1, stream));
        ORCD_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        ORCD_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        gbs.push_back(2.0 * double(bytes) / (double(ms) * 1e-3) / 1e9);
    }
    ORCD_CUDA_CHECK(cudaEventDestroy(e0));
    ORCD_CUDA_CHECK(cudaEventDestroy(e1));
    ORCD_CUDA_CHECK(cudaFree(a));
    ORCD_CUDA_CHECK(cudaFree(b));
    return median(gbs);
}

// Copies of one weight to rotate over: together at least `cold` bytes, and a
// number that divides kGraphProducts or is a multiple of it, so that the graphs
// (kGraphProducts consecutive copies each) replay in a cycle in which every copy
// is read once before it is read again.
int copies_for(int64_t bytes, int64_t cold) {
    const int64_t need = std::max<int64_t>(1, (cold + bytes - 1) / bytes);
    if (need > kGraphProducts) return int((need + kGraphProducts - 1) / kGraphProducts * kGraphProducts);
    for (int d : {1, 2, 4, 5, 10, 20})
        if (d >= need) return d;
    return kGraphProducts;
}

struct Result {
    double us_stream = 0, us_graph = 0, us_read = 0;
    bool finite = true;
};

class Bench {
public:
    Bench(cudaStream_t stream, int64_t cold_bytes, int reps) : stream_(stream), cold_(cold_bytes), reps_(reps) {
        ORCD_CUDA_CHECK(cudaEventCreate(&e0_));
        ORCD_CUDA_CHECK(cudaEventCreate(&e1_));
    }
    ~Bench() {
        cudaEventDestroy(e0_);
        cudaEventDestroy(e1_);
    }

    Result run(TensorType type, const Shape& s) {
        const auto& tr = orcd::gguf::traits(type);
        const int64_t row_bytes = int64_t(orcd::gguf::row_bytes(type, uint64_t(s.cols)));
        const int64_t bytes = row_bytes * s.rows;
        const int64_t stride = (bytes + kAlign - 1) / kAlign * kAlign;
        const int copies = copies_for(bytes, cold_);
        uint8_t* base = nullptr;
        // kAlign bytes of slack after the last copy: the staged kernel may read up to 7 bytes past a row.
        ORCD_CUDA_CHECK(cudaMalloc(&base, size_t(stride) * copies + kAlign));
        float *x = nullptr, *out = nullptr;
        ORCD_CUDA_CHECK(cudaMalloc(&x, size_t(s.cols) * sizeof(float)));
        ORCD_CUDA_CHECK(cudaMalloc(&out, size_t(s.rows) * sizeof(float)));
        const uint64_t seed = uint64_t(type) * 0x100000001b3ull ^ uint64_t(s.rows * 131 + s.cols);
        const unsigned grid = 132 * 8, block = 256;
        if (tr.block_size == 1) {
            fill_plain<<<grid, block, 0, stream_>>>(base, stride, copies, s.rows * s.cols, int(type), seed);
        } else {
            fill_bytes<<<grid, block, 0, stream_>>>(reinterpret_cast<uint32_t*>(base),
                                                    (stride * copies + kAlign) / 4, seed);
            const auto& off = orcd::testing::scale_offsets(type);
            fix_scales<<<grid, block, 0, stream_>>>(base, stride, copies, bytes / tr.block_bytes, int(tr.block_bytes),
                                                   off.size() > 0 ? off[0] : -1, off.size() > 1 ? off[1] : -1,
                                                   seed + 1);
        }
        ORCD_CUDA_CHECK_LAUNCH();
        fill_input<<<64, 256, 0, stream_>>>(x, s.cols, seed + 2);
        ORCD_CUDA_CHECK_LAUNCH();
        ORCD_CUDA_CHECK(cudaStreamSynchronize(stream_));

        std::vector<Weight> w(static_cast<size_t>(copies));
        for (int c = 0; c < copies; ++c) w[size_t(c)] = Weight{type, s.cols, s.rows, base + int64_t(c) * stride};
        int next = 0;
        auto product = [&] {
            orcd::cuda::launch_matvec(w[size_t(next)], x, 1, out, int(s.rows), nullptr, false, stream_);
            next = (next + 1) % copies;
        };

        Result r;
        // Warm-up (the first launch loads the kernel), then one timed graph's worth that sizes the samples.
        time_us([&] {
            for (int i = 0; i < kGraphProducts; ++i) product();
        });
        const double warm_us = time_us([&] {
            for (int i = 0; i < kGraphProducts; ++i) product();
        }) / kGraphProducts;
        int batch = int(std::ceil(kSampleUs / std::max(warm_us, 0.5) / kGraphProducts)) * kGraphProducts;
        batch = std::clamp(batch, kGraphProducts, 5000 / kGraphProducts * kGraphProducts);
        std::vector<double> samples;
        for (int rep = 0; rep < reps_; ++rep)
            samples.push_back(time_us([&] {
                for (int i = 0; i < batch; ++i) product();
            }) / batch);
        r.us_stream = median(samples);

        // The same bytes read by read_once, over the same copies.
        int sm_count = 0, device = 0;
        ORCD_CUDA_CHECK(cudaGetDevice(&device));
        ORCD_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
        uint32_t* sink = reinterpret_cast<uint32_t*>(out);
        auto read = [&] {
            orcd::cuda::launch_pdl(read_once, unsigned(4 * sm_count), 512, 0, stream_,
                                   static_cast<const uint4*>(w[size_t(next)].data), bytes / 16, sink);
            next = (next + 1) % copies;
        };
        time_us([&] {
            for (int i = 0; i < kGraphProducts; ++i) read();
        });
        samples.clear();
        for (int rep = 0; rep < reps_; ++rep)
            samples.push_back(time_us([&] {
                for (int i = 0; i < batch; ++i) read();
            }) / batch);
        r.us_read = median(samples);

        // The same products as graphs of kGraphProducts each, over consecutive copies.
        const int n_graphs = copies % kGraphProducts == 0 ? copies / kGraphProducts : 1;
        std::vector<cudaGraphExec_t> graphs;
        next = 0;
        for (int g = 0; g < n_graphs; ++g) {
            cudaGraph_t graph;
            ORCD_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
            for (int i = 0; i < kGraphProducts; ++i) product();
            ORCD_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
            cudaGraphExec_t exec;
            ORCD_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
            ORCD_CUDA_CHECK(cudaGraphDestroy(graph));
            graphs.push_back(exec);
        }
        int next_graph = 0;
        auto replay = [&](int launches) {
            for (int i = 0; i < launches; ++i) {
                ORCD_CUDA_CHECK(cudaGraphLaunch(graphs[size_t(next_graph)], stream_));
                next_graph = (next_graph + 1) % n_graphs;
            }
        };
        time_us([&] { replay(n_graphs); });  // warm-up: every graph once (first launches upload them)
        samples.clear();
        for (int rep = 0; rep < reps_; ++rep)
            samples.push_back(time_us([&] { replay(batch / kGraphProducts); }) / batch);
        r.us_graph = median(samples);
        for (cudaGraphExec_t g : graphs) ORCD_CUDA_CHECK(cudaGraphExecDestroy(g));

        std::vector<float> host(size_t(s.rows));
        ORCD_CUDA_CHECK(cudaMemcpy(host.data(), out, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
        r.finite = std::all_of(host.begin(), host.end(), [](float v) { return std::isfinite(v); });
        ORCD_CUDA_CHECK(cudaFree(base));
        ORCD_CUDA_CHECK(cudaFree(x));
        ORCD_CUDA_CHECK(cudaFree(out));
        return r;
    }

private:
    template <typename F>
    double time_us(F&& enqueue) {
        ORCD_CUDA_CHECK(cudaEventRecord(e0_, stream_));
        enqueue();
        ORCD_CUDA_CHECK(cudaEventRecord(e1_, stream_));
        ORCD_CUDA_CHECK(cudaEventSynchronize(e1_));
        float ms = 0;
        ORCD_CUDA_CHECK(cudaEventElapsedTime(&ms, e0_, e1_));
        return double(ms) * 1e3;
    }

    cudaStream_t stream_;
    int64_t cold_;
    int reps_;
    cudaEvent_t e0_{}, e1_{};
};

}  // namespace

int main(int argc, char** argv) {
    std::vector<TensorType> types(std::begin(kTypes), std::end(kTypes));
    std::vector<Shape> shapes(std::begin(kShapes), std::end(kShapes));
    int reps = 10;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") usage(nullptr);
        if (i + 1 >= argc) usage(("missing value after " + arg).c_str());
        const std::string value = argv[++i];
        if (arg == "--types") {
            types.clear();
            for (const std::string& name : split(value, ',')) {
                const auto it = std::find_if(std::begin(kTypes), std::end(kTypes), [&](TensorType t) {
                    return name == orcd::gguf::traits(t).name;
                });
                if (it == std::end(kTypes)) usage(("unknown or unsupported type " + name).c_str());
                types.push_back(*it);
            }
        } else if (arg == "--shapes") {
            shapes.clear();
            for (const std::string& item : split(value, ',')) {
                long long rows = 0, cols = 0;
                char tail = 0;
                if (std::sscanf(item.c_str(), "%lldx%lld%c", &rows, &cols, &tail) != 2 || rows <= 0 || cols <= 0)
                    usage(("bad shape " + item + " (expected ROWSxCOLS)").c_str());
                shapes.push_back({rows, cols});
            }
        } else if (arg == "--reps") {
            reps = std::atoi(value.c_str());
            if (reps < 1) usage("--reps must be at least 1");
        } else {
            usage(("unknown option " + arg).c_str());
        }
    }
    if (types.empty() || shapes.empty()) usage("nothing to measure");

    try {
        int device = 0;
        cudaDeviceProp prop{};
        ORCD_CUDA_CHECK(cudaGetDevice(&device));
        ORCD_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        cudaStream_t stream;
        ORCD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        const double copy_gbs = copy_bandwidth(stream);
        const int64_t cold = std::max<int64_t>(256ll << 20, 4ll * prop.l2CacheSize);
        std::printf("device: %s, %d SMs, L2 %d MB; device-to-device copy %.0f GB/s (read + write, median of 10)\n",
                    prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, copy_gbs);
        std::printf("matvec n=1 (launch_matvec), weights rotated over >= %lld MB of copies; median of %d samples; "
                    "stream: back-to-back launches, graph: CUDA graphs of %d products\n\n",
                    (long long)(cold >> 20), reps, kGraphProducts);
        std::printf("read: the same bytes read once by a kernel that does nothing else (read_once)\n\n");
        std::printf("| type   | rows x cols   |  weight MB | us stream |  GB/s | %% copy |  us graph |  GB/s | %% copy "
                    "| us read | %% copy |\n");
        std::printf("|--------|---------------|-----------:|----------:|------:|-------:|----------:|------:|-------:"
                    "|--------:|-------:|\n");
        std::fflush(stdout);

        Bench bench(stream, cold, reps);
        std::vector<std::string> skipped;
        bool all_finite = true;
        for (TensorType type : types)
            for (const Shape& s : shapes) {
                const auto& tr = orcd::gguf::traits(type);
                char shape[48];
                std::snprintf(shape, sizeof shape, "%lldx%lld", (long long)s.rows, (long long)s.cols);
                if (s.cols % tr.block_size != 0 || s.cols % 8 != 0) {
                    skipped.push_back(std::string(tr.name) + " " + shape);
                    continue;
                }
                const Result r = bench.run(type, s);
                const double bytes = double(orcd::gguf::row_bytes(type, uint64_t(s.cols))) * double(s.rows);
                const double gbs = bytes / (r.us_stream * 1e3), gbs_graph = bytes / (r.us_graph * 1e3);
                const double gbs_read = bytes / (r.us_read * 1e3);
                std::printf("| %-6s | %-13s | %10.2f | %9.2f | %5.0f | %5.1f%% | %9.2f | %5.0f | %5.1f%% | %7.2f | %5.1f%% |%s\n",
                            tr.name, shape, bytes / 1e6, r.us_stream, gbs, 100.0 * gbs / copy_gbs, r.us_graph,
                            gbs_graph, 100.0 * gbs_graph / copy_gbs, r.us_read, 100.0 * gbs_read / copy_gbs,
                            r.finite ? "" : " non-finite output!");
                std::fflush(stdout);
                all_finite = all_finite && r.finite;
            }
        if (!skipped.empty()) {
            std::printf("\nskipped (row not a whole number of blocks):");
            for (const auto& s : skipped) std::printf(" %s;", s.c_str());
            std::printf("\n");
        }
        ORCD_CUDA_CHECK(cudaStreamDestroy(stream));
        return all_finite ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cuda_matvec: %s\n", e.what());
        return 1;
    }
}
