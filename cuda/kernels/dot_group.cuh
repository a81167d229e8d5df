// Dot product of a group of 8 consecutive weights of a row with 8 inputs, per
// type: the inner loop of the one-token products (matvec.cu).
//
// The generic form decodes the 8 weights (dequant.cuh) and multiplies: about ten
// instructions per weight for the quantised types, which made those products
// instruction-bound (bench/NOTES.md, round 10). The common types instead:
//  - assemble each group's quants as bytes of two 32-bit words (masks, shifts
//    and a multiply that spreads the fifth bits into place, four weights at once);
//  - turn byte q (< 128) into the float 0.5 + q/256 with one byte permute (the
//    byte becomes the top of a float's mantissa) instead of a conversion;
//  - factor the block's scale and offset out of the sum:
//      sum_k (a q_k + c) x_k = a (256 s - 128 sx) + c sx,  s = sum_k (0.5 + q_k/256) x_k,
//    with sx = sum_k x_k computed once per group for all rows.
// About four instructions per weight; the subtraction loses no more than the
// few bits that 0.5 takes from q/256 (tested against the CPU at 2e-5).
// Q8_0's bytes use all 8 bits, so each becomes 2^23 + (q + 128) and an exact
// subtraction recovers q.
#pragma once

#include "kernels/dequant.cuh"

namespace orcd::cuda {

// 0.5 + b/256 for byte k (b < 128) of w.
__device__ __forceinline__ float byte_mantissa(uint32_t w, int k) {
    return __uint_as_float(__byte_perm(w, 0x3F000000u, 0x7044u | (unsigned(k) << 8)));
}

// sum_k (0.5 + q_k/256) x_k over the 8 bytes q of (lo, hi); two chains for latency.
__device__ __forceinline__ float mantissa_dot(uint32_t lo, uint32_t hi, const float x[8]) {
    float a = byte_mantissa(lo, 0) * x[0], b = byte_mantissa(hi, 0) * x[4];
#pragma unroll
    for (int k = 1; k < 4; ++k) {
        a = fmaf(byte_mantissa(lo, k), x[k], a);
        b = fmaf(byte_mantissa(hi, k), x[4 + k], b);
    }
    return a + b;
}

// Bits 0..3 of t moved to bit 4 of bytes 0..3 (t < 16): bit k lands at 4 + 7k + k.
__device__ __forceinline__ uint32_t spread_to_bit4(uint32_t t) { return (t * 0x02040810u) & 0x10101010u; }

template <TensorType T>
__device__ __forceinline__ float dot_group(const uint8_t* row, int64_t g, const float x[8], float sx) {
    using D = Decode<T>;
    if constexpr (T == TensorType::Q4_0 || T == TensorType::Q5_0) {
        const uint8_t* blk = row + (g / 4) * D::kBytes;
        const int i = int(g % 4);
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        const uint64_t q = load8_bytes(blk + D::kBytes - 16 + 8 * (i & 1));  // qs is the block's last 16 bytes
        const int shift = (i >> 1) * 4;
        uint32_t lo = (uint32_t(q) >> shift) & 0x0F0F0F0Fu, hi = (uint32_t(q >> 32) >> shift) & 0x0F0F0F0Fu;
        float offset = 8.0f;
        if constexpr (T == TensorType::Q5_0) {
            const uint32_t qh = load4_bytes(blk + 2) >> (8 * i);  // bit k: fifth bit of element k of the group
            lo |= spread_to_bit4(qh & 15u);
            hi |= spread_to_bit4((qh >> 4) & 15u);
            offset = 16.0f;
        }
        return d * (256.0f * mantissa_dot(lo, hi, x) - (128.0f + offset) * sx);
    } else if constexpr (T == TensorType::Q4_K) {
        const auto* b = reinterpret_cast<const quant::block_q4_k*>(row + (g / 32) * D::kBytes);
        const int i = int(g % 32), c = i >> 3, hi = (i >> 2) & 1, l = (i & 3) * 8;
        int sc, m;
        k4_scale_min(b->scales, 2 * c + hi, sc, m);
        const float d = half_bits_to_float(b->d) * float(sc), mn = half_bits_to_float(b->dmin) * float(m);
        const uint64_t q = load8_bytes(b->qs + 32 * c + l);
        const uint32_t lo = (uint32_t(q) >> (4 * hi)) & 0x0F0F0F0Fu, hi_w = (uint32_t(q >> 32) >> (4 * hi)) & 0x0F0F0F0Fu;
        return d * (256.0f * mantissa_dot(lo, hi_w, x) - 128.0f * sx) - mn * sx;
    } else if constexpr (T == TensorType::Q6_K) {
        const auto* b = reinterpret_cast<const quant::block_q6_k*>(row + (g / 32) * D::kBytes);
        const int i = int(g % 32), h = i >> 4, k = (i >> 2) & 3, l = (i & 3) * 8;
        const float d = half_bits_to_float(b->d) * float(b->scales[8 * h + (l >> 4) + 2 * k]);
        const uint64_t ql = load8_bytes(b->ql + 64 * h + l + 32 * (k & 1));
        const uint64_t qh = load8_bytes(b->qh + 32 * h + l);
        const int lshift = 4 * (k >> 1);
        const uint32_t lo = ((uint32_t(ql) >> lshift) & 0x0F0F0F0Fu) | (((uint32_t(qh) >> (2 * k)) & 0x03030303u) << 4);
        const uint32_t hi = ((uint32_t(ql >> 32) >> lshift) & 0x0F0F0F0Fu) | (((uint32_t(qh >> 32) >> (2 * k)) & 0x03030303u) << 4);
        return d * (256.0f * mantissa_dot(lo, hi, x) - 160.0f * sx);
    } else if constexpr (T == TensorType::Q8_0) {
        const auto* b = reinterpret_cast<const quant::block_q8_0*>(row + (g / 4) * D::kBytes);
        const float d = half_bits_to_float(b->d);
        const uint64_t q = load8_bytes(reinterpret_cast<const uint8_t*>(b->qs) + 8 * (g % 4)) ^ 0x8080808080808080ull;
        float a = 0.0f, c = 0.0f;
#pragma unroll
        for (int k = 0; k < 4; ++k) {  // 2^23 + (q + 128), minus 2^23 + 128: exact
            a = fmaf(__uint_as_float(__byte_perm(uint32_t(q), 0x4B000000u, 0x7650u | k)) - 8388736.0f, x[k], a);
            c = fmaf(__uint_as_float(__byte_perm(uint32_t(q >> 32), 0x4B000000u, 0x7650u | k)) - 8388736.0f, x[4 + k], c);
        }
        return d * (a + c);
    } else {
        float v[8];
        decode_group<T>(row, g, v);
        return v[0] * x[0] + v[1] * x[1] + v[2] * x[2] + v[3] * x[3] + v[4] * x[4] + v[5] * x[5] + v[6] * x[6] +
               v[7] * x[7];
    }
}

}  // namespace orcd::cuda
