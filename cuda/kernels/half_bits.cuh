// The bit tricks of the fp16-input dot products (dot_half.cuh): quants become
// halves by bit operations alone, and one HFMA2 takes two products.
//
// A lane takes 32 weights of a quant block as two runs of 16, A and B, whose
// quants share bytes (low and high nibbles; for Q8_0 the two halves of the
// block). A quant's bits, masked in place, are a subnormal half: n x 2^-24,
// exact, so a pair of quants becomes a half2 with one AND:
//   q & 0x000F000F  = (n0, n2) x 2^-24          for bytes 0 and 2,
//   q & 0x00F000F0  = (n0', n2') x 2^-24 x 16   (high nibbles: the 16 goes
//                                                into B's fp32 scale).
// A type with an offset (the weight's integer is the quant less Off) subtracts
// it exactly (one HSUB2); Q4_1's minimum needs nothing more. The input is
// staged at up to 2^15, so the products are mostly normal halves
// (stage_input_half in matvec_stream.cu; fp16 arithmetic keeps subnormals, at
// full rate). The pairs hold elements (0, 2) and (1, 3) of each four, and the
// input is staged in that order.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace orcd::cuda {

__device__ __forceinline__ __half2 as_half2(uint32_t u) {
    __half2 h;
    memcpy(&h, &u, sizeof h);
    return h;
}
// The staged input's range (|x| < 2^kInputExponent) and what a dot in quant
// units (subnormal halves, 2^-24 each) is worth against the unscaled input.
constexpr int kInputExponent = 15;
constexpr float kHalfDotUnit = float(1 << (24 - kInputExponent));

// A half2 of two equal halves, from the half's bits (constants without a conversion).
__device__ __forceinline__ __half2 half2_bits(uint32_t h) { return as_half2(h * 0x00010001u); }

// The two input pairs of word w (quants 4w..4w+3) of a run of 16: elements (0, 2)
// and (1, 3) of that four.
__device__ __forceinline__ __half2 x_pair(const uint4 (&x)[2], int w, int second) {
    const uint4& o = x[w >> 1];
    const uint32_t u = (w & 1) ? (second ? o.w : o.z) : (second ? o.y : o.x);
    return as_half2(u);
}

// A run's products summed in fp32.
__device__ __forceinline__ float half2_total(__half2 acc) {
    const float2 f = __half22float2(acc);
    return f.x + f.y;
}

// The products of 16 + 16 quants of Bits bits with their runs: word k of q holds
// quants 4k..4k+3 of run A in bits 0..Bits-1 of its bytes and of run B in the
// next Bits. Off: the type's offset (the quant minus Off is the weight's
// integer). acc_b comes out 2^Bits times B's dot (the caller's fp32 scale takes
// it back).
template <int Bits, int Off>
__device__ __forceinline__ void quant_products(const uint32_t (&q)[4], const uint4 (&xa)[2], const uint4 (&xb)[2],
                                               __half2& acc_a, __half2& acc_b) {
    constexpr uint32_t kMaskA = ((1u << Bits) - 1) * 0x00010001u, kMaskB = kMaskA << Bits;
    const __half2 off_a = half2_bits(Off), off_b = half2_bits(Off << Bits);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            const uint32_t w = s ? q[k] >> 8 : q[k];
            __half2 a = as_half2(w & kMaskA), b = as_half2(w & kMaskB);
            if constexpr (Off != 0) {
                a = __hsub2(a, off_a);
                b = __hsub2(b, off_b);
            }
            acc_a = __hfma2(a, x_pair(xa, k, s), acc_a);
            acc_b = __hfma2(b, x_pair(xb, k, s), acc_b);
        }
    }
}

}  // namespace orcd::cuda
