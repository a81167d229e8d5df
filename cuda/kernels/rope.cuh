// The rotation of one RoPE pair, shared by the rope kernel and the fused
// rope + KV store of decode.
#pragma once

#include <cuda_runtime.h>

namespace orcd::cuda {

// cos and sin (times attn_factor) of pair i at position pos: the angle is
// pos * freq_scale * base^(-2i/rope_dim) / freq_factors[i]. In double: at
// positions of several thousand a float angle would be off by ~1e-3 rad; the
// few sincos per token cost nothing next to the matmuls.
__device__ __forceinline__ void rope_cos_sin(int pos, int i, int rope_dim, float freq_base, float freq_scale,
                                             float attn_factor, const float* freq_factors, float& c, float& s) {
    double freq = pow(double(freq_base), -2.0 * i / rope_dim);
    if (freq_factors) freq /= freq_factors[i];
    const double theta = double(pos) * freq_scale * freq;
    double sd, cd;
    sincos(theta, &sd, &cd);
    c = float(cd * attn_factor);
    s = float(sd * attn_factor);
}

// Element indices (within a head) of pair i: Normal style (2i, 2i+1), NeoX (i, i + half).
__device__ __forceinline__ void rope_pair(bool neox, int i, int half, int& a, int& b) {
    a = neox ? i : 2 * i;
    b = neox ? i + half : 2 * i + 1;
}

}  // namespace orcd::cuda
