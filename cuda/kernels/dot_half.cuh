// Dot products with an fp16 input, for the streamed one-token products
// (matvec_stream.cu) of Q4_0, Q4_1 and Q8_0: one or two instructions per weight
// besides its product, fewer than their integer forms (dot_int.cuh) take.
//
// Each lane takes 32 weights of a block as two runs of 16 (lane_layout.cuh) and
// makes halves of their quants with bit operations (half_bits.cuh).
//
// Precision: the input is scaled by a power of two to |x| < 2^15 and rounded
// to fp16 (11 significant bits; llama.cpp's decode products round it to 8); a
// quant is a subnormal half (n x 2^-24), so a product is below 2^-2 and each
// half of a run's accumulator, summing 8, below 2 (no overflow; products under
// 2^-14 keep an absolute error of 2^-25). The runs' sums then go to fp32 with
// the block's scales. The CPU agrees to ~5e-4.
#pragma once

#include "kernels/dequant.cuh"
#include "kernels/half_bits.cuh"
#include "kernels/lane_layout.cuh"
#include "kernels/smem_loads.cuh"

namespace orcd::cuda {

// The types with a form here.
template <TensorType T>
constexpr bool kHasHalfDot = T == TensorType::Q4_0 || T == TensorType::Q4_1 || T == TensorType::Q8_0;

// The lane's 32 weights of the block at blk (part p of it) dotted with its runs'
// inputs xa and xb (sa, sb: their sums, for the types that need them).
template <TensorType T>
__device__ __forceinline__ float dot_half(const uint8_t* blk, int p, const uint4 (&xa)[2], const uint4 (&xb)[2],
                                          float sa, float sb) {
    using TT = TensorType;
    __half2 acc_a = as_half2(0), acc_b = acc_a;
    if constexpr (T == TT::Q4_0) {
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        uint32_t q[4];
        load16_from2(blk + 2, q);
        quant_products<4, 8>(q, xa, xb, acc_a, acc_b);
        return d * (half2_total(acc_a) + 0.0625f * half2_total(acc_b));  // B's nibbles are 16 q
    } else if constexpr (T == TT::Q4_1) {
        // d and m, then qs: 4-byte aligned (blocks of 20 bytes).
        const uint32_t dm = *reinterpret_cast<const uint32_t*>(blk);
        uint32_t q[4];
        load16_from4(blk + 4, q);
        quant_products<4, 0>(q, xa, xb, acc_a, acc_b);
        return half_bits_to_float(uint16_t(dm)) * (half2_total(acc_a) + 0.0625f * half2_total(acc_b)) +
               half_bits_to_float(uint16_t(dm >> 16)) * (sa + sb);
    } else if constexpr (T == TT::Q8_0) {
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        uint32_t qa[4], qb[4];
        load16_from2(blk + 2, qa);
        load16_from2(blk + 18, qb);
        const __half2 base = half2_bits(128);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            // q + 128 as the low byte of a subnormal half, less 128.
            const uint32_t ua = qa[k] ^ 0x80808080u, ub = qb[k] ^ 0x80808080u;
            acc_a = __hfma2(__hsub2(as_half2(__byte_perm(0u, ua, 0x0604)), base), x_pair(xa, k, 0), acc_a);
            acc_a = __hfma2(__hsub2(as_half2(__byte_perm(0u, ua, 0x0705)), base), x_pair(xa, k, 1), acc_a);
            acc_b = __hfma2(__hsub2(as_half2(__byte_perm(0u, ub, 0x0604)), base), x_pair(xb, k, 0), acc_b);
            acc_b = __hfma2(__hsub2(as_half2(__byte_perm(0u, ub, 0x0705)), base), x_pair(xb, k, 1), acc_b);
        }
        return d * (half2_total(acc_a) + half2_total(acc_b));
    } else {
        static_assert(kHasHalfDot<T>, "no fp16-input form for this type");
        return 0.0f;
    }
}

}  // namespace orcd::cuda
