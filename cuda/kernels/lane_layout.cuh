// How the streamed products (matvec_stream.cu) split a quant block over the
// lanes of a warp, and where the staged input's octets (8 inputs) sit in
// shared memory: shared by the fp16 dots (dot_half.cuh) and the integer ones
// (dot_int.cuh). Each lane takes 32 weights of a block as two runs of 16, A
// and B, whose quants share bytes (low and high nibbles; the 2-bit planes j
// and j + 1 of Q2_K / Q3_K; for Q8_0 the two halves of the block).
#pragma once

#include "kernels/dequant.cuh"

namespace orcd::cuda {

// The quantised types (blocks of 32 or 256); the plain ones are streamed on fp32.
template <TensorType T>
constexpr bool kQuantised = Decode<T>::kElems > 1;

// A lane's runs for type T: lanes per block (kLanes), the bytes of a block, and
// the first octet (8 inputs) of each run within the block's inputs, for the
// lane's part p of its block (p < kLanes). kSums: the fp16 dot needs the sums
// of each run's inputs (Q4_1's minimum term; the integer dots always have them).
template <TensorType T>
struct LaneLayout {  // blocks of 32: A is elements 0-15, B 16-31
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
struct LaneLayout<TensorType::Q2_K> : PlanesLayout<TensorType::Q2_K, true> {};
template <>
struct LaneLayout<TensorType::Q3_K> : PlanesLayout<TensorType::Q3_K, false> {};
template <>
struct LaneLayout<TensorType::Q4_K> : ChunkLayout<TensorType::Q4_K> {};
template <>
struct LaneLayout<TensorType::Q5_K> : ChunkLayout<TensorType::Q5_K> {};
template <>
struct LaneLayout<TensorType::Q6_K> : SuperLayout<TensorType::Q6_K, false> {  // part p: 16 of 32 (j = p % 2), quarter k0 = p / 2 % 2 (and k0 + 2), half h = p / 4
    __device__ static int run_a(int p) { return 16 * (p >> 2) + 4 * ((p >> 1) & 1) + 2 * (p & 1); }
    __device__ static int run_b(int p) { return run_a(p) + 8; }
};
template <>
struct LaneLayout<TensorType::IQ4_XS> : SuperLayout<TensorType::IQ4_XS, false> {  // part p: sub-block p, as IQ4_NL's block
    __device__ static int run_a(int p) { return 4 * p; }
    __device__ static int run_b(int p) { return 4 * p + 2; }
};

// Where octet o of the input sits in shared memory: its low three bits are
// flipped by bits 3 and 4, so that the 8 lanes of each quarter warp read 8
// different bank groups with every type's lane layout (LaneLayout: consecutive
// blocks of 32; the parts of one super-block). Octets 32 apart are swizzled
// alike, so a lane's runs keep their offsets from block to block.
__device__ __forceinline__ int swizzled_octet(int o) {
    const int b3 = (o >> 3) & 1, b4 = (o >> 4) & 1;
    return o ^ ((b3 ^ b4) | (b4 << 1) | (b3 << 2));
}

// A lane's place in the streamed dots (dot_rows_half, dot_rows_int), whose
// staged copies lay their octets out alike: its part of a block, its first block
// and the four octets of its runs A and B there. A warp step takes kBlocksPerStep
// blocks, 32 octets times a multiple of 4, so the swizzle is the same at every step
// and the lane's octets of a later block are `step` octets on (octets(step)).
template <TensorType T>
struct LaneRuns {
    using L = LaneLayout<T>;
    static constexpr int kBlocksPerStep = 32 / L::kLanes, kOctets = L::kElems / 8;
    int part, block, oa, ob;  // oa, ob: the runs' first octets, from the row's start
    const uint4 *a0, *a1, *b0, *b1;
    __device__ LaneRuns(const uint4* x, int first_block, int lane)
        : part(lane % L::kLanes), block(lane / L::kLanes),
          oa((first_block + block) * kOctets + L::run_a(part)), ob((first_block + block) * kOctets + L::run_b(part)),
          a0(x + swizzled_octet(oa)), a1(x + (swizzled_octet(oa) ^ 1)),
          b0(x + swizzled_octet(ob)), b1(x + (swizzled_octet(ob) ^ 1)) {}
    __device__ void octets(int step, uint4 (&xa)[2], uint4 (&xb)[2]) const {
        xa[0] = a0[step];
        xa[1] = a1[step];
        xb[0] = b0[step];
        xb[1] = b1[step];
    }
};

}  // namespace orcd::cuda
