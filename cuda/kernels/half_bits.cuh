// The bit tricks of the fp16-input dot products (dot_half.cuh): quants become
// halves by bit operations alone, and one HFMA2 takes two products.
//
// A lane takes 32 weights of a quant block as two runs of 16, A and B, whose
// quants share bytes (low and high nibbles; the 2-bit planes j and j + 1 of
// Q2_K / Q3_K; for Q8_0 the two halves of the block). A quant's bits, masked in
// place, are a subnormal half: n x 2^-24, exact, so a pair of quants becomes a
// half2 with one AND (one LOP3 with the upper bits of Q3_K, Q5 and Q6_K ORed in):
//   q & 0x000F000F  = (n0, n2) x 2^-24          for bytes 0 and 2,
//   q & 0x00F000F0  = (n0', n2') x 2^-24 x 16   (high nibbles: the 16 goes
//                                                into B's fp32 scale).
// A type with an offset (the weight's integer is the quant less Off) subtracts
// it exactly (one HSUB2); the others (minimums instead: Q4_1, Q5_1, Q2_K, Q4_K,
// Q5_K) need nothing more. The input is staged at up to 2^15, so the products
// are mostly normal halves (stage_input_half in matvec.cu; fp16 arithmetic
// keeps subnormals, at full rate). The pairs hold elements (0, 2) and (1, 3)
// of each four, and the input is staged in that order. IQ4's non-linear grid is
// looked up with byte permutes instead.
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
// each half (value 16), B's to bit 8 (16 x 16, as B's nibble), as
// quant_products takes them.
__device__ __forceinline__ void fifth_bits(uint32_t qh, uint32_t (&high_a)[4][2], uint32_t (&high_b)[4][2]) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const uint32_t a = ((qh >> (4 * k)) & 15u) * 0x02040810u;  // bit j at 4 + 8j
        const uint32_t b = ((qh >> (16 + 4 * k)) & 15u) * 0x02040810u;
        high_a[k][0] = a & 0x00100010u;
        high_a[k][1] = (a >> 8) & 0x00100010u;
        high_b[k][0] = (b << 4) & 0x01000100u;
        high_b[k][1] = (b >> 4) & 0x01000100u;
    }
}

// The products of 16 + 16 quants of Bits bits (4: nibbles; 2: Q2_K / Q3_K's
// planes) with their runs: word k of q holds quants 4k..4k+3 of run A in bits
// 0..Bits-1 of its bytes and of run B in the next Bits; high_a / high_b: the
// quants' upper bits in place (or zeros), for bytes 0 and 2 ([k][0]) and 1 and
// 3 ([k][1]). Off: the type's offset (the quant minus Off is the weight's
// integer). acc_b comes out 2^Bits times B's dot (the caller's fp32 scale
// takes it back).
template <int Bits, int Off>
__device__ __forceinline__ void quant_products(const uint32_t (&q)[4], const uint32_t (&high_a)[4][2],
                                               const uint32_t (&high_b)[4][2], const uint4 (&xa)[2],
                                               const uint4 (&xb)[2], __half2& acc_a, __half2& acc_b) {
    constexpr uint32_t kMaskA = ((1u << Bits) - 1) * 0x00010001u, kMaskB = kMaskA << Bits;
    const __half2 off_a = half2_bits(Off), off_b = half2_bits(Off << Bits);  // subnormal: the bits are the integer
#pragma unroll
    for (int k = 0; k < 4; ++k) {
#pragma unroll
        for (int s = 0; s < 2; ++s) {  // s = 0: bytes 0 and 2; s = 1: bytes 1 and 3
            const uint32_t w = s ? q[k] >> 8 : q[k];
            __half2 a = as_half2(mask_or<kMaskA>(w, high_a[k][s])), b = as_half2(mask_or<kMaskB>(w, high_b[k][s]));
            if constexpr (Off != 0) {
                a = __hsub2(a, off_a);
                b = __hsub2(b, off_b);
            }
            acc_a = __hfma2(a, x_pair(xa, k, s), acc_a);
            acc_b = __hfma2(b, x_pair(xb, k, s), acc_b);
        }
    }
}

// The same with no upper bits (Q4_0, Q4_1, Q4_K, Q2_K).
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

// A byte permute with a selector known only at run time. __byte_perm clears
// bit 3 of each selector nibble (sign-fill mode) with one more instruction;
// the selectors here never have it set.
__device__ __forceinline__ uint32_t permute_bytes(uint32_t lo, uint32_t hi, uint32_t selector) {
    uint32_t r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(lo), "r"(hi), "r"(selector));
    return r;
}

// The IQ4 grid plus 128 (1..241): entries 0-7 and 8-15 in two word pairs. In
// constant memory, not immediates, so that they stay in registers across the
// loop instead of being rebuilt at every use.
static __constant__ uint32_t kIq4GridWords[4] = {0x3F2D1801u, 0x766A5D4Fu, 0xA6998D81u, 0xF1D9C5B5u};

// The products of 16 + 16 IQ4 quants (nibbles laid out as Q4_0's) with their
// runs. A byte permute looks up four nibbles' entries in each half of the grid
// (bit 3 of a selector nibble would sign-fill, so it is cleared), a third picks
// the half by bit 3, and a fourth makes two of the bytes two subnormal halves.
__device__ __forceinline__ void iq4_products(const uint32_t (&q)[4], const uint4 (&xa)[2], const uint4 (&xb)[2],
                                             __half2& acc_a, __half2& acc_b) {
    const uint32_t* grid = kIq4GridWords;
    const __half2 base = half2_bits(128);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const uint32_t entry = q[k] & 0x77777777u;
        // Nibble j of a half-picking selector: j, or 4 + j from the upper half.
        const uint32_t upper = mask_or<0x44444444u>(q[k] >> 1, 0x32321010u);
#pragma unroll
        for (int s = 0; s < 2; ++s) {  // s = 0: bytes 0 and 2 (nibbles A0 B0 A2 B2); s = 1: bytes 1 and 3
            const uint32_t gather = s ? 0x31u : 0x20u;
            const uint32_t sel = __byte_perm(entry, 0, gather), pick = __byte_perm(upper, 0, gather);
            const uint32_t u = permute_bytes(permute_bytes(grid[0], grid[1], sel), permute_bytes(grid[2], grid[3], sel), pick);
            const __half2 a = __hsub2(as_half2(__byte_perm(0u, u, 0x0604)), base);
            const __half2 b = __hsub2(as_half2(__byte_perm(0u, u, 0x0705)), base);
            acc_a = __hfma2(a, x_pair(xa, k, s), acc_a);
            acc_b = __hfma2(b, x_pair(xb, k, s), acc_b);
        }
    }
}

}  // namespace orcd::cuda
