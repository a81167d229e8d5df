// Unaligned reads of quant bytes from a row staged in shared memory. Blocks of
// 18, 22 or 110 bytes are only 2-byte aligned: these take the aligned words
// around the bytes and funnel-shift them into place, instead of 2-byte loads and
// their merges. Each reads up to 4 bytes past the end (the stages leave that
// slack). The alignment is taken off the pointer (not through an integer), so
// that the compiler still sees a shared-memory address.
#pragma once

#include <cstdint>

namespace orcd::cuda {

// From `words`, a 4-byte aligned address, the bits that start `shift` bits on
// (shift < 32; 0 or 16 to take 2-byte aligned bytes, more to shift them right
// as well, the top bits then coming from the next word): the forms for a
// caller that knows the misalignment ahead (a lane's blocks of one streamed row
// all sit alike: dot_rows_int), so that it is not taken off every address again.
__device__ __forceinline__ uint32_t load4_shifted(const uint8_t* words, uint32_t shift) {
    const uint32_t* w = reinterpret_cast<const uint32_t*>(words);
    return __funnelshift_r(w[0], w[1], shift);
}

// 16 bytes: five aligned loads and four funnel shifts.
__device__ __forceinline__ void load16_shifted(const uint8_t* words, uint32_t shift, uint32_t (&w)[4]) {
    const uint32_t* a = reinterpret_cast<const uint32_t*>(words);
    uint32_t v[5];
#pragma unroll
    for (int k = 0; k < 5; ++k) v[k] = a[k];
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = __funnelshift_r(v[k], v[k + 1], shift);
}

// p's misalignment (0 or 2), with the address rounded down to 4 bytes.
__device__ __forceinline__ uint32_t misalignment(const uint8_t* p) { return uint32_t(reinterpret_cast<uintptr_t>(p) & 2); }

__device__ __forceinline__ uint32_t load4_from2(const uint8_t* p) {
    const uint32_t m = misalignment(p);
    return load4_shifted(p - m, 8 * m);
}

// 8 bytes: three aligned loads and two funnel shifts.
__device__ __forceinline__ void load8_from2(const uint8_t* p, uint32_t& lo, uint32_t& hi) {
    const uint32_t m = misalignment(p);
    const uint32_t* w = reinterpret_cast<const uint32_t*>(p - m);
    const uint32_t w0 = w[0], w1 = w[1], w2 = w[2];
    lo = __funnelshift_r(w0, w1, 8 * m);
    hi = __funnelshift_r(w1, w2, 8 * m);
}

__device__ __forceinline__ void load16_from2(const uint8_t* p, uint32_t (&w)[4]) {
    const uint32_t m = misalignment(p);
    load16_shifted(p - m, 8 * m, w);
}

// 16 bytes from a 4-byte aligned address.
__device__ __forceinline__ void load16_from4(const uint8_t* p, uint32_t (&w)[4]) {
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = reinterpret_cast<const uint32_t*>(p)[k];
}

}  // namespace orcd::cuda
