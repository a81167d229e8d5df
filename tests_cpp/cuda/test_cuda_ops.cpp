// Every CUDA backend op against the CPU backend (the oracle), on random
// non-zero inputs over a table of shapes: one driver, one row per case.
// Skips with a reason when no CUDA GPU is usable.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gguf_builder.h"
#include "kernels/kernels.h"
#include "model/backend.h"
#include "orcd/build.h"

namespace orcd {
namespace {

using gguf::TensorType;

#define SKIP_WITHOUT_GPU()                                                             \
    if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA GPU is usable on this machine: CUDA op tests skipped"

uint16_t half_bits(float f) {
    // Round-to-nearest float -> half for the normal range the tests use.
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const int exp = int((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (exp <= 0) return uint16_t(sign);
    uint32_t h = sign | (uint32_t(exp) << 10) | (mant >> 13);
    if (mant & 0x1000u) ++h;
    return uint16_t(h);
}

// Byte offsets of the fp16 scale fields of each block type, and whether each is a min (kept positive).
struct ScaleFields {
    std::vector<int> offsets;
};
ScaleFields scale_fields(TensorType t) {
    switch (t) {
        case TensorType::Q4_0: case TensorType::Q5_0: case TensorType::Q8_0: case TensorType::IQ4_NL:
        case TensorType::IQ4_XS: return {{0}};
        case TensorType::Q4_1: case TensorType::Q5_1: case TensorType::Q4_K: case TensorType::Q5_K: return {{0, 2}};
        case TensorType::Q2_K: return {{80, 82}};
        case TensorType::Q3_K: return {{108}};
        case TensorType::Q6_K: return {{208}};
        default: return {{}};
    }
}

// Random valid data for a tensor of `elements` of type t.
std::vector<uint8_t> random_tensor(TensorType t, uint64_t elements, std::mt19937& rng) {
    const auto& tr = gguf::traits(t);
    std::vector<uint8_t> bytes(elements / tr.block_size * tr.block_bytes);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    if (t == TensorType::F32) {
        for (size_t i = 0; i < bytes.size(); i += 4) { float v = u(rng); std::memcpy(&bytes[i], &v, 4); }
        return bytes;
    }
    if (t == TensorType::F16 || t == TensorType::BF16) {
        for (size_t i = 0; i < bytes.size(); i += 2) {
            float v = u(rng);
            uint16_t h;
            if (t == TensorType::F16) {
                h = half_bits(v);
            } else {
                uint32_t x; std::memcpy(&x, &v, 4); h = uint16_t(x >> 16);
            }
            std::memcpy(&bytes[i], &h, 2);
        }
        return bytes;
    }
    for (auto& b : bytes) b = uint8_t(rng());
    const auto fields = scale_fields(t);
    std::uniform_real_distribution<float> scale(0.002f, 0.02f);
    for (size_t blk = 0; blk < bytes.size(); blk += tr.block_bytes)
        for (int off : fields.offsets) {
            const uint16_t h = half_bits(scale(rng) * ((rng() & 1) ? 1.0f : -1.0f));
            std::memcpy(&bytes[blk + off], &h, 2);
        }
    return bytes;
}

struct TensorSpec {
    std::string name;
    TensorType type;
    uint64_t cols, rows;
};

// An in-memory GGUF file of random tensors, with both backends' copies of them.
struct WeightSet {
    std::vector<uint8_t> bytes;
    std::shared_ptr<gguf::File> file;
    std::vector<Weight> cpu, gpu;
};

void build_weights(WeightSet& ws, const std::vector<TensorSpec>& specs, Backend& cpu, Backend& gpu, std::mt19937& rng) {
    testing::GGUFBuilder b;
    b.header(3, specs.size(), 1).kv_str("general.architecture", "llama");
    std::vector<std::vector<uint8_t>> data;
    uint64_t offset = 0;
    for (const auto& s : specs) {
        data.push_back(random_tensor(s.type, s.cols * s.rows, rng));
        if (s.rows > 1) b.tensor(s.name, {s.cols, s.rows}, uint32_t(s.type), offset);
        else b.tensor(s.name, {s.cols}, uint32_t(s.type), offset);
        offset += (data.back().size() + 31) / 32 * 32;
    }
    while (b.bytes.size() % 32) b.bytes.push_back(0);
    for (auto& d : data) {
        b.bytes.insert(b.bytes.end(), d.begin(), d.end());
        while (b.bytes.size() % 32) b.bytes.push_back(0);
    }
    ws.bytes = std::move(b.bytes);
    ws.file = gguf::File::from_memory(ws.bytes.data(), ws.bytes.size());
    std::vector<const gguf::TensorInfo*> infos;
    for (const auto& s : specs) infos.push_back(ws.file->find_tensor(s.name));
    ws.cpu = cpu.load_weights(*ws.file, infos);
    ws.gpu = gpu.load_weights(*ws.file, infos);
}

// A device copy of host data, freed at scope end.
template <typename T>
struct DeviceVec {
    T* ptr = nullptr;
    size_t n = 0;
    explicit DeviceVec(const std::vector<T>& host) : n(host.size()) {
        EXPECT_EQ(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
        // A copy from pageable memory may still be in flight when cudaMemcpy
        // returns, and the backend's streams do not wait for the legacy stream.
        EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    }
    ~DeviceVec() { cudaFree(ptr); }
    std::vector<T> host() const {
        std::vector<T> out(n);
        EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(out.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return out;
    }
};

std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) {
        x = u(rng);
        if (x == 0.0f) x = 0.5f;
    }
    return v;
}

// ||a - b|| / ||b||, NaN and size mismatches fail.
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return INFINITY;
        num += double(a[i] - b[i]) * (a[i] - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

class CudaOps : public ::testing::Test {
protected:
    void SetUp() override {
        SKIP_WITHOUT_GPU();
        cpu = make_backend(ModelOptions{});
        ModelOptions o;
        o.device = Device::cuda(0);
        gpu = make_cuda_backend(o);
    }
    // Attention through sessions of one layer shape and rotation: each step of n
    // tokens (random q, k, v at the next n positions) goes to both backends, by
    // attention() or, fused, by rope_attention(), and the outputs must agree
    // (K/V and P are fp16 in the CUDA path). Fused steps of several tokens must
    // leave qkv as the CPU leaves it (the rotation works on copies).
    void compare_attention_steps(int n_layers, int layer, const RopeParams& rp, const std::vector<int>& steps,
                                 bool fused) {
        ModelConfig cfg;
        cfg.n_layers = n_layers; cfg.n_heads = rp.n_heads; cfg.n_kv_heads = rp.n_kv_heads; cfg.head_dim = rp.head_dim;
        cfg.n_embd = rp.n_heads * rp.head_dim; cfg.n_ff = 64; cfg.n_vocab = 32;
        const SessionShape shape{4096, 2048, 1};
        auto cs = cpu->create_session(cfg, shape);
        auto gs = gpu->create_session(cfg, shape);
        cs->rope = rp; gs->rope = rp; cs->shape = shape; gs->shape = shape;
        const int q_dim = rp.n_heads * rp.head_dim, ld = q_dim + 2 * rp.n_kv_heads * rp.head_dim;
        int pos = 0;
        for (int n : steps) {
            auto qkv = random_floats(size_t(n) * ld, rng, -2, 2);
            std::vector<int32_t> positions(n);
            for (int i = 0; i < n; ++i) positions[i] = pos + i;
            std::vector<float> ref(size_t(n) * q_dim), cqkv = qkv;
            DeviceVec<float> dq(qkv), out(std::vector<float>(ref.size(), NAN));
            DeviceVec<int32_t> dpos(positions);
            if (fused) {
                cpu->rope_attention(*cs, layer, cqkv.data(), ld, n, positions.data(), ref.data());
                gpu->rope_attention(*gs, layer, dq.ptr, ld, n, dpos.ptr, out.ptr);
            } else {
                cpu->attention(*cs, layer, cqkv.data(), ld, n, positions.data(), ref.data());
                gpu->attention(*gs, layer, dq.ptr, ld, n, dpos.ptr, out.ptr);
            }
            EXPECT_LT(rel_error(out.host(), ref), 3e-3) << "step of " << n << " at " << pos;
            if (fused && n > 1)
                EXPECT_LT(rel_error(dq.host(), cqkv), 1e-6) << "rotated q and k, step of " << n << " at " << pos;
            pos += n;
        }
    }
    std::unique_ptr<Backend> cpu, gpu;
    std::mt19937 rng{1234};
};

const TensorType kAllTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0,
                                TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
                                TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                                TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS};

TEST_F(CudaOps, EmbedEveryType) {
    for (TensorType t : kAllTypes) {
        SCOPED_TRACE(gguf::traits(t).name);
        WeightSet ws;
        build_weights(ws, {{"table", t, 512, 37}}, *cpu, *gpu, rng);
        std::vector<int32_t> ids = {0, 36, 5, 5, 17, 1, 30};
        const int n = int(ids.size());
        std::vector<float> ref(size_t(n) * 512);
        cpu->embed(ws.cpu[0], ids.data(), n, ref.data());
        DeviceVec<int32_t> dids(ids);
        DeviceVec<float> out(std::vector<float>(ref.size(), NAN));
        gpu->embed(ws.gpu[0], dids.ptr, n, out.ptr);
        EXPECT_LT(rel_error(out.host(), ref), 1e-6);
    }
}

TEST_F(CudaOps, RmsNorm) {
    for (int dim : {64, 896, 1000, 4864}) {
        for (int n : {1, 7, 33}) {
            WeightSet ws;
            build_weights(ws, {{"w", TensorType::F32, uint64_t(dim), 1}}, *cpu, *gpu, rng);
            auto x = random_floats(size_t(n) * dim, rng, -3, 3);
            std::vector<float> ref(x.size());
            cpu->rms_norm(x.data(), ws.cpu[0], 1e-6f, n, dim, ref.data());
            DeviceVec<float> dx(x), out(std::vector<float>(x.size(), NAN));
            gpu->rms_norm(dx.ptr, ws.gpu[0], 1e-6f, n, dim, out.ptr);
            EXPECT_LT(rel_error(out.host(), ref), 1e-5) << "dim " << dim << " n " << n;
        }
    }
}

// Matmul: every type x tokens (matvec path <= 8, tensor-core GEMM above) x shapes,
// with bias, accumulation and a row stride wider than the output. The GEMM shapes
// cover 64- and 128-token tiles, partial tiles in every dimension, a K that is
// not a multiple of the 64-wide step, K split over blocks (few tiles: most
// shapes here) and not split (rows 1100 x 2048 tokens: 144 tiles).
TEST_F(CudaOps, MatmulEveryTypeAndShape) {
    struct Case { uint64_t cols, rows; std::vector<int> ns; };
    for (TensorType t : kAllTypes) {
        const uint64_t bs = gguf::traits(t).block_size;
        const uint64_t odd_cols = bs == 1 ? 200u : bs == 32 ? 160u : 768u;
        const Case cases[] = {
            {bs == 256 ? 256u : 64u, 7, {1, 3, 8, 9, 64, 77}},
            {bs == 256 ? 512u : 96u, 129, {1, 8, 9, 65, 130}},
            {bs == 256 ? 1024u : 896u, 300, {1, 3, 8, 9, 64, 77, 300}},
            {odd_cols, 45, {9, 33, 200}},
            {bs == 256 ? 1024u : 896u, 1100, {2048}},
            {4864, 96, {1, 3}},  // few wide rows: one block per row (the down product's shape)
            {4096, 1500, {1}},   // a wide input staged beside the rows (over 48 KB of shared memory; below 5 MB)
        };
        for (const Case& c : cases) {
            WeightSet ws;
            build_weights(ws, {{"w", t, c.cols, c.rows}, {"b", TensorType::F32, c.rows, 1}}, *cpu, *gpu, rng);
            for (int n : c.ns) {
                for (int variant = 0; variant < 2; ++variant) {
                    const bool bias_acc = variant == 1;
                    SCOPED_TRACE(std::string(gguf::traits(t).name) + " cols " + std::to_string(c.cols) + " rows " +
                                 std::to_string(c.rows) + " n " + std::to_string(n) + (bias_acc ? " bias+acc" : ""));
                    const int ldo = int(c.rows) + (bias_acc ? 5 : 0);
                    auto x = random_floats(size_t(n) * c.cols, rng);
                    auto init = random_floats(size_t(n) * ldo, rng);
                    std::vector<float> ref = init;
                    cpu->matmul(ws.cpu[0], x.data(), n, ref.data(), ldo, bias_acc ? &ws.cpu[1] : nullptr, bias_acc);
                    DeviceVec<float> dx(x), out(init);
                    gpu->matmul(ws.gpu[0], dx.ptr, n, out.ptr, ldo, bias_acc ? &ws.gpu[1] : nullptr, bias_acc);
                    // fp32 dot products (matvec: every quantised case here is below the
                    // streaming threshold, so none rounds its input) or fp16 operands with
                    // fp32 accumulation (GEMM).
                    EXPECT_LT(rel_error(out.host(), ref), n <= 8 ? 2e-5 : 2e-3);
                }
            }
        }
    }
}

// The prefill products of the default model's shape (q/o 896 x 896, k/v 128 x 896,
// gate+up 9728 x 896, down 896 x 4864, n = 512: split K for all but gate+up) with
// its tensor types, against the CPU; and each twice, bit for bit: the split-K
// reduction has a fixed order.
TEST_F(CudaOps, MatmulPrefillShapesDeterministic) {
    struct Case { TensorType type; uint64_t cols, rows; int n; };
    const Case cases[] = {
        {TensorType::Q5_0, 896, 896, 512},   {TensorType::Q8_0, 896, 128, 512},  {TensorType::Q5_0, 896, 9728, 512},
        {TensorType::Q6_K, 4864, 896, 512},  {TensorType::Q4_K, 4864, 896, 512}, {TensorType::Q4_K, 4864, 896, 2048},
        {TensorType::F16, 4864, 896, 100},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(std::string(gguf::traits(c.type).name) + " cols " + std::to_string(c.cols) + " rows " +
                     std::to_string(c.rows) + " n " + std::to_string(c.n));
        WeightSet ws;
        build_weights(ws, {{"w", c.type, c.cols, c.rows}}, *cpu, *gpu, rng);
        auto x = random_floats(size_t(c.n) * c.cols, rng, -2, 2);
        auto init = random_floats(size_t(c.n) * c.rows, rng);
        std::vector<float> ref = init;
        cpu->matmul(ws.cpu[0], x.data(), c.n, ref.data(), int(c.rows), nullptr, true);
        DeviceVec<float> dx(x), out1(init), out2(init);
        gpu->matmul(ws.gpu[0], dx.ptr, c.n, out1.ptr, int(c.rows), nullptr, true);
        gpu->matmul(ws.gpu[0], dx.ptr, c.n, out2.ptr, int(c.rows), nullptr, true);
        const auto a = out1.host(), b = out2.host();
        EXPECT_LT(rel_error(a, ref), 2e-3);
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "two runs differ";
    }
}

TEST_F(CudaOps, RopeBothStylesWithFactors) {
    for (RopeStyle style : {RopeStyle::Normal, RopeStyle::NeoX}) {
        for (bool factors : {false, true}) {
            RopeParams p;
            p.style = style;
            p.n_heads = 14; p.n_kv_heads = 2; p.head_dim = 64; p.rope_dim = factors ? 32 : 64;
            p.freq_base = 1000000.0f; p.freq_scale = factors ? 0.5f : 1.0f; p.attn_factor = factors ? 1.1f : 1.0f;
            const int n = 13, ld = (p.n_heads + 2 * p.n_kv_heads) * p.head_dim + 3;
            auto qkv = random_floats(size_t(n) * ld, rng);
            std::vector<int32_t> pos(n);
            for (int i = 0; i < n; ++i) pos[i] = 4000 + 7 * i;
            auto ff = random_floats(size_t(p.rope_dim / 2), rng, 1.0f, 4.0f);
            DeviceVec<float> dff(ff), dq(qkv);
            DeviceVec<int32_t> dpos(pos);
            std::vector<float> ref = qkv;
            p.freq_factors = factors ? ff.data() : nullptr;
            cpu->rope(ref.data(), n, ld, pos.data(), p);
            p.freq_factors = factors ? dff.ptr : nullptr;
            gpu->rope(dq.ptr, n, ld, dpos.ptr, p);
            EXPECT_LT(rel_error(dq.host(), ref), 1e-6) << "neox " << (style == RopeStyle::NeoX) << " factors " << factors;
        }
    }
}

TEST_F(CudaOps, Swiglu) {
    for (int n : {1, 5, 64, 2048}) {
      for (int n_ff : {4864, 200, 38}) {  // float4 rows, and rows that are not
        auto gu = random_floats(size_t(n) * 2 * n_ff, rng, -6, 6);
        std::vector<float> ref(size_t(n) * n_ff);
        cpu->swiglu(gu.data(), n, n_ff, ref.data());
        DeviceVec<float> dgu(gu), out(std::vector<float>(ref.size(), NAN));
        gpu->swiglu(dgu.ptr, n, n_ff, out.ptr);
        EXPECT_LT(rel_error(out.host(), ref), 1e-6) << "n " << n << " n_ff " << n_ff;
      }
    }
}

// Many blocks share one result word, so: sizes that are no multiple of a block's
// slice or of 4, an unaligned start, ties (the lowest index wins), all-negative
// values, and calls in a row (each must leave the shared state as it found it).
TEST_F(CudaOps, Argmax) {
    for (int n : {1, 3, 1000, 16385, 151936, 152064}) {
        for (int offset : {0, 1}) {
            auto x = random_floats(size_t(n + offset), rng, -10, 10);
            x[size_t(offset) + size_t(n) * 3 / 4] = 50.0f;
            DeviceVec<float> dx(x);
            const float* xs = x.data() + offset;
            EXPECT_EQ(gpu->argmax(dx.ptr + offset, n), cpu->argmax(xs, n)) << "n " << n << " offset " << offset;
            if (n < 1000) continue;
            x[size_t(offset) + size_t(n) / 5] = 50.0f;  // a tie, earlier
            x[size_t(offset) + size_t(n) - 1] = 50.0f;  // and one later
            DeviceVec<float> tie(x);
            EXPECT_EQ(gpu->argmax(tie.ptr + offset, n), int32_t(n / 5)) << "n " << n << " offset " << offset;
            for (float& v : x) v = -std::abs(v) - 1.0f;
            x[size_t(offset) + 7] = -0.5f;
            DeviceVec<float> negative(x);
            EXPECT_EQ(gpu->argmax(negative.ptr + offset, n), 7) << "n " << n << " offset " << offset;
        }
    }
}

// The fused sequences against the CPU's op-by-op defaults: one token (the norm
// folded into the products, all parts in one launch, SwiGLU in the epilogue of
// gate and up), three (op by op) and forty (tensor cores, fed by the norm in
// fp16); every type, parts of two types with biases in one launch, gate and up
// as two tensors and as one fused tensor, and enough rows for several rows per warp.
TEST_F(CudaOps, NormedMatmulsAndNormedSwiglu) {
    for (TensorType t : kAllTypes) {
        const uint64_t dim = gguf::traits(t).block_size == 256 ? 1024u : 896u;
        const int n_ff = 2100;
        SCOPED_TRACE(gguf::traits(t).name);
        WeightSet ws;
        build_weights(ws, {{"norm", TensorType::F32, dim, 1}, {"wa", t, dim, 40}, {"wb", t, dim, 24},
                           {"ba", TensorType::F32, 40, 1}, {"wc", TensorType::Q8_0, dim, 4}, {"bc", TensorType::F32, 4, 1},
                           {"gate", t, dim, n_ff}, {"up", t, dim, n_ff}, {"gate_up", t, dim, 2 * n_ff}},
                      *cpu, *gpu, rng);
        for (int n : {1, 3, 40}) {
            const int ldo = 70;
            auto x = random_floats(size_t(n) * dim, rng, -3, 3);
            auto init = random_floats(size_t(n) * ldo, rng);
            std::vector<float> h(size_t(n) * dim), ref = init;
            const std::vector<Projection> cparts = {{ws.cpu[1], ws.cpu[3], 0}, {ws.cpu[2], {}, 42}, {ws.cpu[4], ws.cpu[5], 66}};
            const std::vector<Projection> gparts = {{ws.gpu[1], ws.gpu[3], 0}, {ws.gpu[2], {}, 42}, {ws.gpu[4], ws.gpu[5], 66}};
            cpu->normed_matmuls(x.data(), ws.cpu[0], 1e-6f, n, int(dim), h.data(), cparts, ref.data(), ldo);
            DeviceVec<float> dx(x), dh(h), out(init);
            gpu->normed_matmuls(dx.ptr, ws.gpu[0], 1e-6f, n, int(dim), dh.ptr, gparts, out.ptr, ldo);
            EXPECT_LT(rel_error(out.host(), ref), n <= 8 ? 2e-5 : 2e-3) << "normed, n " << n;

            for (bool fused : {false, true}) {
                const std::vector<Projection> cgu = fused ? std::vector<Projection>{{ws.cpu[8], {}, 0}}
                                                          : std::vector<Projection>{{ws.cpu[6], {}, 0}, {ws.cpu[7], {}, n_ff}};
                const std::vector<Projection> ggu = fused ? std::vector<Projection>{{ws.gpu[8], {}, 0}}
                                                          : std::vector<Projection>{{ws.gpu[6], {}, 0}, {ws.gpu[7], {}, n_ff}};
                std::vector<float> gu(size_t(n) * 2 * n_ff), ref2(size_t(n) * n_ff);
                cpu->normed_swiglu(x.data(), ws.cpu[0], 1e-6f, n, int(dim), h.data(), cgu, gu.data(), n_ff, ref2.data());
                DeviceVec<float> dgu(gu), ffn(std::vector<float>(ref2.size(), NAN));
                gpu->normed_swiglu(dx.ptr, ws.gpu[0], 1e-6f, n, int(dim), dh.ptr, ggu, dgu.ptr, n_ff, ffn.ptr);
                EXPECT_LT(rel_error(ffn.host(), ref2), n <= 8 ? 2e-5 : 2e-3) << "swiglu, n " << n << " fused " << fused;
            }
        }
    }
}

// One token through a normed product of many rows: 9,001 rows take several rows
// per warp (more blocks than fit on the GPU at once: Q8_0, Q4_K, Q4_1, Q2_K,
// Q3_K, IQ4_NL), and 33,001 (an output layer; and the 9,001 rows of 5 MB or more
// of the other quantised types) are streamed by resident blocks. Rows no
// multiple of a tile, one, two and four rows per warp (row widths), a bias, and
// the plain types (streamed on an fp32 input; F16 and BF16 x 9,001 are staged).
TEST_F(CudaOps, NormedMatmulOfManyRows) {
    struct Case { TensorType type; uint64_t dim; };
    const Case cases[] = {{TensorType::Q8_0, 896},  {TensorType::Q8_0, 1536}, {TensorType::Q6_K, 4096},
                          {TensorType::Q4_K, 1024}, {TensorType::Q5_0, 896},  {TensorType::Q4_0, 2048},
                          {TensorType::Q4_1, 896},  {TensorType::Q5_1, 1024}, {TensorType::Q5_K, 2048},
                          {TensorType::Q2_K, 1024}, {TensorType::Q3_K, 768},  {TensorType::IQ4_NL, 896},
                          {TensorType::IQ4_XS, 1536}, {TensorType::F16, 512},   {TensorType::BF16, 896},
                          {TensorType::F32, 1024}};
    for (const Case& c : cases) {
        for (int rows : {9001, 33001}) {
            SCOPED_TRACE(std::string(gguf::traits(c.type).name) + " x " + std::to_string(c.dim) + ", rows " +
                         std::to_string(rows));
            WeightSet ws;
            build_weights(ws, {{"norm", TensorType::F32, c.dim, 1}, {"out", c.type, c.dim, uint64_t(rows)},
                               {"b", TensorType::F32, uint64_t(rows), 1}},
                          *cpu, *gpu, rng);
            auto x = random_floats(c.dim, rng, -3, 3);
            std::vector<float> h(c.dim), ref(static_cast<size_t>(rows));
            cpu->normed_matmuls(x.data(), ws.cpu[0], 1e-6f, 1, int(c.dim), h.data(), {{ws.cpu[1], ws.cpu[2], 0}},
                                ref.data(), rows);
            DeviceVec<float> dx(x), dh(h), out(std::vector<float>(static_cast<size_t>(rows), NAN));
            gpu->normed_matmuls(dx.ptr, ws.gpu[0], 1e-6f, 1, int(c.dim), dh.ptr, {{ws.gpu[1], ws.gpu[2], 0}}, out.ptr,
                                rows);
            // The streamed quantised products round the input: to fp16, summing 8
            // products at a time in fp16 (dot_half.cuh: about 5e-4 on these
            // inputs), or to 16-bit integers per chunk of 128 (dot_int.cuh).
            const bool rounded_input = gguf::traits(c.type).block_size > 1 &&
                                       cuda::matvec1_streamed(c.type, rows, int64_t(gguf::row_bytes(c.type, c.dim)));
            EXPECT_LT(rel_error(out.host(), ref), rounded_input ? 2e-3 : 2e-5);
        }
    }
}

// One token through a plain product of at least 16 MB (a 7B model's FFN or
// output): streamed by resident blocks, whole rows four (Q5_0) or two per warp
// (Q6_K x 2,048, Q2_K x 4,096; in blocks of 16 warps: Q4_K, Q4_0, Q4_1, Q5_1,
// Q5_K, IQ4 x 4,096), one per warp (Q8_0 at two blocks per SM), or pieces of
// the columns one row per warp (blocks of 16 warps for rows of 14,336: Q4_K, Q3_K, Q8_0, Q2_K,
// F32, F16; of 8 for F16, BF16, F32 x 4,096; the last piece shorter),
// a row count no multiple of a tile, a bias with accumulation, an input with
// one very large element; the plain types on an fp32 input.
TEST_F(CudaOps, PlainMatmulOfManyBytes) {
    struct Case { TensorType type; uint64_t cols; };
    const Case cases[] = {{TensorType::Q8_0, 4096},   {TensorType::Q4_K, 4096},   {TensorType::Q4_K, 14336},
                          {TensorType::Q6_K, 2048},   {TensorType::Q5_0, 1024},   {TensorType::Q4_0, 4096},
                          {TensorType::Q4_1, 4096},   {TensorType::Q5_1, 4096},   {TensorType::Q5_K, 4096},
                          {TensorType::Q2_K, 4096},   {TensorType::Q3_K, 14336},  {TensorType::IQ4_NL, 4096},
                          {TensorType::IQ4_XS, 4096}, {TensorType::F16, 4096},    {TensorType::BF16, 4096},
                          {TensorType::F32, 4096},    {TensorType::F32, 14336},   {TensorType::F16, 14336},
                          {TensorType::Q8_0, 14336},  {TensorType::Q2_K, 14336}};
    for (const Case& c : cases) {
        const uint64_t row_bytes = c.cols / gguf::traits(c.type).block_size * gguf::traits(c.type).block_bytes;
        const uint64_t rows = (uint64_t(16) << 20) / row_bytes + 37;
        SCOPED_TRACE(std::string(gguf::traits(c.type).name) + " x " + std::to_string(c.cols) + ", rows " +
                     std::to_string(rows));
        WeightSet ws;
        build_weights(ws, {{"w", c.type, c.cols, rows}, {"b", TensorType::F32, rows, 1}}, *cpu, *gpu, rng);
        // Random inputs, then inputs of 1e-3..1e-2 with one of 6e4 (near fp16's
        // largest): the rounded input is scaled (fp16: by a power of two; 16-bit
        // integers: per chunk of 128), so neither it nor the sums overflow.
        auto spread = random_floats(c.cols, rng, 1e-3f, 1e-2f);
        spread[c.cols / 3] = 6e4f;
        for (const auto& x : {random_floats(c.cols, rng), spread}) {
            auto init = random_floats(rows, rng);
            std::vector<float> ref = init;
            cpu->matmul(ws.cpu[0], x.data(), 1, ref.data(), int(rows), &ws.cpu[1], true);
            DeviceVec<float> dx(x), out(init);
            gpu->matmul(ws.gpu[0], dx.ptr, 1, out.ptr, int(rows), &ws.gpu[1], true);
            // A rounded input for the quantised types (as in NormedMatmulOfManyRows).
            EXPECT_LT(rel_error(out.host(), ref), gguf::traits(c.type).block_size > 1 ? 2e-3 : 2e-5);
        }
    }
}

// Top-k on the device against the CPU's exact selection, ties included: a run of
// equal values across the k-th place, equal zeros of both signs, all-equal input.
TEST_F(CudaOps, TopK) {
    for (int n : {1, 1000, 151936}) {
        auto x = random_floats(size_t(n), rng, -10, 10);
        if (n >= 1000) {
            for (int i = 0; i < 40; ++i) x[size_t(i) * (n / 40) + 3] = 9.99f;
            x[5] = 0.0f;
            x[6] = -0.0f;
        }
        DeviceVec<float> dx(x);
        for (int k : {1, 7, 40, 256, 1024}) {
            if (k > n) continue;
            EXPECT_EQ(gpu->top_k(dx.ptr, n, k), cpu->top_k(x.data(), n, k)) << "n " << n << " k " << k;
        }
    }
    std::vector<float> same(3000, 1.5f);
    DeviceVec<float> dsame(same);
    EXPECT_EQ(gpu->top_k(dsame.ptr, 3000, 100), cpu->top_k(same.data(), 3000, 100));
    std::vector<float> neg = random_floats(5000, rng, -30, -20);
    DeviceVec<float> dneg(neg);
    EXPECT_EQ(gpu->top_k(dneg.ptr, 5000, 300), cpu->top_k(neg.data(), 5000, 300));
}

// Attention through sessions: a prefill of several steps (history in the
// cache), then decode steps, each compared with the CPU. GQA ratios 1, 4, 7, 8.
TEST_F(CudaOps, AttentionPrefillAndDecode) {
    struct Case { int n_heads, n_kv_heads, head_dim; std::vector<int> steps; };
    const Case cases[] = {
        {4, 4, 64, {5, 70, 1, 1}},      {8, 2, 64, {33, 1, 130, 1}},     {14, 2, 64, {200, 1, 1, 3}},
        {7, 1, 128, {17, 64, 1}},       {16, 2, 128, {100, 1, 1}},       {8, 8, 96, {65, 1}},
        {14, 2, 64, {1, 1, 1, 1, 1}},   {14, 2, 64, {1000, 1}},
        // Partial row tiles, 1:1 to 8:1, every head_dim, 9 to 2048 tokens per step.
        {4, 4, 32, {9, 600, 1}},         {8, 2, 80, {300, 129, 1}},       {8, 1, 128, {1500, 1}},
        {14, 2, 64, {512, 512, 512, 512, 1}}, {14, 2, 64, {2048, 1}},     {7, 7, 96, {77, 1}},
        // 16 splits of 250 keys: more key tiles per split than the ring holds.
        {16, 16, 64, {2000, 2000, 1, 1}},
        // Long enough that an item takes the whole group (7 and 8 heads), whose
        // splits are then merged by several items at once.
        {14, 2, 64, {4000, 1, 1}},       {32, 4, 64, {3000, 1000, 1, 1}},
        // 32 KV heads leave 8 splits: the 256-key items of single heads are capped there.
        {32, 32, 64, {2000, 2000, 1}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE("heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) + " dim " +
                     std::to_string(c.head_dim));
        RopeParams rp;
        rp.n_heads = c.n_heads; rp.n_kv_heads = c.n_kv_heads; rp.head_dim = c.head_dim; rp.rope_dim = c.head_dim;
        compare_attention_steps(2, 1, rp, c.steps, /*fused=*/false);
    }
}

// RoPE + attention through sessions: steps of several tokens take the op-by-op
// path, single tokens the decode attention with the rotation and cache store
// inside (later steps read the keys it stored). Both styles, a partial
// rotation (k's unrotated tail goes to the cache too), GQA 7:1 and 1:1, and a
// context whose new key lands in a later tile of a long split.
TEST_F(CudaOps, RopeAttentionFusedDecode) {
    struct Case { int n_heads, n_kv_heads, head_dim, rope_dim; RopeStyle style; std::vector<int> steps; };
    const std::vector<int> mixed{37, 1, 1, 200, 1, 1, 1};
    const Case cases[] = {{14, 2, 64, 64, RopeStyle::NeoX, mixed}, {8, 8, 128, 64, RopeStyle::Normal, mixed},
                          {4, 1, 64, 32, RopeStyle::NeoX, mixed}, {16, 16, 64, 64, RopeStyle::NeoX, {1500, 1500, 1, 1}},
                          {14, 2, 64, 64, RopeStyle::NeoX, {2000, 2000, 1, 1}}};
    for (const Case& c : cases) {
        SCOPED_TRACE("heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) + " rope_dim " +
                     std::to_string(c.rope_dim));
        RopeParams rp;
        rp.style = c.style; rp.n_heads = c.n_heads; rp.n_kv_heads = c.n_kv_heads; rp.head_dim = c.head_dim;
        rp.rope_dim = c.rope_dim; rp.freq_base = 10000.0f;
        compare_attention_steps(1, 0, rp, c.steps, /*fused=*/true);
    }
}

}  // namespace
}  // namespace orcd
