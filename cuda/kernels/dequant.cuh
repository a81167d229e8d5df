// Device-side decoding of GGUF weights in groups of 8 consecutive elements.
//
// Every supported type keeps 8 aligned consecutive elements under one scale and
// (for the nibble types) in 8 consecutive bytes, so a group of 8 is the unit
// that all CUDA kernels share: the matvec, the tiled GEMM and the embedding
// lookup each call Decode<T>::group(). The block layouts are the ones in
// quant/blocks.h (shared with the CPU backend); the CPU dequantisation is the
// oracle these decoders are tested against.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "orcd/gguf.h"
#include "quant/blocks.h"

namespace orcd::cuda {

using gguf::TensorType;

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// float(x) for |x| < 2^22 without the conversion instruction: x is added into the
// mantissa of 1.5 * 2^23 and that bias subtracted. Exact; the I2F unit runs at
// an eighth of the FP32 rate, and the decode of every quantised weight used it.
__device__ __forceinline__ float small_int_to_float(int x) {
    return __int_as_float(0x4B400000 + x) - 12582912.0f;
}

// The 16 values of the IQ4 non-linear 4-bit grid (-127, -104, -83, -65, -49,
// -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113) as bytes of four words,
// picked with byte permutes: an indexed array would live in local memory (one
// memory round trip per weight: IQ4 products ran at 5 % of copy bandwidth).
__device__ __forceinline__ float iq4_value(int q) {
    constexpr uint32_t kWords[4] = {0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u};
    const uint32_t lo = q < 8 ? kWords[0] : kWords[2], hi = q < 8 ? kWords[1] : kWords[3];
    return float(int8_t(__byte_perm(lo, hi, unsigned(q & 7)) & 0xff));
}

// 8 bytes starting at a 2-byte aligned address (blocks are 2-byte aligned).
__device__ __forceinline__ uint64_t load8_bytes(const uint8_t* p) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return uint64_t(h[0]) | uint64_t(h[1]) << 16 | uint64_t(h[2]) << 32 | uint64_t(h[3]) << 48;
}
__device__ __forceinline__ uint32_t load4_bytes(const uint8_t* p) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return uint32_t(h[0]) | uint32_t(h[1]) << 16;
}
__device__ __forceinline__ int byte_of(uint64_t v, int i) { return int((v >> (8 * i)) & 0xff); }

template <TensorType T>
struct Decode;

// Plain types: block of one element.
template <>
struct Decode<TensorType::F32> {
    static constexpr int kElems = 1, kBytes = 4;
    __device__ static void group(const uint8_t* row, int64_t g, float v[8]) {
        const float4* p = reinterpret_cast<const float4*>(row) + 2 * g;
        const float4 a = p[0], b = p[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
};
template <>
struct Decode<TensorType::F16> {
    static constexpr int kElems = 1, kBytes = 2;
    __device__ static void group(const uint8_t* row, int64_t g, float v[8]) {
        const uint4 u = reinterpret_cast<const uint4*>(row)[g];
        const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(h[i]);
            v[2 * i] = f.x; v[2 * i + 1] = f.y;
        }
    }
};
template <>
struct Decode<TensorType::BF16> {
    static constexpr int kElems = 1, kBytes = 2;
    __device__ static void group(const uint8_t* row, int64_t g, float v[8]) {
        const uint4 u = reinterpret_cast<const uint4*>(row)[g];
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[2 * i] = __uint_as_float(w[i] << 16);
            v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};

// Blocks of 32: group i (0..3) holds elements 8i..8i+7. For the nibble types,
// element j < 16 is the low nibble of qs[j] and element j + 16 the high one.
template <>
struct Decode<TensorType::Q4_0> {
    static constexpr int kElems = 32, kBytes = sizeof(quant::block_q4_0);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        const auto* b = reinterpret_cast<const quant::block_q4_0*>(blk);
        const float d = half_bits_to_float(b->d);
        const uint64_t q = load8_bytes(b->qs + 8 * (i & 1));
        const int shift = (i >> 1) * 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * small_int_to_float(((byte_of(q, k) >> shift) & 15) - 8);
    }
};
template <>
struct Decode<TensorType::Q4_1> {
    static constexpr int kElems = 32, kBytes = sizeof(quant::block_q4_1);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        const auto* b = reinterpret_cast<const quant::block_q4_1*>(blk);
        const float d = half_bits_to_float(b->d), m = half_bits_to_float(b->m);
        const uint64_t q = load8_bytes(b->qs + 8 * (i & 1));
        const int shift = (i >> 1) * 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * small_int_to_float((byte_of(q, k) >> shift) & 15) + m;
    }
};
template <>
struct Decode<TensorType::Q5_0> {
    static constexpr int kElems = 32, kBytes = sizeof(quant::block_q5_0);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        const auto* b = reinterpret_cast<const quant::block_q5_0*>(blk);
        const float d = half_bits_to_float(b->d);
        const uint32_t qh = load4_bytes(b->qh) >> (8 * i);  // bit k: high bit of element 8i+k
        const uint64_t q = load8_bytes(b->qs + 8 * (i & 1));
        const int shift = (i >> 1) * 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * small_int_to_float((((byte_of(q, k) >> shift) & 15) | int(((qh >> k) & 1) << 4)) - 16);
    }
};
template <>
struct Decode<TensorType::Q5_1> {
    static constexpr int kElems = 32, kBytes = sizeof(quant::block_q5_1);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        const auto* b = reinterpret_cast<const quant::block_q5_1*>(blk);
        const float d = half_bits_to_float(b->d), m = half_bits_to_float(b->m);
        const uint32_t qh = load4_bytes(b->qh) >> (8 * i);
        const uint64_t q = load8_bytes(b->qs + 8 * (i & 1));
        const int shift = (i >> 1) * 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * small_int_to_float(((byte_of(q, k) >> shift) & 15) | (((qh >> k) & 1) << 4)) + m;
    }
};
template <>
struct Decode<TensorType::Q8_0> {
    static constexpr int kElems = 32, kBytes = sizeof(quant::block_q8_0);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        const auto* b = reinterpret_cast<const quant::block_q8_0*>(blk);
        const float d = half_bits_to_float(b->d);
        const uint64_t q = load8_bytes(reinterpret_cast<const uint8_t*>(b->qs) + 8 * i);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * small_int_to_float(int8_t(byte_of(q, k)));
    }
};
template <>
struct Decode<TensorType::IQ4_NL> {
    static constexpr int kElems = 32, kBytes = sizeof(quant::block_iq4_nl);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        const auto* b = reinterpret_cast<const quant::block_iq4_nl*>(blk);
        const float d = half_bits_to_float(b->d);
        const uint64_t q = load8_bytes(b->qs + 8 * (i & 1));
        const int shift = (i >> 1) * 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * iq4_value((byte_of(q, k) >> shift) & 15);
    }
};

// Super-blocks of 256 (group i: elements 8i..8i+7, i < 32).
template <>
struct Decode<TensorType::Q2_K> {
    static constexpr int kElems = 256, kBytes = sizeof(quant::block_q2_k);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        // Element e: half h = e/128, 2-bit plane j = (e%128)/32 of byte qs[32h + e%32],
        // sub-block of 16 = 8h + 2j + (e%32 >= 16).
        const auto* b = reinterpret_cast<const quant::block_q2_k*>(blk);
        const int h = i >> 4, j = (i >> 2) & 3, l = (i & 3) * 8;
        const int sc = b->scales[8 * h + 2 * j + (l >= 16)];
        const float dl = half_bits_to_float(b->d) * float(sc & 15);
        const float ml = half_bits_to_float(b->dmin) * float(sc >> 4);
        const uint64_t q = load8_bytes(b->qs + 32 * h + l);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = dl * small_int_to_float((byte_of(q, k) >> (2 * j)) & 3) - ml;
    }
};
template <>
struct Decode<TensorType::Q3_K> {
    static constexpr int kElems = 256, kBytes = sizeof(quant::block_q3_k);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        // Like Q2_K, plus a high bit in hmask[e%32] at bit 4h + j (set: +0, clear: -4),
        // and 6-bit signed scales: low 4 bits in scales[0..7] (nibbles), high 2 in scales[8..11].
        const auto* b = reinterpret_cast<const quant::block_q3_k*>(blk);
        const int h = i >> 4, j = (i >> 2) & 3, l = (i & 3) * 8;
        const int s = 8 * h + 2 * j + (l >= 16);
        const int low = s < 8 ? (b->scales[s] & 15) : (b->scales[s - 8] >> 4);
        const int high = (b->scales[8 + (s & 3)] >> (2 * (s >> 2))) & 3;
        const float dl = half_bits_to_float(b->d) * float((low | high << 4) - 32);
        const uint64_t q = load8_bytes(b->qs + 32 * h + l);
        const uint64_t hm = load8_bytes(b->hmask + l);
        const int bit = 4 * h + j;
#pragma unroll
        for (int k = 0; k < 8; ++k)
            v[k] = dl * small_int_to_float(((byte_of(q, k) >> (2 * j)) & 3) - (((byte_of(hm, k) >> bit) & 1) ? 0 : 4));
    }
};

// Q4_K / Q5_K scales: 8 pairs (scale, min) of 6 bits packed in 12 bytes.
__device__ __forceinline__ void k4_scale_min(const uint8_t* s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

template <>
struct Decode<TensorType::Q4_K> {
    static constexpr int kElems = 256, kBytes = sizeof(quant::block_q4_k);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        // Element e: chunk c = e/64 of 32 bytes qs[32c..]; low nibbles are sub-block 2c, high 2c+1.
        const auto* b = reinterpret_cast<const quant::block_q4_k*>(blk);
        const int c = i >> 3, hi = (i >> 2) & 1, l = (i & 3) * 8;
        int sc, m;
        k4_scale_min(b->scales, 2 * c + hi, sc, m);
        const float d = half_bits_to_float(b->d) * float(sc), mn = half_bits_to_float(b->dmin) * float(m);
        const uint64_t q = load8_bytes(b->qs + 32 * c + l);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * small_int_to_float((byte_of(q, k) >> (4 * hi)) & 15) - mn;
    }
};
template <>
struct Decode<TensorType::Q5_K> {
    static constexpr int kElems = 256, kBytes = sizeof(quant::block_q5_k);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        // As Q4_K, with the fifth bit of element e in qh[e%32] at bit 2c + hi.
        const auto* b = reinterpret_cast<const quant::block_q5_k*>(blk);
        const int c = i >> 3, hi = (i >> 2) & 1, l = (i & 3) * 8;
        int sc, m;
        k4_scale_min(b->scales, 2 * c + hi, sc, m);
        const float d = half_bits_to_float(b->d) * float(sc), mn = half_bits_to_float(b->dmin) * float(m);
        const uint64_t q = load8_bytes(b->qs + 32 * c + l);
        const uint64_t qh = load8_bytes(b->qh + l);
        const int bit = 2 * c + hi;
#pragma unroll
        for (int k = 0; k < 8; ++k)
            v[k] = d * small_int_to_float(((byte_of(q, k) >> (4 * hi)) & 15) | (((byte_of(qh, k) >> bit) & 1) << 4)) - mn;
    }
};
template <>
struct Decode<TensorType::Q6_K> {
    static constexpr int kElems = 256, kBytes = sizeof(quant::block_q6_k);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        // Element e: half h = e/128, quarter k = (e%128)/32, l = e%32. Low 4 bits from
        // ql[64h + l + 32(k&1)] (low nibble for k < 2), high 2 bits from qh[32h + l] at 2k;
        // scale scales[8h + l/16 + 2k].
        const auto* b = reinterpret_cast<const quant::block_q6_k*>(blk);
        const int h = i >> 4, k = (i >> 2) & 3, l = (i & 3) * 8;
        const float d = half_bits_to_float(b->d) * float(b->scales[8 * h + (l >> 4) + 2 * k]);
        const uint64_t ql = load8_bytes(b->ql + 64 * h + l + 32 * (k & 1));
        const uint64_t qh = load8_bytes(b->qh + 32 * h + l);
        const int lshift = 4 * (k >> 1);
#pragma unroll
        for (int e = 0; e < 8; ++e)
            v[e] = d * small_int_to_float((((byte_of(ql, e) >> lshift) & 15) | (((byte_of(qh, e) >> (2 * k)) & 3) << 4)) - 32);
    }
};
template <>
struct Decode<TensorType::IQ4_XS> {
    static constexpr int kElems = 256, kBytes = sizeof(quant::block_iq4_xs);
    __device__ static void decode(const uint8_t* blk, int i, float v[8]) {
        // Sub-block s = e/32 of 16 bytes, nibbles as IQ4_NL; 6-bit scale: low 4 bits in
        // scales_l[s/2] (nibble s%2), high 2 bits in scales_h at 2s.
        const auto* b = reinterpret_cast<const quant::block_iq4_xs*>(blk);
        const int s = i >> 2, hi = (i >> 1) & 1, l = (i & 1) * 8;
        const int ls = ((b->scales_l[s >> 1] >> (4 * (s & 1))) & 15) | (((b->scales_h >> (2 * s)) & 3) << 4);
        const float d = half_bits_to_float(b->d) * float(ls - 32);
        const uint64_t q = load8_bytes(b->qs + 16 * s + l);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * iq4_value((byte_of(q, k) >> (4 * hi)) & 15);
    }
};

// Group g (elements 8g..8g+7) of a row, for any type.
template <TensorType T>
__device__ __forceinline__ void decode_group(const uint8_t* row, int64_t g, float v[8]) {
    using D = Decode<T>;
    if constexpr (D::kElems == 1) {
        D::group(row, g, v);
    } else {
        constexpr int kGroups = D::kElems / 8;
        D::decode(row + (g / kGroups) * D::kBytes, int(g % kGroups), v);
    }
}

// Calls f.template operator()<T>() for the run-time type; returns false for an
// unsupported one. dispatch_type_on_device is the same for device code.
#define ORCD_TYPE_CASES(f)                                                                                   \
    switch (t) {                                                                                             \
        ORCD_CASE(f, F32) ORCD_CASE(f, F16) ORCD_CASE(f, BF16) ORCD_CASE(f, Q4_0) ORCD_CASE(f, Q4_1)          \
        ORCD_CASE(f, Q5_0) ORCD_CASE(f, Q5_1) ORCD_CASE(f, Q8_0) ORCD_CASE(f, Q2_K) ORCD_CASE(f, Q3_K)        \
        ORCD_CASE(f, Q4_K) ORCD_CASE(f, Q5_K) ORCD_CASE(f, Q6_K) ORCD_CASE(f, IQ4_NL) ORCD_CASE(f, IQ4_XS)    \
        default: return false;                                                                               \
    }
#define ORCD_CASE(f, name)                                \
    case TensorType::name:                                \
        f.template operator()<TensorType::name>();        \
        return true;
template <typename F>
bool dispatch_type(TensorType t, F&& f) {
    ORCD_TYPE_CASES(f)
}
template <typename F>
__device__ __forceinline__ bool dispatch_type_on_device(TensorType t, F&& f) {
    ORCD_TYPE_CASES(f)
}
#undef ORCD_CASE
#undef ORCD_TYPE_CASES

}  // namespace orcd::cuda
