// Launchers of the CUDA kernels, one file each under cuda/kernels/. All take
// device pointers and enqueue on `stream`; activations are float32, the KV
// cache is fp16. Shapes are validated by the caller (CudaBackend).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "model/backend.h"
#include "model/weights.h"

namespace orcd::cuda {

// out[i, :] = dequantised row ids[i] of table, i < n (ids on the device).
void launch_embed(const Weight& table, const int32_t* ids, int n, float* out, cudaStream_t stream);

// out[i, :] = x[i, :] * rsqrt(mean(x^2) + eps) * w.
void launch_rms_norm(const float* x, const float* w, float eps, int n, int dim, float* out, cudaStream_t stream);
// The same, rounded to fp16 (the operand of the tensor-core products).
void launch_rms_norm_half(const float* x, const float* w, float eps, int n, int dim, __half* out, cudaStream_t stream);

// Tokens per call up to which the matrix-vector kernel is used (it reads each
// weight once for all tokens); beyond it the tiled tensor-core GEMM runs.
constexpr int kMatvecMaxTokens = 8;
// out[i, r] (+)= x[i, :] . W[r, :] (+ bias[r]) for n <= kMatvecMaxTokens tokens.
void launch_matvec(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                   cudaStream_t stream);
// One token whose input is transformed on the way in (the op before it fused away):
//   Plain: x;  Norm: rms_norm(x) * norm_w (eps).
enum class MatvecInput { Plain, Norm };
struct MatvecIn {
    const float* x = nullptr;
    const float* norm_w = nullptr;
    float eps = 0.0f;
};
// One product of a one-token launch: out[r] (+)= in . W[r, :] (+ bias[r]), r < rows.
struct MatvecPart {
    const uint8_t* w = nullptr;  // rows of row_bytes, in the weights' arena
    int64_t rows = 0;
    int row_bytes = 0;
    gguf::TensorType type = gguf::TensorType::F32;
    float* out = nullptr;
    const float* bias = nullptr;
    bool accumulate = false;
};
MatvecPart matvec_part(const Weight& w, float* out, const float* bias, bool accumulate);
// Products of one token that share their input (cols wide), in one launch where
// the rows allow (a longer list is split).
void launch_matvec1_parts(const std::vector<MatvecPart>& parts, int64_t cols, MatvecInput input, const MatvecIn& in,
                          cudaStream_t stream);
// Whether launch_matvec1_parts streams a lone part of these rows
// (matvec_stream.cu; the quantised types then round the input to fp16 or to
// 16-bit integers).
bool matvec1_streamed(gguf::TensorType type, int64_t rows, int64_t row_bytes);
// The streamed product of one part, if it is one of those (else nothing is launched).
bool launch_matvec1_streamed(const MatvecPart& part, int64_t cols, MatvecIn in, MatvecInput input,
                             cudaStream_t stream);
// One token: gate.out[j] = silu(in . G[j, :] (+ gate.bias[j])) * (in . U[j, :] (+ up.bias[j])), in one
// launch. Returns false (nothing launched) when gate and up differ in rows or a row is too wide for it.
bool launch_matvec1_swiglu(const MatvecPart& gate, const MatvecPart& up, int64_t cols, MatvecInput input,
                           const MatvecIn& in, cudaStream_t stream);
// The same product for any n, on tensor cores (fp16 operands, fp32 accumulation).
// scratch (device memory, at least gemm_scratch_bytes(n, w.cols)) holds the fp16
// copy of x and the partial sums of a K split; results do not depend on it.
// With x_staged, x is not read: the scratch already starts with its fp16 copy
// ([n, w.cols], as launch_rms_norm_half writes it).
size_t gemm_scratch_bytes(int max_n, int64_t max_cols);
void launch_gemm(const Weight& w, const float* x, int n, float* out, int ldo, const float* bias, bool accumulate,
                 void* scratch, size_t scratch_bytes, cudaStream_t stream, bool x_staged = false);

// Rotates q and k of qkv in place; positions on the device.
void launch_rope(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& p, cudaStream_t stream);

// Writes k and v of n tokens (fp32 in qkv) into the fp16 caches at their positions.
// Cache layout: [n_kv_heads, max_context, head_dim].
void launch_kv_store(const float* qkv, int ld, int n, const int32_t* positions, int n_heads, int n_kv_heads,
                     int head_dim, int max_context, __half* k_cache, __half* v_cache, cudaStream_t stream);

struct AttentionShape {
    int n_heads = 0, n_kv_heads = 0, head_dim = 0, max_context = 0;
};

// Causal attention of n query tokens (q in qkv, row stride ld) against the cache,
// each attending to positions 0..positions[i]; out [n, n_heads * head_dim].
// Tiled flash attention on tensor cores.
void launch_attention_prefill(const float* qkv, int ld, int n, const int32_t* positions, const __half* k_cache,
                              const __half* v_cache, const AttentionShape& shape, float* out, cudaStream_t stream);

// One query token: split-K (flash-decoding) over the cache (attention_decode.cu).
// The KV length is read from positions[0] on the device, so a captured graph
// replays at any position. partials holds attention_decode_partial_floats
// floats; counters attention_decode_counters zeros (the kernel leaves them zero again). With
// `rope`, q and the new k are rotated and k and v stored by the same launch;
// without, rope and the KV store ran before.
int attention_decode_splits(const AttentionShape& shape);
size_t attention_decode_partial_floats(const AttentionShape& shape);
size_t attention_decode_counters(const AttentionShape& shape);
struct DecodeAttentionArgs {
    const float* qkv;  // q heads, k heads, v heads of the token (fp32)
    const int32_t* positions;
    __half* k_cache;  // [n_kv_heads, max_context, head_dim]
    __half* v_cache;
    int n_heads, n_kv_heads, head_dim, max_context, splits;
    float scale;
    float* partials;     // [n_heads, splits, head_dim + 4]: max, sum, 2 unused, acc
    unsigned* counters;  // [attention_decode_counters], zero between steps
    float* out;          // [n_heads * head_dim]
    bool rope_store;     // rotate q and the new k, store k and v (else both were done before)
    bool neox;
    int rope_dim;
    float freq_base, freq_scale, attn_factor;
    const float* freq_factors;
};
DecodeAttentionArgs decode_attention_args(const float* qkv, const int32_t* positions, __half* k_cache,
                                          __half* v_cache, const AttentionShape& shape, float* partials,
                                          unsigned* counters, float* out, const RopeParams* rope);
void launch_attention_decode(const DecodeAttentionArgs& args, cudaStream_t stream);

// out[i, j] = silu(gate_up[i, j]) * gate_up[i, n_ff + j].
void launch_swiglu(const float* gate_up, int n, int n_ff, float* out, cudaStream_t stream);

// Index of the largest of n values (the first on ties), written to *result on the
// device. state: two zeroed words that the call uses and leaves zeroed.
void launch_argmax(const float* x, int n, int32_t* result, unsigned long long* state, cudaStream_t stream);

// The k largest of n values (1 <= k <= n): exactly k (index, value) pairs in no
// particular order, ties at the k-th value resolved towards lower indices.
void launch_top_k(const float* x, int n, int k, int32_t* indices, float* values, cudaStream_t stream);

}  // namespace orcd::cuda
