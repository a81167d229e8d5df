// Architectures as data: hyper-parameters from the metadata and the weights
// each one needs, with their expected shapes. Adding an architecture touches
// arch.cpp alone.
#pragma once

#include <string>
#include <vector>

#include "model/rope.h"
#include "model/weights.h"
#include "orcd/gguf.h"
#include "orcd/model.h"

namespace orcd {

// Reads the hyper-parameters; throws Unsupported for an unknown architecture
// and InvalidFile for missing or inconsistent values.
ModelConfig read_config(const gguf::File& file);

// One tensor the architecture uses: its name, expected shape (innermost first),
// and the slot of ModelWeights it fills.
struct TensorSlot {
    std::string name;
    int64_t cols = 0;
    int64_t rows = 1;  // 1 for vectors
    bool required = true;
    Weight* slot = nullptr;
};

// The tensors of this architecture present or required in the file, bound to
// the slots of `weights` (which it sizes). Throws Unsupported naming a missing
// or mis-shaped tensor and the shape expected.
std::vector<TensorSlot> bind_tensors(const ModelConfig& config, const gguf::File& file, ModelWeights& weights);

// RoPE settings for a session whose context holds max_context tokens.
RopeParams rope_params(const ModelConfig& config, const gguf::File& file, const ModelWeights& weights, int max_context);

}  // namespace orcd

namespace orcd {
// Llama 3.1's per-frequency divisors when the metadata asks for "llama3" RoPE
// scaling and the file carries no rope_freqs tensor; empty otherwise.
std::vector<float> llama3_rope_factors(const ModelConfig& config, const gguf::File& file);
}  // namespace orcd
