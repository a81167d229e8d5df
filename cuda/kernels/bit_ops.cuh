// Bit operations of the dot products (dot_half.cuh, dot_int.cuh) that the
// compiler would otherwise spend two instructions on.
#pragma once

#include <cstdint>

namespace orcd::cuda {

// (a & Mask) | c in one instruction: written as C, the compiler splits it in two
// (one LOP3 holds one immediate), here c goes in a register.
template <uint32_t Mask>
__device__ __forceinline__ uint32_t mask_or(uint32_t a, uint32_t c) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "n"(Mask), "r"(c));
    return r;
}

// A byte permute with a selector known only at run time. __byte_perm clears
// bit 3 of each selector nibble (sign-fill mode) with one more instruction;
// the selectors here never have it set.
__device__ __forceinline__ uint32_t permute_bytes(uint32_t lo, uint32_t hi, uint32_t selector) {
    uint32_t r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(lo), "r"(hi), "r"(selector));
    return r;
}

}  // namespace orcd::cuda
