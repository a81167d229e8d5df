// Greedy sampling on the device: the index of the largest logit, so that a
// greedy decode step copies one int back instead of the whole vocabulary.
//
// Blocks of 256 threads each reduce a slice (four 16-byte loads in flight per
// thread: the logits come from L2) to their best (value, index), packed in 64
// bits so that the larger word is the larger value and then the lower index.
// One atomicMax per block; the last block to finish (a ticket) takes the
// result and zeroes the state for the next call. One block over the whole
// vocabulary took 9.7 us per token, bound by its own compare chain.
#include <algorithm>
#include <cstdint>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/order_key.cuh"

namespace orcd::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kQuadsPerThread = 4;

__device__ __forceinline__ unsigned long long pack(float v, int i) {
    return (static_cast<unsigned long long>(order_key(v)) << 32) | (0xffffffffu - static_cast<uint32_t>(i));
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* x, int n, int32_t* result,
                                                          unsigned long long* state) {
    pdl_enter();
    unsigned long long best = 0;
    const int quads = reinterpret_cast<uintptr_t>(x) % 16 == 0 ? n / 4 : 0;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const int first = blockIdx.x * kThreads * kQuadsPerThread + threadIdx.x;
    float4 ahead[kQuadsPerThread];
#pragma unroll
    for (int k = 0; k < kQuadsPerThread; ++k) {
        const int q = first + k * kThreads;
        ahead[k] = q < quads ? x4[q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
#pragma unroll
    for (int k = 0; k < kQuadsPerThread; ++k) {
        const int q = first + k * kThreads;
        if (q < quads) {
            best = max(best, pack(ahead[k].x, 4 * q));
            best = max(best, pack(ahead[k].y, 4 * q + 1));
            best = max(best, pack(ahead[k].z, 4 * q + 2));
            best = max(best, pack(ahead[k].w, 4 * q + 3));
        }
    }
    // What the quads leave (a tail, or all of an unaligned x), over the whole grid.
    for (int j = 4 * quads + blockIdx.x * kThreads + threadIdx.x; j < n; j += gridDim.x * kThreads)
        best = max(best, pack(x[j], j));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
    __shared__ unsigned long long warp_best[kThreads / 32];
    if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kThreads / 32; ++w) best = max(best, warp_best[w]);
        atomicMax(&state[0], best);
        __threadfence();
        if (atomicAdd(&state[1], 1ull) == gridDim.x - 1) {
            const unsigned long long all = atomicExch(&state[0], 0ull);
            atomicExch(&state[1], 0ull);
            *result = n > 0 ? int32_t(0xffffffffu - static_cast<uint32_t>(all)) : 0;
        }
    }
}

}  // namespace

void launch_argmax(const float* x, int n, int32_t* result, unsigned long long* state, cudaStream_t stream) {
    const int per_block = kThreads * kQuadsPerThread * 4;
    const unsigned blocks = unsigned(std::max(1, (n + per_block - 1) / per_block));
    launch_pdl(argmax_kernel, blocks, kThreads, 0, stream, x, n, result, state);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
