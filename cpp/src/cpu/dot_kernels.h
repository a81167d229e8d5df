// The per-instruction-set kernels behind matmul (internal to cpu/).
#pragma once

#include <cstdint>

#include "orcd/gguf.h"

namespace orcd::cpu::kernels {

// Dot product of one weight row (cols elements of its type) with x.
using RowDot = float (*)(const uint8_t* row, const float* x, int64_t cols);

// Dot products of a tile of float weight rows with activation rows:
// out[i*out_stride + r] = dot(w + r*cols, x + i*cols) for r < n_rows, i < n.
using TileDot = void (*)(const float* w, int64_t n_rows, const float* x, int64_t n, int64_t cols, float* out,
                         int64_t out_stride);

// Exact dequantisation of one row (as quant::dequantize) into out.
using RowDequantize = void (*)(const uint8_t* row, float* out, int64_t cols);

// nullptr when the type has no kernel in that instruction set.
RowDot scalar_row_dot(gguf::TensorType type);
RowDot avx2_row_dot(gguf::TensorType type);
RowDequantize avx2_row_dequantize(gguf::TensorType type);

void scalar_tile_dot(const float* w, int64_t n_rows, const float* x, int64_t n, int64_t cols, float* out,
                     int64_t out_stride);
void avx2_tile_dot(const float* w, int64_t n_rows, const float* x, int64_t n, int64_t cols, float* out,
                   int64_t out_stride);

}  // namespace orcd::cpu::kernels
