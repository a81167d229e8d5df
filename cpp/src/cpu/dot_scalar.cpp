// Portable kernels: dequantise a block into a small array and accumulate into
// eight partial sums, a shape the compiler vectorises for any target.
#include <type_traits>

#include "cpu/dot_kernels.h"
#include "quant/block_types.h"
#include "quant/dequant.h"

namespace orcd::cpu::kernels {
namespace {

constexpr int kLanes = 8;

inline float sum_lanes(const float (&acc)[kLanes]) {
    float s = 0;
    for (float v : acc) s += v;
    return s;
}

template <typename Block>
float row_dot_blocks(const uint8_t* row, const float* x, int64_t cols) {
    constexpr int kElements = quant::kBlockElements<Block>;
    const auto* blocks = reinterpret_cast<const Block*>(row);
    float acc[kLanes] = {};
    for (int64_t b = 0; b < cols / kElements; ++b) {
        float w[kElements];
        quant::dequantize_block(blocks[b], w);
        const float* xb = x + b * kElements;
        for (int j = 0; j < kElements; j += kLanes)
            for (int k = 0; k < kLanes; ++k) acc[k] += w[j + k] * xb[j + k];
    }
    return sum_lanes(acc);
}

// Plain float types: ToFloat converts one stored element.
template <typename Stored, float (*ToFloat)(Stored)>
float row_dot_plain(const uint8_t* row, const float* x, int64_t cols) {
    const auto* w = reinterpret_cast<const Stored*>(row);
    float acc[kLanes] = {};
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes)
        for (int k = 0; k < kLanes; ++k) acc[k] += ToFloat(w[c + k]) * x[c + k];
    float tail = 0;
    for (; c < cols; ++c) tail += ToFloat(w[c]) * x[c];
    return sum_lanes(acc) + tail;
}

float identity(float v) { return v; }

float dot_f32(const float* a, const float* b, int64_t n) {
    return row_dot_plain<float, identity>(reinterpret_cast<const uint8_t*>(a), b, n);
}

}  // namespace

RowDot scalar_row_dot(gguf::TensorType type) {
    using T = gguf::TensorType;
    switch (type) {
        case T::F32: return row_dot_plain<float, identity>;
        case T::F16: return row_dot_plain<uint16_t, quant::fp16_to_float>;
        case T::BF16: return row_dot_plain<uint16_t, quant::bf16_to_float>;
        default: break;
    }
    RowDot kernel = nullptr;
    quant::visit_block_type(type, [&](auto tag) { kernel = row_dot_blocks<typename decltype(tag)::type>; });
    return kernel;
}

void scalar_tile_dot(const float* w, int64_t n_rows, const float* x, int64_t n, int64_t cols, float* out,
                     int64_t out_stride) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < n_rows; ++r) out[i * out_stride + r] = dot_f32(w + r * cols, x + i * cols, cols);
}

}  // namespace orcd::cpu::kernels
