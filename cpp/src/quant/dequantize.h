// Host entry point: dequantise rows of any supported GGUF type to float32,
// bit-exact with gguf's numpy reference.
#pragma once

#include <cstdint>

#include "orcd/gguf.h"

namespace orcd::quant {

// True when dequantize() handles the type: F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS.
bool can_dequantize(gguf::TensorType type);

// Converts n elements (a whole number of blocks) starting at src into dst.
// src must be 2-byte aligned. Throws Unsupported for a type it does not
// handle and InvalidArgument when n is not a whole number of blocks.
void dequantize(gguf::TensorType type, const uint8_t* src, float* dst, int64_t n);

}  // namespace orcd::quant
