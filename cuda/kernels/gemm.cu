// Prefill matrix product on tensor cores: out[n, rows] = x[n, cols] . W^T.
//
// v2: 8 warps per block and a tile of TM tokens x 64 weight rows, TM = 128
// where that still gives every SM a block (the weight is decoded once per 128
// tokens instead of per 64, halving the decode work) and TM = 64 for the narrow
// products (896 rows x 512 tokens would be only 56 blocks of 128 tokens on 132
// SMs). K steps through two shared buffers, 32 wide for 128-token tiles and 64
// for 64-token ones (those blocks are few per SM, so with one step of loads in
// flight they wait on memory latency; wider steps put twice as many loads in
// flight and halve the barriers; 128-token tiles at 64 would not fit the 48 KB
// of static shared memory). The step k+1 global loads
// (weights decoded from the quantised blocks, activations converted to fp16)
// are held in registers while the warps run step k's mma from one buffer, then
// stored into the other, so each step needs one block barrier instead of two.
// wmma 16x16x16 fragments accumulate in fp32.
#include <mma.h>

#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

namespace {

constexpr int kTileN = 64;
constexpr int kThreads = 256;
constexpr int kPad = 8;  // halves of padding per shared row: spreads wmma loads over the banks

struct __align__(16) Half8 {
    __half2 h[4];
};

__device__ __forceinline__ Half8 to_half8(const float v[8]) {
    Half8 o;
#pragma unroll
    for (int i = 0; i < 4; ++i) o.h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
    return o;
}

// The shared memory of one block: two operand buffers during the K loop, then
// (after a barrier) the fp32 output tile for the coalesced epilogue.
template <int TM, int TK>
struct Smem {
    static constexpr int kLd = TK + kPad;
    struct Operands {
        __half a[2][TM][kLd];
        __half b[2][kTileN][kLd];
    };
    union {
        Operands op;
        float c[TM][kTileN + 4];
    };
};

// One K step's operands in registers, already fp16: A has TM x TK/8 groups of 8,
// B 64 x TK/8, spread evenly over the threads.
template <int TM, int TK>
struct StepRegs {
    static constexpr int kGroups = TK / 8;
    static constexpr int kA = TM * kGroups / kThreads, kB = kTileN * kGroups / kThreads;
    Half8 a[kA];
    Half8 b[kB];
};

template <TensorType T, int TM, int TK>
__device__ __forceinline__ void load_step(StepRegs<TM, TK>& s, const float* x, int n, int64_t cols, const uint8_t* w,
                                          size_t row_bytes, int64_t rows, int m0, int64_t r0, int64_t k0) {
    using R = StepRegs<TM, TK>;
#pragma unroll
    for (int i = 0; i < R::kA; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        const int row = slot / R::kGroups, grp = slot % R::kGroups;
        const int64_t k = k0 + 8 * grp;
        const int t = m0 + row;
        float v[8];
        if (t < n && k < cols) {
            const float4* p = reinterpret_cast<const float4*>(x + int64_t(t) * cols + k);
            const float4 u = p[0], q = p[1];
            v[0] = u.x; v[1] = u.y; v[2] = u.z; v[3] = u.w; v[4] = q.x; v[5] = q.y; v[6] = q.z; v[7] = q.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = 0.0f;
        }
        s.a[i] = to_half8(v);
    }
#pragma unroll
    for (int i = 0; i < R::kB; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        const int row = slot / R::kGroups, grp = slot % R::kGroups;
        const int64_t k = k0 + 8 * grp;
        const int64_t r = r0 + row;
        float v[8];
        if (r < rows && k < cols) {
            decode_group<T>(w + size_t(r) * row_bytes, k / 8, v);
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = 0.0f;
        }
        s.b[i] = to_half8(v);
    }
}

template <int TM, int TK, int Ld>
__device__ __forceinline__ void store_step(const StepRegs<TM, TK>& s, __half (*As)[Ld], __half (*Bs)[Ld]) {
    using R = StepRegs<TM, TK>;
#pragma unroll
    for (int i = 0; i < R::kA; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        *reinterpret_cast<Half8*>(&As[slot / R::kGroups][8 * (slot % R::kGroups)]) = s.a[i];
    }
#pragma unroll
    for (int i = 0; i < R::kB; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        *reinterpret_cast<Half8*>(&Bs[slot / R::kGroups][8 * (slot % R::kGroups)]) = s.b[i];
    }
}

template <TensorType T, int TM, int TK>
__global__ void __launch_bounds__(kThreads)
    gemm_kernel(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols, const float* x, int n, float* out,
                int ldo, const float* bias, bool accumulate) {
    using namespace nvcuda;
    // Warp grid over the tile: 4 x 2 warps of 32x32 for TM = 128, 2 x 4 of 32x16 for TM = 64.
    constexpr int kWarpsN = TM == 128 ? 2 : 4;
    constexpr int kWN = kTileN / kWarpsN;
    constexpr int kFM = 2, kFN = kWN / 16;
    constexpr int kLd = Smem<TM, TK>::kLd;
    __shared__ __align__(32) Smem<TM, TK> sm;
    pdl_enter();

    const int m0 = blockIdx.y * TM;
    const int64_t r0 = int64_t(blockIdx.x) * kTileN;
    const int warp = threadIdx.x / 32;
    const int wm = (warp / kWarpsN) * 32, wn = (warp % kWarpsN) * kWN;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kFM][kFN];
#pragma unroll
    for (int i = 0; i < kFM; ++i)
#pragma unroll
        for (int j = 0; j < kFN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    StepRegs<TM, TK> regs;
    load_step<T, TM, TK>(regs, x, n, cols, w, row_bytes, rows, m0, r0, 0);
    store_step<TM, TK, kLd>(regs, sm.op.a[0], sm.op.b[0]);
    __syncthreads();
    int buf = 0;
    for (int64_t k0 = 0; k0 < cols; k0 += TK) {
        const bool more = k0 + TK < cols;
        // Global loads of the next step go out first; their latency hides behind this step's mma.
        if (more) load_step<T, TM, TK>(regs, x, n, cols, w, row_bytes, rows, m0, r0, k0 + TK);
#pragma unroll
        for (int kk = 0; kk < TK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[kFM];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[kFN];
#pragma unroll
            for (int i = 0; i < kFM; ++i) wmma::load_matrix_sync(a[i], &sm.op.a[buf][wm + 16 * i][kk], kLd);
#pragma unroll
            for (int j = 0; j < kFN; ++j) wmma::load_matrix_sync(b[j], &sm.op.b[buf][wn + 16 * j][kk], kLd);
#pragma unroll
            for (int i = 0; i < kFM; ++i)
#pragma unroll
                for (int j = 0; j < kFN; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        // The other buffer was last read in the previous step, before the barrier that ended it.
        if (more) store_step<TM, TK, kLd>(regs, sm.op.a[buf ^ 1], sm.op.b[buf ^ 1]);
        __syncthreads();
        buf ^= 1;
    }
    // The loop's last barrier ends all reads of the operands: the union can hold the output now.
#pragma unroll
    for (int i = 0; i < kFM; ++i)
#pragma unroll
        for (int j = 0; j < kFN; ++j)
            wmma::store_matrix_sync(&sm.c[wm + 16 * i][wn + 16 * j], acc[i][j], kTileN + 4, wmma::mem_row_major);
    __syncthreads();
    // Epilogue: consecutive threads write consecutive weight rows of one token (coalesced).
    for (int e = threadIdx.x; e < TM * kTileN; e += kThreads) {
        const int tm = e / kTileN, tn = e % kTileN;
        const int t = m0 + tm;
        const int64_t r = r0 + tn;
        if (t >= n || r >= rows) continue;
        float* o = out + int64_t(t) * ldo + r;
        *o = (accumulate ? *o : 0.0f) + sm.c[tm][tn] + (bias ? bias[r] : 0.0f);
    }
}

constexpr int kSms = 132;  // H100 SXM; only steers the tile choice

}  // namespace

void launch_gemm(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                 cudaStream_t stream) {
    if (n == 0) return;
    const unsigned row_tiles = unsigned((w.rows + kTileN - 1) / kTileN);
    const bool wide = int64_t(row_tiles) * ((n + 127) / 128) >= kSms;
    dispatch_type(w.type, [&]<TensorType T>() {
        const auto args = [&](auto kernel, int tm) {
            launch_pdl(kernel, dim3(row_tiles, unsigned((n + tm - 1) / tm)), kThreads, 0, stream,
                       static_cast<const uint8_t*>(w.data), gguf::row_bytes(w.type, w.cols), w.rows, w.cols, x,
                       n, out, ldo, bias, accumulate);
        };
        if (wide)
            args(gemm_kernel<T, 128, 32>, 128);
        else
            args(gemm_kernel<T, 64, 64>, 64);
    });
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
