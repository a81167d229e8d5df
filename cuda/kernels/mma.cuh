// Warp-level tensor-core primitives shared by the prefill GEMM and attention:
// mma.sync m16n8k16 (fp16 operands, fp32 accumulation), ldmatrix and cp.async.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and q = lane % 4:
//   A (16x16, row-major): a[0] = (row g,   cols 2q, 2q+1)   a[1] = (row g+8, cols 2q, 2q+1)
//                         a[2] = (row g,   cols 2q+8, +9)   a[3] = (row g+8, cols 2q+8, +9)
//   B (16x8, k x n):      b[0] = (k 2q, 2q+1; n g)          b[1] = (k 2q+8, 2q+9; n g)
//   C (16x8, fp32):       c[0], c[1] = (row g, cols 2q, 2q+1)   c[2], c[3] = (row g+8, same cols)
// ldmatrix m8n8 gives lane l of each 8x8 matrix (row l/4, cols 2(l%4), +1); with
// .trans (rows 2(l%4), +1 of col l/4). Lanes 8j..8j+7 give the row addresses of matrix j.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace orcd::cuda {

// Halves per shared-memory row of a tile read with ldmatrix: `halves` (a multiple
// of 8) plus 8, so that the 8 row addresses of one 8x8 matrix fall in 8 distinct
// 16-byte bank groups instead of one.
__host__ __device__ constexpr int ldmatrix_row_halves(int halves) { return halves + 8; }

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// d += a . b, one m16n8k16 product.
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// 16 bytes global -> shared, bypassing L1; with valid == false the destination is zero-filled
// and nothing is read (src must still be a mapped address).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Two floats as the fp16 pair of one fragment register (first in the low half).
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
}

}  // namespace orcd::cuda
