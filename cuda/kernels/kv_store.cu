// Stores the new tokens' k and v (fp32, in the qkv buffer) into the fp16 caches.
#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

__global__ void kv_store_kernel(const float* qkv, int ld, int n, const int32_t* positions, int q_dim, int kv_dim,
                                int head_dim, int max_context, __half* k_cache, __half* v_cache) {
    pdl_enter();
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= int64_t(n) * kv_dim) return;
    const int t = int(idx / kv_dim), c = int(idx % kv_dim);
    const int h = c / head_dim, d = c % head_dim;
    const int64_t dst = (int64_t(h) * max_context + positions[t]) * head_dim + d;
    const float* row = qkv + int64_t(t) * ld;
    k_cache[dst] = __float2half_rn(row[q_dim + c]);
    v_cache[dst] = __float2half_rn(row[q_dim + kv_dim + c]);
}

void launch_kv_store(const float* qkv, int ld, int n, const int32_t* positions, int n_heads, int n_kv_heads,
                     int head_dim, int max_context, __half* k_cache, __half* v_cache, cudaStream_t stream) {
    const int kv_dim = n_kv_heads * head_dim;
    const int64_t total = int64_t(n) * kv_dim;
    if (total == 0) return;
    launch_pdl(kv_store_kernel, unsigned((total + 255) / 256), 256, 0, stream, qkv, ld, n, positions,
               n_heads * head_dim, kv_dim, head_dim, max_context, k_cache, v_cache);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
