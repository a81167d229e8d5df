// Matrix products of GGUF weights with float activations: the CPU backend's
// kernels, and the exact fp32 oracle the CUDA backend is checked against.
#pragma once

#include <cstdint>

#include "cpu/thread_pool.h"
#include "orcd/gguf.h"

namespace orcd::cpu {

// Instruction sets the kernels come in. Scalar is plain C++ (auto-vectorised
// for the baseline target); Avx2 needs AVX2, FMA and F16C at run time.
enum class Isa { Scalar, Avx2 };

// Whether this CPU can run the Avx2 kernels.
bool cpu_has_avx2();
// Avx2 where the CPU has it, unless the environment sets ORCD_CPU_SCALAR=1.
Isa default_isa();
const char* isa_name(Isa isa);

// Whether matmul and dequantize_row handle the type.
bool supports(gguf::TensorType type);

// out[i*rows + r] = sum_c x[i*cols + c] * W[r][c] for i < n, r < rows, where
// W is a GGUF tensor of dims (cols, rows): rows of row_bytes(type, cols)
// bytes, 2-byte aligned. Sums are fp32 over the exactly dequantised weights;
// activations are never quantised. Throws Unsupported for a type it does not
// handle (or Avx2 on a CPU without it) and InvalidArgument for bad sizes.
void matmul(gguf::TensorType type, const uint8_t* weight, int64_t rows, int64_t cols, const float* x, int64_t n,
            float* out, ThreadPool& pool);
void matmul(gguf::TensorType type, const uint8_t* weight, int64_t rows, int64_t cols, const float* x, int64_t n,
            float* out, ThreadPool& pool, Isa isa);

// Dequantises one row of n elements (an embedding lookup).
void dequantize_row(gguf::TensorType type, const uint8_t* src, float* dst, int64_t n);

}  // namespace orcd::cpu
