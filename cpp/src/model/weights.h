// Handles to the weights as a backend placed them (host or device memory).
#pragma once

#include <cstdint>
#include <vector>

#include "orcd/gguf.h"

namespace orcd {

// A 1-D or 2-D weight: `rows` rows of `cols` elements of `type`, row-major.
struct Weight {
    gguf::TensorType type = gguf::TensorType::F32;
    int64_t cols = 0;
    int64_t rows = 0;
    const void* data = nullptr;  // in the backend's memory
    explicit operator bool() const { return data != nullptr; }
};

// A block of rows of a projection whose output is written from column `offset`
// of a wider buffer (q, k, v side by side; gate, up side by side), with an
// optional bias.
struct Projection {
    Weight w;
    Weight bias;
    int64_t offset = 0;
};

// Per layer; a weight an architecture lacks is left empty (fused or split QKV,
// fused or split gate/up, optional biases).
struct LayerWeights {
    Weight attn_norm;
    Weight wq, wk, wv, wqkv;
    Weight bq, bk, bv;
    Weight wo;
    Weight ffn_norm;
    Weight w_gate, w_up, w_gate_up;
    Weight w_down;
    // The QKV and gate/up products as the forward pass runs them: split weights
    // that lie next to each other in the backend's memory with one type are
    // merged into one block (one matrix product, one launch). Set after loading.
    std::vector<Projection> qkv_parts, gate_up_parts;
};

struct ModelWeights {
    Weight tok_embd;
    Weight output_norm;
    Weight output;  // the token embedding when tied
    std::vector<LayerWeights> layers;
    Weight rope_freq_factors_long;   // per rotated pair, optional: divides each frequency
    Weight rope_freq_factors_short;  // Phi-3's short-context factors, optional
};

}  // namespace orcd
