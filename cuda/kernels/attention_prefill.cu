// Causal flash attention for a step of n query tokens, on tensor cores.
//
// Query rows of one KV head are flattened as r = token * group + head-in-group,
// so a 64-row tile holds several tokens' whole head groups and every K/V tile
// loaded into shared memory serves all query heads of the group (GQA sharing).
// Per 64-key tile: S = Q K^T with wmma (fp16 in, fp32 out), the online softmax
// on each warp's 16 rows (causal mask from each row's position), then
// O = O * alpha + P V with wmma, O living in shared memory in fp32.
#include <mma.h>

#include <cfloat>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

namespace {

constexpr int kRows = 64, kKeys = 64, kThreads = 128;

template <int D>
struct Smem {
    static constexpr int kLdH = D + 8;      // halves per Q/K/V row
    static constexpr int kLdS = kKeys + 4;  // floats per S row
    static constexpr int kLdP = kKeys + 8;  // halves per P row
    static constexpr int kLdO = D + 4;      // floats per O row
    static constexpr size_t kQ = 0;
    static constexpr size_t kK = kQ + sizeof(__half) * kRows * kLdH;
    static constexpr size_t kV = kK + sizeof(__half) * kKeys * kLdH;
    static constexpr size_t kS = kV + sizeof(__half) * kKeys * kLdH;
    static constexpr size_t kP = kS + sizeof(float) * kRows * kLdS;
    static constexpr size_t kO = kP + sizeof(__half) * kRows * kLdP;
    static constexpr size_t kStats = kO + sizeof(float) * kRows * kLdO;  // m, l per row
    static constexpr size_t kBytes = kStats + sizeof(float) * 2 * kRows;
};

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_prefill_kernel(const float* qkv, int ld, int n, const int32_t* positions, const __half* k_cache,
                             const __half* v_cache, int group, int max_context, float scale, float* out) {
    using namespace nvcuda;
    using L = Smem<D>;
    extern __shared__ __align__(128) unsigned char smem[];
    __half* Qs = reinterpret_cast<__half*>(smem + L::kQ);
    __half* Ks = reinterpret_cast<__half*>(smem + L::kK);
    __half* Vs = reinterpret_cast<__half*>(smem + L::kV);
    float* Ss = reinterpret_cast<float*>(smem + L::kS);
    __half* Ps = reinterpret_cast<__half*>(smem + L::kP);
    float* Os = reinterpret_cast<float*>(smem + L::kO);
    float* m_row = reinterpret_cast<float*>(smem + L::kStats);
    float* l_row = m_row + kRows;
    pdl_enter();

    const int kvh = blockIdx.y;
    const int n_rows = n * group;
    const int r0 = blockIdx.x * kRows;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q_dim = gridDim.y * group * D;

    // Q tile (scaled), O = 0, running stats.
    for (int e = threadIdx.x; e < kRows * D; e += kThreads) {
        const int rr = e / D, d = e % D, r = r0 + rr;
        float v = 0.0f;
        if (r < n_rows) v = qkv[size_t(r / group) * ld + (kvh * group + r % group) * D + d] * scale;
        Qs[rr * L::kLdH + d] = __float2half_rn(v);
        Os[rr * L::kLdO + d] = 0.0f;
    }
    if (threadIdx.x < kRows) { m_row[threadIdx.x] = -FLT_MAX; l_row[threadIdx.x] = 0.0f; }
    // Keys needed: up to the largest position among the tile's tokens (positions rise within a step).
    const int last_token = min(n, (r0 + kRows - 1) / group + 1) - 1;
    const int kv_end = positions[last_token] + 1;
    const __half* kbase = k_cache + size_t(kvh) * max_context * D;
    const __half* vbase = v_cache + size_t(kvh) * max_context * D;

    for (int j0 = 0; j0 < kv_end; j0 += kKeys) {
        __syncthreads();  // the previous tile's K/V are consumed
        for (int e = threadIdx.x; e < kKeys * D / 8; e += kThreads) {
            const int j = e / (D / 8), d8 = e % (D / 8);
            uint4 kv = make_uint4(0, 0, 0, 0), vv = kv;
            if (j0 + j < kv_end) {
                kv = reinterpret_cast<const uint4*>(kbase + size_t(j0 + j) * D)[d8];
                vv = reinterpret_cast<const uint4*>(vbase + size_t(j0 + j) * D)[d8];
            }
            *reinterpret_cast<uint4*>(Ks + j * L::kLdH + 8 * d8) = kv;
            *reinterpret_cast<uint4*>(Vs + j * L::kLdH + 8 * d8) = vv;
        }
        __syncthreads();
        // S rows of this warp: 16 x 64.
        const int wr = warp * 16;
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s[kKeys / 16];
#pragma unroll
            for (int j = 0; j < kKeys / 16; ++j) wmma::fill_fragment(s[j], 0.0f);
#pragma unroll
            for (int d = 0; d < D; d += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::load_matrix_sync(a, Qs + wr * L::kLdH + d, L::kLdH);
#pragma unroll
                for (int j = 0; j < kKeys / 16; ++j) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
                    wmma::load_matrix_sync(b, Ks + 16 * j * L::kLdH + d, L::kLdH);
                    wmma::mma_sync(s[j], a, b, s[j]);
                }
            }
#pragma unroll
            for (int j = 0; j < kKeys / 16; ++j)
                wmma::store_matrix_sync(Ss + wr * L::kLdS + 16 * j, s[j], L::kLdS, wmma::mem_row_major);
        }
        __syncwarp();
        // Online softmax: two lanes per row, 32 keys each.
        {
            const int rr = wr + lane / 2, half = lane % 2, r = r0 + rr;
            const int limit = r < n_rows ? positions[r / group] : -1;  // last key this row may see
            float* srow = Ss + rr * L::kLdS + 32 * half;
            float mx = -FLT_MAX;
            for (int j = 0; j < 32; ++j)
                if (j0 + 32 * half + j <= limit) mx = fmaxf(mx, srow[j]);
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            const float m_old = m_row[rr];
            const float m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            __half* prow = Ps + rr * L::kLdP + 32 * half;
            for (int j = 0; j < 32; ++j) {
                const float p = (j0 + 32 * half + j <= limit) ? __expf(srow[j] - m_new) : 0.0f;
                prow[j] = __float2half_rn(p);
                sum += p;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            const float alpha = __expf(m_old - m_new);
            float* orow = Os + rr * L::kLdO + (D / 2) * half;
            for (int d = 0; d < D / 2; ++d) orow[d] *= alpha;
            __syncwarp();
            if (half == 0) {
                m_row[rr] = m_new;
                l_row[rr] = l_row[rr] * alpha + sum;
            }
        }
        __syncwarp();
        // O rows of this warp += P (16 x 64) V (64 x D).
#pragma unroll
        for (int d = 0; d < D; d += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
            wmma::load_matrix_sync(o, Os + wr * L::kLdO + d, L::kLdO, wmma::mem_row_major);
#pragma unroll
            for (int j = 0; j < kKeys; j += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ps + wr * L::kLdP + j, L::kLdP);
                wmma::load_matrix_sync(b, Vs + j * L::kLdH + d, L::kLdH);
                wmma::mma_sync(o, a, b, o);
            }
            wmma::store_matrix_sync(Os + wr * L::kLdO + d, o, L::kLdO, wmma::mem_row_major);
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kRows * D; e += kThreads) {
        const int rr = e / D, d = e % D, r = r0 + rr;
        if (r >= n_rows) continue;
        out[size_t(r / group) * q_dim + (kvh * group + r % group) * D + d] = Os[rr * L::kLdO + d] / l_row[rr];
    }
}

template <int D>
void launch_for_dim(const float* qkv, int ld, int n, const int32_t* positions, const __half* k_cache,
                    const __half* v_cache, const AttentionShape& shape, float* out, cudaStream_t stream) {
    constexpr size_t smem = Smem<D>::kBytes;
    static bool configured = [] {
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(smem)));
        return true;
    }();
    (void)configured;
    const int group = shape.n_heads / shape.n_kv_heads;
    const dim3 grid(unsigned((n * group + kRows - 1) / kRows), unsigned(shape.n_kv_heads));
    launch_pdl(attention_prefill_kernel<D>, grid, kThreads, smem, stream, qkv, ld, n, positions, k_cache, v_cache,
               group, shape.max_context, 1.0f / sqrtf(float(D)), out);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_attention_prefill(const float* qkv, int ld, int n, const int32_t* positions, const __half* k_cache,
                              const __half* v_cache, const AttentionShape& shape, float* out, cudaStream_t stream) {
    if (n == 0) return;
    switch (shape.head_dim) {
        case 32: launch_for_dim<32>(qkv, ld, n, positions, k_cache, v_cache, shape, out, stream); break;
        case 64: launch_for_dim<64>(qkv, ld, n, positions, k_cache, v_cache, shape, out, stream); break;
        case 80: launch_for_dim<80>(qkv, ld, n, positions, k_cache, v_cache, shape, out, stream); break;
        case 96: launch_for_dim<96>(qkv, ld, n, positions, k_cache, v_cache, shape, out, stream); break;
        case 128: launch_for_dim<128>(qkv, ld, n, positions, k_cache, v_cache, shape, out, stream); break;
        default:
            throw Error(ErrorKind::Unsupported, "CUDA attention: head_dim " + std::to_string(shape.head_dim) +
                                                    " is not one of 32, 64, 80, 96, 128");
    }
}

}  // namespace orcd::cuda
