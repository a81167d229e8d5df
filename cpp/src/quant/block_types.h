// The mapping from a GGUF tensor type to its block struct, for host code that
// dispatches once per row (or tensor) and then runs a kernel typed on the block.
#pragma once

#include <type_traits>

#include "orcd/gguf.h"
#include "quant/blocks.h"

namespace orcd::quant {

// Calls fn(std::type_identity<Block>{}) for a block-quantised type and returns
// true; returns false (fn not called) for plain and unknown types.
template <typename Fn>
bool visit_block_type(gguf::TensorType type, Fn&& fn) {
    using T = gguf::TensorType;
    switch (type) {
        case T::Q4_0: fn(std::type_identity<block_q4_0>{}); return true;
        case T::Q4_1: fn(std::type_identity<block_q4_1>{}); return true;
        case T::Q5_0: fn(std::type_identity<block_q5_0>{}); return true;
        case T::Q5_1: fn(std::type_identity<block_q5_1>{}); return true;
        case T::Q8_0: fn(std::type_identity<block_q8_0>{}); return true;
        case T::Q2_K: fn(std::type_identity<block_q2_k>{}); return true;
        case T::Q3_K: fn(std::type_identity<block_q3_k>{}); return true;
        case T::Q4_K: fn(std::type_identity<block_q4_k>{}); return true;
        case T::Q5_K: fn(std::type_identity<block_q5_k>{}); return true;
        case T::Q6_K: fn(std::type_identity<block_q6_k>{}); return true;
        case T::IQ4_NL: fn(std::type_identity<block_iq4_nl>{}); return true;
        case T::IQ4_XS: fn(std::type_identity<block_iq4_xs>{}); return true;
        default: return false;
    }
}

// True for the plain float types F32, F16 and BF16.
inline bool is_float_type(gguf::TensorType type) {
    return type == gguf::TensorType::F32 || type == gguf::TensorType::F16 || type == gguf::TensorType::BF16;
}

}  // namespace orcd::quant
