// IEEE half and bfloat16 to float, by hand: exact, and usable on host and device.
#pragma once

#include <cstdint>

#include "quant/host_device.h"

namespace orcd::quant {

ORCD_HD inline float fp16_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    const uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {
        // Zero or subnormal: mantissa * 2^-24 is exact in float.
        const float magnitude = float(mantissa) * 5.9604644775390625e-08f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 0x1f)  // infinity or NaN, payload kept
        return float_from_bits(sign | 0x7f800000u | (mantissa << 13));
    return float_from_bits(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

// bfloat16 is the upper half of a float.
ORCD_HD inline float bf16_to_float(uint16_t h) { return float_from_bits(uint32_t(h) << 16); }

}  // namespace orcd::quant
