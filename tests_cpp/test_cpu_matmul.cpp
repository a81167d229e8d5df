// The CPU matmul against a plain dequantise-then-dot reference (in double) for
// every supported type, both instruction sets, odd shapes and thread counts;
// and the thread pool it runs on.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "cpu/dot_kernels.h"
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "quant/dequantize.h"
#include "random_tensors.h"

using namespace orcd;
using cpu::Isa;
using cpu::ThreadPool;
using gguf::TensorType;

namespace {

const TensorType kAllTypes[] = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0,   TensorType::Q4_1,
    TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0, TensorType::Q2_K,   TensorType::Q3_K,
    TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS,
};

// Column counts to try: several whole blocks, and for plain types lengths that
// leave a tail after the 8- and 32-wide vector loops.
std::vector<int64_t> column_counts(TensorType type) {
    const int64_t block = gguf::traits(type).block_size;
    if (block == 1) return {1, 5, 37, 96, 200};
    if (block == 32) return {32, 96, 288};
    return {256, 768};
}

// Every (row, activation) result within 1e-5 of the sum of |w*x| of the exact
// product: fp32 accumulation order is free, nothing else is.
void expect_matches_reference(TensorType type, int64_t rows, int64_t cols, int64_t n, Isa isa, ThreadPool& pool,
                              std::mt19937& rng) {
    const auto weights = orcd::testing::random_weights(type, rows, cols, rng);
    const auto x = orcd::testing::random_activations(n * cols, rng);
    std::vector<float> dense(static_cast<size_t>(rows * cols));
    const int64_t row_bytes = int64_t(gguf::row_bytes(type, uint64_t(cols)));
    for (int64_t r = 0; r < rows; ++r) quant::dequantize(type, weights.data() + r * row_bytes, &dense[size_t(r * cols)], cols);

    std::vector<float> out(static_cast<size_t>(n * rows), NAN);
    cpu::matmul(type, weights.data(), rows, cols, x.data(), n, out.data(), pool, isa);

    for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < rows; ++r) {
            double exact = 0, magnitude = 0;
            for (int64_t c = 0; c < cols; ++c) {
                const double term = double(dense[size_t(r * cols + c)]) * x[size_t(i * cols + c)];
                exact += term;
                magnitude += std::fabs(term);
            }
            ASSERT_NEAR(out[size_t(i * rows + r)], exact, 1e-5 * magnitude + 1e-30)
                << gguf::traits(type).name << " " << cpu::isa_name(isa) << " rows " << rows << " cols " << cols
                << " n " << n << " threads " << pool.size() << " at i " << i << " r " << r;
        }
}

class CpuMatmul : public ::testing::TestWithParam<std::tuple<TensorType, Isa>> {};

TEST_P(CpuMatmul, MatchesDequantiseThenDot) {
    const auto [type, isa] = GetParam();
    if (isa == Isa::Avx2 && !cpu::cpu_has_avx2()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
    ASSERT_TRUE(cpu::supports(type));
    std::mt19937 rng(1234);
    for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        for (int64_t rows : {1, 7, 33, 70})
            for (int64_t cols : column_counts(type))
                for (int64_t n : {1, 3, 4, 17}) expect_matches_reference(type, rows, cols, n, isa, pool, rng);
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CpuMatmul, ::testing::Combine(::testing::ValuesIn(kAllTypes),
                                                                 ::testing::Values(Isa::Scalar, Isa::Avx2)),
                         [](const auto& info) {
                             return std::string(gguf::traits(std::get<0>(info.param)).name) + "_" +
                                    cpu::isa_name(std::get<1>(info.param));
                         });

TEST(CpuMatmul, LargeTileCoversManyRowTiles) {
    // 300 rows of 256: several prefill tiles with a partial last one.
    ThreadPool pool(2);
    std::mt19937 rng(99);
    for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
        if (isa == Isa::Avx2 && !cpu::cpu_has_avx2()) continue;
        expect_matches_reference(TensorType::Q6_K, 300, 2560, 9, isa, pool, rng);
        expect_matches_reference(TensorType::Q5_0, 300, 896, 9, isa, pool, rng);
    }
}

TEST(CpuMatmul, EmptyShapesWriteNothing) {
    ThreadPool pool(2);
    std::vector<uint8_t> w(34);
    std::vector<float> x(32, 1.0f), out(1, 42.0f);
    cpu::matmul(TensorType::Q8_0, w.data(), 0, 32, x.data(), 1, out.data(), pool);
    cpu::matmul(TensorType::Q8_0, w.data(), 1, 32, x.data(), 0, out.data(), pool);
    EXPECT_EQ(out[0], 42.0f);
}

TEST(CpuMatmul, RejectsUnsupportedTypesAndPartialBlocks) {
    ThreadPool pool(1);
    std::vector<uint8_t> w(1024);
    std::vector<float> x(256), out(4);
    EXPECT_FALSE(cpu::supports(TensorType::IQ2_XXS));
    try {
        cpu::matmul(TensorType::IQ2_XXS, w.data(), 1, 256, x.data(), 1, out.data(), pool);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
        EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
    }
    try {
        cpu::matmul(TensorType::Q4_K, w.data(), 1, 128, x.data(), 1, out.data(), pool);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    }
}

TEST(CpuMatmul, DequantizeRowMatchesQuantDequantize) {
    std::mt19937 rng(5);
    for (TensorType type : kAllTypes) {
        const auto bytes = orcd::testing::random_weights(type, 1, 512, rng);
        std::vector<float> a(512), b(512);
        cpu::dequantize_row(type, bytes.data(), a.data(), 512);
        quant::dequantize(type, bytes.data(), b.data(), 512);
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), 512 * sizeof(float))) << gguf::traits(type).name;
    }
}

TEST(CpuMatmul, Avx2RowDequantisationIsExact) {
    if (!cpu::cpu_has_avx2()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
    std::mt19937 rng(6);
    for (TensorType type : kAllTypes) {
        const cpu::kernels::RowDequantize fast = cpu::kernels::avx2_row_dequantize(type);
        if (!fast) continue;
        const auto bytes = orcd::testing::random_weights(type, 1, 1024, rng);
        std::vector<float> a(1024), b(1024);
        fast(bytes.data(), a.data(), 1024);
        quant::dequantize(type, bytes.data(), b.data(), 1024);
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), 1024 * sizeof(float))) << gguf::traits(type).name;
    }
}

// ---- thread pool ---------------------------------------------------------------

TEST(ThreadPool, SizeCountsTheCaller) {
    EXPECT_EQ(ThreadPool(1).size(), 1);
    EXPECT_EQ(ThreadPool(3).size(), 3);
    EXPECT_GE(ThreadPool(0).size(), 1);
}

TEST(ThreadPool, CoversEveryIndexOnce) {
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        for (int64_t n : {0, 1, 2, 7, 64, 1001}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            pool.parallel_for(n, [&](int64_t begin, int64_t end) {
                ASSERT_LE(0, begin);
                ASSERT_LT(begin, end);
                ASSERT_LE(end, n);
                for (int64_t i = begin; i < end; ++i) hits[size_t(i)]++;
            });
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "threads " << threads << " n " << n;
        }
    }
}

TEST(ThreadPool, ConcurrentCallersEachGetTheirWholeRange) {
    ThreadPool pool(3);
    constexpr int kCallers = 4, kCalls = 100;
    std::atomic<int> failures{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c)
        callers.emplace_back([&, c] {
            for (int call = 0; call < kCalls; ++call) {
                const int64_t n = 50 + c * 7 + call;
                std::atomic<int64_t> sum{0};
                pool.parallel_for(n, [&](int64_t begin, int64_t end) {
                    for (int64_t i = begin; i < end; ++i) sum += i;
                });
                if (sum.load() != n * (n - 1) / 2) failures++;
            }
        });
    for (auto& t : callers) t.join();
    EXPECT_EQ(failures.load(), 0);
}

TEST(ThreadPool, RethrowsTheFirstExceptionAndStaysUsable) {
    ThreadPool pool(2);
    EXPECT_THROW(pool.parallel_for(100, [](int64_t begin, int64_t end) {
                     if (begin <= 50 && 50 < end) throw std::runtime_error("boom");
                 }),
                 std::runtime_error);
    std::atomic<int64_t> count{0};
    pool.parallel_for(100, [&](int64_t begin, int64_t end) { count += end - begin; });
    EXPECT_EQ(count.load(), 100);
}

TEST(ThreadPool, NestedCallRunsInline) {
    ThreadPool pool(2);
    std::atomic<int64_t> count{0};
    pool.parallel_for(8, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
            pool.parallel_for(10, [&](int64_t b, int64_t e) { count += e - b; });
    });
    EXPECT_EQ(count.load(), 80);
}

}  // namespace
