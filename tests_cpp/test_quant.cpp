// The shared block formats: fp16 conversion over every half, and each type's
// per-element access agreeing bit for bit with its whole-block dequantisation.
// (Agreement with gguf's numpy reference is checked in tests_py/test_quant.py.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "orcd/error.h"
#include "quant/block_types.h"
#include "quant/dequant.h"
#include "quant/dequantize.h"
#include "random_tensors.h"

using namespace orcd;
using gguf::TensorType;

namespace {

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

TEST(Fp16, EveryHalfConvertsExactly) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
        const float sign = (h & 0x8000) ? -1.0f : 1.0f;
        const float got = quant::fp16_to_float(uint16_t(h));
        if (exponent == 0x1f) {
            if (mantissa == 0) EXPECT_EQ(got, sign * INFINITY) << h;
            else EXPECT_EQ(bits_of(got), ((h & 0x8000u) << 16) | 0x7f800000u | uint32_t(mantissa) << 13) << h;
            continue;
        }
        const float expected = exponent == 0 ? sign * std::ldexp(float(mantissa), -24)
                                             : sign * std::ldexp(float(1024 + mantissa), exponent - 25);
        EXPECT_EQ(bits_of(got), bits_of(expected)) << "half 0x" << std::hex << h;
    }
}

TEST(Fp16, Bfloat16IsTheUpperHalfOfAFloat) {
    EXPECT_EQ(quant::bf16_to_float(0x3f80), 1.0f);
    EXPECT_EQ(quant::bf16_to_float(0xc040), -3.0f);
    EXPECT_EQ(bits_of(quant::bf16_to_float(0x7fc1)), 0x7fc10000u);
}

TEST(Quant, IQ4LevelsMatchTheTable) {
    for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(quant::iq4_level(i), quant::kIQ4LevelsLow[i]);
        EXPECT_EQ(quant::iq4_level(8 + i), quant::kIQ4LevelsHigh[i]);
    }
}

class QuantBlockTypes : public ::testing::TestWithParam<TensorType> {};

TEST_P(QuantBlockTypes, ElementAccessMatchesBlockDequantisation) {
    const TensorType type = GetParam();
    std::mt19937 rng(7);
    const auto bytes = orcd::testing::random_weights(type, 1, 4 * 256, rng);
    const bool handled = quant::visit_block_type(type, [&](auto tag) {
        using Block = typename decltype(tag)::type;
        constexpr int kElements = quant::kBlockElements<Block>;
        const auto* blocks = reinterpret_cast<const Block*>(bytes.data());
        for (int b = 0; b < 4 * 256 / kElements; ++b) {
            float whole[kElements];
            quant::dequantize_block(blocks[b], whole);
            for (int i = 0; i < kElements; ++i)
                ASSERT_EQ(bits_of(quant::dequantize_element(blocks[b], i)), bits_of(whole[i]))
                    << "block " << b << " element " << i;
        }
    });
    EXPECT_TRUE(handled);
}

INSTANTIATE_TEST_SUITE_P(AllBlockTypes, QuantBlockTypes,
                         ::testing::Values(TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                           TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                                           TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_NL,
                                           TensorType::IQ4_XS),
                         [](const auto& info) { return std::string(gguf::traits(info.param).name); });

TEST(Quant, DequantizeRejectsPartialBlocksAndUnhandledTypes) {
    std::vector<uint8_t> raw(1024);
    std::vector<float> out(1024);
    try {
        quant::dequantize(TensorType::Q4_0, raw.data(), out.data(), 16);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    }
    try {
        quant::dequantize(TensorType::IQ2_XXS, raw.data(), out.data(), 256);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
        EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos);
    }
}

}  // namespace
