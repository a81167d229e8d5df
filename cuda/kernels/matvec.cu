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
// v11: the streaming kernel in matvec_stream.cu; integer forms (dot_int.cuh:
// 16-bit input, dp2a, exact sums) for the types whose fp16 forms spent the
// most per weight; products of 5 MB or more streamed for those (round 30).
#include <cuda_pipeline.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/dot_group.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/matvec_common.cuh"
#include "kernels/reduce.cuh"
#include "kernels/silu.cuh"

namespace orcd::cuda {

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
    if (list.size() == 1 && launch_matvec1_streamed(list[0], cols, in, input, stream)) return;
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
