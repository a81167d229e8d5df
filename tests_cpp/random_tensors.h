// Random weight rows of any supported GGUF type for kernel tests: random
// quantised bits, with finite fp16 scales of moderate size so every element
// is a meaningful number.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "orcd/gguf.h"

namespace orcd::testing {

// Byte offsets of the fp16 scale fields (d, dmin, m) inside each block.
inline const std::vector<int>& scale_offsets(gguf::TensorType type) {
    using T = gguf::TensorType;
    static const std::map<T, std::vector<int>> offsets = {
        {T::Q4_0, {0}},     {T::Q4_1, {0, 2}},   {T::Q5_0, {0}},      {T::Q5_1, {0, 2}},
        {T::Q8_0, {0}},     {T::Q2_K, {80, 82}}, {T::Q3_K, {108}},    {T::Q4_K, {0, 2}},
        {T::Q5_K, {0, 2}},  {T::Q6_K, {208}},    {T::IQ4_NL, {0}},    {T::IQ4_XS, {0}},
    };
    static const std::vector<int> none;
    auto it = offsets.find(type);
    return it == offsets.end() ? none : it->second;
}

// A random half in +-[2^-10, 1): sign, exponent 5..14, any mantissa.
inline uint16_t random_half(std::mt19937& rng) {
    const uint32_t bits = rng();
    return uint16_t((bits & 0x8000u) | ((5 + bits % 10) << 10) | ((bits >> 4) & 0x3ffu));
}

// `rows` rows of `cols` elements of `type`, laid out as a GGUF tensor.
inline std::vector<uint8_t> random_weights(gguf::TensorType type, int64_t rows, int64_t cols, std::mt19937& rng) {
    using T = gguf::TensorType;
    const gguf::TypeTraits& traits = gguf::traits(type);
    const int64_t n_bytes = rows * int64_t(gguf::row_bytes(type, uint64_t(cols)));
    std::vector<uint8_t> bytes(static_cast<size_t>(n_bytes));
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    if (type == T::F32 || type == T::BF16) {
        for (int64_t i = 0; i < rows * cols; ++i) {
            const float v = uniform(rng);
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            if (type == T::F32) std::memcpy(&bytes[size_t(4 * i)], &bits, 4);
            else { const uint16_t h = uint16_t(bits >> 16); std::memcpy(&bytes[size_t(2 * i)], &h, 2); }
        }
        return bytes;
    }
    if (type == T::F16) {
        for (int64_t i = 0; i < rows * cols; ++i) {
            const uint16_t h = random_half(rng);
            std::memcpy(&bytes[size_t(2 * i)], &h, 2);
        }
        return bytes;
    }
    for (auto& b : bytes) b = uint8_t(rng());
    for (size_t block = 0; block < bytes.size() / traits.block_bytes; ++block)
        for (int offset : scale_offsets(type)) {
            const uint16_t h = random_half(rng);
            std::memcpy(&bytes[block * traits.block_bytes + size_t(offset)], &h, 2);
        }
    return bytes;
}

// Activations in [-1, 1] with no zeros, so every weight contributes.
inline std::vector<float> random_activations(int64_t count, std::mt19937& rng) {
    std::uniform_real_distribution<float> uniform(0.05f, 1.0f);
    std::vector<float> x(static_cast<size_t>(count));
    for (auto& v : x) v = (rng() & 1 ? 1.0f : -1.0f) * uniform(rng);
    return x;
}

}  // namespace orcd::testing
