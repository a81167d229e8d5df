// The decode attention as its own kernel: one block of 128 threads per
// (KV head, query-head set, split) item of attention_decode.cuh. One block per
// KV head held 64 keys x 7 query heads at short contexts: ~8.7K instructions
// per warp in dependent chains, 14.5 us (ncu); per query head it is a seventh.
#include <algorithm>
#include <cmath>

#include "cuda_check.h"
#include "kernels/attention_decode.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads) attention_decode_kernel(DecodeAttentionArgs p) {
    extern __shared__ float smem[];
    pdl_enter();
    // blockIdx.x = query-head set * n_kv_heads + KV head: at short contexts each
    // query head has its own block (attn_head_sets), else the sets above 0 exit.
    attention_decode_item<kThreads>(p, blockIdx.x % p.n_kv_heads, blockIdx.x / p.n_kv_heads, blockIdx.y, smem);
}

}  // namespace

int attention_decode_splits(const AttentionShape& shape) {
    return std::max(1, kAttnTargetItems / shape.n_kv_heads);
}

DecodeAttentionArgs decode_attention_args(const float* qkv, const int32_t* positions, __half* k_cache,
                                          __half* v_cache, const AttentionShape& shape, float* partials,
                                          unsigned* counters, float* out, const RopeParams* rope) {
    DecodeAttentionArgs p{};
    p.qkv = qkv;
    p.positions = positions;
    p.k_cache = k_cache;
    p.v_cache = v_cache;
    p.n_heads = shape.n_heads;
    p.n_kv_heads = shape.n_kv_heads;
    p.head_dim = shape.head_dim;
    p.max_context = shape.max_context;
    p.splits = attention_decode_splits(shape);
    p.scale = 1.0f / std::sqrt(float(shape.head_dim));
    p.partials = partials;
    p.counters = counters;
    p.out = out;
    p.split_heads = true;
    p.rope_store = rope != nullptr;
    if (rope) {
        p.neox = rope->style == RopeStyle::NeoX;
        p.rope_dim = rope->rope_dim;
        p.freq_base = rope->freq_base;
        p.freq_scale = rope->freq_scale;
        p.attn_factor = rope->attn_factor;
        p.freq_factors = rope->freq_factors;
    }
    return p;
}

void launch_attention_decode(const DecodeAttentionArgs& p, cudaStream_t stream) {
    const size_t smem = attn_item_smem_bytes(p.n_heads / p.n_kv_heads, p.head_dim);
    static bool configured = [] {  // up to ~78 KB with 8 heads of 128 dims
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(attn_item_smem_bytes(kAttnMaxGroup, kAttnMaxHeadDim))));
        return true;
    }();
    (void)configured;
    launch_pdl(attention_decode_kernel, dim3(p.n_heads, p.splits), kThreads, smem, stream, p);
}

}  // namespace orcd::cuda
