// RoPE settings shared by the architectures and the backends.
#pragma once

#include "orcd/model.h"

namespace orcd {

struct RopeParams {
    RopeStyle style = RopeStyle::Normal;
    int n_heads = 0, n_kv_heads = 0, head_dim = 0;
    int rope_dim = 0;               // rotated leading dimensions of each head
    float freq_base = 10000.0f;
    float freq_scale = 1.0f;        // linear position scaling (1 = none)
    float attn_factor = 1.0f;       // multiplies cos and sin (Phi-3 long-context scaling)
    const float* freq_factors = nullptr;  // rope_dim/2 divisors of the frequencies, or null
};

}  // namespace orcd
