// Block layouts of the quantised GGUF types, as ggml stores them (little-endian,
// packed). Scales are raw IEEE half bits (uint16_t); see fp16.h. A row of a
// tensor is a plain array of these blocks; the pointer must be 2-byte aligned.
#pragma once

#include <cstdint>

namespace orcd::quant {

inline constexpr int kBlock32 = 32;    // elements of the "legacy" blocks and IQ4_NL
inline constexpr int kBlockK = 256;    // elements of a K-quant super-block and IQ4_XS

struct block_q4_0 {            // x = d * (q - 8)
    uint16_t d;
    uint8_t qs[kBlock32 / 2];  // element j in the low nibble of qs[j], j+16 in the high one
};
struct block_q4_1 {            // x = d * q + m
    uint16_t d;
    uint16_t m;
    uint8_t qs[kBlock32 / 2];
};
struct block_q5_0 {            // x = d * (q - 16), bit 4 of q for element j is bit j of qh
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kBlock32 / 2];
};
struct block_q5_1 {            // x = d * q + m
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kBlock32 / 2];
};
struct block_q8_0 {            // x = d * q
    uint16_t d;
    int8_t qs[kBlock32];
};
struct block_q2_k {            // 16 sub-blocks of 16: x = d*(sc&15) * q - dmin*(sc>>4)
    uint8_t scales[kBlockK / 16];
    uint8_t qs[kBlockK / 4];
    uint16_t d;
    uint16_t dmin;
};
struct block_q3_k {            // 16 sub-blocks of 16 with 6-bit signed scales
    uint8_t hmask[kBlockK / 8];
    uint8_t qs[kBlockK / 4];
    uint8_t scales[12];
    uint16_t d;
};
struct block_q4_k {            // 8 sub-blocks of 32 with 6-bit scales and mins
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[kBlockK / 2];
};
struct block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kBlockK / 8];
    uint8_t qs[kBlockK / 2];
};
struct block_q6_k {            // 16 sub-blocks of 16 with int8 scales: x = d*sc * (q - 32)
    uint8_t ql[kBlockK / 2];
    uint8_t qh[kBlockK / 4];
    int8_t scales[kBlockK / 16];
    uint16_t d;
};
struct block_iq4_nl {          // x = d * kIQ4Values[q]
    uint16_t d;
    uint8_t qs[kBlock32 / 2];
};
struct block_iq4_xs {          // 8 sub-blocks of 32 with 6-bit signed scales
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[kBlockK / 64];
    uint8_t qs[kBlockK / 2];
};

static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q2_k) == 84);
static_assert(sizeof(block_q3_k) == 110);
static_assert(sizeof(block_q4_k) == 144);
static_assert(sizeof(block_q5_k) == 176);
static_assert(sizeof(block_q6_k) == 210);
static_assert(sizeof(block_iq4_nl) == 18);
static_assert(sizeof(block_iq4_xs) == 136);

}  // namespace orcd::quant
