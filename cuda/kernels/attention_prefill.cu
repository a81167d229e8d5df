// Causal flash attention for a step of n query tokens (FlashAttention-2 style),
// on mma.sync m16n8k16 (fp16 operands, fp32 accumulation).
//
// Query rows of one KV head are flattened as r = token * group + head-in-group,
// so a block's 64 rows hold several tokens' whole head groups and every K/V tile
// in shared memory serves all query heads of the group (GQA sharing). Each of the
// 4 warps owns 16 rows and keeps everything per row in registers: its Q
// fragments (scaled by log2(e)/sqrt(D), fp16), the S = Q K^T tile of 16 x 64
// keys, the online softmax (running max and sum, base 2), P (the S registers
// repacked as A fragments) and the O accumulator of 16 x D. K and V tiles of 64
// keys come through shared memory by cp.async, double-buffered: tile j+1 loads
// while tile j is computed. Tiles beyond the block's last visible key are never
// loaded; a warp skips the tiles none of its rows can see and masks only where
// a tile crosses one of its rows' limits. Blocks start with the longest rows.
#include <cfloat>
#include <cmath>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/mma.cuh"

namespace orcd::cuda {

namespace {

constexpr int kRows = 64, kKeys = 64, kThreads = 128;

template <int D>
struct Cfg {
    static constexpr int kLd = ldmatrix_row_halves(D);     // halves per K/V row
    static constexpr int kKC = D / 16;                     // 16-wide slices of D (Q K^T)
    static constexpr int kNT = D / 8;                      // 8-wide column tiles of O
    static constexpr size_t kTile = size_t(kKeys) * kLd;   // halves of one K or V tile
    static constexpr size_t kSmem = 4 * kTile * sizeof(__half);  // K and V, two buffers each
    static constexpr int kCopies = kKeys * D / 8 / kThreads;     // 16-byte copies per thread per tile (each of K, V)
};

// Keys j0..j0+63 of K and V into shared memory; keys >= kv_end are zero-filled.
template <int D>
__device__ __forceinline__ void load_kv(__half* Ks, __half* Vs, const __half* kbase, const __half* vbase, int j0,
                                        int kv_end) {
    using C = Cfg<D>;
#pragma unroll
    for (int i = 0; i < C::kCopies; ++i) {
        const int c = threadIdx.x + i * kThreads;
        const int j = c / (D / 8), d8 = c % (D / 8);
        const bool valid = j0 + j < kv_end;
        const size_t off = valid ? size_t(j0 + j) * D + 8 * d8 : 0;
        cp_async_16(Ks + j * C::kLd + 8 * d8, kbase + off, valid);
        cp_async_16(Vs + j * C::kLd + 8 * d8, vbase + off, valid);
    }
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_prefill_kernel(const float* qkv, int ld, int n, const int32_t* positions, const __half* k_cache,
                             const __half* v_cache, int group, int max_context, float scale_log2, float* out) {
    using C = Cfg<D>;
    extern __shared__ __align__(128) unsigned char smem[];
    __half* Ks = reinterpret_cast<__half*>(smem);  // [2][kKeys][kLd]
    __half* Vs = Ks + 2 * C::kTile;
    pdl_enter();

    const int kvh = blockIdx.y;
    const int n_rows = n * group;
    const int r0 = (gridDim.x - 1 - blockIdx.x) * kRows;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int q_dim = gridDim.y * group * D;
    // Keys needed: up to the largest position among the tile's tokens (positions rise within a step).
    const int kv_end = positions[min(n, (r0 + kRows - 1) / group + 1) - 1] + 1;
    const __half* kbase = k_cache + size_t(kvh) * max_context * D;
    const __half* vbase = v_cache + size_t(kvh) * max_context * D;
    load_kv<D>(Ks, Vs, kbase, vbase, 0, kv_end);
    cp_async_commit();

    // This thread's rows: wr + g and wr + g + 8; the last key each may see (-1: no such row).
    const int wr = r0 + warp * 16;
    int limit[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int r = wr + g + 8 * h;
        limit[h] = r < n_rows ? positions[r / group] : -1;
    }
    const int warp_first = wr < n_rows ? positions[wr / group] : -1;
    const int warp_last = wr < n_rows ? positions[min(wr + 15, n_rows - 1) / group] : -1;

    // Q fragments (A layout, see mma.cuh): a[i] holds row g + 8 (i & 1), cols 2q + 8 (i >> 1) of each slice.
    uint32_t qf[C::kKC][4];
#pragma unroll
    for (int kc = 0; kc < C::kKC; ++kc)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int r = wr + g + 8 * (i & 1), d = 16 * kc + 2 * q + 8 * (i >> 1);
            float lo = 0.0f, hi = 0.0f;
            if (r < n_rows) {
                const float* p = qkv + size_t(r / group) * ld + (kvh * group + r % group) * D + d;
                lo = p[0] * scale_log2;
                hi = p[1] * scale_log2;
            }
            qf[kc][i] = pack_half2(lo, hi);
        }

    float o[C::kNT][4];
#pragma unroll
    for (int nt = 0; nt < C::kNT; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this lane's part of the row sum

    const int ntiles = (kv_end + kKeys - 1) / kKeys;
    for (int it = 0; it < ntiles; ++it) {
        const int j0 = it * kKeys;
        cp_async_wait<0>();
        __syncthreads();  // tile it is visible to all; all are done with tile it-1, whose buffers are free
        if (it + 1 < ntiles)
            load_kv<D>(Ks + ((it + 1) & 1) * C::kTile, Vs + ((it + 1) & 1) * C::kTile, kbase, vbase, j0 + kKeys, kv_end);
        cp_async_commit();
        if (j0 > warp_last) continue;  // no row of this warp sees these keys
        const __half* Kt = Ks + (it & 1) * C::kTile;
        const __half* Vt = Vs + (it & 1) * C::kTile;

        // S (16 x 64) = Q K^T. K rows are keys (the n of B), D contiguous (its k).
        float s[kKeys / 8][4];
#pragma unroll
        for (int nj = 0; nj < kKeys / 8; ++nj) s[nj][0] = s[nj][1] = s[nj][2] = s[nj][3] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < C::kKC; ++kc)
#pragma unroll
            for (int p = 0; p < kKeys / 16; ++p) {
                uint32_t b[4];  // (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15)
                ldmatrix_x4(b, Kt + (16 * p + 8 * (lane >> 4) + (lane & 7)) * C::kLd + 16 * kc + 8 * ((lane >> 3) & 1));
                mma_16816(s[2 * p], qf[kc], b);
                mma_16816(s[2 * p + 1], qf[kc], b + 2);
            }
        // Causal mask where the tile crosses a row's limit: c[2h + e] is (row g + 8h, key 8 nj + 2q + e).
        if (j0 + kKeys - 1 > warp_first) {
#pragma unroll
            for (int nj = 0; nj < kKeys / 8; ++nj)
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        if (j0 + 8 * nj + 2 * q + e > limit[h]) s[nj][2 * h + e] = -INFINITY;
        }
        // Online softmax; a row lives in the 4 lanes of a quad.
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float mx = -INFINITY;
#pragma unroll
            for (int nj = 0; nj < kKeys / 8; ++nj) mx = fmaxf(mx, fmaxf(s[nj][2 * h], s[nj][2 * h + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m[h], mx);
            const float base = m_new == -INFINITY ? 0.0f : m_new;  // a row that has seen no key yet
            const float alpha = exp2f(m[h] - base);
            m[h] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int nj = 0; nj < kKeys / 8; ++nj)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float p = exp2f(s[nj][2 * h + e] - base);
                    s[nj][2 * h + e] = p;
                    sum += p;
                }
            l[h] = l[h] * alpha + sum;
#pragma unroll
            for (int nt = 0; nt < C::kNT; ++nt) {
                o[nt][2 * h] *= alpha;
                o[nt][2 * h + 1] *= alpha;
            }
        }
        // O (16 x D) += P (16 x 64) V (64 x D). P's C layout of key tiles 2kc, 2kc+1 is the A layout
        // of key slice kc; V rows are keys (the k of B), D contiguous (its n): ldmatrix .trans.
#pragma unroll
        for (int kc = 0; kc < kKeys / 16; ++kc) {
            const uint32_t a[4] = {pack_half2(s[2 * kc][0], s[2 * kc][1]), pack_half2(s[2 * kc][2], s[2 * kc][3]),
                                   pack_half2(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                   pack_half2(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t b[4];  // (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15)
                ldmatrix_x4_trans(b, Vt + (16 * kc + 8 * ((lane >> 3) & 1) + (lane & 7)) * C::kLd + 16 * dp + 8 * (lane >> 4));
                mma_16816(o[2 * dp], a, b);
                mma_16816(o[2 * dp + 1], a, b + 2);
            }
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float sum = l[h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int r = wr + g + 8 * h;
        if (r >= n_rows) continue;
        const float inv = 1.0f / sum;
        float* dst = out + size_t(r / group) * q_dim + (kvh * group + r % group) * D + 2 * q;
#pragma unroll
        for (int nt = 0; nt < C::kNT; ++nt)
            *reinterpret_cast<float2*>(dst + 8 * nt) = make_float2(o[nt][2 * h] * inv, o[nt][2 * h + 1] * inv);
    }
}

template <int D>
void launch_for_dim(const float* qkv, int ld, int n, const int32_t* positions, const __half* k_cache,
                    const __half* v_cache, const AttentionShape& shape, float* out, cudaStream_t stream) {
    constexpr size_t smem = Cfg<D>::kSmem;
    static const bool configured = [] {
        ORCD_CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(smem)));
        return true;
    }();
    (void)configured;
    const int group = shape.n_heads / shape.n_kv_heads;
    const dim3 grid(unsigned((n * group + kRows - 1) / kRows), unsigned(shape.n_kv_heads));
    launch_pdl(attention_prefill_kernel<D>, grid, kThreads, smem, stream, qkv, ld, n, positions, k_cache, v_cache,
               group, shape.max_context, 1.4426950408889634f / sqrtf(float(D)), out);
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
