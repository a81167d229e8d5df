// Attention for one query token over the fp16 KV cache, split along the keys
// (flash-decoding), so that a long context spreads over all multiprocessors.
//
// Block (kv head, split) handles the split's keys for all query heads of the
// group, so each K/V row is read once per group. Keys come in tiles of
// kKeyTile, copied into shared memory by the whole block with 16-byte loads
// (all in flight at once); one thread per key computes the group's scores, one
// warp per head updates the online softmax, then each thread accumulates
// (head, dim) pairs of p.V. A split's unnormalised result (max, sum, acc[D]) goes to `partials`;
// the last block of a KV head to finish (a counter per head) merges its splits.
// The KV length is read from positions[0] on the device, so the launch never
// depends on the position, and only as many splits as the length needs (at
// least kMinKeys keys each) do work: the others exit at once.
//
// v3: the merge moved from a second kernel into the last block (one launch per
// layer less), and the split count follows the KV length (v2 spread even a
// 20-token context over 132 splits of one key each).
// v4: K and V tiles go through shared memory. v3 read V straight from global
// memory in a per-thread loop over the tile's keys (one dependent load after
// another: 25 us per layer once a split held 64+ keys). Splits of at least one
// tile (two tiles each: 37 us per layer at 8192; a block's tiles run one after
// another), and a single split (contexts up to 128) writes its result directly:
// the merge (fence, counter, a second pass) costs more than it spreads.
#include <cuda_pipeline.h>

#include <algorithm>
#include <cfloat>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace orcd::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kKeyTile = kThreads;
constexpr int kMaxGroup = 8;  // query heads per KV head
constexpr int kMaxHeadDim = 256;
constexpr int kMaxPairs = kMaxGroup * kMaxHeadDim / kThreads;  // (head, dim) accumulators per thread
constexpr int kTargetBlocks = 264;                            // two waves' worth on a 132-SM part
constexpr int kMinKeys = kKeyTile;                            // keys per split at the least
constexpr int kPad = 8;                                       // halves after each K/V row: no bank conflicts
constexpr int kMaxSplits = kTargetBlocks;                     // with one KV head

// Splits that hold keys for a KV length (the same in every block).
__device__ __forceinline__ int used_splits(int kv_len, int splits) {
    return max(1, min(splits, (kv_len + kMinKeys - 1) / kMinKeys));
}

// out[h, d] = sum_s e^(m_s - M) acc_s[d] / sum_s e^(m_s - M) l_s for the group's
// query heads, by one block: first one warp per head computes the split weights
// e^(m_s - M) and the denominator (lanes over splits), then the threads take
// (head, dim) pairs, so all heads merge at once. Partials written by other
// blocks are read through L2 (__ldcg), never a stale L1.
__device__ void merge_splits(const float* partials, int first_head, int group, int splits, int used, int head_dim,
                             float* out) {
    __shared__ float weight[kMaxGroup * kMaxSplits];
    __shared__ float total[kMaxGroup];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int g = warp; g < group; g += kThreads / 32) {
        const float* recs = partials + size_t(first_head + g) * splits * (head_dim + 2);
        float m = -FLT_MAX;
        for (int s = lane; s < used; s += 32) m = fmaxf(m, __ldcg(recs + size_t(s) * (head_dim + 2)));
        m = warp_max(m);
        float denom = 0.0f;
        for (int s = lane; s < used; s += 32) {
            const float* r = recs + size_t(s) * (head_dim + 2);
            const float l = __ldcg(r + 1);
            const float w = l > 0.0f ? __expf(__ldcg(r) - m) : 0.0f;
            weight[g * kMaxSplits + s] = w;
            denom += w * l;
        }
        denom = warp_sum(denom);
        if (lane == 0) total[g] = denom;
    }
    __syncthreads();
    for (int pair = threadIdx.x; pair < group * head_dim; pair += kThreads) {
        const int g = pair / head_dim, d = pair % head_dim;
        const float* acc = partials + size_t(first_head + g) * splits * (head_dim + 2) + 2 + d;
        const float* w = weight + g * kMaxSplits;
        float num = 0.0f;
#pragma unroll 8
        for (int s = 0; s < used; ++s) num += w[s] * __ldcg(acc + size_t(s) * (head_dim + 2));
        out[size_t(first_head + g) * head_dim + d] = num / total[g];
    }
}

__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(const float* qkv, const int32_t* positions, const __half* k_cache, const __half* v_cache,
                            int group, int head_dim, int max_context, int splits, float scale, float* partials,
                            unsigned* counters, float* out) {
    extern __shared__ float smem[];
    float* qs = smem;                     // [group][head_dim], pre-scaled
    float* ps = qs + group * head_dim;    // [group][kKeyTile]: scores, then probabilities
    float* m_run = ps + group * kKeyTile; // [group] running max
    float* l_run = m_run + kMaxGroup;     // [group] running sum
    float* alpha = l_run + kMaxGroup;     // [group] rescale factor of the current tile
    const int ldkv = head_dim + kPad;
    __half* ks = reinterpret_cast<__half*>(alpha + kMaxGroup);  // [kKeyTile][ldkv]
    __half* vs = ks + kKeyTile * ldkv;                           // [kKeyTile][ldkv]
    __shared__ bool last_block;
    pdl_enter();
    const int kvh = blockIdx.x, split = blockIdx.y;
    const int kv_len = positions[0] + 1;
    const int used = used_splits(kv_len, splits);
    if (split >= used) return;
    const int chunk = (kv_len + used - 1) / used;
    const int begin = split * chunk, end = min(kv_len, begin + chunk);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (int i = threadIdx.x; i < group * head_dim; i += kThreads) qs[i] = qkv[kvh * group * head_dim + i] * scale;
    if (threadIdx.x < group) { m_run[threadIdx.x] = -FLT_MAX; l_run[threadIdx.x] = 0.0f; }
    __syncthreads();

    const __half* kbase = k_cache + size_t(kvh) * max_context * head_dim;
    const __half* vbase = v_cache + size_t(kvh) * max_context * head_dim;
    const int n_pairs = group * head_dim;
    float acc[kMaxPairs];
#pragma unroll
    for (int i = 0; i < kMaxPairs; ++i) acc[i] = 0.0f;

    for (int j0 = begin; j0 < end; j0 += kKeyTile) {
        const int tile = min(kKeyTile, end - j0);
        const int chunks = head_dim / 8;  // 16-byte pieces per row
        // Asynchronous copies: every thread's loads are in flight at once (a plain
        // load-store loop waits for each load before the next: 8 DRAM round trips a tile).
        for (int e = threadIdx.x; e < tile * chunks; e += kThreads) {
            const int j = e / chunks, c = e % chunks;
            const size_t src = size_t(j0 + j) * head_dim + 8 * c;
            __pipeline_memcpy_async(ks + j * ldkv + 8 * c, kbase + src, 16);
            __pipeline_memcpy_async(vs + j * ldkv + 8 * c, vbase + src, 16);
        }
        __pipeline_commit();
        __pipeline_wait_prior(0);
        __syncthreads();
        if (threadIdx.x < tile) {
            const uint4* krow = reinterpret_cast<const uint4*>(ks + threadIdx.x * ldkv);
            float s[kMaxGroup] = {};
            for (int d8 = 0; d8 < head_dim / 8; ++d8) {
                const uint4 u = krow[d8];
                const __half2* h = reinterpret_cast<const __half2*>(&u);
                float k[8];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const float2 f = __half22float2(h[i]);
                    k[2 * i] = f.x;
                    k[2 * i + 1] = f.y;
                }
#pragma unroll
                for (int g = 0; g < kMaxGroup; ++g) {
                    if (g < group) {
                        const float* qg = qs + g * head_dim + 8 * d8;
#pragma unroll
                        for (int i = 0; i < 8; ++i) s[g] += qg[i] * k[i];
                    }
                }
            }
#pragma unroll
            for (int g = 0; g < kMaxGroup; ++g)
                if (g < group) ps[g * kKeyTile + threadIdx.x] = s[g];
        }
        __syncthreads();
        for (int g = warp; g < group; g += kThreads / 32) {
            float mx = -FLT_MAX;
            for (int j = lane; j < tile; j += 32) mx = fmaxf(mx, ps[g * kKeyTile + j]);
            const float m_new = fmaxf(m_run[g], warp_max(mx));
            float sum = 0.0f;
            for (int j = lane; j < tile; j += 32) {
                const float p = __expf(ps[g * kKeyTile + j] - m_new);
                ps[g * kKeyTile + j] = p;
                sum += p;
            }
            sum = warp_sum(sum);
            __syncwarp();
            if (lane == 0) {
                const float a = __expf(m_run[g] - m_new);
                alpha[g] = a;
                l_run[g] = l_run[g] * a + sum;
                m_run[g] = m_new;
            }
        }
        __syncthreads();
        // Four partial sums per pair: independent chains, so the shared-memory loads
        // and FMAs of consecutive keys overlap instead of waiting on each other.
        // (Keys outer with all pairs inner was tried: 14 -> 33 us, register spills.)
#pragma unroll
        for (int i = 0; i < kMaxPairs; ++i) {
            const int pair = threadIdx.x + i * kThreads;
            if (pair < n_pairs) {
                const int g = pair / head_dim, d = pair % head_dim;
                const float* p = ps + g * kKeyTile;
                const __half* v = vs + d;
                float a0 = acc[i] * alpha[g], a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
                int j = 0;
                for (; j + 4 <= tile; j += 4) {
                    a0 += p[j] * __half2float(v[j * ldkv]);
                    a1 += p[j + 1] * __half2float(v[(j + 1) * ldkv]);
                    a2 += p[j + 2] * __half2float(v[(j + 2) * ldkv]);
                    a3 += p[j + 3] * __half2float(v[(j + 3) * ldkv]);
                }
                for (; j < tile; ++j) a0 += p[j] * __half2float(v[j * ldkv]);
                acc[i] = (a0 + a1) + (a2 + a3);
            }
        }
        __syncthreads();  // ps, alpha, ks and vs are rewritten by the next tile
    }
    if (used == 1) {  // the only split (up to 2 tiles of context): no partials, no merge
#pragma unroll
        for (int i = 0; i < kMaxPairs; ++i) {
            const int pair = threadIdx.x + i * kThreads;
            if (pair < n_pairs) out[size_t(kvh * group) * head_dim + pair] = acc[i] / l_run[pair / head_dim];
        }
        return;
    }
    // partials[(q head * splits + split)] = {max, sum, acc[head_dim]}
#pragma unroll
    for (int i = 0; i < kMaxPairs; ++i) {
        const int pair = threadIdx.x + i * kThreads;
        if (pair < n_pairs) {
            const int g = pair / head_dim, d = pair % head_dim;
            float* rec = partials + (size_t(kvh * group + g) * splits + split) * (head_dim + 2);
            rec[2 + d] = acc[i];
            if (d == 0) {
                rec[0] = m_run[g];
                rec[1] = l_run[g];
            }
        }
    }
    // Publish this split, then count it; the block that counts last merges.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned done = atomicAdd(&counters[kvh], 1u);
        last_block = done == unsigned(used - 1);
        if (last_block) counters[kvh] = 0;  // ready for the next step; no other block of this step touches it
    }
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    merge_splits(partials, kvh * group, group, splits, used, head_dim, out);
}

size_t decode_smem_bytes(int group, int head_dim) {
    return sizeof(float) * (size_t(group) * head_dim + size_t(group) * kKeyTile + 3 * kMaxGroup) +
           sizeof(__half) * 2 * size_t(kKeyTile) * (head_dim + kPad);
}

}  // namespace

int attention_decode_splits(const AttentionShape& shape) {
    return std::max(1, kTargetBlocks / shape.n_kv_heads);
}

void launch_attention_decode(const float* qkv, const int32_t* positions, const __half* k_cache,
                             const __half* v_cache, const AttentionShape& shape, float* partials,
                             unsigned* counters, float* out, cudaStream_t stream) {
    const int group = shape.n_heads / shape.n_kv_heads;
    const int splits = attention_decode_splits(shape);
    const float scale = 1.0f / sqrtf(float(shape.head_dim));
    const size_t smem = decode_smem_bytes(group, shape.head_dim);
    static bool configured = [] {  // up to 77 KB with 8 heads of 256 dims
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(decode_smem_bytes(kMaxGroup, kMaxHeadDim))));
        return true;
    }();
    (void)configured;
    launch_pdl(attention_decode_kernel, dim3(shape.n_kv_heads, splits), kThreads, smem, stream, qkv, positions, k_cache,
               v_cache, group, shape.head_dim, shape.max_context, splits, scale, partials, counters, out);
}

}  // namespace orcd::cuda
