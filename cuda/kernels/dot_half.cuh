// Dot products with an fp16 input, for the streamed one-token products
// (matvec.cu's matvec1_stream_kernel): the large matrices, where the fp32 forms
// of dot_group.cuh cost 9-12 instructions per weight byte, more than an SM can
// issue at 80 % of the copy bandwidth (about 10; bench/NOTES.md, round 26).
//
// Forms for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K.
//
// A lane takes 32 weights of a quant block as two runs of 16, A and B, whose
// quants share bytes (low and high nibbles; for Q8_0 the two halves of the
// block). Each pair of quants becomes a half2 with one bit operation, the
// quant as the low mantissa bits of 1024 (0x6400):
//   (q & 0x000F000F) | 0x64006400  = (1024 + n0, 1024 + n2)  for bytes 0 and 2,
//   (q & 0x00F000F0) | 0x64006400  = (1024 + 16 n0', 1024 + 16 n2')  (high nibbles)
// (one LOP3 each: mask_or),
// and one exact subtraction (or x 1/16 and subtraction) removes 1024 and the
// type's offset. One HFMA2 then takes two products: about 1.5 instructions per
// weight. The pairs hold elements (0, 2) and (1, 3) of each four, so the input
// is staged in that order (stage_input_half in matvec.cu).
//
// Precision: the input is scaled by a power of two to |x| < 1 and rounded to
// fp16 (11 significant bits; llama.cpp's decode products round it to 8). Each
// half of a run's accumulator sums 8 products (|sum| < 2^11: no overflow); the
// runs' sums then go to fp32 with the block's scales. The CPU agrees to ~5e-4.
#pragma once

#include <cuda_fp16.h>

#include "kernels/dequant.cuh"

namespace orcd::cuda {

// A lane's runs for type T: lanes per block (kLanes), the bytes of a block, and
// the first octet (8 inputs) of each run within the block's inputs, for the
// lane's part p of its block (p < kLanes). kSums: the dot needs the sums of
// each run's inputs (the minimum terms of Q4_1, Q5_1 and Q4_K).
template <TensorType T>
struct HalfLayout {
    static constexpr int kLanes = 1, kBlockBytes = Decode<T>::kBytes, kElems = 32;
    static constexpr bool kSums = T == TensorType::Q4_1 || T == TensorType::Q5_1;  // x = d q + m
    __device__ static int run_a(int) { return 0; }
    __device__ static int run_b(int) { return 2; }
};
template <int Bytes>
struct HalfLayoutK4 {  // Q4_K, Q5_K: part p: 64-element chunk c = p % 4, half h = p / 4 of its 32 quant bytes
    static constexpr int kLanes = 8, kBlockBytes = Bytes, kElems = 256;
    static constexpr bool kSums = true;
    __device__ static int run_a(int p) { return 8 * (p & 3) + 2 * (p >> 2); }
    __device__ static int run_b(int p) { return run_a(p) + 4; }
};
template <>
struct HalfLayout<TensorType::Q4_K> : HalfLayoutK4<sizeof(quant::block_q4_k)> {};
template <>
struct HalfLayout<TensorType::Q5_K> : HalfLayoutK4<sizeof(quant::block_q5_k)> {};
template <>
struct HalfLayout<TensorType::Q6_K> {  // part p: 16 of 32 (j = p % 2), quarter k0 = p / 2 % 2 (and k0 + 2), half h = p / 4
    static constexpr int kLanes = 8, kBlockBytes = sizeof(quant::block_q6_k), kElems = 256;
    static constexpr bool kSums = false;
    __device__ static int run_a(int p) { return 16 * (p >> 2) + 4 * ((p >> 1) & 1) + 2 * (p & 1); }
    __device__ static int run_b(int p) { return run_a(p) + 8; }
};

// The types with a form here: the ones the streaming kernel is compiled for.
template <TensorType T>
constexpr bool kHasHalfDot = T == TensorType::Q4_0 || T == TensorType::Q4_1 || T == TensorType::Q5_0 ||
                             T == TensorType::Q5_1 || T == TensorType::Q8_0 || T == TensorType::Q4_K ||
                             T == TensorType::Q5_K || T == TensorType::Q6_K;

// Where octet o of the input sits in shared memory: its low three bits are
// flipped by bits 3 and 4, so that the 8 lanes of each quarter warp read 8
// different bank groups with every type's lane layout above (consecutive blocks
// of 32; the parts of one Q4_K or Q6_K block). Octets 32 apart are swizzled
// alike, so a lane's runs keep their offsets from block to block.
__device__ __forceinline__ int swizzled_octet(int o) {
    const int b3 = (o >> 3) & 1, b4 = (o >> 4) & 1;
    return o ^ ((b3 ^ b4) | (b4 << 1) | (b3 << 2));
}

__device__ __forceinline__ __half2 as_half2(uint32_t u) {
    __half2 h;
    memcpy(&h, &u, sizeof h);
    return h;
}
// (a & Mask) | c in one instruction: written as C, the compiler splits it in two
// (one LOP3 holds one immediate), here c goes in a register.
template <uint32_t Mask>
__device__ __forceinline__ uint32_t mask_or(uint32_t a, uint32_t c) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "n"(Mask), "r"(c));
    return r;
}
constexpr uint32_t kHalf1024 = 0x64006400u;  // (1024, 1024) as a half2

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

// 16 bytes from a 2-byte aligned address in shared memory (5 aligned loads and
// 4 funnel shifts; reads up to 2 bytes past the 16, inside the stage's slack).
__device__ __forceinline__ void load16_from2(const uint8_t* p, uint32_t (&w)[4]) {
    const uint32_t misalign = uint32_t(reinterpret_cast<uintptr_t>(p) & 2);
    const uint32_t* a = reinterpret_cast<const uint32_t*>(p - misalign);
    uint32_t v[5];
#pragma unroll
    for (int k = 0; k < 5; ++k) v[k] = a[k];
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = __funnelshift_r(v[k], v[k + 1], 8 * misalign);
}

// 16 bytes from a 4-byte aligned address in shared memory.
__device__ __forceinline__ void load16_from4(const uint8_t* p, uint32_t (&w)[4]) {
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = reinterpret_cast<const uint32_t*>(p)[k];
}

// Q5_0 and Q5_1: bit e of qh is the fifth bit of element e. A's go to bit 4 of
// each half (value 16), B's to bit 8 (16 x 16, before the x 1/16), with 1024's
// bits, as nibble_products takes them.
__device__ __forceinline__ void fifth_bits(uint32_t qh, uint32_t (&high_a)[4][2], uint32_t (&high_b)[4][2]) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const uint32_t a = ((qh >> (4 * k)) & 15u) * 0x02040810u;  // bit j at 4 + 8j
        const uint32_t b = ((qh >> (16 + 4 * k)) & 15u) * 0x02040810u;
        high_a[k][0] = mask_or<0x00100010u>(a, kHalf1024);
        high_a[k][1] = mask_or<0x00100010u>(a >> 8, kHalf1024);
        high_b[k][0] = mask_or<0x01000100u>(b << 4, kHalf1024);
        high_b[k][1] = mask_or<0x01000100u>(b >> 4, kHalf1024);
    }
}

// The products of 16 + 16 nibble quants with their runs: word k of q holds
// quants 4k..4k+3 of run A in its low nibbles and of run B in its high ones;
// high_a / high_b: 1024's bits with the fifth and sixth bits of the quants in
// place (or 1024's bits alone), for bytes 0 and 2 ([k][0]) and 1 and 3 ([k][1]).
// Off: the type's offset (the quant minus Off is the weight's integer).
template <int Off>
__device__ __forceinline__ void nibble_products(const uint32_t (&q)[4], const uint32_t (&high_a)[4][2],
                                                const uint32_t (&high_b)[4][2], const uint4 (&xa)[2],
                                                const uint4 (&xb)[2], __half2& acc_a, __half2& acc_b) {
    static_assert(Off < 64, "the constants below hold offsets below 64");
    // 1024 + Off; 1/16; -(64 + Off) (64's ulp is 1/16).
    const __half2 base_a = half2_bits(0x6400u + Off), sixteenth = half2_bits(0x2C00u), base_b = half2_bits(0xD400u + 16 * Off);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
#pragma unroll
        for (int s = 0; s < 2; ++s) {  // s = 0: bytes 0 and 2; s = 1: bytes 1 and 3
            const uint32_t w = s ? q[k] >> 8 : q[k];
            const __half2 a = __hsub2(as_half2(mask_or<0x000F000Fu>(w, high_a[k][s])), base_a);
            const __half2 b = __hfma2(as_half2(mask_or<0x00F000F0u>(w, high_b[k][s])), sixteenth, base_b);
            acc_a = __hfma2(a, x_pair(xa, k, s), acc_a);
            acc_b = __hfma2(b, x_pair(xb, k, s), acc_b);
        }
    }
}

// The lane's 32 weights of the block at blk (part p of it) dotted with its runs'
// inputs xa and xb (sa, sb: their sums, for the types that need them).
template <TensorType T>
__device__ __forceinline__ float dot_half(const uint8_t* blk, int p, const uint4 (&xa)[2], const uint4 (&xb)[2],
                                          float sa, float sb) {
    __half2 acc_a = as_half2(0), acc_b = acc_a;
    if constexpr (T == TensorType::Q4_0 || T == TensorType::Q5_0) {
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        uint32_t q[4], ea[4][2], eb[4][2];
        load16_from2(blk + Decode<T>::kBytes - 16, q);  // qs: the block's last 16 bytes
        if constexpr (T == TensorType::Q5_0) {
            fifth_bits(load4_from2(blk + 2), ea, eb);
            nibble_products<16>(q, ea, eb, xa, xb, acc_a, acc_b);
        } else {
            const uint32_t plain[4][2] = {{kHalf1024, kHalf1024}, {kHalf1024, kHalf1024}, {kHalf1024, kHalf1024},
                                          {kHalf1024, kHalf1024}};
            nibble_products<8>(q, plain, plain, xa, xb, acc_a, acc_b);
        }
        return d * (half2_total(acc_a) + half2_total(acc_b));
    } else if constexpr (T == TensorType::Q4_1 || T == TensorType::Q5_1) {
        // d and m, then (Q5_1) qh, then qs: 4-byte aligned (blocks of 20 and 24 bytes).
        const uint32_t dm = *reinterpret_cast<const uint32_t*>(blk);
        uint32_t q[4], ea[4][2], eb[4][2];
        load16_from4(blk + Decode<T>::kBytes - 16, q);
        if constexpr (T == TensorType::Q5_1) {
            fifth_bits(reinterpret_cast<const uint32_t*>(blk)[1], ea, eb);
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) ea[k][0] = ea[k][1] = eb[k][0] = eb[k][1] = kHalf1024;
        }
        nibble_products<0>(q, ea, eb, xa, xb, acc_a, acc_b);
        return half_bits_to_float(uint16_t(dm)) * (half2_total(acc_a) + half2_total(acc_b)) +
               half_bits_to_float(uint16_t(dm >> 16)) * (sa + sb);
    } else if constexpr (T == TensorType::Q8_0) {
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        uint32_t qa[4], qb[4];
        load16_from2(blk + 2, qa);
        load16_from2(blk + 18, qb);
        const __half2 base = half2_bits(0x6400u + 128);  // 1024 + 128
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            // q + 128 as the low byte of 1024's mantissa: the permute's constant
            // operand first, so that it stays in a register.
            const uint32_t ua = qa[k] ^ 0x80808080u, ub = qb[k] ^ 0x80808080u;
            acc_a = __hfma2(__hsub2(as_half2(__byte_perm(0x64646464u, ua, 0x0604)), base), x_pair(xa, k, 0), acc_a);
            acc_a = __hfma2(__hsub2(as_half2(__byte_perm(0x64646464u, ua, 0x0705)), base), x_pair(xa, k, 1), acc_a);
            acc_b = __hfma2(__hsub2(as_half2(__byte_perm(0x64646464u, ub, 0x0604)), base), x_pair(xb, k, 0), acc_b);
            acc_b = __hfma2(__hsub2(as_half2(__byte_perm(0x64646464u, ub, 0x0705)), base), x_pair(xb, k, 1), acc_b);
        }
        return d * (half2_total(acc_a) + half2_total(acc_b));
    } else if constexpr (T == TensorType::Q4_K || T == TensorType::Q5_K) {
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
        constexpr int kQs = T == TensorType::Q5_K ? 48 : 16;  // after d, dmin, scales (and qh)
        const uint4 qv = *reinterpret_cast<const uint4*>(blk + kQs + 32 * c + 16 * h);
        const uint32_t q[4] = {qv.x, qv.y, qv.z, qv.w};
        uint32_t ea[4][2], eb[4][2];
        if constexpr (T == TensorType::Q5_K) {
            const uint4 hv = *reinterpret_cast<const uint4*>(blk + 16 + 16 * h);
            const uint32_t qh[4] = {hv.x, hv.y, hv.z, hv.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                // A's bit at bit 0 of each byte, B's at bit 1; bytes 0 and 2, then 1 and 3:
                // A's to bit 4 of each half, B's to bit 8.
                const uint32_t t0 = qh[k] >> (2 * c), t1 = t0 >> 8;
                ea[k][0] = mask_or<0x00100010u>(t0 << 4, kHalf1024);
                ea[k][1] = mask_or<0x00100010u>(t1 << 4, kHalf1024);
                eb[k][0] = mask_or<0x01000100u>(t0 << 7, kHalf1024);
                eb[k][1] = mask_or<0x01000100u>(t1 << 7, kHalf1024);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) ea[k][0] = ea[k][1] = eb[k][0] = eb[k][1] = kHalf1024;
        }
        nibble_products<0>(q, ea, eb, xa, xb, acc_a, acc_b);
        const float d = half_bits_to_float(uint16_t(head.x)), dmin = half_bits_to_float(uint16_t(head.x >> 16));
        return d * (float(sc & 255) * half2_total(acc_a) + float(sc >> 8) * half2_total(acc_b)) -
               dmin * (float(mn & 255) * sa + float(mn >> 8) * sb);
    } else if constexpr (T == TensorType::Q6_K) {
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
            ea[k][0] = mask_or<0x00300030u>(t0, kHalf1024);
            ea[k][1] = mask_or<0x00300030u>(t1, kHalf1024);
            eb[k][0] = mask_or<0x03000300u>(t0, kHalf1024);
            eb[k][1] = mask_or<0x03000300u>(t1, kHalf1024);
        }
        nibble_products<32>(q, ea, eb, xa, xb, acc_a, acc_b);
        const int s = 8 * h + j + 2 * k0;
        return half_bits_to_float(b->d) *
               (float(b->scales[s]) * half2_total(acc_a) + float(b->scales[s + 4]) * half2_total(acc_b));
    } else {
        static_assert(kHasHalfDot<T>, "no fp16-input form for this type");
        return 0.0f;
    }
}

}  // namespace orcd::cuda
