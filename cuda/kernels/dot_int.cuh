// Integer dot products for the streamed one-token products (matvec_stream.cu):
// the input in 16 bits, the quants as bytes, two products per dp2a with an
// exact 32-bit sum. The fp16 forms of dot_half.cuh spend an HFMA2 and, for the
// types with an offset, an HSUB2 on every two weights, and place the upper bits
// of 3-, 5- and 6-bit quants in each half apart (the offset cannot come from
// the input's sums there: fp16 sums of unsigned quants lose too much,
// bench/NOTES.md round 29). Here the offsets and the minimums come from exact
// integer sums of the input, and the upper bits go to four bytes at once.
//
// Input (stage_input_int in matvec_stream.cu): each chunk of 128 inputs is
// scaled by 32767 / its largest magnitude and rounded to int16 (an error of at
// most 2^-16 of that magnitude, against fp16's 2^-12 of each value), in octets
// of 8 placed by swizzled_octet (lane_layout.cuh), natural order inside; with
// the exact sum of every run of 16. A lane's runs are those of LaneLayout<T>,
// inside one chunk, so the chunk's scale multiplies the block's result.
//
// Range: a run's sum of quant x input is at most 16 x 127 x 32767 (< 2^26), so
// the 32-bit sums below cannot overflow, scales included (noted per type).
#pragma once

#include "kernels/bit_ops.cuh"
#include "kernels/dequant.cuh"
#include "kernels/lane_layout.cuh"
#include "kernels/smem_loads.cuh"

namespace orcd::cuda {

// The types that take an integer form: those whose fp16 form spends the most
// on each weight besides its product (a fifth or third bit, an offset). Q4_0,
// Q4_1 and Q8_0 keep their fp16 forms, which are one or two instructions per
// weight: their integer ones were 1.5-10 points of the copy slower on every shape
// (bench/NOTES.md, round 30).
constexpr bool int_dot_type(gguf::TensorType t) {
    using TT = gguf::TensorType;
    return t == TT::Q5_0 || t == TT::Q5_1 || t == TT::Q2_K || t == TT::Q3_K || t == TT::Q4_K || t == TT::Q5_K ||
           t == TT::Q6_K || t == TT::IQ4_NL || t == TT::IQ4_XS;
}
template <TensorType T>
constexpr bool kHasIntDot = int_dot_type(T);
// IQ4 takes its input in pairs (element j, element j + 16) of each block of 32,
// so that one byte permute yields the grid values of both runs' quants of a
// byte pair for one dp2a (stage_input_int's Paired layout); the others in order.
template <TensorType T>
constexpr bool kPairedIntInput = T == TensorType::IQ4_NL || T == TensorType::IQ4_XS;

// The IQ4 grid as signed bytes, entries 0-3, 4-7, 8-11 and 12-15 (in constant
// memory, not immediates, so that the words stay in registers across the loop
// instead of being rebuilt at every use).
static __constant__ uint32_t kIq4GridBytes[4] = {0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u};

// acc + x.lo * q.byte0 + x.hi * q.byte1 (Hi: bytes 2 and 3); x two int16, q four
// bytes, signed or unsigned.
template <bool Hi, bool SignedQ>
__device__ __forceinline__ int dp2a(uint32_t x, uint32_t q, int acc) {
    int r;
    if constexpr (Hi && SignedQ)
        asm("dp2a.hi.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(x), "r"(q), "r"(acc));
    else if constexpr (Hi)
        asm("dp2a.hi.s32.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(x), "r"(q), "r"(acc));
    else if constexpr (SignedQ)
        asm("dp2a.lo.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(x), "r"(q), "r"(acc));
    else
        asm("dp2a.lo.s32.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(x), "r"(q), "r"(acc));
    return r;
}

// acc + the run's 16 inputs (two octets) . its 16 quants (byte j of word k: quant 4k + j).
template <bool SignedQ>
__device__ __forceinline__ int run_dot(const uint32_t (&q)[4], const uint4 (&x)[2], int acc) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const uint4& o = x[k >> 1];
        acc = dp2a<false, SignedQ>((k & 1) ? o.z : o.x, q[k], acc);
        acc = dp2a<true, SignedQ>((k & 1) ? o.w : o.y, q[k], acc);
    }
    return acc;
}

// Q5_0 / Q5_1: bit e of qh (quants 4k..4k+3 of a run: bits 4k..4k+3 from `first`)
// to bit 4 of each byte of word k.
__device__ __forceinline__ uint32_t fifth_bits_of_word(uint32_t qh, int first) {
    return (((qh >> first) & 15u) * 0x02040810u) & 0x10101010u;  // bit j to 4 + 8j
}

// The lane's 32 weights of the block at blk (part p) dotted with its runs'
// inputs xa and xb (sa, sb: their exact sums), in units of the chunk's scale.
// mis: blk's misalignment (0 or 2), which the types of 2-byte aligned blocks
// take from the caller instead of from each address (with the planes' shifts
// folded into the same funnel shifts, Q3_K: 126 -> 103 instructions per row
// and part, SASS of the streaming loop). Q3_K and Q6_K read words from blk - mis,
// shifted by 8 mis bits (their fields sit at multiples of 4 in the block); Q5_0
// and IQ4_NL, whose fields after d sit at 2 modulo 4, from blk + mis, shifted by
// 16 - 8 mis bits.
template <TensorType T>
__device__ __forceinline__ float dot_int(const uint8_t* blk, int p, const uint4 (&xa)[2], const uint4 (&xb)[2],
                                         int sa, int sb, uint32_t mis) {
    using TT = TensorType;
    if constexpr (T == TT::Q5_0 || T == TT::Q5_1) {
        // Q5_0: d, qh, qs (blocks of 22, 2-byte aligned); Q5_1: d, m, qh, qs (24, 4-byte aligned).
        uint32_t q[4], lo[4], hi[4], qh;
        if constexpr (T == TT::Q5_0) {
            load16_shifted(blk + mis + 4, 16 - 8 * mis, q);
            qh = load4_shifted(blk + mis, 16 - 8 * mis);
        } else {
            load16_from4(blk + 8, q);
            qh = reinterpret_cast<const uint32_t*>(blk)[1];
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            lo[k] = mask_or<0x0F0F0F0Fu>(q[k], fifth_bits_of_word(qh, 4 * k));
            hi[k] = mask_or<0x0F0F0F0Fu>(q[k] >> 4, fifth_bits_of_word(qh, 16 + 4 * k));
        }
        const int dot = run_dot<false>(hi, xb, run_dot<false>(lo, xa, 0));
        const float d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
        if constexpr (T == TT::Q5_0) return d * float(dot - 16 * (sa + sb));  // x = d (q - 16)
        return d * float(dot) + half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[1]) * float(sa + sb);
    } else if constexpr (T == TT::Q2_K || T == TT::Q3_K) {
        // LaneLayout: half h, bytes 16i..16i+15 of its 32, planes 2j (A) and
        // 2j + 1 (B), each plane of 16 with its own scale.
        const int h = p >> 2, i = (p >> 1) & 1, j = p & 1;
        // A's plane to bits 0-1 of each byte, B's to 2-3. Q3_K's words are read
        // from blk - mis, and the funnel shift that aligns them also takes the
        // plane's shift (the bits it brings in at the top are masked off below).
        uint32_t q[4], lo[4], hi[4];
        const uint8_t* words = blk - mis;
        if constexpr (T == TT::Q2_K) {
            load16_from4(blk + 16 + 32 * h + 16 * i, q);
#pragma unroll
            for (int k = 0; k < 4; ++k) q[k] >>= 4 * j;
        } else {
            load16_shifted(words + 32 + 32 * h + 16 * i, 8 * mis + 4 * j, q);
        }
        if constexpr (T == TT::Q2_K) {
            // B's quants left at 4 q: 4 scA a + scB b < 2 x 15 x 12 x 2^19.
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                lo[k] = q[k] & 0x03030303u;
                hi[k] = q[k] & 0x0C0C0C0Cu;
            }
            const int a = run_dot<false>(lo, xa, 0), b = run_dot<false>(hi, xb, 0);
            // scales[8h + 4j + i] (A) and [.. + 2] (B): the scale in the low nibble, the minimum in the high one.
            const uint32_t sm = *reinterpret_cast<const uint32_t*>(blk + 8 * h + 4 * j) >> (8 * i);
            const uint32_t dd = *reinterpret_cast<const uint32_t*>(blk + 80);  // d, dmin
            const int scaled = 4 * int(sm & 15) * a + int((sm >> 16) & 15) * b;
            const int mins = int((sm >> 4) & 15) * sa + int((sm >> 20) & 15) * sb;
            return 0.25f * half_bits_to_float(uint16_t(dd)) * float(scaled) -
                   half_bits_to_float(uint16_t(dd >> 16)) * float(mins);
        } else {
            // The third bit: hmask[l] at bit 4h + 2j (A) and + 1 (B), to bit 2 of each
            // byte; set: +0, clear: -4 (the offset 4 from the sums). Scales of 6 bits
            // less 32: |sc (a - 4 sa)| <= 32 x 4 x 2^19 for each run.
            uint32_t hm[4];  // A's bit at bit 0 of each byte, B's at bit 1
            load16_shifted(words + 16 * i, 8 * mis + 4 * h + 2 * j, hm);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const uint32_t t = hm[k];
                lo[k] = mask_or<0x03030303u>(q[k], (t << 2) & 0x04040404u);
                hi[k] = mask_or<0x03030303u>(q[k] >> 2, (t << 1) & 0x04040404u);
            }
            const int a = run_dot<false>(lo, xa, 0) - 4 * sa, b = run_dot<false>(hi, xb, 0) - 4 * sb;
            // Scale s = 8h + 4j + i (A), s + 2 (B): the low 4 bits in nibble h of
            // scales[s % 8], the high 2 in scales[8 + s % 4] at 2 (s / 4).
            const uint32_t slo = load4_shifted(words + 96 + 4 * j, 8 * mis) >> (8 * i + 4 * h);
            const uint32_t shi = load4_shifted(words + 104, 8 * mis) >> (8 * i + 4 * h + 2 * j);
            const uint32_t sc = (slo & 0x000F000Fu) | ((shi << 4) & 0x00300030u);  // A's in bits 0-5, B's in 16-21
            const int scaled = (int(sc & 63) - 32) * a + (int(sc >> 16) - 32) * b;
            return half_bits_to_float(*reinterpret_cast<const uint16_t*>(blk + 108)) * float(scaled);
        }
    } else if constexpr (T == TT::Q4_K || T == TT::Q5_K) {
        // LaneLayout: chunk c (sub-blocks 2c: A, low nibbles; 2c + 1: B), half h
        // of its 32 quant bytes; both 6-bit scales and minimums of the pair at once.
        // sc a + sc b < 2 x 63 x 16 x 31 x 32767 < 2^31.
        const int c = p & 3, h = p >> 2;
        const uint4 head = *reinterpret_cast<const uint4*>(blk);  // d, dmin, scales[0..11]
        const int shift = 16 * (c & 1);
        const uint32_t s_lo = head.y >> shift, s_mid = head.z >> shift, s_hi = head.w >> shift;
        const uint32_t sc = c < 2 ? s_lo & 0x3F3Fu : (s_hi & 0x0F0Fu) | ((s_lo >> 2) & 0x3030u);
        const uint32_t mn = c < 2 ? s_mid & 0x3F3Fu : ((s_hi >> 4) & 0x0F0Fu) | ((s_mid >> 2) & 0x3030u);
        constexpr int kQs = T == TT::Q5_K ? 48 : 16;  // after d, dmin, scales (and qh)
        const uint4 qv = *reinterpret_cast<const uint4*>(blk + kQs + 32 * c + 16 * h);
        const uint32_t q[4] = {qv.x, qv.y, qv.z, qv.w};
        uint32_t lo[4], hi[4];
        if constexpr (T == TT::Q5_K) {
            // The fifth bit of element 32 hi + l of the chunk: bit 2c + hi of qh[l].
            const uint4 hv = *reinterpret_cast<const uint4*>(blk + 16 + 16 * h);
            const uint32_t qh[4] = {hv.x, hv.y, hv.z, hv.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const uint32_t t = qh[k] >> (2 * c);  // A's bit at bit 0 of each byte, B's at bit 1
                lo[k] = mask_or<0x0F0F0F0Fu>(q[k], (t << 4) & 0x10101010u);
                hi[k] = mask_or<0x0F0F0F0Fu>(q[k] >> 4, (t << 3) & 0x10101010u);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                lo[k] = q[k] & 0x0F0F0F0Fu;
                hi[k] = (q[k] >> 4) & 0x0F0F0F0Fu;
            }
        }
        const int a = run_dot<false>(lo, xa, 0), b = run_dot<false>(hi, xb, 0);
        const int scaled = int(sc & 255) * a + int(sc >> 8) * b, mins = int(mn & 255) * sa + int(mn >> 8) * sb;
        const float d = half_bits_to_float(uint16_t(head.x)), dmin = half_bits_to_float(uint16_t(head.x >> 16));
        return d * float(scaled) - dmin * float(mins);
    } else if constexpr (T == TT::Q6_K) {
        // LaneLayout: quarters k0 (A: low nibbles of ql) and k0 + 2 (B) of half h,
        // elements 16j..16j+15 of each; the top two bits from qh at bits 2k, moved
        // to bits 4-5 of each byte. Less the offset 32 from the sums, each run times
        // its int8 scale in fp32 (in int32 two runs could reach 2^31).
        const auto* b = reinterpret_cast<const quant::block_q6_k*>(blk);
        const int j = p & 1, k0 = (p >> 1) & 1, h = p >> 2;
        uint32_t q[4], qh[4], lo[4], hi[4];
        // ql at 0, qh at 128, read from blk - mis; qh's funnel shift also takes its
        // shift by 2 k0 (the bits it brings in at the top are masked off below).
        const uint8_t* words = blk - mis;
        load16_shifted(words + 64 * h + 32 * k0 + 16 * j, 8 * mis, q);
        load16_shifted(words + 128 + 32 * h + 16 * j, 8 * mis + 2 * k0, qh);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t t = qh[k];  // A's two bits at bits 0-1 of each byte, B's at 4-5
            lo[k] = mask_or<0x0F0F0F0Fu>(q[k], (t << 4) & 0x30303030u);
            hi[k] = mask_or<0x0F0F0F0Fu>(q[k] >> 4, t & 0x30303030u);
        }
        const int a = run_dot<false>(lo, xa, 0) - 32 * sa, bb = run_dot<false>(hi, xb, 0) - 32 * sb;
        const int s = 8 * h + j + 2 * k0;
        return half_bits_to_float(b->d) * (float(b->scales[s]) * float(a) + float(b->scales[s + 4]) * float(bb));
    } else if constexpr (T == TT::IQ4_NL || T == TT::IQ4_XS) {
        // Word w of the paired input: elements w and w + 16 of the block (xa: w < 8).
        // q's nibbles from the bottom are A0 B0 A1 B1 ...: a permute with q's low
        // three bits looks up four of them in each half of the grid, and one with
        // bit 3 picks the half, giving the bytes A0 B0 A1 B1 (then, from q >> 16, A2 B2 A3 B3).
        uint32_t q[4];
        float d;
        if constexpr (T == TT::IQ4_NL) {
            d = half_bits_to_float(reinterpret_cast<const uint16_t*>(blk)[0]);
            load16_shifted(blk + mis, 16 - 8 * mis, q);
        } else {
            // d, scales_h, scales_l, then sub-block p's 16 bytes at 8 + 16p (8-byte
            // aligned blocks of 136). Scale: nibble p of scales_l, bits 2p of scales_h.
            const uint2 head = *reinterpret_cast<const uint2*>(blk);
            const uint2 lo = *reinterpret_cast<const uint2*>(blk + 8 + 16 * p),
                        hi = *reinterpret_cast<const uint2*>(blk + 16 + 16 * p);
            q[0] = lo.x, q[1] = lo.y, q[2] = hi.x, q[3] = hi.y;
            const int ls = int(((head.y >> (4 * p)) & 15u) | ((head.x >> (16 + 2 * p)) & 3u) << 4);
            d = half_bits_to_float(uint16_t(head.x)) * float(ls - 32);
        }
        const uint32_t* grid = kIq4GridBytes;
        int acc = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t entry = q[k] & 0x77777777u;
            // Nibble i of a half-picking selector: i, or 4 + i from the upper half.
            const uint32_t pick = mask_or<0x44444444u>(q[k] >> 1, 0x32103210u);
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                const uint32_t e = entry >> (16 * s), sel = pick >> (16 * s);
                const uint32_t v = permute_bytes(permute_bytes(grid[0], grid[1], e), permute_bytes(grid[2], grid[3], e), sel);
                const int w = 4 * k + 2 * s;  // words w and w + 1 of the pairs
                const uint4& o = w < 8 ? xa[w >> 2] : xb[(w - 8) >> 2];
                acc = dp2a<false, true>((w & 2) ? o.z : o.x, v, acc);
                acc = dp2a<true, true>((w & 2) ? o.w : o.y, v, acc);
            }
        }
        return d * float(acc);
    } else {
        static_assert(kHasIntDot<T>, "no integer form for this type");
        return 0.0f;
    }
}

}  // namespace orcd::cuda
