// Attention for one query token over the fp16 KV cache, split along the keys
// (flash-decoding), so that a long context spreads over all multiprocessors.
// The work of one (KV head, split) item; the kernel is in attention_decode.cu.
//
// An item handles the split's keys for all query heads of the group, so each
// K/V row is read once per group. Keys come in tiles of kKeyTile, copied into
// shared memory by the whole block with 16-byte asynchronous copies (all in
// flight at once); threads take (key, head) scores, one warp per head updates
// the online softmax, then each thread accumulates (head, dim) pairs of p.V.
// A split's unnormalised result (max, sum, acc[D]) goes to `partials`; the last
// item of a KV head to finish (a counter per head) merges the splits. The KV
// length is read from positions[0] on the device, so the launch never depends
// on the position, and only as many splits as the length needs do work.
//
// With `rope_store` set, the item also does what the rope + KV-store kernel did:
// it rotates its q heads while loading them, and the items of the split holding
// the new position rotate that position's k and use it (and v) from shared
// memory; one of them writes both into the cache (no other split reads them).
//
// History: v3 moved the merge into the last block (one launch per layer less);
// v4 put K and V tiles through shared memory (a per-thread loop over V in
// global memory cost 25 us per layer); splits of one tile at least, and a
// single split (contexts up to one tile) writes its result directly.
#pragma once

#include <cuda_fp16.h>
#include <cuda_pipeline.h>

#include <cfloat>
#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/reduce.cuh"
#include "kernels/rope.cuh"

namespace orcd::cuda {

constexpr int kAttnKeyTile = 128;
constexpr int kAttnMaxGroup = 8;   // query heads per KV head
constexpr int kAttnMaxHeadDim = 128;
constexpr int kAttnTargetItems = 264;  // two waves' worth on a 132-SM part
// Items up to which each query head gets its own (attn_head_sets): a group's
// items share each K/V tile through L2 instead of shared memory, but the chains
// of dependent work per item are a group's size shorter, and there are more
// items to hide each other's latency (one grouped item per SM at 8K keys).
constexpr int kAttnSplitHeadsMaxItems = 1024;
constexpr int kAttnMinKeys = kAttnKeyTile;
constexpr int kAttnPad = 8;  // halves after each K/V row: no bank conflicts
constexpr int kAttnMaxSplits = kAttnTargetItems;  // with one KV head


// Splits that hold keys for a KV length (the same in every item).
__device__ __forceinline__ int attn_used_splits(int kv_len, int splits) {
    return max(1, min(splits, (kv_len + kAttnMinKeys - 1) / kAttnMinKeys));
}

// Shared memory an item needs (dynamic part).
__host__ __device__ constexpr size_t attn_item_smem_bytes(int group, int head_dim) {
    return sizeof(float) * (size_t(group) * head_dim + size_t(group) * kAttnKeyTile + 3 * kAttnMaxGroup +
                            2 * kAttnMaxHeadDim) +
           sizeof(__half) * 2 * size_t(kAttnKeyTile) * (head_dim + kAttnPad);
}

// out[h, d] = sum_s e^(m_s - M) acc_s[d] / sum_s e^(m_s - M) l_s for `group`
// query heads from first_head: one warp per head computes the split weights, then the threads
// take (head, dim) pairs. Partials written by other blocks are read through L2.
template <int NT>
__device__ void attn_merge_splits(const float* partials, int first_head, int group, int splits, int used,
                                  int head_dim, float* out) {
    __shared__ float weight[kAttnMaxGroup * kAttnMaxSplits];
    __shared__ float total[kAttnMaxGroup];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int g = warp; g < group; g += NT / 32) {
        const float* recs = partials + size_t(first_head + g) * splits * (head_dim + 2);
        float m = -FLT_MAX;
        for (int s = lane; s < used; s += 32) m = fmaxf(m, __ldcg(recs + size_t(s) * (head_dim + 2)));
        m = warp_max(m);
        float denom = 0.0f;
        for (int s = lane; s < used; s += 32) {
            const float* r = recs + size_t(s) * (head_dim + 2);
            const float l = __ldcg(r + 1);
            const float w = l > 0.0f ? __expf(__ldcg(r) - m) : 0.0f;
            weight[g * kAttnMaxSplits + s] = w;
            denom += w * l;
        }
        denom = warp_sum(denom);
        if (lane == 0) total[g] = denom;
    }
    __syncthreads();
    for (int pair = threadIdx.x; pair < group * head_dim; pair += NT) {
        const int g = pair / head_dim, d = pair % head_dim;
        const float* acc = partials + size_t(first_head + g) * splits * (head_dim + 2) + 2 + d;
        const float* w = weight + g * kAttnMaxSplits;
        float num = 0.0f;
        // Sixteen loads in flight at a time: the partials come from L2, one round trip each.
        int s = 0;
        for (; s + 16 <= used; s += 16) {
            float v[16];
#pragma unroll
            for (int k = 0; k < 16; ++k) v[k] = __ldcg(acc + size_t(s + k) * (head_dim + 2));
#pragma unroll
            for (int k = 0; k < 16; ++k) num += w[s + k] * v[k];
        }
        for (; s < used; ++s) num += w[s] * __ldcg(acc + size_t(s) * (head_dim + 2));
        out[size_t(first_head + g) * head_dim + d] = num / total[g];
    }
}

// Items that run at this KV length: per KV head, `subs` sets of query heads
// times the used splits. With split_heads, each query head has its own items
// up to kAttnSplitHeadsMaxItems; beyond, the group stays together (each K/V
// tile read once per group).
__device__ __forceinline__ int attn_head_sets(const DecodeAttentionArgs& p, int used) {
    const int group = p.n_heads / p.n_kv_heads;
    return p.split_heads && used * p.n_kv_heads * group <= kAttnSplitHeadsMaxItems ? group : 1;
}

// Item (kvh, set, split) by a block of NT threads (NT >= kAttnKeyTile); smem holds
// attn_item_smem_bytes(group, head_dim). Values other blocks of the launch wrote
// (the splits' partials) are read through L2 (__ldcg), bypassing a stale L1.
template <int NT>
__device__ void attention_decode_item(const DecodeAttentionArgs& p, int kvh, int set, int split, float* smem) {
    static_assert(NT % kAttnKeyTile == 0, "a block covers a key tile");
    constexpr int kMaxPairs = (kAttnMaxGroup * kAttnMaxHeadDim + NT - 1) / NT;  // (head, dim) accumulators per thread
    constexpr int kHeadSets = NT / kAttnKeyTile;  // threads score a key for every kHeadSets-th head
    const int group = p.n_heads / p.n_kv_heads, head_dim = p.head_dim;
    const int pos = p.positions[0], kv_len = pos + 1;
    const int used = attn_used_splits(kv_len, p.splits);
    const int subs = attn_head_sets(p, used);
    if (split >= used || set >= subs) return;
    const int nh = group / subs, h0 = kvh * group + set * nh;  // this item's query heads: h0 .. h0 + nh - 1
    float* qs = smem;                          // [nh][head_dim], rotated and pre-scaled
    float* ps = qs + group * head_dim;         // [nh][kAttnKeyTile]: scores, then probabilities
    float* m_run = ps + group * kAttnKeyTile;  // [nh] running max
    float* l_run = m_run + kAttnMaxGroup;      // [nh] running sum
    float* alpha = l_run + kAttnMaxGroup;      // [nh] rescale factor of the current tile
    float* fresh = alpha + kAttnMaxGroup;      // [2][head_dim]: the new position's k (rotated) and v
    const int ldkv = head_dim + kAttnPad;
    __half* ks = reinterpret_cast<__half*>(fresh + 2 * kAttnMaxHeadDim);  // [kAttnKeyTile][ldkv]
    __half* vs = ks + kAttnKeyTile * ldkv;
    __shared__ float2 rot[kAttnMaxHeadDim / 2];  // (cos, sin) per rotated pair
    __shared__ bool last_item;

    const int chunk = (kv_len + used - 1) / used;
    const int begin = split * chunk, end = min(kv_len, begin + chunk);
    const bool holds_new = p.rope_store && pos >= begin && pos < end;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int half = p.rope_dim / 2;

    if (p.rope_store) {
        for (int i = threadIdx.x; i < half; i += NT) {
            float c, s;
            rope_cos_sin(pos, i, p.rope_dim, p.freq_base, p.freq_scale, p.attn_factor, p.freq_factors, c, s);
            rot[i] = make_float2(c, s);
        }
        __syncthreads();
    }
    // Element d of a head after rotation: rotated pairs below rope_dim, copied above.
    auto rotated = [&](const float* head, int d) {
        if (!p.rope_store || d >= p.rope_dim) return __ldcg(head + d);
        const int i = p.neox ? (d < half ? d : d - half) : d / 2;
        int a, b;
        rope_pair(p.neox, i, half, a, b);
        const float x0 = __ldcg(head + a), x1 = __ldcg(head + b);
        return d == a ? x0 * rot[i].x - x1 * rot[i].y : x0 * rot[i].y + x1 * rot[i].x;
    };
    for (int i = threadIdx.x; i < nh * head_dim; i += NT)
        qs[i] = rotated(p.qkv + size_t(h0 + i / head_dim) * head_dim, i % head_dim) * p.scale;
    if (threadIdx.x < nh) {
        m_run[threadIdx.x] = -FLT_MAX;
        l_run[threadIdx.x] = 0.0f;
    }
    const size_t head_base = size_t(kvh) * p.max_context * head_dim;
    if (holds_new) {
        // The new position's k and v, as the cache will hold them (fp16). Every item
        // of this split uses its own copy; one of them also stores it, so no item
        // depends on another's global write.
        const float* k_in = p.qkv + size_t(p.n_heads + kvh) * head_dim;
        const float* v_in = p.qkv + size_t(p.n_heads + p.n_kv_heads + kvh) * head_dim;
        for (int d = threadIdx.x; d < head_dim; d += NT) {
            const __half k = __float2half_rn(rotated(k_in, d)), v = __float2half_rn(__ldcg(v_in + d));
            fresh[d] = __half2float(k);
            fresh[kAttnMaxHeadDim + d] = __half2float(v);
            if (set == 0) {
                p.k_cache[head_base + size_t(pos) * head_dim + d] = k;
                p.v_cache[head_base + size_t(pos) * head_dim + d] = v;
            }
        }
    }
    __syncthreads();

    const __half* kbase = p.k_cache + head_base;
    const __half* vbase = p.v_cache + head_base;
    const int n_pairs = nh * head_dim;
    float acc[kMaxPairs];
#pragma unroll
    for (int i = 0; i < kMaxPairs; ++i) acc[i] = 0.0f;

    for (int j0 = begin; j0 < end; j0 += kAttnKeyTile) {
        const int tile = min(kAttnKeyTile, end - j0);
        const int chunks = head_dim / 8;  // 16-byte pieces per row
        for (int e = threadIdx.x; e < tile * chunks; e += NT) {
            const int j = e / chunks, c = e % chunks;
            if (holds_new && j0 + j == pos) continue;  // patched in below
            const size_t src = size_t(j0 + j) * head_dim + 8 * c;
            __pipeline_memcpy_async(ks + j * ldkv + 8 * c, kbase + src, 16);
            __pipeline_memcpy_async(vs + j * ldkv + 8 * c, vbase + src, 16);
        }
        __pipeline_commit();
        if (holds_new && pos >= j0 && pos < j0 + tile) {
            for (int d = threadIdx.x; d < head_dim; d += NT) {
                ks[(pos - j0) * ldkv + d] = __float2half_rn(fresh[d]);
                vs[(pos - j0) * ldkv + d] = __float2half_rn(fresh[kAttnMaxHeadDim + d]);
            }
        }
        __pipeline_wait_prior(0);
        __syncthreads();
        // Scores: thread t takes key t % kAttnKeyTile for heads t / kAttnKeyTile, + kHeadSets, ...
        const int key = threadIdx.x % kAttnKeyTile, first_head = threadIdx.x / kAttnKeyTile;
        if (key < tile && first_head < nh) {
            const uint4* krow = reinterpret_cast<const uint4*>(ks + key * ldkv);
            float s[kAttnMaxGroup] = {};
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
                for (int g = 0; g < kAttnMaxGroup; ++g) {
                    if (g < nh && g % kHeadSets == first_head) {
                        const float* qg = qs + g * head_dim + 8 * d8;
#pragma unroll
                        for (int i = 0; i < 8; ++i) s[g] += qg[i] * k[i];
                    }
                }
            }
#pragma unroll
            for (int g = 0; g < kAttnMaxGroup; ++g)
                if (g < nh && g % kHeadSets == first_head) ps[g * kAttnKeyTile + key] = s[g];
        }
        __syncthreads();
        for (int g = warp; g < nh; g += NT / 32) {
            float mx = -FLT_MAX;
            for (int j = lane; j < tile; j += 32) mx = fmaxf(mx, ps[g * kAttnKeyTile + j]);
            const float m_new = fmaxf(m_run[g], warp_max(mx));
            float sum = 0.0f;
            for (int j = lane; j < tile; j += 32) {
                const float e = __expf(ps[g * kAttnKeyTile + j] - m_new);
                ps[g * kAttnKeyTile + j] = e;
                sum += e;
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
        // and FMAs of consecutive keys overlap (keys outer, pairs inner spilled).
#pragma unroll
        for (int i = 0; i < kMaxPairs; ++i) {
            const int pair = threadIdx.x + i * NT;
            if (pair < n_pairs) {
                const int g = pair / head_dim, d = pair % head_dim;
                const float* pr = ps + g * kAttnKeyTile;
                const __half* v = vs + d;
                float a0 = acc[i] * alpha[g], a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
                int j = 0;
                for (; j + 4 <= tile; j += 4) {
                    a0 += pr[j] * __half2float(v[j * ldkv]);
                    a1 += pr[j + 1] * __half2float(v[(j + 1) * ldkv]);
                    a2 += pr[j + 2] * __half2float(v[(j + 2) * ldkv]);
                    a3 += pr[j + 3] * __half2float(v[(j + 3) * ldkv]);
                }
                for (; j < tile; ++j) a0 += pr[j] * __half2float(v[j * ldkv]);
                acc[i] = (a0 + a1) + (a2 + a3);
            }
        }
        __syncthreads();  // ps, alpha, ks and vs are rewritten by the next tile
    }
    if (used == 1) {  // the only split: no partials, no merge
#pragma unroll
        for (int i = 0; i < kMaxPairs; ++i) {
            const int pair = threadIdx.x + i * NT;
            if (pair < n_pairs) p.out[size_t(h0) * head_dim + pair] = acc[i] / l_run[pair / head_dim];
        }
        return;
    }
    // partials[(q head * splits + split)] = {max, sum, acc[head_dim]}
#pragma unroll
    for (int i = 0; i < kMaxPairs; ++i) {
        const int pair = threadIdx.x + i * NT;
        if (pair < n_pairs) {
            const int g = pair / head_dim, d = pair % head_dim;
            float* rec = p.partials + (size_t(h0 + g) * p.splits + split) * (head_dim + 2);
            rec[2 + d] = acc[i];
            if (d == 0) {
                rec[0] = m_run[g];
                rec[1] = l_run[g];
            }
        }
    }
    // Publish this item, then count it per head set (its first head's counter); the
    // item that counts last merges the set's heads.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned done = atomicAdd(&p.counters[h0], 1u);
        last_item = done == unsigned(used - 1);
        if (last_item) p.counters[h0] = 0;  // ready for the next step; no other item of this step touches it
    }
    __syncthreads();
    if (!last_item) return;
    __threadfence();
    attn_merge_splits<NT>(p.partials, h0, nh, p.splits, used, head_dim, p.out);
}

}  // namespace orcd::cuda
