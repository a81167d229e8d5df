// The block formats of quant/ compiled for the device: dequantising on the GPU
// (whole blocks and single elements) gives the host's float bits exactly.
// Skips when no CUDA device is present.
#include <gtest/gtest.h>

#include <cstring>
#include <cuda_runtime.h>
#include <vector>

#include "quant/block_types.h"
#include "quant/dequant.h"
#include "quant/dequantize.h"
#include "random_tensors.h"

using namespace orcd;
using gguf::TensorType;

namespace {

template <typename Block>
__global__ void dequantize_blocks_kernel(const Block* blocks, int n_blocks, float* whole, float* by_element) {
    constexpr int kElements = quant::kBlockElements<Block>;
    const int b = blockIdx.x;
    if (b >= n_blocks) return;
    if (threadIdx.x == 0) quant::dequantize_block(blocks[b], whole + b * kElements);
    for (int i = threadIdx.x; i < kElements; i += blockDim.x)
        by_element[b * kElements + i] = quant::dequantize_element(blocks[b], i);
}

bool have_gpu() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

class QuantDevice : public ::testing::TestWithParam<TensorType> {};

TEST_P(QuantDevice, MatchesHostBitForBit) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    const TensorType type = GetParam();
    constexpr int64_t kElementsTotal = 64 * 256;
    std::mt19937 rng(11);
    const auto bytes = orcd::testing::random_weights(type, 1, kElementsTotal, rng);
    std::vector<float> host(kElementsTotal);
    quant::dequantize(type, bytes.data(), host.data(), kElementsTotal);

    quant::visit_block_type(type, [&](auto tag) {
        using Block = typename decltype(tag)::type;
        const int n_blocks = int(kElementsTotal / quant::kBlockElements<Block>);
        void* d_blocks = nullptr;
        float *d_whole = nullptr, *d_elements = nullptr;
        CUDA_OK(cudaMalloc(&d_blocks, bytes.size()));
        CUDA_OK(cudaMalloc(&d_whole, kElementsTotal * sizeof(float)));
        CUDA_OK(cudaMalloc(&d_elements, kElementsTotal * sizeof(float)));
        CUDA_OK(cudaMemcpy(d_blocks, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
        dequantize_blocks_kernel<Block><<<n_blocks, 64>>>(static_cast<const Block*>(d_blocks), n_blocks, d_whole, d_elements);
        CUDA_OK(cudaGetLastError());
        std::vector<float> whole(kElementsTotal), by_element(kElementsTotal);
        CUDA_OK(cudaMemcpy(whole.data(), d_whole, kElementsTotal * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(by_element.data(), d_elements, kElementsTotal * sizeof(float), cudaMemcpyDeviceToHost));
        cudaFree(d_blocks);
        cudaFree(d_whole);
        cudaFree(d_elements);
        EXPECT_EQ(0, std::memcmp(whole.data(), host.data(), kElementsTotal * sizeof(float)));
        EXPECT_EQ(0, std::memcmp(by_element.data(), host.data(), kElementsTotal * sizeof(float)));
    });
}

INSTANTIATE_TEST_SUITE_P(AllBlockTypes, QuantDevice,
                         ::testing::Values(TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                           TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                                           TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_NL,
                                           TensorType::IQ4_XS),
                         [](const auto& info) { return std::string(gguf::traits(info.param).name); });

}  // namespace
