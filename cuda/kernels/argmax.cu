// Greedy sampling on the device: the index of the largest logit, so that a
// greedy decode step copies one int back instead of the whole vocabulary.
// One block of 1024 threads: the vocabulary (~152k floats, 600 KB) is one
// short pass; a single block needs no second launch or atomics. Each thread
// keeps eight 16-byte loads in flight: the logits come from L2, and one load
// at a time made ~150 round trips in a row (10.7 us per token).
#include <cfloat>
#include <cstdint>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

namespace {

constexpr int kThreads = 1024;

// Larger value wins; on equal values the lower index (as a CPU scan would pick).
__device__ __forceinline__ void keep_best(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* x, int n, int32_t* result) {
    pdl_enter();
    __shared__ float best_v[kThreads / 32];
    __shared__ int best_i[kThreads / 32];
    float v = -FLT_MAX;
    int idx = 0x7fffffff;
    const int quads = reinterpret_cast<uintptr_t>(x) % 16 == 0 ? n / 4 : 0;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    auto keep_quad = [&](const float4& q, int at) {
        keep_best(v, idx, q.x, 4 * at);
        keep_best(v, idx, q.y, 4 * at + 1);
        keep_best(v, idx, q.z, 4 * at + 2);
        keep_best(v, idx, q.w, 4 * at + 3);
    };
    constexpr int kInFlight = 8;
    int q = threadIdx.x;
    for (; q + (kInFlight - 1) * kThreads < quads; q += kInFlight * kThreads) {
        float4 ahead[kInFlight];
#pragma unroll
        for (int k = 0; k < kInFlight; ++k) ahead[k] = x4[q + k * kThreads];
#pragma unroll
        for (int k = 0; k < kInFlight; ++k) keep_quad(ahead[k], q + k * kThreads);
    }
#pragma unroll kInFlight
    for (; q < quads; q += kThreads) keep_quad(x4[q], q);
    for (int j = 4 * quads + threadIdx.x; j < n; j += kThreads) keep_best(v, idx, x[j], j);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        keep_best(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) { best_v[warp] = v; best_i[warp] = idx; }
    __syncthreads();
    if (warp == 0) {
        v = best_v[lane];
        idx = best_i[lane];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            keep_best(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
        if (lane == 0) *result = idx == 0x7fffffff ? 0 : idx;
    }
}

}  // namespace

void launch_argmax(const float* x, int n, int32_t* result, cudaStream_t stream) {
    launch_pdl(argmax_kernel, 1, kThreads, 0, stream, x, n, result);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
