// Rotary position embedding of q and k, in place: one thread per (token, pair),
// rotating that pair in every q and k head, so the angle (a double-precision
// power and sincos) is computed once per token and pair, not once per head.
// Normal style rotates (2i, 2i+1), NeoX rotates (i, i + rope_dim/2); the angle of
// pair i is pos * freq_scale * base^(-2i/rope_dim) / freq_factors[i]. Q/K biases
// were already added by the projection's epilogue.
#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/rope.cuh"

namespace orcd::cuda {

__global__ void rope_kernel(float* qkv, int n, int ld, const int32_t* positions, int heads, int head_dim,
                            int rope_dim, bool neox, float freq_base, float freq_scale, float attn_factor,
                            const float* freq_factors) {
    pdl_enter();
    const int half = rope_dim / 2;
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= int64_t(n) * half) return;
    const int i = int(idx % half), t = int(idx / half);
    float c, s;
    rope_cos_sin(positions[t], i, rope_dim, freq_base, freq_scale, attn_factor, freq_factors, c, s);
    int a, b;
    rope_pair(neox, i, half, a, b);
    float* row = qkv + int64_t(t) * ld;
    for (int h = 0; h < heads; ++h) {  // q heads, then k heads: contiguous
        float* head = row + int64_t(h) * head_dim;
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * c - x1 * s;
        head[b] = x0 * s + x1 * c;
    }
}

void launch_rope(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& p, cudaStream_t stream) {
    const int heads = p.n_heads + p.n_kv_heads;
    const int64_t total = int64_t(n) * (p.rope_dim / 2);
    if (total == 0 || heads == 0) return;
    launch_pdl(rope_kernel, unsigned((total + 127) / 128), 128, 0, stream, qkv, n, ld, positions, heads, p.head_dim,
               p.rope_dim, p.style == RopeStyle::NeoX, p.freq_base, p.freq_scale, p.attn_factor, p.freq_factors);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
