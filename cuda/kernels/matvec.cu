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
// v3: the input may be transformed on the fly, so that the kernel before it
// disappears (one launch and one round trip through memory less):
//   Norm:   x * rsqrt(mean(x^2) + eps) * norm_w  (RMSNorm; each block computes the
//           row's scale itself: 896 floats from L2, cheaper than a launch)
//   Swiglu: silu(gate) * up, with x = [gate | up] of 2 * cols per token.
#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace orcd::cuda {

constexpr int kMatvecWarps = 8;

// Eight input values of token t at columns 8g..8g+7, after the input transform.
template <MatvecInput I>
__device__ __forceinline__ void load_input(const MatvecIn& in, int64_t cols, int t, int64_t g, float scale, float a[8]) {
    if constexpr (I == MatvecInput::Swiglu) {
        const float4* gp = reinterpret_cast<const float4*>(in.x + t * 2 * cols + 8 * g);
        const float4* up = reinterpret_cast<const float4*>(in.x + t * 2 * cols + cols + 8 * g);
        const float4 g0 = __ldg(gp), g1 = __ldg(gp + 1), u0 = __ldg(up), u1 = __ldg(up + 1);
        const float gv[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
        const float uv[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) a[i] = gv[i] / (1.0f + expf(-gv[i])) * uv[i];
    } else {
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
    for (int t = 0; t < N; ++t) scale[t] = 1.0f;
    if constexpr (I == MatvecInput::Norm) {
        // Every block normalises the token rows itself (all threads, before any exit).
#pragma unroll
        for (int t = 0; t < N; ++t) {
            if (t >= n) break;
            float ss = 0.0f;
            for (int64_t c = threadIdx.x; c < cols / 4; c += blockDim.x) {
                const float4 v = __ldg(reinterpret_cast<const float4*>(in.x + t * cols) + c);
                ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            }
            scale[t] = rsqrtf(block_sum(ss) / float(cols) + in.eps);
        }
    }
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

template <TensorType T, int N, MatvecInput I>
static void launch_matvec_n(const Weight& w, const MatvecIn& in, int n, float* out, int ldo, const float* bias,
                            bool accumulate, cudaStream_t stream) {
    const unsigned blocks = unsigned((w.rows + kMatvecWarps - 1) / kMatvecWarps);
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
        else if (input == MatvecInput::Swiglu)
            launch_matvec_n<T, 1, MatvecInput::Swiglu>(w, in, 1, out, ldo, bias, accumulate, stream);
        else
            launch_matvec_n<T, 1, MatvecInput::Plain>(w, in, 1, out, ldo, bias, accumulate, stream);
    });
}

}  // namespace orcd::cuda
