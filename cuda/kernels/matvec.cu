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
#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace orcd::cuda {

constexpr int kMatvecWarps = 8;

// N: tokens the kernel is compiled for (1, or kMatvecMaxTokens with n of them used).
template <TensorType T, int N>
__global__ void __launch_bounds__(kMatvecWarps * 32)
    matvec_kernel(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols, const float* x, int n, float* out,
                  int ldo, const float* bias, bool accumulate) {
    const int64_t r = int64_t(blockIdx.x) * kMatvecWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const uint8_t* row = w + size_t(r) * row_bytes;
    if (r < rows) prefetch_l2(row, row_bytes, lane, 32);
    pdl_enter();
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
            const float4* xp = reinterpret_cast<const float4*>(x + t * cols + 8 * g);
            const float4 a = __ldg(xp), b = __ldg(xp + 1);
            acc[t] += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w + v[4] * b.x + v[5] * b.y + v[6] * b.z +
                      v[7] * b.w;
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

template <TensorType T, int N>
static void launch_matvec_n(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                            cudaStream_t stream) {
    const unsigned blocks = unsigned((w.rows + kMatvecWarps - 1) / kMatvecWarps);
    launch_pdl(matvec_kernel<T, N>, blocks, kMatvecWarps * 32, 0, stream, static_cast<const uint8_t*>(w.data),
               gguf::row_bytes(w.type, w.cols), w.rows, w.cols, x, n, out, ldo, bias, accumulate);
}

void launch_matvec(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                   cudaStream_t stream) {
    if (n == 0) return;
    dispatch_type(w.type, [&]<TensorType T>() {
        if (n == 1)
            launch_matvec_n<T, 1>(w, x, n, out, ldo, bias, accumulate, stream);
        else
            launch_matvec_n<T, kMatvecMaxTokens>(w, x, n, out, ldo, bias, accumulate, stream);
    });
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
