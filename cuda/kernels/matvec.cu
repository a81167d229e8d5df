// Matrix-vector product for decode (and for up to kMatvecMaxTokens tokens):
// every weight byte is read once for all tokens of the step.
//
// v1: one warp per weight row; lane l decodes groups l, l+32, ... of 8 elements
// (coalesced: 32 lanes cover 256 consecutive elements) and dots them with the
// token rows of x (two float4 loads each, served from L1/L2). A warp reduction
// and a fused epilogue (bias, residual accumulate) finish the row.
// v2: launched with PDL; each warp prefetches its weight row into L2 before
// waiting for the previous kernel, and the group loop is unrolled so that the
// loads of several groups are in flight at once (these matvecs are latency-bound:
// a 896-wide row is only 3-4 groups per lane).
// v3: the input may be RMS-normalised on the fly (x * rsqrt(mean(x^2) + eps) *
// norm_w), so that the norm kernel before it disappears: each block computes
// the row's scale itself (896 floats from L2, cheaper than a launch while the
// product has few blocks). A SwiGLU input mode (silu(gate) * up recomputed by
// every row of the down product) was tried and dropped: 4.4M expf per step made
// the down products 12 -> 19.5 us, more than the 2.9 us swiglu kernel it saved.
// v4 (matvec1_kernel): one token, rows up to 4 KB: each warp copies its rows
// into shared memory with 8-byte asynchronous copies (all in flight at once),
// then decodes from there. Quantised rows are only 2-byte aligned, so the
// decoders read global memory in 2-byte pieces: the output layer (136 MB of
// Q8_0) issued 4x as many load instructions as bytes/8 and ran at 875-1300 GB/s.
// The copies are issued before the PDL wait: the weights arrive while the
// kernel before still runs. Products of many rows give each warp R = 4 consecutive rows: the input is
// loaded (and normalised) once for all four, and a quarter as many blocks each
// recompute the norm.
// v5: one launch for several products of the same input (the Q, K and V parts,
// each of its own type) and for gate and up with SwiGLU in the epilogue (5
// kernels per decode layer instead of 9; no faster by itself, as PDL already
// overlapped the launches: bench/NOTES.md, round 10).
// v6: the group dot products of dot_group.cuh (round 11); few wide rows get a
// block per row, split over its warps (matvec1_split_kernel, round 13).
// v7: the staged kernel copies the input (times the norm weight) into shared
// memory once per block and applies the norm's scale to the row sums, so the
// dot loop waits neither for L2 loads of x nor for the block reduction (round 17).
// v8: staged kernels compiled for the one or two weight types of a launch when
// those are the common ones (the all-type switch made each kernel 70-450 KB of
// code, and instruction-cache misses were the top stall reason); the split
// kernel's stage sized to its slices, so that all its blocks are resident
// (round 20). The output layer streamed by resident blocks with two stages per
// warp (round 21), its rows staged with one bulk copy (TMA) per warp and stage:
// 77.8 -> 71.3 us (round 22; the same copies made the short products 0.2-0.8 us
// slower each, so they keep their 8-byte asynchronous copies). One row per warp
// while all blocks fit on the GPU at once (round 23).
// v9: about a fifth fewer instructions per group (dot_group.cuh), gate and up in
// one loop, x staged as two float4 arrays; every single product of >= 16 MB is
// streamed, wide rows in pieces of the columns with four rows per warp (round 26).
// v10: the streamed products take an fp16 input and two weights per HFMA2
// (dot_half.cuh); wide rows in pieces one row per warp with three stages
// per warp (round 27). Every quantised type has its fp16 form (round 28); the
// plain types are streamed on an fp32 input, and rows of 8,192 columns or more
// in pieces of 16-warp blocks (round 29).
#include <cuda_pipeline.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda_check.h"
#include "kernels/bulk_copy.cuh"
#include "kernels/dequant.cuh"
#include "kernels/dot_group.cuh"
#include "kernels/dot_half.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"
#include "kernels/silu.cuh"

namespace orcd::cuda {

constexpr int kMatvecWarps = 8;
constexpr int kStageBytes = 4096 + 16;  // per warp: a row of up to 4 KB plus the alignment slack
constexpr int kUpStage = 2048;          // SwiGLU: where the up rows start (16-byte aligned for the float types)
constexpr int kMaxParts = 3;            // products per staged launch (a longer list is split)
constexpr int64_t kMaxStagedCols = 8192;  // inputs the staged kernel copies into shared memory

// Dynamic shared memory of the staged kernel: each warp's rows, then the input.
constexpr size_t staged_smem_bytes(int64_t cols) {
    return size_t(kMatvecWarps) * kStageBytes + sizeof(float) * size_t(cols);
}

// The parts of one staged launch, and the first block of each.
struct StagedParts {
    MatvecPart part[kMaxParts];
    unsigned first_block[kMaxParts] = {};
    int count = 0;
};

// Eight input values of token t at columns 8g..8g+7, after the input transform.
template <MatvecInput I>
__device__ __forceinline__ void load_input(const MatvecIn& in, int64_t cols, int t, int64_t g, float scale, float a[8]) {
    {
        const float4* xp = reinterpret_cast<const float4*>(in.x + t * cols + 8 * g);
        const float4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
        a[0] = x0.x; a[1] = x0.y; a[2] = x0.z; a[3] = x0.w; a[4] = x1.x; a[5] = x1.y; a[6] = x1.z; a[7] = x1.w;
        if constexpr (I == MatvecInput::Norm) {
            const float4* wp = reinterpret_cast<const float4*>(in.norm_w + 8 * g);
            const float4 w0 = __ldg(wp), w1 = __ldg(wp + 1);
            const float wv[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i) a[i] = a[i] * scale * wv[i];
        }
    }
}

// x[0] + ... + x[7], which dot_group's factored forms need (dropped by the
// compiler for the types whose dot_group does not use it).
__device__ __forceinline__ float sum8(const float x[8]) {
    return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}

// rsqrt(mean(x_t^2) + eps) of token t, computed by the whole block (every thread
// must call it: it synchronises the block).
__device__ __forceinline__ float norm_scale(const MatvecIn& in, int64_t cols, int t) {
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols / 4; c += blockDim.x) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(in.x + t * cols) + c);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    return rsqrtf(block_sum(ss) / float(cols) + in.eps);
}

// N: tokens the kernel is compiled for (1, or kMatvecMaxTokens with n of them used).
template <TensorType T, int N, MatvecInput I>
__global__ void __launch_bounds__(kMatvecWarps * 32)
    matvec_kernel(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols, MatvecIn in, int n, float* out,
                  int ldo, const float* bias, bool accumulate) {
    const int64_t r = int64_t(blockIdx.x) * kMatvecWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const uint8_t* row = w + size_t(r) * row_bytes;
    if (r < rows) prefetch_l2(row, row_bytes, lane, 32);
    pdl_enter();
    float scale[N];
#pragma unroll
    for (int t = 0; t < N; ++t) scale[t] = I == MatvecInput::Norm && t < n ? norm_scale(in, cols, t) : 1.0f;
    if (r >= rows) return;
    const int64_t groups = cols / 8;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] = 0.0f;
#pragma unroll 4
    for (int64_t g = lane; g < groups; g += 32) {
        float v[8];
        decode_group<T>(row, g, v);
#pragma unroll
        for (int t = 0; t < N; ++t) {
            if (t >= n) break;
            float a[8];
            load_input<I>(in, cols, t, g, scale[t], a);
            acc[t] += v[0] * a[0] + v[1] * a[1] + v[2] * a[2] + v[3] * a[3] + v[4] * a[4] + v[5] * a[5] +
                      v[6] * a[6] + v[7] * a[7];
        }
    }
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] = warp_sum(acc[t]);
    if (lane == 0) {
        const float b = bias ? bias[r] : 0.0f;
#pragma unroll
        for (int t = 0; t < N; ++t) {
            if (t >= n) break;
            float* o = out + size_t(t) * ldo + r;
            *o = (accumulate ? *o : 0.0f) + acc[t] + b;
        }
    }
}

// Copies nr rows of `rows_bytes` each, starting at `first`, into a warp's stage
// with 8-byte asynchronous copies; returns the offset of the first row in it.
// From the 8-byte boundary at or below the first row: at most 7 bytes before it
// (a tensor's first row is 256-aligned, so that is the same tensor) and 7 after
// the last (inside the 256-aligned arena).
__device__ __forceinline__ int stage_rows(const uint8_t* first, int row_bytes, int nr, uint8_t* to, int lane) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(first);
    const uint8_t* from = reinterpret_cast<const uint8_t*>(a & ~uintptr_t(7));
    const int lead = int(a & 7);
    const int n8 = nr > 0 ? (lead + row_bytes * nr + 7) / 8 : 0;
    for (int i = lane; i < n8; i += 32) __pipeline_memcpy_async(to + 8 * i, from + 8 * i, 8);
    return lead;
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

// The same for a type known at run time: one of Ts, or any type when Ts is empty.
template <int K, TensorType... Ts>
__device__ __forceinline__ void dot_rows(TensorType type, const uint8_t* const (&rows)[K], int groups,
                                         const float* xs, int lane, float (&acc)[K]) {
    const float4* x_lo = reinterpret_cast<const float4*>(xs);
    const auto dot = [&]<TensorType T>() { dot_rows<T, K>(rows, groups, x_lo, x_lo + groups, lane, acc); };
    if constexpr (sizeof...(Ts) == 0)
        dispatch_type_on_device(type, dot);
    else
        (void)((type == Ts && (dot.template operator()<Ts>(), true)) || ...);
}

// Row k of R staged rows from `first` (nr of them real): past the last real row,
// the last one again (its sums are not written).
template <int R>
__device__ __forceinline__ void staged_row_pointers(const uint8_t* first, int row_bytes, int nr,
                                                    const uint8_t* (&rows)[R]) {
#pragma unroll
    for (int k = 0; k < R; ++k) rows[k] = first + min(k, nr - 1) * row_bytes;
}

// One token, R consecutive rows per warp, staged through shared memory (v4), for
// all parts of a StagedParts in one launch (v5): block b works on the part whose
// blocks start at or before it, decoding that part's type. With Swiglu, part 0 is
// the gate and part 1 the up product, rows side by side: each warp stages R rows
// of both (the up rows kUpStage bytes in) and writes silu(gate) * up to part 0's out.
// Ts: the weight types the kernel decodes (all when empty).
template <MatvecInput I, int R, bool Swiglu, TensorType... Ts>
__global__ void __launch_bounds__(kMatvecWarps * 32) matvec1_kernel(StagedParts parts, int64_t cols, MatvecIn in) {
    extern __shared__ __align__(16) uint8_t stage[];
    int pi = 0;
    if constexpr (!Swiglu)
        while (pi + 1 < parts.count && blockIdx.x >= parts.first_block[pi + 1]) ++pi;
    const MatvecPart& P = parts.part[pi];
    const int lane = threadIdx.x % 32;
    const int64_t r0 = (int64_t(blockIdx.x - parts.first_block[pi]) * kMatvecWarps + threadIdx.x / 32) * R;
    const int nr = int(min(int64_t(R), P.rows - r0));  // rows of this warp; <= 0: none
    // The weights do not depend on the kernel before, so their copy is issued
    // before waiting for it (PDL): it overlaps that kernel's tail.
    uint8_t* to = stage + (threadIdx.x / 32) * kStageBytes;
    const int row0 = int(max(r0, int64_t(0)));
    const int lead = stage_rows(P.w + size_t(row0) * P.row_bytes, P.row_bytes, nr, to, lane);
    int up_lead = 0;
    if constexpr (Swiglu)
        up_lead = stage_rows(parts.part[1].w + size_t(row0) * parts.part[1].row_bytes, parts.part[1].row_bytes, nr,
                             to + kUpStage, lane);
    __pipeline_commit();
    pdl_enter();
    float* xs = reinterpret_cast<float*>(stage + kMatvecWarps * kStageBytes);
    __shared__ float ss_part[kMatvecWarps];
    stage_input<I>(in, cols, xs, ss_part);
    __syncthreads();
    if (nr <= 0) return;
    __pipeline_wait_prior(0);
    __syncwarp();
    // acc[k]: row k; with Swiglu, acc[R + k]: up row k. Gate and up of one type
    // share a loop (their input is loaded and summed once).
    constexpr int K = Swiglu ? 2 * R : R;
    float acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0.0f;
    const int groups = int(cols / 8);
    const uint8_t* rows[K];
    staged_row_pointers<R>(to + lead, P.row_bytes, nr, reinterpret_cast<const uint8_t*(&)[R]>(rows[0]));
    if constexpr (Swiglu) {
        const MatvecPart& U = parts.part[1];
        staged_row_pointers<R>(to + kUpStage + up_lead, U.row_bytes, nr, reinterpret_cast<const uint8_t*(&)[R]>(rows[R]));
        if (U.type == P.type) {
            dot_rows<K, Ts...>(P.type, rows, groups, xs, lane, acc);
        } else {
            dot_rows<R, Ts...>(P.type, reinterpret_cast<const uint8_t* const(&)[R]>(rows[0]), groups, xs, lane,
                               reinterpret_cast<float(&)[R]>(acc[0]));
            dot_rows<R, Ts...>(U.type, reinterpret_cast<const uint8_t* const(&)[R]>(rows[R]), groups, xs, lane,
                               reinterpret_cast<float(&)[R]>(acc[R]));
        }
    } else {
        dot_rows<K, Ts...>(P.type, rows, groups, xs, lane, acc);
    }
    const float scale = input_scale<I>(in, cols, ss_part);
#pragma unroll
    for (int k = 0; k < R; ++k) {
        const float sum = warp_sum(acc[k]) * scale;
        if constexpr (Swiglu) {
            const float u = warp_sum(acc[R + k]) * scale;
            if (lane == k && k < nr)
                P.out[r0 + k] = silu(sum + (P.bias ? P.bias[r0 + k] : 0.0f)) *
                                (u + (parts.part[1].bias ? parts.part[1].bias[r0 + k] : 0.0f));
        } else if (lane == k && k < nr) {
            float* o = P.out + r0 + k;
            *o = (P.accumulate ? *o : 0.0f) + sum + (P.bias ? P.bias[r0 + k] : 0.0f);
        }
    }
}

// The streaming kernel's copy of the input in fp16 (dot_half.cuh): x (times
// norm_w for Norm) times the power of two that brings its largest magnitude
// below 2^kInputExponent, as octets of 8 in the order (0, 2), (1, 3), (4, 6), (5, 7),
// swizzled (swizzled_octet; the octets padded to a multiple of 8), then, with
// Sums, the fp32 sum of every run of 16 rounded inputs. Thread t takes runs t,
// t + blockDim.x, ...: while they are at most kRuns, it keeps their inputs in
// registers between the maximum (and the norm's sum of squares, each warp's in
// ss_part) and the conversion, so that x is read from L2 once; wider inputs are
// read twice. (Two passes for every width took 2 x 16 KB of L2 reads per block
// for rows of 4,096, next to 2.3 KB of weights per row.) Every thread must call
// it; it synchronises the block once and the caller once more before the copy
// is read. Returns 2^e.
constexpr int64_t half_input_octets(int64_t cols) { return (cols / 8 + 7) / 8 * 8; }
constexpr size_t half_input_bytes(int64_t cols) {
    return size_t(16 * half_input_octets(cols)) + sizeof(float) * size_t(cols / 16);
}

// Run r of the input (16 values, already times norm_w) into the fp16 copy.
template <bool Sums>
__device__ __forceinline__ void store_half_run(int r, const float4 (&q)[4], float down, uint4* xh, float* run_sums) {
    uint32_t h[8];
    float sums[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // four k: elements 4k..4k+3 as the pairs (4k, 4k+2), (4k+1, 4k+3)
        const __half2 p0 = __floats2half2_rn(q[k].x * down, q[k].z * down);
        const __half2 p1 = __floats2half2_rn(q[k].y * down, q[k].w * down);
        memcpy(&h[2 * k], &p0, 4);
        memcpy(&h[2 * k + 1], &p1, 4);
        sums[k] = half2_total(p0) + half2_total(p1);
    }
    const int o = swizzled_octet(2 * r);  // the run's octets: o and o ^ 1
    xh[o] = make_uint4(h[0], h[1], h[2], h[3]);
    xh[o ^ 1] = make_uint4(h[4], h[5], h[6], h[7]);
    // In the quants' units (2^-24 each: half_bits.cuh), as the fp16 dots come out.
    if constexpr (Sums) run_sums[r] = ((sums[0] + sums[1]) + (sums[2] + sums[3])) * 0x1p-24f;
}

template <MatvecInput I, bool Sums, int kRuns, int W>
__device__ __forceinline__ float stage_input_half(const MatvecIn& in, int64_t cols, uint4* xh, float* run_sums,
                                                  float* ss_part) {
    __shared__ float max_part[W];
    const float4* x4 = reinterpret_cast<const float4*>(in.x);
    const int runs = int(cols / 16);
    float ss = 0.0f, mx = 0.0f;
    // Quad c of x times norm_w, adding to ss and mx.
    const auto load = [&](int c) {
        float4 v = x4[c];
        if constexpr (I == MatvecInput::Norm) {
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            const float4 w = __ldg(reinterpret_cast<const float4*>(in.norm_w) + c);
            v = make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
        }
        mx = fmaxf(mx, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
        return v;
    };
    const bool held = runs <= kRuns * int(blockDim.x);
    float4 q[kRuns][4];
    if (held) {
#pragma unroll
        for (int j = 0; j < kRuns; ++j) {
            const int r = threadIdx.x + j * int(blockDim.x);
            if (r < runs)
#pragma unroll
                for (int k = 0; k < 4; ++k) q[j][k] = load(4 * r + k);
        }
    } else {
        for (int c = threadIdx.x; c < 4 * runs; c += blockDim.x) load(c);
    }
    ss = warp_sum(ss);
    mx = warp_max(mx);
    if (threadIdx.x % 32 == 0) {
        ss_part[threadIdx.x / 32] = ss;
        max_part[threadIdx.x / 32] = mx;
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < W; ++w) mx = fmaxf(mx, max_part[w]);
    // mx < 2^(E - 126) for its biased exponent E: down brings it below
    // 2^kInputExponent, up takes back down and the quants' unit 2^-24 (E kept
    // where both stay normal floats: inputs of 2^-112..2^116).
    const int e = max(kInputExponent - 1, min(int(__float_as_uint(mx) >> 23) & 255, 242));
    const float down = __uint_as_float(uint32_t(253 + kInputExponent - e) << 23),
                up = __uint_as_float(uint32_t(e + 1) << 23) * kHalfDotUnit;
    if (held) {
#pragma unroll
        for (int j = 0; j < kRuns; ++j) {
            const int r = threadIdx.x + j * int(blockDim.x);
            if (r < runs) store_half_run<Sums>(r, q[j], down, xh, run_sums);
        }
    } else {
        for (int r = threadIdx.x; r < runs; r += blockDim.x) {
            float4 v[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) v[k] = load(4 * r + k);  // (ss and mx are no longer read)
            store_half_run<Sums>(r, v, down, xh, run_sums);
        }
    }
    return up;
}

// acc[k] += x . row k over `blocks` quant blocks of R staged rows, the lane's
// share, with the fp16 input of stage_input_half (xh, run_sums); first_block:
// the index in the row of the rows' first block (for the input's offset). A
// warp step takes 32 / kLanes blocks, each lane its part of one (dot_half.cuh).
// A step is 32 octets times a multiple of 4, so the swizzle is the same at
// every step and each lane's input addresses are computed once.
template <TensorType T, int R>
__device__ __forceinline__ void dot_rows_half(const uint8_t* const (&rows)[R], int blocks, int first_block,
                                              const uint4* xh, const float* run_sums, int lane, float (&acc)[R]) {
    using L = HalfLayout<T>;
    constexpr int kBlocksPerStep = 32 / L::kLanes, kOctets = L::kElems / 8;
    const int part = lane % L::kLanes;
    int b = lane / L::kLanes;
    const int oa = (first_block + b) * kOctets + L::run_a(part), ob = (first_block + b) * kOctets + L::run_b(part);
    const uint4 *xa0 = xh + swizzled_octet(oa), *xa1 = xh + (swizzled_octet(oa) ^ 1);
    const uint4 *xb0 = xh + swizzled_octet(ob), *xb1 = xh + (swizzled_octet(ob) ^ 1);
    const float *sa = run_sums + oa / 2, *sb = run_sums + ob / 2;
    int offset = b * L::kBlockBytes, step = 0;  // step: the octets from the lane's first block
#pragma unroll 2
    for (; b < blocks; b += kBlocksPerStep, offset += kBlocksPerStep * L::kBlockBytes, step += kBlocksPerStep * kOctets) {
        const uint4 xa[2] = {xa0[step], xa1[step]}, xb[2] = {xb0[step], xb1[step]};
        const float sum_a = L::kSums ? sa[step / 2] : 0.0f, sum_b = L::kSums ? sb[step / 2] : 0.0f;
#pragma unroll
        for (int k = 0; k < R; ++k) acc[k] += dot_half<T>(rows[k] + offset, part, xa, xb, sum_a, sum_b);
    }
}

// One token, one product of many rows (the output layer, a 7B model's FFN): as
// many blocks as are resident at once, each looping over tiles of
// stream_warps * R rows, with the input (normalised or plain) staged once per
// block in fp16 (stage_input_half, dot_half.cuh; the plain types in fp32,
// stage_input and dot_group.cuh). A warp's step is R rows of a
// piece of the columns (all of them when R whole rows fit its stage): the rows
// of the next one or two steps are copied (bulk copies) while it decodes the
// current ones, and the sums accumulate over the pieces of a tile (one row per
// warp: wide rows). Whole rows: blocks of 8 warps, two stages (a third that
// cost a resident block made them 5-7 % slower, round 27). Pieces: 8 warps and
// three stages, or (Wide, rows of 8,192 or more: choose_stream) 16 warps that
// share one copy of the input and two stages: with 8, two blocks per SM left
// 1.2 eligible warps per scheduler on a 7B model's down product (round 29).
// (A block per tile: 4,752 blocks, 62 % of the copy bandwidth for the output
// layer.)
constexpr int stream_stages(bool whole, bool wide) { return whole || wide ? 2 : 3; }
constexpr int stream_warps(bool whole, bool wide) { return !whole && wide ? 16 : kMatvecWarps; }
// The elements a piece's offset counts in: a quant block (dot_half.cuh's forms,
// on the fp16 input), or for the plain types (F32, F16, BF16) a group of 8 of
// dot_group.cuh, on the fp32 input of stage_input (no rounding of the input for
// the types that are chosen for their precision).
template <TensorType T>
constexpr int stream_unit() {
    if constexpr (kHasHalfDot<T>) return HalfLayout<T>::kElems;
    return 8;
}
struct StreamShape {
    int piece_cols;   // columns per piece: all, or a multiple of 256 (whole blocks of every type)
    int piece_bytes;  // their bytes in a row
    int row_stride;   // bytes per row in a stage: the piece, its 16-byte lead and the loads' slack
};

template <int R, TensorType T, bool Whole, bool Wide>
__global__ void __launch_bounds__(stream_warps(Whole, Wide) * 32)
    matvec1_stream_kernel(MatvecPart P, int64_t cols, MatvecIn in, StreamShape shape) {
    extern __shared__ __align__(16) uint8_t smem[];
    constexpr int W = stream_warps(Whole, Wide);
    __shared__ float ss_part[W];
    constexpr int kStages = stream_stages(Whole, Wide);
    __shared__ uint64_t rows_in[kStages][W];  // a warp's stage s has its rows
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    // The step's bookkeeping in 32 bits (a tensor's rows fit an int): with 64-bit
    // tiles it took ~190 instructions per step next to ~350 decoding a Q4_0 row
    // of 4,096 (round 29).
    const int n_rows = int(P.rows);
    const int tiles = (n_rows + W * R - 1) / (W * R);
    const int pieces = Whole ? 1 : int((cols + shape.piece_cols - 1) / shape.piece_cols);
    const int piece_bytes = shape.piece_bytes, row_bytes = P.row_bytes;
    uint8_t* const warp_stage = smem + warp * R * shape.row_stride;  // stage s: + s * stage_bytes
    const int stage_bytes = W * R * shape.row_stride;
    if (lane == 0)
        for (int s = 0; s < kStages; ++s) bulk_barrier_init(&rows_in[s][warp]);
    __syncwarp();
    // Whole rows are consecutive in global memory and come in one bulk copy (four
    // copies of short rows made the output layer 54 -> 68 us); pieces come one
    // copy per row, row k at k * row_stride in the stage. (Whole: compiled
    // without the pieces' bookkeeping.)
    // Row k of a step in global memory (its piece), and its 16-byte aligned range.
    const auto piece_range = [&](int r0, int k, int piece) {
        const int bytes = min(piece_bytes, row_bytes - piece * piece_bytes);
        return aligned_range(P.w + size_t(r0 + k) * row_bytes + size_t(piece * piece_bytes), bytes);
    };
    // Copies the warp's rows of a step (none past the last row or tile) into stage s.
    const auto copy_step = [&](int tile, int piece, int s) {
        if (lane != 0) return;
        const int r0 = (tile * W + warp) * R;
        const int nr = tile < tiles ? max(0, min(R, n_rows - r0)) : 0;
        uint8_t* const to = warp_stage + s * stage_bytes;
        if constexpr (Whole) {
            const AlignedRange r = aligned_range(P.w + size_t(nr > 0 ? r0 : 0) * row_bytes, nr * row_bytes);
            bulk_arm(&rows_in[s][warp], r.bytes);
            if (r.bytes > 0) bulk_copy(to, r.from, r.bytes, &rows_in[s][warp]);
            return;
        }
        uint32_t total = 0;
        for (int k = 0; k < nr; ++k) total += piece_range(r0, k, piece).bytes;
        bulk_arm(&rows_in[s][warp], total);
        for (int k = 0; k < nr; ++k) {
            const AlignedRange r = piece_range(r0, k, piece);
            bulk_copy(to + k * shape.row_stride, r.from, r.bytes, &rows_in[s][warp]);
        }
    };
    // The step after (tile, piece): the next piece, or the block's next tile.
    const auto advance = [&](int& tile, int& piece) {
        if (Whole || piece + 1 == pieces) {
            tile += gridDim.x;
            piece = 0;
        } else {
            ++piece;
        }
    };
    // The copies run kStages - 1 steps ahead of the decoding.
    int tile = blockIdx.x, copy_tile = tile;
    int piece = 0, copy_piece = 0;
    for (int s = 0; s + 1 < kStages; ++s) {
        copy_step(copy_tile, copy_piece, s);
        advance(copy_tile, copy_piece);
    }
    pdl_enter();
    uint8_t* input = smem + kStages * W * R * shape.row_stride;
    uint4* xh = reinterpret_cast<uint4*>(input);
    float* run_sums = reinterpret_cast<float*>(xh + half_input_octets(cols));
    const float4* x_lo = reinterpret_cast<const float4*>(input);  // the plain types' fp32 copy
    float up = 1.0f;
    if constexpr (kHasHalfDot<T>) {
        constexpr bool kSums = HalfLayout<T>::kSums;
        // Inputs held in registers while staged: one run per thread (rows up to 4,096)
        // for whole rows, whose kernels must stay small for four blocks per SM; four
        // for pieces (up to 32,768 with 16 warps: a 7B model's down product).
        constexpr int kRuns = Whole ? 1 : 4;
        up = in.norm_w ? stage_input_half<MatvecInput::Norm, kSums, kRuns, W>(in, cols, xh, run_sums, ss_part)
                       : stage_input_half<MatvecInput::Plain, kSums, kRuns, W>(in, cols, xh, run_sums, ss_part);
    } else if (in.norm_w) {
        stage_input<MatvecInput::Norm>(in, cols, reinterpret_cast<float*>(input), ss_part);
    } else {
        stage_input<MatvecInput::Plain>(in, cols, reinterpret_cast<float*>(input), ss_part);
    }
    __syncthreads();
    const float scale = up * (in.norm_w ? input_scale<MatvecInput::Norm, W>(in, cols, ss_part) : 1.0f);
    constexpr int kBlockElems = stream_unit<T>();
    float acc[R];
    // This round's stage and the parity of its use; the copies go to the stage
    // the round before used.
    int s = 0, copy_s = kStages - 1;
    uint32_t parity = 0;
    while (tile < tiles) {
        copy_step(copy_tile, copy_piece, copy_s);
        advance(copy_tile, copy_piece);
        bulk_wait(&rows_in[s][warp], parity);
        const bool last_piece = Whole || piece + 1 == pieces;
        const int r0 = (tile * W + warp) * R;
        const int nr = min(R, n_rows - r0);
        if (nr > 0) {
            if (piece == 0)
#pragma unroll
                for (int k = 0; k < R; ++k) acc[k] = 0.0f;
            const uint8_t* const stage = warp_stage + s * stage_bytes;
            const uint8_t* rows[R];
#pragma unroll
            for (int k = 0; k < R; ++k) {  // past the last real row, the last one again
                const int row = min(k, nr - 1);
                rows[k] = Whole ? stage + piece_range(r0, 0, 0).lead + row * row_bytes
                                : stage + row * shape.row_stride + piece_range(r0, row, piece).lead;
            }
            const int first_block = piece * (shape.piece_cols / kBlockElems);
            const int piece_blocks = min(int(cols / kBlockElems) - first_block, shape.piece_cols / kBlockElems);
            if constexpr (kHasHalfDot<T>) {
                dot_rows_half<T, R>(rows, piece_blocks, first_block, xh, run_sums, lane, acc);
            } else {  // units of 8 (groups), fp32 products
                const float4* lo = x_lo + first_block;
                dot_rows<T, R>(rows, piece_blocks, lo, lo + cols / 8, lane, acc);
            }
            if (last_piece) {
#pragma unroll
                for (int k = 0; k < R; ++k) {
                    const float sum = warp_sum(acc[k]) * scale;
                    if (lane == k && k < nr) {
                        float* o = P.out + r0 + k;
                        *o = (P.accumulate ? *o : 0.0f) + sum + (P.bias ? P.bias[r0 + k] : 0.0f);
                    }
                }
            }
        }
        __syncwarp();  // the stage is refilled in the next round
        advance(tile, piece);
        copy_s = s;
        if (++s == kStages) {
            s = 0;
            parity ^= 1;
        }
    }
}

// One token, few wide rows (the down product of a small model: 896 rows of 4,864):
// a block per row, each warp staging and decoding an eighth of it (whole quant
// blocks), the warps' sums added in a fixed order. One row per warp left ~7 warps
// per SM, each with a long row to decode after its copy.
template <TensorType T>
constexpr int64_t split_unit() {  // elements of a slice's unit: a quant block, or a group of 8
    return Decode<T>::kElems > 8 ? Decode<T>::kElems : 8;
}

// stage_bytes: each warp's share of the dynamic shared memory (its slice and the slack).
// Eight blocks per SM (32 registers): at 47 registers only five fitted, and the
// down product's 896 blocks took two waves (4.2 -> 5.3 us).
template <TensorType T>
__global__ void __launch_bounds__(kMatvecWarps * 32, 8)
    matvec1_split_kernel(MatvecPart P, int64_t cols, const float* x, int stage_bytes) {
    extern __shared__ __align__(16) uint8_t stage[];
    __shared__ float partial[kMatvecWarps];
    constexpr int64_t kUnit = split_unit<T>();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t r = blockIdx.x, units = cols / kUnit;
    const int64_t u0 = units * warp / kMatvecWarps, u1 = units * (warp + 1) / kMatvecWarps;
    const int unit_bytes = int(P.row_bytes / units);
    uint8_t* to = stage + warp * stage_bytes;
    const int lead = stage_rows(P.w + size_t(r) * P.row_bytes + size_t(u0) * unit_bytes, int(u1 - u0) * unit_bytes,
                                u1 > u0 ? 1 : 0, to, lane);
    __pipeline_commit();
    pdl_enter();
    __pipeline_wait_prior(0);
    __syncwarp();
    const MatvecIn in{x, nullptr, 0.0f};
    using L = GroupLayout<T>;
    const int i = lane % L::kPerBlock, g1 = int(u1 * (kUnit / 8));
    int offset = (lane / L::kPerBlock) * L::kBlockBytes;
    float acc = 0.0f;
    for (int g = int(u0 * (kUnit / 8)) + lane; g < g1; g += 32, offset += (32 / L::kPerBlock) * L::kBlockBytes) {
        float x8[8];
        load_input<MatvecInput::Plain>(in, cols, 0, g, 1.0f, x8);
        acc += dot_group<T>(to + lead + offset, i, x8, sum8(x8));
    }
    acc = warp_sum(acc);
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int w = 0; w < kMatvecWarps; ++w) sum += partial[w];
        float* o = P.out + r;
        *o = (P.accumulate ? *o : 0.0f) + sum + (P.bias ? P.bias[r] : 0.0f);
    }
}

// The split kernel for one part of plain input with few wide rows, if its slices fit.
static bool try_split(const MatvecPart& p, int64_t cols, const float* x, cudaStream_t stream) {
    if (p.rows > 2048 || cols < 2048) return false;
    bool launched = false;
    dispatch_type(p.type, [&]<TensorType T>() {
        const int64_t units = cols / split_unit<T>();
        // A warp's slice is at most units / kMatvecWarps + 1 units, copied from the
        // 8-byte boundary below it; only that is reserved, so that a block takes a
        // few KB and all blocks of the product can be resident at once.
        const int64_t stage_bytes = ((units / kMatvecWarps + 1) * (p.row_bytes / units) + 16 + 15) / 16 * 16;
        if (units < kMatvecWarps || stage_bytes > kStageBytes) return;
        launch_pdl(matvec1_split_kernel<T>, unsigned(p.rows), kMatvecWarps * 32, size_t(kMatvecWarps) * stage_bytes,
                   stream, p, cols, x, int(stage_bytes));
        launched = true;
    });
    return launched;
}

// The most rows per warp (4, 2 or 1) whose staged range, for the widest rows of
// these parts and with its alignment slack, fits `room`; 0 when one row does not.
static int widest_rows_per_warp(const StagedParts& parts, int room) {
    int row_bytes = 0;
    for (int i = 0; i < parts.count; ++i) row_bytes = std::max(row_bytes, parts.part[i].row_bytes);
    for (int r : {4, 2, 1})
        if (r * row_bytes + 16 <= room) return r;
    return 0;
}

// Rows per warp of the staged kernel: one while a block per 8 rows still fits on
// the GPU at once (5 blocks per SM: at most 64 registers and 37 KB of shared
// memory each), else the most that fit `room`. 4,864 rows on 132 SMs at 1 row
// per warp make 608 blocks, at most 5 per SM = 40 rows; at 2 rows per warp, some
// SMs got 3 blocks of 16 rows and others 2 (48), and those SMs set the time.
static int staged_rows_per_warp(const StagedParts& parts, int room, bool swiglu, int sms) {
    constexpr int kResidentPerSm = 5;
    const int widest = widest_rows_per_warp(parts, room);
    int64_t blocks = 0;
    for (int i = 0; i < (swiglu ? 1 : parts.count); ++i)
        blocks += (parts.part[i].rows + kMatvecWarps - 1) / kMatvecWarps;
    return widest > 0 && blocks <= int64_t(kResidentPerSm) * sms ? 1 : widest;
}

static int device_attribute(cudaDeviceAttr attribute) {
    int device = 0, value = 0;
    ORCD_CUDA_CHECK(cudaGetDevice(&device));
    ORCD_CUDA_CHECK(cudaDeviceGetAttribute(&value, attribute, device));
    return value;
}

static int multiprocessors() { return device_attribute(cudaDevAttrMultiProcessorCount); }

// Launches the staged kernel compiled for the types Ts (any type when empty) if
// every part is of one of them.
template <MatvecInput I, int R, bool Swiglu, TensorType... Ts>
static bool launch_staged_for(const StagedParts& parts, unsigned blocks, int64_t cols, const MatvecIn& in,
                              cudaStream_t stream) {
    if constexpr (sizeof...(Ts) > 0)
        for (int i = 0; i < parts.count; ++i)
            if (!((parts.part[i].type == Ts) || ...)) return false;
    static bool configured = [] {
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(matvec1_kernel<I, R, Swiglu, Ts...>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(staged_smem_bytes(kMaxStagedCols))));
        return true;
    }();
    (void)configured;
    launch_pdl(matvec1_kernel<I, R, Swiglu, Ts...>, blocks, kMatvecWarps * 32, staged_smem_bytes(cols), stream, parts,
               cols, in);
    return true;
}

template <MatvecInput I, int R, bool Swiglu>
static void launch_staged_r(StagedParts parts, int64_t cols, const MatvecIn& in, cudaStream_t stream) {
    unsigned blocks = 0;
    const int64_t rows_per_block = int64_t(kMatvecWarps) * R;
    for (int i = 0; i < (Swiglu ? 1 : parts.count); ++i) {
        parts.first_block[i] = blocks;
        blocks += unsigned((parts.part[i].rows + rows_per_block - 1) / rows_per_block);
    }
    // The types of llama.cpp's usual mixes (Q4_K_M, Q5_K_M: Q4_K or Q5_K with Q6_K
    // for some V products; Q5_0 with Q8_0 where rows do not fit K-quants; Q4_0,
    // Q8_0), then all. Gate and up share a type in these mixes.
    using T = TensorType;
    if (launch_staged_for<I, R, Swiglu, T::Q4_K>(parts, blocks, cols, in, stream) ||
        launch_staged_for<I, R, Swiglu, T::Q5_0>(parts, blocks, cols, in, stream) ||
        launch_staged_for<I, R, Swiglu, T::Q8_0>(parts, blocks, cols, in, stream) ||
        launch_staged_for<I, R, Swiglu, T::Q4_0>(parts, blocks, cols, in, stream))
        return;
    if constexpr (!Swiglu)
        if (launch_staged_for<I, R, Swiglu, T::Q4_K, T::Q6_K>(parts, blocks, cols, in, stream) ||
            launch_staged_for<I, R, Swiglu, T::Q5_K, T::Q6_K>(parts, blocks, cols, in, stream) ||
            launch_staged_for<I, R, Swiglu, T::Q5_0, T::Q8_0>(parts, blocks, cols, in, stream))
            return;
    launch_staged_for<I, R, Swiglu>(parts, blocks, cols, in, stream);
}

// The streaming kernel for one large part (the output layer, or any product of
// at least kStreamMinBytes), if two blocks fit on an SM with pieces of at
// least 256 columns. Plain input when in.norm_w is null.
constexpr int64_t kStreamMinRows = 32768;
constexpr int64_t kStreamMinBytes = int64_t(16) << 20;

static StreamShape stream_shape(TensorType type, int64_t piece_cols) {
    const int bytes = int(gguf::row_bytes(type, uint64_t(piece_cols)));
    return {int(piece_cols), bytes, (bytes + 32 + 15) / 16 * 16};  // 15 bytes of lead, 4 of over-read
}
static size_t stream_smem_bytes(TensorType type, int R, const StreamShape& shape, int64_t cols, bool wide) {
    const bool whole = shape.piece_cols == cols;
    const size_t input = gguf::traits(type).block_size > 1 ? half_input_bytes(cols) : sizeof(float) * size_t(cols);
    return size_t(stream_stages(whole, wide) * stream_warps(whole, wide) * R) * shape.row_stride + input;
}

// Rows per warp and the columns of a step. Whole rows: the most rows per warp
// (4, 2, 1) that leave room for three blocks per SM, else one row per warp at
// two (below kWidePiecesCols). Wider rows: one row per warp in the widest
// pieces that leave room for two blocks, a multiple of 1,024 columns (a warp's
// step for every type of dot_half.cuh: 1,280 left a step of 8 lanes in 32),
// else of 256. R = 0 when
// not even that fits. From the H200 runs of round 27: with the fp16 input the
// decoding no longer bounds the products, so the bytes in flight matter more
// than the rows per warp (which share the input's loads), and one row per warp
// gives the wide products of few rows (4,096 x 14,336) four times the tiles.
// Rows of kWidePiecesCols or more take their pieces in blocks of 16 warps
// (round 29, one H200 call, pieces of 8 warps against 16 on rows of 11,008 and
// 14,336: F16 and BF16 +4-5 points of the copy, F32 +2-4, Q8_0 +4-8 on 14,336,
// the 4- to 6-bit types within +-2 on average; Q2_K's whole rows at two blocks
// 28 -> 34 % as wide pieces; on rows of 4,096, F32's pieces lost 6 points with
// 16 warps and Q8_0's whole rows at two blocks beat pieces by 5).
// (The static shared memory and the 1 KB the system keeps per block count as
// 2 KB.)
struct StreamChoice {
    int R;
    StreamShape shape;
    bool wide;  // pieces in blocks of 16 warps (stream_warps)
};
constexpr int64_t kWidePiecesCols = 8192;
static StreamChoice choose_stream(TensorType type, int64_t cols) {
    const size_t per_sm = size_t(device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor));
    const bool wide = cols >= kWidePiecesCols;
    const auto fits = [&](int R, const StreamShape& shape, int blocks) {
        return blocks * (stream_smem_bytes(type, R, shape, cols, wide) + 2048) <= per_sm;
    };
    const StreamShape whole = stream_shape(type, cols);
    for (int R : {4, 2, 1})
        if (fits(R, whole, 3)) return {R, whole, false};
    if (!wide && fits(1, whole, 2)) return {1, whole, false};
    for (int64_t piece = (cols - 1) / 1024 * 1024; piece >= 1024; piece -= 1024)
        if (fits(1, stream_shape(type, piece), 2)) return {1, stream_shape(type, piece), wide};
    for (int64_t piece = (std::min<int64_t>(cols, 1024) - 1) / 256 * 256; piece >= 256; piece -= 256)
        if (fits(1, stream_shape(type, piece), 2)) return {1, stream_shape(type, piece), wide};
    return {0, {}, false};
}

template <int R, TensorType T, bool Whole, bool Wide>
static void launch_stream(const MatvecPart& p, int64_t cols, const MatvecIn& in, const StreamShape& shape,
                          cudaStream_t stream) {
    const auto kernel = matvec1_stream_kernel<R, T, Whole, Wide>;
    static bool configured = [&] {
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin) - 1024));
        return true;
    }();
    (void)configured;
    const size_t smem = stream_smem_bytes(p.type, R, shape, cols, Wide);
    constexpr int kWarps = stream_warps(Whole, Wide);
    int per_sm = 0;
    ORCD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, smem));
    // As many blocks as fit at once. (Fewer, so that each block had the same
    // number of tiles, left SMs with four blocks and others with three: the
    // product of 14,336 Q4_K rows got 25 % slower, round 27.)
    const int64_t tiles = (p.rows + kWarps * R - 1) / (kWarps * R);
    const unsigned blocks = unsigned(std::min<int64_t>(tiles, int64_t(std::max(1, per_sm)) * multiprocessors()));
    launch_pdl(kernel, blocks, kWarps * 32, smem, stream, p, cols, in, shape);
}

static bool try_stream(const MatvecPart& p, int64_t cols, MatvecIn in, MatvecInput input, cudaStream_t stream) {
    if (p.rows < kStreamMinRows && p.rows * p.row_bytes < kStreamMinBytes) return false;
    if (input == MatvecInput::Plain) in.norm_w = nullptr;
    bool launched = false;
    const auto launch = [&]<TensorType T>() {
        const StreamChoice c = choose_stream(T, cols);
        const bool whole = c.shape.piece_cols == cols;
        switch (c.R) {
            case 4: launch_stream<4, T, true, false>(p, cols, in, c.shape, stream); break;
            case 2: launch_stream<2, T, true, false>(p, cols, in, c.shape, stream); break;
            case 1:
                if (whole)
                    launch_stream<1, T, true, false>(p, cols, in, c.shape, stream);
                else if (c.wide)
                    launch_stream<1, T, false, true>(p, cols, in, c.shape, stream);
                else
                    launch_stream<1, T, false, false>(p, cols, in, c.shape, stream);
                break;
            default: return;
        }
        launched = true;
    };
    dispatch_type(p.type, [&]<TensorType T>() { launch.template operator()<T>(); });
    return launched;
}

template <MatvecInput I, bool Swiglu>
static bool try_staged(const StagedParts& parts, int64_t cols, const MatvecIn& in, cudaStream_t stream) {
    if (cols > kMaxStagedCols) return false;
    const int room = Swiglu ? kUpStage : kStageBytes;
    switch (staged_rows_per_warp(parts, room, Swiglu, multiprocessors())) {
        case 4: launch_staged_r<I, 4, Swiglu>(parts, cols, in, stream); return true;
        case 2: launch_staged_r<I, 2, Swiglu>(parts, cols, in, stream); return true;
        case 1: launch_staged_r<I, 1, Swiglu>(parts, cols, in, stream); return true;
        default: return false;
    }
}

MatvecPart matvec_part(const Weight& w, float* out, const float* bias, bool accumulate) {
    return MatvecPart{static_cast<const uint8_t*>(w.data), w.rows, int(gguf::row_bytes(w.type, w.cols)), w.type, out,
                      bias, accumulate};
}

template <TensorType T, int N, MatvecInput I>
static void launch_unstaged(const Weight& w, const MatvecIn& in, int n, float* out, int ldo, const float* bias,
                            bool accumulate, cudaStream_t stream) {
    const unsigned blocks = unsigned((w.rows + kMatvecWarps - 1) / kMatvecWarps);
    launch_pdl(matvec_kernel<T, N, I>, blocks, kMatvecWarps * 32, 0, stream, static_cast<const uint8_t*>(w.data),
               gguf::row_bytes(w.type, w.cols), w.rows, w.cols, in, n, out, ldo, bias, accumulate);
}

void launch_matvec(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                   cudaStream_t stream) {
    if (n == 0) return;
    const MatvecIn in{x, nullptr, 0.0f};
    if (n == 1) {
        launch_matvec1_parts({matvec_part(w, out, bias, accumulate)}, w.cols, MatvecInput::Plain, in, stream);
        return;
    }
    dispatch_type(w.type, [&]<TensorType T>() {
        launch_unstaged<T, kMatvecMaxTokens, MatvecInput::Plain>(w, in, n, out, ldo, bias, accumulate, stream);
    });
}

void launch_matvec1_parts(const std::vector<MatvecPart>& list, int64_t cols, MatvecInput input, const MatvecIn& in,
                          cudaStream_t stream) {
    if (list.empty()) return;
    if (list.size() > size_t(kMaxParts)) {
        const std::vector<MatvecPart> head(list.begin(), list.begin() + kMaxParts);
        launch_matvec1_parts(head, cols, input, in, stream);
        launch_matvec1_parts(std::vector<MatvecPart>(list.begin() + kMaxParts, list.end()), cols, input, in, stream);
        return;
    }
    if (list.size() == 1 && try_stream(list[0], cols, in, input, stream)) return;
    if (list.size() == 1 && input == MatvecInput::Plain && try_split(list[0], cols, in.x, stream)) return;
    StagedParts parts{};
    parts.count = int(list.size());
    for (size_t i = 0; i < list.size(); ++i) parts.part[i] = list[i];
    const bool staged = input == MatvecInput::Norm ? try_staged<MatvecInput::Norm, false>(parts, cols, in, stream)
                                                   : try_staged<MatvecInput::Plain, false>(parts, cols, in, stream);
    if (staged) return;
    // Rows too wide to stage: each part on its own, straight from global memory.
    for (const MatvecPart& p : list) {
        Weight w;
        w.type = p.type;
        w.rows = p.rows;
        w.cols = cols;
        w.data = p.w;
        dispatch_type(p.type, [&]<TensorType T>() {
            if (input == MatvecInput::Norm)
                launch_unstaged<T, 1, MatvecInput::Norm>(w, in, 1, p.out, 0, p.bias, p.accumulate, stream);
            else
                launch_unstaged<T, 1, MatvecInput::Plain>(w, in, 1, p.out, 0, p.bias, p.accumulate, stream);
        });
    }
}

bool launch_matvec1_swiglu(const MatvecPart& gate, const MatvecPart& up, int64_t cols, MatvecInput input,
                           const MatvecIn& in, cudaStream_t stream) {
    if (gate.rows != up.rows) return false;
    StagedParts parts{};
    parts.count = 2;
    parts.part[0] = gate;
    parts.part[1] = up;
    return input == MatvecInput::Norm ? try_staged<MatvecInput::Norm, true>(parts, cols, in, stream)
                                      : try_staged<MatvecInput::Plain, true>(parts, cols, in, stream);
}

}  // namespace orcd::cuda
