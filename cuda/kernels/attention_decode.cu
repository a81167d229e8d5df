// Attention for one query token over the fp16 KV cache, split along the keys
// (flash-decoding), so that a long context spreads over all multiprocessors.
//
// A block of 4 warps runs items: a KV head's split of the keys for a set of its
// query heads (the whole group, or at short contexts a single head, so that
// there are enough items to fill the GPU). The grid is fixed (two blocks per
// SM's worth) and each block loops over its items, so a short context costs no
// empty blocks. Keys are read in tiles of kAttnTileKeys through a ring of
// kAttnStages shared-memory slots (16-byte asynchronous copies); a split is a
// whole number of tiles. The cache rows of earlier positions do not depend on
// the kernel before, so a block's first tiles are copied before waiting for it
// (PDL): their latency overlaps the QKV product.
//
// On tensor cores (mma.sync m16n8k16, fp16 operands, fp32 accumulation, as in
// the prefill attention): the item's query heads are the rows of a 16-row tile
// (GQA: every head of the group shares each K/V fragment), and each warp takes
// 16 keys of a tile: S = Q K^T (16 x 16), the online softmax of its rows (a row
// lives in the 4 lanes of a quad), O += P V (16 x head_dim). At the end the
// warps' states (max, sum, O) are merged in shared memory in a fixed order. A
// split's result (max, sum, acc[D]) goes to `partials`, and the last items of a
// head set to finish merge the splits, a head each (attn_finish). The KV length
// is read from positions[0] on the device, so the launch never depends on the
// position.
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
// v5 (head_dim / 8 lanes per key, each lane keeping every head's softmax state
// and 8 dims of its output in registers: a few shuffles and FMAs per key and
// head) took 5.6 us at 64 keys and 14.4 us at 8,192 on an H200, where the keys
// need 1 us of DRAM time: at 7 heads a group item spent ~1,000 dependent
// instructions per warp on 64 keys. The tensor-core item does that work in 16
// mma per warp and tile.
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
#include "kernels/mma.cuh"
#include "kernels/reduce.cuh"
#include "kernels/rope.cuh"

namespace orcd::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kAttnTileKeys = 64;
constexpr int kWarpKeys = kAttnTileKeys / kWarps;  // one 16-key slice of an mma
constexpr int kAttnStages = 2;       // tiles in flight per item
constexpr int kAttnMaxGroup = 8;     // query heads per KV head (rows of the mma tile: at most 16)
constexpr int kAttnMaxHeadDim = 128;
constexpr int kAttnMinKeys = 64;     // keys per split at least
constexpr int kAttnMinKeysOneHead = 256;  // the same, for items of a single query head
constexpr int kAttnTargetItems = 264;  // two per SM on a 132-SM part: the grid's blocks
constexpr int kAttnMaxSplits = kAttnTargetItems;  // with one KV head
static_assert(kAttnMaxGroup <= 8, "the heads of an item are rows g of the mma tile (rows g + 8 stay empty)");

// Halves per K/V row in the ring (padded for ldmatrix).
__host__ __device__ constexpr int attn_ld(int head_dim) { return ldmatrix_row_halves(head_dim); }

// Dynamic shared memory of an item: the K and V ring, the rotated q heads, then
// q, k and v as qkv holds them (group + 2 rows); the ring is reused for the
// warps' states at the end.
__host__ __device__ constexpr size_t attn_ring_bytes(int head_dim) {
    return sizeof(__half) * 2 * size_t(kAttnStages) * kAttnTileKeys * attn_ld(head_dim);
}
__host__ __device__ constexpr size_t attn_item_smem_bytes(int group, int head_dim) {
    return attn_ring_bytes(head_dim) + sizeof(float) * size_t(2 * group + 2) * head_dim;
}
static_assert(attn_ring_bytes(32) >= sizeof(float) * kWarps * kAttnMaxGroup * (32 + 2),
              "the ring holds the warps' states");

// The items of a step, known before waiting for the kernel before: the KV
// length comes from positions[0], which the host set before the step. While
// there are at most two items per block, each query head has its own (its
// K/V tiles then come from L2 for the group's other heads); beyond, an item
// takes the whole group, so that each K/V tile is read once.
struct AttnPlan {
    int pos, kv_len;
    int chunk;  // keys per split: whole tiles
    int used;   // splits that hold keys
    int sets;   // query-head sets per KV head: the group size, or 1
    int items;
};

__device__ __forceinline__ AttnPlan attn_plan(const DecodeAttentionArgs& p) {
    AttnPlan plan;
    plan.pos = p.positions[0];
    plan.kv_len = plan.pos + 1;
    const int min_splits = max(1, min(p.splits, (plan.kv_len + kAttnMinKeys - 1) / kAttnMinKeys));
    const bool split_heads = min_splits * p.n_heads <= 2 * int(gridDim.x);
    plan.sets = split_heads ? p.n_heads / p.n_kv_heads : 1;
    // A head's own items take up to kAttnMinKeysOneHead keys: a split more costs
    // more (its partials' round trip through L2 and the merge) than the keys save.
    // A group's items take at least two tiles once they would outnumber the SMs
    // (half the grid): at 8,192 keys and 2 KV heads, 258 items of one tile made
    // decode 1,348 tok/s, 130 items of two 1,400 (bench/NOTES.md, round 26).
    const int sm_splits = max(1, p.splits / 2);  // the grid is n_kv_heads x splits blocks, two per SM
    const int two_tile_splits = (plan.kv_len + 2 * kAttnTileKeys - 1) / (2 * kAttnTileKeys);
    const int splits = split_heads
                           ? max(1, min(p.splits, (plan.kv_len + kAttnMinKeysOneHead - 1) / kAttnMinKeysOneHead))
                           : min(min_splits, max(sm_splits, two_tile_splits));
    // Whole tiles per split: no split ends in a tile of a few keys.
    const int chunk = (plan.kv_len + splits - 1) / splits;
    plan.chunk = (chunk + kAttnTileKeys - 1) / kAttnTileKeys * kAttnTileKeys;
    plan.used = (plan.kv_len + plan.chunk - 1) / plan.chunk;
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
    it.begin = it.split * plan.chunk;
    it.end = min(plan.kv_len, it.begin + plan.chunk);
    return it;
}

// Issues the copies of tile t into its ring slot (all but the new position's
// row, which is filled after waiting; rows past the split's end are zeroed, so
// that their P V terms are 0 x 0) and commits them as one group, possibly empty.
template <int D>
__device__ __forceinline__ void attn_stage_tile(const DecodeAttentionArgs& p, const AttnItem& it, int t,
                                                __half* ring) {
    constexpr int pieces = D / 8, ld = attn_ld(D);
    const int first = it.begin + t * kAttnTileKeys, keys = min(kAttnTileKeys, it.end - first);
    if (keys > 0) {
        __half* ks = ring + size_t(t % kAttnStages) * kAttnTileKeys * ld;
        __half* vs = ks + size_t(kAttnStages) * kAttnTileKeys * ld;
        const size_t base = (size_t(it.kvh) * p.max_context + first) * D;
        for (int e = threadIdx.x; e < kAttnTileKeys * pieces; e += kThreads) {
            const int j = e / pieces, d = 8 * (e % pieces);
            if (first + j == it.pos) continue;
            const bool valid = j < keys;
            const size_t from = valid ? base + size_t(j) * D + d : 0;
            cp_async_16(ks + j * ld + d, p.k_cache + from, valid);
            cp_async_16(vs + j * ld + d, p.v_cache + from, valid);
        }
    }
    cp_async_commit();
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

// The item after waiting for the kernel before, for head_dim D.
template <int D>
__device__ void attn_run_item(const DecodeAttentionArgs& p, const AttnItem& it, const float2* rot, uint8_t* smem) {
    constexpr int head_dim = D, ld = attn_ld(D);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
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

    // Q fragments (A layout, mma.cuh): a[i] holds head g + 8 (i & 1), dims 2q + 8 (i >> 1) of each
    // 16-dim slice; heads past the item's are zero rows.
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int row = g + 8 * (i & 1), d = 16 * kc + 2 * q + 8 * (i >> 1);
            qf[kc][i] = row < it.nh ? pack_half2(qs[row * D + d], qs[row * D + d + 1]) : 0u;
        }
    // This lane's state of rows g (h = 0) and g + 8 (h = 1): max, its part of
    // the sum, and O columns 8 nt + 2q, +1.
    float o[D / 8][4], m[2] = {-FLT_MAX, -FLT_MAX}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;

    const int tiles = (it.end - it.begin + kAttnTileKeys - 1) / kAttnTileKeys;
    const int k0 = warp * kWarpKeys;  // this warp's keys in each tile
    for (int t = 0; t < tiles; ++t) {
        cp_async_wait<kAttnStages - 1>();
        const int first = it.begin + t * kAttnTileKeys, keys = min(kAttnTileKeys, it.end - first);
        __half* ks = ring + size_t(t % kAttnStages) * kAttnTileKeys * ld;
        __half* vs = ks + size_t(kAttnStages) * kAttnTileKeys * ld;
        if (holds_new && it.pos >= first && it.pos < first + keys)
            for (int d = threadIdx.x; d < head_dim; d += kThreads) {
                const size_t at = size_t(it.pos - first) * ld + d;
                ks[at] = fresh[0][d];
                vs[at] = fresh[1][d];
            }
        __syncthreads();
        if (k0 < keys) {
            // S (16 x 16) = Q K^T: K rows are keys (the n of B), D contiguous (its k).
            float s[2][4] = {};
#pragma unroll
            for (int kc = 0; kc < D / 16; ++kc) {
                uint32_t b[4];  // (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15)
                ldmatrix_x4(b, ks + (k0 + 8 * (lane >> 4) + (lane & 7)) * ld + 16 * kc + 8 * ((lane >> 3) & 1));
                mma_16816(s[0], qf[kc], b);
                mma_16816(s[1], qf[kc], b + 2);
            }
            // s[nj][2h + e] is (row g + 8h, key k0 + 8 nj + 2q + e); keys past the split weigh 0.
            if (k0 + kWarpKeys > keys)
#pragma unroll
                for (int nj = 0; nj < 2; ++nj)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (k0 + 8 * nj + 2 * q + (e & 1) >= keys) s[nj][e] = -INFINITY;
            // Online softmax of the warp's rows over its 16 keys (key k0 is real: the max is finite).
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float mx = fmaxf(fmaxf(s[0][2 * h], s[0][2 * h + 1]), fmaxf(s[1][2 * h], s[1][2 * h + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(m[h], mx), alpha = __expf(m[h] - m_new);
                m[h] = m_new;
                float sum = 0.0f;
#pragma unroll
                for (int nj = 0; nj < 2; ++nj)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float pr = __expf(s[nj][2 * h + e] - m_new);
                        s[nj][2 * h + e] = pr;
                        sum += pr;
                    }
                l[h] = l[h] * alpha + sum;
#pragma unroll
                for (int nt = 0; nt < D / 8; ++nt) {
                    o[nt][2 * h] *= alpha;
                    o[nt][2 * h + 1] *= alpha;
                }
            }
            // O (16 x D) += P (16 x 16) V (16 x D): P's C layout is the A layout of the key
            // slice; V rows are keys (the k of B), D contiguous (its n): ldmatrix .trans.
            const uint32_t a[4] = {pack_half2(s[0][0], s[0][1]), pack_half2(s[0][2], s[0][3]),
                                   pack_half2(s[1][0], s[1][1]), pack_half2(s[1][2], s[1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t b[4];  // (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15)
                ldmatrix_x4_trans(b, vs + (k0 + 8 * ((lane >> 3) & 1) + (lane & 7)) * ld + 16 * dp + 8 * (lane >> 4));
                mma_16816(o[2 * dp], a, b);
                mma_16816(o[2 * dp + 1], a, b + 2);
            }
        }
        __syncthreads();  // the slot is refilled below
        attn_stage_tile<D>(p, it, t + kAttnStages, ring);
    }
    cp_async_wait<0>();  // nothing is left in flight when the ring is reused

    // The warps' states into shared memory (over the ring), then merged in a fixed order.
    const int stride = head_dim + 2;
    float* states = reinterpret_cast<float*>(smem);  // [warp][head]{m, l, acc[head_dim]}
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float sum = l[h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = g + 8 * h;
        if (row >= it.nh) continue;
        float* st = states + size_t(warp * it.nh + row) * stride;
        if (q == 0) {
            st[0] = m[h];
            st[1] = sum;
        }
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt) {
            st[2 + 8 * nt + 2 * q] = o[nt][2 * h];
            st[3 + 8 * nt + 2 * q] = o[nt][2 * h + 1];
        }
    }
    __syncthreads();
    const int rec_stride = head_dim + 4;
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
template <int D>
__global__ void __launch_bounds__(kThreads) attention_decode_kernel(DecodeAttentionArgs p) {
    extern __shared__ __align__(16) uint8_t smem[];
    __half* ring = reinterpret_cast<__half*>(smem);
    const AttnPlan plan = attn_plan(p);
    int i = blockIdx.x;
    if (i >= plan.items) return;
    AttnItem it = attn_item(p, plan, i);
    for (int t = 0; t < kAttnStages; ++t) attn_stage_tile<D>(p, it, t, ring);
    // The rotation's (cos, sin) per pair depend only on the position.
    __shared__ float2 rot[kAttnMaxHeadDim / 2];
    if (p.rope_store)
        for (int k = threadIdx.x; k < p.rope_dim / 2; k += kThreads)
            rope_cos_sin(plan.pos, k, p.rope_dim, p.freq_base, p.freq_scale, p.attn_factor, p.freq_factors, rot[k].x,
                         rot[k].y);
    pdl_enter();
    __syncthreads();
    for (;;) {
        attn_run_item<D>(p, it, rot, smem);
        i += gridDim.x;
        if (i >= plan.items) break;
        __syncthreads();  // the ring is free again
        it = attn_item(p, plan, i);
        for (int t = 0; t < kAttnStages; ++t) attn_stage_tile<D>(p, it, t, ring);
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

template <int D>
static void launch_for_dim(const DecodeAttentionArgs& p, cudaStream_t stream) {
    static bool configured = [] {  // up to 78 KB with 8 heads of 128 dims
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(attn_item_smem_bytes(kAttnMaxGroup, D))));
        return true;
    }();
    (void)configured;
    launch_pdl(attention_decode_kernel<D>, unsigned(p.n_kv_heads * p.splits), kThreads,
               attn_item_smem_bytes(p.n_heads / p.n_kv_heads, D), stream, p);
}

void launch_attention_decode(const DecodeAttentionArgs& p, cudaStream_t stream) {
    switch (p.head_dim) {
        case 32: launch_for_dim<32>(p, stream); break;
        case 64: launch_for_dim<64>(p, stream); break;
        case 80: launch_for_dim<80>(p, stream); break;
        case 96: launch_for_dim<96>(p, stream); break;
        case 128: launch_for_dim<128>(p, stream); break;
        default: throw Error(ErrorKind::Unsupported, "decode attention: head_dim " + std::to_string(p.head_dim));
    }
}

}  // namespace orcd::cuda
