// Prefill matrix product on tensor cores: out[n, rows] (+)= x[n, cols] . W^T (+ bias).
//
// v3: warp-level mma.sync m16n8k16 (fp16 operands, fp32 accumulation) fed by
// ldmatrix. A block computes BM tokens x 128 weight rows (BM = 128, or 64 for
// n <= 64) with 8 warps in a 2 x 4 grid; each warp holds a (BM/2) x 32 tile of
// accumulators in registers (16 mma per 16-wide K slice for BM = 128, against
// 6 ldmatrix). K advances in steps of 64:
//   - activations: converted to fp16 once per call (to_half_kernel, into the
//     caller's scratch), then streamed into shared memory by cp.async through a
//     3-stage ring, so two steps of A loads are always in flight;
//   - weights: stay quantised in VRAM; each thread decodes 4 groups of 8 for the
//     next step into registers (global loads issued before this step's mma, so
//     their latency hides behind it) and stores them as fp16 into the other of
//     two shared buffers after the mma. One block barrier per step.
// Products with too few tiles to fill the GPU (896 output rows: 28 tiles of
// 128 x 128 at n = 512) split K over blockIdx.z; every split writes its partial
// tile to scratch and splitk_reduce adds the splits in a fixed order, so results
// are bit-identical from run to run (no atomics). The split count depends only
// on the shape. Tokens beyond n and rows beyond `rows` are computed from
// zero-filled or clamped operands and never stored; K beyond cols is zero.
#include <algorithm>
#include <string>

#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/mma.cuh"

namespace orcd::cuda {

namespace {

constexpr int kBN = 128;       // weight rows per block
constexpr int kTK = 64;        // K per step
constexpr int kThreads = 256;  // 8 warps: 2 along the tokens x 4 along the weight rows
constexpr int kStagesA = 3;
constexpr int kLd = ldmatrix_row_halves(kTK);  // halves per shared row (144 bytes)
constexpr int kSms = 132;      // H100 SXM; only steers the split choice (the same on every device: deterministic)
constexpr int kMaxSplits = 16;
constexpr int kMinSplitSteps = 2;

template <int BM>
struct Cfg {
    static constexpr int kWM = BM / 2, kWN = kBN / 4;              // warp tile
    static constexpr int kMI = kWM / 16, kNJ = kWN / 8;            // mma tiles per warp
    static constexpr int kAChunks = BM * (kTK / 8) / kThreads;     // 16-byte A copies per thread per step
    static constexpr int kBGroups = kBN * (kTK / 8) / kThreads;    // weight groups of 8 per thread per step
    static constexpr size_t kAStage = size_t(BM) * kLd;            // halves
    static constexpr size_t kBStage = size_t(kBN) * kLd;
    static constexpr size_t kSmem = (kStagesA * kAStage + 2 * kBStage) * sizeof(__half);
};

// fp32 activations to fp16, 8 per thread (cols is a multiple of 8).
__global__ void to_half_kernel(const float* x, size_t count8, __half* y) {
    pdl_enter();
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count8) return;
    const float4 a = reinterpret_cast<const float4*>(x)[2 * i], b = reinterpret_cast<const float4*>(x)[2 * i + 1];
    const uint4 h = make_uint4(pack_half2(a.x, a.y), pack_half2(a.z, a.w), pack_half2(b.x, b.y), pack_half2(b.z, b.w));
    reinterpret_cast<uint4*>(y)[i] = h;
}

// A of one step (BM tokens x 64) into a shared stage; rows >= n and k >= cols are zero-filled.
template <int BM>
__device__ __forceinline__ void load_a(__half* As, const __half* x16, int n, int cols, int m0, int k0) {
#pragma unroll
    for (int i = 0; i < Cfg<BM>::kAChunks; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        const int row = slot / (kTK / 8), c8 = slot % (kTK / 8);
        const int t = m0 + row, k = k0 + 8 * c8;
        const bool valid = t < n && k < cols;
        cp_async_16(As + row * kLd + 8 * c8, valid ? x16 + size_t(t) * cols + k : x16, valid);
    }
}

// Weights of one step (128 rows x 64) decoded into registers as fp16. Rows past the
// end are clamped to the last one (their outputs are never stored); groups past cols are zero.
template <TensorType T>
__device__ __forceinline__ void load_b(uint4 (&regs)[Cfg<128>::kBGroups], const uint8_t* w, size_t row_bytes,
                                       int64_t rows, int64_t groups, int64_t r0, int64_t g0) {
#pragma unroll
    for (int i = 0; i < Cfg<128>::kBGroups; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        const int64_t r = min(r0 + slot / (kTK / 8), rows - 1);
        const int64_t g = g0 + slot % (kTK / 8);
        const bool valid = g < groups;
        float v[8];
        decode_group<T>(w + size_t(r) * row_bytes, valid ? g : groups - 1, v);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = valid ? v[j] : 0.0f;
        regs[i] = make_uint4(pack_half2(v[0], v[1]), pack_half2(v[2], v[3]), pack_half2(v[4], v[5]),
                             pack_half2(v[6], v[7]));
    }
}

__device__ __forceinline__ void store_b(const uint4 (&regs)[Cfg<128>::kBGroups], __half* Bs) {
#pragma unroll
    for (int i = 0; i < Cfg<128>::kBGroups; ++i) {
        const int slot = threadIdx.x + i * kThreads;
        *reinterpret_cast<uint4*>(Bs + (slot / (kTK / 8)) * kLd + 8 * (slot % (kTK / 8))) = regs[i];
    }
}

// One step's mma: the warp's (BM/2) x 32 tile += A (its rows) . B (its weight rows)^T over 64 of K.
template <int BM>
__device__ __forceinline__ void mma_step(float (&acc)[Cfg<BM>::kMI][Cfg<BM>::kNJ][4], const __half* As,
                                         const __half* Bs, int wm, int wn, int lane) {
    using C = Cfg<BM>;
#pragma unroll
    for (int kk = 0; kk < kTK; kk += 16) {
        // B (rows of W = n, k contiguous): matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
        // (n 8-15, k 8-15) = b[2p][0], b[2p][1], b[2p+1][0], b[2p+1][1].
        uint32_t b[C::kNJ][2];
#pragma unroll
        for (int p = 0; p < C::kNJ / 2; ++p) {
            uint32_t r[4];
            ldmatrix_x4(r, Bs + (wn + 16 * p + 8 * (lane >> 4) + (lane & 7)) * kLd + kk + 8 * ((lane >> 3) & 1));
            b[2 * p][0] = r[0]; b[2 * p][1] = r[1]; b[2 * p + 1][0] = r[2]; b[2 * p + 1][1] = r[3];
        }
        // A, one 16-row slice at a time (fewer live registers): matrices (rows 0-7, k 0-7),
        // (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = a[0..3].
#pragma unroll
        for (int mi = 0; mi < C::kMI; ++mi) {
            uint32_t a[4];
            ldmatrix_x4(a, As + (wm + 16 * mi + (lane & 15)) * kLd + kk + 8 * (lane >> 4));
#pragma unroll
            for (int nj = 0; nj < C::kNJ; ++nj) mma_16816(acc[mi][nj], a, b[nj]);
        }
    }
}

// Block (x: 128 weight rows, y: BM tokens, z: K split). partials == nullptr: the
// epilogue writes out (bias, accumulate); else the raw sums go to partials[z][t][r].
template <TensorType T, int BM>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_kernel(const uint8_t* w, size_t row_bytes, int64_t rows, int cols, const __half* x16, int n,
                int steps_per_split, float* out, int ldo, const float* bias, bool accumulate, float* partials) {
    using C = Cfg<BM>;
    extern __shared__ __align__(128) unsigned char smem[];
    __half* As = reinterpret_cast<__half*>(smem);
    __half* Bs = As + kStagesA * C::kAStage;

    const int m0 = blockIdx.y * BM;
    const int64_t r0 = int64_t(blockIdx.x) * kBN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = (warp / 4) * C::kWM, wn = (warp % 4) * C::kWN;
    const int64_t groups = cols / 8;
    const int ksteps = (cols + kTK - 1) / kTK;
    const int step0 = blockIdx.z * steps_per_split;
    const int nsteps = min(steps_per_split, ksteps - step0);

    float acc[C::kMI][C::kNJ][4];
#pragma unroll
    for (int mi = 0; mi < C::kMI; ++mi)
#pragma unroll
        for (int nj = 0; nj < C::kNJ; ++nj)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mi][nj][e] = 0.0f;

    // The weights are constant: the first step's decode may run before the previous kernel ends.
    uint4 bregs[C::kBGroups];
    load_b<T>(bregs, w, row_bytes, rows, groups, r0, int64_t(step0) * (kTK / 8));
    store_b(bregs, Bs);
    pdl_enter();
#pragma unroll
    for (int s = 0; s < kStagesA - 1; ++s) {
        if (s < nsteps) load_a<BM>(As + s * C::kAStage, x16, n, cols, m0, (step0 + s) * kTK);
        cp_async_commit();
    }

    for (int i = 0; i < nsteps; ++i) {
        // Committed so far: kStagesA - 1 + i groups; step i's is complete when at most kStagesA - 2 are pending.
        cp_async_wait<kStagesA - 2>();
        // Step i's A and B are visible to all; everyone is past step i-1, so A stage (i-1) % kStagesA
        // and B buffer (i-1) % 2 are free.
        __syncthreads();
        const int next_a = i + kStagesA - 1;
        if (next_a < nsteps) load_a<BM>(As + (next_a % kStagesA) * C::kAStage, x16, n, cols, m0, (step0 + next_a) * kTK);
        cp_async_commit();
        const bool more = i + 1 < nsteps;
        if (more) load_b<T>(bregs, w, row_bytes, rows, groups, r0, int64_t(step0 + i + 1) * (kTK / 8));
        mma_step<BM>(acc, As + (i % kStagesA) * C::kAStage, Bs + (i % 2) * C::kBStage, wm, wn, lane);
        if (more) store_b(bregs, Bs + ((i + 1) % 2) * C::kBStage);
    }
    cp_async_wait<0>();

    const int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int mi = 0; mi < C::kMI; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int t = m0 + wm + 16 * mi + g + 8 * h;
            if (t >= n) continue;
#pragma unroll
            for (int nj = 0; nj < C::kNJ; ++nj)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int64_t r = r0 + wn + 8 * nj + 2 * q + e;
                    if (r >= rows) continue;
                    const float v = acc[mi][nj][2 * h + e];
                    if (partials) {
                        partials[(size_t(blockIdx.z) * n + t) * rows + r] = v;
                    } else {
                        float* o = out + size_t(t) * ldo + r;
                        *o = (accumulate ? *o : 0.0f) + v + (bias ? bias[r] : 0.0f);
                    }
                }
        }
}

// out[t, r] (+)= sum over the splits in order + bias[r].
__global__ void splitk_reduce(const float* partials, int splits, int n, int64_t rows, float* out, int ldo,
                              const float* bias, bool accumulate) {
    pdl_enter();
    const size_t total = size_t(n) * rows;
    const size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= total) return;
    const int t = int(e / rows);
    const int64_t r = int64_t(e % rows);
    float s = 0.0f;
    for (int z = 0; z < splits; ++z) s += partials[size_t(z) * total + e];
    float* o = out + size_t(t) * ldo + r;
    *o = (accumulate ? *o : 0.0f) + s + (bias ? bias[r] : 0.0f);
}

struct Plan {
    int bm, splits, steps_per_split;
};

// Tile height and K split for a shape: a function of the shape alone.
Plan plan_gemm(int n, int64_t rows, int64_t cols) {
    Plan p{n <= 64 ? 64 : 128, 1, 0};
    const int64_t tiles = (n + p.bm - 1) / p.bm * ((rows + kBN - 1) / kBN);
    const int ksteps = int((cols + kTK - 1) / kTK);
    if (tiles < kSms)
        p.splits = int(std::max<int64_t>(1, std::min<int64_t>({kSms / tiles, kMaxSplits, ksteps / kMinSplitSteps})));
    p.steps_per_split = (ksteps + p.splits - 1) / p.splits;
    p.splits = (ksteps + p.steps_per_split - 1) / p.steps_per_split;  // none empty
    return p;
}

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

template <TensorType T, int BM>
void launch_tiles(const Weight& w, const __half* x16, int n, const Plan& p, float* out, int ldo, const float* bias,
                  bool accumulate, float* partials, cudaStream_t stream) {
    constexpr size_t smem = Cfg<BM>::kSmem;
    static const bool configured = [] {
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(gemm_kernel<T, BM>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
        return true;
    }();
    (void)configured;
    const dim3 grid(unsigned((w.rows + kBN - 1) / kBN), unsigned((n + BM - 1) / BM), unsigned(p.splits));
    launch_pdl(gemm_kernel<T, BM>, grid, kThreads, smem, stream, static_cast<const uint8_t*>(w.data),
               gguf::row_bytes(w.type, w.cols), w.rows, int(w.cols), x16, n, p.steps_per_split, out, ldo, bias,
               accumulate, partials);
}

}  // namespace

size_t gemm_scratch_bytes(int max_n, int64_t max_cols) {
    // Split-K partials: splits * tiles <= kSms, so splits * n * rows <= kSms * 128 * 128.
    return align256(size_t(max_n) * size_t(max_cols) * sizeof(__half)) + size_t(kSms) * 128 * kBN * sizeof(float);
}

void launch_gemm(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                 void* scratch, size_t scratch_bytes, cudaStream_t stream, bool x_staged) {
    if (n == 0) return;
    const Plan p = plan_gemm(n, w.rows, w.cols);
    const size_t x16_bytes = align256(size_t(n) * size_t(w.cols) * sizeof(__half));
    const size_t need = x16_bytes + (p.splits > 1 ? size_t(p.splits) * n * size_t(w.rows) * sizeof(float) : 0);
    if (!scratch || scratch_bytes < need)
        throw Error(ErrorKind::InvalidArgument, "GEMM scratch of " + std::to_string(scratch_bytes) + " bytes, " +
                                             std::to_string(need) + " needed");
    auto* x16 = static_cast<__half*>(scratch);
    float* partials = p.splits > 1 ? reinterpret_cast<float*>(static_cast<char*>(scratch) + x16_bytes) : nullptr;

    if (!x_staged) {
        const size_t count8 = size_t(n) * size_t(w.cols) / 8;
        launch_pdl(to_half_kernel, dim3(unsigned((count8 + 255) / 256)), 256, 0, stream, x, count8, x16);
        ORCD_CUDA_CHECK_LAUNCH();
    }
    dispatch_type(w.type, [&]<TensorType T>() {
        if (p.bm == 64)
            launch_tiles<T, 64>(w, x16, n, p, out, ldo, bias, accumulate, partials, stream);
        else
            launch_tiles<T, 128>(w, x16, n, p, out, ldo, bias, accumulate, partials, stream);
    });
    ORCD_CUDA_CHECK_LAUNCH();
    if (p.splits > 1) {
        const size_t total = size_t(n) * size_t(w.rows);
        launch_pdl(splitk_reduce, dim3(unsigned((total + 255) / 256)), 256, 0, stream,
                   static_cast<const float*>(partials), p.splits, n, w.rows, out, ldo, bias, accumulate);
        ORCD_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace orcd::cuda
