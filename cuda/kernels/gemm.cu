// Prefill matrix product on tensor cores: out[n, rows] = x[n, cols] . W^T.
//
// v1: 64x64 output tiles (tokens x weight rows), 4 warps of 32x32, K steps of
// 32. Each step the block decodes its 64x32 slice of the quantised weight
// straight into shared memory as fp16 (the weight is read once per token tile,
// never expanded in device memory) and converts the fp32 activations to fp16;
// wmma 16x16x16 fragments accumulate in fp32. The next step's global loads are
// issued before the current step's mma so that memory and math overlap.
#include <mma.h>

#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 32;
constexpr int kThreads = 128;
constexpr int kPad = 8;  // halves of padding per shared row: spreads wmma loads over the banks
constexpr int kLd = kTileK + kPad;

struct __align__(16) Half8 {
    __half2 h[4];
};

__device__ __forceinline__ Half8 to_half8(const float v[8]) {
    Half8 o;
#pragma unroll
    for (int i = 0; i < 4; ++i) o.h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
    return o;
}

// The loads of one K step, held in registers between the global read and the shared store.
struct StepLoads {
    float a[2][8];  // two groups of 8 activations
    float b[2][8];  // two groups of 8 decoded weights
};

template <TensorType T>
__device__ __forceinline__ void load_step(StepLoads& s, const float* x, int n, int64_t cols, const uint8_t* w,
                                          size_t row_bytes, int64_t rows, int m0, int64_t r0, int64_t k0) {
    // Each thread owns two (row, group) slots of each operand: 64 rows x 4 groups = 256 slots.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        const int row = slot / 4, grp = slot % 4;
        const int64_t k = k0 + 8 * grp;
        const int t = m0 + row;
        if (t < n && k < cols) {
            const float4* p = reinterpret_cast<const float4*>(x + int64_t(t) * cols + k);
            const float4 u = p[0], v = p[1];
            s.a[i][0] = u.x; s.a[i][1] = u.y; s.a[i][2] = u.z; s.a[i][3] = u.w;
            s.a[i][4] = v.x; s.a[i][5] = v.y; s.a[i][6] = v.z; s.a[i][7] = v.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) s.a[i][j] = 0.0f;
        }
        const int64_t r = r0 + row;
        if (r < rows && k < cols) {
            decode_group<T>(w + size_t(r) * row_bytes, k / 8, s.b[i]);
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) s.b[i][j] = 0.0f;
        }
    }
}

__device__ __forceinline__ void store_step(const StepLoads& s, __half (*As)[kLd], __half (*Bs)[kLd]) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        const int row = slot / 4, grp = slot % 4;
        *reinterpret_cast<Half8*>(&As[row][8 * grp]) = to_half8(s.a[i]);
        *reinterpret_cast<Half8*>(&Bs[row][8 * grp]) = to_half8(s.b[i]);
    }
}

template <TensorType T>
__global__ void __launch_bounds__(kThreads)
    gemm_kernel(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols, const float* x, int n, float* out,
                int ldo, const float* bias, bool accumulate) {
    using namespace nvcuda;
    __shared__ __align__(32) __half As[kTileM][kLd];
    __shared__ __align__(32) __half Bs[kTileN][kLd];
    __shared__ __align__(32) float Cs[kTileM][kTileN + 4];
    pdl_enter();

    const int m0 = blockIdx.y * kTileM;
    const int64_t r0 = int64_t(blockIdx.x) * kTileN;
    const int warp = threadIdx.x / 32;
    const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    StepLoads loads;
    load_step<T>(loads, x, n, cols, w, row_bytes, rows, m0, r0, 0);
    for (int64_t k0 = 0; k0 < cols; k0 += kTileK) {
        __syncthreads();  // the previous step's fragments are loaded
        store_step(loads, As, Bs);
        __syncthreads();
        if (k0 + kTileK < cols) load_step<T>(loads, x, n, cols, w, row_bytes, rows, m0, r0, k0 + kTileK);
#pragma unroll
        for (int kk = 0; kk < kTileK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[wm + 16 * i][kk], kLd);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[wn + 16 * j][kk], kLd);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&Cs[wm + 16 * i][wn + 16 * j], acc[i][j], kTileN + 4, wmma::mem_row_major);
    __syncthreads();
    // Epilogue: consecutive threads write consecutive weight rows of one token (coalesced).
    for (int e = threadIdx.x; e < kTileM * kTileN; e += kThreads) {
        const int tm = e / kTileN, tn = e % kTileN;
        const int t = m0 + tm;
        const int64_t r = r0 + tn;
        if (t >= n || r >= rows) continue;
        float* o = out + int64_t(t) * ldo + r;
        *o = (accumulate ? *o : 0.0f) + Cs[tm][tn] + (bias ? bias[r] : 0.0f);
    }
}

}  // namespace

void launch_gemm(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                 cudaStream_t stream) {
    if (n == 0) return;
    const dim3 grid(unsigned((w.rows + kTileN - 1) / kTileN), unsigned((n + kTileM - 1) / kTileM));
    dispatch_type(w.type, [&]<TensorType T>() {
        launch_pdl(gemm_kernel<T>, grid, kThreads, 0, stream, static_cast<const uint8_t*>(w.data),
                   gguf::row_bytes(w.type, w.cols), w.rows, w.cols, x, n, out, ldo, bias, accumulate);
    });
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
