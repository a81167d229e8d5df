// What the one-token matrix-vector kernels share (matvec.cu's staged kernels,
// matvec_stream.cu's streaming one): the block size, the fp32 copy of the
// input in shared memory, the fp32 group dot loop over staged rows, and the
// device's attributes that size the launches.
#pragma once

#include <cstdint>

#include "cuda_check.h"
#include "kernels/dot_group.cuh"
#include "kernels/kernels.h"
#include "kernels/reduce.cuh"

namespace orcd::cuda {

constexpr int kMatvecWarps = 8;

// x[0] + ... + x[7], which dot_group's factored forms need (dropped by the
// compiler for the types whose dot_group does not use it).
__device__ __forceinline__ float sum8(const float x[8]) {
    return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}

// The block's copy of the one-token input in shared memory: x, times norm_w for
// Norm (all threads, one load of each element; the caller synchronises). The
// norm's scale rsqrt(mean(x^2) + eps) is left for the end of the product (it
// multiplies every row's sum), so nothing waits for its block reduction here:
// each warp leaves its sum of squares in ss_part[warp] (kMatvecWarps warps).
// Layout: the first four inputs of every group of 8, then the last four (two
// float4 arrays), so that the lanes' loads of a group are consecutive 16-byte
// pieces: with the groups side by side, a warp's float4 loads of x touched
// every other bank group and took twice the shared-memory wavefronts, which
// bound the products of one row per warp (bench/NOTES.md, round 26).
template <MatvecInput I>
__device__ __forceinline__ void stage_input(const MatvecIn& in, int64_t cols, float* xs, float* ss_part) {
    const int quads = int(cols / 4);
    float ss = 0.0f;
    for (int c = threadIdx.x; c < quads; c += blockDim.x) {
        float4 v = reinterpret_cast<const float4*>(in.x)[c];
        if constexpr (I == MatvecInput::Norm) {
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            const float4 w = __ldg(reinterpret_cast<const float4*>(in.norm_w) + c);
            v = make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
        }
        reinterpret_cast<float4*>(xs)[(c & 1) * (quads / 2) + c / 2] = v;
    }
    if constexpr (I == MatvecInput::Norm) {
        ss = warp_sum(ss);
        if (threadIdx.x % 32 == 0) ss_part[threadIdx.x / 32] = ss;
    }
}

// The factor of every row's sum: the norm's scale for Norm (after the block's
// synchronisation that followed stage_input), else 1. W: the block's warps.
template <MatvecInput I, int W = kMatvecWarps>
__device__ __forceinline__ float input_scale(const MatvecIn& in, int64_t cols, const float* ss_part) {
    if constexpr (I != MatvecInput::Norm) return 1.0f;
    float ss = 0.0f;
#pragma unroll
    for (int w = 0; w < W; ++w) ss += ss_part[w];
    return rsqrtf(ss / float(cols) + in.eps);
}

// acc[k] += x . row k (rows: K staged rows in shared memory, each of `groups`
// groups of 8), the lane's share (not yet summed over the warp); x from the
// block's shared copy (stage_input's layout: the first and the last four of
// each group of 8 in x_lo and x_hi). The lane's block advances by a
// fixed step and its group in the block is fixed (dot_group.cuh). Callers that
// have fewer rows than K repeat the last one, so that the loop has no per-row
// branch.
template <TensorType T, int K>
__device__ __forceinline__ void dot_rows(const uint8_t* const (&rows)[K], int groups, const float4* x_lo,
                                         const float4* x_hi, int lane, float (&acc)[K]) {
    using L = GroupLayout<T>;
    constexpr int kStep = (32 / L::kPerBlock) * L::kBlockBytes;
    const int i = lane % L::kPerBlock;
    int offset = (lane / L::kPerBlock) * L::kBlockBytes;
#pragma unroll 2
    for (int g = lane; g < groups; g += 32, offset += kStep) {
        const float4 x0 = x_lo[g], x1 = x_hi[g];
        const float x8[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
        const float sx = sum8(x8);
#pragma unroll
        for (int k = 0; k < K; ++k) acc[k] += dot_group<T>(rows[k] + offset, i, x8, sx);
    }
}

inline int device_attribute(cudaDeviceAttr attribute) {
    int device = 0, value = 0;
    ORCD_CUDA_CHECK(cudaGetDevice(&device));
    ORCD_CUDA_CHECK(cudaDeviceGetAttribute(&value, attribute, device));
    return value;
}

inline int multiprocessors() { return device_attribute(cudaDevAttrMultiProcessorCount); }

}  // namespace orcd::cuda
