// Dequantisation of every block format, host and device. Each type has
//   dequantize_block(const block&, float* out)   all elements, in order
//   dequantize_element(const block&, int i)      one element
// and both round exactly like gguf's numpy reference (gguf.quants): every
// product and difference is rounded on its own, in the same order.
#pragma once

#include <cstdint>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/host_device.h"

namespace orcd::quant {

// ---- sub-block scales -------------------------------------------------------

// Q4_K/Q5_K: 6-bit scale and min of sub-block j (0..7), packed in 12 bytes.
ORCD_HD inline void k_scale_min(const uint8_t* s, int j, int& scale, int& min) {
    if (j < 4) {
        scale = s[j] & 63;
        min = s[j + 4] & 63;
    } else {
        scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 2) & 0x30);
        min = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
    }
}

// Q3_K: signed 6-bit scale of sub-block i (0..15).
ORCD_HD inline int q3_k_scale(const uint8_t* s, int i) {
    const int low = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
    const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (low | high << 4) - 32;
}

// IQ4_XS: signed 6-bit scale of sub-block i (0..7).
ORCD_HD inline int iq4_xs_scale(const block_iq4_xs& b, int i) {
    const int low = (b.scales_l[i / 2] >> (4 * (i % 2))) & 0x0f;
    const int high = (b.scales_h >> (2 * i)) & 3;
    return (low | high << 4) - 32;
}

// The 16 non-linear levels of IQ4_NL/IQ4_XS, packed eight int8 per word so the
// table is a pair of constants, which device code can read without a __constant__ array.
constexpr uint64_t pack_int8x8(const int8_t (&v)[8]) {
    uint64_t word = 0;
    for (int i = 7; i >= 0; --i) word = word << 8 | uint8_t(v[i]);
    return word;
}
inline constexpr int8_t kIQ4LevelsLow[8] = {-127, -104, -83, -65, -49, -35, -22, -10};
inline constexpr int8_t kIQ4LevelsHigh[8] = {1, 13, 25, 38, 53, 69, 89, 113};
inline constexpr uint64_t kIQ4PackedLow = pack_int8x8(kIQ4LevelsLow);
inline constexpr uint64_t kIQ4PackedHigh = pack_int8x8(kIQ4LevelsHigh);

ORCD_HD inline int iq4_level(int index) {
    const uint64_t word = index < 8 ? kIQ4PackedLow : kIQ4PackedHigh;
    return int8_t(uint8_t(word >> (8 * (index & 7))));
}

// ---- 32-element blocks --------------------------------------------------------

// Nibble of element i (0..31) of a 16-byte array: low nibbles first, then high.
ORCD_HD inline int nibble32(const uint8_t* qs, int i) { return i < 16 ? (qs[i] & 0x0f) : (qs[i - 16] >> 4); }

ORCD_HD inline float dequantize_element(const block_q4_0& b, int i) {
    return mul_rn(fp16_to_float(b.d), float(nibble32(b.qs, i) - 8));
}
ORCD_HD inline float dequantize_element(const block_q4_1& b, int i) {
    return add_rn(mul_rn(fp16_to_float(b.d), float(nibble32(b.qs, i))), fp16_to_float(b.m));
}
ORCD_HD inline int q5_value(const uint8_t* qh, const uint8_t* qs, int i) {
    return nibble32(qs, i) | int((load_u32_le(qh) >> i) & 1u) << 4;
}
ORCD_HD inline float dequantize_element(const block_q5_0& b, int i) {
    return mul_rn(fp16_to_float(b.d), float(q5_value(b.qh, b.qs, i) - 16));
}
ORCD_HD inline float dequantize_element(const block_q5_1& b, int i) {
    return add_rn(mul_rn(fp16_to_float(b.d), float(q5_value(b.qh, b.qs, i))), fp16_to_float(b.m));
}
ORCD_HD inline float dequantize_element(const block_q8_0& b, int i) {
    return mul_rn(float(b.qs[i]), fp16_to_float(b.d));
}
ORCD_HD inline float dequantize_element(const block_iq4_nl& b, int i) {
    return mul_rn(fp16_to_float(b.d), float(iq4_level(nibble32(b.qs, i))));
}

// Whole blocks: the scale is converted once and each byte yields elements j and j+16.
ORCD_HD inline void dequantize_block(const block_q4_0& b, float* out) {
    const float d = fp16_to_float(b.d);
    for (int j = 0; j < 16; ++j) {
        out[j] = mul_rn(d, float((b.qs[j] & 0x0f) - 8));
        out[j + 16] = mul_rn(d, float((b.qs[j] >> 4) - 8));
    }
}
ORCD_HD inline void dequantize_block(const block_q4_1& b, float* out) {
    const float d = fp16_to_float(b.d), m = fp16_to_float(b.m);
    for (int j = 0; j < 16; ++j) {
        out[j] = add_rn(mul_rn(d, float(b.qs[j] & 0x0f)), m);
        out[j + 16] = add_rn(mul_rn(d, float(b.qs[j] >> 4)), m);
    }
}
ORCD_HD inline void dequantize_block(const block_q5_0& b, float* out) {
    const float d = fp16_to_float(b.d);
    const uint32_t qh = load_u32_le(b.qh);
    for (int j = 0; j < 16; ++j) {
        out[j] = mul_rn(d, float(int((b.qs[j] & 0x0f) | ((qh >> j) & 1u) << 4) - 16));
        out[j + 16] = mul_rn(d, float(int((b.qs[j] >> 4) | ((qh >> (j + 16)) & 1u) << 4) - 16));
    }
}
ORCD_HD inline void dequantize_block(const block_q5_1& b, float* out) {
    const float d = fp16_to_float(b.d), m = fp16_to_float(b.m);
    const uint32_t qh = load_u32_le(b.qh);
    for (int j = 0; j < 16; ++j) {
        out[j] = add_rn(mul_rn(d, float((b.qs[j] & 0x0f) | ((qh >> j) & 1u) << 4)), m);
        out[j + 16] = add_rn(mul_rn(d, float((b.qs[j] >> 4) | ((qh >> (j + 16)) & 1u) << 4)), m);
    }
}
ORCD_HD inline void dequantize_block(const block_q8_0& b, float* out) {
    const float d = fp16_to_float(b.d);
    for (int j = 0; j < kBlock32; ++j) out[j] = mul_rn(float(b.qs[j]), d);
}
ORCD_HD inline void dequantize_block(const block_iq4_nl& b, float* out) {
    const float d = fp16_to_float(b.d);
    for (int j = 0; j < 16; ++j) {
        out[j] = mul_rn(d, float(iq4_level(b.qs[j] & 0x0f)));
        out[j + 16] = mul_rn(d, float(iq4_level(b.qs[j] >> 4)));
    }
}

// ---- 256-element super-blocks ------------------------------------------------

// Q2_K element i: 2-bit value; each 32-byte half of qs holds 128 elements as
// four 2-bit planes of 32.
ORCD_HD inline int q2_k_value(const block_q2_k& b, int i) {
    const int half = i / 128, plane = (i % 128) / 32, j = i % 32;
    return (b.qs[32 * half + j] >> (2 * plane)) & 3;
}
ORCD_HD inline float dequantize_element(const block_q2_k& b, int i) {
    const uint8_t sc = b.scales[i / 16];
    const float dl = mul_rn(fp16_to_float(b.d), float(sc & 0x0f));
    const float ml = mul_rn(fp16_to_float(b.dmin), float(sc >> 4));
    return sub_rn(mul_rn(dl, float(q2_k_value(b, i))), ml);
}
ORCD_HD inline void dequantize_block(const block_q2_k& b, float* out) {
    const float d = fp16_to_float(b.d), dmin = fp16_to_float(b.dmin);
    for (int sub = 0; sub < 16; ++sub) {
        const float dl = mul_rn(d, float(b.scales[sub] & 0x0f));
        const float ml = mul_rn(dmin, float(b.scales[sub] >> 4));
        for (int i = 16 * sub; i < 16 * sub + 16; ++i) out[i] = sub_rn(mul_rn(dl, float(q2_k_value(b, i))), ml);
    }
}

// Q3_K element i: 2 low bits as in Q2_K, minus 4 when its bit in hmask is clear.
ORCD_HD inline int q3_k_value(const block_q3_k& b, int i) {
    const int half = i / 128, plane = (i % 128) / 32, j = i % 32;
    const int low = (b.qs[32 * half + j] >> (2 * plane)) & 3;
    const int high_set = (b.hmask[j] >> (i / 32)) & 1;
    return low - (high_set ? 0 : 4);
}
ORCD_HD inline float dequantize_element(const block_q3_k& b, int i) {
    const float dl = mul_rn(fp16_to_float(b.d), float(q3_k_scale(b.scales, i / 16)));
    return mul_rn(dl, float(q3_k_value(b, i)));
}
ORCD_HD inline void dequantize_block(const block_q3_k& b, float* out) {
    const float d = fp16_to_float(b.d);
    for (int sub = 0; sub < 16; ++sub) {
        const float dl = mul_rn(d, float(q3_k_scale(b.scales, sub)));
        for (int i = 16 * sub; i < 16 * sub + 16; ++i) out[i] = mul_rn(dl, float(q3_k_value(b, i)));
    }
}

// Q4_K/Q5_K element i: sub-block i/32; sub-blocks 2g and 2g+1 share the 32
// bytes qs[32g..], low then high nibbles. Q5_K adds a fifth bit: bit `sub` of
// qh[j] for element j of sub-block `sub`. The two types differ in nothing else.
ORCD_HD inline int k_nibble(const uint8_t* qs, int i) {
    const int sub = i / 32;
    return (qs[32 * (sub / 2) + i % 32] >> (4 * (sub % 2))) & 0x0f;
}
ORCD_HD inline int k_fifth_bit(const block_q4_k&, int, int) { return 0; }
ORCD_HD inline int k_fifth_bit(const block_q5_k& b, int sub, int j) { return ((b.qh[j] >> sub) & 1) << 4; }

template <typename Block>  // block_q4_k or block_q5_k
ORCD_HD inline float dequantize_k_element(const Block& b, int i) {
    int scale, min;
    k_scale_min(b.scales, i / 32, scale, min);
    const float dl = mul_rn(fp16_to_float(b.d), float(scale));
    const float ml = mul_rn(fp16_to_float(b.dmin), float(min));
    return sub_rn(mul_rn(dl, float(k_nibble(b.qs, i) | k_fifth_bit(b, i / 32, i % 32))), ml);
}
template <typename Block>
ORCD_HD inline void dequantize_k_block(const Block& b, float* out) {
    const float d = fp16_to_float(b.d), dmin = fp16_to_float(b.dmin);
    for (int pair = 0; pair < 4; ++pair) {  // sub-blocks 2*pair (low nibbles) and 2*pair+1 (high)
        const int low = 2 * pair, high = 2 * pair + 1;
        int scale_low, min_low, scale_high, min_high;
        k_scale_min(b.scales, low, scale_low, min_low);
        k_scale_min(b.scales, high, scale_high, min_high);
        const float dl_low = mul_rn(d, float(scale_low)), ml_low = mul_rn(dmin, float(min_low));
        const float dl_high = mul_rn(d, float(scale_high)), ml_high = mul_rn(dmin, float(min_high));
        const uint8_t* qs = b.qs + 32 * pair;
        float* o = out + 64 * pair;
        for (int j = 0; j < 32; ++j) {
            o[j] = sub_rn(mul_rn(dl_low, float((qs[j] & 0x0f) | k_fifth_bit(b, low, j))), ml_low);
            o[j + 32] = sub_rn(mul_rn(dl_high, float((qs[j] >> 4) | k_fifth_bit(b, high, j))), ml_high);
        }
    }
}
ORCD_HD inline float dequantize_element(const block_q4_k& b, int i) { return dequantize_k_element(b, i); }
ORCD_HD inline void dequantize_block(const block_q4_k& b, float* out) { dequantize_k_block(b, out); }
ORCD_HD inline float dequantize_element(const block_q5_k& b, int i) { return dequantize_k_element(b, i); }
ORCD_HD inline void dequantize_block(const block_q5_k& b, float* out) { dequantize_k_block(b, out); }

// Q6_K element i: each 128-element half takes 64 bytes of ql (low nibbles for
// the first 64 elements, high for the next) and 32 bytes of qh (four 2-bit planes).
ORCD_HD inline int q6_k_value(const block_q6_k& b, int i) {
    const int half = i / 128, r = i % 128;
    const int low = (b.ql[64 * half + r % 64] >> (4 * (r / 64))) & 0x0f;
    const int high = (b.qh[32 * half + r % 32] >> (2 * (r / 32))) & 3;
    return (low | high << 4) - 32;
}
ORCD_HD inline float dequantize_element(const block_q6_k& b, int i) {
    const float dl = mul_rn(fp16_to_float(b.d), float(b.scales[i / 16]));
    return mul_rn(dl, float(q6_k_value(b, i)));
}
ORCD_HD inline void dequantize_block(const block_q6_k& b, float* out) {
    const float d = fp16_to_float(b.d);
    float dl[16];
    for (int sub = 0; sub < 16; ++sub) dl[sub] = mul_rn(d, float(b.scales[sub]));
    // Byte j of a half's qh holds bits 4-5 of elements j, j+32, j+64, j+96.
    for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b.ql + 64 * half;
        const uint8_t* qh = b.qh + 32 * half;
        const float* s = dl + 8 * half;
        float* o = out + 128 * half;
        for (int j = 0; j < 32; ++j) {
            const int sub = j / 16;
            o[j] = mul_rn(s[sub], float(((ql[j] & 0x0f) | (qh[j] & 3) << 4) - 32));
            o[j + 32] = mul_rn(s[sub + 2], float(((ql[j + 32] & 0x0f) | ((qh[j] >> 2) & 3) << 4) - 32));
            o[j + 64] = mul_rn(s[sub + 4], float(((ql[j] >> 4) | ((qh[j] >> 4) & 3) << 4) - 32));
            o[j + 96] = mul_rn(s[sub + 6], float(((ql[j + 32] >> 4) | ((qh[j] >> 6) & 3) << 4) - 32));
        }
    }
}

ORCD_HD inline float dequantize_element(const block_iq4_xs& b, int i) {
    const float dl = mul_rn(fp16_to_float(b.d), float(iq4_xs_scale(b, i / 32)));
    return mul_rn(dl, float(iq4_level(nibble32(b.qs + 16 * (i / 32), i % 32))));
}
ORCD_HD inline void dequantize_block(const block_iq4_xs& b, float* out) {
    const float d = fp16_to_float(b.d);
    for (int sub = 0; sub < 8; ++sub) {
        const float dl = mul_rn(d, float(iq4_xs_scale(b, sub)));
        for (int j = 0; j < 32; ++j) out[32 * sub + j] = mul_rn(dl, float(iq4_level(nibble32(b.qs + 16 * sub, j))));
    }
}

// Elements per block, for generic code over block types.
template <typename Block> inline constexpr int kBlockElements = kBlockK;
template <> inline constexpr int kBlockElements<block_q4_0> = kBlock32;
template <> inline constexpr int kBlockElements<block_q4_1> = kBlock32;
template <> inline constexpr int kBlockElements<block_q5_0> = kBlock32;
template <> inline constexpr int kBlockElements<block_q5_1> = kBlock32;
template <> inline constexpr int kBlockElements<block_q8_0> = kBlock32;
template <> inline constexpr int kBlockElements<block_iq4_nl> = kBlock32;

}  // namespace orcd::quant
