// Attention for one query token over the fp16 KV cache, split along the keys
// (flash-decoding), so that a long context spreads over all multiprocessors.
//
// A block of 4 warps runs items: a KV head's split of the keys for a set of its
// query heads (the whole group, or at short contexts a single head, so that
// there are enough items to fill the GPU). The grid is fixed (two blocks per
// SM's worth) and each block loops over its items, so a short context costs no
// empty blocks. Keys are read in tiles of kAttnTileKeys through a ring of
// kAttnStages shared-memory slots (16-byte asynchronous copies). The cache rows
// of earlier positions do not depend on the kernel before, so a block's first
// tiles are copied before waiting for it (PDL): their latency overlaps the QKV
// product.
//
// Within a warp, L = head_dim / 8 lanes (rounded up to a power of two) share a
// key, each lane holding 8 of its dimensions; a warp step covers 32 / L keys.
// Each lane keeps the online-softmax state (max, sum) and its slice of the
// output for every head of the item in registers, so a step is a few shuffles
// and FMAs per head with no block-wide synchronisation. At the end the lanes'
// states are merged across the warp (shuffles) and then across the warps (in
// shared memory, fixed order). A split's result (max, sum, acc[D]) goes to
// `partials`, and the last items of a head set to finish merge the splits, a
// head each (attn_finish). The KV length is read from positions[0] on the
// device, so the launch never depends on the position.
//
// With `rope_store` set, the item also rotates its q heads, and the items of
// the split holding the new position rotate that position's k and use it (and
// v) from shared memory; one of them writes both into the cache.
//
// History: v4 (one thread per key and head, a warp per head for the softmax,
// __syncthreads between the phases of each 128-key tile, a grid of n_heads x
// splits blocks, one block merging a KV head's splits) took 10.9 us at 64 keys
// and 30.1 us at 8,192 (ncu): long dependent chains on 1 to 2 blocks per SM,
// 1,800 mostly empty blocks, and a merge of 7 heads x 64 splits by one block.
#include <cuda_fp16.h>
#include <cuda_pipeline.h>

#include <cuda/atomic>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"
#include "kernels/rope.cuh"

namespace orcd::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kAttnTileKeys = 32;
constexpr int kAttnStages = 4;       // tiles in flight per item
constexpr int kU = 2;                // keys per lane group between softmax updates
constexpr int kAttnMaxGroup = 8;     // query heads per KV head
constexpr int kAttnMaxHeadDim = 128;
constexpr int kAttnMinKeys = 64;     // keys per split at least
constexpr int kAttnMinKeysOneHead = 256;  // the same, for items of a single query head
constexpr int kAttnTargetItems = 264;  // two per SM on a 132-SM part: the grid's blocks
constexpr int kAttnMaxSplits = kAttnTargetItems;  // with one KV head

// Lanes that share a key: one 16-byte piece (8 dims) each, a power of two.
__host__ __device__ constexpr int attn_lanes_per_key(int head_dim) {
    int lanes = 1;
    while (lanes * 8 < head_dim) lanes *= 2;
    return lanes;
}

// Dynamic shared memory of an item: the K and V ring, the rotated q heads, then
// q, k and v as qkv holds them (group + 2 rows); the ring is reused for the
// warps' states at the end.
__host__ __device__ constexpr size_t attn_ring_bytes(int head_dim) {
    return sizeof(__half) * 2 * size_t(kAttnStages) * kAttnTileKeys * head_dim;
}
__host__ __device__ constexpr size_t attn_item_smem_bytes(int group, int head_dim) {
    return attn_ring_bytes(head_dim) + sizeof(float) * size_t(2 * group + 2) * head_dim;
}
static_assert(attn_ring_bytes(8) >= sizeof(float) * kWarps * kAttnMaxGroup * (8 + 2),
              "the ring holds the warps' states");

// The items of a step, known before waiting for the kernel before: the KV
// length comes from positions[0], which the host set before the step. While
// there are at most two items per block, each query head has its own (its
// K/V tiles then come from L2 for the group's other heads); beyond, an item
// takes the whole group, so that each K/V tile is read once.
struct AttnPlan {
    int pos, kv_len;
    int used;  // splits that hold keys
    int sets;  // query-head sets per KV head: the group size, or 1
    int items;
};

__device__ __forceinline__ AttnPlan attn_plan(const DecodeAttentionArgs& p) {
    AttnPlan plan;
    plan.pos = p.positions[0];
    plan.kv_len = plan.pos + 1;
    const int min_splits = max(1, min(p.splits, (plan.kv_len + kAttnMinKeys - 1) / kAttnMinKeys));
    const bool split_heads = p.split_heads && min_splits * p.n_heads <= 2 * int(gridDim.x);
    plan.sets = split_heads ? p.n_heads / p.n_kv_heads : 1;
    // A head's own items take up to kAttnMinKeysOneHead keys: a split more costs
    // more (its partials' round trip through L2 and the merge) than the keys save.
    plan.used = split_heads ? max(1, min(p.splits, (plan.kv_len + kAttnMinKeysOneHead - 1) / kAttnMinKeysOneHead))
                            : min_splits;
    plan.items = plan.used * p.n_kv_heads * plan.sets;
    return plan;
}

// One block's work: a KV head's split of the keys for a set of its query heads.
struct AttnItem {
    int kvh, split, used;  // used: splits that hold keys at this length
    int h0, nh;            // query heads h0 .. h0 + nh - 1
    int pos, begin, end;   // the new position; this split's keys [begin, end)
};

// Item i: consecutive items are the head sets and KV heads of one split.
__device__ __forceinline__ AttnItem attn_item(const DecodeAttentionArgs& p, const AttnPlan& plan, int i) {
    AttnItem it;
    const int group = p.n_heads / p.n_kv_heads, per_split = p.n_kv_heads * plan.sets;
    it.split = i / per_split;
    it.kvh = i % p.n_kv_heads;
    it.nh = group / plan.sets;
    it.h0 = it.kvh * group + (i % per_split) / p.n_kv_heads * it.nh;
    it.used = plan.used;
    it.pos = plan.pos;
    const int chunk = (plan.kv_len + plan.used - 1) / plan.used;
    it.begin = it.split * chunk;
    it.end = min(plan.kv_len, it.begin + chunk);
    return it;
}

// Issues the copies of tile t into its ring slot (all but the new position's
// row, which is filled after waiting) and commits them as one group, possibly empty.
__device__ __forceinline__ void attn_stage_tile(const DecodeAttentionArgs& p, const AttnItem& it, int t,
                                                __half* ring) {
    const int head_dim = p.head_dim, pieces = head_dim / 8;
    const int first = it.begin + t * kAttnTileKeys, keys = min(kAttnTileKeys, it.end - first);
    __half* ks = ring + size_t(t % kAttnStages) * kAttnTileKeys * head_dim;
    __half* vs = ks + size_t(kAttnStages) * kAttnTileKeys * head_dim;
    const size_t base = (size_t(it.kvh) * p.max_context + first) * head_dim;
    for (int e = threadIdx.x; e < keys * pieces; e += kThreads) {
        const int j = e / pieces;
        if (first + j == it.pos) continue;
        const size_t at = size_t(j) * head_dim + 8 * (e % pieces);
        __pipeline_memcpy_async(ks + at, p.k_cache + base + at, 16);
        __pipeline_memcpy_async(vs + at, p.v_cache + base + at, 16);
    }
    __pipeline_commit();
}

__device__ __forceinline__ void half8_to_float(const uint4& u, float f[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 x = __half22float2(h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

// Folds softmax state (m2, l2, a2) into (m, l, a): both rescaled to the larger max.
__device__ __forceinline__ void attn_combine(float& m, float& l, float a[8], float m2, float l2, const float a2[8]) {
    const float mx = fmaxf(m, m2), s1 = __expf(m - mx), s2 = __expf(m2 - mx);
    l = l * s1 + l2 * s2;
#pragma unroll
    for (int i = 0; i < 8; ++i) a[i] = a[i] * s1 + a2[i] * s2;
    m = mx;
}

// out[h, :] = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s over the used
// splits of query head h, by the whole block: the split weights first (one
// split per thread, its max and sum in one 8-byte load), then each thread sums
// 4 dims over every subsets-th split (16-byte loads, 8 in flight: the partials
// come from L2, written by other blocks), and the subsets are added in a fixed order.
__device__ void attn_merge_head(const DecodeAttentionArgs& p, int h, int used) {
    __shared__ float weight[kAttnMaxSplits];  // a split's max, then its weight
    __shared__ float split_sum[kAttnMaxSplits];
    __shared__ float4 sums[kThreads];
    const int head_dim = p.head_dim, stride = head_dim + 4;
    const float* recs = p.partials + size_t(h) * p.splits * stride;
    float m = -FLT_MAX;
    for (int s = threadIdx.x; s < used; s += kThreads) {
        const float2 ml = __ldcg(reinterpret_cast<const float2*>(recs + size_t(s) * stride));
        weight[s] = ml.x;
        split_sum[s] = ml.y;
        m = fmaxf(m, ml.x);
    }
    m = block_max(m);  // also makes weight and split_sum visible to the block
    float denom = 0.0f;
    for (int s = threadIdx.x; s < used; s += kThreads) {
        const float w = __expf(weight[s] - m);
        weight[s] = w;
        denom += w * split_sum[s];
    }
    denom = block_sum(denom);  // also makes the weights visible
    const int quads = head_dim / 4, subsets = kThreads / quads;
    const int quad = threadIdx.x % quads, subset = threadIdx.x / quads;
    float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (subset < subsets) {
        const float4* acc = reinterpret_cast<const float4*>(recs + 4) + quad;
        const int step = stride / 4;  // float4s per record
        auto add = [&](float w, const float4& v) {
            num.x += w * v.x;
            num.y += w * v.y;
            num.z += w * v.z;
            num.w += w * v.w;
        };
        int s = subset;
        for (; s + 7 * subsets < used; s += 8 * subsets) {
            float4 v[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) v[k] = __ldcg(acc + size_t(s + k * subsets) * step);
#pragma unroll
            for (int k = 0; k < 8; ++k) add(weight[s + k * subsets], v[k]);
        }
        for (; s < used; s += subsets) add(weight[s], __ldcg(acc + size_t(s) * step));
    }
    sums[threadIdx.x] = num;
    __syncthreads();
    if (threadIdx.x < quads) {
        float4 total = sums[threadIdx.x];
        for (int k = 1; k < subsets; ++k) {
            const float4 v = sums[k * quads + threadIdx.x];
            total.x += v.x;
            total.y += v.y;
            total.z += v.z;
            total.w += v.w;
        }
        const float inv = 1.0f / denom;
        *reinterpret_cast<float4*>(p.out + size_t(h) * head_dim + 4 * threadIdx.x) =
            make_float4(total.x * inv, total.y * inv, total.z * inv, total.w * inv);
    }
    __syncthreads();  // weight and sums are reused by the next head
}

// After an item published its partials: the last min(nh, used) items of a head
// set to finish merge its heads between them (one head each, round robin), each
// waiting until every split has published. Only those last few wait, and every
// item they wait for is running or will be scheduled (it waits on nothing), so
// the wait ends. counters[h0] counts published items, counters[n_heads + h0]
// the mergers done; the last merger zeroes both for the next step.
__device__ void attn_finish(const DecodeAttentionArgs& p, const AttnItem& it) {
    __shared__ int rank;
    const int mergers = min(it.nh, it.used);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        rank = int(atomicAdd(&p.counters[it.h0], 1u)) - (it.used - mergers);
        if (rank >= 0) {
            ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> published(p.counters[it.h0]);
            while (published.load(::cuda::memory_order_acquire) < unsigned(it.used)) __nanosleep(32);
        }
    }
    __syncthreads();
    if (rank < 0) return;
    __threadfence();
    for (int g = rank; g < it.nh; g += mergers) attn_merge_head(p, it.h0 + g, it.used);
    if (threadIdx.x == 0 && atomicAdd(&p.counters[p.n_heads + it.h0], 1u) == unsigned(mergers - 1)) {
        p.counters[it.h0] = 0;
        p.counters[p.n_heads + it.h0] = 0;
    }
}

// The item after waiting for the kernel before: L lanes per key
// (attn_lanes_per_key(head_dim)), H >= it.nh heads in registers.
template <int L, int H>
__device__ void attn_run_item(const DecodeAttentionArgs& p, const AttnItem& it, const float2* rot, uint8_t* smem) {
    constexpr int keys_per_step = 32 / L;
    const int head_dim = p.head_dim;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int piece = lane % L, key_in_step = lane / L;
    const bool has_piece = piece < head_dim / 8;  // head_dim 96: 12 of 16 lanes
    __half* ring = reinterpret_cast<__half*>(smem);
    float* qs = reinterpret_cast<float*>(smem + attn_ring_bytes(head_dim));  // [nh][head_dim]
    float* raw = qs + size_t(it.nh) * head_dim;  // [nh + 2][head_dim]: q heads, new k, new v from qkv
    __shared__ __align__(16) __half fresh[2][kAttnMaxHeadDim];  // the new position's k (rotated) and v
    const int half = p.rope_dim / 2;
    const bool holds_new = it.pos >= it.begin && it.pos < it.end;
    // Element d of a head after rotation: rotated pairs below rope_dim, copied above.
    auto rotated = [&](const float* head, int d) {
        if (!p.rope_store || d >= p.rope_dim) return head[d];
        const int i = p.neox ? (d < half ? d : d - half) : d / 2;
        int a, b;
        rope_pair(p.neox, i, half, a, b);
        const float x0 = head[a], x1 = head[b];
        return d == a ? x0 * rot[i].x - x1 * rot[i].y : x0 * rot[i].y + x1 * rot[i].x;
    };
    // The item's q heads and, in the split holding the new position, its k and v
    // are copied from qkv in 16-byte pieces, all in flight at once (one round trip
    // to L2 however many heads), then rotated from shared memory: q scaled into
    // qs, k and v as the cache holds them (fp16) into `fresh`. One item of the
    // split stores them in the cache; every item uses its own copy. Without the
    // fused rotation, the store before wrote them and they come from the cache.
    const int q_elems = it.nh * head_dim;
    const float* k_in = p.qkv + size_t(p.n_heads + it.kvh) * head_dim;
    const float* v_in = p.qkv + size_t(p.n_heads + p.n_kv_heads + it.kvh) * head_dim;
    {
        const int q_pieces = q_elems / 4, kv_pieces = holds_new && p.rope_store ? head_dim / 4 : 0;
        for (int e = threadIdx.x; e < q_pieces + 2 * kv_pieces; e += kThreads) {
            const float* from = e < q_pieces               ? p.qkv + size_t(it.h0) * head_dim + 4 * e
                                : e < q_pieces + kv_pieces ? k_in + 4 * (e - q_pieces)
                                                           : v_in + 4 * (e - q_pieces - kv_pieces);
            __pipeline_memcpy_async(raw + 4 * e, from, 16);
        }
        __pipeline_commit();
        __pipeline_wait_prior(0);  // also the ring's first tiles, issued long before
        __syncthreads();
    }
    for (int i = threadIdx.x; i < q_elems; i += kThreads)
        qs[i] = rotated(raw + size_t(i / head_dim) * head_dim, i % head_dim) * p.scale;
    if (holds_new) {
        const size_t new_row = (size_t(it.kvh) * p.max_context + it.pos) * head_dim;
        const bool store = it.h0 == it.kvh * (p.n_heads / p.n_kv_heads);
        for (int d = threadIdx.x; d < head_dim; d += kThreads) {
            __half k, v;
            if (p.rope_store) {
                k = __float2half_rn(rotated(raw + q_elems, d));
                v = __float2half_rn(raw[q_elems + head_dim + d]);
                if (store) {
                    p.k_cache[new_row + d] = k;
                    p.v_cache[new_row + d] = v;
                }
            } else {
                k = __ldcg(p.k_cache + new_row + d);
                v = __ldcg(p.v_cache + new_row + d);
            }
            fresh[0][d] = k;
            fresh[1][d] = v;
        }
    }
    __syncthreads();

    float acc[H][8], m[H], l[H];
#pragma unroll
    for (int g = 0; g < H; ++g) {
        m[g] = -FLT_MAX;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
    }
    // This lane's piece of each q head, read from shared memory at every step (in
    // registers as well, 8 heads would leave room for only two blocks per SM).
    const float4* q_piece = reinterpret_cast<const float4*>(qs + 8 * min(piece, head_dim / 8 - 1));
    const int q_stride = head_dim / 4;  // float4s per head

    const int tiles = (it.end - it.begin + kAttnTileKeys - 1) / kAttnTileKeys;
    const int tile_elems = kAttnTileKeys * head_dim;
    for (int t = 0; t < tiles; ++t) {
        __pipeline_wait_prior(kAttnStages - 1);
        const int first = it.begin + t * kAttnTileKeys, keys = min(kAttnTileKeys, it.end - first);
        __half* ks = ring + size_t(t % kAttnStages) * tile_elems;
        __half* vs = ks + size_t(kAttnStages) * tile_elems;
        if (holds_new && it.pos >= first && it.pos < first + keys)
            for (int d = threadIdx.x; d < head_dim; d += kThreads) {
                const size_t at = size_t(it.pos - first) * head_dim + d;
                ks[at] = fresh[0][d];
                vs[at] = fresh[1][d];
            }
        __syncthreads();
        // Warp steps over the tile; every lane of a warp runs the same count (shuffles).
        // A lane group takes kU keys per step, so the softmax state is rescaled
        // once per kU keys and their shuffles overlap.
        for (int j0 = warp * keys_per_step; j0 < kAttnTileKeys; j0 += kWarps * keys_per_step * kU) {
            int j[kU];
            float k[kU][8], v[kU][8];
#pragma unroll
            for (int u = 0; u < kU; ++u) {
                j[u] = j0 + u * kWarps * keys_per_step + key_in_step;
                if (j[u] < keys && has_piece) {
                    half8_to_float(*reinterpret_cast<const uint4*>(ks + size_t(j[u]) * head_dim + 8 * piece), k[u]);
                    half8_to_float(*reinterpret_cast<const uint4*>(vs + size_t(j[u]) * head_dim + 8 * piece), v[u]);
                } else {
#pragma unroll
                    for (int i = 0; i < 8; ++i) k[u][i] = v[u][i] = 0.0f;
                }
            }
#pragma unroll
            for (int g = 0; g < H; ++g) {
                if (g >= it.nh) break;
                const float4 qa = q_piece[g * q_stride], qb = q_piece[g * q_stride + 1];
                float s[kU];
#pragma unroll
                for (int u = 0; u < kU; ++u)
                    s[u] = ((qa.x * k[u][0] + qa.y * k[u][1]) + (qa.z * k[u][2] + qa.w * k[u][3])) +
                           ((qb.x * k[u][4] + qb.y * k[u][5]) + (qb.z * k[u][6] + qb.w * k[u][7]));
#pragma unroll
                for (int o = L / 2; o > 0; o /= 2)
#pragma unroll
                    for (int u = 0; u < kU; ++u) s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
                float m_new = m[g];
#pragma unroll
                for (int u = 0; u < kU; ++u) {
                    if (j[u] >= keys) s[u] = -INFINITY;  // no key: weight 0
                    m_new = fmaxf(m_new, s[u]);
                }
                const float rescale = __expf(m[g] - m_new);
                float pr[kU], psum = 0.0f;
#pragma unroll
                for (int u = 0; u < kU; ++u) {
                    pr[u] = __expf(s[u] - m_new);
                    psum += pr[u];
                }
                l[g] = l[g] * rescale + psum;
#pragma unroll
                for (int i = 0; i < 8; ++i) {
                    float a = acc[g][i] * rescale;
#pragma unroll
                    for (int u = 0; u < kU; ++u) a += pr[u] * v[u][i];
                    acc[g][i] = a;
                }
                m[g] = m_new;
            }
        }
        __syncthreads();  // the slot is refilled below
        attn_stage_tile(p, it, t + kAttnStages, ring);
    }
    __pipeline_wait_prior(0);  // nothing is left in flight when the ring is reused

    // Merge the keys of a warp step (lanes L, 2L, ... apart), then the warps.
#pragma unroll
    for (int g = 0; g < H; ++g) {
        if (g >= it.nh) break;
        for (int o = L; o < 32; o *= 2) {
            float other[8];
#pragma unroll
            for (int i = 0; i < 8; ++i) other[i] = __shfl_xor_sync(0xffffffffu, acc[g][i], o);
            const float m2 = __shfl_xor_sync(0xffffffffu, m[g], o), l2 = __shfl_xor_sync(0xffffffffu, l[g], o);
            attn_combine(m[g], l[g], acc[g], m2, l2, other);
        }
    }
    const int stride = head_dim + 2;
    float* states = reinterpret_cast<float*>(smem);  // [warp][head]{m, l, acc[head_dim]}
    const int rec_stride = head_dim + 4;
#pragma unroll
    for (int g = 0; g < H; ++g) {
        if (g >= it.nh) break;
        float* st = states + size_t(warp * it.nh + g) * stride;
        if (lane == 0) {
            st[0] = m[g];
            st[1] = l[g];
        }
        if (key_in_step == 0 && has_piece)
#pragma unroll
            for (int i = 0; i < 8; ++i) st[2 + 8 * piece + i] = acc[g][i];
    }
    __syncthreads();
    const bool single = it.used == 1;
    for (int pair = threadIdx.x; pair < it.nh * head_dim; pair += kThreads) {
        const int g = pair / head_dim, d = pair % head_dim;
        float mx = -FLT_MAX;
        for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, states[size_t(w * it.nh + g) * stride]);
        float num = 0.0f, den = 0.0f;
        for (int w = 0; w < kWarps; ++w) {
            const float* st = states + size_t(w * it.nh + g) * stride;
            const float s = __expf(st[0] - mx);
            num += s * st[2 + d];
            den += s * st[1];
        }
        if (single) {
            p.out[size_t(it.h0 + g) * head_dim + d] = num / den;
        } else {  // partials[(q head * splits + split)] = {max, sum, -, -, acc[head_dim]}
            float* rec = p.partials + (size_t(it.h0 + g) * p.splits + it.split) * rec_stride;
            rec[4 + d] = num;
            if (d == 0) {
                rec[0] = mx;
                rec[1] = den;
            }
        }
    }
    if (!single) attn_finish(p, it);
}

// Block b runs items b, b + blocks, ...; the first one's tiles are copied
// before waiting for the kernel before.
template <int L>
__global__ void __launch_bounds__(kThreads) attention_decode_kernel(DecodeAttentionArgs p) {
    extern __shared__ __align__(16) uint8_t smem[];
    __half* ring = reinterpret_cast<__half*>(smem);
    const AttnPlan plan = attn_plan(p);
    int i = blockIdx.x;
    if (i >= plan.items) return;
    AttnItem it = attn_item(p, plan, i);
    for (int t = 0; t < kAttnStages; ++t) attn_stage_tile(p, it, t, ring);
    // The rotation's (cos, sin) per pair depend only on the position.
    __shared__ float2 rot[kAttnMaxHeadDim / 2];
    if (p.rope_store)
        for (int k = threadIdx.x; k < p.rope_dim / 2; k += kThreads)
            rope_cos_sin(plan.pos, k, p.rope_dim, p.freq_base, p.freq_scale, p.attn_factor, p.freq_factors, rot[k].x,
                         rot[k].y);
    pdl_enter();
    __syncthreads();
    for (;;) {
        if (it.nh == 1)
            attn_run_item<L, 1>(p, it, rot, smem);
        else
            attn_run_item<L, kAttnMaxGroup>(p, it, rot, smem);
        i += gridDim.x;
        if (i >= plan.items) break;
        __syncthreads();  // the ring is free again
        it = attn_item(p, plan, i);
        for (int t = 0; t < kAttnStages; ++t) attn_stage_tile(p, it, t, ring);
    }
}

}  // namespace

int attention_decode_splits(const AttentionShape& shape) {
    return std::max(1, kAttnTargetItems / shape.n_kv_heads);
}

size_t attention_decode_partial_floats(const AttentionShape& shape) {
    return size_t(shape.n_heads) * attention_decode_splits(shape) * (shape.head_dim + 4);
}

// Per query head: items published, and mergers done (attn_finish).
size_t attention_decode_counters(const AttentionShape& shape) {
    return 2 * size_t(shape.n_heads);
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

template <int L>
static void launch_with_lanes(const DecodeAttentionArgs& p, cudaStream_t stream) {
    static bool configured = [] {  // up to 68 KB with 8 heads of 128 dims
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<L>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(attn_item_smem_bytes(kAttnMaxGroup, kAttnMaxHeadDim))));
        return true;
    }();
    (void)configured;
    launch_pdl(attention_decode_kernel<L>, unsigned(p.n_kv_heads * p.splits), kThreads,
               attn_item_smem_bytes(p.n_heads / p.n_kv_heads, p.head_dim), stream, p);
}

void launch_attention_decode(const DecodeAttentionArgs& p, cudaStream_t stream) {
    switch (attn_lanes_per_key(p.head_dim)) {
        case 4: launch_with_lanes<4>(p, stream); break;
        case 8: launch_with_lanes<8>(p, stream); break;
        case 16: launch_with_lanes<16>(p, stream); break;
        default: throw Error(ErrorKind::Unsupported, "decode attention: head_dim " + std::to_string(p.head_dim));
    }
}

}  // namespace orcd::cuda
