// The bit tricks of the fp16-input dot products (dot_half.cuh): quants become
// halves by bit operations alone, and one HFMA2 takes two products.
//
// A lane takes 32 weights of a quant block as two runs of 16, A and B, whose
// quants share bytes (low and high nibbles; the 2-bit planes j and j + 1 of
// Q2_K / Q3_K; for Q8_0 the two halves of the block). Each pair of quants
// becomes a half2 with one bit operation, the quant as the low mantissa bits of
// 1024 (0x6400):
//   (q & 0x000F000F) | 0x64006400  = (1024 + n0, 1024 + n2)  for bytes 0 and 2,
//   (q & 0x00F000F0) | 0x64006400  = (1024 + 16 n0', 1024 + 16 n2')  (high nibbles)
// (one LOP3 each: mask_or), and one exact subtraction (or x 1/16 and subtraction)
// removes 1024 and the type's offset. The pairs hold elements (0, 2) and (1, 3)
// of each four, so the input is staged in that order (stage_input_half in
// matvec.cu). IQ4's non-linear grid is looked up with byte permutes instead.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace orcd::cuda {

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

// The half bits of an integer v, |v| < 2048 (exact), for constants.
constexpr uint32_t half_of_int(int v) {
    const uint32_t sign = v < 0 ? 0x8000u : 0u, a = uint32_t(v < 0 ? -v : v);
    if (a == 0) return sign;
    int e = 0;
    while ((a >> (e + 1)) != 0) ++e;
    return sign | uint32_t(e + 15) << 10 | ((a << 10 >> e) & 0x3FFu);
}
static_assert(half_of_int(1024) == 0x6400u && half_of_int(-64) == 0xD400u && half_of_int(1033) == 0x6409u);

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

// Where octet o of the input sits in shared memory: its low three bits are
// flipped by bits 3 and 4, so that the 8 lanes of each quarter warp read 8
// different bank groups with every type's lane layout (HalfLayout: consecutive
// blocks of 32; the parts of one super-block). Octets 32 apart are swizzled
// alike, so a lane's runs keep their offsets from block to block.
__device__ __forceinline__ int swizzled_octet(int o) {
    const int b3 = (o >> 3) & 1, b4 = (o >> 4) & 1;
    return o ^ ((b3 ^ b4) | (b4 << 1) | (b3 << 2));
}

// Q5_0 and Q5_1: bit e of qh is the fifth bit of element e. A's go to bit 4 of
// each half (value 16), B's to bit 8 (16 x 16, before the x 1/16), with 1024's
// bits, as quant_products takes them.
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

// The products of 16 + 16 quants of Bits bits (4: nibbles; 2: Q2_K / Q3_K's
// planes) with their runs: word k of q holds quants 4k..4k+3 of run A in bits
// 0..Bits-1 of its bytes and of run B in the next Bits; high_a / high_b: 1024's
// bits with the quants' upper bits in place (or 1024's bits alone), for bytes 0
// and 2 ([k][0]) and 1 and 3 ([k][1]). Off: the type's offset (the quant minus
// Off is the weight's integer).
template <int Bits, int Off>
__device__ __forceinline__ void quant_products(const uint32_t (&q)[4], const uint32_t (&high_a)[4][2],
                                               const uint32_t (&high_b)[4][2], const uint4 (&xa)[2],
                                               const uint4 (&xb)[2], __half2& acc_a, __half2& acc_b) {
    constexpr uint32_t kMaskA = ((1u << Bits) - 1) * 0x00010001u, kMaskB = kMaskA << Bits;
    // 1024 + Off; 2^-Bits; -(1024 / 2^Bits + Off): B is 1024 + 2^Bits q, scaled.
    const __half2 base_a = half2_bits(half_of_int(1024 + Off)), unit_b = half2_bits(uint32_t(15 - Bits) << 10),
                  base_b = half2_bits(half_of_int(-(1024 >> Bits) - Off));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
#pragma unroll
        for (int s = 0; s < 2; ++s) {  // s = 0: bytes 0 and 2; s = 1: bytes 1 and 3
            const uint32_t w = s ? q[k] >> 8 : q[k];
            const __half2 a = __hsub2(as_half2(mask_or<kMaskA>(w, high_a[k][s])), base_a);
            const __half2 b = __hfma2(as_half2(mask_or<kMaskB>(w, high_b[k][s])), unit_b, base_b);
            acc_a = __hfma2(a, x_pair(xa, k, s), acc_a);
            acc_b = __hfma2(b, x_pair(xb, k, s), acc_b);
        }
    }
}

// The same with no upper bits (Q4_0, Q4_1, Q4_K, Q2_K).
template <int Bits, int Off>
__device__ __forceinline__ void quant_products(const uint32_t (&q)[4], const uint4 (&xa)[2], const uint4 (&xb)[2],
                                               __half2& acc_a, __half2& acc_b) {
    uint32_t plain[4][2];
#pragma unroll
    for (int k = 0; k < 4; ++k) plain[k][0] = plain[k][1] = kHalf1024;
    quant_products<Bits, Off>(q, plain, plain, xa, xb, acc_a, acc_b);
}

// The products of 16 + 16 IQ4 quants (nibbles laid out as Q4_0's) with their
// runs. The grid plus 128 (1..241) sits in four words, entries 0-7 and 8-15: a
// byte permute looks up four nibbles' entries in each half (bit 3 of a
// selector nibble would sign-fill, so it is cleared), a third picks the half by
// bit 3, and a fourth puts each byte under 1024's high byte.
__device__ __forceinline__ void iq4_products(const uint32_t (&q)[4], const uint4 (&xa)[2], const uint4 (&xb)[2],
                                             __half2& acc_a, __half2& acc_b) {
    constexpr uint32_t kGrid[4] = {0x3F2D1801u, 0x766A5D4Fu, 0xA6998D81u, 0xF1D9C5B5u};
    const __half2 base = half2_bits(half_of_int(1024 + 128));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const uint32_t entry = q[k] & 0x77777777u;
        // Nibble j of a half-picking selector: j, or 4 + j from the upper half.
        const uint32_t upper = ((q[k] >> 1) & 0x44444444u) | 0x32321010u;
#pragma unroll
        for (int s = 0; s < 2; ++s) {  // s = 0: bytes 0 and 2 (nibbles A0 B0 A2 B2); s = 1: bytes 1 and 3
            const uint32_t gather = s ? 0x31u : 0x20u;
            const uint32_t sel = __byte_perm(entry, 0, gather), pick = __byte_perm(upper, 0, gather);
            const uint32_t u = __byte_perm(__byte_perm(kGrid[0], kGrid[1], sel), __byte_perm(kGrid[2], kGrid[3], sel), pick);
            const __half2 a = __hsub2(as_half2(__byte_perm(0x64646464u, u, 0x0604)), base);
            const __half2 b = __hsub2(as_half2(__byte_perm(0x64646464u, u, 0x0705)), base);
            acc_a = __hfma2(a, x_pair(xa, k, s), acc_a);
            acc_b = __hfma2(b, x_pair(xb, k, s), acc_b);
        }
    }
}

}  // namespace orcd::cuda
