// Dot product of a group of 8 consecutive weights of a row with 8 inputs, per
// type: the inner loop of the one-token products (matvec.cu) other than the
// streamed ones (dot_half.cuh). The weights are read from a copy of the row in
// shared memory.
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
//
// A lane takes groups lane, lane + 32, ... of a row (dot_rows in matvec.cu). 32 is
// a multiple of the groups per block (GroupLayout), so the lane's group within
// its block is the same at every step: the decoders get the block and that
// constant index, and what derives from it is computed once per row.
#pragma once

#include "kernels/dequant.cuh"
#include "kernels/smem_loads.cuh"

namespace orcd::cuda {

// Groups of 8 per block, and the bytes of the unit the lane steps over: a quant
// block, or for the plain types the group itself.
template <TensorType T>
struct GroupLayout {
    static constexpr int kPerBlock = Decode<T>::kElems == 1 ? 1 : Decode<T>::kElems / 8;
    static constexpr int kBlockBytes = Decode<T>::kElems == 1 ? 8 * Decode<T>::kBytes : Decode<T>::kBytes;
};

// A float whose top byte is c's and whose byte `at` (0 or 2; the others zero) is
// byte k of w: one byte permute. The constant is the permute's first operand, so
// that it sits in a register once per kernel and the selector is the immediate
// (the other way round, every selector cost a move: eight per group).
__device__ __forceinline__ float byte_into_float(uint32_t c, uint32_t w, int k, int at) {
    return __uint_as_float(__byte_perm(c, w, 0x3000u | unsigned(4 + k) << (4 * at)));
}

// 0.5 + b/256 for byte k (b < 128) of w: the byte as the top of the mantissa of 0.5.
__device__ __forceinline__ float byte_mantissa(uint32_t w, int k) { return byte_into_float(0x3F000000u, w, k, 2); }

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

// Group i of the block at blk (for the plain types: the group at blk, i = 0).
// Q4_K and Q5_K rows are 16-byte aligned (blocks of 144 and 176 bytes; tensors
// start at 256 bytes in the arena, and the stages keep the alignment), so their
// quants are read 8 bytes at a time.
template <TensorType T>
__device__ __forceinline__ float dot_group(const uint8_t* blk, int i, const float x[8], float sx) {
    using D = Decode<T>;
    if constexpr (T == TensorType::Q4_0 || T == TensorType::Q5_0) {
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        uint32_t lo, hi;
        load8_from2(blk + D::kBytes - 16 + 8 * (i & 1), lo, hi);  // qs is the block's last 16 bytes
        const int shift = (i >> 1) * 4;
        lo = (lo >> shift) & 0x0F0F0F0Fu;
        hi = (hi >> shift) & 0x0F0F0F0Fu;
        float offset = 8.0f;
        if constexpr (T == TensorType::Q5_0) {
            const uint32_t qh = load4_from2(blk + 2) >> (8 * i);  // bit k: fifth bit of element k of the group
            lo |= spread_to_bit4(qh & 15u);
            hi |= spread_to_bit4((qh >> 4) & 15u);
            offset = 16.0f;
        }
        return d * (256.0f * mantissa_dot(lo, hi, x) - (128.0f + offset) * sx);
    } else if constexpr (T == TensorType::Q4_K) {
        const auto* b = reinterpret_cast<const quant::block_q4_k*>(blk);
        const int c = i >> 3, hi = (i >> 2) & 1, l = (i & 3) * 8;
        // d, dmin and the 12 scale bytes in one 16-byte load; the lane's pair j
        // (fixed per lane) without a branch.
        const uint4 head = *reinterpret_cast<const uint4*>(blk);
        const int j = 2 * c + hi, shift = 8 * (j & 3);
        const uint32_t s_lo = head.y >> shift, s_mid = head.z >> shift, s_hi = head.w >> shift;
        const uint32_t sc = j < 4 ? s_lo & 63 : (s_hi & 15) | ((s_lo >> 2) & 0x30);
        const uint32_t m = j < 4 ? s_mid & 63 : ((s_hi >> 4) & 15) | ((s_mid >> 2) & 0x30);
        const float d = half_bits_to_float(uint16_t(head.x)) * float(sc);
        const float mn = half_bits_to_float(uint16_t(head.x >> 16)) * float(m);
        const uint2 q = *reinterpret_cast<const uint2*>(b->qs + 32 * c + l);
        const uint32_t lo = (q.x >> (4 * hi)) & 0x0F0F0F0Fu, hi_w = (q.y >> (4 * hi)) & 0x0F0F0F0Fu;
        return d * (256.0f * mantissa_dot(lo, hi_w, x) - 128.0f * sx) - mn * sx;
    } else if constexpr (T == TensorType::Q6_K) {
        const auto* b = reinterpret_cast<const quant::block_q6_k*>(blk);
        const int h = i >> 4, k = (i >> 2) & 3, l = (i & 3) * 8;
        const float d = half_bits_to_float(b->d) * float(b->scales[8 * h + (l >> 4) + 2 * k]);
        uint32_t ql0, ql1, qh0, qh1;
        load8_from2(b->ql + 64 * h + l + 32 * (k & 1), ql0, ql1);
        load8_from2(b->qh + 32 * h + l, qh0, qh1);
        const int lshift = 4 * (k >> 1);
        const uint32_t lo = ((ql0 >> lshift) & 0x0F0F0F0Fu) | (((qh0 >> (2 * k)) & 0x03030303u) << 4);
        const uint32_t hi = ((ql1 >> lshift) & 0x0F0F0F0Fu) | (((qh1 >> (2 * k)) & 0x03030303u) << 4);
        return d * (256.0f * mantissa_dot(lo, hi, x) - 160.0f * sx);
    } else if constexpr (T == TensorType::Q8_0) {
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        uint32_t lo, hi;
        load8_from2(blk + 2 + 8 * i, lo, hi);
        lo ^= 0x80808080u;  // q + 128
        hi ^= 0x80808080u;
        float a = 0.0f, e = 0.0f;
#pragma unroll
        for (int k = 0; k < 4; ++k) {  // 2^23 + (q + 128) (the byte as the bottom of 2^23's mantissa), minus 2^23 + 128: exact
            a = fmaf(byte_into_float(0x4B000000u, lo, k, 0) - 8388736.0f, x[k], a);
            e = fmaf(byte_into_float(0x4B000000u, hi, k, 0) - 8388736.0f, x[4 + k], e);
        }
        return d * (a + e);
    } else {
        float v[8];
        if constexpr (D::kElems == 1)
            D::group(blk, 0, v);
        else
            D::decode(blk, i, v);
        return v[0] * x[0] + v[1] * x[1] + v[2] * x[2] + v[3] * x[3] + v[4] * x[4] + v[5] * x[5] + v[6] * x[6] +
               v[7] * x[7];
    }
}

}  // namespace orcd::cuda
