// Top-k prefilter for sampled decoding: the host then sees k candidates instead
// of the whole vocabulary (~152k logits, 600 KB over PCIe per token).
//
// One block of 1024 threads (the vocabulary is a short pass for one SM, and a
// single block needs no cross-block synchronisation): radix selection of the
// k-th largest value over order-preserving 32-bit keys, 8 bits per pass with a
// shared-memory histogram, then one pass writing every value above it and one
// ordered pass writing the values equal to it, lowest indices first, until k
// pairs are out. The result is exactly the CPU's top k as a set; the host sorts it.
#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/order_key.cuh"

namespace orcd::cuda {

namespace {

constexpr int kThreads = 1024;

__global__ void __launch_bounds__(kThreads) top_k_kernel(const float* x, int n, int k, int32_t* indices, float* values) {
    __shared__ unsigned hist[256];
    __shared__ uint32_t s_prefix;
    __shared__ int s_need, s_above;
    __shared__ int warp_counts[kThreads / 32];
    pdl_enter();
    // After the passes: prefix is the k-th largest key, need the number of values
    // equal to it that belong to the top k (the rest of the k are above it).
    uint32_t prefix = 0, mask = 0;
    int need = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += kThreads) hist[i] = 0;
        __syncthreads();
        for (int j = threadIdx.x; j < n; j += kThreads) {
            const uint32_t key = order_key(x[j]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int d = 255;
            unsigned above = 0;
            for (; d > 0 && above + hist[d] < unsigned(need); --d) above += hist[d];
            s_prefix = prefix | (uint32_t(d) << shift);
            s_need = need - int(above);
        }
        __syncthreads();
        prefix = s_prefix;
        need = s_need;
        mask |= 255u << shift;
    }
    if (threadIdx.x == 0) s_above = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < n; j += kThreads) {
        const float v = x[j];
        if (order_key(v) > prefix) {
            const int slot = atomicAdd(&s_above, 1);
            indices[slot] = j;
            values[slot] = v;
        }
    }
    __syncthreads();
    const int base = s_above;  // == k - need
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int taken = 0;
    for (int j0 = 0; j0 < n && taken < need; j0 += kThreads) {
        const int j = j0 + threadIdx.x;
        const bool equal = j < n && order_key(x[j]) == prefix;
        const unsigned ballot = __ballot_sync(0xffffffffu, equal);
        if (lane == 0) warp_counts[warp] = __popc(ballot);
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < kThreads / 32; ++w) {
            before += w < warp ? warp_counts[w] : 0;
            total += warp_counts[w];
        }
        const int rank = taken + before + __popc(ballot & ((1u << lane) - 1u));
        if (equal && rank < need) {
            indices[base + rank] = j;
            values[base + rank] = x[j];
        }
        taken += total;
        __syncthreads();  // warp_counts is rewritten by the next chunk
    }
}

}  // namespace

void launch_top_k(const float* x, int n, int k, int32_t* indices, float* values, cudaStream_t stream) {
    launch_pdl(top_k_kernel, 1, kThreads, 0, stream, x, n, k, indices, values);
}

}  // namespace orcd::cuda
