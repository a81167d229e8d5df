// Decode's RoPE and KV store in one launch: rotates q and k of the step's
// tokens in place (as rope.cu) and writes k (rotated) and v into the fp16
// caches (as kv_store.cu), so the attention kernel can follow at once.
// One thread per item of a token: a rotated pair of a q or k head, an element
// of v, or an element of k beyond rope_dim (stored unrotated).
#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/rope.cuh"

namespace orcd::cuda {

namespace {

struct RopeStoreArgs {
    float* qkv;
    int n, ld;
    const int32_t* positions;
    int n_heads, n_kv_heads, head_dim, rope_dim;
    bool neox;
    float freq_base, freq_scale, attn_factor;
    const float* freq_factors;
    int max_context;
    __half* k_cache;
    __half* v_cache;
};

__global__ void rope_store_kernel(RopeStoreArgs p) {
    pdl_enter();
    const int half = p.rope_dim / 2, heads = p.n_heads + p.n_kv_heads;
    const int q_dim = p.n_heads * p.head_dim, kv_dim = p.n_kv_heads * p.head_dim;
    const int tail = p.head_dim - p.rope_dim;
    const int pairs = heads * half, per_token = pairs + kv_dim + p.n_kv_heads * tail;
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= int64_t(p.n) * per_token) return;
    const int t = int(idx / per_token), item = int(idx % per_token);
    const int pos = p.positions[t];
    float* row = p.qkv + int64_t(t) * p.ld;
    if (item < pairs) {
        const int h = item / half, i = item % half;
        float c, s;
        rope_cos_sin(pos, i, p.rope_dim, p.freq_base, p.freq_scale, p.attn_factor, p.freq_factors, c, s);
        float* head = row + int64_t(h) * p.head_dim;  // q heads, then k heads: contiguous
        int a, b;
        rope_pair(p.neox, i, half, a, b);
        const float x0 = head[a], x1 = head[b];
        const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        head[a] = y0;
        head[b] = y1;
        if (h >= p.n_heads) {
            __half* dst = p.k_cache + (int64_t(h - p.n_heads) * p.max_context + pos) * p.head_dim;
            dst[a] = __float2half_rn(y0);
            dst[b] = __float2half_rn(y1);
        }
    } else if (item < pairs + kv_dim) {
        const int e = item - pairs, kvh = e / p.head_dim, d = e % p.head_dim;
        p.v_cache[(int64_t(kvh) * p.max_context + pos) * p.head_dim + d] = __float2half_rn(row[q_dim + kv_dim + e]);
    } else {
        const int e = item - pairs - kv_dim, kvh = e / tail, d = p.rope_dim + e % tail;
        p.k_cache[(int64_t(kvh) * p.max_context + pos) * p.head_dim + d] =
            __float2half_rn(row[q_dim + kvh * p.head_dim + d]);
    }
}

}  // namespace

void launch_rope_store(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& r, int max_context,
                       __half* k_cache, __half* v_cache, cudaStream_t stream) {
    const int per_token = (r.n_heads + r.n_kv_heads) * (r.rope_dim / 2) + r.n_kv_heads * r.head_dim +
                          r.n_kv_heads * (r.head_dim - r.rope_dim);
    const int64_t total = int64_t(n) * per_token;
    if (total == 0) return;
    const RopeStoreArgs args{qkv,          n,          ld,           positions,         r.n_heads,  r.n_kv_heads,
                             r.head_dim,   r.rope_dim, r.style == RopeStyle::NeoX,       r.freq_base, r.freq_scale,
                             r.attn_factor, r.freq_factors, max_context, k_cache,         v_cache};
    launch_pdl(rope_store_kernel, unsigned((total + 127) / 128), 128, 0, stream, args);
}

}  // namespace orcd::cuda
