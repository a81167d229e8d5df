// Helpers that compile unchanged for the host and for CUDA devices, so one
// definition of every block format serves the CPU and the CUDA backends.
#pragma once

#include <cstdint>
#ifndef __CUDA_ARCH__
#include <cstring>
#endif

#ifdef __CUDACC__
#define ORCD_HD __host__ __device__
#else
#define ORCD_HD
#endif

namespace orcd::quant {

ORCD_HD inline float float_from_bits(uint32_t bits) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

// Dequantisation must round exactly like gguf's numpy reference: a product and
// a sum each rounded on their own. nvcc fuses a*b+c into one FMA by default,
// so the device spells out the rounding; the host library is built with
// -ffp-contract=off for the same reason.
ORCD_HD inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

ORCD_HD inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

ORCD_HD inline float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

// Little-endian loads from byte arrays: no alignment assumed.
ORCD_HD inline uint32_t load_u32_le(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

}  // namespace orcd::quant
