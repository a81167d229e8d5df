// Dot products with an fp16 input, for the streamed one-token products
// (matvec.cu's matvec1_stream_kernel): the large matrices, where the fp32 forms
// of dot_group.cuh cost 9-12 instructions per weight byte, more than an SM can
// issue at 80 % of the copy bandwidth (about 10; bench/NOTES.md, round 26).
//
// A form for every quantised type. Each lane takes 32 weights of a block as two
// runs of 16 and makes halves of their quants with bit operations
// (half_bits.cuh): one instruction per weight with the product (types with
// minimums), 1.5 with an offset to subtract, more for IQ4's lookups.
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
#include "kernels/smem_loads.cuh"

namespace orcd::cuda {

// A lane's runs for type T: lanes per block (kLanes), the bytes of a block, and
// the first octet (8 inputs) of each run within the block's inputs, for the
// lane's part p of its block (p < kLanes). kSums: the dot needs the sums of
// each run's inputs (the minimum terms of Q4_1, Q5_1, Q2_K, Q4_K and Q5_K).
template <TensorType T>
struct HalfLayout {  // blocks of 32: A is elements 0-15, B 16-31
    static constexpr int kLanes = 1, kBlockBytes = Decode<T>::kBytes, kElems = 32;
    static constexpr bool kSums = T == TensorType::Q4_1 || T == TensorType::Q5_1;  // x = d q + m
    __device__ static int run_a(int) { return 0; }
    __device__ static int run_b(int) { return 2; }
};
template <TensorType T, bool Sums>
struct SuperLayout {  // 8 lanes per block of 256
    static constexpr int kLanes = 8, kBlockBytes = Decode<T>::kBytes, kElems = 256;
    static constexpr bool kSums = Sums;
};
template <TensorType T, bool Sums>
struct PlanesLayout : SuperLayout<T, Sums> {  // Q2_K, Q3_K: part p: planes 2j, 2j + 1 (j = p % 2), bytes 16i.. (i = p / 2 % 2), half h = p / 4
    __device__ static int run_a(int p) { return 16 * (p >> 2) + 8 * (p & 1) + 2 * ((p >> 1) & 1); }
    __device__ static int run_b(int p) { return run_a(p) + 4; }
};
template <TensorType T>
struct ChunkLayout : SuperLayout<T, true> {  // Q4_K, Q5_K: part p: 64-element chunk c = p % 4, half h = p / 4 of its 32 quant bytes
    __device__ static int run_a(int p) { return 8 * (p & 3) + 2 * (p >> 2); }
    __device__ static int run_b(int p) { return run_a(p) + 4; }
};
template <>
struct HalfLayout<TensorType::Q2_K> : PlanesLayout<TensorType::Q2_K, true> {};
template <>
struct HalfLayout<TensorType::Q3_K> : PlanesLayout<TensorType::Q3_K, false> {};
template <>
struct HalfLayout<TensorType::Q4_K> : ChunkLayout<TensorType::Q4_K> {};
template <>
struct HalfLayout<TensorType::Q5_K> : ChunkLayout<TensorType::Q5_K> {};
template <>
struct HalfLayout<TensorType::Q6_K> : SuperLayout<TensorType::Q6_K, false> {  // part p: 16 of 32 (j = p % 2), quarter k0 = p / 2 % 2 (and k0 + 2), half h = p / 4
    __device__ static int run_a(int p) { return 16 * (p >> 2) + 4 * ((p >> 1) & 1) + 2 * (p & 1); }
    __device__ static int run_b(int p) { return run_a(p) + 8; }
};
template <>
struct HalfLayout<TensorType::IQ4_XS> : SuperLayout<TensorType::IQ4_XS, false> {  // part p: sub-block p, as IQ4_NL's block
    __device__ static int run_a(int p) { return 4 * p; }
    __device__ static int run_b(int p) { return 4 * p + 2; }
};

// The types with a form here: the quantised ones (the streaming kernel takes
// the plain types on an fp32 input instead).
template <TensorType T>
constexpr bool kHasHalfDot = Decode<T>::kElems > 1;

// The lane's 32 weights of the block at blk (part p of it) dotted with its runs'
// inputs xa and xb (sa, sb: their sums, for the types that need them).
template <TensorType T>
__device__ __forceinline__ float dot_half(const uint8_t* blk, int p, const uint4 (&xa)[2], const uint4 (&xb)[2],
                                          float sa, float sb) {
    using TT = TensorType;
    __half2 acc_a = as_half2(0), acc_b = acc_a;
    if constexpr (T == TT::Q4_0 || T == TT::Q5_0 || T == TT::IQ4_NL) {
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        uint32_t q[4];
        load16_from2(blk + Decode<T>::kBytes - 16, q);  // qs: the block's last 16 bytes
        if constexpr (T == TT::Q5_0) {
            uint32_t ea[4][2], eb[4][2];
            fifth_bits(load4_from2(blk + 2), ea, eb);
            quant_products<4, 16>(q, ea, eb, xa, xb, acc_a, acc_b);
        } else if constexpr (T == TT::Q4_0) {
            quant_products<4, 8>(q, xa, xb, acc_a, acc_b);
        } else {
            iq4_products(q, xa, xb, acc_a, acc_b);
            return d * (half2_total(acc_a) + half2_total(acc_b));
        }
        return d * (half2_total(acc_a) + 0.0625f * half2_total(acc_b));  // B's nibbles are 16 q
    } else if constexpr (T == TT::Q4_1 || T == TT::Q5_1) {
        // d and m, then (Q5_1) qh, then qs: 4-byte aligned (blocks of 20 and 24 bytes).
        const uint32_t dm = *reinterpret_cast<const uint32_t*>(blk);
        uint32_t q[4];
        load16_from4(blk + Decode<T>::kBytes - 16, q);
        if constexpr (T == TT::Q5_1) {
            uint32_t ea[4][2], eb[4][2];
            fifth_bits(reinterpret_cast<const uint32_t*>(blk)[1], ea, eb);
            quant_products<4, 0>(q, ea, eb, xa, xb, acc_a, acc_b);
        } else {
            quant_products<4, 0>(q, xa, xb, acc_a, acc_b);
        }
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
    } else if constexpr (T == TT::Q2_K || T == TT::Q3_K) {
        // Half h, bytes l = 16i..16i+15 of its 32, planes 2j (A) and 2j + 1 (B):
        // elements 128h + 32 plane + l. Each plane of 16 has its own scale.
        const int h = p >> 2, i = (p >> 1) & 1, j = p & 1;
        uint32_t q[4];  // qs: after Q2_K's scales (4-byte aligned blocks of 84) or Q3_K's hmask (110)
        if constexpr (T == TT::Q2_K)
            load16_from4(blk + 16 + 32 * h + 16 * i, q);
        else
            load16_from2(blk + 32 + 32 * h + 16 * i, q);
#pragma unroll
        for (int k = 0; k < 4; ++k) q[k] >>= 4 * j;  // A's plane to bits 0-1 of each byte, B's to 2-3
        if constexpr (T == TT::Q2_K) {
            // scales[8h + 4j + i] (A) and [.. + 2] (B): the scale in the low nibble, the minimum in the high one.
            quant_products<2, 0>(q, xa, xb, acc_a, acc_b);
            const uint32_t sm = *reinterpret_cast<const uint32_t*>(blk + 8 * h + 4 * j) >> (8 * i);
            const uint32_t dd = *reinterpret_cast<const uint32_t*>(blk + 80);  // d, dmin
            return half_bits_to_float(uint16_t(dd)) * (small_int_to_float(sm & 15) * half2_total(acc_a) +
                                                       small_int_to_float((sm >> 16) & 15) * 0.25f * half2_total(acc_b)) -
                   half_bits_to_float(uint16_t(dd >> 16)) *
                       (small_int_to_float((sm >> 4) & 15) * sa + small_int_to_float((sm >> 20) & 15) * sb);
        } else {
            // The third bit: hmask[l] at bit 4h + 2j (A) and + 1 (B); set: +0, clear: -4.
            // Moved to bit 2 of A's halves, bit 4 of B's (4 x 4, as B's quants).
            uint32_t hm[4], ea[4][2], eb[4][2];
            load16_from2(blk + 16 * i, hm);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const uint32_t t = hm[k] >> (4 * h + 2 * j);  // A's bit at bit 0 of each byte, B's at bit 1
                ea[k][0] = (t << 2) & 0x00040004u;
                ea[k][1] = (t >> 6) & 0x00040004u;
                eb[k][0] = (t << 3) & 0x00100010u;
                eb[k][1] = (t >> 5) & 0x00100010u;
            }
            quant_products<2, 4>(q, ea, eb, xa, xb, acc_a, acc_b);
            // Scale s = 8h + 4j + i (A), s + 2 (B), 6 bits less 32: the low 4 in nibble h of
            // scales[s % 8], the high 2 in scales[8 + s % 4] at 2 (s / 4).
            const uint32_t lo = load4_from2(blk + 96 + 4 * j) >> (8 * i + 4 * h);
            const uint32_t hi = load4_from2(blk + 104) >> (8 * i + 4 * h + 2 * j);
            const uint32_t sc = (lo & 0x000F000Fu) | ((hi << 4) & 0x00300030u);  // A's in bits 0-5, B's in 16-21
            const float d = half_bits_to_float(*reinterpret_cast<const uint16_t*>(blk + 108));
            return d * (small_int_to_float(int(sc & 63) - 32) * half2_total(acc_a) +
                        small_int_to_float(int(sc >> 16) - 32) * 0.25f * half2_total(acc_b));
        }
    } else if constexpr (T == TT::Q4_K || T == TT::Q5_K) {
        // Chunk c: sub-blocks 2c (A, low nibbles) and 2c + 1 (B); scales and
        // minimums of 6 bits packed in 12 bytes (k4_scale_min), both of the
        // pair taken at once as bytes 0 and 1. Q5_K: the fifth bit of element
        // 32 hi + l of the chunk is bit 2c + hi of qh[l].
        const int c = p & 3, h = p >> 2;
        const uint4 head = *reinterpret_cast<const uint4*>(blk);  // d, dmin, scales[0..11]
        const int shift = 16 * (c & 1);
        const uint32_t s_lo = head.y >> shift, s_mid = head.z >> shift, s_hi = head.w >> shift;
        const uint32_t sc = c < 2 ? s_lo & 0x3F3Fu : (s_hi & 0x0F0Fu) | ((s_lo >> 2) & 0x3030u);
        const uint32_t mn = c < 2 ? s_mid & 0x3F3Fu : ((s_hi >> 4) & 0x0F0Fu) | ((s_mid >> 2) & 0x3030u);
        constexpr int kQs = T == TT::Q5_K ? 48 : 16;  // after d, dmin, scales (and qh)
        const uint4 qv = *reinterpret_cast<const uint4*>(blk + kQs + 32 * c + 16 * h);
        const uint32_t q[4] = {qv.x, qv.y, qv.z, qv.w};
        if constexpr (T == TT::Q5_K) {
            const uint4 hv = *reinterpret_cast<const uint4*>(blk + 16 + 16 * h);
            const uint32_t qh[4] = {hv.x, hv.y, hv.z, hv.w};
            uint32_t ea[4][2], eb[4][2];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                // A's bit at bit 0 of each byte, B's at bit 1; bytes 0 and 2, then 1 and 3:
                // A's to bit 4 of each half, B's to bit 8.
                const uint32_t t0 = qh[k] >> (2 * c), t1 = t0 >> 8;
                ea[k][0] = (t0 << 4) & 0x00100010u;
                ea[k][1] = (t1 << 4) & 0x00100010u;
                eb[k][0] = (t0 << 7) & 0x01000100u;
                eb[k][1] = (t1 << 7) & 0x01000100u;
            }
            quant_products<4, 0>(q, ea, eb, xa, xb, acc_a, acc_b);
        } else {
            quant_products<4, 0>(q, xa, xb, acc_a, acc_b);
        }
        const float d = half_bits_to_float(uint16_t(head.x)), dmin = half_bits_to_float(uint16_t(head.x >> 16));
        return d * (float(sc & 255) * half2_total(acc_a) + float(sc >> 8) * 0.0625f * half2_total(acc_b)) -
               dmin * (float(mn & 255) * sa + float(mn >> 8) * sb);
    } else if constexpr (T == TT::Q6_K) {
        // Quarters k0 (A: low nibbles) and k0 + 2 (B) of half h, elements 16j..16j+15
        // of each: the low four bits from ql, the top two from qh at bits 2k (moved
        // to bits 4-5 for A, 8-9 for B: 16 and 256 x 16 in the half's mantissa).
        const auto* b = reinterpret_cast<const quant::block_q6_k*>(blk);
        const int j = p & 1, k0 = (p >> 1) & 1, h = p >> 2;
        uint32_t q[4], qh[4], ea[4][2], eb[4][2];
        load16_from2(b->ql + 64 * h + 32 * k0 + 16 * j, q);
        load16_from2(b->qh + 32 * h + 16 * j, qh);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            // Bytes 0 and 2, then 1 and 3: A's bits to 4-5, B's to 8-9 of each half.
            const uint32_t t0 = qh[k] << (4 - 2 * k0), t1 = (qh[k] >> 8) << (4 - 2 * k0);
            ea[k][0] = t0 & 0x00300030u;
            ea[k][1] = t1 & 0x00300030u;
            eb[k][0] = t0 & 0x03000300u;
            eb[k][1] = t1 & 0x03000300u;
        }
        quant_products<4, 32>(q, ea, eb, xa, xb, acc_a, acc_b);
        const int s = 8 * h + j + 2 * k0;
        return half_bits_to_float(b->d) *
               (float(b->scales[s]) * half2_total(acc_a) + float(b->scales[s + 4]) * 0.0625f * half2_total(acc_b));
    } else if constexpr (T == TT::IQ4_XS) {
        // d, scales_h, scales_l, then sub-block p's 16 bytes at 8 + 16p: 8-byte
        // aligned (blocks of 136). Scale: nibble p of scales_l, bits 2p of scales_h.
        const uint2 head = *reinterpret_cast<const uint2*>(blk);
        const uint2 lo = *reinterpret_cast<const uint2*>(blk + 8 + 16 * p),
                    hi = *reinterpret_cast<const uint2*>(blk + 16 + 16 * p);
        const uint32_t q[4] = {lo.x, lo.y, hi.x, hi.y};
        iq4_products(q, xa, xb, acc_a, acc_b);
        const int ls = int(((head.y >> (4 * p)) & 15u) | ((head.x >> (16 + 2 * p)) & 3u) << 4);
        return half_bits_to_float(uint16_t(head.x)) * small_int_to_float(ls - 32) *
               (half2_total(acc_a) + half2_total(acc_b));
    } else {
        static_assert(kHasHalfDot<T>, "no fp16-input form for this type");
        return 0.0f;
    }
}

}  // namespace orcd::cuda
