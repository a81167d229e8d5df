// 32-bit keys whose unsigned order is the floats' order, for selections that
// compare keys (top-k's radix passes, argmax's packed atomicMax). -0 and +0 get
// one key, as they compare equal.
#pragma once

#include <cstdint>

namespace orcd::cuda {

__device__ __forceinline__ uint32_t order_key(float f) {
    const uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

}  // namespace orcd::cuda
