// AVX2/FMA kernels for the types that carry most weight bytes. Compiled with
// target attributes so the library still runs on CPUs without AVX2; matmul
// calls them only after cpu_has_avx2(). Each dequantises a block into
// registers (the same values as quant/dequant.h, up to FMA rounding) and
// multiplies it into four 8-lane accumulators.
#include <immintrin.h>

#include "cpu/dot_kernels.h"
#include "quant/block_types.h"
#include "quant/blocks.h"
#include "quant/dequant.h"

#define ORCD_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace orcd::cpu::kernels {
namespace {

using quant::block_q4_k;
using quant::block_q5_0;
using quant::block_q6_k;
using quant::block_q8_0;

ORCD_AVX2 inline float horizontal_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ORCD_AVX2 inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Eight int8 / uint8 lanes (starting at byte `offset` of v) as floats.
ORCD_AVX2 inline __m256 int8x8_to_float(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
ORCD_AVX2 inline __m256 uint8x8_to_float(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

// acc[k] += (q[8k..8k+8) * scale) * x[8k..]: 32 signed bytes in q.
ORCD_AVX2 inline void fma_int8x32(__m256i q, __m256 scale, const float* x, __m256 (&acc)[4]) {
    const __m128i low = _mm256_castsi256_si128(q), high = _mm256_extracti128_si256(q, 1);
    const __m128i parts[4] = {low, _mm_srli_si128(low, 8), high, _mm_srli_si128(high, 8)};
    for (int k = 0; k < 4; ++k)
        acc[k] = _mm256_fmadd_ps(_mm256_mul_ps(int8x8_to_float(parts[k]), scale), _mm256_loadu_ps(x + 8 * k), acc[k]);
}

ORCD_AVX2 inline float sum_accumulators(const __m256 (&acc)[4]) {
    return horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

ORCD_AVX2 float row_dot_f32(const uint8_t* row, const float* x, int64_t cols) {
    const auto* w = reinterpret_cast<const float*>(row);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32)
        for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 8 * k), _mm256_loadu_ps(x + c + 8 * k), acc[k]);
    for (; c + 8 <= cols; c += 8) acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), acc[0]);
    float tail = 0;
    for (; c < cols; ++c) tail += w[c] * x[c];
    return sum_accumulators(acc) + tail;
}

ORCD_AVX2 float row_dot_f16(const uint8_t* row, const float* x, int64_t cols) {
    const auto* w = reinterpret_cast<const uint16_t*>(row);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32)
        for (int k = 0; k < 4; ++k) {
            const __m256 wk = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c + 8 * k)));
            acc[k] = _mm256_fmadd_ps(wk, _mm256_loadu_ps(x + c + 8 * k), acc[k]);
        }
    for (; c + 8 <= cols; c += 8) {
        const __m256 wk = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c)));
        acc[0] = _mm256_fmadd_ps(wk, _mm256_loadu_ps(x + c), acc[0]);
    }
    float tail = 0;
    for (; c < cols; ++c) tail += half_to_float(w[c]) * x[c];
    return sum_accumulators(acc) + tail;
}

ORCD_AVX2 float row_dot_q8_0(const uint8_t* row, const float* x, int64_t cols) {
    const auto* blocks = reinterpret_cast<const block_q8_0*>(row);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < cols / 32; ++b) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks[b].qs));
        fma_int8x32(q, _mm256_set1_ps(half_to_float(blocks[b].d)), x + 32 * b, acc);
    }
    return sum_accumulators(acc);
}

// 32 bytes whose byte j is 0x10 when bit j of the 32-bit word qh is set.
ORCD_AVX2 inline __m256i spread_bits_to_0x10(uint32_t qh) {
    // Each lane of the shuffle sees the word's four bytes; byte j takes byte j/8.
    const __m256i byte_of_bit = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit_of_byte = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(qh)), byte_of_bit);
    const __m256i is_set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of_byte), bit_of_byte);
    return _mm256_and_si256(is_set, _mm256_set1_epi8(0x10));
}

// 16 bytes of packed nibbles as 32 bytes: low nibbles, then high nibbles.
ORCD_AVX2 inline __m256i unpack_nibbles16(const uint8_t* qs) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), mask), _mm_and_si128(packed, mask));
}

ORCD_AVX2 float row_dot_q5_0(const uint8_t* row, const float* x, int64_t cols) {
    const auto* blocks = reinterpret_cast<const block_q5_0*>(row);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < cols / 32; ++b) {
        const block_q5_0& blk = blocks[b];
        const __m256i q5 = _mm256_or_si256(unpack_nibbles16(blk.qs), spread_bits_to_0x10(quant::load_u32_le(blk.qh)));
        const __m256i q = _mm256_sub_epi8(q5, _mm256_set1_epi8(16));
        fma_int8x32(q, _mm256_set1_ps(half_to_float(blk.d)), x + 32 * b, acc);
    }
    return sum_accumulators(acc);
}

ORCD_AVX2 float row_dot_q6_k(const uint8_t* row, const float* x, int64_t cols) {
    const auto* blocks = reinterpret_cast<const block_q6_k*>(row);
    const __m256i low_nibble = _mm256_set1_epi8(0x0f), two_bits = _mm256_set1_epi8(0x03);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < cols / 256; ++b) {
        const block_q6_k& blk = blocks[b];
        const float d = half_to_float(blk.d);
        alignas(32) float sub_scale[16];
        for (int s = 0; s < 16; ++s) sub_scale[s] = d * float(blk.scales[s]);
        const float* xb = x + 256 * b;
        for (int half = 0; half < 2; ++half) {
            const __m256i ql_a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * half));
            const __m256i ql_b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * half + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * half));
            // Quarter c of the half: low nibbles of ql_a, ql_b, then high nibbles; qh bits 2c..2c+1.
            const __m256i lows[4] = {
                _mm256_and_si256(ql_a, low_nibble), _mm256_and_si256(ql_b, low_nibble),
                _mm256_and_si256(_mm256_srli_epi16(ql_a, 4), low_nibble),
                _mm256_and_si256(_mm256_srli_epi16(ql_b, 4), low_nibble)};
            for (int c = 0; c < 4; ++c) {
                const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), two_bits);
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lows[c], _mm256_slli_epi16(high, 4)),
                                                  _mm256_set1_epi8(32));
                const int first = 128 * half + 32 * c;
                const __m128i q_low = _mm256_castsi256_si128(q), q_high = _mm256_extracti128_si256(q, 1);
                const __m256 s0 = _mm256_broadcast_ss(sub_scale + first / 16);
                const __m256 s1 = _mm256_broadcast_ss(sub_scale + first / 16 + 1);
                const float* xq = xb + first;
                acc[0] = _mm256_fmadd_ps(_mm256_mul_ps(int8x8_to_float(q_low), s0), _mm256_loadu_ps(xq), acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_mul_ps(int8x8_to_float(_mm_srli_si128(q_low, 8)), s0),
                                         _mm256_loadu_ps(xq + 8), acc[1]);
                acc[2] = _mm256_fmadd_ps(_mm256_mul_ps(int8x8_to_float(q_high), s1), _mm256_loadu_ps(xq + 16), acc[2]);
                acc[3] = _mm256_fmadd_ps(_mm256_mul_ps(int8x8_to_float(_mm_srli_si128(q_high, 8)), s1),
                                         _mm256_loadu_ps(xq + 24), acc[3]);
            }
        }
    }
    return sum_accumulators(acc);
}

ORCD_AVX2 float row_dot_q4_k(const uint8_t* row, const float* x, int64_t cols) {
    const auto* blocks = reinterpret_cast<const block_q4_k*>(row);
    const __m256i low_nibble = _mm256_set1_epi8(0x0f);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < cols / 256; ++b) {
        const block_q4_k& blk = blocks[b];
        const float d = half_to_float(blk.d), dmin = half_to_float(blk.dmin);
        const float* xb = x + 256 * b;
        for (int pair = 0; pair < 4; ++pair) {
            const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * pair));
            const __m256i nibbles[2] = {_mm256_and_si256(packed, low_nibble),
                                        _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibble)};
            for (int h = 0; h < 2; ++h) {
                const int sub = 2 * pair + h;
                int scale, min;
                quant::k_scale_min(blk.scales, sub, scale, min);
                const __m256 dl = _mm256_set1_ps(d * float(scale)), ml = _mm256_set1_ps(dmin * float(min));
                const __m128i lo = _mm256_castsi256_si128(nibbles[h]), hi = _mm256_extracti128_si256(nibbles[h], 1);
                const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
                const float* xs = xb + 32 * sub;
                for (int k = 0; k < 4; ++k) {
                    const __m256 w = _mm256_fmsub_ps(uint8x8_to_float(parts[k]), dl, ml);
                    acc[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xs + 8 * k), acc[k]);
                }
            }
        }
    }
    return sum_accumulators(acc);
}

// R weight rows times N activation rows, sharing each load across the tile.
template <int R, int N>
ORCD_AVX2 inline void dot_rows(const float* w, const float* x, int64_t cols, float* out, int64_t out_stride) {
    __m256 acc[R][N];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < N; ++i) acc[r][i] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        __m256 xv[N];
        for (int i = 0; i < N; ++i) xv[i] = _mm256_loadu_ps(x + i * cols + c);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = _mm256_loadu_ps(w + r * cols + c);
            for (int i = 0; i < N; ++i) acc[r][i] = _mm256_fmadd_ps(wv, xv[i], acc[r][i]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < N; ++i) {
            float tail = 0;
            for (int64_t t = c; t < cols; ++t) tail += w[r * cols + t] * x[i * cols + t];
            out[i * out_stride + r] = horizontal_sum(acc[r][i]) + tail;
        }
}

// The shared block dequantisers, compiled again for AVX2 so the compiler can
// vectorise them (variable shifts, wider lanes). Still exact: the library is
// built without floating-point contraction, so no FMA changes a rounding.
template <typename Block>
ORCD_AVX2 void dequantize_row_blocks(const uint8_t* row, float* out, int64_t cols) {
    const auto* blocks = reinterpret_cast<const Block*>(row);
    for (int64_t b = 0; b < cols / quant::kBlockElements<Block>; ++b)
        quant::dequantize_block(blocks[b], out + b * quant::kBlockElements<Block>);
}

}  // namespace

RowDequantize avx2_row_dequantize(gguf::TensorType type) {
    RowDequantize kernel = nullptr;
    quant::visit_block_type(type, [&](auto tag) { kernel = dequantize_row_blocks<typename decltype(tag)::type>; });
    return kernel;
}

RowDot avx2_row_dot(gguf::TensorType type) {
    using T = gguf::TensorType;
    switch (type) {
        case T::F32: return row_dot_f32;
        case T::F16: return row_dot_f16;
        case T::Q8_0: return row_dot_q8_0;
        case T::Q5_0: return row_dot_q5_0;
        case T::Q6_K: return row_dot_q6_k;
        case T::Q4_K: return row_dot_q4_k;
        default: return nullptr;
    }
}

// Activations outer, weight rows inner: a pair of activation rows stays in L1
// while the dequantised tile streams from L2.
ORCD_AVX2 void avx2_tile_dot(const float* w, int64_t n_rows, const float* x, int64_t n, int64_t cols, float* out,
                             int64_t out_stride) {
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        int64_t r = 0;
        for (; r + 4 <= n_rows; r += 4) dot_rows<4, 2>(w + r * cols, x + i * cols, cols, out + i * out_stride + r, out_stride);
        for (; r < n_rows; ++r) dot_rows<1, 2>(w + r * cols, x + i * cols, cols, out + i * out_stride + r, out_stride);
    }
    for (; i < n; ++i) {
        int64_t r = 0;
        for (; r + 4 <= n_rows; r += 4) dot_rows<4, 1>(w + r * cols, x + i * cols, cols, out + i * out_stride + r, out_stride);
        for (; r < n_rows; ++r) dot_rows<1, 1>(w + r * cols, x + i * cols, cols, out + i * out_stride + r, out_stride);
    }
}

}  // namespace orcd::cpu::kernels
