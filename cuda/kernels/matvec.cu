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
#include <cuda_pipeline.h>

#include <cstdint>

#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace orcd::cuda {

constexpr int kMatvecWarps = 8;
constexpr int kStageBytes = 4096 + 16;  // per warp: a row of up to 4 KB plus the alignment slack

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

// One token, R consecutive rows per warp, staged through shared memory (v4).
template <TensorType T, MatvecInput I, int R>
__global__ void __launch_bounds__(kMatvecWarps * 32)
    matvec1_kernel(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols, MatvecIn in, float* out,
                   const float* bias, bool accumulate) {
    extern __shared__ __align__(16) uint8_t stage[];
    const int lane = threadIdx.x % 32;
    const int64_t r0 = (int64_t(blockIdx.x) * kMatvecWarps + threadIdx.x / 32) * R;
    const int nr = int(min(int64_t(R), rows - r0));  // rows of this warp; <= 0: none
    // The weights do not depend on the kernel before, so their copy is issued
    // before waiting for it (PDL): it overlaps that kernel's tail. From the 8-byte
    // boundary at or below the first row: at most 7 bytes before it (a tensor's
    // first row is 256-aligned, so that is the same tensor) and 7 after the last
    // (inside the 256-aligned arena).
    const uintptr_t a = reinterpret_cast<uintptr_t>(w + size_t(max(r0, int64_t(0))) * row_bytes);
    const uint8_t* from = reinterpret_cast<const uint8_t*>(a & ~uintptr_t(7));
    const int lead = int(a & 7);
    const int n8 = nr > 0 ? (lead + int(row_bytes) * nr + 7) / 8 : 0;
    uint8_t* to = stage + (threadIdx.x / 32) * kStageBytes;
    for (int i = lane; i < n8; i += 32) __pipeline_memcpy_async(to + 8 * i, from + 8 * i, 8);
    __pipeline_commit();
    pdl_enter();
    const float scale = I == MatvecInput::Norm ? norm_scale(in, cols, 0) : 1.0f;
    if (nr <= 0) return;
    __pipeline_wait_prior(0);
    __syncwarp();
    const uint8_t* src = to + lead;
    const int64_t groups = cols / 8;
    float acc[R];
#pragma unroll
    for (int k = 0; k < R; ++k) acc[k] = 0.0f;
#pragma unroll 2
    for (int64_t g = lane; g < groups; g += 32) {
        float x8[8];
        load_input<I>(in, cols, 0, g, scale, x8);
#pragma unroll
        for (int k = 0; k < R; ++k) {
            if (k < nr) {
                float v[8];
                decode_group<T>(src + size_t(k) * row_bytes, g, v);
                acc[k] += v[0] * x8[0] + v[1] * x8[1] + v[2] * x8[2] + v[3] * x8[3] + v[4] * x8[4] + v[5] * x8[5] +
                          v[6] * x8[6] + v[7] * x8[7];
            }
        }
    }
#pragma unroll
    for (int k = 0; k < R; ++k) {
        const float sum = warp_sum(acc[k]);
        if (lane == k && k < nr) {
            const int64_t r = r0 + k;
            float* o = out + r;
            *o = (accumulate ? *o : 0.0f) + sum + (bias ? bias[r] : 0.0f);
        }
    }
}

template <TensorType T, MatvecInput I, int R>
static void launch_matvec1_r(const Weight& w, const MatvecIn& in, float* out, const float* bias, bool accumulate,
                             cudaStream_t stream) {
    const int64_t rows_per_block = int64_t(kMatvecWarps) * R;
    const unsigned blocks = unsigned((w.rows + rows_per_block - 1) / rows_per_block);
    launch_pdl(matvec1_kernel<T, I, R>, blocks, kMatvecWarps * 32, size_t(kMatvecWarps) * kStageBytes, stream,
               static_cast<const uint8_t*>(w.data), gguf::row_bytes(w.type, w.cols), w.rows, w.cols, in, out, bias,
               accumulate);
}

// One token: the staged kernel (4 rows per warp for products of many rows) when the rows fit its buffer.
template <TensorType T, MatvecInput I>
static bool try_matvec1(const Weight& w, const MatvecIn& in, float* out, const float* bias, bool accumulate,
                        cudaStream_t stream) {
    const size_t row_bytes = gguf::row_bytes(w.type, w.cols);
    if (w.rows >= 4096 && 4 * row_bytes + 16 <= size_t(kStageBytes)) {
        launch_matvec1_r<T, I, 4>(w, in, out, bias, accumulate, stream);
        return true;
    }
    if (row_bytes + 16 <= size_t(kStageBytes)) {
        launch_matvec1_r<T, I, 1>(w, in, out, bias, accumulate, stream);
        return true;
    }
    return false;
}

template <TensorType T, int N, MatvecInput I>
static void launch_matvec_n(const Weight& w, const MatvecIn& in, int n, float* out, int ldo, const float* bias,
                            bool accumulate, cudaStream_t stream) {
    const unsigned blocks = unsigned((w.rows + kMatvecWarps - 1) / kMatvecWarps);
    if (N == 1 && try_matvec1<T, I>(w, in, out, bias, accumulate, stream)) return;
    launch_pdl(matvec_kernel<T, N, I>, blocks, kMatvecWarps * 32, 0, stream, static_cast<const uint8_t*>(w.data),
               gguf::row_bytes(w.type, w.cols), w.rows, w.cols, in, n, out, ldo, bias, accumulate);
}

void launch_matvec(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                   cudaStream_t stream) {
    if (n == 0) return;
    const MatvecIn in{x, nullptr, 0.0f};
    dispatch_type(w.type, [&]<TensorType T>() {
        if (n == 1)
            launch_matvec_n<T, 1, MatvecInput::Plain>(w, in, n, out, ldo, bias, accumulate, stream);
        else
            launch_matvec_n<T, kMatvecMaxTokens, MatvecInput::Plain>(w, in, n, out, ldo, bias, accumulate, stream);
    });
}

void launch_matvec1(const Weight& w, MatvecInput input, const MatvecIn& in, float* out, int ldo, const float* bias,
                    bool accumulate, cudaStream_t stream) {
    dispatch_type(w.type, [&]<TensorType T>() {
        if (input == MatvecInput::Norm)
            launch_matvec_n<T, 1, MatvecInput::Norm>(w, in, 1, out, ldo, bias, accumulate, stream);
        else
            launch_matvec_n<T, 1, MatvecInput::Plain>(w, in, 1, out, ldo, bias, accumulate, stream);
    });
}

}  // namespace orcd::cuda
