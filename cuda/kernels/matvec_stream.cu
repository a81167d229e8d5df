// The streaming one-token product (matvec1_stream_kernel): the products too large
// for the staged kernels of matvec.cu (an output layer, a 7B model's FFN). As
// many blocks as are resident at once loop over tiles of rows, copying the
// next steps' rows into shared memory (bulk copies) while they decode the
// current ones, on a 16-bit integer copy of the input (dot_int.cuh: the types
// whose decoding costs the most), an fp16 one (dot_half.cuh: Q4_0, Q4_1, Q8_0)
// or, for the plain types, an fp32 one (dot_group.cuh). History and
// measurements: bench/NOTES.md, rounds 21-33.
#include <algorithm>
#include <cstdint>

#include "cuda_check.h"
#include "kernels/bulk_copy.cuh"
#include "kernels/dot_half.cuh"
#include "kernels/dot_int.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/matvec_common.cuh"

namespace orcd::cuda {

// The streaming kernel's copy of the input in fp16 (dot_half.cuh): x (times
// norm_w for Norm) times the power of two that brings its largest magnitude
// below 2^kInputExponent, as octets of 8 in the order (0, 2), (1, 3), (4, 6), (5, 7),
// swizzled (swizzled_octet; the octets padded to a multiple of 8), then, with
// Sums, the fp32 sum of every run of 16 rounded inputs. Thread t takes runs t,
// t + blockDim.x, ...: while they are at most kRuns, it keeps their inputs in
// registers between the maximum (and the norm's sum of squares, each warp's in
// ss_part) and the conversion, so that x is read from L2 once; wider inputs are
// read twice. (Two passes for every width took 2 x 16 KB of L2 reads per block
// for rows of 4,096, next to 2.3 KB of weights per row.) after_loads() runs once
// a thread's held inputs are requested (not for wider inputs). Every thread must
// call it; it synchronises the block once and the caller once more before the
// copy is read. Returns 2^e.
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

template <MatvecInput I, bool Sums, int kRuns, int W, class AfterLoads>
__device__ __forceinline__ float stage_input_half(const MatvecIn& in, int64_t cols, uint4* xh, float* run_sums,
                                                  float* ss_part, AfterLoads&& after_loads) {
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
        after_loads();
    } else {
        for (int c = threadIdx.x; c < 4 * runs; c += blockDim.x) load(c);
    }
    if constexpr (I == MatvecInput::Norm) ss = warp_sum(ss);
    mx = warp_max_nonnegative(mx);
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
// warp step takes 32 / kLanes blocks, each lane its part of one (dot_half.cuh;
// LaneRuns: each lane's input addresses are computed once).
template <TensorType T, int R>
__device__ __forceinline__ void dot_rows_half(const uint8_t* const (&rows)[R], int blocks, int first_block,
                                              const uint4* xh, const float* run_sums, int lane, float (&acc)[R]) {
    using L = LaneLayout<T>;
    using Lane = LaneRuns<T>;
    const Lane x(xh, first_block, lane);
    const float *sa = run_sums + x.oa / 2, *sb = run_sums + x.ob / 2;
    int offset = x.block * L::kBlockBytes, step = 0;  // step: the octets from the lane's first block
#pragma unroll 2
    for (int b = x.block; b < blocks; b += Lane::kBlocksPerStep, offset += Lane::kBlocksPerStep * L::kBlockBytes,
             step += Lane::kBlocksPerStep * Lane::kOctets) {
        uint4 xa[2], xb[2];
        x.octets(step, xa, xb);
        const float sum_a = L::kSums ? sa[step / 2] : 0.0f, sum_b = L::kSums ? sb[step / 2] : 0.0f;
#pragma unroll
        for (int k = 0; k < R; ++k) acc[k] += dot_half<T>(rows[k] + offset, x.part, xa, xb, sum_a, sum_b);
    }
}

// The streaming kernel's copy of the input in 16 bits (dot_int.cuh): x (times
// norm_w for Norm) in chunks of 128, each scaled by 32767 / its largest
// magnitude and rounded, as octets laid out as the fp16 copy's (swizzled_octet)
// in natural order (Paired: in pairs of elements j and j + 16 of each block of
// 32, dot_int.cuh); then each chunk's scale (its largest magnitude / 32767) and
// the exact sum of every run of 16. A warp takes chunks warp, warp + W, ...,
// each lane four inputs of one, so x is read once; each warp's share of the
// norm's sum of squares goes to ss_part; after_loads() runs once the warp's
// first loads are requested. The caller synchronises before the copy is read.
// v * up to the nearest integer, for |v * up| < 2^22: adding 1.5 x 2^23 in the
// same FMA rounds once and leaves the integer in the low bits, cheaper than an F2I.
__device__ __forceinline__ int scaled_round(float v, float up) {
    return __float_as_int(fmaf(v, up, 12582912.0f)) - 0x4B400000;
}

constexpr int kIntChunk = 128;
constexpr int64_t int_input_chunks(int64_t cols) { return (cols + kIntChunk - 1) / kIntChunk; }
constexpr size_t int_input_bytes(int64_t cols) {  // octets, then the chunks' scales, then the runs' sums
    return size_t(int_input_chunks(cols)) * (2 * kIntChunk + sizeof(float) + sizeof(int) * kIntChunk / 16);
}

template <MatvecInput I, int W, bool Paired, class AfterLoads>
__device__ __forceinline__ void stage_input_int(const MatvecIn& in, int64_t cols, uint4* xq, float* chunk_scale,
                                                int* run_sums, float* ss_part, AfterLoads&& after_loads) {
    // Up to kHeld chunks per warp are loaded before the first is converted (one
    // L2 round trip: rows of 4,096 with 8 warps, 14,336 with 16); beyond that
    // the rest are loaded one by one.
    constexpr int kHeld = 8;
    const float4* x4 = reinterpret_cast<const float4*>(in.x);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int quads = int(cols / 4), chunks = int(int_input_chunks(cols));
    float ss = 0.0f;
    const auto load = [&](int c) {  // lane's four inputs of chunk c, times norm_w
        const int quad = c * (kIntChunk / 4) + lane;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (quad < quads) {
            v = x4[quad];
            if constexpr (I == MatvecInput::Norm) {
                ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
                const float4 w = __ldg(reinterpret_cast<const float4*>(in.norm_w) + quad);
                v = make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
            }
        }
        return v;
    };
    const auto store = [&](int c, const float4& v) {
        const float mx = warp_max_nonnegative(fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
        const float up = mx > 0.0f ? __fdividef(32767.0f, mx) : 0.0f;
        const int i0 = scaled_round(v.x, up), i1 = scaled_round(v.y, up), i2 = scaled_round(v.z, up),
                  i3 = scaled_round(v.w, up);
        if constexpr (Paired) {
            // Lanes 4-7 of each eight hold elements 16-31 of a block of 32: their
            // values go to lanes 0-3 as the upper halves of the pairs.
            const int p0 = __shfl_xor_sync(0xffffffffu, i0, 4), p1 = __shfl_xor_sync(0xffffffffu, i1, 4),
                      p2 = __shfl_xor_sync(0xffffffffu, i2, 4), p3 = __shfl_xor_sync(0xffffffffu, i3, 4);
            if ((lane & 4) == 0)
                xq[swizzled_octet(c * (kIntChunk / 8) + (lane >> 3) * 4 + (lane & 3))] =
                    make_uint4((uint32_t(i0) & 0xFFFFu) | (uint32_t(p0) << 16), (uint32_t(i1) & 0xFFFFu) | (uint32_t(p1) << 16),
                               (uint32_t(i2) & 0xFFFFu) | (uint32_t(p2) << 16), (uint32_t(i3) & 0xFFFFu) | (uint32_t(p3) << 16));
        } else {
            const uint2 words = make_uint2((uint32_t(i0) & 0xFFFFu) | (uint32_t(i1) << 16),
                                           (uint32_t(i2) & 0xFFFFu) | (uint32_t(i3) << 16));
            reinterpret_cast<uint2*>(xq + swizzled_octet(c * (kIntChunk / 8) + lane / 2))[lane & 1] = words;
        }
        int sum = i0 + i1 + i2 + i3;  // the run of 16: four lanes
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        if ((lane & 3) == 0) run_sums[c * (kIntChunk / 16) + lane / 4] = sum;
        if (lane == 0) chunk_scale[c] = mx / 32767.0f;
    };
    float4 held[kHeld];
#pragma unroll
    for (int j = 0; j < kHeld; ++j)
        if (warp + j * W < chunks) held[j] = load(warp + j * W);
    after_loads();
#pragma unroll
    for (int j = 0; j < kHeld; ++j)
        if (warp + j * W < chunks) store(warp + j * W, held[j]);
    for (int c = warp + kHeld * W; c < chunks; c += W) store(c, load(c));
    if constexpr (I == MatvecInput::Norm) {
        ss = warp_sum(ss);
        if (lane == 0) ss_part[warp] = ss;
    }
}

// acc[k] += x . row k as dot_rows_half, with the 16-bit input of stage_input_int:
// each block's integer dot times its chunk's scale.
template <TensorType T, int R>
__device__ __forceinline__ void dot_rows_int(const uint8_t* const (&rows)[R], int blocks, int first_block,
                                             const uint4* xq, const float* chunk_scale, const int* run_sums,
                                             int lane, float (&acc)[R]) {
    using L = LaneLayout<T>;
    using Lane = LaneRuns<T>;
    const Lane x(xq, first_block, lane);
    const int *sa = run_sums + x.oa / 2, *sb = run_sums + x.ob / 2;
    const float* scale = chunk_scale + x.oa / 16;  // a lane's two runs are in one chunk (16 octets)
    int offset = x.block * L::kBlockBytes, step = 0;  // step: the octets from the lane's first block
    // Each row's blocks of the lane sit at one 2-byte misalignment (its steps are
    // a multiple of 4 bytes), taken once here for the dots that read 4-byte words
    // (Q3_K 128256 x 4096 74 -> 86 % of the copy on the H100, round 33).
    static_assert(Lane::kBlocksPerStep * L::kBlockBytes % 4 == 0, "a step keeps the blocks' alignment");
    uint32_t mis[R];
#pragma unroll
    for (int k = 0; k < R; ++k) mis[k] = misalignment(rows[k] + offset);
#pragma unroll 2
    for (int b = x.block; b < blocks; b += Lane::kBlocksPerStep, offset += Lane::kBlocksPerStep * L::kBlockBytes,
             step += Lane::kBlocksPerStep * Lane::kOctets) {
        uint4 xa[2], xb[2];
        x.octets(step, xa, xb);
        const int sum_a = sa[step / 2], sum_b = sb[step / 2];
        const float s = scale[step / 16];
#pragma unroll
        for (int k = 0; k < R; ++k) acc[k] += s * dot_int<T>(rows[k] + offset, x.part, xa, xb, sum_a, sum_b, mis[k]);
    }
}

// One token, one product of many rows (the output layer, a 7B model's FFN): as
// many blocks as are resident at once, each looping over tiles of
// W * R rows, with the input (normalised or plain) staged once per
// block in 16-bit integers (stage_input_int, dot_int.cuh), in fp16
// (stage_input_half, dot_half.cuh) or, for the plain types, in fp32
// (stage_input, dot_group.cuh). A warp's step is R rows of a
// piece of the columns (all of them when R whole rows fit its stage): the rows
// of the next one or two steps are copied (bulk copies) while it decodes the
// current ones, and the sums accumulate over the pieces of a tile (one row per
// warp: wide rows). Whole rows: two stages (a third that cost a resident block
// made them 5-7 % slower, round 27), in blocks of 8 warps, or of 16 with two
// rows per warp (choose_stream). Pieces: 8 warps and three stages, or (rows of
// 8,192 or more: choose_stream) 16 warps that share one copy of the input and
// two stages: with 8, two blocks per SM left 1.2 eligible warps per scheduler
// on a 7B model's down product (round 29).
// (A block per tile: 4,752 blocks, 62 % of the copy bandwidth for the output
// layer.)
constexpr int stream_stages(bool whole, int warps) { return whole || warps > kMatvecWarps ? 2 : 3; }
// The elements a piece's offset counts in: a quant block (dot_int.cuh's and
// dot_half.cuh's forms, on a rounded input), or for the plain types (F32, F16,
// BF16) a group of 8 of dot_group.cuh, on the fp32 input of stage_input (no
// rounding of the input for the types that are chosen for their precision).
template <TensorType T>
constexpr int stream_unit() {
    if constexpr (kQuantised<T>) return LaneLayout<T>::kElems;
    return 8;
}
struct StreamShape {
    int piece_cols;   // columns per piece: all, or a multiple of 256 (whole blocks of every type)
    int piece_bytes;  // their bytes in a row
    int row_stride;   // bytes per row in a stage: the piece, its 16-byte lead and the loads' slack
};

template <int R, TensorType T, bool Whole, int W>
__global__ void __launch_bounds__(W * 32)
    matvec1_stream_kernel(MatvecPart P, int64_t cols, MatvecIn in, StreamShape shape) {
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ float ss_part[W];
    constexpr int kStages = stream_stages(Whole, W);
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
    // The stages filled before the input is staged: all of them for the plain
    // types, whose products are bound by their bytes (+3 points of the copy on
    // the FFN shapes, round 30); one fewer for the others, which are bound by
    // their decoding and start it sooner when fewer bytes come before their
    // first row.
    constexpr int kFirstStages = kQuantised<T> ? kStages - 1 : kStages;
    int tile = blockIdx.x, copy_tile = tile;
    int piece = 0, copy_piece = 0;
    // Copies the block's next step into stage s.
    const auto copy_next = [&](int s) {
        copy_step(copy_tile, copy_piece, s);
        advance(copy_tile, copy_piece);
    };
    for (int s = 0; s < kFirstStages; ++s) copy_next(s);
    pdl_enter();
    uint8_t* input = smem + kStages * W * R * shape.row_stride;
    uint4* xh = reinterpret_cast<uint4*>(input);
    float* run_sums = reinterpret_cast<float*>(xh + half_input_octets(cols));
    const float4* x_lo = reinterpret_cast<const float4*>(input);  // the plain types' fp32 copy
    float up = 1.0f;
    float* chunk_scale = reinterpret_cast<float*>(xh + int_input_chunks(cols) * (kIntChunk / 8));
    int* int_sums = reinterpret_cast<int*>(chunk_scale + int_input_chunks(cols));
    // The stage the prologue left empty is filled in the first round, or, in blocks
    // of 8 warps, as soon as the warp's loads of the input are out (stage_input_*'s
    // after_loads), so that its bytes are in flight during the conversion: Q8_0 x
    // 4,096 +5-8 points of the copy, Q4_K and Q6_K 128256 x 2048 +3-4.5 (round 33).
    // Not in blocks of 16 warps (Q5_0 14336 x 4096 -4, the K-quants -3 in graphs),
    // nor for Q2_K and Q3_K, bound by their decoding (-0.5-2.5). (Issued before
    // the input's loads, the copy slows them: Q4_K 14336 x 4096 -8.)
    constexpr bool kRefillDuringConversion =
        W == kMatvecWarps && T != TensorType::Q2_K && T != TensorType::Q3_K;
    bool refill = kFirstStages < kStages;
    int copy_s = kStages - 1;
    const auto after_loads = [&] {
        if (kRefillDuringConversion && refill) {
            copy_next(copy_s);
            refill = false;
        }
    };
    if constexpr (kHasIntDot<T>) {
        constexpr bool kPaired = kPairedIntInput<T>;
        if (in.norm_w)
            stage_input_int<MatvecInput::Norm, W, kPaired>(in, cols, xh, chunk_scale, int_sums, ss_part, after_loads);
        else
            stage_input_int<MatvecInput::Plain, W, kPaired>(in, cols, xh, chunk_scale, int_sums, ss_part, after_loads);
    } else if constexpr (kHasHalfDot<T>) {
        constexpr bool kSums = LaneLayout<T>::kSums;
        // Inputs held in registers while staged: one run per thread (rows up to 4,096)
        // for whole rows, whose kernels must stay small for four blocks per SM; four
        // for pieces (up to 32,768 with 16 warps: a 7B model's down product).
        constexpr int kRuns = Whole ? 1 : 4;
        up = in.norm_w ? stage_input_half<MatvecInput::Norm, kSums, kRuns, W>(in, cols, xh, run_sums, ss_part, after_loads)
                       : stage_input_half<MatvecInput::Plain, kSums, kRuns, W>(in, cols, xh, run_sums, ss_part, after_loads);
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
    // the round before used (in the first round, the one the prologue left empty,
    // if it was not filled during the staging).
    int s = 0;
    uint32_t parity = 0;
    while (tile < tiles) {
        if (refill) copy_next(copy_s);
        refill = true;
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
            if constexpr (kHasIntDot<T>) {
                dot_rows_int<T, R>(rows, piece_blocks, first_block, xh, chunk_scale, int_sums, lane, acc);
            } else if constexpr (kHasHalfDot<T>) {
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

// The products that are streamed: the output layer, or any product of at least
// kStreamMinBytes, or kStreamMinBytesDecoded for the types whose decoding costs
// the most (all quantised ones but Q8_0): from 5 MB they beat the staged kernel's
// fp32 forms by up to 10 points of the copy (Q4_K 8960 x 1536 20 -> 30 %), while
// Q8_0 lost up to 6 points below 16 MB (round 30).
constexpr int64_t kStreamMinRows = 32768;
constexpr int64_t kStreamMinBytes = int64_t(16) << 20;
constexpr int64_t kStreamMinBytesDecoded = int64_t(5) << 20;

bool matvec1_streamed(TensorType type, int64_t rows, int64_t row_bytes) {
    const bool decoded = gguf::traits(type).block_size > 1 && type != TensorType::Q8_0;
    return rows >= kStreamMinRows || rows * row_bytes >= (decoded ? kStreamMinBytesDecoded : kStreamMinBytes);
}

static StreamShape stream_shape(TensorType type, int64_t piece_cols) {
    const int bytes = int(gguf::row_bytes(type, uint64_t(piece_cols)));
    return {int(piece_cols), bytes, (bytes + 32 + 15) / 16 * 16};  // 15 bytes of lead, 4 of over-read
}
static size_t stream_smem_bytes(TensorType type, int R, const StreamShape& shape, int64_t cols, int warps) {
    const bool whole = shape.piece_cols == cols;
    const size_t input = int_dot_type(type)                  ? int_input_bytes(cols)
                         : gguf::traits(type).block_size > 1 ? half_input_bytes(cols)
                                                             : sizeof(float) * size_t(cols);
    return size_t(stream_stages(whole, warps) * warps * R) * shape.row_stride + input;
}

// Rows per warp and the columns of a step. Whole rows: the most rows per warp
// (4, 2) that leave room for three blocks of 8 warps per SM; else two rows per
// warp in one block of 16 warps, when that fits (below kWidePiecesCols: rows of
// 4,096 in 4-6 bits); else one row per warp in three blocks of 8, or two (below
// kWidePiecesCols).
// Two rows per warp read each input once for both, and one block per SM keeps
// one copy of the input instead of three or four: against one row per warp in
// blocks of 8 (round 31), Q4_K 14336 x 4096 62.6 -> 68.9 % of the copy, IQ4_NL
// 128256 x 4096 68.8 -> 85.8 %, Q4_0 85.1 -> 95.4 %; Q4_K and Q5_K on 128256 x
// 4096 measured 86-88 % against 90-92 in that call (Q4_K 84.8 and 92.4 % in two
// later calls of the same code), where one block of 32 warps and one row each
// was best for them. (Q2_K and Q3_K x 4,096 keep two rows in blocks of 8: forced
// into this shape, Q2_K lost 3 points on 128256 x 4096.) Wider rows: one
// row per warp in the widest pieces that leave room for two blocks, a multiple
// of 1,024 columns (a warp's step for every type of dot_half.cuh: 1,280 left a
// step of 8 lanes in 32), else of 256. R = 0 when not even that fits. From the
// H200 runs of round 27: with the fp16 input the decoding no longer bounds the
// products, so the bytes in flight matter more than the rows per warp (which
// share the input's loads), and one row per warp gives the wide products of
// few rows (4,096 x 14,336) four times the tiles.
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
    int warps;  // the block's warps
};
constexpr int64_t kWidePiecesCols = 8192;
constexpr int kPairedRowsWarps = 16, kWidePiecesWarps = 16;
static StreamChoice choose_stream(TensorType type, int64_t cols) {
    const size_t per_sm = size_t(device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor));
    const bool wide = cols >= kWidePiecesCols;
    const int piece_warps = wide ? kWidePiecesWarps : kMatvecWarps;
    const auto fits = [&](int R, const StreamShape& shape, int blocks, int warps = kMatvecWarps) {
        return blocks * (stream_smem_bytes(type, R, shape, cols, warps) + 2048) <= per_sm;
    };
    const StreamShape whole = stream_shape(type, cols);
    for (int R : {4, 2})
        if (fits(R, whole, 3)) return {R, whole, kMatvecWarps};
    if (!wide && fits(2, whole, 1, kPairedRowsWarps)) return {2, whole, kPairedRowsWarps};
    if (fits(1, whole, 3)) return {1, whole, kMatvecWarps};
    if (!wide && fits(1, whole, 2)) return {1, whole, kMatvecWarps};
    for (int64_t piece = (cols - 1) / 1024 * 1024; piece >= 1024; piece -= 1024)
        if (fits(1, stream_shape(type, piece), 2, piece_warps)) return {1, stream_shape(type, piece), piece_warps};
    for (int64_t piece = (std::min<int64_t>(cols, 1024) - 1) / 256 * 256; piece >= 256; piece -= 256)
        if (fits(1, stream_shape(type, piece), 2, piece_warps)) return {1, stream_shape(type, piece), piece_warps};
    return {0, {}, kMatvecWarps};
}

template <int R, TensorType T, bool Whole, int kWarps>
static void launch_stream(const MatvecPart& p, int64_t cols, const MatvecIn& in, const StreamShape& shape,
                          cudaStream_t stream) {
    const auto kernel = matvec1_stream_kernel<R, T, Whole, kWarps>;
    static bool configured = [&] {
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin) - 1024));
        return true;
    }();
    (void)configured;
    const size_t smem = stream_smem_bytes(p.type, R, shape, cols, kWarps);
    int per_sm = 0;
    ORCD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, smem));
    // As many blocks as fit at once. (Fewer, so that each block had the same
    // number of tiles, left SMs with four blocks and others with three: the
    // product of 14,336 Q4_K rows got 25 % slower, round 27.)
    const int64_t tiles = (p.rows + kWarps * R - 1) / (kWarps * R);
    const unsigned blocks = unsigned(std::min<int64_t>(tiles, int64_t(std::max(1, per_sm)) * multiprocessors()));
    launch_pdl(kernel, blocks, kWarps * 32, smem, stream, p, cols, in, shape);
}

bool launch_matvec1_streamed(const MatvecPart& p, int64_t cols, MatvecIn in, MatvecInput input,
                             cudaStream_t stream) {
    if (!matvec1_streamed(p.type, p.rows, p.row_bytes)) return false;
    if (input == MatvecInput::Plain) in.norm_w = nullptr;
    bool launched = false;
    const auto launch = [&]<TensorType T>() {
        const StreamChoice c = choose_stream(T, cols);
        const bool whole = c.shape.piece_cols == cols;
        if (c.R == 0) return;
        if (!whole) {
            if (c.warps == kWidePiecesWarps)
                launch_stream<1, T, false, kWidePiecesWarps>(p, cols, in, c.shape, stream);
            else
                launch_stream<1, T, false, kMatvecWarps>(p, cols, in, c.shape, stream);
        } else if (c.warps == kPairedRowsWarps) {
            launch_stream<2, T, true, kPairedRowsWarps>(p, cols, in, c.shape, stream);
        } else if (c.R == 4) {
            launch_stream<4, T, true, kMatvecWarps>(p, cols, in, c.shape, stream);
        } else if (c.R == 2) {
            launch_stream<2, T, true, kMatvecWarps>(p, cols, in, c.shape, stream);
        } else {
            launch_stream<1, T, true, kMatvecWarps>(p, cols, in, c.shape, stream);
        }
        launched = true;
    };
    dispatch_type(p.type, [&]<TensorType T>() { launch.template operator()<T>(); });
    return launched;
}

}  // namespace orcd::cuda
